"""Ternary quants TQ1_0 and TQ2_0 (BitNet b1.58 / TriLM weights: levels -1, 0, +1 times d).

Bit-exact against ggml 0.25.3 (``block_tq1_0``/``block_tq2_0`` in ``ggml-common.h``;
``quantize_row_tq1_0_ref``, ``quantize_row_tq2_0_ref``, ``dequantize_row_tq1_0``/``_tq2_0`` in
``ggml-quants.c``). 256 weights per block (QK_K). ggml ignores an importance matrix for both.

TQ1_0 (54 bytes, 1.6875 bpw)

| field | C type    | count | bytes |
|-------|-----------|-------|-------|
| qs    | uint8_t   | 48    | 48    |
| qh    | uint8_t   | 4     | 4     |
| d     | ggml_half | 1     | 2     |

Each byte of ``qs`` holds five ternary digits, ``qh`` bytes four; a byte stores the digits
``t0 t1 t2 t3 t4`` (each 0, 1, 2 = level + 1) as ``ceil(N * 256 / 243)`` with
``N = t0*81 + t1*27 + t2*9 + t3*3 + t4`` (for qh: ``N = (t0*27 + t1*9 + t2*3 + t3) * 3``), so that
digit k comes back as the top "trit" of the byte after multiplying by 3**k modulo 256:

    digit k of byte b = ((uint8_t)(b * 3**k) * 3) >> 8          (k = 0..4)
    y = (digit - 1) * d

Element order (``y`` index), with ``qs`` split as bytes 0..31 and 32..47:

    y[32*k + m]        = digit k of qs[m]         k = 0..4, m = 0..31   (elements 0..159)
    y[160 + 16*k + m]  = digit k of qs[32 + m]    k = 0..4, m = 0..15   (elements 160..239)
    y[240 + 4*k + j]   = digit k of qh[j]         k = 0..3, j = 0..3    (elements 240..255)

TQ2_0 (66 bytes, 2.0625 bpw)

| field | C type    | count | bytes |
|-------|-----------|-------|-------|
| qs    | uint8_t   | 64    | 64    |
| d     | ggml_half | 1     | 2     |

    y[128*h + 32*l + m] = (((qs[32*h + m] >> (2*l)) & 3) - 1) * d     h = 0..1, l = 0..3, m = 0..31

(the 2-bit value 3 is not produced by the quantizer and dequantizes to +2d.)

Quantizer (both): ``d = max|x|`` over the block (``amax = MAX(amax, fabsf(x))`` from 0),
``id = d ? 1/d : 0``, digit = ``lroundf(x*id) + 1`` (round half away from zero).
"""

from __future__ import annotations

import numpy as np

from .fp import f16_bytes, f16_to_f32
from .search import blockwise_row_quantizer, c_max, c_roundf

f32 = np.float32

QK_K = 256
_POW3 = (1, 3, 9, 27, 81, 243)


def _read_f16(block: bytes, offset: int) -> np.float32:
    return f16_to_f32(np.frombuffer(block, "<u2", 1, offset))[0]


def _lroundf(v) -> np.ndarray:
    """glibc ``lroundf``: round half away from zero to a long; NaN, Inf and out-of-range values give
    LONG_MIN (its final ``(long int) x`` conversion on x86-64)."""
    r = c_roundf(v)
    ok = np.isfinite(r) & (np.abs(r) < f32(2.0**63))
    return np.where(ok, np.where(ok, r, f32(0.0)).astype(np.int64), np.int64(-(2**63)))


def _digits(v, id_) -> np.ndarray:
    """``int xi = lroundf(v*id) + 1`` as the low 8 bits the uint8_t arithmetic sees (0, 1, 2 for
    finite inputs)."""
    return (_lroundf(v * id_) + 1) & 0xFF


def _scale(x):
    amax = f32(0.0)
    for v in x:
        amax = c_max(amax, abs(v))  # MAX(amax, fabsf(v)): a NaN can enter (and leave) here
    d = amax
    id_ = f32(1.0) / d if d != 0 else f32(0.0)  # d ? 1.0f/d : 0.0f
    return d, id_


# --------------------------------------------------------------------------------------------------
# TQ1_0

def _pack_base3(digits: np.ndarray) -> np.ndarray:
    """digits (k, m): for each m, q = 0; for k: q = q*3 + digit (uint8_t arithmetic, mod 256)."""
    q = np.zeros(digits.shape[1], dtype=np.int64)
    for row in digits:
        q = (q * 3) & 0xFF
        q = (q + row) & 0xFF
    return q


def _ceil_to_byte(q: np.ndarray) -> np.ndarray:
    """``q = ((uint16_t)q * 256 + (243 - 1)) / 243`` (ceiling division), stored in a uint8_t."""
    return ((q * 256 + 242) // 243) & 0xFF


def quantize_block_tq1_0(x: np.ndarray) -> bytes:
    d, id_ = _scale(x)
    dig = _digits(x, id_)
    # qs[0..31]: five digits of x[m + 32*k]; qs[32..47]: five digits of x[160 + m + 16*k]
    q_a = _ceil_to_byte(_pack_base3(dig[0:160].reshape(5, 32)))
    q_b = _ceil_to_byte(_pack_base3(dig[160:240].reshape(5, 16)))
    # qh[j]: four digits of x[240 + j + 4*k], then one more *3 (the first digit is the top trit)
    q_h = _pack_base3(dig[240:256].reshape(4, 4))
    q_h = _ceil_to_byte((q_h * 3) & 0xFF)
    qs = np.concatenate((q_a, q_b, q_h)).astype(np.uint8)
    return qs.tobytes() + f16_bytes(d)


def dequantize_block_tq1_0(block: bytes) -> np.ndarray:
    d = _read_f16(block, 52)
    qs = np.frombuffer(block, np.uint8, 48, 0).astype(np.int64)
    qh = np.frombuffer(block, np.uint8, 4, 48).astype(np.int64)

    def digits(b, n):
        # q = (uint8_t)(b * pow3[k]); xi = ((uint16_t)q * 3) >> 8 ; one row per k
        return np.stack([(((b * _POW3[k]) & 0xFF) * 3) >> 8 for k in range(n)])

    xi = np.concatenate((digits(qs[:32], 5).reshape(-1), digits(qs[32:], 5).reshape(-1),
                         digits(qh, 4).reshape(-1)))
    with np.errstate(invalid="ignore"):
        return (xi - 1).astype(np.float32) * d  # (float)(xi - 1) * d


# --------------------------------------------------------------------------------------------------
# TQ2_0

def quantize_block_tq2_0(x: np.ndarray) -> bytes:
    d, id_ = _scale(x)
    dig = _digits(x, id_)
    qs = []
    for h in range(2):  # 128 elements per 32 bytes
        part = dig[128 * h:128 * (h + 1)].reshape(4, 32)  # part[n][m] = digit of x[m + 32*n]
        q = np.zeros(32, dtype=np.int64)
        for n in range(4):
            q = q + ((part[n] & 3) << (2 * n))  # q += (xi & 3) << (2*n)
        qs.append(q & 0xFF)
    return np.concatenate(qs).astype(np.uint8).tobytes() + f16_bytes(d)


def dequantize_block_tq2_0(block: bytes) -> np.ndarray:
    d = _read_f16(block, 64)
    qs = np.frombuffer(block, np.uint8, 64, 0).astype(np.int64)
    q = np.concatenate([np.stack([(qs[32 * h:32 * h + 32] >> (2 * l)) & 3 for l in range(4)]).reshape(-1)
                        for h in range(2)])
    with np.errstate(invalid="ignore"):
        return (q - 1).astype(np.float32) * d




quantize_row_tq1_0 = blockwise_row_quantizer("tq1_0", QK_K, quantize_block_tq1_0)
quantize_row_tq2_0 = blockwise_row_quantizer("tq2_0", QK_K, quantize_block_tq2_0)

DEQUANTIZE = {"TQ1_0": dequantize_block_tq1_0, "TQ2_0": dequantize_block_tq2_0}
QUANTIZE = {"TQ1_0": quantize_row_tq1_0, "TQ2_0": quantize_row_tq2_0}
