"""The k-quant quantizers (Q2_K .. Q6_K), reference and importance-matrix paths, vectorized.

A chunk of G super-blocks is cut into its sub-blocks (16 of 16 weights or 8 of 32), transposed to
structure-of-arrays (``XT[i]`` = element i of every sub-block of the chunk, sub-block ``s = g*nsub
+ j``), and ggml's per-sub-block search runs for all of them at once (``search.py``). The per-block
steps (largest scale, 6-bit codes, fp16 d/dmin, re-quantization from the stored values, packing)
are element-wise over blocks. Sums are sequential in ggml's order.
"""

from __future__ import annotations

import numpy as np

from ...reference.types import QK_K
from . import search
from .common import F16_TABLE, F32, I32, U8, nearest_int, run_chunks, seq_sum
from .quant import f16_bytes, f16_bits

CHUNK_BLOCKS = 1024         # super-blocks per chunk: 256k weights (fewer Python-level steps per weight)


def _f16v(v):
    """float32 -> its fp16 bits and the float32 value those bits mean (store, then reload)."""
    bits = f16_bits(np.asarray(v, F32))
    return bits, F16_TABLE[bits]


def _subT(xb, w):
    """(G, 256) -> (w, G*256/w) contiguous: column g*nsub + j is sub-block j of block g."""
    return np.ascontiguousarray(xb.reshape(-1, w).T)


def _gt_fold(v):
    """``m = 0; for j: if (v[j] > m) m = v[j];`` over the last axis (G, nsub) -> (G,)."""
    m = np.zeros(v.shape[0], F32)
    for j in range(v.shape[1]):
        np.copyto(m, v[:, j], where=v[:, j] > m)
    return m


def _first_absmax(v):
    """``amax = 0, mx = 0; if (fabsf(v[j]) > amax) {amax = fabsf(v[j]); mx = v[j];}`` -> (amax, mx)."""
    return search.first_absmax_T(np.ascontiguousarray(v.T))


def _block_sum_x2(xb):
    """``sum_x2 = 0; for (l < QK_K) sum_x2 += x[l]*x[l];`` per block (G,)."""
    with np.errstate(all="ignore"):
        return seq_sum(np.ascontiguousarray((xb * xb).T), axis=0)


# --------------------------------------------------------------------------------------------------
# packing

def pack_scale_min_k4(ls, lm):
    """(G, 8) uint8 codes -> (G, 12) bytes, as ggml's Q4_K/Q5_K quantizers store them."""
    ls = ls.astype(np.int32) & 0xFF
    lm = lm.astype(np.int32) & 0xFF
    s = np.zeros((ls.shape[0], 12), np.int32)
    s[:, 0:4] = ls[:, 0:4]
    s[:, 4:8] = lm[:, 0:4]
    s[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    s[:, 0:4] |= (ls[:, 4:8] >> 4) << 6
    s[:, 4:8] |= (lm[:, 4:8] >> 4) << 6
    return (s & 0xFF).astype(U8)


def unpack_scale_min_k4(s):
    """get_scale_min_k4 for j = 0..7: (G, 12) -> (sc, m) (G, 8) int32."""
    s = s.astype(np.int32)
    sc = np.empty((s.shape[0], 8), np.int32)
    m = np.empty_like(sc)
    sc[:, :4] = s[:, 0:4] & 63
    m[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


def pack_q3_K_scales(l6):
    """(G, 16) 6-bit codes -> (G, 12) bytes (ggml's packing loop)."""
    l6 = l6.astype(np.int32)
    s = np.zeros((l6.shape[0], 12), np.int32)
    s[:, 0:8] = l6[:, 0:8] & 0xF
    s[:, 0:8] |= (l6[:, 8:16] & 0xF) << 4
    for j in range(16):
        s[:, 8 + j % 4] |= (l6[:, j] >> 4) << (2 * (j // 4))
    return (s & 0xFF).astype(U8)


def unpack_q3_K_scales(s):
    """(G, 12) -> (G, 16) values 0..63 (still biased by +32)."""
    s = s.astype(np.int32)
    low = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)
    hi = np.concatenate([(s[:, 8:12] >> sh) & 3 for sh in (0, 2, 4, 6)], axis=1)
    return low | (hi << 4)


def _pack_2bit(L, G):
    """L (G, 256) 0..3 -> qs (G, 64): byte 32h + l = L[128h+l] | L[+32] << 2 | L[+64] << 4 | L[+96] << 6."""
    L = L.reshape(G, 2, 4, 32)
    q = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return (q & 0xFF).astype(U8).reshape(G, 64)


def _requant(XT, d, dm, nmin, nmax, Lsearch):
    """Levels re-derived from the stored values, per sub-block: skip (keep the search's levels) where
    ``!d``; else ``clamp(nearest_int((x + dm)/d), nmin, nmax)`` (``x/d`` when dm is None)."""
    with np.errstate(all="ignore"):
        v = XT if dm is None else XT + dm[None, :]
        l = nearest_int(v / d[None, :])
    np.clip(l, nmin, nmax, out=l)
    keep = d == 0                                          # if (!d) continue;  (NaN does not skip)
    return np.where(keep[None, :], Lsearch, l)


# --------------------------------------------------------------------------------------------------
# Q2_K

def _q2_K_chunk(xb, QW):
    G = xb.shape[0]
    XT = _subT(xb, 16)                                     # (16, 16G)
    if QW is None:
        scales, L, mins = search.make_qkx2_quants(XT, np.abs(XT), 3, -0.5, 0.1, 15, True)
        sc_g, mn_g = scales.reshape(G, 16), mins.reshape(G, 16)
        max_scale, max_min = _gt_fold(sc_g), _gt_fold(mn_g)
        with np.errstate(all="ignore"):
            iscale = (F32(15.0) / max_scale).astype(F32)
            ls = np.where((max_scale > 0)[:, None], nearest_int(iscale[:, None] * sc_g) & 0xFF, 0)
            d_bits, dv = _f16v(np.where(max_scale > 0, max_scale / F32(15.0), F32(0.0)))
            imin = (F32(15.0) / max_min).astype(F32)
            lm = np.where((max_min > 0)[:, None], nearest_int(imin[:, None] * mn_g), 0)
            dm_bits, mv = _f16v(np.where(max_min > 0, max_min / F32(15.0), F32(0.0)))
        sc = (ls | (lm << 4)) & 0xFF
    else:
        with np.errstate(all="ignore"):
            sigma2 = (_block_sum_x2(xb) / F32(QK_K)).astype(F32)         # sumx2/QK_K
            s2 = np.repeat(sigma2, 16)
            W = _subT(QW, 16) * np.sqrt(s2[None, :] + XT * XT)          # qw * sqrtf(sigma2 + x*x)
            sw = seq_sum(W, axis=0)
        scales, L, mins = search.make_qkx3_quants(XT, W, 3, -0.9, 0.05, 36, False)
        swT = np.ascontiguousarray(sw.reshape(G, 16).T)
        dm, Ls = search.make_qp_quants(np.ascontiguousarray(scales.reshape(G, 16).T), 15, swT)
        mm, Lm = search.make_qp_quants(np.ascontiguousarray(mins.reshape(G, 16).T), 15, swT)
        d_bits, dv = _f16v(dm)
        dm_bits, mv = _f16v(mm)
        sc = ((Ls.T.astype(np.int32) | (Lm.T.astype(np.int32) << 4)) & 0xFF)
    with np.errstate(all="ignore"):
        d = (dv[:, None] * (sc & 0xF)).astype(F32).reshape(-1)
        m = (mv[:, None] * (sc >> 4)).astype(F32).reshape(-1)
    L = _requant(XT, d, m, 0, 3, L.astype(np.int32))
    ob = np.empty((G, 84), U8)
    ob[:, 0:16] = sc
    ob[:, 16:80] = _pack_2bit(np.ascontiguousarray(L.T).reshape(G, 256), G)
    ob[:, 80:82] = d_bits.astype("<u2").view(U8).reshape(G, 2)
    ob[:, 82:84] = dm_bits.astype("<u2").view(U8).reshape(G, 2)
    return ob


# --------------------------------------------------------------------------------------------------
# Q3_K

def _q3_K_chunk(xb, QW):
    G = xb.shape[0]
    XT = _subT(xb, 16)
    if QW is None:
        scales, L = search.make_q3_quants(XT, 4, True)
        sc_g = scales.reshape(G, 16)
        _, max_scale = _first_absmax(sc_g)
        nz = max_scale != 0                                 # if (max_scale)
        with np.errstate(all="ignore"):
            iscale = (F32(-32.0) / max_scale).astype(F32)
            l = nearest_int(iscale[:, None] * sc_g)
        l = ((l + 128) & 0xFF) - 128                        # int8_t l = nearest_int(...)
        l6 = np.clip(l, -32, 31) + 32
        sbytes = np.where(nz[:, None], pack_q3_K_scales(l6), 0).astype(U8)
        with np.errstate(all="ignore"):
            d_bits, dv = _f16v(np.where(nz, F32(1.0) / iscale, F32(0.0)))
    else:
        with np.errstate(all="ignore"):
            sigma2 = ((F32(2.0) * _block_sum_x2(xb)) / F32(QK_K)).astype(F32)   # 2*sumx2/QK_K
            W = _subT(QW, 16) * np.sqrt(np.repeat(sigma2, 16)[None, :] + XT * XT)
            sw = seq_sum(W, axis=0)
        scales, L = search.make_qx_quants(XT, 4, 1, W)
        d_block, Ls = search.make_qx_quants(np.ascontiguousarray(scales.reshape(G, 16).T), 32, 1,
                                            np.ascontiguousarray(sw.reshape(G, 16).T))
        sbytes = pack_q3_K_scales(Ls.T.astype(np.int32))
        d_bits, dv = _f16v(d_block)
    sc = unpack_q3_K_scales(sbytes) - 32                    # int8_t sc = (...) - 32
    with np.errstate(all="ignore"):
        d = (dv[:, None] * sc).astype(F32).reshape(-1)
    L = _requant(XT, d, None, -4, 3, L.astype(np.int32) - 4) + 4
    Lb = np.ascontiguousarray(L.T).reshape(G, 256)
    high = Lb > 3
    Lb = np.where(high, Lb - 4, Lb)
    # hmask[k % 32] bit (k // 32) is the high bit of weight k
    hm = high.reshape(G, 8, 32).astype(np.int32) << np.arange(8)[None, :, None]
    ob = np.empty((G, 110), U8)
    ob[:, 0:32] = hm.sum(axis=1).astype(U8)
    ob[:, 32:96] = _pack_2bit(Lb, G)
    ob[:, 96:108] = sbytes
    ob[:, 108:110] = d_bits.astype("<u2").view(U8).reshape(G, 2)
    return ob


# --------------------------------------------------------------------------------------------------
# Q4_K and Q5_K

def _k4_scales(xb, QW, nmax, ref_params, clamp63):
    G = xb.shape[0]
    XT = _subT(xb, 32)                                      # (32, 8G)
    if QW is None:
        with np.errstate(all="ignore"):
            sum_x2 = seq_sum(XT * XT, axis=0)
            av_x = np.sqrt(sum_x2 / F32(32.0))                # sqrtf(sum_x2/32)
            W = av_x[None, :] + np.abs(XT)
        scales, L, mins = search.make_qkx2_quants(XT, W, nmax, *ref_params, False)
        sc_g, mn_g = scales.reshape(G, 8), mins.reshape(G, 8)
        max_scale, max_min = _gt_fold(sc_g), _gt_fold(mn_g)
        with np.errstate(all="ignore"):
            inv_scale = np.where(max_scale > 0, F32(63.0) / max_scale, F32(0.0)).astype(F32)
            inv_min = np.where(max_min > 0, F32(63.0) / max_min, F32(0.0)).astype(F32)
            ls = np.minimum(63, nearest_int(inv_scale[:, None] * sc_g) & 0xFF)   # uint8_t, then MIN(63, .)
            lm = np.minimum(63, nearest_int(inv_min[:, None] * mn_g) & 0xFF)
            d_bits, dv = _f16v(max_scale / F32(63.0))
            dm_bits, mv = _f16v(max_min / F32(63.0))
    else:
        with np.errstate(all="ignore"):
            sigma2 = ((F32(2.0) * _block_sum_x2(xb)) / F32(QK_K)).astype(F32)
            W = _subT(QW, 32) * np.sqrt(np.repeat(sigma2, 8)[None, :] + XT * XT)
            sw = seq_sum(W, axis=0)
        scales, L, mins = search.make_qkx3_quants(XT, W, nmax, -0.9, 0.05, 36, False)
        swT = np.ascontiguousarray(sw.reshape(G, 8).T)
        d_block, Ls = search.make_qp_quants(np.ascontiguousarray(scales.reshape(G, 8).T), 63, swT)
        m_block, Lm = search.make_qp_quants(np.ascontiguousarray(mins.reshape(G, 8).T), 63, swT)
        ls, lm = Ls.T.astype(np.int32), Lm.T.astype(np.int32)
        if clamp63:
            ls, lm = np.minimum(63, ls), np.minimum(63, lm)
        d_bits, dv = _f16v(d_block)
        dm_bits, mv = _f16v(m_block)
    sbytes = pack_scale_min_k4(ls, lm)
    sc, m = unpack_scale_min_k4(sbytes)
    with np.errstate(all="ignore"):
        d = (dv[:, None] * sc).astype(F32).reshape(-1)
        dm = (mv[:, None] * m).astype(F32).reshape(-1)
    L = _requant(XT, d, dm, 0, nmax, L.astype(np.int32))
    L = np.ascontiguousarray(L.T).reshape(G, 256)
    head = np.empty((G, 16), U8)
    head[:, 0:2] = d_bits.astype("<u2").view(U8).reshape(G, 2)
    head[:, 2:4] = dm_bits.astype("<u2").view(U8).reshape(G, 2)
    head[:, 4:16] = sbytes
    return head, L


def _q4_K_chunk(xb, QW):
    G = xb.shape[0]
    head, L = _k4_scales(xb, QW, 15, (-1.0, 0.1, 20), clamp63=False)
    L = L.reshape(G, 4, 2, 32)
    ob = np.empty((G, 144), U8)
    ob[:, 0:16] = head
    ob[:, 16:144] = ((L[:, :, 0] | (L[:, :, 1] << 4)) & 0xFF).astype(U8).reshape(G, 128)
    return ob


def _q5_K_chunk(xb, QW):
    G = xb.shape[0]
    head, L = _k4_scales(xb, QW, 31, (-0.5, 0.1, 15), clamp63=True)
    L = L.reshape(G, 4, 2, 32)                               # (n/64, half, j)
    high = (L > 15).astype(np.int32)
    low = L - 16 * high
    qh = np.zeros((G, 32), np.int32)
    for c in range(4):
        qh |= high[:, c, 0] << (2 * c)
        qh |= high[:, c, 1] << (2 * c + 1)
    ob = np.empty((G, 176), U8)
    ob[:, 0:16] = head
    ob[:, 16:48] = qh & 0xFF
    ob[:, 48:176] = ((low[:, :, 0] | (low[:, :, 1] << 4)) & 0xFF).astype(U8).reshape(G, 128)
    return ob


# --------------------------------------------------------------------------------------------------
# Q6_K

def _q6_K_chunk(xb, QW):
    G = xb.shape[0]
    XT = _subT(xb, 16)
    scales, L = search.make_qx_quants(XT, 32, 1, None if QW is None else _subT(QW, 16))
    sc_g = scales.reshape(G, 16)
    max_abs, max_scale = _first_absmax(sc_g)
    zero = max_abs < search.GROUP_MAX_EPS
    with np.errstate(all="ignore"):
        iscale = (F32(-128.0) / max_scale).astype(F32)
        d_bits, dv = _f16v(F32(1.0) / iscale)
        sc = np.minimum(127, nearest_int(iscale[:, None] * sc_g))
    sc = ((sc + 128) & 0xFF) - 128                         # stored in int8_t
    with np.errstate(all="ignore"):
        d = (dv[:, None] * sc).astype(F32).reshape(-1)
    L = _requant(XT, d, None, -32, 31, L.astype(np.int32) - 32) + 32
    L = np.ascontiguousarray(L.T).reshape(G, 2, 4, 32)      # (h, s, l): weight 128h + 32s + l
    low = L & 0xF
    ql = np.concatenate([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], axis=2)
    hi = L >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    ob = np.empty((G, 210), U8)
    ob[:, 0:128] = (ql & 0xFF).reshape(G, 128)
    ob[:, 128:192] = (qh & 0xFF).reshape(G, 64)
    ob[:, 192:208] = sc & 0xFF
    ob[:, 208:210] = d_bits.astype("<u2").view(U8).reshape(G, 2)
    ob[zero] = 0                                           # memset(&y[i], 0, sizeof(block_q6_K))
    return ob


# --------------------------------------------------------------------------------------------------

def _kquant(chunk_fn, ts):
    def run(t, x, imatrix, out, threads):
        xb = x.reshape(-1, QK_K)
        ob = out.reshape(-1, ts)
        nbpr = x.shape[1] // QK_K
        QWB = None if imatrix is None else imatrix.reshape(nbpr, QK_K)

        def work(lo, hi):
            QW = None if QWB is None else QWB[np.arange(lo, hi) % nbpr]
            ob[lo:hi] = chunk_fn(xb[lo:hi], QW)

        run_chunks(xb.shape[0], CHUNK_BLOCKS, work, threads)
    return run


QUANT = {
    "Q2_K": _kquant(_q2_K_chunk, 84),
    "Q3_K": _kquant(_q3_K_chunk, 110),
    "Q4_K": _kquant(_q4_K_chunk, 144),
    "Q5_K": _kquant(_q5_K_chunk, 176),
    "Q6_K": _kquant(_q6_K_chunk, 210),
}
