"""MLX backend: every ggml dequantizer as whole-tensor MLX array operations.

    from ggspec import accel
    b = accel.backend("mlx")
    y = b.dequantize("Q4_K", raw, n)      # float32 numpy array, same bits as ggml's to_float

Semantics are those of ``ggspec.reference`` (ggml's ``to_float`` on x86-64), bit for bit: equal
uint32 views, signed zeros and NaN payloads included. Quantization is not done in MLX: ``quantize``
delegates to the ``numpy`` backend when it is available, else to the reference.

How exactness is kept
---------------------
* Block fields are pulled out of the raw bytes with integer ops (slices, shifts, masks); nothing is
  read through a float view except where ggml itself copies bits (F32, the Q8_K ``d``).
* fp16 -> fp32 is ggml's software conversion (``ggml_compute_fp16_to_fp32``) written in MLX ops:
  the re-biased bits times 2**-112 (which quiets a signalling NaN, as in ggml), and the
  ``0.5 + m*2**-24 - 0.5`` subnormal path, evaluated once for all 65536 patterns into the table
  that every fp16 field goes through. MLX's own float16 cast is not used. BF16 uses MLX's bfloat16
  cast only where a probe at start-up finds it equal to the bit shift for all 65536 patterns.
* Every float operation is a separate MLX elementwise op in float32, in ggml's order
  (``d * sc`` before ``* q``; ``dl*q - ml``; the int -> float conversion of each integer operand
  first). No ``mx.compile`` (fusion could contract a*b+c into an FMA; ggml's to_float has none).
* Speed (see ``_Dequantizers``): quants are decoded on packed words or gathered several int8 values
  per table item, into one int8 array that one cast turns into float32 (tables: ``_byte_tables``,
  built with numpy from ggml's grids). Two rewrites are exact by construction: the grid i-quants multiply the scale by the *signed* grid value (``db * -g`` equals
  ggml's sign flip of ``db * g`` except for a NaN ``db``: chunks with a NaN scale take the plain
  paths ``_p_*``; Q1_0 likewise), and IQ1_S/IQ1_M compute ``dl * (g + delta)`` as
  ``(dl * 0.125f) * (8*g +- 1)`` (both exact products rounded once).
* The ops run on the CPU stream by default: MLX's CPU kernels are plain IEEE binary32 (no
  flush-to-zero; checked in tests/test_accel_mlx.py). ``Backend(device="gpu")`` runs them on the
  GPU instead, without a guarantee for NaN payloads or subnormals.
* x86-64 and arm64 differ in one place: a NaN *made* by an operation (Inf*0, Inf-Inf) is 0xFFC00000
  on x86 and 0x7FC00000 on arm64. The oracle and the golden vectors are x86-64; on a machine whose
  default NaN differs, ``_Arith.mul/add/sub`` below rewrite made NaNs to x86's (probed once at
  import; ``Backend(x86_nan=True)`` forces the rewrite, for testing).

Chunks and threads (``Backend.dequantize``): a tensor of up to SINGLE_CHUNKS * CHUNK_ELEMENTS
values is one MLX graph on the calling thread and MLX's result buffer is returned as the numpy
array (no copy); a larger one is cut into CHUNK_ELEMENTS chunks, a contiguous run of them per
Python thread, each thread with its own CPU stream (MLX runs a stream's ops on one thread), each
chunk's result copied into the output. The raw bytes enter MLX about SEGMENT_BYTES at a time;
chunks are views of them. F32 and BF16 on the CPU device are not MLX ops: their to_float is a bit
copy / shift, written straight into the output (``BIT_COPIES``).

Optional Metal kernels (``mx.fast.metal_kernel``) for Q4_0, Q8_0, Q4_K, Q6_K and IQ2_XXS live in
``ggspec.accel._mlx.metal``; they are used only when ``mx.metal.is_available()``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import mlx.core as mx
except ImportError as e:  # the selector turns this into BackendUnavailable
    raise ImportError(f"the mlx backend needs the mlx package (pip install 'mlx[cpu]'): {e}", name="mlx.core") from e

from ..errors import ShapeError, UnsupportedTypeError
from ..reference.types import QK_K, live_type

F32, U16, U32, I32, U64, I64 = mx.float32, mx.uint16, mx.uint32, mx.int32, mx.uint64, mx.int64

# elements per chunk: the temporaries of one chunk (2 MB each) stay in the 1-2 MB L2 / the L3 and
# MLX's buffer pool. 512 K was faster than 1 M for 10 of 11 types in an interleaved A/B run on the
# 2-core dev machine (256 K: MLX's per-eval hand-off to the stream thread starts to dominate).
CHUNK_ELEMENTS = 1 << 19
# raw bytes copied into MLX at a time by each thread of a multi-chunk dequantize (whole chunks)
SEGMENT_BYTES = 1 << 22
# a tensor of up to SINGLE_CHUNKS * CHUNK_ELEMENTS values is dequantized as one chunk on the
# calling thread and MLX's result buffer is returned as the numpy array (no copy). Larger tensors go
# in CHUNK_ELEMENTS chunks over ``threads`` threads, each chunk's result copied into a numpy output.
# Measured on the 2-core dev machine (a VM where a page fault costs ~2 us): one 4M-value chunk
# returned without a copy was faster in a loop that drops its results (its 16 MB buffers come back
# from the allocator), but 2-3x slower than the chunked path when the results are kept, as real
# callers do: MLX's CPU allocator caches at most 32 MB of buffers and its fresh buffers use 4 KB
# pages (numpy's large arrays get huge pages), so every fresh 16 MB buffer costs ~4000 faults.
# Chunks of 512 K values keep every MLX buffer at 2 MB, inside that cache.
SINGLE_CHUNKS = 1


# --------------------------------------------------------------------------------------------------
# float arithmetic with x86-64's default NaN

def _probe_x86_nan() -> bool:
    """True when this machine makes NaNs unlike x86-64 (whose Inf*0 is 0xFFC00000)."""
    with mx.stream(mx.cpu):
        made = mx.array([np.inf], F32) * mx.array([0.0], F32)
        bits = int(np.asarray(memoryview(made.view(U32)))[0])
    return bits != 0xFFC00000


FIX_DEFAULT_NAN = _probe_x86_nan()
X86_DEFAULT_NAN = 0xFFC00000


class _Arith:
    """mul / add / sub of MLX float32 arrays; with ``fix``, a NaN made by the operation (neither
    operand NaN: Inf*0, Inf-Inf) is rewritten to x86-64's default NaN 0xFFC00000."""

    def __init__(self, fix: bool):
        self.fix = fix

    def _made_nan(self, r, a, b):
        if not self.fix:
            return r
        made = mx.isnan(r) & ~mx.isnan(a) & ~mx.isnan(b)
        return mx.where(made, mx.array(X86_DEFAULT_NAN, U32).view(F32), r)

    def mul(self, a, b):
        return self._made_nan(a * b, a, b)

    def add(self, a, b):
        return self._made_nan(a + b, a, b)

    def sub(self, a, b):
        return self._made_nan(a - b, a, b)


# --------------------------------------------------------------------------------------------------
# scalar formats, in MLX ops

def _view_f32(u):
    return u.astype(U32).view(F32)


def _bits(f):
    return f.view(U32)


def f16_to_f32(h, ar: _Arith):
    """fp16 bits (any unsigned int dtype) -> float32, operation for operation ggml_compute_fp16_to_fp32."""
    h = h.astype(U32)
    sign = (h & 0x8000) << 16
    two_w = (h & 0x7FFF) << 17                       # w + w: the sign bit shifted out
    # normal, Inf, NaN: re-bias by shifting, then scale by 2**-112 (this multiply quiets a sNaN)
    normalized = ar.mul(_view_f32((two_w >> 4) + 0x70000000), mx.array(2.0 ** -112, F32))
    # subnormal: 0.5 + m*2**-24, minus 0.5 (exact)
    denormalized = _view_f32((two_w >> 17) | 0x3F000000) - mx.array(0.5, F32)
    bits = mx.where(two_w < (1 << 27), _bits(denormalized), _bits(normalized))
    return _view_f32(sign | bits)


def f16_lut(ar: _Arith):
    """All 65536 fp16 conversions (used for the F16 tensor type, a gather is cheaper than 12 ops)."""
    return f16_to_f32(mx.arange(65536, dtype=U32), ar)


def bf16_to_f32(h):
    return _view_f32(h.astype(U32) << 16)


def e8m0_to_f32_half(x):
    """ggml_e8m0_to_fp32_half: 2**(x-128) built from bits (x < 2 are the subnormals 2**-128, 2**-127)."""
    x = x.astype(U32)
    return _view_f32(mx.where(x < 2, mx.array(0x00200000, U32) << x, (mx.maximum(x, 1) - 1) << 23))


def ue4m3_table():
    """ggml_ue4m3_to_fp32 for all 256 bytes (value * 0.5; sign bit ignored; 0x00 and 0x7F are 0)."""
    x = mx.arange(256, dtype=U32)
    exp = (x >> 3) & 0xF
    man = (x & 7).astype(F32)
    sub = man * mx.array(2.0 ** -9, F32)                                    # ldexpf(man, -9), exact
    pow2 = _view_f32((exp.astype(I32) - 7 + 127).astype(U32) << 23)          # 2**(exp-7), exact
    norm = (mx.array(1.0, F32) + man / mx.array(8.0, F32)) * pow2            # ldexpf(1 + man/8, exp-7)
    raw = mx.where(exp == 0, sub, norm)
    half = raw * mx.array(0.5, F32)
    zero = (x == 0) | (x == 0x7F)
    return mx.where(zero, mx.array(0.0, F32), half)


def f64_to_f32(lo, hi):
    """IEEE binary64 (two uint32 halves) -> binary32 with round-to-nearest-even, in integer ops.

    Same result as the C cast ``(float)double`` on x86-64 (cvtsd2ss): overflow to Inf, results below
    the float32 range to signed zero or a subnormal, a NaN quieted with its top 22 payload bits kept.
    Written in integer ops so that it runs where MLX has no float64 (the Metal GPU).
    """
    lo, hi = lo.astype(U64), hi.astype(U64)
    sign = (hi >> 31) << 31
    e = ((hi >> 20) & 0x7FF).astype(I64)
    m = ((hi & 0xFFFFF) << 32) | lo                                     # 52 mantissa bits
    is_special = e == 0x7FF
    nan_bits = mx.array(0x7FC00000, U64) | (m >> 29)                                  # quiet, payload truncated
    special = mx.where(m == 0, mx.array(0x7F800000, U64), nan_bits)

    M = mx.where(e == 0, m, m | (1 << 52))                              # significand with hidden bit
    E = e - 1023
    sh = mx.minimum(mx.maximum(mx.array(29, I64), -97 - E), 63).astype(U64)   # 29 for normal results
    q = M >> sh
    rem = M & ((mx.array(1, U64) << sh) - 1)
    half = mx.array(1, U64) << (sh - 1)
    q = q + ((rem > half) | ((rem == half) & ((q & 1) == 1))).astype(U64)
    normal = E >= -126
    biased = mx.where(normal, ((E + 126).astype(I64) << 23) + q.astype(I64), q.astype(I64))
    finite = mx.minimum(mx.maximum(biased, 0), 0x7F800000).astype(U64)
    out = sign | mx.where(is_special, special, finite)
    return _view_f32(out.astype(U32))


# --------------------------------------------------------------------------------------------------
# small tables (ggml-common.h)

KVALUES_FP4 = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]          # kvalues_mxfp4
KVALUES_IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
IQ1S_DELTA = 0.125


def _ksigns_iq2xs():
    """ksigns_iq2xs[i]: 7 sign bits plus an 8th that makes the number of set bits even."""
    return [i | ((bin(i).count("1") & 1) << 7) for i in range(128)]


# byte tables, built with numpy once (each entry: several int8 values packed little-endian into one
# uint16/uint32/uint64 item, so that one gather moves 2-8 values)
_BITS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.uint8)             # (256, 8)
_ONES64 = np.uint64(0x0101010101010101)


def _packed(a, dtype):
    """(entries, k) uint8/int8 -> (entries,) little-endian items of ``dtype`` (k bytes each)."""
    return np.ascontiguousarray(np.asarray(a).astype(np.uint8)).view("<" + np.dtype(dtype).str[1:])[:, 0].astype(dtype)


def _grid_bytes(table, nbytes):
    """A ggml grid table (uint64 / uint32 entries) -> (entries, nbytes) uint8: byte j = weight j."""
    w = np.asarray(table, dtype=np.uint64 if nbytes == 8 else np.uint32).astype("<u8" if nbytes == 8 else "<u4")
    return w.view(np.uint8).reshape(-1, nbytes)


def _neg8(g, m):
    """Per byte: g, or -g where the mask byte m is 0xFF (two's complement: g ^ m + 1). Every grid byte
    is >= 1, so no carry crosses a byte. Works on numpy and MLX uint64 arrays."""
    return (g ^ m) + (m & _ONES64)


def _pair_table(kv):
    """Two packed bytes as a little-endian uint16 w -> uint32 of the int8 values
    (kv[w & 15], kv[(w >> 8) & 15], kv[(w >> 4) & 15], kv[w >> 12]): two low-nibble values, then
    the two high-nibble values of the same bytes."""
    kv = np.asarray(kv)
    w = np.arange(65536)
    return _packed(np.stack([kv[w & 15], kv[(w >> 8) & 15], kv[(w >> 4) & 15], kv[w >> 12]], axis=1), np.uint32)


def _byte_tables():
    """The integer tables of the dequantizers, as numpy arrays (see _Dequantizers.__init__)."""
    from ..reference import grids as G
    byte_neg = _packed(_BITS * np.uint8(0xFF), np.uint64)               # sign byte -> 8 x (0xFF if bit)
    ks_neg = byte_neg[np.array(_ksigns_iq2xs())]                         # ksigns code -> 8 masks
    assert list(G.ksigns_iq2xs) == _ksigns_iq2xs()
    for g in (G.iq2xxs_grid, G.iq2xs_grid, G.iq2s_grid):
        assert _grid_bytes(g, 8).min() >= 1                             # _neg8's no-carry condition
    for g in (G.iq3xxs_grid, G.iq3s_grid):
        assert _grid_bytes(g, 4).min() >= 1
    g2xxs = _packed(_grid_bytes(G.iq2xxs_grid, 8), np.uint64)
    g2xs = _packed(_grid_bytes(G.iq2xs_grid, 8), np.uint64)
    q = np.arange(65536)
    g3 = np.asarray(G.iq3xxs_grid, dtype=np.uint32).astype(np.uint64)
    g1 = _grid_bytes(G.iq1s_grid, 8).view(np.int8).astype(np.int16) * 8            # 8 * grid, -8..8
    assert float(G.IQ1S_DELTA) == IQ1S_DELTA
    crumbs = (np.arange(256)[:, None] >> (2 * np.arange(4))) & 3
    e = np.arange(256, dtype=np.uint32)
    return {
        # Q5_0: a qh byte -> 8 bytes, 0x00 where the bit is set else 0xF0 (nibble | that = q - 16 as int8)
        "q50h": _packed((1 - _BITS) * np.uint8(0xF0), np.uint64),
        # Q5_1: a qh byte -> 8 bytes, 0x10 where the bit is set
        "q51h": _packed(_BITS * np.uint8(0x10), np.uint64),
        # Q1_0: a byte -> 8 int8 values, bit ? 1 : -1
        "q10": _packed(2 * _BITS.astype(np.int8) - 1, np.uint64),
        # Q2_0: a byte -> its 4 crumbs minus 1 as int8
        "q20": _packed(crumbs - 1, np.uint32),
        # IQ4_NL / IQ4_XS, NVFP4: two bytes -> 4 values (see _pair_table)
        "kv2_iq4nl": _pair_table(KVALUES_IQ4NL),
        "kv2_fp4": _pair_table(KVALUES_FP4),
        # ggml_e8m0_to_fp32_half for all 256 bytes (2**(x-128); x < 2: the subnormals 2**-128, 2**-127)
        "e8m0_half": np.where(e < 2, np.uint32(0x00200000) << e, (np.maximum(e, 1) - 1) << 23).astype(np.uint32).view(np.float32),
        # IQ2_XXS: grid index << 7 | ksigns code -> the 8 grid values with the signs applied (int8)
        "iq2xxs": _neg8(np.repeat(g2xxs, 128), np.tile(ks_neg, 256)),
        # IQ2_XS: the uint16 field itself (grid = q & 511, ksigns code = q >> 9) -> 8 signed values
        "iq2xs": _neg8(g2xs[q & 511], ks_neg[q >> 9]),
        "iq2s": _packed(_grid_bytes(G.iq2s_grid, 8), np.uint64),       # unsigned; signs by byte_neg
        # IQ3_XXS: two grid indices as a little-endian uint16 -> their 8 values
        "iq3xxs": np.asarray(g3[q & 255] | (g3[q >> 8] << np.uint64(32)), np.uint64),
        "iq3s": np.asarray(G.iq3s_grid, dtype=np.uint32),
        # IQ1_S / IQ1_M: index | (delta < 0) << 11 -> 8 * (grid + delta) as int8 (exact: 8*grid +- 1)
        "iq1": _packed(np.concatenate([g1 + 1, g1 - 1]).astype(np.int8), np.uint64),
        "byte_neg": byte_neg,
        "ksigns_neg": ks_neg,
        # a scale byte -> (0.5f + low nibble, 0.5f + high nibble) / (1 + 2*low, 1 + 2*high) as two
        # float32 in one item (exact small numbers)
        "half_nib": (np.float32(0.5) + np.stack([e & 15, e >> 4], 1).astype(np.float32)).view(np.uint64)[:, 0].copy(),
        "odd_nib": (1 + 2 * np.stack([e & 15, e >> 4], 1)).astype(np.float32).view(np.uint64)[:, 0].copy(),
        # IQ2_S: a qh byte -> the 4 uint16 (qh << (8 - 2l)) & 0x300; IQ3_S: a byte -> its 8 bits as bytes
        "iq2s_qh": _packed(np.stack([(e << (8 - 2 * k)) & 0x300 for k in range(4)], 1).astype("<u2").view(np.uint8), np.uint64),
        "bits8": _packed(_BITS, np.uint64),
        # TQ1_0: per output uint16 (two weights) the uint16 of the block it comes from, and per
        # output byte the power of 3 of its trit (see _Dequantizers.TQ1_0)
        "tq1_words": np.concatenate([np.tile(np.arange(16), 5), 16 + np.tile(np.arange(8), 5),
                                     24 + np.tile(np.arange(2), 4)]).astype(np.uint32),
        "tq1_pow3": np.concatenate([np.repeat([1, 3, 9, 27, 81], 32), np.repeat([1, 3, 9, 27, 81], 16),
                                    np.repeat([1, 3, 9, 27], 4)]).astype(np.uint8),
    }


# --------------------------------------------------------------------------------------------------
# field extraction from (nb, type_size) uint8 blocks

def _u32le(b, off):
    return (b[:, off].astype(U32) | (b[:, off + 1].astype(U32) << 8)
            | (b[:, off + 2].astype(U32) << 16) | (b[:, off + 3].astype(U32) << 24))


def _lookup(table, idx):
    """table[idx] for a 1-D table and integer indices of any shape (any strides).

    Written as take_along_axis over a broadcast (stride 0) copy of the table, with the indices as one
    row: on MLX's CPU backend this is several times faster than mx.take for per-element lookups
    (about 0.5 ns per gathered item, for 1- to 8-byte items alike).
    """
    shape = idx.shape
    out = mx.take_along_axis(table.reshape(1, -1), idx.reshape(1, -1), axis=1)
    return out.reshape(shape)


def _shifts(values, shape, dtype=U32):
    return mx.array(np.asarray(values, np.uint32).reshape(shape)).astype(dtype)


# types whose fast path needs a chunk without NaN fp16 d (at these byte offsets); see _Dequantizers
NAN_SWITCH = {"Q1_0": 0, "IQ2_XXS": 0, "IQ2_XS": 0, "IQ2_S": 0, "IQ3_XXS": 0, "IQ3_S": 0}


def _f16_nan_any(b, off) -> bool:
    """True when any block of b has a NaN fp16 bit pattern at byte ``off`` (evaluates)."""
    h = b.view(U16)[:, off // 2]
    return bool(mx.any(((h & 0x7C00) == 0x7C00) & ((h & 0x03FF) != 0)).item())


def _any_nan(x) -> bool:
    """True when the (small) float array x has a NaN; evaluates it."""
    return bool(mx.any(mx.isnan(x)).item())


def _flat_words(b):
    """A chunk's bytes as one flat array of uint32 words (uint16 when the size is not a multiple of
    4) and the byte-replicating factor k for its masks (``k * 0x0F`` masks every byte): element-wise
    ops on a contiguous array are several times cheaper than on a strided slice of it, even counting
    the bytes that are not needed."""
    if b.size % 4 == 0:
        return b.reshape(-1).view(U32), 0x01010101
    return b.reshape(-1).view(U16), 0x0101


def _rows16(x, nb):
    """Flat words back to (nb, words) uint16 rows of the blocks."""
    return x.view(U16).reshape(nb, -1)


def _pairs_to_values(g):
    """(rows, k) uint32 results of a _pair_table lookup -> (rows, 4k) float32: the 2k low-nibble
    values, then the 2k high-nibble values (ggml's order within a group)."""
    g16 = g.view(U16)
    return mx.concatenate([g16[:, 0::2], g16[:, 1::2]], axis=1).view(mx.int8).astype(F32)


class _Dequantizers:
    """One method per type: (nb, type_size) uint8 -> (nb, block_size) float32, ggml's op order.

    Cost model (MLX on one CPU core, 1M-value chunks): every op is a full pass, ~0.1-0.2 ms per 1M
    float32 values on contiguous data but much more on short strided rows; a gather
    (take_along_axis) ~0.5 ns per item whatever its size (1-8 bytes); a concatenate or a reordering
    copy is priced per row. Hence the integer stage works on packed words (uint16/uint32 views of the
    blocks, SWAR masks with no carries across bytes) or gathers packed int8 values several per item,
    and builds one int8 array in output order; the float stage is one int8 -> float32 cast and the
    scale multiply (and subtract), the scale broadcast over rows of 16-256 values.
    """

    def __init__(self, ar: _Arith, float64_cast: bool = True):
        self.ar = ar
        self.float64_cast = float64_cast        # False: decode F64 with integer ops (no float64 on the GPU)
        self._ue4m3 = ue4m3_table()
        self._grids = None
        self.t = {k: mx.array(v) for k, v in _byte_tables().items()}
        # Every table is built and evaluated here, on the constructing thread's stream: the
        # dequantizers run on several threads, each with its own stream, and an array still lazy on
        # another thread's stream cannot be evaluated there.
        self._f16_lut = f16_lut(self.ar)                  # ggml's conversion of all 65536 patterns
        # MLX's bfloat16 -> float32 cast is used when it is the plain bit shift for all 65536 patterns
        # (NaN payloads kept), as ggml's GGML_BF16_TO_FP32 is (checked here, on this device)
        h = mx.arange(65536, dtype=U32).astype(U16)
        self._bf16_cast = bool(mx.array_equal(h.view(mx.bfloat16).astype(F32).view(U32), bf16_to_f32(h).view(U32)).item())
        grids = self.grids()
        mx.eval(self._f16_lut, self._ue4m3, *self.t.values(),
                *[v for v in grids.values() if isinstance(v, mx.array)])

    def f16(self, b, off):
        """The fp16 field at byte ``off`` (even) of every block -> float32 (nb, 1), by table."""
        return self.f16w(b.view(U16)[:, off // 2:off // 2 + 1])

    def f16w(self, w):
        """fp16 bits (uint16, any shape) -> float32 through the 65536-entry table of f16_to_f32."""
        return _lookup(self._f16_lut, w)

    # ---- block size 1 (the chunk is a fresh contiguous array: reinterpret it) -----------------------
    def F32(self, b):
        return b.reshape(-1).view(F32)

    def F16(self, b):
        return self.f16w(b.reshape(-1).view(U16))

    def BF16(self, b):
        h = b.reshape(-1).view(U16)
        if self._bf16_cast:
            return h.view(mx.bfloat16).astype(F32)                   # one pass instead of two
        return bf16_to_f32(h)

    def F64(self, b):
        if self.float64_cast:
            # MLX's CPU cast is the C cast (float)double: round to nearest even, NaN quieted
            return b.reshape(-1).view(mx.float64).astype(F32)
        w = b.reshape(-1).view(U32).reshape(-1, 2)                   # little-endian: low word first
        return f64_to_f32(w[:, 0], w[:, 1])

    def I8(self, b):
        return b.reshape(-1).view(mx.int8).astype(F32)

    def I16(self, b):
        return b.reshape(-1).view(mx.int16).astype(F32)

    def I32(self, b):
        return b.reshape(-1).view(I32).astype(F32)                   # (float)int32: round to nearest even

    def I64(self, b):
        return b.reshape(-1).view(I64).astype(F32)                   # (float)int64: round to nearest even

    # ---- legacy --------------------------------------------------------------------------------
    # The nibbles of the whole chunk are split on flat words into two planes (low nibbles, high
    # nibbles: (2, nb, type_size) bytes, one op per plane pair on long rows); the float stage reads
    # the planes transposed to (nb, 2, 16), which is ggml's order (element j: low nibble of qs[j],
    # j + 16: its high nibble) - no reordering copy of the integers.

    def _nibble_planes(self, b):
        nb, ts = b.shape
        x, k = _flat_words(b)
        t = (x.reshape(1, -1) >> _shifts([0, 4], (2, 1), x.dtype)) & (k * 0x0F)
        return t.view(mx.uint8).reshape(2, nb, ts)

    def _nibble_planes16(self, b, signed):
        """Like _nibble_planes, but each nibble in the high half of its byte (16 * nibble, without a
        shift for the high plane); ``signed``: the int8 16 * (nibble - 8) (flipping the top bit).
        A scale d / 16 (exact for every fp16 d, Inf and NaN included) times 16 * q is the same
        exact product as d * q, rounded once: bit-identical to ggml's d * q."""
        nb, ts = b.shape
        x, k = _flat_words(b)
        t = (x.reshape(1, -1) << _shifts([4, 0], (2, 1), x.dtype)) & (k * 0xF0)
        if signed:
            t = t ^ (k * 0x80)
        return t.view(mx.int8 if signed else mx.uint8).reshape(2, nb, ts)

    def _d16(self, d):
        return d * mx.array(0.0625, F32)

    def Q4_0(self, b):
        nb = b.shape[0]
        q = self._nibble_planes16(b, signed=True).astype(F32)       # 16 * (x - 8)
        d = self._d16(self.f16(b, 0)).reshape(nb, 1, 1)
        return self.ar.mul(q.transpose(1, 0, 2)[:, :, 2:18], d).reshape(nb, 32)   # x0*d

    def Q4_1(self, b):
        nb, ar = b.shape[0], self.ar
        q = self._nibble_planes16(b, signed=False).astype(F32).transpose(1, 0, 2)[:, :, 4:20]   # 16 * x
        dm = self.f16w(b.view(U16)[:, 0:2]).reshape(nb, 2, 1)
        return ar.add(ar.mul(q, self._d16(dm[:, 0:1])), dm[:, 1:2]).reshape(nb, 32)   # x0*d + m

    def Q5_0(self, b):
        nb = b.shape[0]
        q = self._nibble_planes(b).transpose(1, 0, 2)[:, :, 6:22]
        h = _lookup(self.t["q50h"], b[:, 2:6]).view(mx.uint8).reshape(nb, 2, 16)
        q = (q | h).view(mx.int8)                                    # nibble | 0xF0 where bit clear: x - 16
        return self.ar.mul(q.astype(F32), self.f16(b, 0).reshape(nb, 1, 1)).reshape(nb, 32)

    def Q5_1(self, b):
        nb, ar = b.shape[0], self.ar
        q = self._nibble_planes(b).transpose(1, 0, 2)[:, :, 8:24]
        h = _lookup(self.t["q51h"], b[:, 4:8]).view(mx.uint8).reshape(nb, 2, 16)
        q = (q | h).astype(F32)                                      # nibble | 16 where bit set
        dm = self.f16w(b.view(U16)[:, 0:2]).reshape(nb, 2, 1)
        return ar.add(ar.mul(q, dm[:, 0:1]), dm[:, 1:2]).reshape(nb, 32)

    # (a cast of the whole contiguous chunk, then a multiply that reads a strided slice of it, is
    # cheaper than a cast of the strided slice: MLX's unary ops are slow on strided input)
    def Q8_0(self, b):
        return self.ar.mul(b.view(mx.int8).astype(F32)[:, 2:34], self.f16(b, 0))   # qs[j]*d

    def Q8_1(self, b):
        # ggml has no Q8_1 to_float; its value is d*qs (the sum field s is not used)
        return self.ar.mul(b.view(mx.int8).astype(F32)[:, 4:36], self.f16(b, 0))

    # ---- k-quants --------------------------------------------------------------------------------
    def _k_scale_min(self, w3):
        """get_scale_min_k4 for j = 0..7 from the 12 scale bytes as 3 uint32 words (nb, 3) ->
        float32 (nb, 2, 8): [:, 0] = sc[0..7], [:, 1] = m[0..7]. On words: bytes 0..7 & 63 are
        sc[0:4], m[0:4]; sc[4:8], m[4:8] are the low / high nibbles of bytes 8..11 with the top
        two bits of bytes 0..7 above them."""
        nb = w3.shape[0]
        ab = w3[:, 0:2] & 0x3F3F3F3F
        cd = ((w3[:, 2:3] >> _shifts([0, 4], (1, 2))) & 0x0F0F0F0F) | ((w3[:, 0:2] >> 2) & 0x30303030)
        return mx.stack([ab, cd], axis=2).view(mx.uint8).reshape(nb, 2, 8).astype(F32)

    def Q2_K(self, b):
        nb, ar = b.shape[0], self.ar
        w = b.view(U32)                                              # (nb, 21): sc (4), qs (16), d|dmin
        dm = self.f16w(b.view(U16)[:, 40:42])
        sc = b[:, 0:16]
        dl = ar.mul(dm[:, 0:1], (sc & 0xF).astype(F32))              # d * (sc & 0xF)   (nb, 16)
        ml = ar.mul(dm[:, 1:2], (sc >> 4).astype(F32))               # min * (sc >> 4)
        # element n*128 + j*32 + i takes bits 2j of qs[n*32 + i]: words [n, j, k] of 4 crumbs
        q = (w[:, 4:20].reshape(nb, 2, 1, 8) >> _shifts([0, 2, 4, 6], (1, 1, 4, 1))) & 0x03030303
        q = q.view(mx.uint8).reshape(nb, 16, 16).astype(F32)
        y = ar.sub(ar.mul(dl.reshape(nb, 16, 1), q), ml.reshape(nb, 16, 1))   # dl*q - ml
        return y.reshape(nb, QK_K)

    def Q3_K(self, b):
        nb, ar = b.shape[0], self.ar
        w = b.view(U16)                                              # (nb, 55): hm (16), qs (32), sc (6), d
        d = self.f16w(w[:, 54:55])
        # 16 six-bit scales: low 4 bits from bytes 0..7 (low then high nibbles), high 2 bits from 8..11
        s = b[:, 96:108]
        low = mx.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)
        high = ((s[:, 8:12].reshape(nb, 1, 4) >> _shifts([0, 2, 4, 6], (1, 4, 1), mx.uint8)) & 3).reshape(nb, 16)
        scale = (low | (high << 4)).astype(I32) - 32
        dl = ar.mul(d, scale.astype(F32))                            # d_all * (scales[is] - 32)
        q = (w[:, 16:48].reshape(nb, 2, 1, 16) >> _shifts([0, 2, 4, 6], (1, 1, 4, 1), U16)) & 0x0303
        # hmask bit n*4 + j of hm[i] clear -> 0xFC: crumb | 0xFC is the int8 crumb - 4
        hm = ((~w[:, 0:16]).reshape(nb, 1, 16) >> _shifts(np.arange(8), (1, 8, 1), U16)) & 0x0101
        q = (q.reshape(nb, 8, 16) | (hm * 0xFC)).view(mx.int8)
        y = ar.mul(dl.reshape(nb, 16, 1), q.reshape(nb, 16, 16).astype(F32))
        return y.reshape(nb, QK_K)

    def _k4_finish(self, b, q):
        """Q4_K / Q5_K: d1*q - m1 with q (nb, 256) uint8."""
        nb, ar = b.shape[0], self.ar
        dm = self.f16w(b.view(U16)[:, 0:2]).reshape(nb, 2, 1)
        sm = ar.mul(dm, self._k_scale_min(b.view(U32)[:, 1:4]))      # d * sc, min * m   (nb, 2, 8)
        y = ar.sub(ar.mul(sm[:, 0].reshape(nb * 8, 1), q.reshape(nb * 8, 32).astype(F32)), sm[:, 1].reshape(nb * 8, 1))
        return y.reshape(nb, QK_K)

    def Q4_K(self, b):
        nb = b.shape[0]
        w = b.view(U32)                                              # (nb, 36): d|dmin, sc (3), qs (32)
        # element c*64 + h*32 + i: nibble h of qs[c*32 + i]
        lo, hi = w & 0x0F0F0F0F, (w >> 4) & 0x0F0F0F0F
        q = mx.stack([lo[:, 4:36].reshape(nb, 4, 8), hi[:, 4:36].reshape(nb, 4, 8)], axis=2)
        return self._k4_finish(b, q.view(mx.uint8))

    def Q5_K(self, b):
        nb = b.shape[0]
        w = b.view(U32)                                              # (nb, 44): d|dmin, sc (3), qh (8), qs (32)
        lo, hi = w & 0x0F0F0F0F, (w >> 4) & 0x0F0F0F0F
        q = mx.stack([lo[:, 12:44].reshape(nb, 4, 8), hi[:, 12:44].reshape(nb, 4, 8)], axis=2).reshape(nb, 8, 8)
        h = (w[:, 4:12].reshape(nb, 1, 8) >> _shifts(np.arange(8), (1, 8, 1))) & 0x01010101   # qh[i] & (1 << is)
        q = q | (h << 4)
        return self._k4_finish(b, q.view(mx.uint8))

    def Q6_K(self, b):
        nb, ar = b.shape[0], self.ar
        w = b.view(U16)                                              # (nb, 105): ql (64), qh (32), sc (8), d
        d = self.f16w(w[:, 104:105])
        sc = b[:, 192:208].view(mx.int8).astype(F32)
        # element n*128 + k*32 + i: nibble (k//2) of ql[n*64 + (k%2)*32 + i], bits 2k of qh[n*32 + i]
        lo = (w[:, 0:64].reshape(nb, 2, 1, 2, 16) >> _shifts([0, 4], (1, 1, 2, 1, 1), U16)) & 0x0F0F
        hi = (w[:, 64:96].reshape(nb, 2, 1, 16) >> _shifts([0, 2, 4, 6], (1, 1, 4, 1), U16)) & 0x0303
        # ((x + 0x60) ^ 0x80) per byte is the int8 x - 32 for x <= 63
        q = (((lo.reshape(nb, 2, 4, 16) | (hi << 4)) + 0x6060) ^ 0x8080).view(mx.int8)
        ds = ar.mul(d, sc)                                           # d * sc[is]  first,
        y = ar.mul(ds.reshape(nb, 16, 1), q.reshape(nb, 16, 16).astype(F32))   # then * q
        return y.reshape(nb, QK_K)

    def Q8_K(self, b):
        d = b.view(U32)[:, 0:1].view(F32)                            # a raw float32 field
        return self.ar.mul(d, b.view(mx.int8).astype(F32)[:, 4:260])   # x[i].d * qs[j]

    # ---- ternary -----------------------------------------------------------------------------------
    def TQ1_0(self, b):
        nb = b.shape[0]
        # output byte k = trit n(k) of qs byte m(k): [n][m] over qs[0:32], then [n][m] over
        # qs[32:48], then [n < 4][j] over qh. Byte pairs k, k+1 come from one uint16 of the block
        # with the same power of 3: gather those words in output order, then one uint8 multiply.
        src = mx.broadcast_to(self.t["tq1_words"].reshape(1, 128), (nb, 128))
        x = mx.take_along_axis(b.view(U16), src, axis=1).view(mx.uint8)
        q = x * self.t["tq1_pow3"].reshape(1, QK_K)                  # (uint8)(x * 3**n)
        # ((uint16)q * 3) >> 8 is (q >= 86) + (q >= 171); minus 1 (wraps to the int8 -1)
        t = (q >= 86).astype(mx.uint8) + (q >= 171).astype(mx.uint8) - 1
        return self.ar.mul(t.view(mx.int8).astype(F32), self.f16(b, 52))   # (float)(xi - 1) * d

    def TQ2_0(self, b):
        nb = b.shape[0]
        w = b.view(U16)                                              # (nb, 33): qs (32), d
        q = (w[:, 0:32].reshape(nb, 2, 1, 16) >> _shifts([0, 2, 4, 6], (1, 1, 4, 1), U16)) & 0x0303
        q = ((q + 0x7F7F) ^ 0x8080).view(mx.int8).reshape(nb, QK_K)   # crumb - 1
        return self.ar.mul(q.astype(F32), self.f16w(w[:, 32:33]))

    # ---- fp4 ---------------------------------------------------------------------------------------
    def MXFP4(self, b):
        d = _lookup(self.t["e8m0_half"], b[:, 0:1])
        idx = b[:, 1:17:2].astype(U16) | (b[:, 2:17:2].astype(U16) << 8)   # byte pairs (odd offset)
        q = _pairs_to_values(_lookup(self.t["kv2_fp4"], idx))
        return self.ar.mul(q, d)                                     # x0*d

    def NVFP4(self, b):
        nb = b.shape[0]
        d = _lookup(self._ue4m3, b[:, 0:4]).reshape(nb * 4, 1)
        g = _lookup(self.t["kv2_fp4"], b.view(U16)[:, 2:18])         # (nb, 16): 4 pairs per sub-block
        q = _pairs_to_values(g.reshape(nb * 4, 4))
        return self.ar.mul(q, d).reshape(nb, 64)

    # ---- low-bit -----------------------------------------------------------------------------------
    def Q1_0(self, b, nan=None):
        d = self.f16(b, 0)
        if _any_nan(d) if nan is None else nan:  # -d flips a NaN's sign, d * -1 does not
            return self._p_Q1_0(b)
        q = _lookup(self.t["q10"], b[:, 2:18]).view(mx.int8).astype(F32)   # bit ? 1 : -1
        return self.ar.mul(q, d)                 # == bit ? d : -d for every non-NaN d

    def _p_Q1_0(self, b):
        nb = b.shape[0]
        d = self.f16(b, 0)
        bit = ((b[:, 2:18].astype(U32).reshape(nb, 16, 1) >> mx.arange(8, dtype=U32)) & 1).reshape(nb, 128)
        # bit ? d : -d, where -d flips the sign bit (of a NaN too): xor the sign in where bit == 0
        return _view_f32(_bits(d) ^ ((bit ^ 1) << 31))

    def Q2_0(self, b):
        q = _lookup(self.t["q20"], b[:, 2:18]).view(mx.int8).astype(F32)   # 4 crumbs - 1 per byte
        return self.ar.mul(q, self.f16(b, 0))                        # ((int)q - 1) * d

    # ---- i-quants without grids --------------------------------------------------------------------
    def IQ4_NL(self, b):
        w = b.view(U16)                                              # (nb, 9)
        q = _pairs_to_values(_lookup(self.t["kv2_iq4nl"], w[:, 1:9]))
        return self.ar.mul(self.f16w(w[:, 0:1]), q)                  # d * kvalues[q]

    def IQ4_XS(self, b):
        nb, ar = b.shape[0], self.ar
        w = b.view(U16)                                              # (nb, 68): d, sh, sl (2), qs (64)
        d = self.f16w(w[:, 0:1])
        sl = b[:, 4:8]
        low = mx.stack([sl & 0xF, sl >> 4], axis=2).reshape(nb, 8)
        high = (w[:, 1:2] >> _shifts(2 * np.arange(8), (1, 8), U16)) & 3
        ls = (low.astype(I32) | (high.astype(I32) << 4)) - 32
        dl = ar.mul(d, ls.astype(F32))                               # d * (ls - 32)
        q = _pairs_to_values(_lookup(self.t["kv2_iq4nl"], w[:, 4:68]).reshape(nb * 8, 8))
        return ar.mul(dl.reshape(nb * 8, 1), q).reshape(nb, QK_K)

    # ---- i-quants with grids -----------------------------------------------------------------------
    # The fast paths gather each 8 grid values as int8 with the signs already applied, then multiply
    # by the scale: db * (-g) is the same float as ggml's -(db * g) (a sign-bit flip) for every db
    # but a NaN, whose sign the flip changes. Chunks with a NaN scale go to the plain paths _p_*.
    # ``nan``: whether the chunk has a NaN d (None: look; Backend.dequantize passes False when a
    # whole segment has none, which saves a synchronisation per chunk).
    def grids(self):
        """The grid tables as float32 (entries, weights) arrays, from ggspec.reference.grids."""
        if self._grids is None:
            from ..reference import grids as G

            def table(values, width, signed=False):
                raw = np.asarray(values, dtype="<u8" if width == 8 else "<u4").view(np.int8 if signed else np.uint8)
                return mx.array(raw.reshape(-1, width).astype(np.float32))   # byte j = weight j, exact

            self._grids = {
                "iq2xxs": table(G.iq2xxs_grid, 8), "iq2xs": table(G.iq2xs_grid, 8), "iq2s": table(G.iq2s_grid, 8),
                "iq3xxs": table(G.iq3xxs_grid, 4), "iq3s": table(G.iq3s_grid, 4),
                "ksigns": mx.array(np.asarray(G.ksigns_iq2xs, np.uint32)),
            }
        return self._grids

    def _signs(self, sign_bytes):
        """(...) sign bytes -> (..., 8) uint32 sign-bit masks: bit j set gives 0x80000000."""
        return ((sign_bytes.astype(U32)[..., None] >> mx.arange(8, dtype=U32)) & 1) << 31

    @staticmethod
    def _apply_signs(x, masks):
        """``x * (bit ? -1.f : 1.f)`` as ggml's compiled code does it: the sign bit is flipped (xor),
        so a NaN changes sign too (a float multiply by -1 would keep the NaN's sign)."""
        return _view_f32(_bits(x) ^ masks)

    def _iq2_scale(self, d, s4, quarter):
        """d * (0.5f + s) * 0.25f (IQ2) or * 0.5f (IQ3_XXS): three float32 ops in that order."""
        ar = self.ar
        return ar.mul(ar.mul(d, mx.array(0.5, F32) + s4.astype(F32)), mx.array(quarter, F32))

    def _db_iq2(self, d, sc):
        """IQ2_XS / IQ2_S: d * (0.5f + nibble) * 0.25f per 16 values -> (nb*16, 1); low nibble first.
        (0.5f + nibble) of both nibbles of a scale byte come from one table item (two floats)."""
        nb = sc.shape[0]
        half = _lookup(self.t["half_nib"], sc).view(F32)             # (nb, 16): 0.5f + lo, 0.5f + hi
        return self.ar.mul(self.ar.mul(d, half), mx.array(0.25, F32)).reshape(nb * 16, 1)

    def IQ2_XXS(self, b, nan=None):
        nb = b.shape[0]
        w = b.view(U16)                                              # (nb, 33): d, 8 x (4 grid bytes, aux32)
        d = self.f16w(w[:, 0:1])
        if _any_nan(d) if nan is None else nan:
            return self._p_IQ2_XXS(b)
        a16 = w[:, 1:33].reshape(nb, 8, 4)
        aux = a16[:, :, 2].astype(U32) | (a16[:, :, 3].astype(U32) << 16)    # aux32[1] (nb, 8)
        db = self._iq2_scale(d, aux >> 28, 0.25).reshape(nb * 8, 1)
        codes = (aux.reshape(nb, 8, 1) >> _shifts([0, 7, 14, 21], (1, 1, 4))) & 127
        idx = (b[:, 2:66].reshape(nb, 8, 8)[:, :, 0:4].astype(U32) << 7) | codes
        g = _lookup(self.t["iq2xxs"], idx).view(mx.int8).reshape(nb * 8, 32).astype(F32)
        return self.ar.mul(db, g).reshape(nb, QK_K)                  # db * grid[j] * sign

    def _p_IQ2_XXS(self, b):
        nb, ar, G = b.shape[0], self.ar, self.grids()
        d = self.f16(b, 0)
        qs = b[:, 2:66].reshape(nb, 8, 8)                           # per 32 weights: aux32[0], aux32[1]
        a1 = _u32le(qs.reshape(nb * 8, 8), 4).reshape(nb, 8)
        db = self._iq2_scale(d, a1 >> 28, 0.25)                    # (nb, 8)
        g = mx.take(G["iq2xxs"], qs[:, :, 0:4].astype(U32), axis=0)              # (nb, 8, 4, 8)
        sidx = (a1.reshape(nb, 8, 1) >> _shifts([0, 7, 14, 21], (1, 1, 4))) & 127
        sign = self._signs(_lookup(G["ksigns"], sidx))
        y = self._apply_signs(ar.mul(db.reshape(nb, 8, 1, 1), g), sign)       # db * grid[j], sign flipped
        return y.reshape(nb, QK_K)

    def IQ2_XS(self, b, nan=None):
        nb = b.shape[0]
        w = b.view(U16)                                              # (nb, 37): d, qs (32), scales (4)
        d = self.f16w(w[:, 0:1])
        if _any_nan(d) if nan is None else nan:
            return self._p_IQ2_XS(b)
        db = self._db_iq2(d, b[:, 66:74])
        g = _lookup(self.t["iq2xs"], w[:, 1:33]).view(mx.int8).reshape(nb * 16, 16).astype(F32)
        return self.ar.mul(db, g).reshape(nb, QK_K)

    def _p_IQ2_XS(self, b):
        nb, ar, G = b.shape[0], self.ar, self.grids()
        d = self.f16(b, 0)
        q = (b[:, 2:66:2].astype(U32) | (b[:, 3:66:2].astype(U32) << 8)).reshape(nb, 8, 4)
        sc = b[:, 66:74].astype(U32)
        s4 = mx.stack([sc & 0xF, sc >> 4], axis=2)                  # (nb, 8, 2): db[0], db[1]
        db = self._iq2_scale(d.reshape(nb, 1, 1), s4, 0.25)
        dl = mx.repeat(db, 2, axis=2)                               # db[l/2] for l = 0..3
        g = mx.take(G["iq2xs"], q & 511, axis=0)
        sign = self._signs(_lookup(G["ksigns"], q >> 9))
        y = self._apply_signs(ar.mul(dl.reshape(nb, 8, 4, 1), g), sign)
        return y.reshape(nb, QK_K)

    def IQ2_S(self, b, nan=None):
        nb = b.shape[0]
        d = self.f16(b, 0)
        if _any_nan(d) if nan is None else nan:
            return self._p_IQ2_S(b)
        db = self._db_iq2(d, b[:, 74:82])
        # index qs[l] | (qh[ib] << (8 - 2l)) & 0x300: the high parts of a qh byte's 4 slots from a table
        hi = _lookup(self.t["iq2s_qh"], b[:, 66:74]).view(U16)        # (nb, 32)
        idx = b.astype(U16)[:, 2:34] | hi
        g = _neg8(_lookup(self.t["iq2s"], idx), _lookup(self.t["byte_neg"], b[:, 34:66]))
        g = g.view(mx.int8).reshape(nb * 16, 16).astype(F32)
        return self.ar.mul(db, g).reshape(nb, QK_K)

    def _p_IQ2_S(self, b):
        nb, ar, G = b.shape[0], self.ar, self.grids()
        d = self.f16(b, 0)
        qs = b[:, 2:34].astype(U32).reshape(nb, 8, 4)
        signs = b[:, 34:66].reshape(nb, 8, 4)
        qh = b[:, 66:74].astype(U32).reshape(nb, 8, 1)
        sc = b[:, 74:82].astype(U32)
        s4 = mx.stack([sc & 0xF, sc >> 4], axis=2)
        dl = mx.repeat(self._iq2_scale(d.reshape(nb, 1, 1), s4, 0.25), 2, axis=2)
        idx = qs | ((qh << _shifts([8, 6, 4, 2], (1, 1, 4))) & 0x300)  # qs[l] | (qh << (8-2l) & 0x300)
        g = mx.take(G["iq2s"], idx, axis=0)
        y = self._apply_signs(ar.mul(dl.reshape(nb, 8, 4, 1), g), self._signs(signs))
        return y.reshape(nb, QK_K)

    def IQ3_XXS(self, b, nan=None):
        nb = b.shape[0]
        w = b.view(U16)                                              # (nb, 49): d, qs (32), aux (16)
        d = self.f16w(w[:, 0:1])
        if _any_nan(d) if nan is None else nan:
            return self._p_IQ3_XXS(b)
        aux = w[:, 33:49:2].astype(U32) | (w[:, 34:49:2].astype(U32) << 16)  # (nb, 8)
        db = self._iq2_scale(d, aux >> 28, 0.5).reshape(nb * 8, 1)
        codes = (aux.reshape(nb, 8, 1) >> _shifts([0, 7, 14, 21], (1, 1, 4))) & 127
        g = _lookup(self.t["iq3xxs"], w[:, 1:33]).reshape(nb, 8, 4)          # grid1, grid2 pairs
        g = _neg8(g, _lookup(self.t["ksigns_neg"], codes))
        g = g.view(mx.int8).reshape(nb * 8, 32).astype(F32)
        return self.ar.mul(db, g).reshape(nb, QK_K)

    def _p_IQ3_XXS(self, b):
        nb, ar, G = b.shape[0], self.ar, self.grids()
        d = self.f16(b, 0)
        qs = b[:, 2:66].astype(U32).reshape(nb, 8, 4, 2)            # grid1, grid2 of each group of 8
        aux = _u32le(b[:, 66:98].reshape(nb * 8, 4), 0).reshape(nb, 8)
        db = self._iq2_scale(d, aux >> 28, 0.5)
        g = mx.take(G["iq3xxs"], qs, axis=0).reshape(nb, 8, 4, 8)
        sidx = (aux.reshape(nb, 8, 1) >> _shifts([0, 7, 14, 21], (1, 1, 4))) & 127
        sign = self._signs(_lookup(G["ksigns"], sidx))
        y = self._apply_signs(ar.mul(db.reshape(nb, 8, 1, 1), g), sign)
        return y.reshape(nb, QK_K)

    def IQ3_S(self, b, nan=None):
        nb, ar = b.shape[0], self.ar
        d = self.f16(b, 0)
        if _any_nan(d) if nan is None else nan:
            return self._p_IQ3_S(b)
        odd = _lookup(self.t["odd_nib"], b[:, 106:110]).view(F32)     # (nb, 8): 1 + 2*scale, as float
        db = ar.mul(d, odd).reshape(nb * 8, 1)                       # d * (1 + 2*scale)
        # index qs[k] | (bit k of qh[ib]) << 8: a qh byte's 8 bits as bytes from a table
        hb = _lookup(self.t["bits8"], b[:, 66:74]).view(mx.uint8).astype(U16)   # (nb, 64)
        idx = b.astype(U16)[:, 2:66] | (hb << 8)
        g = _lookup(self.t["iq3s"], idx).reshape(nb, 32, 2).view(U64).reshape(nb, 32)   # 2 slots = 8 values
        g = _neg8(g, _lookup(self.t["byte_neg"], b[:, 74:106]))
        g = g.view(mx.int8).reshape(nb * 8, 32).astype(F32)
        return ar.mul(db, g).reshape(nb, QK_K)

    def _p_IQ3_S(self, b):
        nb, ar, G = b.shape[0], self.ar, self.grids()
        d = self.f16(b, 0)
        qs = b[:, 2:66].astype(U32).reshape(nb, 8, 8)               # 8 grid slots per 32 weights
        qh = b[:, 66:74].astype(U32).reshape(nb, 8, 1)
        signs = b[:, 74:106].reshape(nb, 8, 4)
        sc = b[:, 106:110].astype(U32)
        s = mx.stack([sc & 0xF, sc >> 4], axis=2).reshape(nb, 8)     # scale of sub-block ib
        db = ar.mul(d, (1 + 2 * s).astype(F32))                     # d * (1 + 2*scale)
        idx = qs | (((qh >> mx.arange(8, dtype=U32)) & 1) << 8)     # bit k of qh[ib] -> index bit 8
        g = mx.take(G["iq3s"], idx, axis=0).reshape(nb, 8, 4, 8)
        y = self._apply_signs(ar.mul(db.reshape(nb, 8, 1, 1), g), self._signs(signs))
        return y.reshape(nb, QK_K)

    # IQ1_S / IQ1_M: ggml's dl * (grid[j] + delta) is computed as (dl * 0.125f) * (8 * (grid[j] + delta)):
    # dl * 0.125f is exact (dl = d * odd integer <= 15, d an fp16 value: no underflow), 8 * (grid + delta)
    # is the exact integer 8*grid +- 1, so both sides are the same exact product rounded once (the
    # same Inf, zero sign and NaN too: a single NaN operand propagates).
    def IQ1_S(self, b):
        nb, ar = b.shape[0], self.ar
        w = b.view(U16)                                              # (nb, 25): d, qs (16), qh (8)
        d = self.f16w(w[:, 0:1])
        qh = w[:, 17:25]
        dl = ar.mul(d, (2 * ((qh >> 12) & 7) + 1).astype(F32))       # d * (2*((qh >> 12) & 7) + 1)
        dl = ar.mul(dl, mx.array(0.125, F32)).reshape(nb * 8, 1)
        # index qs[l] | ((qh >> 3l) & 7) << 8, + 2048 (the -delta rows) where qh & 0x8000
        q3 = qh.reshape(nb, 8, 1)
        hi = ((q3 >> _shifts([0, 3, 6, 9], (1, 1, 4), U16)) & 7) | ((q3 >> 12) & 8)
        idx = b[:, 2:34].reshape(nb, 8, 4).astype(U16) | (hi << 8)
        g = _lookup(self.t["iq1"], idx).view(mx.int8).reshape(nb * 8, 32).astype(F32)
        return ar.mul(dl, g).reshape(nb, QK_K)

    def IQ1_M(self, b):
        nb, ar = b.shape[0], self.ar
        sc = b.view(U16)[:, 24:28]                                   # uint16 sc[4]
        scale = ((sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0x00F0) | ((sc[:, 2] >> 4) & 0x0F00) | (sc[:, 3] & 0xF000))
        d = self.f16w(scale).reshape(nb, 1, 1)
        # sub-block ib: 3-bit scales at bits 6*(ib%2) (l = 0, 1) and 6*(ib%2)+3 (l = 2, 3) of sc[ib/2]
        s3 = (sc.reshape(nb, 4, 1) >> _shifts([0, 3, 6, 9], (1, 1, 4), U16)) & 7
        dl = ar.mul(d, (2 * s3 + 1).astype(F32).reshape(nb, 8, 2))   # dl1, dl2 of each ib
        dl = ar.mul(dl, mx.array(0.125, F32)).reshape(nb * 16, 1)
        # grid slot l: qh byte 2ib + l//2, nibble l%2: low 3 bits index bits 8..10, bit 3 delta sign
        qh = b[:, 32:48].reshape(nb, 16, 1)
        nib = mx.concatenate([qh & 0xF, qh >> 4], axis=2).reshape(nb, 32)
        idx = b[:, 0:32].astype(U16) | (nib.astype(U16) << 8)
        g = _lookup(self.t["iq1"], idx).view(mx.int8).reshape(nb * 16, 16).astype(F32)
        return ar.mul(dl, g).reshape(nb, QK_K)


# --------------------------------------------------------------------------------------------------

def _to_numpy(y) -> np.ndarray:
    mx.eval(y)
    return np.array(memoryview(y), dtype=np.float32, copy=True)


class Backend:
    """The MLX backend (see the module docstring)."""

    name = "mlx"

    def __init__(self, device: str = "cpu", x86_nan: "bool | None" = None, metal: "bool | None" = None,
                 threads: "int | None" = None):
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        self.device = mx.cpu if device == "cpu" else mx.gpu
        # On the CPU, MLX runs each stream's element-wise work on one thread: chunks are spread over
        # ``threads`` Python threads, each with its own CPU stream (MLX streams are per thread).
        self.threads = 1 if device == "gpu" else max(1, int(threads or min(os.cpu_count() or 1, 8)))
        self._local = threading.local()
        _raise_cache_limit()
        self.arith = _Arith(FIX_DEFAULT_NAN if x86_nan is None else bool(x86_nan))
        with mx.stream(self.device):
            self._deq = _Dequantizers(self.arith, float64_cast=(device == "cpu"))
        self._delegate = None
        self._metal = None
        if metal is None:
            metal = _metal_available()
        if metal:
            from ._mlx import metal as _metal_mod
            self._metal = _metal_mod.MetalDequantizers()

    # ---- capability ---------------------------------------------------------------------------
    def _dequantizer(self, t):
        return getattr(self._deq, t.name, None)

    def supports(self, op: str, type) -> bool:
        try:
            t = live_type(type)
        except Exception:
            return False
        if op == "dequantize":
            return self._dequantizer(t) is not None
        if op in ("quantize", "quantize+imatrix"):
            try:
                return bool(self.delegate().supports(op, t))
            except Exception:
                return False
        return False

    # ---- quantize: delegated -----------------------------------------------------------------------
    def delegate(self):
        """The backend quantize() goes to: numpy when it loads, else the reference."""
        if self._delegate is None:
            from . import backend
            try:
                self._delegate = backend("numpy")
            except Exception:
                self._delegate = backend("reference")
        return self._delegate

    def quantize(self, type, x, imatrix=None) -> bytes:
        return self.delegate().quantize(type, x, imatrix)

    # ---- rope --------------------------------------------------------------------------------
    def rope(self, x, pos, p, *, math=None, contract="none", theta="ggml") -> np.ndarray:
        """ggspec.reference.rope.apply_rope in MLX: the rotation in MLX float32 ops (fmaf where the
        oracle fuses), the cos/sin table from the reference (libm's sinf/cosf, as ggml)."""
        return _rope(x, pos, p, math=math, contract=contract, theta=theta)

    # ---- dequantize ----------------------------------------------------------------------------------
    def dequantize(self, type, raw, n, out: "np.ndarray | None" = None) -> np.ndarray:
        """n float32 values of ``type`` from ``raw`` (ggml's to_float, bit for bit). ``out``: a
        C-contiguous float32 array of n values to write them into (returned), e.g. a numpy view of an
        MLX buffer (``mlx_gguf.load`` does this; no intermediate copy)."""
        t = live_type(type)
        fn = self._dequantizer(t)
        if fn is None:
            raise UnsupportedTypeError(f"the mlx backend has no dequantizer for {t.name}")
        n = int(n)
        if n < 0 or n % t.block_size:
            raise ShapeError(f"{t.name}: n = {n} is not a non-negative multiple of the block size {t.block_size}")
        nb = n // t.block_size
        need = nb * t.type_size
        mv = memoryview(raw).cast("B")
        if len(mv) < need:
            raise ShapeError(f"{t.name}: {n} values need {need} bytes, got {len(mv)}")
        if out is not None:
            if out.dtype != np.float32 or out.size != n or not out.flags.c_contiguous or not out.flags.writeable:
                raise ShapeError(f"out must be a writable C-contiguous float32 array of {n} values")
            out = out.reshape(-1)
        if nb == 0:
            return np.zeros(0, np.float32) if out is None else out
        if t.name in BIT_COPIES and self.device == mx.cpu:
            return _bit_copy(t.name, mv, n, out, self.threads)
        blocks = np.frombuffer(mv, dtype=np.uint8, count=need).reshape(nb, t.type_size)
        if self._metal is not None and self._metal.supports(t.name):
            y = self._metal.dequantize(t.name, blocks, n)
            if y is not None:
                if out is None:
                    return y
                out[:] = y
                return out
        step = max(1, CHUNK_ELEMENTS // t.block_size)
        bs = t.block_size
        if n <= SINGLE_CHUNKS * CHUNK_ELEMENTS:   # one chunk: return MLX's result buffer (no copy)
            with mx.stream(self.device):
                y = fn(mx.array(blocks))
                mx.eval(y)
            y = np.asarray(memoryview(y)).reshape(-1)
            if out is None:
                return np.ascontiguousarray(y)
            out[:] = y
            return out
        if out is None:
            out = np.empty(n, np.float32)
        # Each thread takes a contiguous run of chunks and copies its raw blocks into MLX a group of
        # chunks (about SEGMENT_BYTES) at a time; each chunk is a row slice (a view) of its group.
        # One copy of a few MB is several times faster than per-chunk copies of 0.25-1 MB, and
        # much faster than one of tens of MB (MLX's CPU allocator caches buffers only up to 32 MB
        # in all; a larger fresh buffer costs page faults).
        nchunks = -(-nb // step)
        threads = min(self.threads, nchunks)
        per = -(-nchunks // threads) * step                  # blocks per thread (whole chunks)
        group = max(step, SEGMENT_BYTES // t.type_size // step * step)

        def work(lo, hi):
            stream = self.device
            if threads > 1:
                stream = getattr(self._local, "stream", None)
                if stream is None:
                    stream = self._local.stream = mx.new_stream(mx.cpu)
            with mx.stream(stream):
                for g0 in range(lo, hi, group):
                    src = mx.array(blocks[g0:min(g0 + group, hi)])
                    kw = {}
                    if t.name in NAN_SWITCH and not _f16_nan_any(src, NAN_SWITCH[t.name]):
                        kw = {"nan": False}              # one NaN check per group, not per chunk
                    for i in range(0, src.shape[0], step):
                        y = fn(src[i:i + step], **kw)
                        mx.eval(y)
                        j = (g0 + i) * bs
                        out[j:j + y.size] = np.asarray(memoryview(y)).reshape(-1)

        if threads > 1:
            for f in [_pool(threads).submit(work, k * per, min(nb, (k + 1) * per)) for k in range(threads)]:
                f.result()
        else:
            work(0, nb)
        return out


# F32 and BF16 on the CPU device: no arithmetic at all, ggml's to_float is a copy of the bits (F32)
# or the bits shifted into the high half (GGML_BF16_TO_FP32). An MLX op costs a copy of the input into
# MLX and a copy of its result out around that one pass; writing the output directly is one pass
# (measured, 16.8 M BF16 weights on 2 threads: 0.58x numpy as an MLX cast, docs/performance.md). So
# these two are written straight into the output (an MLX buffer's numpy view in mlx_gguf.load), on
# the backend's threads; every other type is decoded by MLX ops.
BIT_COPIES = ("F32", "BF16")
BIT_COPY_CHUNK = 1 << 21


def _bit_copy(name: str, mv, n: int, out, threads: int) -> np.ndarray:
    if out is None:
        out = np.empty(n, np.float32)
    o32 = out.view(np.uint32)
    if name == "F32":
        src = np.frombuffer(mv, dtype="<u4", count=n)

        def work(lo, hi):
            np.copyto(o32[lo:hi], src[lo:hi])
    else:
        src = np.frombuffer(mv, dtype="<u2", count=n)

        def work(lo, hi):                               # GGML_BF16_TO_FP32: bits << 16
            np.left_shift(src[lo:hi], 16, out=o32[lo:hi], dtype=np.uint32)
    starts = range(0, n, BIT_COPY_CHUNK)
    if threads > 1 and len(starts) > 1:
        for f in [_pool(threads).submit(work, lo, min(lo + BIT_COPY_CHUNK, n)) for lo in starts]:
            f.result()
    else:
        for lo in starts:
            work(lo, min(lo + BIT_COPY_CHUNK, n))
    return out


# MLX keeps freed buffers for reuse up to a cache limit, 32 MB by default on the CPU. One 1M-weight
# chunk on two threads needs more than that in flight, so with the default every chunk allocated fresh
# buffers and paid their page faults again: 5-8x slower, erratically, once other allocations had
# moved the heap (measured: Q4_0 on 16.8 M weights 170-200 Mw/s at 32 MB, 1,400 at 512 MB).
# The backend raises the limit (never lowers it); mx.set_cache_limit afterwards overrides it.
MLX_CACHE_BYTES = 512 << 20


def _raise_cache_limit() -> None:
    try:
        prev = mx.set_cache_limit(MLX_CACHE_BYTES)
        if prev > MLX_CACHE_BYTES:
            mx.set_cache_limit(prev)
    except AttributeError:   # an MLX without the setting
        pass


_POOL = None
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < threads:
            _POOL = ThreadPoolExecutor(threads, thread_name_prefix="ggspec-mlx")
        return _POOL


# --------------------------------------------------------------------------------------------------
# RoPE (float32 semantics of ggspec.reference.rope), on the CPU stream

F64 = mx.float64


def fmaf(a, b, c):
    """Correctly rounded float32 ``a*b + c`` (C's fmaf) in MLX float64 ops (CPU only).

    a*b of two float32 is exact in float64; the float64 sum is made round-to-odd (TwoSum gives the
    exact error; an inexact even result moves one ulp toward it) so the final rounding to float32 is
    correct (53 >= 2*24 + 2). The same construction as ggspec.reference.rope.fmaf.
    """
    pd = a.astype(F64) * b.astype(F64)
    cd = c.astype(F64)
    s = pd + cd
    bb = s - pd
    err = (pd - (s - bb)) + (cd - bb)
    sbits = s.view(I64)
    fix = (err != 0) & ((sbits & 1) == 0) & ~mx.isinf(s) & ~mx.isnan(s)
    away = (err > 0) == (s > 0)                          # toward err: away from zero iff same sign
    stepped = mx.where(away, sbits + 1, sbits - 1).view(F64)
    return mx.where(fix, stepped, s).astype(F32)


def _f16_widen(h):
    """float16 bits (uint16) -> float32 as numpy's astype (what the reference does): exact for
    numbers; a NaN keeps its payload and is not quieted (MLX's own cast quiets it)."""
    h = h.astype(U32)
    nan = ((h & 0x7C00) == 0x7C00) & ((h & 0x3FF) != 0)
    nan_bits = ((h & 0x8000) << 16) | 0x7F800000 | ((h & 0x3FF) << 13)
    return mx.where(nan, _view_f32(nan_bits), h.astype(mx.uint16).view(mx.float16).astype(F32))


def _f16_narrow(f):
    """float32 -> float16 bits (uint16) as numpy's astype: round to nearest even (MLX's cast, checked
    equal for numbers); a NaN keeps sign and top payload bits (MLX's cast makes every NaN 0x7D00)."""
    u = _bits(f)
    nan_bits = ((u >> 16) & 0x8000) | 0x7C00 | mx.maximum((u & 0x7FFFFF) >> 13, 1)
    return mx.where(mx.isnan(f), nan_bits, f.astype(mx.float16).view(mx.uint16).astype(U32)).astype(mx.uint16)


def _rope(x, pos, p, *, math=None, contract="none", theta="ggml"):
    from ..reference import rope as R

    x = np.asarray(x)
    if x.ndim != 3:
        raise ShapeError(f"x must be (n_tokens, n_head, head_dim), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float16):
        raise ShapeError(f"x must be float32 or float16, got {x.dtype}")
    pos = np.asarray(pos).reshape(-1)
    if pos.size != x.shape[0]:
        raise ShapeError(f"{pos.size} positions for {x.shape[0]} tokens")
    if p.n_dims > x.shape[2]:
        raise ShapeError(f"n_dims {p.n_dims} > head_dim {x.shape[2]}")
    n_pairs = p.n_dims // 2
    # the cos/sin table: (n_tokens, n_pairs), from the reference (sinf/cosf/powf/logf are the C
    # library's in ggml; MLX's own sin/cos are different approximations)
    cos, sin = R.rope_cache(pos, p, math=math, contract=contract, theta=theta)
    fused = (R.fused_pairs_f16 if x.dtype == np.float16 else R.fused_pairs)(n_pairs, p.mode, contract)
    with mx.stream(mx.cpu):
        if x.dtype == np.float16:
            xf = _f16_widen(mx.array(x.view(np.uint16)))
        else:
            xf = mx.array(x)
        c = mx.array(cos).reshape(pos.size, 1, n_pairs)
        sn = mx.array(sin).reshape(pos.size, 1, n_pairs)
        if p.mode == "normal":
            x0, x1 = xf[..., 0:p.n_dims:2], xf[..., 1:p.n_dims:2]
        else:
            x0, x1 = xf[..., :n_pairs], xf[..., n_pairs:p.n_dims]
        a = x1 * sn
        b = x1 * c
        y0 = x0 * c - a                                  # plain C: x0*cos - x1*sin
        y1 = x0 * sn + b                                 #          x0*sin + x1*cos
        if fused.any():                                  # the oracle's contracted pairs
            f = mx.array(fused)
            y0 = mx.where(f, fmaf(x0, c, -a), y0)
            y1 = mx.where(f, fmaf(x0, sn, b), y1)
        if p.mode == "normal":
            rot = mx.stack([y0, y1], axis=-1).reshape(*x0.shape[:2], p.n_dims)
        else:
            rot = mx.concatenate([y0, y1], axis=-1)
        if x.dtype == np.float16:
            out = mx.concatenate([_f16_narrow(rot), mx.array(x.view(np.uint16))[..., p.n_dims:]], axis=-1)
            mx.eval(out)
            return np.array(memoryview(out)).view(np.float16).reshape(x.shape)
        out = mx.concatenate([rot, xf[..., p.n_dims:]], axis=-1)
        mx.eval(out)
        return np.array(memoryview(out), dtype=np.float32).reshape(x.shape)


def _metal_available() -> bool:
    try:
        return bool(mx.metal.is_available())
    except Exception:
        return False
