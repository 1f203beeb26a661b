"""Q1_0 and Q2_0: 1-bit (sign) and 2-bit blocks with one fp16 scale (ggml, 2026).

Bit-exact against ggml 0.25.3 (``block_q1_0``/``block_q2_0`` in ``ggml-common.h``;
``quantize_row_q1_0_ref``, ``quantize_row_q2_0_ref``, ``dequantize_row_q1_0``/``_q2_0`` in
``ggml-quants.c``). ggml's ``quantize_q1_0``/``quantize_q2_0`` take an importance matrix but do not
use it: with or without one, every row goes through the reference quantizer.

Q1_0 (128 weights, 18 bytes, 1.125 bpw)

| field | C type    | count | bytes |
|-------|-----------|-------|-------|
| d     | ggml_half | 1     | 2     |
| qs    | uint8_t   | 16    | 16    |

    bit j of the block = (qs[j / 8] >> (j % 8)) & 1        (LSB first)
    y[j] = bit ? d : -d

Q2_0 (64 weights, 18 bytes, 2.25 bpw)

| field | C type    | count | bytes |
|-------|-----------|-------|-------|
| d     | ggml_half | 1     | 2     |
| qs    | uint8_t   | 16    | 16    |

    q[j] = (qs[j / 4] >> (2 * (j % 4))) & 3                  (element j in bits 2*(j%4) of byte j/4)
    y[j] = (q[j] - 1) * d                                    (levels -1, 0, +1, +2)

Quantizers:

* Q1_0: ``d = (Σ|x|)/128`` (a sequential float32 sum), stored as fp16; bit j is ``x[j] >= 0``
  (so -0.0 gives 1, NaN gives 0). The scale is the mean magnitude, not the maximum.
* Q2_0: ``d = max|x|`` (``if (a > amax) amax = a`` from 0), ``id = d > 0 ? 1/d : 0``;
  ``q = clamp((int)roundf(x*id) + 1, 0, 3)``. Since |x*id| <= 1, level 3 (+2d) is never produced
  by the quantizer, although the format can hold it.
"""

from __future__ import annotations

import numpy as np

from .fp import f16_bytes, f16_to_f32
from .search import blockwise_row_quantizer, c_int, c_roundf, seq_sum

f32 = np.float32

QK1_0 = 128
QK2_0 = 64


def _read_f16(block: bytes, offset: int = 0) -> np.float32:
    return f16_to_f32(np.frombuffer(block, "<u2", 1, offset))[0]


# --------------------------------------------------------------------------------------------------
# dequantize

def dequantize_block_q1_0(block: bytes) -> np.ndarray:
    d = _read_f16(block)
    neg_d = -d  # a sign flip (NaN payload kept, sign bit flipped)
    qs = np.frombuffer(block, np.uint8, QK1_0 // 8, 2)
    bits = np.unpackbits(qs, bitorder="little")  # bit j of the block: (qs[j/8] >> (j%8)) & 1
    return np.where(bits == 1, d, neg_d).astype(np.float32)


def dequantize_block_q2_0(block: bytes) -> np.ndarray:
    d = _read_f16(block)
    qs = np.frombuffer(block, np.uint8, QK2_0 // 4, 2).astype(np.int64)
    q = np.stack([(qs >> (2 * k)) & 3 for k in range(4)], axis=1).reshape(-1)  # j = 4*byte + k
    with np.errstate(invalid="ignore"):
        return (q - 1).astype(np.float32) * d  # ((int)q - 1) * d: int to float, one multiply


# --------------------------------------------------------------------------------------------------
# quantize (quantize_row_q1_0_ref / quantize_row_q2_0_ref, one block at a time)

def quantize_block_q1_0(x: np.ndarray) -> bytes:
    """d = (sum of |x|) / 128; bit j set when x[j] >= 0."""
    sum_abs = seq_sum(np.abs(x))  # sum_abs += fabsf(x[j]), left to right
    d = sum_abs / f32(QK1_0)
    bits = (x >= f32(0.0)).astype(np.uint8)
    return f16_bytes(d) + np.packbits(bits, bitorder="little").tobytes()


def quantize_block_q2_0(x: np.ndarray) -> bytes:
    """d = max|x|; q = clamp((int)roundf(x/d) + 1, 0, 3), four 2-bit levels per byte, LSB first."""
    amax = f32(0.0)
    for v in x:
        a = abs(v)
        if a > amax:
            amax = a
    d = amax
    id_ = f32(1.0) / d if d > 0 else f32(0.0)
    q = np.clip(c_int(c_roundf(x * id_)) + 1, 0, 3)  # (int)roundf(w*id) + 1, then the clamps
    q = q.reshape(-1, 4)
    qs = q[:, 0] | (q[:, 1] << 2) | (q[:, 2] << 4) | (q[:, 3] << 6)
    return f16_bytes(d) + qs.astype(np.uint8).tobytes()




quantize_row_q1_0 = blockwise_row_quantizer("q1_0", QK1_0, quantize_block_q1_0)
quantize_row_q2_0 = blockwise_row_quantizer("q2_0", QK2_0, quantize_block_q2_0)

DEQUANTIZE = {"Q1_0": dequantize_block_q1_0, "Q2_0": dequantize_block_q2_0}
QUANTIZE = {"Q1_0": quantize_row_q1_0, "Q2_0": quantize_row_q2_0}
