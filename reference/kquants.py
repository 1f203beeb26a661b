"""The k-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation type Q8_K.

Bit-exact against ggml 0.25.3 (``ggml-quants.c``). Every k-quant packs ``QK_K = 256`` weights in a
*super-block*; inside it, sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K) weights each carry
a small integer scale (and, for the "+min" types, a small integer min), which the super-block's fp16
``d`` (and ``dmin``) turn into floats. All multi-byte fields are little-endian; offsets below are from
the start of the block (``sizeof`` as in ``ggml-common.h``, no padding).

Q2_K (84 bytes, 2.625 bpw): x = d*sc*q - dmin*m, 16 sub-blocks of 16
--------------------------------------------------------------------
| field  | C type  | count | bytes | offset | meaning                                                 |
|--------|---------|-------|-------|--------|---------------------------------------------------------|
| scales | uint8_t | 16    | 16    | 0      | sub-block j: scale ``sc = scales[j] & 0xF``, min ``m = scales[j] >> 4`` |
| qs     | uint8_t | 64    | 64    | 16     | 2-bit quants, four per byte                             |
| d      | fp16    | 1     | 2     | 80     | super-block scale of the scales                         |
| dmin   | fp16    | 1     | 2     | 82     | super-block scale of the mins                           |

Weight ``k = 128*h + 32*s + 16*g + l`` (h in 0..1, s in 0..3, g in 0..1, l in 0..15) has
``q = (qs[32*h + 16*g + l] >> 2*s) & 3`` and belongs to sub-block ``j = k // 16``::

    y[k] = (d * sc[j]) * q - dmin * m[j]

Q3_K (110 bytes, 3.4375 bpw): x = d*(sc-32)*q, 16 sub-blocks of 16
------------------------------------------------------------------
| field  | C type  | count | bytes | offset | meaning                                               |
|--------|---------|-------|-------|--------|-------------------------------------------------------|
| hmask  | uint8_t | 32    | 32    | 0      | high bit of each quant (set = *no* -4 offset)          |
| qs     | uint8_t | 64    | 64    | 32     | low 2 bits of each quant, four per byte (as Q2_K)     |
| scales | uint8_t | 12    | 12    | 96     | sixteen 6-bit scales (see ``unpack_q3_K_scales``)     |
| d      | fp16    | 1     | 2     | 108    | super-block scale                                     |

Scale j (6 bits, stored with a +32 bias): low 4 bits = ``scales[j] & 0xF`` for j < 8, else
``scales[j-8] >> 4``; high 2 bits = ``(scales[8 + j%4] >> 2*(j//4)) & 3``. Weight
``k = 128*h + 32*s + 16*g + l`` has low bits as in Q2_K and high bit ``hmask[16*g + l] >> (4*h + s) & 1``::

    y[k] = (d * (sc[j] - 32)) * (q_low - (high bit ? 0 : 4))          (q in -4..3)

Q4_K (144 bytes, 4.5 bpw): x = d*sc*q - dmin*m, 8 sub-blocks of 32
------------------------------------------------------------------
| field  | C type  | count | bytes | offset | meaning                                           |
|--------|---------|-------|-------|--------|---------------------------------------------------|
| d      | fp16    | 1     | 2     | 0      | super-block scale of the scales                   |
| dmin   | fp16    | 1     | 2     | 2      | super-block scale of the mins                     |
| scales | uint8_t | 12    | 12    | 4      | eight 6-bit scales and eight 6-bit mins (``get_scale_min_k4``) |
| qs     | uint8_t | 128   | 128   | 16     | 4-bit quants: byte 32*c + l holds weight 64*c + l (low nibble) and 64*c + 32 + l (high) |

``get_scale_min_k4(j, scales)``: for j < 4, ``sc = scales[j] & 63``, ``m = scales[j+4] & 63``;
for j >= 4, ``sc = (scales[j+4] & 0xF) | (scales[j-4] >> 6) << 4`` and
``m = (scales[j+4] >> 4) | (scales[j] >> 6) << 4``. Weight k is in sub-block ``j = k // 32``::

    y[k] = (d * sc[j]) * q - dmin * m[j]                                (q in 0..15)

Q5_K (176 bytes, 5.5 bpw): as Q4_K with a fifth bit
---------------------------------------------------
| field  | C type  | count | bytes | offset | meaning                                              |
|--------|---------|-------|-------|--------|------------------------------------------------------|
| d      | fp16    | 1     | 2     | 0      | super-block scale of the scales                      |
| dmin   | fp16    | 1     | 2     | 2      | super-block scale of the mins                        |
| scales | uint8_t | 12    | 12    | 4      | as Q4_K                                              |
| qh     | uint8_t | 32    | 32    | 16     | bit j of ``qh[l]``: 5th bit of weight ``32*j + l``   |
| qs     | uint8_t | 128   | 128   | 48     | low 4 bits, laid out as Q4_K's ``qs``                |

    y[k] = (d * sc[j]) * (q_low + 16*high) - dmin * m[j]                (q in 0..31)

Q6_K (210 bytes, 6.5625 bpw): x = d*sc*q, 16 sub-blocks of 16
-------------------------------------------------------------
| field  | C type  | count | bytes | offset | meaning                                             |
|--------|---------|-------|-------|--------|-----------------------------------------------------|
| ql     | uint8_t | 128   | 128   | 0      | low 4 bits of each quant                            |
| qh     | uint8_t | 64    | 64    | 128    | high 2 bits of each quant, four per byte            |
| scales | int8_t  | 16    | 16    | 192    | signed 8-bit sub-block scales                       |
| d      | fp16    | 1     | 2     | 208    | super-block scale                                   |

Weight ``k = 128*h + 32*s + l`` (s in 0..3, l in 0..31) has low nibble
``ql[64*h + 32*(s & 1) + l]`` (low nibble for s < 2, high nibble for s >= 2) and high bits
``(qh[32*h + l] >> 2*s) & 3``; ``q = (low | high << 4) - 32`` in -32..31; ``j = k // 16``::

    y[k] = (d * scales[j]) * q

Q8_K (292 bytes, 9.125 bpw): the activation type of the k-quant dot products
----------------------------------------------------------------------------
| field | C type  | count | bytes | offset | meaning                                     |
|-------|---------|-------|-------|--------|---------------------------------------------|
| d     | float   | 1     | 4     | 0      | scale (float32, not fp16)                   |
| qs    | int8_t  | 256   | 256   | 4      | quants                                      |
| bsums | int16_t | 16    | 32    | 260    | sum of the quants of each group of 16       |

    y[k] = d * qs[k]          (bsums are not used by dequantize)

All arithmetic is float32 in ggml's order (``(d * sc) * q - dmin * m``: the two products first, one
subtraction; the oracle's compiled code has no fused multiply-add). In dequantize every product is
exact (fp16 ``d`` has 11 significant bits, the integer factors at most 12), so only the subtraction
rounds; the quantizers' sums are where the order of operations matters. The quantizers are
described next to their functions and in ``docs/formats/kquants.md``; the shared scale searches
(``make_qx_quants``, ``make_q3_quants``, ``make_qkx2_quants``, ``make_qkx3_quants``,
``make_qp_quants``) live in ``search.py``.
"""

from __future__ import annotations

import functools

import numpy as np

from .fp import f16_to_f32, f32, f32_to_f16, nearest_int
from .search import (
    GROUP_MAX_EPS,
    make_q3_quants,
    make_qkx2_quants,
    make_qkx3_quants,
    make_qp_quants,
    make_qx_quants,
    nearest_int_array,
    seq_sum,
    to_int8,
)
from .types import QK_K

__all__ = [
    "DEQUANTIZE", "QUANTIZE", "get_scale_min_k4", "pack_scale_min_k4", "unpack_q3_K_scales",
    "pack_q3_K_scales",
    "dequantize_block_q2_K", "dequantize_block_q3_K", "dequantize_block_q4_K",
    "dequantize_block_q5_K", "dequantize_block_q6_K", "dequantize_block_q8_K",
    "quantize_block_q2_K", "quantize_block_q3_K", "quantize_block_q4_K", "quantize_block_q5_K",
    "quantize_block_q6_K", "quantize_block_q8_K",
    "quantize_row_q2_K", "quantize_row_q3_K", "quantize_row_q4_K", "quantize_row_q5_K",
    "quantize_row_q6_K", "quantize_row_q8_K",
]

K_SCALE_SIZE = 12


# ==================================================================================================
# small helpers

def _c_float_semantics(fn):
    """Run a quantizer with numpy's floating-point warnings off: overflow to Inf, Inf*0 = NaN and the
    like are part of the C semantics being reproduced (large inputs make fp16 ``d`` overflow), not
    errors."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return wrapper


def _fp16_bits(x) -> int:
    """GGML_FP32_TO_FP16 of a float32 scalar, as an int (round to nearest even, NaN -> 0x7E00)."""
    return int(f32_to_f16(f32(x)))


def _fp16_value(bits: int) -> np.float32:
    """GGML_FP16_TO_FP32 of fp16 bits given as an int."""
    return f32(f16_to_f32(np.array([bits], dtype=np.uint16))[0])


def _u8(raw: bytes, offset: int, count: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=offset).astype(np.int64)


def _pack_2bit(L) -> bytes:
    """Q2_K/Q3_K ``qs``: byte ``32*h + l`` = L[128h+l] | L[128h+l+32] << 2 | L[+64] << 4 | L[+96] << 6."""
    L = np.asarray(L, dtype=np.int64).reshape(2, 4, 32)  # (h, s, l)
    q = L[:, 0] | (L[:, 1] << 2) | (L[:, 2] << 4) | (L[:, 3] << 6)
    return (q & 0xFF).astype(np.uint8).tobytes()


def _unpack_2bit(qs: np.ndarray) -> np.ndarray:
    """Inverse of _pack_2bit: 64 bytes -> 256 values 0..3 in weight order."""
    q = qs.reshape(2, 1, 32)
    shifts = (2 * np.arange(4)).reshape(1, 4, 1)
    return ((q >> shifts) & 3).reshape(QK_K)


# --------------------------------------------------------------------------------------------------
# the 6-bit scale/min packing of Q4_K and Q5_K

def get_scale_min_k4(j: int, q) -> tuple[int, int]:
    """ggml's ``get_scale_min_k4``: the 6-bit scale and min of sub-block ``j`` (0..7) from the
    12-byte ``scales`` field ``q``.

    Bytes 0..3 hold scales 0..3 in their low 6 bits, bytes 4..7 mins 0..3; bytes 8..11 hold the low
    4 bits of scale j (low nibble) and min j (high nibble) for j = 4..7, whose top 2 bits sit in the
    spare top 2 bits of bytes j-4 (scale) and j (min).
    """
    if j < 4:
        return int(q[j]) & 63, int(q[j + 4]) & 63
    d = (int(q[j + 4]) & 0xF) | ((int(q[j - 4]) >> 6) << 4)
    m = (int(q[j + 4]) >> 4) | ((int(q[j]) >> 6) << 4)
    return d, m


def pack_scale_min_k4(ls, lm) -> bytes:
    """The 12-byte ``scales`` field of Q4_K/Q5_K from 8 scales and 8 mins, as ggml's quantizers
    write it (in the order j = 0..7, ``=`` for bytes 0..7 when j < 4, ``|=`` afterwards).

    Values are taken as ``uint8_t`` (the callers have clamped them to 0..63, except where ggml
    itself does not; then the extra bits land where ggml's stores put them)."""
    s = [0] * K_SCALE_SIZE
    for j in range(8):
        a = int(ls[j]) & 0xFF
        b = int(lm[j]) & 0xFF
        if j < 4:
            s[j] = a
            s[j + 4] = b
        else:
            s[j + 4] = ((a & 0xF) | ((b & 0xF) << 4)) & 0xFF
            s[j - 4] = (s[j - 4] | ((a >> 4) << 6)) & 0xFF
            s[j] = (s[j] | ((b >> 4) << 6)) & 0xFF
    return bytes(s)


# --------------------------------------------------------------------------------------------------
# the 6-bit scales of Q3_K

def unpack_q3_K_scales(scales) -> list[int]:
    """The sixteen 6-bit Q3_K scales (still biased by +32, 0..63) from the 12-byte field."""
    out = []
    for j in range(16):
        low = int(scales[j]) & 0xF if j < 8 else int(scales[j - 8]) >> 4
        high = (int(scales[8 + j % 4]) >> (2 * (j // 4))) & 3
        out.append(low | (high << 4))
    return out


def pack_q3_K_scales(l6) -> bytes:
    """Inverse of unpack_q3_K_scales for sixteen values 0..63 (ggml's packing loop)."""
    s = [0] * 12
    for j in range(16):
        l = int(l6[j])
        if j < 8:
            s[j] = l & 0xF
        else:
            s[j - 8] |= (l & 0xF) << 4
        l >>= 4
        s[j % 4 + 8] |= l << (2 * (j // 4))
    return bytes(v & 0xFF for v in s)


# ==================================================================================================
# dequantize (one block -> float32[256])

def dequantize_block_q2_K(block: bytes) -> np.ndarray:
    """``dequantize_row_q2_K`` for one block: y = (d * sc) * q - (dmin * m), per 16 weights."""
    scales = _u8(block, 0, 16)
    q = _unpack_2bit(_u8(block, 16, 64)).astype(np.float32).reshape(16, 16)
    d = _fp16_value(int.from_bytes(block[80:82], "little"))
    dmin = _fp16_value(int.from_bytes(block[82:84], "little"))
    with np.errstate(all="ignore"):
        dl = d * (scales & 0xF).astype(np.float32)      # float dl = d * (sc & 0xF)
        ml = dmin * (scales >> 4).astype(np.float32)    # float ml = min * (sc >> 4)
        y = dl[:, None] * q - ml[:, None]               # dl * q - ml (two roundings, no FMA)
    return y.astype(np.float32).reshape(QK_K)


def dequantize_block_q3_K(block: bytes) -> np.ndarray:
    """``dequantize_row_q3_K`` for one block: y = (d * (sc - 32)) * (q_low - (hbit ? 0 : 4))."""
    hmask = _u8(block, 0, 32)
    low = _unpack_2bit(_u8(block, 32, 64)).reshape(2, 4, 32)                  # (h, s, 16*g + l)
    sc = np.array(unpack_q3_K_scales(_u8(block, 96, 12)), dtype=np.int64) - 32
    d_all = _fp16_value(int.from_bytes(block[108:110], "little"))
    bit = (4 * np.arange(2)).reshape(2, 1, 1) + np.arange(4).reshape(1, 4, 1)  # hmask bit 4h + s
    high = (hmask.reshape(1, 1, 32) >> bit) & 1
    q = (low - np.where(high != 0, 0, 4)).reshape(16, 16).astype(np.float32)  # int, then to float
    with np.errstate(all="ignore"):
        dl = d_all * sc.astype(np.float32)
        y = dl[:, None] * q
    return y.astype(np.float32).reshape(QK_K)


def _scales_mins_k4(scales) -> tuple[np.ndarray, np.ndarray]:
    sm = [get_scale_min_k4(j, scales) for j in range(8)]
    return (np.array([a for a, _ in sm], dtype=np.float32), np.array([b for _, b in sm], dtype=np.float32))


def _unpack_4bit_k(qs: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K ``qs``: 128 bytes -> 256 nibbles in weight order (32 low nibbles, 32 high, ...)."""
    q = qs.reshape(4, 1, 32)
    return ((q >> np.array([0, 4]).reshape(1, 2, 1)) & 0xF).reshape(QK_K)


def dequantize_block_q4_K(block: bytes) -> np.ndarray:
    """``dequantize_row_q4_K`` for one block: y = (d * sc) * q - (dmin * m), per 32 weights."""
    d = _fp16_value(int.from_bytes(block[0:2], "little"))
    dmin = _fp16_value(int.from_bytes(block[2:4], "little"))
    sc, m = _scales_mins_k4(_u8(block, 4, 12))
    q = _unpack_4bit_k(_u8(block, 16, 128)).astype(np.float32).reshape(8, 32)
    with np.errstate(all="ignore"):
        d1 = d * sc
        m1 = dmin * m
        y = d1[:, None] * q - m1[:, None]
    return y.astype(np.float32).reshape(QK_K)


def dequantize_block_q5_K(block: bytes) -> np.ndarray:
    """``dequantize_row_q5_K`` for one block: as Q4_K with q = low nibble + 16 * qh bit."""
    d = _fp16_value(int.from_bytes(block[0:2], "little"))
    dmin = _fp16_value(int.from_bytes(block[2:4], "little"))
    sc, m = _scales_mins_k4(_u8(block, 4, 12))
    qh = _u8(block, 16, 32)
    low = _unpack_4bit_k(_u8(block, 48, 128)).reshape(8, 32)
    high = (qh.reshape(1, 32) >> np.arange(8).reshape(8, 1)) & 1                # bit j for sub-block j
    q = (low + 16 * high).astype(np.float32)
    with np.errstate(all="ignore"):
        d1 = d * sc
        m1 = dmin * m
        y = d1[:, None] * q - m1[:, None]
    return y.astype(np.float32).reshape(QK_K)


def dequantize_block_q6_K(block: bytes) -> np.ndarray:
    """``dequantize_row_q6_K`` for one block: y = (d * scales[j]) * q, q = 6-bit value - 32."""
    ql = _u8(block, 0, 128).reshape(2, 2, 32)                                  # (h, s & 1, l)
    qh = _u8(block, 128, 64).reshape(2, 1, 32)                                 # (h, -, l)
    sc = np.frombuffer(block, dtype=np.int8, count=16, offset=192).astype(np.float32)
    d = _fp16_value(int.from_bytes(block[208:210], "little"))
    low = np.concatenate([ql & 0xF, ql >> 4], axis=1)                          # s = 0, 1, 2, 3
    high = (qh >> (2 * np.arange(4)).reshape(1, 4, 1)) & 3
    q = ((low | (high << 4)) - 32).reshape(16, 16).astype(np.float32)
    with np.errstate(all="ignore"):
        y = (d * sc)[:, None] * q                                              # d * sc[is] * q: (d*sc)*q
    return y.astype(np.float32).reshape(QK_K)


def dequantize_block_q8_K(block: bytes) -> np.ndarray:
    """``dequantize_row_q8_K`` for one block: y = d * qs (d is a float32 field)."""
    d = np.frombuffer(block, dtype="<f4", count=1, offset=0)[0]
    qs = np.frombuffer(block, dtype=np.int8, count=QK_K, offset=4).astype(np.float32)
    with np.errstate(all="ignore"):
        return (f32(d) * qs).astype(np.float32)


# ==================================================================================================
# quantize

def _absmax_with_sign(x):
    """``if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }`` from 0: first largest |x|."""
    amax = f32(0.0)
    max_ = f32(0.0)
    for v in x:
        ax = abs(v)
        if ax > amax:
            amax = ax
            max_ = v
    return amax, max_


# -------------------------------------------------------------------------------------------- Q8_K

def quantize_block_q8_K(x) -> bytes:
    """``quantize_row_q8_K_ref`` for one block of 256.

    ``max`` = the first element of largest magnitude (with its sign). If it is 0 the block is
    d = 0, qs = 0 (ggml leaves ``bsums`` untouched; the oracle's zeroed buffer gives 0, and so do
    we). Otherwise ``iscale = -127.f/max`` (note: 127, not 128), ``qs = MIN(127, nearest_int(iscale*x))``,
    ``bsums[j]`` = the integer sum of qs[16j..16j+15], and ``d = 1/iscale``.
    """
    x = np.asarray(x, dtype=np.float32)
    amax, max_ = _absmax_with_sign(x)
    if not amax:
        return bytes(4 + QK_K + 2 * (QK_K // 16))
    iscale = f32(-127.0) / max_
    v = nearest_int_array(iscale * x)
    qs = to_int8(np.minimum(127, v))
    bsums = qs.reshape(16, 16).sum(axis=1)  # integer sums: exact
    d = f32(1.0) / iscale
    return (np.array([d], dtype="<f4").tobytes() + qs.astype(np.int8).tobytes()
            + (bsums & 0xFFFF).astype("<u2").tobytes())


@_c_float_semantics
def quantize_row_q8_K(row, imatrix=None) -> bytes:
    """``quantize_row_q8_K_ref`` over a row (the imatrix is ignored: ggml has no weighted Q8_K)."""
    row = np.asarray(row, dtype=np.float32)
    return b"".join(quantize_block_q8_K(row[i:i + QK_K]) for i in range(0, row.size, QK_K))


# -------------------------------------------------------------------------------------------- Q2_K

def _finish_q2_K(x, L, scales_bytes, d_bits, dmin_bits) -> bytes:
    """Shared tail of both Q2_K quantizers: re-derive the levels from the *stored* (fp16-rounded)
    d/dmin and 4-bit scales/mins, then pack.

    For sub-block j: ``d = fp16(d) * (scales[j] & 0xF)``; if d == 0 the levels found by the search
    stay; else ``m = fp16(dmin) * (scales[j] >> 4)`` and ``L = clamp(nearest_int((x + m)/d), 0, 3)``.
    """
    dd = _fp16_value(d_bits)
    mm = _fp16_value(dmin_bits)
    L = np.array(L, dtype=np.int64)
    for j in range(16):
        d = dd * f32(scales_bytes[j] & 0xF)
        if not d:  # `if (!d) continue;`  (a NaN d does not skip)
            continue
        m = mm * f32(scales_bytes[j] >> 4)
        xb = x[16 * j:16 * j + 16]
        with np.errstate(all="ignore"):
            L[16 * j:16 * j + 16] = np.clip(nearest_int_array((xb + m) / d), 0, 3)
    return (bytes(scales_bytes) + _pack_2bit(L)
            + d_bits.to_bytes(2, "little") + dmin_bits.to_bytes(2, "little"))


def quantize_block_q2_K(x) -> bytes:
    """``quantize_row_q2_K_ref`` for one block (no importance matrix).

    1. Each sub-block of 16: ``make_qkx2_quants(16, 3, x, |x|, rmin=-0.5f, rdelta=0.1f, nstep=15,
       use_mad=true)`` -> scale, min (as a positive number), levels.
    2. ``max_scale``/``max_min`` = largest scale / min (strict ``>`` from 0).
       If max_scale > 0: scale j -> ``nearest_int(15.f/max_scale * scale)`` (low nibble), and
       ``d = fp16(max_scale/15.f)``; else scales 0 and d = 0. Same with mins (high nibble) and dmin.
    3. Levels re-derived from the stored values (``_finish_q2_K``), packed 4 per byte.
    """
    x = np.asarray(x, dtype=np.float32)
    L = np.zeros(QK_K, dtype=np.int64)
    scales = [f32(0.0)] * 16
    mins = [f32(0.0)] * 16
    max_scale = f32(0.0)
    max_min = f32(0.0)
    for j in range(16):
        xb = x[16 * j:16 * j + 16]
        weights = np.abs(xb)
        scales[j], Lj, mins[j] = make_qkx2_quants(16, 3, xb, weights, -0.5, 0.1, 15, True)
        L[16 * j:16 * j + 16] = Lj
        if scales[j] > max_scale:
            max_scale = scales[j]
        if mins[j] > max_min:
            max_min = mins[j]

    q4scale = f32(15.0)
    sc = [0] * 16
    if max_scale > 0:
        iscale = q4scale / max_scale
        for j in range(16):
            sc[j] = nearest_int(iscale * scales[j]) & 0xFF  # y[i].scales[j] = l (uint8_t store)
        d_bits = _fp16_bits(max_scale / q4scale)
    else:
        d_bits = _fp16_bits(0.0)
    if max_min > 0:
        iscale = q4scale / max_min
        for j in range(16):
            sc[j] = (sc[j] | (nearest_int(iscale * mins[j]) << 4)) & 0xFF
        dmin_bits = _fp16_bits(max_min / q4scale)
    else:
        dmin_bits = _fp16_bits(0.0)
    return _finish_q2_K(x, L, sc, d_bits, dmin_bits)


def quantize_block_q2_K_imatrix(x, qw, sigma2) -> bytes:
    """``quantize_row_q2_K_impl`` for one block, ``qw`` = the 256 importance weights of its columns.

    1. weights ``w = qw * sqrtf(sigma2 + x*x)`` with ``sigma2 = Σx²/256`` of *this block* (computed
       by the caller); ``sw[j]`` = Σ of the 16 weights of sub-block j.
    2. Each sub-block: ``make_qkx3_quants(16, 3, x, w, rmin=-0.9f, rdelta=0.05f, nstep=36,
       use_mad=false)``.
    3. The 16 scales and the 16 mins are themselves quantized to 4 bits by
       ``make_qp_quants(16, 15, ., sw)``, which returns d and dmin (stored as fp16).
    4. Levels re-derived from the stored values, packed (``_finish_q2_K``).
    """
    x = np.asarray(x, dtype=np.float32)
    L = np.zeros(QK_K, dtype=np.int64)
    scales = np.zeros(16, dtype=np.float32)
    mins = np.zeros(16, dtype=np.float32)
    sw = np.zeros(16, dtype=np.float32)
    for j in range(16):
        xb = x[16 * j:16 * j + 16]
        weight = qw[16 * j:16 * j + 16] * np.sqrt(sigma2 + xb * xb)  # qw[l] * sqrtf(sigma2 + x*x)
        sw[j] = seq_sum(weight)
        s, Lj, m = make_qkx3_quants(16, 3, xb, weight, -0.9, 0.05, 36, False)
        scales[j], mins[j] = s, m
        L[16 * j:16 * j + 16] = Lj
    dm, Ls = make_qp_quants(16, 15, scales, sw)
    mm, Lm = make_qp_quants(16, 15, mins, sw)
    sc = [(int(Ls[j]) | (int(Lm[j]) << 4)) & 0xFF for j in range(16)]
    return _finish_q2_K(x, L, sc, _fp16_bits(dm), _fp16_bits(mm))


# -------------------------------------------------------------------------------------------- Q3_K

def _finish_q3_K(x, L, scale_bytes: bytes, d_bits: int) -> bytes:
    """Shared tail of both Q3_K quantizers: re-derive the levels from the stored d and 6-bit
    scales (``d = fp16(d) * (sc - 32)``; skip when d == 0, else ``clamp(nearest_int(x/d), -4, 3) + 4``),
    then split off the high bit into ``hmask`` and pack the low 2 bits."""
    dd = _fp16_value(d_bits)
    sc6 = unpack_q3_K_scales(scale_bytes)
    L = np.array(L, dtype=np.int64)
    for j in range(16):
        d = dd * f32(sc6[j] - 32)
        if not d:
            continue
        xb = x[16 * j:16 * j + 16]
        with np.errstate(all="ignore"):
            L[16 * j:16 * j + 16] = np.clip(nearest_int_array(xb / d), -4, 3) + 4
    # hmask: the high bit of weight k goes to bit k // 32 of hmask[k % 32]
    hmask = [0] * 32
    for k in range(QK_K):
        if L[k] > 3:
            hmask[k % 32] |= 1 << (k // 32)
            L[k] -= 4
    return bytes(hmask) + _pack_2bit(L) + bytes(scale_bytes) + d_bits.to_bytes(2, "little")


def quantize_block_q3_K(x) -> bytes:
    """``quantize_row_q3_K_ref`` for one block.

    1. Each sub-block of 16: ``make_q3_quants(16, 4, x, do_rmse=true)`` -> signed scale, levels.
    2. ``max_scale`` = the scale of largest magnitude (first one, with its sign). If it is not 0:
       ``iscale = -32.f/max_scale``; scale j -> ``clamp(nearest_int(iscale*scale_j), -32, 31) + 32``
       (6 bits), ``d = fp16(1/iscale)``. Else scales 0, d = 0.
    3. Levels re-derived from the stored values, packed (``_finish_q3_K``).
    """
    x = np.asarray(x, dtype=np.float32)
    L = np.zeros(QK_K, dtype=np.int64)
    scales = [f32(0.0)] * 16
    max_scale = f32(0.0)
    amax = f32(0.0)
    for j in range(16):
        scales[j], Lj = make_q3_quants(16, 4, x[16 * j:16 * j + 16], True)
        L[16 * j:16 * j + 16] = Lj
        scale = abs(scales[j])
        if scale > amax:
            amax = scale
            max_scale = scales[j]
    if max_scale:
        iscale = f32(-32.0) / max_scale
        l6 = []
        for j in range(16):
            l = int(to_int8(nearest_int(iscale * scales[j])))  # int8_t l = nearest_int(...)
            l6.append(max(-32, min(31, l)) + 32)
        scale_bytes = pack_q3_K_scales(l6)
        d_bits = _fp16_bits(f32(1.0) / iscale)
    else:
        scale_bytes = bytes(12)
        d_bits = _fp16_bits(0.0)
    return _finish_q3_K(x, L, scale_bytes, d_bits)


def quantize_block_q3_K_imatrix(x, qw, sigma2) -> bytes:
    """``quantize_row_q3_K_impl`` for one block with importance weights ``qw`` (256 values).

    1. ``w = qw * sqrtf(sigma2 + x*x)`` with ``sigma2 = 2*Σx²/256`` of this block; ``sw[j] = Σw``
       over sub-block j.
    2. Each sub-block: ``make_qx_quants(16, 4, x, rmse_type=1, qw=w)`` -> signed scale, levels.
    3. The 16 scales: ``make_qx_quants(16, 32, scales, rmse_type=1, qw=sw)`` -> d and 6-bit codes
       (already biased by +32), stored directly.
    4. Levels re-derived from the stored values, packed (``_finish_q3_K``).
    """
    x = np.asarray(x, dtype=np.float32)
    L = np.zeros(QK_K, dtype=np.int64)
    scales = np.zeros(16, dtype=np.float32)
    sw = np.zeros(16, dtype=np.float32)
    for j in range(16):
        xb = x[16 * j:16 * j + 16]
        weight = qw[16 * j:16 * j + 16] * np.sqrt(sigma2 + xb * xb)
        sw[j] = seq_sum(weight)
        scales[j], Lj = make_qx_quants(16, 4, xb, 1, weight)
        L[16 * j:16 * j + 16] = Lj
    d_block, Ls = make_qx_quants(16, 32, scales, 1, sw)
    return _finish_q3_K(x, L, pack_q3_K_scales([int(v) for v in Ls]), _fp16_bits(d_block))


# ---------------------------------------------------------------------------------- Q4_K and Q5_K

def _requantize_k4(x, L, scale_bytes: bytes, d_bits: int, dmin_bits: int, nmax: int) -> np.ndarray:
    """Levels from the stored values: for sub-block j (of 32) with (sc, m) = get_scale_min_k4(j),
    ``d = fp16(d) * sc``; skip when d == 0; else ``dm = fp16(dmin) * m`` and
    ``L = clamp(nearest_int((x + dm)/d), 0, nmax)``."""
    dd = _fp16_value(d_bits)
    mm = _fp16_value(dmin_bits)
    L = np.array(L, dtype=np.int64)
    for j in range(8):
        sc, m = get_scale_min_k4(j, scale_bytes)
        d = dd * f32(sc)
        if not d:
            continue
        dm = mm * f32(m)
        xb = x[32 * j:32 * j + 32]
        with np.errstate(all="ignore"):
            L[32 * j:32 * j + 32] = np.clip(nearest_int_array((xb + dm) / d), 0, nmax)
    return L


def _scales_ref_k4(x, nmax, rmin, rdelta, nstep):
    """Steps 1-2 of quantize_row_q4_K_ref / _q5_K_ref: per sub-block weights and make_qkx2_quants,
    then 6-bit codes for scales and mins relative to their maxima."""
    L = np.zeros(QK_K, dtype=np.int64)
    scales = [f32(0.0)] * 8
    mins = [f32(0.0)] * 8
    max_scale = f32(0.0)
    max_min = f32(0.0)
    for j in range(8):
        xb = x[32 * j:32 * j + 32]
        sum_x2 = seq_sum(xb * xb)
        av_x = np.sqrt(sum_x2 / f32(32.0))                 # sqrtf(sum_x2/32)
        weights = av_x + np.abs(xb)
        scales[j], Lj, mins[j] = make_qkx2_quants(32, nmax, xb, weights, rmin, rdelta, nstep, False)
        L[32 * j:32 * j + 32] = Lj
        if scales[j] > max_scale:
            max_scale = scales[j]
        if mins[j] > max_min:
            max_min = mins[j]
    inv_scale = f32(63.0) / max_scale if max_scale > 0 else f32(0.0)
    inv_min = f32(63.0) / max_min if max_min > 0 else f32(0.0)
    ls = [min(63, nearest_int(inv_scale * scales[j]) & 0xFF) for j in range(8)]  # uint8_t, then MIN(63, .)
    lm = [min(63, nearest_int(inv_min * mins[j]) & 0xFF) for j in range(8)]
    scale_bytes = pack_scale_min_k4(ls, lm)
    d_bits = _fp16_bits(max_scale / f32(63.0))
    dmin_bits = _fp16_bits(max_min / f32(63.0))
    return L, scale_bytes, d_bits, dmin_bits


def _scales_imatrix_k4(x, qw, sigma2, nmax, clamp63):
    """Steps 1-3 of quantize_row_q4_K_impl / _q5_K_impl: weights (importance-weighted, or
    ``av_x + |x|`` when ``qw`` is None), make_qkx3_quants per sub-block, then make_qp_quants(8, 63)
    over the scales and over the mins with the sub-block weight sums."""
    L = np.zeros(QK_K, dtype=np.int64)
    scales = np.zeros(8, dtype=np.float32)
    mins = np.zeros(8, dtype=np.float32)
    sw = np.zeros(8, dtype=np.float32)
    av_x = np.sqrt(sigma2)
    for j in range(8):
        xb = x[32 * j:32 * j + 32]
        if qw is not None:
            weights = qw[32 * j:32 * j + 32] * np.sqrt(sigma2 + xb * xb)
        else:
            weights = av_x + np.abs(xb)
        sw[j] = seq_sum(weights)
        s, Lj, m = make_qkx3_quants(32, nmax, xb, weights, -0.9, 0.05, 36, False)
        scales[j], mins[j] = s, m
        L[32 * j:32 * j + 32] = Lj
    d_block, Ls = make_qp_quants(8, 63, scales, sw)
    m_block, Lm = make_qp_quants(8, 63, mins, sw)
    ls = [int(v) for v in Ls]
    lm = [int(v) for v in Lm]
    if clamp63:  # Q5_K's impl has `ls = MIN(63, ls)`, Q4_K's does not
        ls = [min(63, v) for v in ls]
        lm = [min(63, v) for v in lm]
    return L, pack_scale_min_k4(ls, lm), _fp16_bits(d_block), _fp16_bits(m_block)


def _pack_q4_K(L, scale_bytes, d_bits, dmin_bits) -> bytes:
    L = np.asarray(L, dtype=np.int64).reshape(4, 2, 32)
    qs = (L[:, 0] | (L[:, 1] << 4)) & 0xFF  # q[l] = L[j + l] | L[j + l + 32] << 4
    return (d_bits.to_bytes(2, "little") + dmin_bits.to_bytes(2, "little") + bytes(scale_bytes)
            + qs.astype(np.uint8).tobytes())


def _pack_q5_K(L, scale_bytes, d_bits, dmin_bits) -> bytes:
    L = np.asarray(L, dtype=np.int64).reshape(4, 2, 32)                 # (n/64, half, j)
    high = (L > 15).astype(np.int64)
    low = L - 16 * high
    qh = np.zeros(32, dtype=np.int64)
    for c in range(4):
        qh |= high[c, 0] << (2 * c)      # m1 = 1 << 2c
        qh |= high[c, 1] << (2 * c + 1)  # m2 = 2 << 2c
    qs = (low[:, 0] | (low[:, 1] << 4)) & 0xFF
    return (d_bits.to_bytes(2, "little") + dmin_bits.to_bytes(2, "little") + bytes(scale_bytes)
            + (qh & 0xFF).astype(np.uint8).tobytes() + qs.astype(np.uint8).tobytes())


def quantize_block_q4_K(x) -> bytes:
    """``quantize_row_q4_K_ref`` for one block.

    1. Each sub-block of 32: ``av_x = sqrtf(Σx²/32)``, weights ``av_x + |x|``,
       ``make_qkx2_quants(32, 15, x, w, rmin=-1.f, rdelta=0.1f, nstep=20, use_mad=false)``.
    2. ``inv_scale = 63.f/max_scale`` (0 if max_scale <= 0), code ``MIN(63, (uint8_t)nearest_int(inv_scale*scale))``;
       the same for mins; packed with ``pack_scale_min_k4``; ``d = fp16(max_scale/63.f)``,
       ``dmin = fp16(max_min/63.f)``.
    3. Levels re-derived from the stored values (``_requantize_k4``), packed.
    """
    x = np.asarray(x, dtype=np.float32)
    L, scale_bytes, d_bits, dmin_bits = _scales_ref_k4(x, 15, -1.0, 0.1, 20)
    L = _requantize_k4(x, L, scale_bytes, d_bits, dmin_bits, 15)
    return _pack_q4_K(L, scale_bytes, d_bits, dmin_bits)


def quantize_block_q4_K_imatrix(x, qw, sigma2) -> bytes:
    """``quantize_row_q4_K_impl`` for one block (``sigma2 = 2*Σx²/256`` of this block).

    1. weights ``qw * sqrtf(sigma2 + x*x)``; ``sw[j]`` their sum over sub-block j.
    2. Each sub-block: ``make_qkx3_quants(32, 15, x, w, rmin=-0.9f, rdelta=0.05f, nstep=36, false)``.
    3. ``d, Ls = make_qp_quants(8, 63, scales, sw)``; ``dmin, Lm = make_qp_quants(8, 63, mins, sw)``;
       packed without a further clamp.
    4. Levels re-derived from the stored values, packed.
    """
    x = np.asarray(x, dtype=np.float32)
    L, scale_bytes, d_bits, dmin_bits = _scales_imatrix_k4(x, qw, sigma2, 15, clamp63=False)
    L = _requantize_k4(x, L, scale_bytes, d_bits, dmin_bits, 15)
    return _pack_q4_K(L, scale_bytes, d_bits, dmin_bits)


def quantize_block_q5_K(x) -> bytes:
    """``quantize_row_q5_K_ref`` for one block: as Q4_K with nmax = 31 and
    ``make_qkx2_quants(32, 31, x, w, rmin=-0.5f, rdelta=0.1f, nstep=15, false)``; the 5th bit of
    each level goes to ``qh``."""
    x = np.asarray(x, dtype=np.float32)
    L, scale_bytes, d_bits, dmin_bits = _scales_ref_k4(x, 31, -0.5, 0.1, 15)
    L = _requantize_k4(x, L, scale_bytes, d_bits, dmin_bits, 31)
    return _pack_q5_K(L, scale_bytes, d_bits, dmin_bits)


def quantize_block_q5_K_imatrix(x, qw, sigma2) -> bytes:
    """``quantize_row_q5_K_impl`` for one block: as Q4_K's with nmax = 31, and the 6-bit codes
    clamped with ``MIN(63, .)`` before packing."""
    x = np.asarray(x, dtype=np.float32)
    L, scale_bytes, d_bits, dmin_bits = _scales_imatrix_k4(x, qw, sigma2, 31, clamp63=True)
    L = _requantize_k4(x, L, scale_bytes, d_bits, dmin_bits, 31)
    return _pack_q5_K(L, scale_bytes, d_bits, dmin_bits)


# -------------------------------------------------------------------------------------------- Q6_K

def _quantize_block_q6_K(x, qw) -> bytes:
    """Body shared by ``quantize_row_q6_K_ref`` (qw None) and ``quantize_row_q6_K_impl``.

    1. Each sub-block of 16: ``make_qx_quants(16, 32, x, rmse_type=1, qw)`` (weights x² without an
       importance matrix, the raw importance weights with one) -> signed scale, levels.
    2. ``max_scale`` = the scale of largest magnitude (first, with sign). If its magnitude is
       below 1e-15 the whole block is zero bytes.
    3. ``iscale = -128.f/max_scale``; ``d = fp16(1/iscale)``; scale j ->
       ``(int8_t)MIN(127, nearest_int(iscale*scale_j))``.
    4. For each sub-block: ``d = fp16(d) * scale_j``; skip when 0; else
       ``L = clamp(nearest_int(x/d), -32, 31) + 32``.
    5. Pack: low nibbles to ``ql``, top 2 bits to ``qh`` (see the block table).
    """
    x = np.asarray(x, dtype=np.float32)
    L = np.zeros(QK_K, dtype=np.int64)
    scales = [f32(0.0)] * 16
    max_scale = f32(0.0)
    max_abs_scale = f32(0.0)
    for ib in range(16):
        w = None if qw is None else qw[16 * ib:16 * ib + 16]
        scale, Lj = make_qx_quants(16, 32, x[16 * ib:16 * ib + 16], 1, w)
        scales[ib] = scale
        L[16 * ib:16 * ib + 16] = Lj
        abs_scale = abs(scale)
        if abs_scale > max_abs_scale:
            max_abs_scale = abs_scale
            max_scale = scale
    if max_abs_scale < GROUP_MAX_EPS:
        return bytes(210)

    iscale = f32(-128.0) / max_scale
    d_bits = _fp16_bits(f32(1.0) / iscale)
    sc = [int(to_int8(min(127, nearest_int(iscale * scales[ib])))) for ib in range(16)]
    dd = _fp16_value(d_bits)
    for j in range(16):
        d = dd * f32(sc[j])
        if not d:
            continue
        xb = x[16 * j:16 * j + 16]
        with np.errstate(all="ignore"):
            L[16 * j:16 * j + 16] = np.clip(nearest_int_array(xb / d), -32, 31) + 32

    L = L.reshape(2, 4, 32)  # (h, s, l): weight 128h + 32s + l
    low = L & 0xF
    ql = np.concatenate([low[:, 0] | (low[:, 2] << 4), low[:, 1] | (low[:, 3] << 4)], axis=1)  # (h, 64)
    hi = L >> 4
    qh = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)                          # (h, 32)
    return ((ql & 0xFF).astype(np.uint8).tobytes() + (qh & 0xFF).astype(np.uint8).tobytes()
            + np.array(sc, dtype=np.int64).astype(np.int8).tobytes() + d_bits.to_bytes(2, "little"))


def quantize_block_q6_K(x) -> bytes:
    """``quantize_row_q6_K_ref`` for one block (see ``_quantize_block_q6_K``)."""
    return _quantize_block_q6_K(x, None)


def quantize_block_q6_K_imatrix(x, qw) -> bytes:
    """``quantize_row_q6_K_impl`` for one block: the raw importance weights ``qw`` go straight to
    make_qx_quants (no sigma2 term; ggml has it commented out)."""
    return _quantize_block_q6_K(x, np.asarray(qw, dtype=np.float32))


# ==================================================================================================
# rows

def _blocks(row):
    row = np.asarray(row, dtype=np.float32)
    for i in range(0, row.size, QK_K):
        yield i, row[i:i + QK_K]


def _sum_x2(xb) -> np.float32:
    """``float sumx2 = 0; for (j < QK_K) sumx2 += x[j]*x[j];`` (sequential)."""
    return seq_sum(xb * xb)


@_c_float_semantics
def quantize_row_q2_K(row, imatrix=None) -> bytes:
    """``quantize_q2_K`` for one row: the reference path without an importance matrix, else the
    weighted ``quantize_row_q2_K_impl`` with ``sigma2 = Σx²/256`` per block."""
    if imatrix is None:
        return b"".join(quantize_block_q2_K(xb) for _, xb in _blocks(row))
    qw = np.asarray(imatrix, dtype=np.float32)
    out = []
    for i, xb in _blocks(row):
        sigma2 = _sum_x2(xb) / f32(QK_K)  # sumx2/QK_K
        out.append(quantize_block_q2_K_imatrix(xb, qw[i:i + QK_K], sigma2))
    return b"".join(out)


@_c_float_semantics
def quantize_row_q3_K(row, imatrix=None) -> bytes:
    """``quantize_q3_K`` for one row: reference path, or ``quantize_row_q3_K_impl`` with
    ``sigma2 = 2*Σx²/256`` per block."""
    if imatrix is None:
        return b"".join(quantize_block_q3_K(xb) for _, xb in _blocks(row))
    qw = np.asarray(imatrix, dtype=np.float32)
    out = []
    for i, xb in _blocks(row):
        sigma2 = (f32(2.0) * _sum_x2(xb)) / f32(QK_K)  # 2*sumx2/QK_K: (2*sumx2)/256
        out.append(quantize_block_q3_K_imatrix(xb, qw[i:i + QK_K], sigma2))
    return b"".join(out)


@_c_float_semantics
def quantize_row_q4_K(row, imatrix=None) -> bytes:
    """``quantize_q4_K`` for one row: reference path, or ``quantize_row_q4_K_impl``."""
    if imatrix is None:
        return b"".join(quantize_block_q4_K(xb) for _, xb in _blocks(row))
    qw = np.asarray(imatrix, dtype=np.float32)
    out = []
    for i, xb in _blocks(row):
        sigma2 = (f32(2.0) * _sum_x2(xb)) / f32(QK_K)
        out.append(quantize_block_q4_K_imatrix(xb, qw[i:i + QK_K], sigma2))
    return b"".join(out)


@_c_float_semantics
def quantize_row_q5_K(row, imatrix=None) -> bytes:
    """``quantize_q5_K`` for one row: reference path, or ``quantize_row_q5_K_impl``."""
    if imatrix is None:
        return b"".join(quantize_block_q5_K(xb) for _, xb in _blocks(row))
    qw = np.asarray(imatrix, dtype=np.float32)
    out = []
    for i, xb in _blocks(row):
        sigma2 = (f32(2.0) * _sum_x2(xb)) / f32(QK_K)
        out.append(quantize_block_q5_K_imatrix(xb, qw[i:i + QK_K], sigma2))
    return b"".join(out)


@_c_float_semantics
def quantize_row_q6_K(row, imatrix=None) -> bytes:
    """``quantize_q6_K`` for one row: reference path, or ``quantize_row_q6_K_impl``."""
    if imatrix is None:
        return b"".join(quantize_block_q6_K(xb) for _, xb in _blocks(row))
    qw = np.asarray(imatrix, dtype=np.float32)
    return b"".join(quantize_block_q6_K_imatrix(xb, qw[i:i + QK_K]) for i, xb in _blocks(row))


DEQUANTIZE = {
    "Q2_K": dequantize_block_q2_K,
    "Q3_K": dequantize_block_q3_K,
    "Q4_K": dequantize_block_q4_K,
    "Q5_K": dequantize_block_q5_K,
    "Q6_K": dequantize_block_q6_K,
    "Q8_K": dequantize_block_q8_K,
}

QUANTIZE = {
    "Q2_K": quantize_row_q2_K,
    "Q3_K": quantize_row_q3_K,
    "Q4_K": quantize_row_q4_K,
    "Q5_K": quantize_row_q5_K,
    "Q6_K": quantize_row_q6_K,
    "Q8_K": quantize_row_q8_K,
}
