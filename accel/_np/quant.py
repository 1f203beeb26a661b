"""Vectorized quantizers: ``QUANT[name](t, x, imatrix, out, threads)`` fills ``out`` (uint8, the whole
tensor) from ``x`` (rows, n_per_row) float32, with the bytes of ``ggml_quantize_chunk`` (or of the
reference row quantizer for Q8_1 / Q8_K).

Blocks are processed in chunks; inside a chunk the blocks are transposed to "structure of arrays"
(``XT[i]`` = element i of every block), so that each C statement over one element of one block is
one numpy op over all blocks, and each C reduction is a loop over the positions, in C's order.
"""

from __future__ import annotations

import numpy as np

from ...reference import fp4 as ref_fp4
from ...reference.types import QK_K
from . import search
from .common import (F16_TABLE, F32, I32, U8, U16, UE4M3_TABLE, c_max_fold, f16_bits, inverse_or_zero,
                     nearest_int, run_chunks, seq_sum)

FLT_MAX = F32(np.finfo(np.float32).max)
CHUNK_ELEMENTS = 1 << 17


# --------------------------------------------------------------------------------------------------
# plumbing

def blockwise(x, out, bs, ts, threads, fn, chunk_elements=CHUNK_ELEMENTS):
    """Run ``fn(XT, lo, hi) -> (G, ts) uint8`` over chunks of blocks; XT is (bs, G) float32."""
    xb = x.reshape(-1, bs)
    ob = out.reshape(-1, ts)

    def work(lo, hi):
        XT = np.ascontiguousarray(xb[lo:hi].T)
        ob[lo:hi] = fn(XT, lo, hi)

    run_chunks(xb.shape[0], max(1, chunk_elements // bs), work, threads)


def row_sum_sq(x, threads=1) -> np.ndarray:
    """``float s = 0; for (j < n_per_row) s += x[j]*x[j];`` for every row (sequential, float32)."""
    rows, n = x.shape
    res = np.empty(rows, F32)
    step = max(1, CHUNK_ELEMENTS // n) if rows > 1 else 1

    def work(lo, hi):
        xs = x[lo:hi]
        res[lo:hi] = seq_sum(np.ascontiguousarray((xs * xs).T), axis=0)

    run_chunks(rows, max(step, 64), work, threads)
    return res


def pack_nibbles(L, G):
    """L (32, G) levels (low 4 bits used) -> qs (G, 16): L[j] | L[j+16] << 4."""
    L = L.astype(U8, copy=False)
    return ((L[:16] & 0xF) | ((L[16:] & 0xF) << 4)).T


def pack_qh(L):
    """L (32, G) -> qh (G, 4): bit j of the little-endian uint32 is bit 4 of L[j]."""
    bits = ((L.astype(U8, copy=False) >> 4) & 1).T
    return np.packbits(np.ascontiguousarray(bits), axis=1, bitorder="little")


def f16_bytes(v) -> np.ndarray:
    """float32 (G,) -> (G, 2) uint8: the fp16 bits, little-endian."""
    return f16_bits(np.asarray(v, F32)).astype("<u2").view(U8).reshape(-1, 2)


def to_byte(v) -> np.ndarray:
    """C's ``(int8_t)v`` / ``(uint8_t)v`` of a float32 array as x86-64 compiles it: cvttss2si (truncate;
    NaN and out-of-range give INT32_MIN), then the low 8 bits. Returns int32 in 0..255."""
    with np.errstate(all="ignore"):
        i = v.astype(I32)
    return i & 0xFF


def as_int8(b):
    """0..255 -> the int8_t value (two's complement)."""
    return ((b + 128) & 0xFF) - 128


# --------------------------------------------------------------------------------------------------
# exact block statistics

def absmax_with_sign_lt(XT):
    """``if (amax < fabsf(v)) {amax = fabsf(v); max = v;}`` from 0 (NaN never taken):
    (amax, max) with max the first element of largest magnitude (0 if all are 0 or NaN)."""
    return search.first_absmax_T(XT)


def min_max_flt(XT):
    """``min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v;`` (first wins ties)."""
    n, G = XT.shape
    mn = np.full(G, FLT_MAX, F32)
    mx = np.full(G, -FLT_MAX, F32)
    for i in range(n):
        np.copyto(mn, XT[i], where=XT[i] < mn)
        np.copyto(mx, XT[i], where=XT[i] > mx)
    return mn, mx


def max_fold_abs(XT):
    """``amax = 0; amax = MAX(amax, fabsf(v))`` (ggml's MAX: a NaN v is taken, then replaced)."""
    A = np.abs(XT)
    m = A.max(axis=0)
    bad = np.isnan(m)
    if bad.any():
        m[bad] = c_max_fold(A[:, bad], axis=0)
    return m


def max_gt_abs(XT):
    """``amax = 0; if (a > amax) amax = a;`` with a = |v| (NaN never taken)."""
    A = np.abs(XT)
    A[np.isnan(A)] = 0
    return A.max(axis=0)


# --------------------------------------------------------------------------------------------------
# float types

def q_f32(t, x, imatrix, out, threads):
    out.view(F32)[:] = x.reshape(-1)


def q_f16(t, x, imatrix, out, threads):
    """numpy's float16 cast rounds as ggml's software conversion does (to nearest even, overflow to
    inf, subnormals kept); only NaN differs: ggml stores the canonical 0x7E00 with the input's sign."""
    o = out.view(U16)
    o16 = out.view(np.float16)
    xf = x.reshape(-1)

    def work(lo, hi):
        np.copyto(o16[lo:hi], xf[lo:hi], casting="same_kind")
        nan = np.isnan(xf[lo:hi])
        if nan.any():
            o[lo:hi][nan] = (xf[lo:hi][nan].view(np.uint32) >> 16).astype(U16) & 0x8000 | 0x7E00

    with np.errstate(over="ignore"):
        run_chunks(xf.size, 1 << 18, work, threads)


def q_bf16(t, x, imatrix, out, threads):
    """``ggml_compute_fp32_to_bf16``: (u + 0x7FFF + ((u >> 16) & 1)) >> 16 (round to nearest even,
    uint32 arithmetic); a NaN becomes (u >> 16) | 64 (quiet, top payload bits kept)."""
    o = out.view(U16)
    u = x.reshape(-1).view(np.uint32)

    def work(lo, hi):
        ui = u[lo:hi]
        r = ui >> 16
        r &= 1
        r += 0x7FFF
        r += ui                                           # wraps modulo 2**32 only for NaN patterns
        r >>= 16
        np.copyto(o[lo:hi], r, casting="unsafe")
        nan = (ui & 0x7FFFFFFF) > 0x7F800000
        if nan.any():
            o[lo:hi][nan] = ((ui[nan] >> 16) | 64).astype(U16)

    with np.errstate(over="ignore"):
        run_chunks(u.size, 1 << 18, work, threads)


# --------------------------------------------------------------------------------------------------
# legacy: reference paths

def _ref_q4_0(XT, lo, hi):
    G = XT.shape[1]
    _, mx = absmax_with_sign_lt(XT)
    d = (mx / F32(-8.0)).astype(F32)
    id_ = inverse_or_zero(d)
    xi = as_int8(to_byte(XT * id_ + F32(8.5)))          # (int8_t)(x*id + 8.5f)
    xi = np.minimum(15, xi) & 0xFF                        # MIN(15, .) stored in uint8_t
    ob = np.empty((G, 18), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:18] = ((xi[:16] | (xi[16:] << 4)) & 0xFF).T
    return ob


def _ref_q4_1(XT, lo, hi):
    G = XT.shape[1]
    mn, mx = min_max_flt(XT)
    d = ((mx - mn) / F32(15.0)).astype(F32)
    id_ = inverse_or_zero(d)
    xi = as_int8(to_byte((XT - mn) * id_ + F32(0.5)))
    xi = np.minimum(15, xi) & 0xFF
    ob = np.empty((G, 20), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:4] = f16_bytes(mn)
    ob[:, 4:20] = ((xi[:16] | (xi[16:] << 4)) & 0xFF).T
    return ob


def _ref_q5_0(XT, lo, hi):
    G = XT.shape[1]
    _, mx = absmax_with_sign_lt(XT)
    d = (mx / F32(-16.0)).astype(F32)
    id_ = inverse_or_zero(d)
    xi = as_int8(to_byte(XT * id_ + F32(16.5)))
    xi = np.minimum(31, xi) & 0xFF
    ob = np.empty((G, 22), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:6] = pack_qh(xi)
    ob[:, 6:22] = pack_nibbles(xi, G)
    return ob


def _ref_q5_1(XT, lo, hi):
    G = XT.shape[1]
    mn, mx = min_max_flt(XT)
    d = ((mx - mn) / F32(31.0)).astype(F32)
    id_ = inverse_or_zero(d)
    xi = to_byte((XT - mn) * id_ + F32(0.5))              # (uint8_t)(x0 + 0.5f), no MIN
    ob = np.empty((G, 24), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:4] = f16_bytes(mn)
    ob[:, 4:8] = pack_qh(xi)
    ob[:, 8:24] = pack_nibbles(xi, G)
    return ob


def _roundf_byte(v):
    """(int8_t)roundf(v): half away from zero, then the C conversion; -> int32 0..255."""
    t = np.trunc(v)
    with np.errstate(all="ignore"):
        r = np.where(np.abs(v - t) >= F32(0.5), t + np.copysign(F32(1.0), v), t).astype(F32)
    return to_byte(r)


def _q8_scale(XT):
    amax = max_fold_abs(XT)
    d = (amax / F32(127.0)).astype(F32)
    return d, inverse_or_zero(d)


def _ref_q8_0(XT, lo, hi):
    G = XT.shape[1]
    d, id_ = _q8_scale(XT)
    ob = np.empty((G, 34), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:34] = _roundf_byte(XT * id_).T
    return ob


def _ref_q8_1(XT, lo, hi):
    G = XT.shape[1]
    d, id_ = _q8_scale(XT)
    qs = _roundf_byte(XT * id_)
    s = as_int8(qs).sum(axis=0)                           # int sum of the stored int8 values
    ob = np.empty((G, 36), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:4] = f16_bytes(s.astype(F32) * d)             # sum*d: int -> float, times d
    ob[:, 4:36] = qs.T
    return ob


# --------------------------------------------------------------------------------------------------
# legacy: importance-matrix paths (quantize_row_*_impl)

def _legacy(ref_fn, imat_fn, bs, ts):
    def run(t, x, imatrix, out, threads):
        if imatrix is None or imat_fn is None:
            blockwise(x, out, bs, ts, threads, ref_fn)
            return
        rows, n = x.shape
        nbpr = n // bs
        with np.errstate(all="ignore"):
            sigma2 = (row_sum_sq(x, threads) / F32(n)).astype(F32)   # sum_x2/n_per_row
        QWB = imatrix.reshape(nbpr, bs)

        def fn(XT, lo, hi):
            idx = np.arange(lo, hi)
            QWT = np.ascontiguousarray(QWB[idx % nbpr].T)               # (bs, G)
            s2 = sigma2[idx // nbpr]
            with np.errstate(all="ignore"):
                W = QWT * np.sqrt(s2[None, :] + XT * XT)                # qw[j] * sqrtf(sigma2 + x*x)
            return imat_fn(XT, W)

        blockwise(x, out, bs, ts, threads, fn)
    return run


def _imat_q4_0(XT, W):
    G = XT.shape[1]
    d, L = search.make_qx_quants(XT, 8, 1, W)
    ob = np.empty((G, 18), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:18] = pack_nibbles(L, G)
    return ob


def _imat_q5_0(XT, W):
    G = XT.shape[1]
    d, L = search.make_qx_quants(XT, 16, 1, W)
    ob = np.empty((G, 22), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:6] = pack_qh(L)
    ob[:, 6:22] = pack_nibbles(L, G)
    return ob


def _imat_q4_1(XT, W):
    G = XT.shape[1]
    d, L, the_min = search.make_qkx3_quants(XT, W, 15, -0.9, 0.05, 36, False)
    ob = np.empty((G, 20), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:4] = f16_bytes(-the_min)
    ob[:, 4:20] = pack_nibbles(L, G)
    return ob


def _imat_q5_1(XT, W):
    G = XT.shape[1]
    d, L, the_min = search.make_qkx3_quants(XT, W, 31, -0.9, 0.05, 36, False)
    ob = np.empty((G, 24), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:4] = f16_bytes(-the_min)
    ob[:, 4:8] = pack_qh(L)
    ob[:, 8:24] = pack_nibbles(L, G)
    return ob


# --------------------------------------------------------------------------------------------------
# Q8_K

def _ref_q8_K(XT, lo, hi):
    G = XT.shape[1]
    amax, mx = search.first_absmax_T(XT)
    zero = amax == 0
    with np.errstate(all="ignore"):
        iscale = (F32(-127.0) / mx).astype(F32)
        v = np.minimum(127, nearest_int(iscale[None, :] * XT))
    qs = as_int8(v & 0xFF)                                # stored in int8_t
    qs[:, zero] = 0
    bsums = qs.reshape(16, 16, G).sum(axis=1)             # (16, G) integer sums
    with np.errstate(all="ignore"):
        d = (F32(1.0) / iscale).astype(F32)
    d[zero] = 0
    ob = np.empty((G, 292), U8)
    ob[:, 0:4] = d.astype("<f4").view(U8).reshape(G, 4)
    ob[:, 4:260] = (qs & 0xFF).T
    ob[:, 260:292] = (bsums & 0xFFFF).astype("<u2").T.copy().view(U8).reshape(G, 32)
    return ob


# --------------------------------------------------------------------------------------------------
# low-bit

def _ref_q1_0(XT, lo, hi):
    G = XT.shape[1]
    d = (seq_sum(np.abs(XT), axis=0) / F32(128.0)).astype(F32)   # sum_abs / qk
    ob = np.empty((G, 18), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:18] = np.packbits(np.ascontiguousarray((XT >= F32(0.0)).T), axis=1, bitorder="little")
    return ob


def _ref_q2_0(XT, lo, hi):
    G = XT.shape[1]
    d = max_gt_abs(XT)
    with np.errstate(all="ignore"):
        id_ = np.where(d > 0, F32(1.0) / np.where(d > 0, d, F32(1.0)), F32(0.0)).astype(F32)
        v = XT * id_
        t = np.trunc(v)
        r = np.where(np.abs(v - t) >= F32(0.5), t + np.copysign(F32(1.0), v), t).astype(F32)
        q = r.astype(I32)                                  # (int)roundf(w*id)
    q = np.clip(q.astype(np.int64) + 1, 0, 3).reshape(16, 4, G)
    ob = np.empty((G, 18), U8)
    ob[:, 0:2] = f16_bytes(d)
    ob[:, 2:18] = (q[:, 0] | (q[:, 1] << 2) | (q[:, 2] << 4) | (q[:, 3] << 6)).T
    return ob


# --------------------------------------------------------------------------------------------------
# ternary

def _tq_digits(XT):
    d = max_fold_abs(XT)
    id_ = inverse_or_zero(d)
    with np.errstate(all="ignore"):
        v = XT * id_
        t = np.trunc(v)
        r = np.where(np.abs(v - t) >= F32(0.5), t + np.copysign(F32(1.0), v), t).astype(F32)   # lroundf
        xi = (r.astype(I32) + 1) & 0xFF                    # int xi = lroundf(.) + 1, low byte
    return d, xi


def _base3(D):
    """D (k, m, G): q = 0; for k: q = q*3 + digit (uint8 arithmetic)."""
    q = np.zeros(D.shape[1:], np.int32)
    for row in D:
        q = (q * 3 + row) & 0xFF
    return q


def _ceil243(q):
    return ((q * 256 + 242) // 243) & 0xFF


def _ref_tq1_0(XT, lo, hi):
    G = XT.shape[1]
    d, xi = _tq_digits(XT)
    ob = np.empty((G, 54), U8)
    ob[:, 0:32] = _ceil243(_base3(xi[0:160].reshape(5, 32, G))).T
    ob[:, 32:48] = _ceil243(_base3(xi[160:240].reshape(5, 16, G))).T
    qh = _base3(xi[240:256].reshape(4, 4, G))
    ob[:, 48:52] = _ceil243((qh * 3) & 0xFF).T
    ob[:, 52:54] = f16_bytes(d)
    return ob


def _ref_tq2_0(XT, lo, hi):
    G = XT.shape[1]
    d, xi = _tq_digits(XT)
    D = xi.reshape(2, 4, 32, G)
    q = np.zeros((2, 32, G), np.int32)
    for n in range(4):
        q += (D[:, n] & 3) << (2 * n)
    ob = np.empty((G, 66), U8)
    ob[:, 0:64] = (q & 0xFF).reshape(64, G).T
    ob[:, 64:66] = f16_bytes(d)
    return ob


# --------------------------------------------------------------------------------------------------
# fp4

_KV = np.array([0, 1, 2, 3, 4, 6, 8, 12], dtype=F32)


def best_index_mxfp4(XT, e):
    """best_index_mxfp4 for every element: the first code minimising |kvalues[i]*e - x|.

    For x >= 0 the winner is among codes 0..7 (a negative code's error is never smaller, and code 8,
    "-0", ties with code 0, which comes first); for x < 0 it is code 0 or 9..15, whose errors equal
    those of codes 0..7 at |x| (|(-v*e) - x| = |v*e - |x||, exactly, since v*e is exact). So the
    scan runs over the 8 magnitudes on |x| and adds 8 for negative x. NaN errors never win."""
    A = np.abs(XT)
    with np.errstate(all="ignore"):
        best = np.abs(_KV[0] * e - A)
        idx = np.zeros(XT.shape, np.int32)
        for i in range(1, 8):
            err = np.abs(_KV[i] * e - A)
            m = err < best
            np.copyto(best, err, where=m)
            idx[m] = i
    idx[(XT < 0) & (idx != 0)] += 8
    return idx


def _floor_log2_thresholds():
    """T[k] = the smallest positive float32 bit pattern whose floorf(log2f(.)) is >= k, for
    k = -150..128, found by bisection on the reference's floor(log2f) (monotone in the value)."""
    f = ref_fp4._floor_log2f
    ks = np.arange(-150, 129)
    lo_bits, hi_bits = 1, 0x7F7FFFFF
    T = []
    for k in ks:
        a, b = lo_bits, hi_bits + 1                       # answer in [a, b]
        while a < b:
            mid = (a + b) // 2
            if f(np.array([mid], np.uint32).view(F32)[0]) >= k:
                b = mid
            else:
                a = mid + 1
        T.append(a)
    return ks, np.array(T, dtype=np.uint32)


_LOG2_KS = None


def floor_log2f(a):
    """floorf(log2f(a)) for positive finite float32 a (vectorized, exact w.r.t. glibc's log2f)."""
    global _LOG2_KS
    if _LOG2_KS is None:
        _LOG2_KS = _floor_log2_thresholds()
    ks, T = _LOG2_KS
    pos = np.searchsorted(T, a.view(np.uint32), side="right") - 1
    return ks[pos].astype(F32)


def _ref_mxfp4(XT, lo, hi):
    G = XT.shape[1]
    A = np.abs(XT)
    A[np.isnan(A)] = 0
    amax = A.max(axis=0)                                   # if (amax < fabsf(v)) amax = fabsf(v)
    e = np.zeros(G, np.int32)
    pos = amax > 0
    fin = pos & np.isfinite(amax)
    with np.errstate(all="ignore"):
        fl = floor_log2f(amax[fin])
        e[fin] = to_byte(fl - F32(2.0) + F32(127.0))
    e[pos & ~fin] = 0                                      # floorf(log2f(inf)) = inf -> (uint8_t) -> 0
    from .common import E8M0_HALF_TABLE
    d = E8M0_HALF_TABLE[e]
    q = best_index_mxfp4(XT, d[None, :])
    ob = np.empty((G, 17), U8)
    ob[:, 0] = e
    ob[:, 1:17] = (q[:16] | (q[16:] << 4)).T
    return ob


def f32_to_ue4m3(x):
    """ggml_fp32_to_ue4m3 element-wise (see reference.fp.f32_to_ue4m3)."""
    x = np.asarray(x, F32)
    out = np.zeros(x.shape, np.int32)
    pos = x > F32(0.0)
    xc = np.where(x > F32(448.0), F32(448.0), x).astype(F32)
    bits = xc.view(np.uint32).astype(np.int64)
    e = ((bits >> 23) & 0xFF) - 127
    man = (bits >> 20) & 7
    ue = e + 7
    with np.errstate(all="ignore"):
        sub_man = (xc * F32(512.0) + F32(0.5)).astype(np.int64)   # (int)(x*512 + 0.5)
    sub_man = np.minimum(sub_man, 7)
    sub = np.where(sub_man < 1, 0, sub_man)
    rb = (bits >> 19) & 1
    um = man + rb
    carry = um > 7
    um = np.where(carry, 0, um)
    ue2 = np.where(carry, ue + 1, ue)
    norm = np.where(ue2 >= 15, 0x7E, (ue2 << 3) | um)
    norm = np.where(ue >= 15, 0x7E, norm)
    res = np.where(ue <= 0, sub, norm)
    out[pos] = res[pos]
    return out


def _ref_nvfp4(XT, lo, hi):
    G = XT.shape[1]
    X4 = XT.reshape(4, 16, G)
    A = np.abs(X4)
    A[np.isnan(A)] = 0
    amax = A.max(axis=1)                                   # (4, G)
    with np.errstate(all="ignore"):
        ue = f32_to_ue4m3(amax / F32(6.0))
    d = UE4M3_TABLE[ue]                                    # (4, G)
    q = best_index_mxfp4(X4, d[:, None, :])               # (4, 16, G)
    ob = np.empty((G, 36), U8)
    ob[:, 0:4] = ue.T
    ob[:, 4:36] = (q[:, :8] | (q[:, 8:] << 4)).reshape(32, G).T
    return ob


# --------------------------------------------------------------------------------------------------

def _plain(fn, bs, ts):
    def run(t, x, imatrix, out, threads):
        blockwise(x, out, bs, ts, threads, fn)
    return run


QUANT = {
    "F32": q_f32, "F16": q_f16, "BF16": q_bf16,
    "Q4_0": _legacy(_ref_q4_0, _imat_q4_0, 32, 18),
    "Q4_1": _legacy(_ref_q4_1, _imat_q4_1, 32, 20),
    "Q5_0": _legacy(_ref_q5_0, _imat_q5_0, 32, 22),
    "Q5_1": _legacy(_ref_q5_1, _imat_q5_1, 32, 24),
    "Q8_0": _plain(_ref_q8_0, 32, 34),
    "Q8_1": _plain(_ref_q8_1, 32, 36),
    "Q8_K": _plain(_ref_q8_K, QK_K, 292),
    "Q1_0": _plain(_ref_q1_0, 128, 18),
    "Q2_0": _plain(_ref_q2_0, 64, 18),
    "TQ1_0": _plain(_ref_tq1_0, QK_K, 54),
    "TQ2_0": _plain(_ref_tq2_0, QK_K, 66),
    "MXFP4": _plain(_ref_mxfp4, 32, 17),
    "NVFP4": _plain(_ref_nvfp4, 64, 36),
}
