"""Shared pieces of the numpy backend: exact conversion tables, C-semantics helpers, the runner.

Every helper here is element-wise (or a sequential float32 reduction written as a loop of
element-wise ops), so it gives the same bits as ggml's scalar C on x86-64.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...reference import fp

F32 = np.float32
U8, I8, U16, U32, I32, I64 = np.uint8, np.int8, np.uint16, np.uint32, np.int32, np.int64

# ggml's fp16 -> fp32 (ggml_compute_fp16_to_fp32: software, quiets signalling NaNs) as a table.
# numpy's own float16 cast keeps signalling NaNs signalling, so it is not used.
F16_TABLE = fp.f16_to_f32(np.arange(65536, dtype=np.uint32).astype(U16))
# ggml_e8m0_to_fp32_half and ggml_ue4m3_to_fp32 for every byte
E8M0_HALF_TABLE = fp.e8m0_to_f32_half(np.arange(256, dtype=U8)).astype(F32)
UE4M3_TABLE = np.array([fp.ue4m3_to_f32(i) for i in range(256)], dtype=F32)


def f16_field(b: np.ndarray, off: int) -> np.ndarray:
    """The little-endian fp16 field at byte ``off`` of every block row of ``b`` -> float32 (nb, 1)."""
    return np.take(F16_TABLE, b[:, off:off + 2].view("<u2"))


def f16_bits(x) -> np.ndarray:
    """GGML_FP32_TO_FP16 element-wise (round to nearest even, NaN -> 0x7E00 | sign) -> uint16."""
    with np.errstate(all="ignore"):
        return fp.f32_to_f16(x)


def f16_round(x) -> np.ndarray:
    """float32 -> fp16 -> float32 (what storing a value in an fp16 field does to it)."""
    return np.take(F16_TABLE, f16_bits(x))


# --------------------------------------------------------------------------------------------------
# C semantics, element-wise

MAGIC = F32(12582912.0)  # 1.5 * 2**23, ggml's nearest_int


def nearest_int(v) -> np.ndarray:
    """ggml's ``nearest_int`` element-wise -> int32 (round half to even for |v| <= 2**22).

    Out of that range ggml asserts; the bit trick is reproduced anyway (NaN gives a fixed value)."""
    with np.errstate(all="ignore"):
        val = np.add(v, MAGIC, dtype=F32)
    i = val.view(I32)
    np.bitwise_and(i, 0x007FFFFF, out=i)
    np.subtract(i, 0x00400000, out=i)
    return i


def c_int(v) -> np.ndarray:
    """C's ``(int)v`` for float32 on x86-64 (cvttss2si): truncation; NaN and out-of-range -> INT32_MIN."""
    v = np.asarray(v, dtype=F32)
    ok = (v >= F32(-2147483648.0)) & (v < F32(2147483648.0))
    with np.errstate(all="ignore"):
        r = np.where(ok, v, F32(0.0)).astype(I64)
    r[~ok] = -(2**31)
    return r


def c_roundf(v) -> np.ndarray:
    """``roundf``: half away from zero, float32 in and out."""
    v = np.asarray(v, dtype=F32)
    with np.errstate(invalid="ignore"):
        t = np.trunc(v)
        half = np.abs(v - t) >= F32(0.5)
        return np.where(half, t + np.copysign(F32(1.0), v), t).astype(F32)


def inverse_or_zero(d) -> np.ndarray:
    """``d ? 1.0f/d : 0.0f`` element-wise (NaN counts as true)."""
    with np.errstate(all="ignore"):
        return np.where(d != 0, F32(1.0) / np.where(d != 0, d, F32(1.0)), F32(0.0)).astype(F32)


def _loop_sum(a) -> np.ndarray:
    s = a[0] + F32(0.0)
    for k in range(1, a.shape[0]):
        s += a[k]
    return s


def _reduce_is_sequential() -> bool:
    """True when this numpy's ``np.add.reduce(a, axis=0)`` over a C-contiguous (n, G) float32 array
    adds the rows one after the other (row 0, then += row 1, ...), as numpy does when the reduced
    axis is the outer loop; pairwise summation is only used when the reduced axis is the inner one.
    Checked on a probe where pairwise and sequential orders give different bits."""
    rng = np.random.default_rng(12345)
    for n, g in ((9, 2), (33, 3), (200, 17)):
        a = (rng.standard_normal((n, g)) * np.exp(rng.uniform(-30, 30, (n, g)))).astype(F32)
        with np.errstate(all="ignore"):
            if not np.array_equal((np.add.reduce(a, axis=0) + F32(0.0)).view(U32), _loop_sum(a).view(U32)):
                return False
    return True


REDUCE_IS_SEQUENTIAL = _reduce_is_sequential()


def seq_sum(a, axis: int = -1) -> np.ndarray:
    """``float s = 0.0f; for (i) s += a[i];`` along ``axis`` for every other index at once.

    Each partial sum is one float32 add, left to right, exactly as C. The result is +0.0 where C's is
    (all -0.0 terms): the first add is ``0.0f + a[0]``. Fast path: numpy's own reduction over the
    outer axis of a C-contiguous array, which is sequential (see ``_reduce_is_sequential``); it
    starts from a[0] instead of 0.0f + a[0], which differs only in the sign of an all-zero sum, so
    ``+ 0.0f`` at the end makes it identical. Otherwise a Python loop with one vector add per position."""
    a = np.moveaxis(np.asarray(a, dtype=F32), axis, 0)
    if REDUCE_IS_SEQUENTIAL and a.ndim >= 2 and a.shape[0] > 0 and a.flags.c_contiguous:
        flat = a.reshape(a.shape[0], -1)
        if flat.shape[1] >= 2:
            s = np.add.reduce(flat, axis=0)
            s += F32(0.0)
            return s.reshape(a.shape[1:])
    return _loop_sum(a)


def seq_sum_from_first(a, axis: int = -1) -> np.ndarray:
    """``float s = a[0]; for (i >= 1) s += a[i];`` (the C initialiser is the first term)."""
    a = np.moveaxis(np.asarray(a, dtype=F32), axis, 0)
    s = a[0].copy()
    for k in range(1, a.shape[0]):
        s += a[k]
    return s


def first_absmax(x, axis: int = -1):
    """``amax = 0, max = 0; for (i) if (fabsf(x[i]) > amax) {amax = fabsf(x[i]); max = x[i];}``
    along ``axis``: (amax, max) with max the first element of largest magnitude, with its sign."""
    x = np.moveaxis(np.asarray(x, dtype=F32), axis, 0)
    ax = np.abs(x)
    amax = np.zeros(x.shape[1:], F32)
    mx = np.zeros(x.shape[1:], F32)
    for k in range(x.shape[0]):
        take = ax[k] > amax
        np.copyto(amax, ax[k], where=take)
        np.copyto(mx, x[k], where=take)
    return amax, mx


def c_max_fold(x, axis: int = -1, start=0.0):
    """``m = start; for (i) m = MAX(m, x[i]);`` with ggml's ``MAX(a, b) = a > b ? a : b``."""
    x = np.moveaxis(np.asarray(x, dtype=F32), axis, 0)
    m = np.full(x.shape[1:], F32(start), F32)
    for k in range(x.shape[0]):
        m = np.where(m > x[k], m, x[k])
    return m


# --------------------------------------------------------------------------------------------------
# the runner: a block range cut into chunks, processed by a small thread pool

THREADS = max(1, min(int(os.environ.get("GGSPEC_NUMPY_THREADS", "0")) or (os.cpu_count() or 1), 8))
_pool = None
_pool_lock = threading.Lock()


def pool(threads: int):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < threads:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="ggspec-numpy")
        return _pool


def run_chunks(n: int, chunk: int, work, threads: int) -> None:
    """Call ``work(lo, hi)`` for consecutive ranges covering 0..n, on ``threads`` threads.

    numpy releases the GIL inside its loops, so two threads keep two cores busy. Floating-point
    warnings are silenced in each worker (Inf*0 and the like are part of ggml's semantics)."""
    def one(lo):
        with np.errstate(all="ignore"):
            work(lo, min(lo + chunk, n))

    starts = range(0, n, chunk)
    if threads > 1 and len(starts) > 1:
        for f in [pool(threads).submit(one, lo) for lo in starts]:
            f.result()
    else:
        for lo in starts:
            one(lo)
