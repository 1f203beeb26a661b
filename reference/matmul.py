"""``ggml_mul_mat(w, x)`` bit-exact: llama.cpp's portable CPU build, every weight type.

    from ggspec.reference.matmul import mul_mat, vec_dot_type, quantize_activations
    y = mul_mat("Q4_K", w_raw, n_out, n_in, x)     # x float32 (n, n_in) -> y float32 (n, n_out)

``w_raw`` is the weight tensor as ggml stores it (``n_out`` rows of ``n_in`` values, row-major, each
row a run of blocks). The result equals ggml's bit for bit (uint32 views; signed zeros and NaNs
included) in the **portable build** of llama-cpp-python 0.3.36: x86-64 baseline (SSE2 only, so
``GGML_SIMD`` is undefined), ``GGML_LLAMAFILE=OFF``, ``GGML_CPU_REPACK=OFF``, ``-ffp-contract=off``.
There ``ggml_compute_forward_mul_mat`` (ggml-cpu.c) does, for every weight type:

1. **from_float** -- each row of ``x`` is converted to the weight type's ``vec_dot_type``
   (``type_traits_cpu[type].vec_dot_type``) with that type's ``from_float``:
   ``quantize_row_q8_0/q8_1/q8_K`` fall back to the scalar ``quantize_row_*_ref`` (arch/x86/quants.c
   without ``__AVX__``), F16 is ``GGML_CPU_FP32_TO_FP16`` (the software ``ggml_compute_fp32_to_fp16``:
   no ``__F16C__``), BF16 is ``ggml_compute_fp32_to_bf16``; F32 weights use ``x`` as it is.
   The threads split a row by whole blocks, so the thread count cannot change the bytes.
2. **vec_dot** -- every output ``y[t, o]`` is one call ``vec_dot(n_in, &y, w row o, x row t)``. The
   x86 file (arch/x86/quants.c) compiles, without ``__AVX__``/``__AVX2__``/``__SSSE3__``, either to a
   call of the ``*_generic`` function of ggml-cpu/quants.c or to its own scalar tail loop (Q4_0,
   Q8_0, MXFP4, NVFP4, IQ4_NL), which is the same loop. F32/F16/BF16 use the scalar loops of
   ggml-cpu/vec.cpp. The tiled K-quant path (ggml-cpu/tiled) is compiled only with AVX, and the
   chunking only decides which thread computes which output, so **the result does not depend on
   the number of threads** (checked with 1 and 2 threads in tests/test_matmul.py).

The table: one row per weight type; ``x``/``y`` are the weight and activation blocks, ``dx``/``dy``
their scales widened to float32 (``GGML_CPU_FP16_TO_FP32`` for fp16; Q8_K's ``d`` is a float32),
``f(i)`` the conversion of an ``int`` to ``float`` (round to nearest even), ``isum`` exact integer
sums, and every ``*``/``+`` one float32 operation in the order written (left to right). ``sumf``
starts at ``0.0f``; ``sums[8]`` start at ``0.0f``; the result is ``(float) sumf``.

| weight  | vec_dot_type | per block (in block order)                                                                 | result                    |
|---------|--------------|--------------------------------------------------------------------------------------------|---------------------------|
| F32     | F32          | per element, double ``sumf += (double)(x[i]*y[i])`` (float32 product)                      | ``(float) sumf``          |
| F16     | F16          | per element, double ``sumf += (double)(x[i]*y[i])`` (exact float32 product of two fp16)    | ``(float) sumf``          |
| BF16    | BF16         | per element, double ``sumf += (double)(x[i]*y[i])`` (float32 product of two bf16)          | ``(float) sumf``          |
| Q4_0    | Q8_0         | ``sumf += f(isum) * dx * dy``                                                               | ``sumf``                  |
| Q4_1    | Q8_1         | ``sumf += (dx*dy) * f(isum) + mx*sy``                                                       | ``sumf``                  |
| Q5_0    | Q8_0         | ``sumf += (dx*dy) * f(isum)``                                                               | ``sumf``                  |
| Q5_1    | Q8_1         | ``sumf += (dx*dy) * f(isum) + mx*sy``                                                       | ``sumf``                  |
| Q8_0    | Q8_0         | ``sumf += f(isum) * (dx*dy)``                                                               | ``sumf``                  |
| IQ4_NL  | Q8_0         | ``sumf += (dy*dx) * f(isum)``                                                               | ``sumf``                  |
| MXFP4   | Q8_0         | ``sumf += (dy*e8m0_half(e)) * f(isum)``                                                     | ``sumf``                  |
| NVFP4   | Q8_0         | per 16-value sub-block s: ``sumf += dy*ue4m3(d[s]) * f(isum_s)``                             | ``sumf``                  |
| Q1_0    | Q8_0         | ``s = 0.0f``; per Q8_0 block k: ``s += dy_k * f(isum_k)``; ``sumf += dx * s``                | ``sumf``                  |
| Q2_0    | Q8_0         | as Q1_0 with 2 Q8_0 blocks per block                                                        | ``sumf``                  |
| Q2_K    | Q8_K         | ``sumf += (dy*dx) * f(isum) - (dy*dmin) * f(summs)``                                        | ``sumf``                  |
| Q3_K    | Q8_K         | ``sums[l] += (dx*dy) * f(aux32[l])`` for l = 0..7                                          | ``0 + sums[0] + ... + sums[7]`` |
| Q4_K    | Q8_K         | ``sums[l] += (dx*dy) * f(aux32[l])``; ``sumf -= (dmin*dy) * f(isum_min)``                   | ``sumf + sums[0] + ... + sums[7]`` |
| Q5_K    | Q8_K         | as Q4_K                                                                                     | as Q4_K                   |
| Q6_K    | Q8_K         | as Q3_K                                                                                     | as Q3_K                   |
| TQ1_0   | Q8_K         | ``sumf += f(isum) * (dx*dy)``                                                               | ``sumf``                  |
| TQ2_0   | Q8_K         | ``sumf += f(isum) * (dy*dx)``                                                               | ``sumf``                  |
| IQ2_XXS | Q8_K         | ``sumf += (dx*dy) * f(bsum)``                                                               | ``0.125f * sumf``         |
| IQ2_XS  | Q8_K         | ``sumf += (dx*dy) * f(bsum)``                                                               | ``0.125f * sumf``         |
| IQ2_S   | Q8_K         | ``sumf += (dx*dy) * f(bsum)``                                                               | ``0.125f * sumf``         |
| IQ3_XXS | Q8_K         | ``sumf += (dx*dy) * f(bsum)``                                                               | ``0.25f * sumf``          |
| IQ3_S   | Q8_K         | ``sumf += (dx*dy) * f(bsum)``                                                               | ``sumf``                  |
| IQ1_S   | Q8_K         | ``sumf += (dx*dy) * (f(isum) + 0.125f * f(isum_delta))``                                    | ``sumf``                  |
| IQ1_M   | Q8_K         | ``sumf += (scale*dy) * (f(isum) + 0.125f * f(isum_delta))``                                 | ``sumf``                  |
| IQ4_XS  | Q8_K         | per 32-value sub-block s: ``sumf += ((dx*dy) * f(ls_s - 32)) * f(isum_s)``                  | ``sumf``                  |

``aux32[l]`` (Q3_K..Q6_K) is the integer sum over the block's positions ``p`` with ``p % 8 == l``
of ``scale(p) * x(p) * y(p)``: ggml accumulates the 256 products in eight int32 lanes and only
the eight lanes are scaled in float. ``isum_min``/``summs`` are ``Σ bsums[j] * min(j)`` from Q8_K's
16-value partial sums. Every integer sum is exact (int32 in C, and no sum can overflow), so it is
computed here by a BLAS mat-mul in float64 -- or float32 where every partial sum is an integer
below 2**24 -- which is exact in any order. Only the float steps are done in ggml's order: a loop
over the blocks, each step one numpy operation over all (token, output row) pairs at once.

NaNs: when both operands of one float operation are NaNs, x86 returns the *first* operand's
(quieted), and which operand is first is the compiler's choice, not the C source's (``y.d * x.d``
may be compiled as ``x.d * y.d``). The operand order of every such operation was read from the
machine code of the portable build (objdump of libggml-cpu.so) and is written out below with
``_mul``/``_add``/``_sub``, so NaN payloads and signs come out as ggml's too (tested with random
bytes as weights -- NaN scales with any payload -- and NaN/Inf activations).

Q8_K blocks of all-zero activations: ggml leaves their ``bsums`` unwritten (whatever the work
buffer held). They only meet a zero activation scale: a zero times a finite value is a zero, and
``sumf`` starts at +0, so the result cannot depend on them (0 here).

See docs/matmul.md for the exact definition per type and how it was checked.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnsupportedTypeError
from .fp import bf16_to_f32, e8m0_to_f32_half, f16_to_f32, f32_to_bf16, f32_to_f16, ue4m3_to_f32
from .fp4 import kvalues_mxfp4
from .iquants import (IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK, KSIGNS,
                      KVALUES_IQ4NL)
from .search import c_int, c_roundf, nearest_int_array, to_int8
from .types import live_type

f32 = np.float32
f64 = np.float64

QK8_0 = QK8_1 = 32
QK_K = 256

__all__ = ["mul_mat", "vec_dot_type", "quantize_activations", "VEC_DOT_TYPE"]

# type_traits_cpu[type].vec_dot_type (ggml-cpu.c)
VEC_DOT_TYPE: "dict[str, str]" = {
    "F32": "F32", "F16": "F16", "BF16": "BF16",
    "Q4_0": "Q8_0", "Q5_0": "Q8_0", "Q8_0": "Q8_0", "IQ4_NL": "Q8_0", "MXFP4": "Q8_0", "NVFP4": "Q8_0",
    "Q1_0": "Q8_0", "Q2_0": "Q8_0",
    "Q4_1": "Q8_1", "Q5_1": "Q8_1",
    "Q2_K": "Q8_K", "Q3_K": "Q8_K", "Q4_K": "Q8_K", "Q5_K": "Q8_K", "Q6_K": "Q8_K",
    "IQ2_XXS": "Q8_K", "IQ2_XS": "Q8_K", "IQ2_S": "Q8_K", "IQ3_XXS": "Q8_K", "IQ3_S": "Q8_K",
    "IQ1_S": "Q8_K", "IQ1_M": "Q8_K", "IQ4_XS": "Q8_K", "TQ1_0": "Q8_K", "TQ2_0": "Q8_K",
}


def vec_dot_type(w_type) -> str:
    """The type ggml converts the activations to before the dot products with a ``w_type`` weight
    (``type_traits_cpu[w_type].vec_dot_type``): "F32", "F16", "BF16", "Q8_0", "Q8_1" or "Q8_K".
    UnsupportedTypeError for a type ggml-cpu has no ``vec_dot`` for (Q8_1, Q8_K, the integer types)."""
    t = live_type(w_type)
    try:
        return VEC_DOT_TYPE[t.name]
    except KeyError:
        raise UnsupportedTypeError(f"ggml-cpu has no vec_dot for {t.name}: it cannot be a mul_mat weight; "
                                   f"weight types: {', '.join(VEC_DOT_TYPE)}") from None


# ==================================================================================================
# from_float: the activations in the vec_dot_type, as field arrays (all rows and blocks at once)

class _Act:
    """The converted activations: the block fields of every row, as ggml's names.

    Q8_0: ``d`` float32 (n, nb) (the fp16 field widened), ``d_bits`` uint16, ``qs`` int8 (n, nb, 32).
    Q8_1: plus ``s``/``s_bits``. Q8_K: ``d`` float32 (n, nb), ``qs`` int8 (n, nb, 256), ``bsums``
    int16 (n, nb, 16). F32/F16/BF16: ``v`` float32 (n, n_in) (the values after the conversion) and
    ``bits``."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _amax_seq(xb: np.ndarray) -> np.ndarray:
    """``float amax = 0.0f; for j: amax = MAX(amax, fabsf(x[j]));`` over the last axis, with
    ``MAX(a, b) = a > b ? a : b`` (so a NaN can enter, and a later value can replace it)."""
    amax = np.zeros(xb.shape[:-1], dtype=np.float32)
    for j in range(xb.shape[-1]):  # order matters: NaN handling of MAX
        v = np.abs(xb[..., j])
        amax = np.where(amax > v, amax, v)
    return amax


def _from_float_q8(x: np.ndarray, with_sum: bool) -> _Act:
    """``quantize_row_q8_0_ref`` / ``quantize_row_q8_1_ref`` (ggml-quants.c) for every block:
    ``d = amax / 127``; ``id = d ? 1.0f/d : 0.0f``; ``qs[j] = roundf(x[j]*id)`` stored as int8;
    Q8_1 also ``s = GGML_FP32_TO_FP16((float) Σ qs * d)``."""
    n, k = x.shape
    xb = x.reshape(n, k // QK8_0, QK8_0)
    amax = _amax_seq(xb)
    d = amax / f32(127.0)                                           # ((1 << 7) - 1)
    nz = d != 0                                                     # a NaN d is "true" in C
    id_ = np.where(nz, f32(1.0) / np.where(nz, d, f32(1.0)), f32(0.0))
    qs = to_int8(c_int(c_roundf(xb * id_[..., None]))).astype(np.int8)   # float -> int8: cvttss2si, low byte
    d_bits = f32_to_f16(d)
    act = _Act(d_bits=d_bits, d=f16_to_f32(d_bits), qs=qs)
    if with_sum:
        total = qs.astype(np.int32).sum(axis=-1)                    # int sum: exact
        s_bits = f32_to_f16(total.astype(np.float32) * d)           # (float) sum * d, then fp16
        act.s_bits = s_bits
        act.s = f16_to_f32(s_bits)
    return act


def _from_float_q8_K(x: np.ndarray) -> _Act:
    """``quantize_row_q8_K_ref`` for every block of 256: ``max`` = the first value of largest |x|
    (``if (ax > amax)``, NaN never taken); ``amax == 0``: d = 0, qs = 0 (bsums unwritten by ggml, 0
    here); else ``iscale = -127.f/max``, ``qs = MIN(127, nearest_int(iscale*x))``, ``bsums[j]`` the
    int sum of qs[16j..16j+15], ``d = 1/iscale``."""
    n, k = x.shape
    xb = x.reshape(n, k // QK_K, QK_K)
    ax = np.abs(xb)
    first = np.argmax(np.where(np.isnan(ax), f32(-1.0), ax), axis=-1)      # first index of the largest |x|
    max_ = np.take_along_axis(xb, first[..., None], axis=-1)[..., 0]
    amax = np.abs(max_)
    zero = ~(amax > 0)                                                     # `if (!amax)` (amax is never NaN)
    iscale = f32(-127.0) / np.where(zero, f32(1.0), max_)
    v = nearest_int_array(iscale[..., None] * xb)
    qs = to_int8(np.minimum(127, v))
    qs = np.where(zero[..., None], 0, qs).astype(np.int8)
    bsums = qs.reshape(n, k // QK_K, QK_K // 16, 16).astype(np.int32).sum(axis=-1).astype(np.int16)
    d = np.where(zero, f32(0.0), f32(1.0) / iscale).astype(np.float32)
    return _Act(d=d, qs=qs, bsums=bsums)


def _activations(vdt: str, x: np.ndarray) -> _Act:
    with np.errstate(all="ignore"):
        if vdt == "F32":
            return _Act(v=x, bits=x.view(np.uint32))
        if vdt == "F16":
            bits = f32_to_f16(x)                     # GGML_CPU_FP32_TO_FP16 (software, no F16C)
            return _Act(v=f16_to_f32(bits), bits=bits)
        if vdt == "BF16":
            bits = f32_to_bf16(x)                    # GGML_FP32_TO_BF16
            return _Act(v=bf16_to_f32(bits), bits=bits)
        if vdt == "Q8_0":
            return _from_float_q8(x, with_sum=False)
        if vdt == "Q8_1":
            return _from_float_q8(x, with_sum=True)
        if vdt == "Q8_K":
            return _from_float_q8_K(x)
    raise UnsupportedTypeError(f"{vdt} is not a vec_dot_type")


def _check_x(x, n_in: "int | None" = None) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ShapeError(f"x must be float32, got {x.dtype}")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or (n_in is not None and x.shape[1] != n_in):
        want = f"(n, {n_in})" if n_in is not None else "(n, n_in)"
        raise ShapeError(f"x must have shape {want}, got {x.shape}")
    return np.ascontiguousarray(x)


def quantize_activations(vec_dot_type: str, x) -> bytes:
    """The from_float step of ggml_mul_mat: float32 ``x`` (n, n_in) converted to ``vec_dot_type``
    ("F32", "F16", "BF16", "Q8_0", "Q8_1", "Q8_K") as the bytes ggml writes into its work buffer
    (``n`` rows, each ``n_in`` values of that type; little-endian block structs of ggml-common.h).

    Equal to ``quantize_row_q8_0_ref`` / ``_q8_1_ref`` / ``_q8_K_ref`` (Q8_K blocks of zeros: bsums
    0), ``ggml_cpu_fp32_to_fp16`` (software conversion) and ``ggml_cpu_fp32_to_bf16``."""
    vdt = live_type(vec_dot_type).name
    x = _check_x(x)
    block = {"Q8_0": QK8_0, "Q8_1": QK8_1, "Q8_K": QK_K}.get(vdt, 1)
    if x.shape[1] % block:
        raise ShapeError(f"{vdt}: n_in = {x.shape[1]} is not a multiple of the block size {block}")
    a = _activations(vdt, x)
    n = x.shape[0]
    if vdt == "F32":
        return x.astype("<f4").tobytes()
    if vdt in ("F16", "BF16"):
        return a.bits.astype("<u2").tobytes()
    nb = x.shape[1] // block
    if vdt == "Q8_0":
        rec = np.zeros((n, nb), dtype=[("d", "<u2"), ("qs", "i1", 32)])
        rec["d"], rec["qs"] = a.d_bits, a.qs
    elif vdt == "Q8_1":
        rec = np.zeros((n, nb), dtype=[("d", "<u2"), ("s", "<u2"), ("qs", "i1", 32)])
        rec["d"], rec["s"], rec["qs"] = a.d_bits, a.s_bits, a.qs
    else:
        rec = np.zeros((n, nb), dtype=[("d", "<f4"), ("qs", "i1", 256), ("bsums", "<i2", 16)])
        rec["d"], rec["qs"], rec["bsums"] = a.d, a.qs, a.bsums
    return rec.tobytes()


# ==================================================================================================
# helpers for the weight blocks (W: uint8 (O, nb, type_size), one output row per O)

def _f16_at(W: np.ndarray, off: int) -> np.ndarray:
    """The fp16 field at byte ``off`` of every block, widened (GGML_CPU_FP16_TO_FP32): (O, nb)."""
    bits = W[..., off:off + 2].copy().view("<u2")[..., 0]
    return f16_to_f32(bits)


def _u16(W: np.ndarray, off: int, count: int) -> np.ndarray:
    return W[..., off:off + 2 * count].copy().view("<u2").astype(np.int64)


def _u32(W: np.ndarray, off: int, count: int) -> np.ndarray:
    return W[..., off:off + 4 * count].copy().view("<u4").astype(np.int64)


def _bytes(W: np.ndarray, off: int, count: int) -> np.ndarray:
    return W[..., off:off + count].astype(np.int64)


def _nibbles32(qs: np.ndarray) -> np.ndarray:
    """16 bytes -> 32 nibbles: value j = qs[j] & 0xF, value j+16 = qs[j] >> 4 (the legacy order)."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=-1)


_BLAS_MNK = 1 << 18


def _isum(yq: np.ndarray, xq: np.ndarray, bound: int) -> np.ndarray:
    """The exact integer dot products of every group: ``yq`` (T, G, K) activations, ``xq`` (O, G, K)
    weight levels -> (G, T, O) holding Σ_k yq*xq as float.

    ``bound`` is an upper bound of Σ_k |yq*xq|. Every partial sum of a BLAS mat-mul is then an
    integer of magnitude <= bound, so it is exact in float32 when bound < 2**24 and in float64 when
    bound < 2**53: the result is C's int sum whatever order BLAS adds in."""
    dt = f32 if bound < 2**24 else f64
    assert bound < 2**53
    a = np.ascontiguousarray(yq.transpose(1, 0, 2), dtype=dt)        # (G, T, K)
    b = np.ascontiguousarray(xq.transpose(1, 2, 0), dtype=dt)        # (G, K, O)
    G, T, K = a.shape
    O = b.shape[2]
    out = np.empty((G, T, O), dtype=dt)
    # Speed only: keep each BLAS call at m*n*k <= 2**18. OpenBLAS runs such calls on the calling
    # thread; larger ones are split over its threads, which on a busy machine wait for each other
    # (measured up to 50x slower on this 2-core machine under load).
    step = max(1, _BLAS_MNK // max(1, T * K))
    for o0 in range(0, O, step):
        out[:, :, o0:o0 + step] = np.matmul(a, b[:, :, o0:o0 + step])
    return out


def _lanes(v: np.ndarray) -> np.ndarray:
    """(..., nb, 256) -> (..., nb*8, 32): group the positions p of each block by lane ``p % 8``
    (ggml's ``aux32[8]`` int32 accumulators in the K-quant dot products)."""
    s = v.shape
    return v.reshape(*s[:-1], 32, 8).swapaxes(-1, -2).reshape(*s[:-2], s[-2] * 8, 32)


# The float operations. Each is one IEEE float32 (or double) operation, as numpy computes it; the
# helpers only fix which NaN comes out when *both* operands are NaNs: x86's SSE instructions
# (``mulss a, b`` etc.) return the first operand's NaN, quieted, and the first operand is the
# one the compiler chose for each operation of the portable build (read from its machine code;
# numpy's own choice varies between its SIMD body and its tail). Where an operand can never be a
# NaN (an int converted to float, Q8_K's d) the order is immaterial.

_QUIET = 0x00400000


def _nan_first(r, a, b):
    if not np.isnan(r).any():          # no NaN operand (a NaN operand always gives a NaN result)
        return r
    a, b = np.broadcast_arrays(a, b)
    qa = (a.view(np.uint32) | np.uint32(_QUIET)).view(np.float32) if a.dtype == np.float32 else \
        (a.view(np.uint64) | np.uint64(_QUIET << 29)).view(np.float64)
    qb = (b.view(np.uint32) | np.uint32(_QUIET)).view(np.float32) if b.dtype == np.float32 else \
        (b.view(np.uint64) | np.uint64(_QUIET << 29)).view(np.float64)
    return np.where(np.isnan(a), qa, np.where(np.isnan(b), qb, r))


def _mul(a, b):
    """``a * b`` (x86 ``mulss``: if both are NaN, a's NaN)."""
    return _nan_first(a * b, a, b)


def _add(a, b):
    """``a + b`` (x86 ``addss``: if both are NaN, a's NaN)."""
    return _nan_first(a + b, a, b)


def _sub(a, b):
    """``a - b`` (x86 ``subss``: if both are NaN, a's NaN)."""
    return _nan_first(a - b, a, b)


def _outer(wd: np.ndarray, yd: np.ndarray) -> np.ndarray:
    """``wd[o] * yd[t]`` for every pair: one float32 multiply, the weight's factor first -> (T, O)."""
    return _mul(wd[None, :], yd[:, None])


def _outer_y_first(yd: np.ndarray, wd: np.ndarray) -> np.ndarray:
    """``yd[t] * wd[o]``: the activation's factor first."""
    return _mul(yd[:, None], wd[None, :])


def _f(i: np.ndarray) -> np.ndarray:
    """C's ``(float) int`` of an exact integer held in float32/float64 (round to nearest even)."""
    return i.astype(np.float32)


# ==================================================================================================
# F32 / F16 / BF16: vec.cpp's scalar loops, double accumulation

def _dot_float(wv: np.ndarray, yv: np.ndarray, w_first: bool) -> np.ndarray:
    """``ggml_float sumf = 0.0; for i: sumf += (ggml_float)(x[i]*y[i]); *s = (float) sumf;``

    ``wv`` (O, n) and ``yv`` (T, n) float32 -> (T, O). The product is a float32 multiply (exact for
    F16 and BF16 inputs unless it over- or underflows), widened to double; the double additions run
    left to right from +0.0, one numpy addition per ``i`` over all (token, row) pairs. ``w_first``:
    the compiled product has the weight as its first operand (F32) or the activation (F16, BF16).
    """
    T, n = yv.shape
    O = wv.shape[0]
    wt, yt = wv.T[:, None, :], yv.T[:, :, None]                          # (n, 1, O), (n, T, 1)
    prod = _mul(wt, yt) if w_first else _mul(yt, wt)                      # float32 x[i]*y[i]: (n, T, O)
    sumf = np.zeros((T, O), dtype=np.float64)                             # sumf = 0.0
    for i in range(n):                                                    # order matters: sequential
        sumf = sumf + prod[i]                                             # + (ggml_float)(x[i]*y[i])
    nan = np.isnan(sumf)
    if nan.any():                     # which NaN: redo those sums with ``addsd`` (sumf first) semantics
        sub = prod[:, nan].astype(np.float64)
        s = np.zeros(sub.shape[1], dtype=np.float64)
        for i in range(n):
            s = _add(s, sub[i])
        sumf[nan] = s
    return sumf.astype(np.float32)                                        # *s = sumf (double -> float)


def _vec_dot_f32(W, y, n_in):
    return _dot_float(W.reshape(W.shape[0], -1).copy().view("<f4").astype(np.float32), y.v, True)


def _vec_dot_f16(W, y, n_in):
    return _dot_float(f16_to_f32(W.reshape(W.shape[0], -1).copy().view("<u2")), y.v, False)


def _vec_dot_bf16(W, y, n_in):
    return _dot_float(bf16_to_f32(W.reshape(W.shape[0], -1).copy().view("<u2")), y.v, False)


# ==================================================================================================
# weights with Q8_0 activations

def _vec_dot_q4_0(W, y, n_in):
    """ggml_vec_dot_q4_0_q8_0: ``sumi = Σ (q - 8) * y.qs``; ``sumf += sumi*dx*dy`` = ``(f(sumi)*dx)*dy``."""
    d = _f16_at(W, 0)
    q = _nibbles32(_bytes(W, 2, 16)) - 8
    isum = _isum(y.qs, q, 32 * 8 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for ib in range(isum.shape[0]):                   # order matters: sequential float sum over blocks
        sumf = _add(sumf, _mul(_mul(_f(isum[ib]), d[None, :, ib]), y.d[:, ib, None]))
    return sumf


def _vec_dot_q5_0(W, y, n_in):
    """ggml_vec_dot_q5_0_q8_0: q = (nibble | bit 4 from qh) - 16; ``sumf += (dx*dy) * f(sumi)``."""
    d = _f16_at(W, 0)
    qh = _u32(W, 2, 1)                                                   # (O, nb, 1)
    j = np.arange(32)
    q = (_nibbles32(_bytes(W, 6, 16)) | (((qh >> j) & 1) << 4)) - 16
    isum = _isum(y.qs, q, 32 * 16 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for ib in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_f(isum[ib]), _outer_y_first(y.d[:, ib], d[:, ib])))   # compiled: dy*dx
    return sumf


def _vec_dot_q8_0(W, y, n_in):
    """ggml_vec_dot_q8_0_q8_0 (x86 scalar tail): ``sumf += f(sumi) * (dx*dy)``."""
    d = _f16_at(W, 0)
    q = W[..., 2:34].view(np.int8)
    isum = _isum(y.qs, q, 32 * 128 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for ib in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_f(isum[ib]), _outer_y_first(y.d[:, ib], d[:, ib])))   # compiled: dy*dx
    return sumf


def _vec_dot_iq4_nl(W, y, n_in):
    """ggml_vec_dot_iq4_nl_q8_0: q = kvalues_iq4nl[nibble]; ``d = dy*dx``; ``sumf += d * f(sumi1 + sumi2)``."""
    d = _f16_at(W, 0)
    q = KVALUES_IQ4NL.astype(np.int64)[_nibbles32(_bytes(W, 2, 16))]
    isum = _isum(y.qs, q, 32 * 127 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for ib in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_f(isum[ib]), _outer(d[:, ib], y.d[:, ib])))   # compiled: dx*dy
    return sumf


def _vec_dot_mxfp4(W, y, n_in):
    """ggml_vec_dot_mxfp4_q8_0 (x86 scalar tail): q = kvalues_fp4[nibble] (e2m1 doubled);
    ``d = dy * GGML_E8M0_TO_FP32_HALF(e)``; ``sumf += d * f(sumi1 + sumi2)``."""
    e = e8m0_to_f32_half(W[..., 0])                                      # (O, nb)
    q = kvalues_mxfp4.astype(np.int64)[_nibbles32(_bytes(W, 1, 16))]
    isum = _isum(y.qs, q, 32 * 12 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for ib in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_outer_y_first(y.d[:, ib], e[:, ib]), _f(isum[ib])))
    return sumf


_UE4M3 = np.array([ue4m3_to_f32(i) for i in range(256)], dtype=np.float32)   # GGML_CPU_UE4M3_TO_FP32


def _vec_dot_nvfp4(W, y, n_in):
    """ggml_vec_dot_nvfp4_q8_0 (x86 scalar tail). A block = 64 values = 4 sub-blocks of 16 = 2 Q8_0
    blocks. Sub-block s: ``d = ue4m3(x.d[s])`` (includes the 0.5 of the doubled table),
    ``dy`` = the scale of Q8_0 block ``2*ib + s/2``; values 16s+j (j<8) = kv[qs[8s+j] & 0xF],
    16s+8+j = kv[qs[8s+j] >> 4]; ``sumf += dy * d * f(sumi_lo + sumi_hi)`` = ``((dy*d) * f(..))``."""
    O, nb, _ = W.shape
    ds = _UE4M3[W[..., 0:4]]                                             # (O, nb, 4)
    qs = _bytes(W, 4, 32).reshape(O, nb, 4, 8)
    kv = kvalues_mxfp4.astype(np.int64)
    q = np.concatenate([kv[qs & 0xF], kv[qs >> 4]], axis=-1)             # (O, nb, 4, 16)
    q = q.reshape(O, nb * 4, 16)
    T = y.qs.shape[0]
    yq = y.qs.reshape(T, -1, 16)                                         # sub-block k of the row
    isum = _isum(yq, q, 16 * 12 * 128)                                   # (nb*4, T, O)
    ds = ds.reshape(O, nb * 4)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for k in range(isum.shape[0]):                                       # ib, then s_idx: sequential
        dy = y.d[:, k // 2]                                              # Q8_0 block 2*ib + s/2 == k/2
        sumf = _add(sumf, _mul(_outer_y_first(dy, ds[:, k]), _f(isum[k])))
    return sumf


def _vec_dot_lowbit(W, y, q, per_block: int, d0_first: bool):
    """Q1_0/Q2_0 (ggml_vec_dot_q1_0_q8_0_generic / _q2_0_): ``per_block`` Q8_0 blocks per weight block;
    ``float sumi = 0.0f; for k: sumi += dy_k * f(sumi_block_k); sumf += d0 * sumi``."""
    O, nb, _ = W.shape
    d0 = _f16_at(W, 0)
    T = y.qs.shape[0]
    isum = _isum(y.qs, q.reshape(O, nb * per_block, 32), 32 * 2 * 128)   # one group per Q8_0 block
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(nb):
        s = np.zeros((T, O), dtype=np.float32)                           # float sumi = 0.0f
        for k in range(per_block):
            kb = i * per_block + k
            s = _add(s, _mul(_f(isum[kb]), y.d[:, kb, None]))          # d1 * sumi_block
        # d0 * sumi: compiled with d0 first for Q1_0, sumi first for Q2_0 (NaN payloads only)
        sumf = _add(sumf, _mul(d0[None, :, i], s) if d0_first else _mul(s, d0[None, :, i]))
    return sumf


def _vec_dot_q1_0(W, y, n_in):
    """Q1_0: bit j of the block (LSB first) selects +y or -y: level = 2*bit - 1."""
    bits = np.unpackbits(W[..., 2:18], axis=-1, bitorder="little").astype(np.int64)   # (O, nb, 128)
    return _vec_dot_lowbit(W, y, 2 * bits - 1, 4, True)


def _vec_dot_q2_0(W, y, n_in):
    """Q2_0: level of value 4b+i = ((qs[b] >> 2i) & 3) - 1."""
    qs = _bytes(W, 2, 16)
    q = ((qs[..., None] >> (2 * np.arange(4))) & 3) - 1                  # (O, nb, 16, 4)
    return _vec_dot_lowbit(W, y, q.reshape(*qs.shape[:-1], 64), 2, False)


# ==================================================================================================
# weights with Q8_1 activations

def _vec_dot_q_1(W, y, q, d, m, bound):
    """Q4_1/Q5_1: ``sumf += (dx*dy) * f(sumi) + mx*sy`` = ``sumf + (((dx*dy)*f(sumi)) + (mx*sy))``."""
    isum = _isum(y.qs, q, bound)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for ib in range(isum.shape[0]):
        t1 = _mul(_f(isum[ib]), _outer_y_first(y.d[:, ib], d[:, ib]))        # compiled: dy*dx
        t2 = _outer_y_first(y.s[:, ib], m[:, ib])                           # compiled: sy*mx
        sumf = _add(sumf, _add(t1, t2))
    return sumf


def _vec_dot_q4_1(W, y, n_in):
    """ggml_vec_dot_q4_1_q8_1: q = nibble (0..15), d at byte 0, m at byte 2."""
    return _vec_dot_q_1(W, y, _nibbles32(_bytes(W, 4, 16)), _f16_at(W, 0), _f16_at(W, 2), 32 * 15 * 128)


def _vec_dot_q5_1(W, y, n_in):
    """ggml_vec_dot_q5_1_q8_1: q = nibble | (bit j of qh) << 4 (0..31)."""
    qh = _u32(W, 4, 1)
    q = _nibbles32(_bytes(W, 8, 16)) | (((qh >> np.arange(32)) & 1) << 4)
    return _vec_dot_q_1(W, y, q, _f16_at(W, 0), _f16_at(W, 2), 32 * 31 * 128)


# ==================================================================================================
# weights with Q8_K activations: K-quants

def _k_sum_lanes(W, y, levels, d, bound_lane):
    """``aux32[l]`` (ints) -> ``sums[l] += d * f(aux32[l])`` per block; returns the 8 float lanes
    (8, T, O) after the last block. ``levels`` (O, nb, 256) = scale(p) * x(p) per position."""
    nb = levels.shape[1]
    aux32 = _isum(_lanes(y.qs), _lanes(levels), bound_lane)               # (nb*8, T, O)
    aux32 = aux32.reshape(nb, 8, *aux32.shape[1:])
    sums = np.zeros(aux32.shape[1:], dtype=np.float32)                    # float sums[8] = {0}
    for i in range(nb):                                                   # order matters: block by block
        dd = _outer(d[:, i], y.d[:, i])                                   # GGML_FP16_TO_FP32(x.d) * y.d
        sums = _add(sums, _mul(_f(aux32[i]), dd[None]))
    return sums


def _finish_lanes(sumf, sums, first=("acc",) * 8):
    """``for (l = 0; l < 8; ++l) sumf += sums[l];`` -- order matters. ``first[l]`` says which operand
    of addition l the compiled code puts first ("acc" or "lane"; NaN payloads only)."""
    for l in range(8):
        sumf = _add(sumf, sums[l]) if first[l] == "acc" else _add(sums[l], sumf)
    return sumf


def _scales_mins_k4(sc: np.ndarray):
    """The 8 6-bit scales and mins of Q4_K/Q5_K from the 12 ``scales`` bytes (the ``utmp``/kmask
    unpacking of the dot product equals ``get_scale_min_k4``): (O, nb, 8) each."""
    j = np.arange(4)
    lo_s, lo_m = sc[..., j] & 63, sc[..., j + 4] & 63
    hi_s = (sc[..., j + 8] & 0xF) | ((sc[..., j] >> 6) << 4)
    hi_m = (sc[..., j + 8] >> 4) | ((sc[..., j + 4] >> 6) << 4)
    return np.concatenate([lo_s, hi_s], -1), np.concatenate([lo_m, hi_m], -1)


def _vec_dot_q2_K(W, y, n_in):
    """ggml_vec_dot_q2_K_q8_K: scales[16] | qs[64] | d | dmin. Value p: q = (qs[32*(p/128) + p%32]
    >> 2*((p%128)/32)) & 3, scale = scales[p/16] & 0xF, min = scales[p/16] >> 4.
    ``summs = Σ bsums[j]*min[j]``; ``isum = Σ scale*q*y``; ``dall = dy*dx``; ``dmin = dy*dxmin``;
    ``sumf += dall * f(isum) - dmin * f(summs)``."""
    O, nb, _ = W.shape
    sc = _bytes(W, 0, 16)
    qs = _bytes(W, 16, 64).reshape(O, nb, 2, 1, 32)
    q = ((qs >> (2 * np.arange(4))[:, None]) & 3).reshape(O, nb, 256)
    d, dmin = _f16_at(W, 80), _f16_at(W, 82)
    isum = _isum(y.qs, q * np.repeat(sc & 0xF, 16, axis=-1), 256 * 45 * 128)
    summs = _isum(y.bsums, sc >> 4, 16 * 15 * 4096)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(nb):
        dall = _outer_y_first(y.d[:, i], d[:, i])
        dm = _outer_y_first(y.d[:, i], dmin[:, i])
        sumf = _add(sumf, _sub(_mul(_f(isum[i]), dall), _mul(dm, _f(summs[i]))))
    return sumf


def _vec_dot_q3_K(W, y, n_in):
    """ggml_vec_dot_q3_K_q8_K: hmask[32] | qs[64] | scales[12] | d. Value p: a = ((qs[32*(p/128) +
    p%32] >> 2*((p%128)/32)) & 3) - (hmask[p%32] bit p/32 ? 0 : 4); scale = the 6-bit scales[p/16]
    - 32 (``auxs`` unpacking). Lanes as in the table; result ``0 + sums[0] + ... + sums[7]``."""
    O, nb, _ = W.shape
    hm = _bytes(W, 0, 32)
    qs = _bytes(W, 32, 64).reshape(O, nb, 2, 1, 32)
    low = ((qs >> (2 * np.arange(4))[:, None]) & 3).reshape(O, nb, 256)
    p = np.arange(256)
    high = (hm[..., p % 32] >> (p // 32)) & 1
    a = low - np.where(high == 1, 0, 4)
    raw = _bytes(W, 96, 12)
    j = np.arange(4)
    lo4 = np.concatenate([raw[..., j] & 0xF, raw[..., j + 4] & 0xF, raw[..., j] >> 4, raw[..., j + 4] >> 4], -1)
    hi2 = np.concatenate([(raw[..., j + 8] >> s) & 3 for s in (0, 2, 4, 6)], -1)
    scales = (lo4 | (hi2 << 4)) - 32                                      # int8 (scales[j] - 32)
    d = _f16_at(W, 108)
    sums = _k_sum_lanes(W, y, a * np.repeat(scales, 16, axis=-1), d, 32 * 128 * 128)
    return _finish_lanes(np.zeros(sums.shape[1:], dtype=np.float32), sums)


def _vec_dot_k4(W, y, a, d, dmin, scales, mins, bound_lane, finish):
    """Q4_K/Q5_K: ``sumi = Σ_j bsums[j]*mins[j/2]``; lanes with scales[p/32]; ``sumf -= dmin*dy *
    f(sumi)`` per block; result ``sumf + sums[0] + ... + sums[7]``."""
    nb = a.shape[1]
    sums = _k_sum_lanes(W, y, a * np.repeat(scales, 32, axis=-1), d, bound_lane)
    sumi = _isum(y.bsums, np.repeat(mins, 2, axis=-1), 16 * 63 * 4096)   # (nb, T, O)
    sumf = np.zeros(sums.shape[1:], dtype=np.float32)
    for i in range(nb):
        dm = _outer(dmin[:, i], y.d[:, i])                                # GGML_FP16_TO_FP32(x.dmin) * y.d
        sumf = _sub(sumf, _mul(dm, _f(sumi[i])))
    return _finish_lanes(sumf, sums, finish)


def _k4_nibbles(qs: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K low bits: value 64j + l = qs[32j + l] & 0xF, 64j + 32 + l = qs[32j + l] >> 4."""
    O, nb, _ = qs.shape
    q = qs.reshape(O, nb, 4, 32)
    return np.concatenate([q & 0xF, q >> 4], axis=-1).reshape(O, nb, 256)


def _vec_dot_q4_K(W, y, n_in):
    """ggml_vec_dot_q4_K_q8_K: d | dmin | scales[12] | qs[128]."""
    scales, mins = _scales_mins_k4(_bytes(W, 4, 12))
    a = _k4_nibbles(_bytes(W, 16, 128))
    # compiled final sum: (sums[1] + (sumf + sums[0])) + sums[2] + ... (NaN payloads only)
    return _vec_dot_k4(W, y, a, _f16_at(W, 0), _f16_at(W, 2), scales, mins, 32 * 63 * 15 * 128,
                       ("acc", "lane", "acc", "acc", "acc", "acc", "acc", "acc"))


def _vec_dot_q5_K(W, y, n_in):
    """ggml_vec_dot_q5_K_q8_K: d | dmin | scales[12] | qh[32] | qs[128]; a += 16 if qh[p%32] bit p/32."""
    scales, mins = _scales_mins_k4(_bytes(W, 4, 12))
    qh = _bytes(W, 16, 32)
    p = np.arange(256)
    a = _k4_nibbles(_bytes(W, 48, 128)) + 16 * ((qh[..., p % 32] >> (p // 32)) & 1)
    # compiled final sum: (sums[0] + sumf) + sums[1] + ... (NaN payloads only)
    return _vec_dot_k4(W, y, a, _f16_at(W, 0), _f16_at(W, 2), scales, mins, 32 * 63 * 31 * 128,
                       ("lane", "acc", "acc", "acc", "acc", "acc", "acc", "acc"))


def _vec_dot_q6_K(W, y, n_in):
    """ggml_vec_dot_q6_K_q8_K: ql[128] | qh[64] | scales[16] (int8) | d. In half h (values 128h..):
    a[l] = (ql[l] & 0xF | (qh[l] & 3) << 4) - 32, a[l+32] = (ql[l+32] & 0xF | ((qh[l] >> 2) & 3) << 4)
    - 32, a[l+64] = (ql[l] >> 4 | ((qh[l] >> 4) & 3) << 4) - 32, a[l+96] = (ql[l+32] >> 4 | (qh[l] >>
    6) << 4) - 32 (ql, qh offset by 64h, 32h); scale = scales[p/16]; result ``0 + Σ sums[l]``."""
    O, nb, _ = W.shape
    ql = _bytes(W, 0, 128).reshape(O, nb, 2, 2, 32)                       # half, (l | l+32), l
    qh = _bytes(W, 128, 64).reshape(O, nb, 2, 1, 32)
    lo = np.concatenate([ql & 0xF, ql >> 4], axis=2 + 1)                  # (O, nb, 2, 4, 32): l, l+32, l+64, l+96
    hi = (qh >> (2 * np.arange(4))[:, None]) & 3
    a = ((lo | (hi << 4)) - 32).reshape(O, nb, 256)
    scales = W[..., 192:208].view(np.int8).astype(np.int64)
    d = _f16_at(W, 208)
    sums = _k_sum_lanes(W, y, a * np.repeat(scales, 16, axis=-1), d, 32 * 32 * 128 * 128)
    return _finish_lanes(np.zeros(sums.shape[1:], dtype=np.float32), sums)


# ==================================================================================================
# weights with Q8_K activations: ternary

_POW3 = np.array([1, 3, 9, 27, 81, 243], dtype=np.int64)


def _trit(b: np.ndarray, k: int) -> np.ndarray:
    """``uint8_t q = b * pow3[k]; uint16_t xi = ((uint16_t) q * 3) >> 8;`` -> level xi - 1."""
    q = (b * _POW3[k]) & 0xFF
    return ((q * 3) >> 8) - 1


def _vec_dot_tq1_0(W, y, n_in):
    """ggml_vec_dot_tq1_0_q8_K_generic: qs[48] | qh[4] | d; value 32k+m = trit k of qs[m] (m < 32),
    160+16k+m = trit k of qs[32+m], 240+4k+j = trit k of qh[j]; ``sumf += f(sum) * (dx*dy)``."""
    qs = _bytes(W, 0, 48)
    qh = _bytes(W, 48, 4)
    parts = [_trit(qs[..., :32], k) for k in range(5)] + [_trit(qs[..., 32:], k) for k in range(5)] \
        + [_trit(qh, k) for k in range(4)]
    q = np.concatenate(parts, axis=-1)
    d = _f16_at(W, 52)
    isum = _isum(y.qs, q, 256 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(isum.shape[0]):
        sumf = _add(_mul(_f(isum[i]), _outer(d[:, i], y.d[:, i])), sumf)   # compiled: term + sumf
    return sumf


def _vec_dot_tq2_0(W, y, n_in):
    """ggml_vec_dot_tq2_0_q8_K_generic: qs[64] | d; value 128h+32l+k = ((qs[32h+k] >> 2l) & 3) - 1;
    ``d = dy * dx``; ``sumf += f(sumi) * d``."""
    O, nb, _ = W.shape
    qs = _bytes(W, 0, 64).reshape(O, nb, 2, 1, 32)
    q = (((qs >> (2 * np.arange(4))[:, None]) & 3) - 1).reshape(O, nb, 256)
    d = _f16_at(W, 64)
    isum = _isum(y.qs, q, 256 * 2 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_f(isum[i]), _outer_y_first(y.d[:, i], d[:, i])))
    return sumf


# ==================================================================================================
# weights with Q8_K activations: i-quants

def _signs8(sign_bytes: np.ndarray) -> np.ndarray:
    """A sign byte -> 8 factors: ``signs & kmask_iq2xs[j] ? -1 : 1`` (kmask = 1 << j)."""
    return np.where((sign_bytes[..., None] & KMASK.astype(np.int64)) != 0, -1, 1)


def _iq_sum(W, y, levels, d, factor, bound):
    """``bsum`` (int) per block -> ``sumf += (dx*dy) * f(bsum)``; result ``factor * sumf``."""
    isum = _isum(y.qs, levels, bound)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_f(isum[i]), _outer(d[:, i], y.d[:, i])))
    return sumf if factor is None else _mul(sumf, f32(factor))


def _vec_dot_iq2_xxs(W, y, n_in):
    """ggml_vec_dot_iq2_xxs_q8_K: d | qs u16[32]. Per 32 values (ib32): two uint32 ``aux32``: bytes of
    aux32[0] = 4 grid indices (8 values each), signs of group l = ksigns[(aux32[1] >> 7l) & 127],
    ``ls = 2*(aux32[1] >> 28) + 1``; ``bsum = Σ ls * sumi``; result ``0.125f * sumf``."""
    O, nb, _ = W.shape
    aux = _u32(W, 2, 16).reshape(O, nb, 8, 2)
    idx = (aux[..., 0:1] >> (8 * np.arange(4))) & 0xFF                   # (O, nb, 8, 4)
    signs = KSIGNS.astype(np.int64)[(aux[..., 1:2] >> (7 * np.arange(4))) & 127]
    ls = 2 * (aux[..., 1] >> 28) + 1                                      # (O, nb, 8)
    grid = IQ2XXS_GRID.astype(np.int64)[idx] * _signs8(signs)             # (O, nb, 8, 4, 8)
    levels = (grid * ls[..., None, None]).reshape(O, nb, 256)
    return _iq_sum(W, y, levels, _f16_at(W, 0), 0.125, 256 * 31 * 43 * 128)


def _vec_dot_iq2_xs(W, y, n_in):
    """ggml_vec_dot_iq2_xs_q8_K: d | qs u16[32] | scales[8]. Group g (8 values): grid = iq2xs_grid[qs[g]
    & 511], signs = ksigns[qs[g] >> 9]; groups 0,1 of each ib32 use ls1 = 2*(scales & 0xF)+1, groups 2,3
    ls2 = 2*(scales >> 4)+1; result ``0.125f * sumf``."""
    O, nb, _ = W.shape
    qs = _u16(W, 2, 32)                                                   # (O, nb, 32 groups)
    grid = IQ2XS_GRID.astype(np.int64)[qs & 511] * _signs8(KSIGNS.astype(np.int64)[qs >> 9])
    sc = _bytes(W, 66, 8)
    ls = np.stack([2 * (sc & 0xF) + 1, 2 * (sc >> 4) + 1], axis=-1)       # (O, nb, 8, 2)
    ls = np.repeat(ls, 2, axis=-1).reshape(O, nb, 32)                     # per group
    levels = (grid * ls[..., None]).reshape(O, nb, 256)
    return _iq_sum(W, y, levels, _f16_at(W, 0), 0.125, 256 * 31 * 43 * 128)


def _vec_dot_iq2_s(W, y, n_in):
    """ggml_vec_dot_iq2_s_q8_K: d | qs[32] | signs[32] | qh[8] | scales[8]. Group l of ib32: grid =
    iq2s_grid[qs[4ib32+l] | (qh[ib32] << (8-2l) & 0x300)], signs = signs[4ib32+l]; ls1 for l < 2, ls2
    for l >= 2; ``bsum += ls1*sumi1 + ls2*sumi2``; result ``0.125f * sumf``."""
    O, nb, _ = W.shape
    qs = _bytes(W, 2, 32).reshape(O, nb, 8, 4)
    sg = _bytes(W, 34, 32).reshape(O, nb, 8, 4)
    qh = _bytes(W, 66, 8)
    l = np.arange(4)
    idx = qs | ((qh[..., None] << (8 - 2 * l)) & 0x300)
    grid = IQ2S_GRID.astype(np.int64)[idx] * _signs8(sg)                  # (O, nb, 8, 4, 8)
    sc = _bytes(W, 74, 8)
    ls = np.repeat(np.stack([1 + 2 * (sc & 0xF), 1 + 2 * (sc >> 4)], axis=-1), 2, axis=-1)   # (O, nb, 8, 4)
    levels = (grid * ls[..., None]).reshape(O, nb, 256)
    return _iq_sum(W, y, levels, _f16_at(W, 0), 0.125, 256 * 31 * 43 * 128)


def _vec_dot_iq3_xxs(W, y, n_in):
    """ggml_vec_dot_iq3_xxs_q8_K: d | qs[64] | scales_and_signs u32[8]. Group l (8 values) of ib32:
    grid1 = iq3xxs_grid[q3[2l]] (values 0..3), grid2 = iq3xxs_grid[q3[2l+1]] (values 4..7), signs =
    ksigns[(aux32 >> 7l) & 127]; ``ls = 2*(aux32 >> 28) + 1``; result ``0.25f * sumf``."""
    O, nb, _ = W.shape
    q3 = _bytes(W, 2, 64).reshape(O, nb, 8, 4, 2)
    aux = _u32(W, 66, 8)                                                  # (O, nb, 8)
    g = IQ3XXS_GRID.astype(np.int64)[q3]                                  # (O, nb, 8, 4, 2, 4)
    g = g.reshape(O, nb, 8, 4, 8)
    signs = KSIGNS.astype(np.int64)[(aux[..., None] >> (7 * np.arange(4))) & 127]
    ls = 2 * (aux >> 28) + 1
    levels = (g * _signs8(signs) * ls[..., None, None]).reshape(O, nb, 256)
    return _iq_sum(W, y, levels, _f16_at(W, 0), 0.25, 256 * 31 * 62 * 128)


def _vec_dot_iq3_s(W, y, n_in):
    """ggml_vec_dot_iq3_s_q8_K: d | qs[64] | qh[8] | signs[32] | scales[4]. Group l of ib32: grid1 =
    iq3s_grid[qs[8ib32+2l] | ((qh[ib32] << (8-2l)) & 256)], grid2 = iq3s_grid[qs[8ib32+2l+1] |
    ((qh[ib32] << (7-2l)) & 256)], signs = signs[4ib32+l]; ls = 2*(scales[ib32/2] nibble)+1 (low
    nibble for even ib32); result ``sumf`` (no factor)."""
    O, nb, _ = W.shape
    qs = _bytes(W, 2, 64).reshape(O, nb, 8, 4, 2)
    qh = _bytes(W, 66, 8)[..., None]                                      # (O, nb, 8, 1)
    l = np.arange(4)
    hi1 = (qh << (8 - 2 * l)) & 256
    hi2 = (qh << (7 - 2 * l)) & 256
    idx = qs | np.stack([hi1, hi2], axis=-1)
    g = IQ3S_GRID.astype(np.int64)[idx].reshape(O, nb, 8, 4, 8)
    sg = _bytes(W, 74, 32).reshape(O, nb, 8, 4)
    sc = _bytes(W, 106, 4)
    ls = (2 * np.stack([sc & 0xF, sc >> 4], axis=-1) + 1).reshape(O, nb, 8)
    levels = (g * _signs8(sg) * ls[..., None, None]).reshape(O, nb, 256)
    return _iq_sum(W, y, levels, _f16_at(W, 0), None, 256 * 31 * 15 * 128)


def _iq1_sum(W, y, levels, delta_levels, d):
    """IQ1_S/IQ1_M: ``sumf += (d*dy) * (f(sumi) + 0.125f * f(sumi_delta))``."""
    isum = _isum(y.qs, levels, 256 * 15 * 128)
    idel = _isum(y.qs, delta_levels, 256 * 15 * 128)
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(isum.shape[0]):
        sumf = _add(sumf, _mul(_f(isum[i]) + f32(0.125) * _f(idel[i]), _outer(d[:, i], y.d[:, i])))   # IQ1S_DELTA
    return sumf


def _vec_dot_iq1_s(W, y, n_in):
    """ggml_vec_dot_iq1_s_q8_K: d | qs[32] | qh u16[8]. ib (32 values): ls = 2*((qh >> 12) & 7) + 1,
    delta = qh & 0x8000 ? -1 : 1; group l: iq1s_grid[qs[4ib+l] | ((qh >> 3l) & 7) << 8] (int8 -1/0/1).
    ``sumi += ls * Σ q8*grid``; ``sumi1 += ls*delta*(bsums[2ib] + bsums[2ib+1])`` (= Σ ls*delta*q8
    over the 32 values: the bsums are exact sums of the same q8)."""
    O, nb, _ = W.shape
    qs = _bytes(W, 2, 32).reshape(O, nb, 8, 4)
    qh = _u16(W, 34, 8)                                                   # (O, nb, 8)
    idx = qs | (((qh[..., None] >> (3 * np.arange(4))) & 7) << 8)
    grid = IQ1S_GRID.astype(np.int64)[idx].reshape(O, nb, 8, 32)
    ls = 2 * ((qh >> 12) & 7) + 1
    delta = np.where(qh & 0x8000, -1, 1)
    levels = (grid * ls[..., None]).reshape(O, nb, 256)
    delta_levels = np.repeat(ls * delta, 32, axis=-1)
    return _iq1_sum(W, y, levels, delta_levels, _f16_at(W, 0))


def _vec_dot_iq1_m(W, y, n_in):
    """ggml_vec_dot_iq1_m_q8_K: qs[32] | qh[16] | scales[8]. ``scale.u16`` = top nibbles of the four
    uint16 of ``scales`` -> an fp16 (the block's d). ib (32 values), group l (8 values): grid =
    iq1s_grid[qs[4ib+l] | ((qh[2ib + l/2] << (8 - 4*(l%2))) & 0x700)], delta = qh[2ib + l/2] bit
    (3 or 7) ? -1 : 1; ls = 2*((sc[ib/2] >> (6*(ib%2) + 3*(l/2))) & 7) + 1.
    ``sumi1 = Σ ls*grid*q8``, ``sumi2 = Σ ls*delta*q8``; ``sumf += (scale*dy) * (f(sumi1) + 0.125f*f(sumi2))``."""
    O, nb, _ = W.shape
    qs = _bytes(W, 0, 32).reshape(O, nb, 8, 4)
    qh = _bytes(W, 32, 16).reshape(O, nb, 8, 2)
    sc = _u16(W, 48, 4)                                                   # (O, nb, 4)
    u16 = (sc[..., 0] >> 12) | ((sc[..., 1] >> 8) & 0x00F0) | ((sc[..., 2] >> 4) & 0x0F00) | (sc[..., 3] & 0xF000)
    d = f16_to_f32(u16.astype(np.uint16))
    l = np.arange(4)
    qhl = qh[..., l // 2]                                                 # (O, nb, 8, 4)
    idx = qs | ((qhl << (8 - 4 * (l % 2))) & 0x700)
    grid = IQ1S_GRID.astype(np.int64)[idx]                                # (O, nb, 8, 4, 8)
    delta = np.where(qhl & np.where(l % 2 == 0, 0x08, 0x80), -1, 1)        # (O, nb, 8, 4)
    ib = np.arange(8)
    scw = sc[..., ib // 2]                                                # (O, nb, 8)
    ls = 2 * ((scw[..., None] >> (6 * (ib % 2)[:, None] + 3 * (l // 2))) & 7) + 1   # (O, nb, 8, 4)
    levels = (grid * ls[..., None]).reshape(O, nb, 256)
    delta_levels = np.repeat(ls * delta, 8, axis=-1).reshape(O, nb, 256)
    return _iq1_sum(W, y, levels, delta_levels, d)


def _vec_dot_iq4_xs(W, y, n_in):
    """ggml_vec_dot_iq4_xs_q8_K: d | scales_h u16 | scales_l[4] | qs[128]. Sub-block ib (32 values):
    ls = (scales_l[ib/2] nibble) | ((scales_h >> 2ib) & 3) << 4; values 32ib+j = kv[qs[16ib+j] & 0xF],
    32ib+16+j = kv[qs[16ib+j] >> 4]; ``d1 = d4d8 * f(ls - 32)``; ``sumf += d1 * f(sumi1 + sumi2)``
    -- one float step per sub-block."""
    O, nb, _ = W.shape
    d = _f16_at(W, 0)
    h = _u16(W, 2, 1)                                                     # (O, nb, 1)
    sl = _bytes(W, 4, 4)
    ib = np.arange(8)
    ls = ((sl[..., ib // 2] >> (4 * (ib % 2))) & 0xF) | (((h >> (2 * ib)) & 3) << 4)   # (O, nb, 8)
    qs = _bytes(W, 8, 128).reshape(O, nb, 8, 16)
    kv = KVALUES_IQ4NL.astype(np.int64)
    q = np.concatenate([kv[qs & 0xF], kv[qs >> 4]], axis=-1).reshape(O, nb * 8, 32)
    T = y.qs.shape[0]
    isum = _isum(y.qs.reshape(T, -1, 32), q, 32 * 127 * 128)             # (nb*8, T, O)
    lsf = (ls - 32).astype(np.float32)                                    # (float)(ls - 32): exact
    sumf = np.zeros(isum.shape[1:], dtype=np.float32)
    for i in range(nb):
        d4d8 = _outer(d[:, i], y.d[:, i])
        for k in range(8):                                                # order matters
            d1 = _mul(lsf[None, :, i, k], d4d8)
            sumf = _add(sumf, _mul(_f(isum[8 * i + k]), d1))
    return sumf


# ==================================================================================================
# the op

_VEC_DOT = {
    "F32": _vec_dot_f32, "F16": _vec_dot_f16, "BF16": _vec_dot_bf16,
    "Q4_0": _vec_dot_q4_0, "Q4_1": _vec_dot_q4_1, "Q5_0": _vec_dot_q5_0, "Q5_1": _vec_dot_q5_1,
    "Q8_0": _vec_dot_q8_0, "IQ4_NL": _vec_dot_iq4_nl, "MXFP4": _vec_dot_mxfp4, "NVFP4": _vec_dot_nvfp4,
    "Q1_0": _vec_dot_q1_0, "Q2_0": _vec_dot_q2_0,
    "Q2_K": _vec_dot_q2_K, "Q3_K": _vec_dot_q3_K, "Q4_K": _vec_dot_q4_K, "Q5_K": _vec_dot_q5_K,
    "Q6_K": _vec_dot_q6_K, "TQ1_0": _vec_dot_tq1_0, "TQ2_0": _vec_dot_tq2_0,
    "IQ2_XXS": _vec_dot_iq2_xxs, "IQ2_XS": _vec_dot_iq2_xs, "IQ2_S": _vec_dot_iq2_s,
    "IQ3_XXS": _vec_dot_iq3_xxs, "IQ3_S": _vec_dot_iq3_s, "IQ1_S": _vec_dot_iq1_s, "IQ1_M": _vec_dot_iq1_m,
    "IQ4_XS": _vec_dot_iq4_xs,
}

_CHUNK_ELEMS = 1 << 22   # bound on the elements of the work arrays of one chunk of output rows


def mul_mat(w_type, w_raw, n_out: int, n_in: int, x) -> np.ndarray:
    """``ggml_mul_mat(w, x)`` of the portable CPU build: ``w`` a ``w_type`` tensor of ``n_out`` rows
    of ``n_in`` values given as its raw bytes, ``x`` float32 (n, n_in) -> float32 (n, n_out),
    ``y[t, o] = vec_dot(w row o, from_float(x row t))`` bit for bit (see the module docstring).

    ShapeError for a wrong size of ``w_raw`` or ``x``; UnsupportedTypeError for a type that cannot
    be a mul_mat weight."""
    t = live_type(w_type)
    vdt = vec_dot_type(t.name)
    n_out, n_in = int(n_out), int(n_in)
    if n_out < 0 or n_in < 0 or n_in % t.block_size:
        raise ShapeError(f"{t.name}: n_in = {n_in} must be a non-negative multiple of the block size {t.block_size}")
    vb = {"Q8_0": QK8_0, "Q8_1": QK8_1, "Q8_K": QK_K}.get(vdt, 1)
    if n_in % vb:
        raise ShapeError(f"{t.name}: n_in = {n_in} must be a multiple of {vb} ({vdt} activations)")
    x = _check_x(x, n_in)
    nb = n_in // t.block_size
    raw = np.frombuffer(memoryview(w_raw).cast("B"), dtype=np.uint8)
    need = n_out * nb * t.type_size
    if raw.size != need:
        raise ShapeError(f"{t.name} weight of {n_out} x {n_in} needs {need} bytes, got {raw.size}")
    n = x.shape[0]
    out = np.zeros((n, n_out), dtype=np.float32)
    if n == 0 or n_out == 0:
        return out
    if n_in == 0:
        return out   # sumf = 0 (no blocks)
    W = raw.reshape(n_out, nb, t.type_size)
    y = _activations(vdt, x)
    fn = _VEC_DOT[t.name]
    # chunks of output rows bound the work arrays: F32/F16/BF16 hold T*rows*n_in products; the
    # quantized types rows*n_in weight levels and T*rows*(n_in/16) integer sums at most
    per_row = n * n_in if vdt in ("F32", "F16", "BF16") else max(n_in, n * (n_in // 16))
    rows = max(1, _CHUNK_ELEMS // per_row)
    with np.errstate(all="ignore"):   # Inf/NaN arithmetic is part of the semantics
        for o0 in range(0, n_out, rows):
            out[:, o0:o0 + rows] = fn(W[o0:o0 + rows], y, n_in)
    return out
