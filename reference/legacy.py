"""The legacy block quants: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 (32 weights per block).

Bit-exact against ggml 0.25.3 (``ggml-common.h`` structs, ``ggml-quants.c`` functions). ``d``,
``m`` and ``s`` are IEEE half floats (little-endian), widened with ``fp.f16_to_f32``.

Q4_0 (18 bytes)

| field | C type      | count | bytes |
|-------|-------------|-------|-------|
| d     | ggml_half   | 1     | 2     |
| qs    | uint8_t     | 16    | 16    |

    q[j] = qs[j] & 0xF, q[j+16] = qs[j] >> 4          (j = 0..15)
    y[i] = (q[i] - 8) * d

Q4_1 (20 bytes)

| field | C type      | count | bytes |
|-------|-------------|-------|-------|
| d     | ggml_half   | 1     | 2     |
| m     | ggml_half   | 1     | 2     |
| qs    | uint8_t     | 16    | 16    |

    y[i] = q[i] * d + m                               (multiply, round, then add, round: no FMA)

Q5_0 (22 bytes)

| field | C type      | count | bytes |
|-------|-------------|-------|-------|
| d     | ggml_half   | 1     | 2     |
| qh    | uint8_t     | 4     | 4     |
| qs    | uint8_t     | 16    | 16    |

    qh read as a little-endian uint32; bit i of qh is bit 4 of q[i]
    q[j] = (qs[j] & 0xF) | ((qh >> j) & 1) << 4, q[j+16] = (qs[j] >> 4) | ((qh >> (j+16)) & 1) << 4
    y[i] = (q[i] - 16) * d

Q5_1 (24 bytes)

| field | C type      | count | bytes |
|-------|-------------|-------|-------|
| d     | ggml_half   | 1     | 2     |
| m     | ggml_half   | 1     | 2     |
| qh    | uint8_t     | 4     | 4     |
| qs    | uint8_t     | 16    | 16    |

    y[i] = q[i] * d + m                               (q as in Q5_0, without the -16)

Q8_0 (34 bytes)

| field | C type      | count | bytes |
|-------|-------------|-------|-------|
| d     | ggml_half   | 1     | 2     |
| qs    | int8_t      | 32    | 32    |

    y[i] = qs[i] * d

Q8_1 (36 bytes; ggml's activation type for dot products)

| field | C type      | count | bytes |
|-------|-------------|-------|-------|
| d     | ggml_half   | 1     | 2     |
| s     | ggml_half   | 1     | 2     |
| qs    | int8_t      | 32    | 32    |

    y[i] = qs[i] * d         (ggml has no to_float for Q8_1; this is Q8_0's formula on d and qs)
    s    = fp16(d * Σ qs[i])  (a precomputed sum for the dot product; not used to dequantize)

Quantizers (``QUANTIZE[name](row, imatrix)``, one row):

* without an importance matrix, the ``quantize_row_*_ref`` functions: the scale comes from the
  block's absolute maximum (Q4_0/Q5_0/Q8_0/Q8_1) or its min and max (Q4_1/Q5_1), the levels by
  truncating ``x/d + offset`` (Q4/Q5) or ``roundf(x/d)`` (Q8).
* with one (``quantize_row_q4_0_impl`` etc.): per-weight importance
  ``weight[j] = imatrix[j] * sqrt(sigma2 + x[j]^2)`` with ``sigma2 = Σx²/n_per_row`` over the row,
  then ``make_qx_quants`` (Q4_0, Q5_0) or ``make_qkx3_quants`` (Q4_1, Q5_1) from ``search.py``.
  Q8_0 ignores the imatrix; Q8_1 is not quantized by ``ggml_quantize_chunk`` at all (its
  reference quantizer takes none), so it ignores it too.
"""

from __future__ import annotations

import numpy as np

from .fp import f16_bytes, f16_to_f32
from .search import c_int, c_max, c_roundf, make_qkx3_quants, make_qx_quants, seq_sum, to_int8

f32 = np.float32

QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1 = 32

FLT_MAX = f32(np.finfo(np.float32).max)


# --------------------------------------------------------------------------------------------------
# helpers

def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes -> 32 4-bit values: low nibbles are elements 0..15, high nibbles 16..31."""
    return np.concatenate((qs & 0x0F, qs >> 4)).astype(np.int64)


def _fifth_bits(qh_bytes: np.ndarray) -> np.ndarray:
    """4 bytes of qh (a little-endian uint32) -> bit 4 of each of the 32 levels (0 or 16)."""
    qh = int.from_bytes(bytes(qh_bytes), "little")
    return np.array([((qh >> i) & 1) << 4 for i in range(32)], dtype=np.int64)


def _pack_nibbles(q: np.ndarray) -> bytes:
    """qs[j] = q[j] | q[j+16] << 4 (the low 4 bits of each; callers pass 0..15)."""
    q = np.asarray(q, dtype=np.int64)
    return ((q[:16] & 0x0F) | ((q[16:] & 0x0F) << 4)).astype(np.uint8).tobytes()


def _pack_qh(q: np.ndarray) -> bytes:
    """qh |= ((q[i] & 0x10) >> 4) << i, stored as a little-endian uint32."""
    qh = 0
    for i, v in enumerate(np.asarray(q, dtype=np.int64)):
        qh |= ((int(v) & 0x10) >> 4) << i
    return qh.to_bytes(4, "little")


def read_f16(block: bytes, offset: int) -> np.float32:
    """The fp16 field at ``offset`` widened to float32 (``GGML_FP16_TO_FP32``)."""
    return f16_to_f32(np.frombuffer(block, "<u2", 1, offset))[0]


def _mul_add(q: np.ndarray, d: np.float32, m: np.float32) -> np.ndarray:
    """``q*d + m`` as ggml computes it: multiply (round), then add (round); no FMA.

    NaN payloads: when both ``q*d`` and ``m`` are NaN, x86's ``addss`` returns its first operand,
    the product. numpy's SIMD loops may put the scalar first, so the product's NaN is selected
    explicitly.
    """
    prod = q * d
    return np.where(np.isnan(prod), prod, prod + m)


def _blocks(row: np.ndarray, qk: int):
    return [row[i:i + qk] for i in range(0, row.size, qk)]


def _absmax_with_sign(x):
    """``if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`` from 0: the first element of largest
    magnitude and its sign (NaN never taken)."""
    amax = f32(0.0)
    max_ = f32(0.0)
    for v in x:
        if amax < abs(v):
            amax = abs(v)
            max_ = v
    return amax, max_


def _minmax(x):
    """``min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v;``"""
    min_ = FLT_MAX
    max_ = -FLT_MAX
    for v in x:
        if v < min_:
            min_ = v
        if v > max_:
            max_ = v
    return min_, max_


def _inverse(d):
    """``d ? 1.0f/d : 0.0f`` (a NaN d is 'true')."""
    return f32(1.0) / d if d != 0 else f32(0.0)


def _row_weights(row: np.ndarray, imatrix: np.ndarray) -> np.ndarray:
    """ggml's imatrix weighting for the legacy types:
    ``sigma2 = (Σ x[j]*x[j]) / n_per_row`` over the whole row (sequential float sum), then
    ``weight[j] = imatrix[j] * sqrtf(sigma2 + x[j]*x[j])``."""
    sum_x2 = seq_sum(row * row)
    sigma2 = sum_x2 / f32(row.size)
    return imatrix * np.sqrt(sigma2 + row * row)


# --------------------------------------------------------------------------------------------------
# dequantize (one block -> 32 float32)

def _ieee_quiet(fn):
    """Inf*0, NaN scales etc. are valid inputs: compute with IEEE results and no numpy warnings."""
    def wrapper(block: bytes) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(block)
    wrapper.__name__ = wrapper.__qualname__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_ieee_quiet
def dequantize_block_q4_0(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    q = _nibbles(np.frombuffer(block, np.uint8, 16, 2))
    return (q - 8).astype(np.float32) * d  # x0*d: int converted to float, times d


@_ieee_quiet
def dequantize_block_q4_1(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    m = read_f16(block, 2)
    q = _nibbles(np.frombuffer(block, np.uint8, 16, 4))
    return _mul_add(q.astype(np.float32), d, m)  # x0*d + m


@_ieee_quiet
def dequantize_block_q5_0(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    qh = _fifth_bits(np.frombuffer(block, np.uint8, 4, 2))
    q = _nibbles(np.frombuffer(block, np.uint8, 16, 6)) | qh
    return (q - 16).astype(np.float32) * d


@_ieee_quiet
def dequantize_block_q5_1(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    m = read_f16(block, 2)
    qh = _fifth_bits(np.frombuffer(block, np.uint8, 4, 4))
    q = _nibbles(np.frombuffer(block, np.uint8, 16, 8)) | qh
    return _mul_add(q.astype(np.float32), d, m)


@_ieee_quiet
def dequantize_block_q8_0(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    qs = np.frombuffer(block, np.int8, 32, 2)
    return qs.astype(np.float32) * d


@_ieee_quiet
def dequantize_block_q8_1(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)  # s (bytes 2..3) is not needed to dequantize
    qs = np.frombuffer(block, np.int8, 32, 4)
    return qs.astype(np.float32) * d


# --------------------------------------------------------------------------------------------------
# quantize without an importance matrix: quantize_row_*_ref, one block at a time

def quantize_block_q4_0(x: np.ndarray) -> bytes:
    """quantize_row_q4_0_ref: d = max/-8 (max = the signed element of largest magnitude), so the
    extreme element maps to level 0; levels = MIN(15, (int8_t)(x*id + 8.5f)) (truncation)."""
    _, max_ = _absmax_with_sign(x)
    d = max_ / f32(-8.0)
    id_ = _inverse(d)
    # (int8_t)(x0 + 8.5f): float -> int (truncates) -> low 8 bits; then MIN(15, ...) on the
    # signed value, stored in a uint8_t. For finite inputs the value is 0..16, so this is
    # min(15, trunc(x*id + 8.5)).
    xi = np.minimum(15, to_int8(c_int(x * id_ + f32(8.5)))) & 0xFF
    qs = (xi[:16] | (xi[16:] << 4)) & 0xFF  # qs[j] = xi0 | xi1 << 4, truncated to a byte
    return f16_bytes(d) + qs.astype(np.uint8).tobytes()


def quantize_block_q4_1(x: np.ndarray) -> bytes:
    """quantize_row_q4_1_ref: d = (max-min)/15, m = min; levels MIN(15, (int8_t)((x-min)*id + 0.5f))."""
    min_, max_ = _minmax(x)
    d = (max_ - min_) / f32(15.0)  # ((1 << 4) - 1)
    id_ = _inverse(d)
    xi = np.minimum(15, to_int8(c_int((x - min_) * id_ + f32(0.5)))) & 0xFF
    qs = (xi[:16] | (xi[16:] << 4)) & 0xFF
    return f16_bytes(d) + f16_bytes(min_) + qs.astype(np.uint8).tobytes()


def quantize_block_q5_0(x: np.ndarray) -> bytes:
    """quantize_row_q5_0_ref: d = max/-16; levels MIN(31, (int8_t)(x*id + 16.5f))."""
    _, max_ = _absmax_with_sign(x)
    d = max_ / f32(-16.0)
    id_ = _inverse(d)
    xi = np.minimum(31, to_int8(c_int(x * id_ + f32(16.5)))) & 0xFF
    return f16_bytes(d) + _pack_qh(xi) + _pack_nibbles(xi)


def quantize_block_q5_1(x: np.ndarray) -> bytes:
    """quantize_row_q5_1_ref: d = (max-min)/31, m = min; levels (uint8_t)((x-min)*id + 0.5f)
    (no MIN: for finite inputs the value is at most 31.5)."""
    min_, max_ = _minmax(x)
    d = (max_ - min_) / f32(31.0)  # ((1 << 5) - 1)
    id_ = _inverse(d)
    xi = c_int((x - min_) * id_ + f32(0.5)) & 0xFF
    return f16_bytes(d) + f16_bytes(min_) + _pack_qh(xi) + _pack_nibbles(xi)


def _q8_scale(x):
    """amax = MAX(amax, fabsf(v)) from 0 (a NaN can enter here, unlike the Q4/Q5 searches);
    d = amax / 127; id = d ? 1/d : 0."""
    amax = f32(0.0)
    for v in x:
        amax = c_max(amax, abs(v))
    d = amax / f32(127.0)  # ((1 << 7) - 1)
    return d, _inverse(d)


def quantize_block_q8_0(x: np.ndarray) -> bytes:
    """quantize_row_q8_0_ref: d = amax/127, qs = roundf(x*id) (half away from zero) as int8."""
    d, id_ = _q8_scale(x)
    qs = to_int8(c_int(c_roundf(x * id_)))
    return f16_bytes(d) + qs.astype(np.int8).tobytes()


def quantize_block_q8_1(x: np.ndarray) -> bytes:
    """quantize_row_q8_1_ref: as Q8_0, plus s = GGML_FP32_TO_FP16(sum*d) with sum the int sum of
    the stored int8 levels (converted to float, then multiplied by the float32 d)."""
    d, id_ = _q8_scale(x)
    qs = to_int8(c_int(c_roundf(x * id_)))
    s = f32(int(qs.sum())) * d
    return f16_bytes(d) + f16_bytes(s) + qs.astype(np.int8).tobytes()


# --------------------------------------------------------------------------------------------------
# quantize with an importance matrix: quantize_row_*_impl

def quantize_block_q4_0_imatrix(x: np.ndarray, weight: np.ndarray) -> bytes:
    """d = make_qx_quants(32, 8, x, L, rmse_type=1, weight); levels L in 0..15."""
    d, L = make_qx_quants(QK4_0, 8, x, 1, weight)
    return f16_bytes(d) + _pack_nibbles(L)


def quantize_block_q4_1_imatrix(x: np.ndarray, weight: np.ndarray) -> bytes:
    """d = make_qkx3_quants(32, 15, x, weight, L, &min, Laux, -0.9f, 0.05f, 36, false); m = -min."""
    d, L, the_min = make_qkx3_quants(QK4_1, 15, x, weight, -0.9, 0.05, 36, False)
    return f16_bytes(d) + f16_bytes(-the_min) + _pack_nibbles(L)


def quantize_block_q5_0_imatrix(x: np.ndarray, weight: np.ndarray) -> bytes:
    """d = make_qx_quants(32, 16, x, L, 1, weight); levels L in 0..31."""
    d, L = make_qx_quants(QK5_0, 16, x, 1, weight)
    L = L.astype(np.int64) & 0xFF
    return f16_bytes(d) + _pack_qh(L) + _pack_nibbles(L)


def quantize_block_q5_1_imatrix(x: np.ndarray, weight: np.ndarray) -> bytes:
    """d = make_qkx3_quants(32, 31, x, weight, L, &min, Laux, -0.9f, 0.05f, 36, false); m = -min."""
    d, L, the_min = make_qkx3_quants(QK5_1, 31, x, weight, -0.9, 0.05, 36, False)
    L = L.astype(np.int64)
    return f16_bytes(d) + f16_bytes(-the_min) + _pack_qh(L) + _pack_nibbles(L)


# --------------------------------------------------------------------------------------------------
# row quantizers (the QUANTIZE entry points)

def _row_quantizer(name, qk, plain, with_imatrix=None):
    def quantize_row(row: np.ndarray, imatrix=None) -> bytes:
        row = np.asarray(row, dtype=np.float32)
        with np.errstate(all="ignore"):
            if imatrix is None or with_imatrix is None:
                return b"".join(plain(xb) for xb in _blocks(row, qk))
            imatrix = np.asarray(imatrix, dtype=np.float32)
            weights = _row_weights(row, imatrix)
            return b"".join(with_imatrix(xb, wb) for xb, wb in zip(_blocks(row, qk), _blocks(weights, qk)))
    quantize_row.__name__ = quantize_row.__qualname__ = f"quantize_row_{name}"
    quantize_row.__doc__ = (f"One row: {plain.__name__} per block"
                            + (f"; with an imatrix {with_imatrix.__name__}." if with_imatrix else
                               " (an imatrix is ignored)."))
    return quantize_row


quantize_row_q4_0 = _row_quantizer("q4_0", QK4_0, quantize_block_q4_0, quantize_block_q4_0_imatrix)
quantize_row_q4_1 = _row_quantizer("q4_1", QK4_1, quantize_block_q4_1, quantize_block_q4_1_imatrix)
quantize_row_q5_0 = _row_quantizer("q5_0", QK5_0, quantize_block_q5_0, quantize_block_q5_0_imatrix)
quantize_row_q5_1 = _row_quantizer("q5_1", QK5_1, quantize_block_q5_1, quantize_block_q5_1_imatrix)
quantize_row_q8_0 = _row_quantizer("q8_0", QK8_0, quantize_block_q8_0)
quantize_row_q8_1 = _row_quantizer("q8_1", QK8_1, quantize_block_q8_1)


DEQUANTIZE = {
    "Q4_0": dequantize_block_q4_0,
    "Q4_1": dequantize_block_q4_1,
    "Q5_0": dequantize_block_q5_0,
    "Q5_1": dequantize_block_q5_1,
    "Q8_0": dequantize_block_q8_0,
    "Q8_1": dequantize_block_q8_1,
}

QUANTIZE = {
    "Q4_0": quantize_row_q4_0,
    "Q4_1": quantize_row_q4_1,
    "Q5_0": quantize_row_q5_0,
    "Q5_1": quantize_row_q5_1,
    "Q8_0": quantize_row_q8_0,
    "Q8_1": quantize_row_q8_1,
}
