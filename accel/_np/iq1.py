"""Vectorized IQ1 i-quant quantizers: ``QUANT[name](t, x, imatrix, out, threads)``.

The bytes are those of ggml's ``quantize_iq1_s`` / ``quantize_iq1_m`` (what ``ggml_quantize_chunk``
writes). The per-sub-block steps follow ``reference/iquants.py`` (``quantize_block_iq1_s`` /
``quantize_block_iq1_m``), vectorized across the sub-blocks of a chunk (structure of arrays: row j
of an array holds item j of every sub-block):

1. ``weight``, the sub-block maxima, the sort by value, the prefix sums over the sorted order
   (sequential float32, C's order). ggml sorts with ``qsort`` and a value-only comparator; glibc's
   qsort is a stable merge sort at these sizes, so equal values keep index order. Rows without equal
   values (``-0.0 == 0.0``) have one order whatever the sort; rows with ties are sorted again with
   ``argsort(kind="stable")``. (NaN rows: ggml finds no candidate there, the order is not used.)

2. The split search. ggml scores every split ``(i1, i2)`` (and every delta sign) and keeps, scanning
   in C order, a candidate when ``sumq2 > 0 && sumqx*sumqx > best*sumq2``, then
   ``best = (sumqx/sumq2)*sumqx``. Every candidate value here is computed with ggml's float32 ops in
   ggml's order (bit-identical), across sub-blocks, one ``i1`` at a time ("slab": all ``i2 >= i1``).
   The scan itself is not done candidate by candidate: with ``s_c = (sumqx/sumq2)*sumqx`` and ``M``
   the largest ``s_c`` of a sub-block, take ``tau < M`` and ``H = {c : s_c >= tau}``. If

     (A) ``lhs_h > tau*q2_h`` for every ``h`` in ``H``       (``lhs = sumqx*sumqx``, ``q2 = sumq2``)
     (B) ``lhs_c <= tau*q2_c`` for every valid ``c`` not in ``H``

   then ggml's scan accepts the first ``H`` member it meets (whatever it kept before has
   ``best < tau``), never accepts a non-member after that (its ``best`` is then some ``s_h >= tau``),
   so it ends where the same scan run over ``H`` alone, in C order, from ``best = -FLT_MAX``, ends.
   (Float multiplication by ``q2 > 0`` is monotone, so ``b <= tau`` gives ``b*q2 <= tau*q2``.)
   Pass 1 computes every ``s_c`` and keeps the maximum of each slab; pass 2 recomputes the slabs
   whose maximum reaches ``tau*(1 - TAU_STEP)`` and collects those candidates (``E``). (A), the
   scan over ``H`` and (B) on ``E`` are exact; (B) outside ``E`` follows from error bounds that hold
   when the sub-block is "tame": finite non-negative weights, total weight, ``max|x|`` and ``M`` in
   ranges where nothing overflows or underflows; then ``sumq2 >= total_weight/65 > 0`` for every
   split and ``s_c < tau*(1 - TAU_STEP)`` gives ``lhs_c <= tau*q2_c``. ``tau = M*(1 - TAU_STEP)``,
   or three values closer to ``M`` when a check fails. Sub-blocks that are not tame or where every
   ``tau`` fails run ggml's scan exactly, candidate after candidate (vectorized across them);
   sub-blocks whose weights are all zero have no valid candidate and are skipped, as in ggml.

3. Off-grid groups of 8 take ``iq1_find_best_neighbour2``'s choice, the first neighbour with the
   smallest sequential float32 ``d2`` (see ``_best_neighbours``): a cheap approximation with a
   rigorous error bound discards the neighbours that cannot be the minimum, the rest get ggml's
   exact sums; static dominance between neighbours shortens the lists when that is safe.

4. Rescale, scales, packing: element-wise over sub-blocks / super-blocks, sums in C's order.
"""

from __future__ import annotations

import functools

import numpy as np

from ...errors import GGSpecError
from ...reference import iquants as ref
from ...reference.types import QK_K
from .common import F32, nearest_int, run_chunks, seq_sum
from .quant import f16_bytes, max_fold_abs

FLT_MAX = F32(np.finfo(np.float32).max)
NEG_FLT_MAX = F32(-FLT_MAX)
INF = F32(np.inf)

X_P = np.array([-1 + 0.125, 0.125, 1 + 0.125], dtype=F32)      # {-1 + DELTA, DELTA, 1 + DELTA}
X_M = np.array([-1 - 0.125, -0.125, 1 - 0.125], dtype=F32)     # IQ1S_DELTA == IQ1M_DELTA == 0.125f
P0, P1, P2 = (F32(v) for v in X_P)
M0, M1, M2 = (F32(v) for v in X_M)
CP1 = F32(P0 * P0 - P1 * P1)
CP2 = F32(P1 * P1 - P2 * P2)
CM1 = F32(M0 * M0 - M1 * M1)
CM2 = F32(M1 * M1 - M2 * M2)

EPS_S = F32(1e-12)          # GROUP_MAX_EPS_IQ1_S
EPS_M = F32(1e-7)           # GROUP_MAX_EPS_IQ1_M

# tame sub-blocks (fast split search): bounds on total weight, max|x| * total weight and M
TAME_LO = F32(2.0 ** -40)
TAME_HI = F32(2.0 ** 40)
TAU_STEP = F32(2.0 ** -16)   # tau = M*(1 - TAU_STEP); E = {s >= tau*(1 - TAU_STEP)}
CHUNK_SUBBLOCKS = {"IQ1_S": 8192, "IQ1_M": 8192}     # sub-blocks per chunk: ~36 / 24 MB of temporaries


# --------------------------------------------------------------------------------------------------
# static tables (ggml_quantize_init's iq2_data for IQ1_S / IQ1_M, as reference.iquants builds them)

class _Grid:
    pass


class _Lists:
    """Neighbour lists, one padded row per reachable off-grid code u: grid indices (``nb``) and, per
    neighbour, the term slots ``8*l + i`` of the coordinates i where its level l differs from u's
    (``ch``: 4 per neighbour, unused ones 24, a zero term; padding neighbours 25, +inf)."""

    def __init__(self, nb_lists, levels, u_levels):
        width = max(len(v) for v in nb_lists)
        n = len(nb_lists)
        self.count = np.array([len(v) for v in nb_lists], np.int64)
        self.nb = np.zeros((n, width), np.int16)
        for r, v in enumerate(nb_lists):
            self.nb[r, :len(v)] = v
        L = levels[self.nb].astype(np.int64)                             # (n, width, 8)
        pad = np.arange(width)[None, :] >= self.count[:, None]
        D = (L != u_levels[:, None, :]) & ~pad[:, :, None]
        slot = np.where(D, 8 * L + np.arange(8), 99)
        slot.sort(axis=2)
        assert (slot[:, :, 4:] == 99).all()                              # at most 4 changes
        ch = np.where(slot[:, :, :4] == 99, 24, slot[:, :, :4])
        ch[pad] = [25, 24, 24, 24]
        self.ch = np.ascontiguousarray(ch.transpose(2, 0, 1)).astype(np.int16)   # (4, rows, width)
        self.nslots = (ch < 24).sum(axis=2).max(axis=1)                  # changes of the row's neighbours


@functools.lru_cache(maxsize=1)
def _grid() -> _Grid:
    tab = ref.quant_grid("IQ1_S")
    g = _Grid()
    g.levels = tab.levels.astype(np.int8)                          # (2048, 8) levels 0..2
    g.qtab = np.concatenate([X_P[g.levels], X_M[g.levels]])         # (4096, 8): x_p / x_m values of each grid point
    g.kmap = tab.kmap.astype(np.int32)                             # code -> grid index or < 0
    # neighbour lists of the off-grid codes with every level in 0..2 (the only reachable ones)
    codes = np.flatnonzero(g.kmap < 0)
    lv = (codes[:, None] >> (2 * np.arange(8))) & 3
    keep = ~(lv == 3).any(axis=1)
    codes, lv = codes[keep], lv[keep]
    g.row_of_code = np.full(g.kmap.size, -1, np.int32)
    g.row_of_code[codes] = np.arange(codes.size, dtype=np.int32)
    full = [tab.neighbours_of(int(u)) for u in codes]
    g.full = _Lists(full, g.levels, lv)
    # A neighbour c is dominated when reverting some of its changed coordinates (not all) to u's
    # levels gives another neighbour c': then d2(c) = d2(c') + the terms of the reverted changes.
    # (Every grid point closer to u than a listed neighbour is listed: the lists hold all grid
    # points within the three smallest distances.)
    nb, cnt = g.full.nb, g.full.count
    r, j = np.nonzero(np.arange(nb.shape[1])[None, :] < cnt[:, None])  # every listed neighbour
    L = g.levels[nb[r, j]].astype(np.int64)                             # (E, 8)
    U = lv[r]
    D = L != U
    d = D.sum(axis=1)                                                   # 1..4 changed coordinates
    pos = np.argsort(~D, axis=1, kind="stable")[:, :4]                  # the changed coordinates first
    step = (L - U)[np.arange(r.size)[:, None], pos] << (2 * pos)        # code change of each
    code = (L << (2 * np.arange(8))).sum(axis=1)
    dom = np.zeros(r.size, bool)
    for s in range(1, 15):                                              # proper non-empty subsets
        bits = (s >> np.arange(4)) & 1
        app = (s < (1 << d) - 1) & (bits[None, :] <= (np.arange(4)[None, :] < d[:, None])).all(axis=1)
        rev = code - (step * bits).sum(axis=1)
        dom |= app & (g.kmap[np.where(app, rev, 0)] >= 0)
    dominated = np.zeros(nb.shape, bool)
    dominated[r, j] = dom
    g.pruned = _Lists([nb[r, :cnt[r]][~dominated[r, :cnt[r]]] for r in range(codes.size)], g.levels, lv)
    return g


@functools.lru_cache(maxsize=None)
def _pairs(bs: int):
    """Split pairs in ggml's loop order (i1 outer, i2 = i1..bs inner): i1, i2 and the first pair of each i1."""
    i1, i2 = np.triu_indices(bs + 1)
    first = np.concatenate([[0], np.cumsum(bs + 1 - np.arange(bs + 1))[:-1]])
    return i1.astype(np.int64), i2.astype(np.int64), first.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# the split candidates, one slab (fixed i1, all i2 >= i1) at a time, in ggml's float32 ops

class _CtxS:
    """IQ1_S prefix sums (33, n) over the sorted order and the per-i2 terms of the candidates."""
    nsh = 2
    npos = 33

    def __init__(self, S, W):
        self.S, self.W = S, W
        T, Tw = S[32], W[32]
        D = T - S                                   # sumx[block_size] - sumx[i2]
        Dw = Tw - W
        self.Cp, self.Cm = D * P2, D * M2
        self.Cwp, self.Cwm = (Dw * P2) * P2, (Dw * M2) * M2

    def sub(self, cols):
        c = object.__new__(_CtxS)
        for k in ("S", "W", "Cp", "Cm", "Cwp", "Cwm"):
            setattr(c, k, np.take(getattr(self, k), cols, axis=-1))     # C-contiguous (a[:, cols] is not)
        return c

    def pass1(self):
        """max over each slab of s = (sumqx/sumq2)*sumqx: (33, n) (the slab() values, buffers reused).

        Needs every S and W to be 0 or of magnitude >= 2**-90 (``scaling_exact``): then
        ``(S2 - S1)*x_p[1]`` is ``S2*2**-3 - S1*2**-3`` and ``(W2 - W1)*x_p[1]*x_p[1]`` is
        ``W2*2**-6 - W1*2**-6`` exactly (scaling by a power of 2 commutes with rounding while no
        value is subnormal), which saves three operations per split."""
        S, W = self.S, self.W
        n = S.shape[1]
        S3 = S * P1
        W6 = W * F32(2.0 ** -6)
        buf = np.empty((5, 33, n), F32)
        out = np.empty((33, n), F32)
        for i1 in range(33):
            B, qxp, qxm, q2p, q2m = (buf[k, :33 - i1] for k in range(5))
            s1, w1 = S[i1], W[i1]
            np.subtract(S3[i1:], S3[i1], out=B)              # (sumx[i2] - sumx[i1])*x_p[1]
            np.add(s1 * P0, B, out=qxp)
            qxp += self.Cp[i1:]
            np.subtract(s1 * M0, B, out=qxm)
            qxm += self.Cm[i1:]
            np.subtract(W6[i1:], W6[i1], out=B)              # (sumw[i2] - sumw[i1])*x_p[1]*x_p[1]
            np.add((w1 * P0) * P0, B, out=q2p)
            q2p += self.Cwp[i1:]
            np.add((w1 * M0) * M0, B, out=q2m)
            q2m += self.Cwm[i1:]
            np.divide(qxp, q2p, out=q2p)
            q2p *= qxp
            np.divide(qxm, q2m, out=q2m)
            q2m *= qxm
            np.maximum(q2p, q2m, out=q2p)
            q2p.max(axis=0, out=out[i1])
        return out

    @staticmethod
    def scaling_exact(S, W):
        """Per sub-block: every prefix sum 0 or of magnitude >= 2**-90 (see pass1)."""
        lim = F32(2.0 ** -90)
        ok = ((S == 0) | (np.abs(S) >= lim)).all(axis=0)
        ok &= ((W == 0) | (np.abs(W) >= lim)).all(axis=0)
        return ok

    def rows(self, i1, cols):
        """(qx, q2) (2, 33, m) for sub-blocks ``cols`` with their own i1 (m,); rows i2 < i1 are junk."""
        S = np.take(self.S, cols, axis=1)                 # C-contiguous (a[:, cols] is not)
        W = np.take(self.W, cols, axis=1)
        s1, w1 = self.S[i1, cols], self.W[i1, cols]
        D = S[32] - S                                     # the per-i2 terms, as in __init__
        Dw = W[32] - W
        Bp = S - s1
        Bp *= P1
        qx = np.empty((2,) + S.shape, F32)
        q2 = np.empty((2,) + S.shape, F32)
        np.add(s1 * P0, Bp, out=qx[0])
        qx[0] += D * P2
        np.subtract(s1 * M0, Bp, out=qx[1])
        D *= M2
        qx[1] += D
        Bw = W - w1
        Bw *= P1
        Bw *= P1
        np.add((w1 * P0) * P0, Bw, out=q2[0])
        t = Dw * P2
        t *= P2
        q2[0] += t
        np.add((w1 * M0) * M0, Bw, out=q2[1])
        Dw *= M2
        Dw *= M2
        q2[1] += Dw
        return qx, q2

    def slab(self, i1):
        """(qx, q2) of shape (2, 33 - i1, n): x_p then x_m for each i2 >= i1."""
        S, W = self.S, self.W
        s1, w1 = S[i1], W[i1]
        B = S[i1:] - s1                             # sumx[i2] - sumx[i1]
        Bp = B * P1                                 # (.)*x_m[1] is exactly -(.)*x_p[1]
        L, n = B.shape
        qx = np.empty((2, L, n), F32)
        q2 = np.empty((2, L, n), F32)
        np.add(s1 * P0, Bp, out=qx[0])              # (sumx[i1] - sumx[0])*x_p[0] + ..
        qx[0] += self.Cp[i1:]
        np.subtract(s1 * M0, Bp, out=qx[1])
        qx[1] += self.Cm[i1:]
        Bw = W[i1:] - w1
        Bw *= P1
        Bw *= P1                                    # (.)*x_m[1]*x_m[1] is the same value
        np.add((w1 * P0) * P0, Bw, out=q2[0])
        q2[0] += self.Cwp[i1:]
        np.add((w1 * M0) * M0, Bw, out=q2[1])
        q2[1] += self.Cwm[i1:]
        return qx, q2


class _CtxM:
    """IQ1_M prefix sums per half (2, 17, n) over the sorted order (ggml's px / pw)."""
    nsh = 4
    npos = 17

    def __init__(self, PX, PW):
        self.PX, self.PW = PX, PW
        txs, tws = PX[:, 16], PW[:, 16]
        self.txp, self.txm = txs * P2, txs * M2
        self.twp, self.twm = (tws * P2) * P2, (tws * M2) * M2
        self.Pc2p, self.Pc2m = PW * CP2, PW * CM2

    def sub(self, cols):
        c = object.__new__(_CtxM)
        for k in ("PX", "PW", "txp", "txm", "twp", "twm", "Pc2p", "Pc2m"):
            setattr(c, k, np.take(getattr(self, k), cols, axis=-1))
        return c

    def pass1(self):
        """max over each slab of s = (sumqx/sumq2)*sumqx: (17, n) (the slab() values, buffers reused)."""
        PX, PW = self.PX, self.PW
        n = PX.shape[-1]
        buf = np.empty((5, 2, 17, n), F32)
        qx = np.empty((4, 17, n), F32)
        q2 = np.empty((4, 17, n), F32)
        out = np.empty((17, n), F32)
        txp, txm = self.txp[:, None, :], self.txm[:, None, :]
        for i1 in range(17):
            L = 17 - i1
            sx, qxp, qxm, q2p, q2m = (buf[k, :, :L] for k in range(5))      # (2, L, n): both halves
            np.add(PX[:, i1:i1 + 1], PX[:, i1:], out=sx)                     # px[h][i1] + px[h][i2]
            np.subtract(txp, sx, out=qxp)
            np.subtract(txm, sx, out=qxm)
            pw1 = PW[:, i1]
            np.add((self.twp + pw1 * CP1)[:, None, :], self.Pc2p[:, i1:], out=q2p)
            np.add((self.twm + pw1 * CM1)[:, None, :], self.Pc2m[:, i1:], out=q2m)
            a, b = qx[:, :L], q2[:, :L]
            np.add(qxp[0], qxp[1], out=a[0])
            np.add(qxp[0], qxm[1], out=a[1])
            np.add(qxm[0], qxp[1], out=a[2])
            np.add(qxm[0], qxm[1], out=a[3])
            np.add(q2p[0], q2p[1], out=b[0])
            np.add(q2p[0], q2m[1], out=b[1])
            np.add(q2m[0], q2p[1], out=b[2])
            np.add(q2m[0], q2m[1], out=b[3])
            np.divide(a, b, out=b)
            b *= a
            np.maximum(b[0], b[1], out=b[0])
            np.maximum(b[2], b[3], out=b[2])
            np.maximum(b[0], b[2], out=b[0])
            b[0].max(axis=0, out=out[i1])
        return out

    def rows(self, i1, cols):
        """(qx, q2) (4, 17, m) for sub-blocks ``cols`` with their own i1 (m,); rows i2 < i1 are junk."""
        P = cols.size
        X = np.take(self.PX, cols, axis=2)                # (2, 17, P)
        Wt = np.take(self.PW, cols, axis=2)
        at = np.arange(P)
        part = np.empty((4, 2, 17, P), F32)               # qx_p, qx_m, q2_p, q2_m per half
        for h in range(2):
            sx = X[h, i1, at] + X[h]                      # px[h][i1] + px[h][i2]
            np.subtract(self.txp[h, cols], sx, out=part[0, h])
            np.subtract(self.txm[h, cols], sx, out=part[1, h])
            pw1 = Wt[h, i1, at]
            np.multiply(Wt[h], CP2, out=part[2, h])       # (tws*p2*p2 + pw1*cp1) + pw2*cp2
            part[2, h] += self.twp[h, cols] + pw1 * CP1
            np.multiply(Wt[h], CM2, out=part[3, h])
            part[3, h] += self.twm[h, cols] + pw1 * CM1
        qx = np.empty((4, 17, P), F32)
        q2 = np.empty((4, 17, P), F32)
        for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):     # k = 0 (+,+) .. 3 (-,-)
            np.add(part[a, 0], part[b, 1], out=qx[k])
            np.add(part[2 + a, 0], part[2 + b, 1], out=q2[k])
        return qx, q2

    def slab(self, i1):
        """(qx, q2) of shape (4, 17 - i1, n): k = 0 (+,+), 1 (+,-), 2 (-,+), 3 (-,-)."""
        L = 17 - i1
        n = self.PX.shape[-1]
        qxp, qxm, q2p, q2m = [], [], [], []
        for h in range(2):
            sx = self.PX[h, i1] + self.PX[h, i1:]    # px[h][i1] + px[h][i2]
            qxp.append(self.txp[h] - sx)
            qxm.append(self.txm[h] - sx)
            pw1 = self.PW[h, i1]
            q2p.append(self.twp[h] + pw1 * CP1 + self.Pc2p[h, i1:])
            q2m.append(self.twm[h] + pw1 * CM1 + self.Pc2m[h, i1:])
        qx = np.empty((4, L, n), F32)
        q2 = np.empty((4, L, n), F32)
        np.add(qxp[0], qxp[1], out=qx[0])
        np.add(qxp[0], qxm[1], out=qx[1])
        np.add(qxm[0], qxp[1], out=qx[2])
        np.add(qxm[0], qxm[1], out=qx[3])
        np.add(q2p[0], q2p[1], out=q2[0])
        np.add(q2p[0], q2m[1], out=q2[1])
        np.add(q2m[0], q2p[1], out=q2[2])
        np.add(q2m[0], q2m[1], out=q2[3])
        return qx, q2


def _exact_scan(ctx, bs):
    """ggml's scan, candidate after candidate, for every sub-block of ctx: (cand, qx, q2), cand -1 if none."""
    n = ctx.S.shape[1] if isinstance(ctx, _CtxS) else ctx.PX.shape[-1]
    nsh = ctx.nsh
    _, _, first = _pairs(bs)
    best = np.full(n, NEG_FLT_MAX, F32)
    cand = np.full(n, -1, np.int64)
    cqx = np.zeros(n, F32)
    cq2 = np.zeros(n, F32)
    for i1 in range(bs + 1):
        qx, q2 = ctx.slab(i1)
        lhs = qx * qx
        s = (qx / q2) * qx
        valid = q2 > 0
        for r in range(bs + 1 - i1):
            for k in range(nsh):
                ok = valid[k, r] & (lhs[k, r] > best * q2[k, r])
                if ok.any():
                    np.copyto(best, s[k, r], where=ok)
                    np.copyto(cqx, qx[k, r], where=ok)
                    np.copyto(cq2, q2[k, r], where=ok)
                    cand[ok] = (first[i1] + r) * nsh + k
    return cand, cqx, cq2


TAU_TRIES = 4


def _fast_scan(ctx, bs):
    """The split search of tame sub-blocks through H (module docstring): (cand, qx, q2, failed)."""
    n = ctx.S.shape[1] if isinstance(ctx, _CtxS) else ctx.PX.shape[-1]
    nsh = ctx.nsh
    _, _, first = _pairs(bs)
    slabmax = ctx.pass1()
    M = slabmax.max(axis=0)
    failed = ~((M >= TAME_LO) & (M <= TAME_HI))
    # thresholds tau_k = M*(1 - TAU_STEP*2**-k) (the first that passes the checks is used);
    # E = {s >= tau_0*(1 - TAU_STEP)} holds every H_k and every candidate (B) is checked exactly for
    taus = [M - M * (TAU_STEP * F32(2.0 ** -k)) for k in range(TAU_TRIES)]
    tau_lo = taus[0] - taus[0] * TAU_STEP

    # the candidates in E, recomputed for the (sub-block, i1) slabs whose maximum reaches tau_lo
    npos = bs + 1
    i1, sb = np.nonzero((slabmax >= tau_lo) & ~failed)
    P = sb.size
    qx, q2 = ctx.rows(i1, sb)                                  # (nsh, npos, P)
    s = qx / q2
    s *= qx
    mask = s >= tau_lo[sb]
    mask &= np.arange(npos)[:, None] >= i1
    flat = np.flatnonzero(mask)
    k, rem = np.divmod(flat, npos * P)
    i2, j = np.divmod(rem, P)
    qx, q2, s = qx.reshape(-1)[flat], q2.reshape(-1)[flat], s.reshape(-1)[flat]
    c = (first[i1[j]] + i2 - i1[j]) * nsh + k
    sb = sb[j]
    lhs = qx * qx
    valid = q2 > 0

    # the first tau_k passing checks (A) and (B) exactly on E, per sub-block
    use = np.full(n, -1, np.int64)
    for kk in range(TAU_TRIES):
        t = taus[kk][sb]
        tq = t * q2
        in_h = s >= t
        bad = np.where(in_h, ~(lhs > tq), ~(lhs <= tq)) | ~valid
        ok = use < 0
        ok[sb[bad]] = False
        use[ok] = kk
        if (use >= 0).all():
            break
    failed |= use < 0
    in_h = (s >= np.stack(taus)[np.maximum(use[sb], 0), sb]) & ~failed[sb]
    sb, c, qx, q2, lhs = sb[in_h], c[in_h], qx[in_h], q2[in_h], lhs[in_h]

    # ggml's scan over H, in C order. A single member is accepted (best = -FLT_MAX then).
    cand = np.full(n, -1, np.int64)
    cqx = np.zeros(n, F32)
    cq2 = np.zeros(n, F32)
    cnt = np.bincount(sb, minlength=n)
    one = cnt[sb] == 1
    cand[sb[one]], cqx[sb[one]], cq2[sb[one]] = c[one], qx[one], q2[one]
    more = ~one
    if more.any():
        sb, c, qx, q2, lhs = sb[more], c[more], qx[more], q2[more], lhs[more]
        order = np.argsort(sb * (nsh * (npos * (npos + 1) // 2)) + c)
        sb, c, qx, q2, lhs = sb[order], c[order], qx[order], q2[order], lhs[order]
        sbs, inv, cnt = np.unique(sb, return_inverse=True, return_counts=True)
        nm = sbs.size
        start = np.cumsum(cnt) - cnt
        pos = np.arange(sb.size) - start[inv]
        kmax = int(cnt.max())
        Q2 = np.zeros((kmax, nm), F32)                  # absent entries: q2 = 0, never accepted
        LH = np.zeros((kmax, nm), F32)
        QX = np.zeros((kmax, nm), F32)
        C = np.full((kmax, nm), -1, np.int64)
        Q2[pos, inv] = q2
        LH[pos, inv] = lhs
        QX[pos, inv] = qx
        C[pos, inv] = c
        best = np.full(nm, NEG_FLT_MAX, F32)
        mc = np.full(nm, -1, np.int64)
        mqx = np.zeros(nm, F32)
        mq2 = np.zeros(nm, F32)
        for jj in range(kmax):
            ok = (Q2[jj] > 0) & (LH[jj] > best * Q2[jj])
            np.copyto(best, (QX[jj] / Q2[jj]) * QX[jj], where=ok)
            np.copyto(mc, C[jj], where=ok)
            np.copyto(mqx, QX[jj], where=ok)
            np.copyto(mq2, Q2[jj], where=ok)
        cand[sbs], cqx[sbs], cq2[sbs] = mc, mqx, mq2
    return cand, cqx, cq2, failed


def _search(ctx, bs, tame, active, none):
    """Split search for the ``active`` sub-blocks: (cand, qx, q2) per sub-block (cand -1: none).
    ``none``: sub-blocks known to have no candidate (all weights zero: every sumq2 is 0)."""
    n = active.size
    cand = np.full(n, -1, np.int64)
    cqx = np.zeros(n, F32)
    cq2 = np.zeros(n, F32)
    fast = np.flatnonzero(active & tame)
    slow = np.flatnonzero(active & ~tame & ~none)
    if fast.size:
        c, a, b, failed = _fast_scan(ctx if fast.size == n else ctx.sub(fast), bs)
        ok = ~failed
        cand[fast[ok]], cqx[fast[ok]], cq2[fast[ok]] = c[ok], a[ok], b[ok]
        slow = np.concatenate([slow, fast[failed]])
    if slow.size:
        c, a, b = _exact_scan(ctx.sub(slow), bs)
        cand[slow], cqx[slow], cq2[slow] = c, a, b
    return cand, cqx, cq2


# --------------------------------------------------------------------------------------------------
# grid snapping: iq1_find_best_neighbour2 for the off-grid groups of 8

NB_SLICE = 4096            # off-grid groups per padded batch at most (sorted by neighbour count)
NB_WIDTHS = (6, 10, 14, 18, 22, 26, 32, 40, 60, 80, 100, 130, 160)     # batch boundaries (list length)
NB_TOL = F32(2.0 ** -17)   # neighbours with approx d2 <= min + NB_TOL * sum_i max_l |t_i(l)| are exact-checked


def _best_neighbours(codes, xg, wg, scale, xx):
    """iq1_find_best_neighbour2 for off-grid groups: codes (m,), xg/wg (m, 8), scale (m,), xx (m, 3)
    -> grid index (m,).

    ``d2`` of a neighbour c is ggml's sequential float32 sum of the terms ``t[i, c_i]``. Relative to
    the off-grid point u it is (in exact arithmetic) the sum over the changed coordinates of
    ``dl[i, c_i] = t[i, c_i] - t[i, u_i]``; that float32 approximation ``A`` (at most 4 terms) is
    within ``2**-19 * tabs`` of ``d2 - d2(u)`` computed by ggml (``tabs = sum_i max_l |t[i, l]|``),
    so neighbours with ``A > min A + NB_TOL*tabs`` cannot be the minimum. When one neighbour is left
    it is the answer, else ggml's exact sums decide among those left. When every level change
    costs more than ``NB_TOL*tabs``, a neighbour whose changes extend another neighbour's changes is
    worse than it and is not looked at (``g.pruned``)."""
    g = _grid()
    m = codes.size
    rows = g.row_of_code[codes]
    # terms t[l, i, group] = w*diff*diff, diff = scale*xx[l] - x   (ggml's float32 ops)
    q = np.ascontiguousarray((scale[:, None] * xx).T)                   # (3, m)
    xT, wT = np.ascontiguousarray(xg.T), np.ascontiguousarray(wg.T)     # (8, m)
    diff = q[:, None, :] - xT[None, :, :]                               # (3, 8, m)
    tT = (wT[None, :, :] * diff) * diff
    ax = np.abs(tT)
    tabs = np.maximum(np.maximum(ax[0], ax[1]), ax[2]).sum(axis=0)      # (bound only)
    tol = tabs * NB_TOL + F32(2.0 ** -120)
    wild = ~np.isfinite(tabs) | (tabs > F32(2.0 ** 100))
    ul = (codes[None, :] >> (2 * np.arange(8))[:, None]) & 3            # (8, m) levels of u
    pos = np.arange(8 * m).reshape(8, m)                                # flat (i, group) position
    tflat3 = tT.reshape(-1)                                             # t[l, i, g] at l*8m + i*m + g
    tu = np.take(tflat3, ul * (8 * m) + pos)
    dT = tT - tu                                                        # (3, 8, m); 0 at u's level
    # every level change costs more than tol: the 16 slots other than u's (0 there) exceed it
    prunable = ((dT.reshape(24, m) > tol).sum(axis=0) == 16) & ~wild
    dl = np.empty((m, 26), F32)                                         # slots 8l+i, 24: 0, 25: +inf
    dl[:, :24] = dT.reshape(24, m).T
    dl[:, 24] = 0
    dl[:, 25] = INF
    dflat = dl.reshape(-1)

    out = np.empty(m, np.int64)
    todo = []                                                           # (lists, group, neighbour position)
    for lists, sel in ((g.pruned, np.flatnonzero(prunable)), (g.full, np.flatnonzero(~prunable))):
        if sel.size == 0:
            continue
        cnt = lists.count[rows[sel]]
        srt = np.argsort(cnt, kind="stable")
        sel, cnt = sel[srt], cnt[srt]
        # batches of groups with similar list lengths (the batch is padded to its longest list)
        cuts = np.searchsorted(cnt, NB_WIDTHS, side="right")
        bounds = np.unique(np.concatenate([[0], cuts, np.arange(0, sel.size, NB_SLICE), [sel.size]]))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            grp = sel[lo:hi]
            r = rows[grp]
            width = int(cnt[hi - 1])
            ns = int(lists.nslots[r].max())
            idx = np.take(lists.ch[:ns], r, axis=1)[:, :, :width] + (grp.astype(np.int32) * 26)[None, :, None]
            dd = np.take(dflat, idx)
            A = dd[0]
            for s in range(1, ns):
                A += dd[s]
            jmin = A.argmin(axis=1)
            thr = A[np.arange(grp.size), jmin] + tol[grp]
            keep = A <= thr[:, None]
            wl = wild[grp] | ~np.isfinite(thr)
            if wl.any():
                keep[wl] = np.arange(width)[None, :] < lists.count[r[wl], None]
            out[grp] = lists.nb[r, jmin]                                # one neighbour left: the minimum
            multi = np.flatnonzero(keep.sum(axis=1) != 1)
            if multi.size:
                gi, j = np.nonzero(keep[multi])                         # row-major: list order per group
                todo.append((lists.nb[r[multi][gi], j], grp[multi][gi]))
    if todo:
        # several left: ggml's exact sequential d2 and first strict minimum below FLT_MAX
        cand = np.concatenate([c for c, _ in todo]).astype(np.int64)
        gg = np.concatenate([a for _, a in todo])
        lv = g.levels[cand].astype(np.int64)                            # (K, 8)
        tflat = np.ascontiguousarray(tT.reshape(24, m).T).reshape(-1)   # (m, 24)
        base = gg * 24
        d2 = np.zeros(cand.size, F32)
        for i in range(8):
            d2 += np.take(tflat, base + (8 * lv[:, i] + i))
        d2 = np.where(d2 < FLT_MAX, d2, INF)                            # C: if (d2 < best_score), best = FLT_MAX
        starts = np.flatnonzero(np.r_[True, gg[1:] != gg[:-1]])
        mins = np.minimum.reduceat(d2, starts)
        if not np.isfinite(mins).all():
            raise GGSpecError("IQ1: no finite neighbour distance (ggml reads out of bounds here)")
        seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, cand.size]))
        firsts = np.where(d2 == mins[seg], np.arange(cand.size), cand.size)
        out[gg[starts]] = cand[np.minimum.reduceat(firsts, starts)]
    return out


XPM = np.stack([X_P, X_M])                 # the level values of a group: x_p (row 0) or x_m (row 1)


def _codes(L):
    """kmap codes sum_j L[..., j] << 2j of groups of 8 levels (int8, last axis 8, C-contiguous)."""
    v = np.ascontiguousarray(L).view("<u8")[..., 0]                     # byte j = level j
    v = (v | (v >> np.uint64(6))) & np.uint64(0x000F000F000F000F)
    v = (v | (v >> np.uint64(12))) & np.uint64(0x000000FF000000FF)
    v = (v | (v >> np.uint64(24))) & np.uint64(0xFFFF)
    return v.astype(np.int64)


def _snap(L, xs, ws, scale, use_m):
    """Grid index per group of 8 (L (n, ng, 8) levels; use_m (n, ng): the group's values are x_m)
    -> (index (n, ng), all_on_grid (n,))."""
    g = _grid()
    n, ng, _ = L.shape
    codes = _codes(L)
    index = g.kmap[codes]
    off = index < 0
    f = np.flatnonzero(off)                                             # off-grid groups, flat (n*ng)
    if f.size:
        xg = np.take(xs.reshape(-1, 8), f, axis=0)
        wg = np.take(ws.reshape(-1, 8), f, axis=0)
        xx = np.take(XPM, use_m.reshape(-1)[f].astype(np.intp), axis=0)
        index.reshape(-1)[f] = _best_neighbours(codes.reshape(-1)[f], xg, wg, scale[f // ng], xx)
    return index, ~off.any(axis=1)


def _rescale(q, ws, xs, scale, redo):
    """``if (!all_on_grid)``: sumqx = sum w*q*x, sumq2 = sum w*q*q (sequential); scale = sumqx/sumq2 if both > 0."""
    if not redo.any():
        return scale
    if redo.mean() < 0.5:
        q, ws, xs = q[redo], ws[redo], xs[redo]
    wq = ws * q
    sqx = seq_sum(np.ascontiguousarray((wq * xs).T), axis=0)          # in element order, as ggml
    sq2 = seq_sum(np.ascontiguousarray((wq * q).T), axis=0)
    if sqx.size != redo.size:
        full = np.zeros((2, redo.size), F32)
        full[0, redo], full[1, redo] = sqx, sq2
        sqx, sq2 = full
    upd = redo & (sqx > 0) & (sq2 > 0)
    return np.where(upd, sqx / np.where(upd, sq2, F32(1)), scale).astype(F32)
    wq = ws[redo] * q[redo]
    sqx = seq_sum(np.ascontiguousarray((wq * xs[redo]).T), axis=0)
    sq2 = seq_sum(np.ascontiguousarray((wq * q[redo]).T), axis=0)
    scale = scale.copy()
    upd = (sqx > 0) & (sq2 > 0)
    scale[np.flatnonzero(redo)[upd]] = sqx[upd] / sq2[upd]
    return scale


# --------------------------------------------------------------------------------------------------
# shared first steps

def _prepare(xb, QW, bs, eps):
    """Weights, sort order and per-sub-block facts for a chunk of super-blocks (G, 256):
    (G, xs, ws, active, fidx, xmax, nonneg); fidx: flat positions of each sub-block in sorted order."""
    G = xb.shape[0]
    sumx2 = seq_sum(np.ascontiguousarray((xb * xb).T), axis=0)
    sigma2 = (F32(2) * sumx2) / F32(QK_K)
    if QW is None:                                                      # IQ1_M only
        w = xb * xb
    else:
        w = QW * np.sqrt(sigma2[:, None] + xb * xb)
    xs = xb.reshape(-1, bs)
    ws = w.reshape(-1, bs)
    # ggml: qsort (glibc: a stable merge sort here) with a value-only comparator. Without equal
    # values (-0.0 == 0.0) every sort gives that order; rows with ties take a stable sort.
    n = xs.shape[0]
    idx = np.argsort(xs, axis=1)
    fidx = idx + (np.arange(n) * bs)[:, None]                           # flat positions, sorted order
    xsorted = np.take(xs.reshape(-1), fidx).reshape(-1)
    at = np.flatnonzero(xsorted[1:] == xsorted[:-1])
    tie = np.unique(at[(at + 1) % bs != 0] // bs)
    if tie.size:
        fidx[tie] = np.argsort(xs[tie], axis=1, kind="stable") + (tie * bs)[:, None]
    # max = fabsf(xb[0]); max = MAX(max, fabsf(xb[i])): max|x| (first or last in the order; NaN
    # sorts last) unless there is a NaN, which ggml's MAX drops again
    xsorted = xsorted.reshape(n, bs)
    xmax = np.maximum(-xsorted[:, 0], xsorted[:, -1])
    vmax = xmax
    nan = np.isnan(xmax)
    if nan.any():
        vmax = xmax.copy()
        vmax[nan] = max_fold_abs(np.ascontiguousarray(xs[nan].T))
    active = ~(vmax < eps)
    nonneg = np.ones(n, bool) if ws.min() >= 0 else ws.min(axis=1) >= 0
    return G, xs, ws, active, fidx, xmax, nonneg


def _tame(tw, xmax, nonneg):
    """(tame, none) per sub-block from its float32 total weight: tame = non-negative finite weights,
    total weight, max|x| and their product in range (see the module docstring); none = all weights
    are +-0 (no split has sumq2 > 0)."""
    tame = nonneg & (tw >= TAME_LO) & (tw <= TAME_HI) & (xmax <= TAME_HI) & (tw * xmax <= TAME_HI)
    return tame, nonneg & (tw == 0)


def _levels(fidx, i1, i2):
    """L[idx[j]] = 0 (j < i1), 1 (i1 <= j < i2), 2 (j >= i2); fidx: flat positions in sorted order."""
    n, bs = fidx.shape
    j = np.arange(bs)
    lev = (j[None, :] >= i1[:, None]).astype(np.int8) + (j[None, :] >= i2[:, None])
    L = np.empty((n, bs), np.int8)
    np.put(L, fidx, lev)
    return L


# --------------------------------------------------------------------------------------------------
# IQ1_S

def _iq1_s_chunk(xb, QW):
    bs = 32
    G, xs, ws, active, fidx, xmax, nonneg = _prepare(xb, QW, bs, EPS_S)
    n = xs.shape[0]
    fidxT = np.ascontiguousarray(fidx.T)
    wx = np.take((ws * xs).reshape(-1), fidxT)                 # (32, n): weight*x in sorted order
    wsort = np.take(ws.reshape(-1), fidxT)
    S = np.zeros((33, n), F32)
    W = np.zeros((33, n), F32)
    for j in range(32):                                         # sumx[j+1] = sumx[j] + weight[i]*xb[i]
        np.add(S[j], wx[j], out=S[j + 1])
        np.add(W[j], wsort[j], out=W[j + 1])
    ctx = _CtxS(S, W)
    tame, none = _tame(W[32], xmax, nonneg)
    tame &= _CtxS.scaling_exact(S, W)
    cand, cqx, cq2 = _search(ctx, bs, tame, active, none)

    chosen = cand >= 0
    i1s, i2s, _ = _pairs(bs)
    pair = np.where(chosen, cand // 2, 0)
    shift = np.where(cand % 2 == 0, 1, -1)
    scale = np.where(chosen, cqx / np.where(chosen, cq2, F32(1)), F32(0)).astype(F32)
    L = _levels(fidx, i1s[pair], i2s[pair])
    neg = chosen & (scale < 0)
    L[neg] = 2 - L[neg]
    scale[neg] = -scale[neg]
    shift[neg] = -shift[neg]

    ch = np.flatnonzero(chosen)
    index = np.zeros((n, 4), np.int32)
    scales = np.zeros(n, F32)
    shifts = np.ones(n, np.int32)
    if ch.size:
        sel = slice(None) if ch.size == n else ch                      # a view when every sub-block has one
        xc, wc, sc0 = xs[sel], ws[sel], scale[sel]
        use_m = np.repeat((shift[sel] != 1)[:, None], 4, axis=1)        # (m, 4)
        ind, on_grid = _snap(L[sel].reshape(-1, 4, 8), xc, wc, sc0, use_m)
        q = np.take(_grid().qtab, use_m * 2048 + ind, axis=0).reshape(ch.size, 32)
        sc = _rescale(q, wc, xc, sc0, ~on_grid)
        if np.isnan(sc).any():
            raise GGSpecError("IQ1: a sub-block scale is NaN (ggml aborts: GGML_ASSERT(scale >= 0))")
        index[ch] = ind
        scales[ch] = sc
        shifts[ch] = shift[ch]

    # per super-block
    sc8 = scales.reshape(G, 8)
    max_scale = sc8.max(axis=1)                                          # scales >= 0; zeros where skipped
    qh = (((index >> 8) << (3 * np.arange(4))).sum(axis=1)).reshape(G, 8)
    has = max_scale != 0
    d = (max_scale / F32(15)).astype(F32)
    with np.errstate(all="ignore"):
        idv = (F32(1) / np.where(has, d, F32(1))).astype(F32)
        l = np.clip(nearest_int(F32(0.5) * (idv[:, None] * sc8 - F32(1))), 0, 7)
    l = np.where(shifts.reshape(G, 8) == -1, l | 8, l)
    qh = np.where(has[:, None], qh | (l << 12), qh)
    ob = np.empty((G, 50), np.uint8)
    ob[:, 0:2] = f16_bytes(np.where(has, d * F32(1.125), F32(0)).astype(F32))
    ob[:, 2:34] = (index & 255).reshape(G, 32)
    ob[:, 34:50] = qh.astype("<u2").view(np.uint8).reshape(G, 16)
    return ob


# --------------------------------------------------------------------------------------------------
# IQ1_M

def _iq1_m_chunk(xb, QW):
    bs = 16
    G, xs, ws, active, fidx, xmax, nonneg = _prepare(xb, QW, bs, EPS_M)
    n = xs.shape[0]
    fidxT = np.ascontiguousarray(fidx.T)
    wx = np.take((ws * xs).reshape(-1), fidxT)                 # (16, n): weight*x in sorted order
    wsort = np.take(ws.reshape(-1), fidxT)
    # px[h][j+1] = px[h][j] + weight*x when element j of the order is in half h, else px[h][j]:
    # adding +0.0 instead is the same (C's partial sums start from +0.0 and are never -0.0).
    # The terms of the other half are zeroed by a multiplication (inf*0 is NaN: np.where there).
    in1 = (fidxT & 15) >= 8
    masks = (~in1).astype(F32), in1.astype(F32)
    bad = ~(np.isfinite(wx).all(axis=0) & np.isfinite(wsort).all(axis=0))
    PX = np.zeros((2, 17, n), F32)
    PW = np.zeros((2, 17, n), F32)
    for h in range(2):
        tx = wx * masks[h]
        tw = wsort * masks[h]
        if bad.any():
            mh = masks[h][:, bad] != 0
            tx[:, bad] = np.where(mh, wx[:, bad], F32(0))
            tw[:, bad] = np.where(mh, wsort[:, bad], F32(0))
        for j in range(16):
            np.add(PX[h, j], tx[j], out=PX[h, j + 1])
            np.add(PW[h, j], tw[j], out=PW[h, j + 1])
    ctx = _CtxM(PX, PW)
    tame, none = _tame(PW[0, 16] + PW[1, 16], xmax, nonneg)
    cand, cqx, cq2 = _search(ctx, bs, tame, active, none)

    chosen = cand >= 0
    i1s, i2s, _ = _pairs(bs)
    pair = np.where(chosen, cand // 4, 0)
    k = (cand % 4).astype(np.int32)
    scale = np.where(chosen, cqx / np.where(chosen, cq2, F32(1)), F32(0)).astype(F32)
    L = _levels(fidx, i1s[pair], i2s[pair])
    neg = chosen & (scale < 0)
    L[neg] = 2 - L[neg]
    scale[neg] = -scale[neg]
    k[neg] = 3 - k[neg]

    ch = np.flatnonzero(chosen)
    index = np.zeros((n, 2), np.int32)
    scales = np.zeros(n, F32)
    shifts = np.zeros(n, np.int32)
    if ch.size:
        sel = slice(None) if ch.size == n else ch                      # a view when every sub-block has one
        xc, wc, sc0 = xs[sel], ws[sel], scale[sel]
        kk = k[sel]
        use_m = np.stack([kk >= 2, kk % 2 == 1], axis=1)                     # (m, 2)
        ind, on_grid = _snap(L[sel].reshape(-1, 2, 8), xc, wc, sc0, use_m)
        q = np.take(_grid().qtab, use_m * 2048 + ind, axis=0).reshape(ch.size, 16)
        sc = _rescale(q, wc, xc, sc0, ~on_grid)
        if np.isnan(sc).any():
            raise GGSpecError("IQ1: a sub-block scale is NaN (ggml aborts: GGML_ASSERT(scale >= 0))")
        index[ch] = ind
        scales[ch] = sc
        shifts[ch] = kk

    sc16 = scales.reshape(G, 16)
    max_scale = sc16.max(axis=1)
    has = max_scale != 0
    qs = (index & 255).reshape(G, 32)
    qh = ((index[:, 0] >> 8) | ((index[:, 1] >> 8) << 4)).reshape(G, 16)
    d = (max_scale / F32(15)).astype(F32)
    with np.errstate(all="ignore"):
        idv = (F32(1) / np.where(has, d, F32(1))).astype(F32)
        l = np.clip(nearest_int(F32(0.5) * (idv[:, None] * sc16 - F32(1))), 0, 7)    # (G, 16)
    sh16 = shifts.reshape(G, 16)
    masks = np.array([0x00, 0x80, 0x08, 0x88], np.int32)
    qh_final = np.where(has[:, None], qh | masks[sh16], qh)
    sc = np.zeros((G, 4), np.int32)
    for j in range(4):
        sc |= l[:, j::4] << (3 * j)
    # refit d over the super-block with the final indices: q = xx[level]*(2l+1)
    use_m = np.stack([sh16 >= 2, sh16 % 2 == 1], axis=2).reshape(-1)          # group uses x_m
    qv = np.take(_grid().qtab, use_m * 2048 + index.reshape(-1), axis=0).reshape(G, 256)
    q = qv * np.repeat((2 * l + 1).astype(F32), 16, axis=1)
    w = ws.reshape(G, 256)
    wq = w * q
    sqx = seq_sum(np.ascontiguousarray((wq * xb).T), axis=0)
    sq2 = seq_sum(np.ascontiguousarray((wq * q).T), axis=0)
    with np.errstate(all="ignore"):
        d = np.where(sq2 > 0, sqx / np.where(sq2 > 0, sq2, F32(1)), d).astype(F32)
    s = f16_bytes((d * F32(1.1125)).astype(F32)).view("<u2").reshape(G).astype(np.int32)
    sc[:, 0] |= (s & 0x000F) << 12
    sc[:, 1] |= (s & 0x00F0) << 8
    sc[:, 2] |= (s & 0x0F00) << 4
    sc[:, 3] |= (s & 0xF000)
    sc = np.where(has[:, None], sc, 0)
    ob = np.empty((G, 56), np.uint8)
    ob[:, 0:32] = qs
    ob[:, 32:48] = qh_final
    ob[:, 48:56] = sc.astype("<u2").view(np.uint8).reshape(G, 8)
    return ob


# --------------------------------------------------------------------------------------------------

def _runner(chunk_fn, ts, name, bs):
    def run(t, x, imatrix, out, threads):
        xb = x.reshape(-1, QK_K)
        ob = out.reshape(-1, ts)
        nbpr = x.shape[1] // QK_K
        QWB = None if imatrix is None else imatrix.reshape(nbpr, QK_K)
        _grid()

        def work(lo, hi):
            QW = None if QWB is None else QWB[np.arange(lo, hi) % nbpr]
            ob[lo:hi] = chunk_fn(xb[lo:hi], QW)

        run_chunks(xb.shape[0], max(1, CHUNK_SUBBLOCKS[name] * bs // QK_K), work, threads)
    return run


QUANT: dict = {
    "IQ1_S": _runner(_iq1_s_chunk, 50, "IQ1_S", 32),
    "IQ1_M": _runner(_iq1_m_chunk, 56, "IQ1_M", 16),
}
