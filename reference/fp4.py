"""MXFP4 and NVFP4: 4-bit e2m1 values with shared power-of-two (MX) or ue4m3 (NV) block scales.

Bit-exact against ggml 0.25.3 (``block_mxfp4``/``block_nvfp4`` in ``ggml-common.h``;
``quantize_row_mxfp4_ref``, ``quantize_row_nvfp4_ref``, ``dequantize_row_mxfp4``/``_nvfp4`` in
``ggml-quants.c``; the scale conversions in ``ggml-impl.h``, reproduced in ``fp.py``). ggml ignores an
importance matrix for both.

The 4-bit codes index ``kvalues_mxfp4`` (ggml's ``kvalues_fp4``): the e2m1 values *doubled* so they
are integers; the scale conversions halve to compensate (``e8m0_to_f32_half``, and
``ue4m3_to_f32`` which returns half the ue4m3 value).

MXFP4 (32 weights, 17 bytes, 4.25 bpw; OCP Microscaling MXFP4)

| field | C type  | count | bytes |
|-------|---------|-------|-------|
| e     | uint8_t | 1     | 1     |
| qs    | uint8_t | 16    | 16    |

    d = 2**(e - 128)                         (e8m0 exponent, halved; e = 0 gives 2**-128, a subnormal;
                                              e = 255 gives 2**127, not NaN)
    y[j] = kvalues_mxfp4[qs[j] & 0xF] * d,  y[j+16] = kvalues_mxfp4[qs[j] >> 4] * d   (j = 0..15)

NVFP4 (64 weights, 36 bytes, 4.5 bpw; four sub-blocks of 16 with their own scale)

| field | C type  | count | bytes |
|-------|---------|-------|-------|
| d     | uint8_t | 4     | 4     |
| qs    | uint8_t | 32    | 32    |

    ds = ue4m3_to_f32(d[s]) = half the ue4m3 value (4 exponent bits, bias 7, 3 mantissa bits;
         the top bit is ignored; 0x00 and 0x7F mean 0)
    y[16*s + j]     = kvalues_mxfp4[qs[8*s + j] & 0xF] * ds      (s = 0..3, j = 0..7)
    y[16*s + j + 8] = kvalues_mxfp4[qs[8*s + j] >> 4]  * ds

Quantizers:

* MXFP4: ``amax`` = max |x| over the block; ``e = amax > 0 ? (uint8_t)(floorf(log2f(amax)) - 2 + 127)
  : 0``, i.e. the scale 2**(e-127) is 2**(floor(log2 amax) - 2), which puts amax between 4 and 8
  times the scale (so values above 6 times the scale are clipped to the largest code); then each code
  is the index of the nearest table value ``kvalues_mxfp4[i] * d`` (``best_index_mxfp4``: on a tie
  the lower index wins, e.g. code 0 (+0) before code 8, and 1.25 between 1 and 1.5 goes to 1).
* NVFP4: per sub-block, ``ue = fp32_to_ue4m3(amax / 6)``, ``ds = ue4m3_to_f32(ue)``, same nearest
  search.
"""

from __future__ import annotations

import math

import numpy as np

from .fp import e8m0_to_f32_half, f32_to_ue4m3, ue4m3_to_f32
from .search import blockwise_row_quantizer, c_int

f32 = np.float32

QK_MXFP4 = 32
QK_NVFP4 = 64
QK_NVFP4_SUB = 16

# Format constant (ggml-common.h, kvalues_fp4 == kvalues_mxfp4): the 16 e2m1 codes' values times 2.
# Codes 0..7 are +0, 0.5, 1, 1.5, 2, 3, 4, 6 (doubled: 0..12); codes 8..15 the same negated (code 8
# is "-0", stored here as the integer 0, so it dequantizes to +0.0).
kvalues_mxfp4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)
_KV = kvalues_mxfp4.astype(np.float32)


def _nibbles(qs: np.ndarray):
    return qs & 0x0F, qs >> 4


# --------------------------------------------------------------------------------------------------
# nearest code

def best_index_mxfp4(x: np.ndarray, e: np.float32) -> np.ndarray:
    """ggml's ``best_index_mxfp4(x, e)`` element-wise: the first i minimising
    ``fabsf(kvalues_mxfp4[i]*e - x)`` (strict ``<`` while scanning i = 1..15 from i = 0).

    NaN errors never win a comparison: if code 0's error is NaN (x NaN, or 0*e NaN for e = Inf)
    the answer stays 0; a NaN error at a later code is skipped.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((_KV * f32(e))[None, :] - x[:, None])  # (n, 16): |kvalues[i]*e - x|
    # argmin returns the first minimum, like the strict-< scan. A NaN error can never become the
    # best, so it is replaced by +Inf (which, like the NaN, cannot beat an earlier value); a NaN at
    # code 0 blocks every later code in C (nothing is < NaN), hence the explicit rule.
    err0_nan = np.isnan(err[:, 0])
    idx = np.argmin(np.where(np.isnan(err), np.float32(np.inf), err), axis=1)
    return np.where(err0_nan, 0, idx)


# --------------------------------------------------------------------------------------------------
# MXFP4

def _floor_log2f(amax: np.float32) -> np.float32:
    """``floorf(log2f(amax))`` for amax > 0.

    log2f is glibc's; floor of it equals floor of the correctly rounded float32 log2, which is
    float32(log2(double(amax))). Checked exhaustively over every positive finite float32 against
    glibc 2.36's log2f: the floors agree everywhere (the values themselves differ in 313550 cases,
    none of them next to an integer). Near 2**k from below, log2f rounds up to k: e.g.
    floorf(log2f(0x1.fffffep+7)) is 8, not 7 (for the largest float below 2**k, at every k from
    -131 to 127 except -1..2), so the exponent bits of amax are not enough.
    """
    if np.isinf(amax):
        return f32(np.inf)
    return f32(math.floor(f32(math.log2(float(amax)))))


def quantize_block_mxfp4(x: np.ndarray) -> bytes:
    amax = f32(0.0)
    for v in x:
        if amax < abs(v):  # a NaN never enters
            amax = abs(v)
    if amax > 0:
        # (uint8_t)(floorf(log2f(amax)) - 2 + 127): float arithmetic, then float -> int -> low byte
        e = int(c_int(_floor_log2f(amax) - f32(2.0) + f32(127.0))) & 0xFF
    else:
        e = 0
    d = f32(e8m0_to_f32_half(e))
    q = best_index_mxfp4(x, d)
    qs = q[:16] | (q[16:] << 4)
    return bytes([e]) + qs.astype(np.uint8).tobytes()


def dequantize_block_mxfp4(block: bytes) -> np.ndarray:
    b = np.frombuffer(block, np.uint8)
    d = f32(e8m0_to_f32_half(b[0]))
    lo, hi = _nibbles(b[1:17])
    with np.errstate(over="ignore"):
        return np.concatenate((_KV[lo] * d, _KV[hi] * d))  # x0*d: int8 -> float, one multiply


# --------------------------------------------------------------------------------------------------
# NVFP4

def quantize_block_nvfp4(x: np.ndarray) -> bytes:
    scales = []
    qs = []
    for s in range(QK_NVFP4 // QK_NVFP4_SUB):
        xb = x[s * QK_NVFP4_SUB:(s + 1) * QK_NVFP4_SUB]
        amax = f32(0.0)
        for v in xb:
            if amax < abs(v):
                amax = abs(v)
        ue = f32_to_ue4m3(amax / f32(6.0))  # amax / 6.0f: the largest e2m1 value 6 lands on amax
        d = ue4m3_to_f32(ue)  # half the ue4m3 value (matches the doubled table)
        q = best_index_mxfp4(xb, d)
        scales.append(ue)
        qs.append(q[:8] | (q[8:] << 4))
    return bytes(scales) + np.concatenate(qs).astype(np.uint8).tobytes()


def dequantize_block_nvfp4(block: bytes) -> np.ndarray:
    b = np.frombuffer(block, np.uint8)
    out = []
    for s in range(QK_NVFP4 // QK_NVFP4_SUB):
        d = ue4m3_to_f32(b[s])
        lo, hi = _nibbles(b[4 + 8 * s:4 + 8 * s + 8])
        out += [_KV[lo] * d, _KV[hi] * d]
    return np.concatenate(out)




quantize_row_mxfp4 = blockwise_row_quantizer("mxfp4", QK_MXFP4, quantize_block_mxfp4)
quantize_row_nvfp4 = blockwise_row_quantizer("nvfp4", QK_NVFP4, quantize_block_nvfp4)

DEQUANTIZE = {"MXFP4": dequantize_block_mxfp4, "NVFP4": dequantize_block_nvfp4}
QUANTIZE = {"MXFP4": quantize_row_mxfp4, "NVFP4": quantize_row_nvfp4}
