"""Scalar number formats used inside ggml blocks, and the plain float/int tensor types.

This module is the single place where ggml's bit-level conversions live; every other reference
module calls these. Each function follows the C in ``ggml-impl.h`` operation by operation, so that
signed zeros, subnormals, infinities and NaN payloads come out exactly as ggml makes them.

| format | bits | where used                 | ggml function                                   |
|--------|------|----------------------------|-------------------------------------------------|
| fp16   | 16   | ``d``/``dmin`` of most blocks, F16 tensors | ``ggml_compute_fp16_to_fp32`` / ``ggml_compute_fp32_to_fp16`` |
| bf16   | 16   | BF16 tensors               | ``ggml_compute_bf16_to_fp32`` / ``ggml_compute_fp32_to_bf16`` |
| e8m0   | 8    | MXFP4 shared exponent      | ``ggml_e8m0_to_fp32`` / ``ggml_e8m0_to_fp32_half`` |
| ue4m3  | 8    | NVFP4 sub-block scales     | ``ggml_ue4m3_to_fp32`` / ``ggml_fp32_to_ue4m3``  |

Plain tensor types (block size 1): F32, F16, BF16, F64, I8, I16, I32, I64, all little-endian.
ggml's base library has a ``to_float`` only for F16 and BF16; for the others "dequantize" is the C
conversion to float (round to nearest even, as a C cast does), which numpy's ``astype`` performs.

Also here: ``nearest_int``, ggml's round-to-nearest used by every quantizer.
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


# --------------------------------------------------------------------------------------------------
# bit views

def f32_from_bits(w) -> np.ndarray:
    """uint32 bit pattern(s) -> float32, like ``fp32_from_bits``."""
    return np.asarray(w, dtype=np.uint32).view(np.float32)


def f32_to_bits(f) -> np.ndarray:
    """float32 value(s) -> uint32 bit pattern(s), like ``fp32_to_bits``."""
    return np.asarray(f, dtype=np.float32).view(np.uint32)


# --------------------------------------------------------------------------------------------------
# fp16

def f16_to_f32(h) -> np.ndarray:
    """fp16 bit pattern(s) (uint16) -> float32, exactly as ``ggml_compute_fp16_to_fp32``.

    The normal path re-biases the exponent by shifting the bits and multiplying by 2**-112; the
    subnormal path builds 0.5 + m*2**-24... and subtracts 0.5. Infinities and NaNs take the normal
    path, so a signalling fp16 NaN comes out quieted (the multiply sets the quiet bit).
    """
    h = np.asarray(h, dtype=np.uint16)
    w = h.astype(np.uint32) << np.uint32(16)
    sign = w & np.uint32(0x80000000)
    two_w = w << np.uint32(1)  # w + w modulo 2**32: drops the sign

    exp_offset = np.uint32(0xE0 << 23)
    exp_scale = f32(2.0**-112)
    with np.errstate(over="ignore", invalid="ignore"):
        normalized_value = f32_from_bits((two_w >> np.uint32(4)) + exp_offset) * exp_scale

    magic_mask = np.uint32(126 << 23)
    magic_bias = f32(0.5)
    denormalized_value = f32_from_bits((two_w >> np.uint32(17)) | magic_mask) - magic_bias

    denormalized_cutoff = np.uint32(1 << 27)
    result = sign | np.where(two_w < denormalized_cutoff, f32_to_bits(denormalized_value), f32_to_bits(normalized_value))
    return f32_from_bits(result)


def f32_to_f16(f) -> np.ndarray:
    """float32 value(s) -> fp16 bit pattern(s) (uint16), exactly as ``ggml_compute_fp32_to_fp16``.

    Round to nearest even; overflow goes to infinity; every NaN becomes the canonical 0x7E00 (with
    the input's sign).
    """
    f = np.asarray(f, dtype=np.float32)
    scale_to_inf = f32(2.0**112)
    scale_to_zero = f32(2.0**-110)
    with np.errstate(over="ignore", invalid="ignore"):
        base = (np.abs(f) * scale_to_inf) * scale_to_zero

    w = f32_to_bits(f)
    shl1_w = w << np.uint32(1)  # w + w modulo 2**32
    sign = w & np.uint32(0x80000000)
    bias = shl1_w & np.uint32(0xFF000000)
    bias = np.where(bias < np.uint32(0x71000000), np.uint32(0x71000000), bias)

    with np.errstate(over="ignore", invalid="ignore"):
        base = f32_from_bits((bias >> np.uint32(1)) + np.uint32(0x07800000)) + base
    bits = f32_to_bits(base)
    exp_bits = (bits >> np.uint32(13)) & np.uint32(0x00007C00)
    mantissa_bits = bits & np.uint32(0x00000FFF)
    nonsign = exp_bits + mantissa_bits
    out = (sign >> np.uint32(16)) | np.where(shl1_w > np.uint32(0xFF000000), np.uint32(0x7E00), nonsign)
    return out.astype(np.uint16)


def fp16(x) -> np.float32:
    """Round a float32 scalar through fp16 and back (what storing ``d`` in a block does to it)."""
    return f32(f16_to_f32(f32_to_f16(f32(x))))


def read_f16(raw: bytes, offset: int = 0) -> np.float32:
    """Read one little-endian fp16 field from a block and widen it to float32."""
    h = np.frombuffer(raw, dtype="<u2", count=1, offset=offset)[0]
    return f32(f16_to_f32(h))


def f16_bytes(x) -> bytes:
    """float32 scalar -> the 2 little-endian bytes ggml stores for it (GGML_FP32_TO_FP16)."""
    return f32_to_f16(f32(x)).astype("<u2").tobytes()


# --------------------------------------------------------------------------------------------------
# bf16

def bf16_to_f32(h) -> np.ndarray:
    """bf16 bit pattern(s) -> float32: the bits shifted up by 16 (NaN payloads kept)."""
    return f32_from_bits(np.asarray(h, dtype=np.uint16).astype(np.uint32) << np.uint32(16))


def f32_to_bf16(f) -> np.ndarray:
    """float32 -> bf16 bits as ``ggml_compute_fp32_to_bf16``: round to nearest even; NaN -> quiet NaN
    keeping the top payload bits (bit 6 forced on). Subnormals are kept, not flushed."""
    u = f32_to_bits(f)
    is_nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    nan_bits = (u >> np.uint32(16)) | np.uint32(64)
    with np.errstate(over="ignore"):  # uint32 wrap-around, as in C (only NaN patterns wrap; they are replaced)
        rounded = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    return np.where(is_nan, nan_bits, rounded).astype(np.uint16)


# --------------------------------------------------------------------------------------------------
# e8m0 (MXFP4)

def e8m0_to_f32(x) -> np.ndarray:
    """e8m0 exponent byte(s) -> 2**(x-127) as float32 (``ggml_e8m0_to_fp32``).

    x == 0 gives the subnormal 2**-127; x == 255 is *not* special-cased (ggml gives +Inf's bit
    pattern 0x7F800000, i.e. +Inf).
    """
    x = np.asarray(x, dtype=np.uint8).astype(np.uint32)
    bits = np.where(x == 0, np.uint32(0x00400000), x << np.uint32(23))
    return f32_from_bits(bits)


def e8m0_to_f32_half(x) -> np.ndarray:
    """e8m0 byte(s) -> 2**(x-128) (``ggml_e8m0_to_fp32_half``, used with the doubled e2m1 table)."""
    x = np.asarray(x, dtype=np.uint8).astype(np.uint32)
    small = np.uint32(0x00200000) << np.minimum(x, np.uint32(1))
    big = (np.maximum(x, np.uint32(1)) - np.uint32(1)) << np.uint32(23)
    return f32_from_bits(np.where(x < 2, small, big))


# --------------------------------------------------------------------------------------------------
# ue4m3 (NVFP4)

def ue4m3_to_f32(x: int) -> np.float32:
    """ue4m3 byte -> float32 *times 0.5* (``ggml_ue4m3_to_fp32``: the half matches the doubled e2m1
    table). The sign bit is ignored; 0x00 and 0x7F are zero; exponent bias 7, 3 mantissa bits."""
    x = int(x)
    if x == 0 or x == 0x7F:
        return f32(0.0)
    exp = (x >> 3) & 0xF
    man = x & 0x7
    if exp == 0:
        raw = np.ldexp(f32(man), -9)  # exact
    else:
        raw = np.ldexp(f32(1.0) + f32(man) / f32(8.0), exp - 7)  # exact in float32
    return f32(f32(raw) * f32(0.5))


def f32_to_ue4m3(x) -> int:
    """float32 -> ue4m3 byte exactly as ``ggml_fp32_to_ue4m3`` (note: it rounds the mantissa half-up
    from bit 19 only, and saturates to 0x7E = 448)."""
    x = f32(x)
    if not (x > f32(0.0)):
        return 0
    if x > f32(448.0):
        x = f32(448.0)
    bits = int(f32_to_bits(x))
    fp32_exp = ((bits >> 23) & 0xFF) - 127
    fp32_man = (bits >> 20) & 0x7
    ue4m3_exp = fp32_exp + 7
    if ue4m3_exp <= 0:
        # subnormal: man = (int)(x * 512 + 0.5), truncation toward zero of a positive float32
        man = int(f32(x * f32(512.0)) + f32(0.5))
        if man > 7:
            man = 7
        if man < 1:
            return 0
        return man
    if ue4m3_exp >= 15:
        return 0x7E
    round_bit = (bits >> 19) & 1
    ue4m3_man = fp32_man + round_bit
    if ue4m3_man > 7:
        ue4m3_man = 0
        ue4m3_exp += 1
        if ue4m3_exp >= 15:
            return 0x7E
    return (ue4m3_exp << 3) | ue4m3_man


# --------------------------------------------------------------------------------------------------
# rounding

def nearest_int(fval) -> int:
    """ggml's ``nearest_int``: add 1.5*2**23 in float32 and read the low mantissa bits.

    For |fval| <= 2**22 this is round-half-to-even. (ggml asserts |fval| <= 4194303; callers
    never exceed it.)
    """
    val = f32(fval) + f32(12582912.0)
    i = int(f32_to_bits(val))
    return (i & 0x007FFFFF) - 0x00400000


# --------------------------------------------------------------------------------------------------
# the plain tensor types (block size 1): dequantize a whole run of elements at once

def _dequantize_f32(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _dequantize_f16(raw: bytes) -> np.ndarray:
    return f16_to_f32(np.frombuffer(raw, dtype="<u2"))


def _dequantize_bf16(raw: bytes) -> np.ndarray:
    return bf16_to_f32(np.frombuffer(raw, dtype="<u2"))


def _as_float(dtype):
    def dequantize(raw: bytes) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.frombuffer(raw, dtype=dtype).astype(np.float32)
    return dequantize


def _quantize_f32(x: np.ndarray, imatrix=None) -> bytes:
    return np.asarray(x, dtype=np.float32).astype("<f4").tobytes()


def _quantize_f16(x: np.ndarray, imatrix=None) -> bytes:
    return f32_to_f16(x).astype("<u2").tobytes()


def _quantize_bf16(x: np.ndarray, imatrix=None) -> bytes:
    return f32_to_bf16(x).astype("<u2").tobytes()


DEQUANTIZE = {
    "F32": _dequantize_f32,
    "F16": _dequantize_f16,
    "BF16": _dequantize_bf16,
    "F64": _as_float("<f8"),
    "I8": _as_float("<i1"),
    "I16": _as_float("<i2"),
    "I32": _as_float("<i4"),
    "I64": _as_float("<i8"),
}

QUANTIZE = {
    "F32": _quantize_f32,
    "F16": _quantize_f16,
    "BF16": _quantize_bf16,
}
