"""IQ4_NL and IQ4_XS quantizers vectorized (ggml's ``quantize_row_iq4_nl_impl``, ntry = 7).

A chunk of super-blocks (32 weights for IQ4_NL, 256 for IQ4_XS) is cut into blocks of 32 and
transposed, ``XT[j]`` = weight j of every block. Every step of ggml's per-block scale search runs for
all blocks at once; the sums over a block are sequential (``seq_sum``), in ggml's order:
``sumqx += w*q*x`` is ``(w*q)*x``. Reference: ``ggspec.reference.iquants._quantize_iq4``.
"""

from __future__ import annotations

import numpy as np

from ...reference.iquants import KVALUES_IQ4NL
from ...reference.types import QK_K
from .common import F32, U8, f16_bits, inverse_or_zero, nearest_int, run_chunks, seq_sum
from . import search

VALUES = KVALUES_IQ4NL.astype(F32)          # the 16 non-linear levels, sorted
V0 = F32(KVALUES_IQ4NL[0])
GROUP_MAX_EPS = F32(1e-15)
NTRY = 7


def _level_tables():
    """For k = floor(x) in -129..128 (index k + 129): ``mu`` = the first level above x clipped to
    1..15, and the levels either side of it. The levels are integers, so for x in [k, k+1) the
    first level above x is the first level above k: a table of floor(x) gives searchsorted's answer."""
    k = np.arange(-129, 129)
    mu = np.clip(np.searchsorted(VALUES, k.astype(F32), side="right"), 1, 15)
    return mu.astype(np.int8), VALUES[mu - 1], VALUES[mu]


MU, LO, HI = _level_tables()


def _bracket(x):
    """(k, lo, hi, take_lo): the table row of floor(x), the levels either side of x, and ggml's
    choice ``x - lo < hi - x`` (NaN: fmin(NaN, 128) = 128 selects mu = 15, the comparison fails)."""
    f = np.fmin(x, F32(128))
    np.maximum(f, F32(-129), out=f)
    np.floor(f, out=f)
    k = f.astype(np.int16)
    k += 129
    lo, hi = LO[k], HI[k]
    return k, lo, hi, (x - lo) < (hi - x)


def best_index(x) -> np.ndarray:
    """``best_index_int8(16, kvalues_iq4nl, x)`` element-wise -> int8 indices (same shape as x).

    With ``mu`` the first level above x: ``x - v[mu-1] < v[mu] - x ? mu-1 : mu``; x <= v[0] gives 0
    and x >= v[15] gives 15 by the same comparison (mu clipped to 1..15); NaN fails the comparison
    and ends at 15, as ggml's binary search does."""
    k, _, _, take_lo = _bracket(x)
    return MU[k] - take_lo.view(np.int8)


def nearest_level(x) -> np.ndarray:
    """``kvalues_iq4nl[best_index_int8(16, kvalues_iq4nl, x)]`` as float32 (the level itself)."""
    _, lo, hi, take_lo = _bracket(x)
    return np.where(take_lo, lo, hi)


def _sums(W, XT, q):
    wq = W * q
    return seq_sum(wq * XT, axis=0), seq_sum(wq * q, axis=0)


def _block_scales(XT, W):
    """The scale search of every block of 32 at once -> d (M,) (0 for a block below GROUP_MAX_EPS)."""
    amax, vmax = search.first_absmax_T(XT)
    skipped = amax < GROUP_MAX_EPS                  # such blocks get scale 0 (amax is never NaN)
    d = (-vmax) / V0
    sumqx, sumq2 = _sums(W, XT, nearest_level(inverse_or_zero_strict(d) * XT))
    pos = sumq2 > 0
    d = np.where(pos, sumqx / np.where(pos, sumq2, F32(1)), F32(0)).astype(F32)
    best = d * sumqx
    for itry in range(-NTRY, NTRY + 1):
        idv = F32(itry + int(V0)) / vmax
        sumqx, sumq2 = _sums(W, XT, nearest_level(idv * XT))
        take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        if take.any():
            dn = sumqx / np.where(take, sumq2, F32(1))
            np.copyto(d, dn, where=take)
            np.copyto(best, d * sumqx, where=take)
    d[skipped] = 0
    return d


def inverse_or_zero_strict(d):
    """``1.f/d`` as ggml writes it here (no zero test: d = -vmax/v0 is never 0 when the block is
    kept; for skipped blocks the value is unused)."""
    with np.errstate(all="ignore"):
        return (F32(1) / d).astype(F32)


def _superblocks(XS, QW, S):
    """XS (G, S) float32 super-blocks, QW (G, S) importance or None -> (G, type_size) bytes."""
    G = XS.shape[0]
    nb = S // 32
    with np.errstate(all="ignore"):
        sigma2 = (seq_sum(np.ascontiguousarray((XS * XS).T), axis=0) * F32(2.0 / S)).astype(F32)
    XT = np.ascontiguousarray(XS.reshape(G * nb, 32).T)               # (32, G*nb)
    with np.errstate(all="ignore"):
        if QW is not None:
            QWT = np.ascontiguousarray(QW.reshape(G * nb, 32).T)
            W = QWT * np.sqrt(np.repeat(sigma2, nb)[None, :] + XT * XT)
        else:
            W = XT * XT
        d = _block_scales(XT, W)
        scales = d.reshape(G, nb)
        if nb > 1:
            # the scale of largest magnitude (first wins), with its sign
            _, max_scale = search.first_absmax_T(np.ascontiguousarray(scales.T))
            dsb = ((-max_scale) / F32(32)).astype(F32)
            dh = f16_bits(dsb)
            idv = inverse_or_zero(dsb)
            l = nearest_int(idv[:, None] * scales)
            np.clip(l, -32, 31, out=l)
            dl = dsb[:, None] * l.astype(F32)
            idl = inverse_or_zero(dl).reshape(G * nb)
            L = best_index(idl[None, :] * XT)
            l = (l + 32).astype(np.int32)
        else:
            dh = f16_bits(scales[:, 0])
            idv = inverse_or_zero(scales[:, 0])
            L = best_index(idv[None, :] * XT)
    L = L.astype(U8)                                                    # (32, G*nb)
    q4 = (L[:16] | (L[16:] << 4)).T.reshape(G, nb * 16)
    ts = 2 + nb * 16 + (0 if nb == 1 else 2 + nb // 2)
    ob = np.empty((G, ts), U8)
    ob[:, 0:2] = dh.astype("<u2").view(U8).reshape(G, 2)
    if nb == 1:
        ob[:, 2:] = q4
    else:
        lo4 = (l & 0xF).astype(U8)
        scales_l = lo4[:, 0::2] | (lo4[:, 1::2] << 4)                   # (G, nb/2)
        hi2 = (l >> 4) & 3
        scales_h = np.zeros(G, np.int32)
        for ib in range(nb):
            scales_h |= hi2[:, ib] << (2 * (ib % 8))
        ob[:, 2:4] = scales_h.astype("<u2").view(U8).reshape(G, 2)
        ob[:, 4:4 + nb // 2] = scales_l
        ob[:, 4 + nb // 2:] = q4
    return ob


def _quantizer(S):
    def run(t, x, imatrix, out, threads):
        rows, n = x.shape
        nspr = n // S
        ts = t.type_size
        xs = x.reshape(-1, S)
        ob = out.reshape(-1, ts)
        QWB = None if imatrix is None else imatrix.reshape(nspr, S)

        def work(lo, hi):
            QW = None if QWB is None else QWB[np.arange(lo, hi) % nspr]
            ob[lo:hi] = _superblocks(xs[lo:hi], QW, S)

        run_chunks(xs.shape[0], max(1, (1 << 16) // S), work, threads)
    return run


QUANT = {"IQ4_NL": _quantizer(32), "IQ4_XS": _quantizer(QK_K)}
