"""numpy backend: whole-tensor vectorized dequantization, same bits as ggml's to_float.

    from ggspec import accel
    b = accel.backend("numpy")
    y = b.dequantize("Q4_K", raw, n)          # float32, equal uint32 view to ggspec.reference / ggml

Vectorized here (across all blocks at once, chunked, on a thread pool): F32, F16, BF16, F64,
I8–I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, Q1_0, Q2_0, TQ2_0,
MXFP4. Every other type (the i-quants, TQ1_0, NVFP4) is dequantized by the reference, block by
block — exact, not fast. ``quantize`` is the reference's (exact, not vectorized yet).

How exactness is kept: block fields are read with integer ops; fp16 goes through a 65536-entry
float32 table built from ``reference.fp.f16_to_f32`` (ggml's software conversion, NaN quieting
included); each float op is one numpy float32 ufunc in ggml's order (``d * sc`` first, then ``* q``,
then ``- m``). ``a + b`` where ``a`` may be NaN keeps ``a``'s NaN as x86's ``addss`` does (numpy is
free to swap the operands of a commutative add).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import reference
from ..errors import ShapeError
from ..reference import fp
from ..reference.types import QK_K, live_type

F32 = np.float32
CHUNK_BLOCKS = 1 << 14              # 16k blocks per task: temporaries stay small
_F16 = fp.f16_to_f32(np.arange(65536, dtype=np.uint32).astype(np.uint16))  # ggml's fp16 -> fp32, as a table


def _f16(b, off):
    """fp16 field at byte ``off`` of every block -> float32 (nb, 1)."""
    return _F16[b[:, off].astype(np.uint16) | (b[:, off + 1].astype(np.uint16) << 8)][:, None]


def _add(a, b):
    """a + b with x86's NaN rule: when ``a`` is NaN the result is ``a`` (first operand)."""
    r = a + b
    nan = np.isnan(a)
    if nan.any():
        r = np.where(nan, a, r)
    return r


def _nibbles(qs):
    """(nb, 16) bytes -> (nb, 32): low nibbles then high nibbles (the Q4_0/Q4_1/Q5 order)."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=1)


def _q5_high(b, off):
    qh = (b[:, off].astype(np.uint32) | (b[:, off + 1].astype(np.uint32) << 8)
          | (b[:, off + 2].astype(np.uint32) << 16) | (b[:, off + 3].astype(np.uint32) << 24))
    return (((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.uint8)


def _scale_min_k4(s):
    """get_scale_min_k4 for j = 0..7 on (nb, 12) scale bytes -> (sc, m) each (nb, 8) uint8."""
    sc = np.empty((s.shape[0], 8), np.uint8)
    m = np.empty_like(sc)
    sc[:, :4] = s[:, 0:4] & 63
    m[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


def _k4_dl_ml(b):
    """Q4_K/Q5_K: d*sc and dmin*m per sub-block, (nb, 8) float32 each (ggml's d1/m1, d2/m2)."""
    sc, m = _scale_min_k4(b[:, 4:16])
    return _f16(b, 0) * sc.astype(F32), _f16(b, 2) * m.astype(F32)


def _crumbs(qs32):
    """(nb, 32) bytes -> (nb, 128): the four 2-bit fields, shift 0,2,4,6 each over 32 bytes."""
    return np.concatenate([(qs32 >> s) & 3 for s in (0, 2, 4, 6)], axis=1)


class _Deq:
    """One method per type: (nb, type_size) uint8 -> (nb, block_size) float32."""

    @staticmethod
    def Q4_0(b):
        return (_nibbles(b[:, 2:18]).astype(np.int8) - np.int8(8)).astype(F32) * _f16(b, 0)

    @staticmethod
    def Q4_1(b):
        return _add(_nibbles(b[:, 4:20]).astype(F32) * _f16(b, 0), _f16(b, 2))

    @staticmethod
    def Q5_0(b):
        q = (_nibbles(b[:, 6:22]) | _q5_high(b, 2)).astype(np.int8) - np.int8(16)
        return q.astype(F32) * _f16(b, 0)

    @staticmethod
    def Q5_1(b):
        q = _nibbles(b[:, 8:24]) | _q5_high(b, 4)
        return _add(q.astype(F32) * _f16(b, 0), _f16(b, 2))

    @staticmethod
    def Q8_0(b):
        return b[:, 2:34].view(np.int8).astype(F32) * _f16(b, 0)

    @staticmethod
    def Q8_1(b):
        return b[:, 4:36].view(np.int8).astype(F32) * _f16(b, 0)

    @staticmethod
    def Q2_K(b):
        nb = b.shape[0]
        d, dmin = _f16(b, 80), _f16(b, 82)
        sc = b[:, 0:16]
        dl = d * (sc & 0xF).astype(F32)             # (nb, 16): d * (sc & 0xF)
        ml = dmin * (sc >> 4).astype(F32)
        q = np.concatenate([_crumbs(b[:, 16:48].reshape(nb, 32)), _crumbs(b[:, 48:80])], axis=1)  # (nb, 256)
        q = q.reshape(nb, 16, 16).astype(F32)
        return (dl[:, :, None] * q - ml[:, :, None]).reshape(nb, 256)

    @staticmethod
    def Q3_K(b):
        nb = b.shape[0]
        d = _f16(b, 108)
        s = b[:, 96:108]
        low = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)          # j = 0..15
        hi = np.concatenate([(s[:, 8:12] >> sh) & 3 for sh in (0, 2, 4, 6)], axis=1)
        scales = (low | (hi << 4)).astype(np.int8).astype(np.int32) - 32          # (nb, 16)
        dl = d * scales.astype(F32)
        q = np.concatenate([_crumbs(b[:, 32:64]), _crumbs(b[:, 64:96])], axis=1)  # (nb, 256)
        hm = b[:, 0:32]
        bits = np.concatenate([(hm >> k) & 1 for k in range(8)], axis=1)           # (nb, 256)
        qv = q.astype(np.int32) - np.where(bits != 0, 0, 4)
        return (dl[:, :, None] * qv.reshape(nb, 16, 16).astype(F32)).reshape(nb, 256)

    @staticmethod
    def Q4_K(b):
        nb = b.shape[0]
        dl, ml = _k4_dl_ml(b)
        qs = b[:, 16:144].reshape(nb, 4, 32)
        q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(nb, 8, 32).astype(F32)
        return (dl[:, :, None] * q - ml[:, :, None]).reshape(nb, 256)

    @staticmethod
    def Q5_K(b):
        nb = b.shape[0]
        dl, ml = _k4_dl_ml(b)
        qh = b[:, 16:48]
        ql = b[:, 48:176].reshape(nb, 4, 32)
        low = np.stack([ql & 0xF, ql >> 4], axis=2).reshape(nb, 8, 32)
        high = np.stack([((qh >> k) & 1) << 4 for k in range(8)], axis=1)         # (nb, 8, 32)
        q = (low + high).astype(F32)
        return (dl[:, :, None] * q - ml[:, :, None]).reshape(nb, 256)

    @staticmethod
    def Q6_K(b):
        nb = b.shape[0]
        d = _f16(b, 208)
        ql = b[:, 0:128].reshape(nb, 2, 64)
        qh = b[:, 128:192].reshape(nb, 2, 32)
        sc = b[:, 192:208].view(np.int8).astype(F32).reshape(nb, 2, 8)
        q = np.empty((nb, 2, 4, 32), np.int8)
        q[:, :, 0] = ((ql[:, :, 0:32] & 0xF) | (((qh >> 0) & 3) << 4)).astype(np.int8) - 32
        q[:, :, 1] = ((ql[:, :, 32:64] & 0xF) | (((qh >> 2) & 3) << 4)).astype(np.int8) - 32
        q[:, :, 2] = ((ql[:, :, 0:32] >> 4) | (((qh >> 4) & 3) << 4)).astype(np.int8) - 32
        q[:, :, 3] = ((ql[:, :, 32:64] >> 4) | (((qh >> 6) & 3) << 4)).astype(np.int8) - 32
        # y = d * sc[is] * q with is = l/16 + 2*k: scale index per (half, quarter, l)
        scale = sc.reshape(nb, 2, 4, 2)                                           # [.., k, l//16]
        ds = d[:, :, None, None] * scale                                          # (nb, 2, 4, 2): d * sc
        ds = np.repeat(ds, 16, axis=3)                                            # (nb, 2, 4, 32)
        return (ds * q.astype(F32)).reshape(nb, 256)

    @staticmethod
    def Q8_K(b):
        d = b[:, 0:4].copy().view("<f4").astype(F32)                              # float32 d, bits as stored
        return b[:, 4:260].view(np.int8).astype(F32) * d

    @staticmethod
    def Q1_0(b):
        d = _f16(b, 0)
        bits = np.unpackbits(b[:, 2:18], axis=1, bitorder="little")
        return np.where(bits != 0, d, -d).astype(F32)

    @staticmethod
    def Q2_0(b):
        q = np.stack([(b[:, 2:18] >> s) & 3 for s in (0, 2, 4, 6)], axis=2).reshape(b.shape[0], 64)
        return (q.astype(np.int32) - 1).astype(F32) * _f16(b, 0)

    @staticmethod
    def TQ2_0(b):
        nb = b.shape[0]
        qs = b[:, 0:64].reshape(nb, 2, 32)
        q = np.stack([(qs >> s) & 3 for s in (0, 2, 4, 6)], axis=2).reshape(nb, 256)
        return (q.astype(np.int8) - np.int8(1)).astype(F32) * _f16(b, 64)

    @staticmethod
    def MXFP4(b):
        kv = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.int8).astype(F32)
        d = fp.e8m0_to_f32_half(b[:, 0])[:, None]
        qs = b[:, 1:17]
        return np.concatenate([kv[qs & 0xF] * d, kv[qs >> 4] * d], axis=1)


_PLAIN = {"F32": "<f4", "F64": "<f8", "I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}


class Backend:
    name = "numpy"

    def __init__(self, threads: "int | None" = None):
        self.threads = threads or min(2, os.cpu_count() or 1)

    def supports(self, op: str, type) -> bool:
        return reference.supports("quantize" if op.startswith("quantize") else op, type)

    def vectorized(self, type) -> bool:
        t = live_type(type)
        return t.block_size == 1 or hasattr(_Deq, t.name)

    def quantize(self, type, x, imatrix=None) -> bytes:
        return reference.quantize(type, x, imatrix)

    def dequantize(self, type, raw, n) -> np.ndarray:
        t = live_type(type)
        n = int(n)
        if n < 0 or n % t.block_size:
            raise ShapeError(f"{t.name}: n = {n} is not a non-negative multiple of the block size {t.block_size}")
        nb = n // t.block_size
        data = np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)
        if data.size < nb * t.type_size:
            raise ShapeError(f"{t.name}: {n} values need {nb * t.type_size} bytes, got {data.size}")
        data = data[: nb * t.type_size]
        if t.name in _PLAIN:
            with np.errstate(all="ignore"):
                return data.view(_PLAIN[t.name]).astype(F32)
        if t.name == "F16":
            return _F16[data.view("<u2")]
        if t.name == "BF16":
            return fp.bf16_to_f32(data.view("<u2"))
        fn = getattr(_Deq, t.name, None)
        if fn is None:
            return reference.dequantize(t, data, n)
        blocks = data.reshape(nb, t.type_size)
        out = np.empty((nb, t.block_size), F32)

        def work(lo):
            hi = min(lo + CHUNK_BLOCKS, nb)
            with np.errstate(all="ignore"):
                out[lo:hi] = fn(blocks[lo:hi])

        starts = range(0, nb, CHUNK_BLOCKS)
        if self.threads > 1 and nb > CHUNK_BLOCKS:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(work, starts))
        else:
            for lo in starts:
                work(lo)
        return out.reshape(n)
