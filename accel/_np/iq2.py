"""Vectorized IQ2 i-quant quantizers: ``QUANT[name](t, x, imatrix, out, threads)``.

IQ2_XXS, IQ2_XS and IQ2_S (``quantize_row_iq2_{xxs,xs,s}_impl`` in ggml-quants.c), byte-exact.

Layout
------
A chunk of super-blocks is cut into its sub-blocks (32 weights for IQ2_XXS, 16 for IQ2_XS and
IQ2_S) and transposed to structure-of-arrays: ``X[i, s]`` is element i of sub-block s. A
sub-block's groups of 8 are rows ``8k..8k+7``; group ``g = k*S + s``. Element-wise C statements are
element-wise numpy ops in C's order; every float sum is accumulated position by position from
``0.0f`` (``seq_sum``), never pairwise.

The candidate scales
--------------------
The projections of the candidate scales (13 for IQ2_XXS, 19 for the others) do not depend on each
other (only the acceptance test is sequential), so they are all computed at once: levels
``nearest_int(0.5f*(id*xval - 1))`` clamped to 0..2 as an (n, trials, S) array, map codes, ``kmap``.
Then the sums of every trial in C's order, then the sequential acceptance over the trials.

The neighbour search
--------------------
``iq2_find_best_neighbour`` takes, among the neighbour list of an off-grid code, the first entry
with the strictly smallest ``d2 = sum_i waux[i]*diff*diff`` (float32, sequential,
``diff = scale*q - xval[i]``). Doing that literally for every (trial, group) is 10-90 candidate
evaluations per weight. Instead, exactly:

1. A group keeps the same code over a run of consecutive trials (the levels are monotone in
   ``id``), so the off-grid (trial, group) cells are grouped into (group, code) *pairs*, each with
   a scale interval ``[s_lo, s_hi]`` (about 5 trials per pair).
2. For a candidate p the real-valued distance is ``f(s) = s^2 g_p(t) + C`` with
   ``g_p(t) = A_p - 2 B_p t``, ``t = 1/s``, ``A_p = sum w q^2``, ``B_p = sum w x q`` (w = waux): a
   line in t. A_p and B_p are read from per-group float32 tables of the partial sums of the first
   and of the last four coordinates (81 level combinations each). ggml's float32 ``d2`` differs
   from ``f(s)`` by less than ``30 u Z(s)`` with ``Z(s) = sum w (5|s| + |x|)^2``, u = 2**-24 (the
   rounding of ``scale*q``, of the subtraction, of the two products and of the 8 sequential adds:
   about 13 u Z; the tables and the float32 evaluation of g: about 13 u Z), plus a few 2**-149 from
   denormals. The code allows ``tol = (128 u Z + 1e-40) / s^2 + 1e-37`` in g units.
3. Per pair, with q1 the best candidate at ``t1 = 1/s_hi`` and q2 the best at ``t2 = 1/s_lo``: a
   candidate more than 2 tol above the line of q1 (or of q2) at both ends of the interval is above
   it at every trial of the pair (the difference of two lines is a line), so at every trial it is
   strictly worse than q1 (q2) in ggml's float32 and can never be its choice. Every entry that
   attains the true minimum survives; a single survivor is the answer at all the pair's trials.
4. Otherwise, per trial, the survivors more than 2 tol above the smallest g at that trial's own
   scale are dropped; if several still remain (near ties, e.g. zero weights), their float32
   ``d2`` is computed exactly as ggml does and the first strict minimum in list order is taken.

Groups with non-finite values, or where Z or Z/s^2 could overflow float32, take the plain path:
every candidate evaluated exactly. A list whose best distance is not below FLT_MAX is where ggml
aborts (``GGML_ASSERT(grid_index >= 0)``); here it raises, as it does where ggml would store a point
that is not on the grid ("Oops: found point ... not on grid"). Those only happen with non-finite
or overflowing data.
"""

from __future__ import annotations

import functools

import numpy as np

from ...errors import GGSpecError
from ...reference import iquants as ref
from ...reference.types import QK_K
from . import search
from .common import F32, U8, f16_bits, nearest_int, run_chunks, seq_sum

CHUNK_BLOCKS = 256                     # super-blocks per chunk (64k weights)
SEARCH_WEIGHTS = 1 << 13               # the candidate-scale search runs on batches of this many weights
F64 = np.float64
FLT_MAX = F32(np.finfo(np.float32).max)
_FLT_MAX_BITS = np.uint64(np.array(FLT_MAX, np.float32).view(np.uint32))
_SAFE = F32(2.0 ** 21)                 # |id*xval| below this: rint == nearest_int
_TOL_REL = 128.0 * 2.0 ** -24          # allowed |ggml's d2 - computed f(s)| / Z(s) (about 30 u needed)
_TOL_ABS = 1e-40
_TOL_ABS_G = 1e-37
_Z_MAX = 1e36                          # fast path only where float32 cannot overflow
_ZS_MAX = 1e30                         # ... and where Z/s^2 (the size of A - 2B/s) stays small


class _Tables:
    """ggml's kmap / neighbour lists of one grid, rearranged for the batched search."""

    def __init__(self, name: str):
        g = ref.quant_grid(name)
        self.kmap = g.kmap.astype(np.int64)
        nb = g.neighbours.astype(np.int64)
        off = self.kmap < 0
        start = np.where(off, -self.kmap - 1, 0)               # offset of the count in ``neighbours``
        self.count = np.where(off, nb[start], 0).astype(np.int64)
        self.first = (start + 1).astype(np.int64)               # offset of the first member
        self.nb = nb
        lev = g.levels.astype(np.int64)                          # (npts, 8) levels 0..2
        self.lev8 = lev.astype(U8)                               # (npts, 8)
        self.lev8T = np.ascontiguousarray(lev.T.astype(U8))      # (8, npts)
        self.qf = (2 * lev + 1).astype(F32)                      # the int8 grid ggml searches: 1, 3, 5
        members = np.clip(nb, 0, lev.shape[0] - 1)              # (count entries: never read)
        clo = lev[:, 0] * 27 + lev[:, 1] * 9 + lev[:, 2] * 3 + lev[:, 3]
        chi = lev[:, 4] * 27 + lev[:, 5] * 9 + lev[:, 6] * 3 + lev[:, 7]
        self.nbclo = clo[members].astype(np.uint8)               # column of the first half in bounds()
        self.nbchi = (81 + chi[members]).astype(np.uint8)        # ... of the second half


@functools.lru_cache(maxsize=None)
def _tables(name: str) -> _Tables:
    return _Tables(name)


def _expand(counts, firsts):
    """CSR expansion: for lists of ``counts[j]`` items starting at ``firsts[j]`` ->
    (owner of each item, item index, start of each list in the output)."""
    ends = np.cumsum(counts)
    starts = ends - counts
    total = int(ends[-1]) if ends.size else 0
    owner = np.repeat(np.arange(counts.size), counts)
    idx = np.arange(total, dtype=np.int64)
    idx += np.repeat(firsts - starts, counts)
    return owner, idx, starts


def _first_strict_min(d2, starts):
    """Per list (float32 d2 >= 0, lists at ``starts``): the position of the first entry with the
    smallest value (ggml's ``if (d2 < best_d2)`` from FLT_MAX; NaN never taken)."""
    key = d2.view(np.uint32).astype(np.uint64)
    key <<= np.uint64(32)
    key |= np.arange(d2.size, dtype=np.uint64)
    kmin = np.minimum.reduceat(key, starts)
    if ((kmin >> np.uint64(32)) >= _FLT_MAX_BITS).any():
        raise GGSpecError("IQ2: no neighbour with a distance below FLT_MAX (ggml aborts here)")
    return (kmin & np.uint64(0xFFFFFFFF)).astype(np.int64)


class _Groups:
    """The groups of 8 of the active sub-blocks of a chunk, and what the neighbour search needs."""

    def __init__(self, tb: _Tables, xa, waux):
        self.tb = tb
        self.xa, self.waux = xa, waux                            # (n, S) float32
        n, S = xa.shape
        self.ng, self.S = n // 8, S
        self.G = self.ng * S
        # (G, 8) rows, g = k*S + s
        self.XG = np.ascontiguousarray(xa.reshape(self.ng, 8, S).transpose(0, 2, 1)).reshape(self.G, 8)
        self.WG = np.ascontiguousarray(waux.reshape(self.ng, 8, S).transpose(0, 2, 1)).reshape(self.G, 8)
        self.amax = np.abs(xa).max(axis=0)
        self._bounds = None

    def bounds(self):
        """Per group the partial sums A = sum w q^2 and B = sum w x q of the first four and of the last
        four coordinates for every level combination: two float32 (G, 162) tables (``[g, c]`` first
        half, ``[g, 81 + c]`` second half, c = 27 l0 + 9 l1 + 3 l2 + l3); W0, W1, W2 = sum w,
        sum w|x|, sum w x^2 (float64); rows with finite values."""
        if self._bounds is None:
            W, X = self.WG, self.XG
            G = self.G
            tabs = []
            with np.errstate(all="ignore"):
                WT = np.ascontiguousarray(W.T)                   # (8, G)
                for V, q in ((WT, (1.0, 9.0, 25.0)), (WT * np.ascontiguousarray(X.T), (1.0, 3.0, 5.0))):
                    T = V[:, None, :] * np.array(q, F32)[None, :, None]   # (8, 3, G): coordinate i at level l
                    tab = np.empty((G, 2, 9, 9), F32)
                    for h in range(2):
                        c = 4 * h
                        p01 = np.ascontiguousarray((T[c][:, None, :] + T[c + 1][None, :, :]).reshape(9, G).T)
                        p23 = np.ascontiguousarray((T[c + 2][:, None, :] + T[c + 3][None, :, :]).reshape(9, G).T)
                        np.add(p01[:, :, None], p23[:, None, :], out=tab[:, h])
                    tabs.append(tab.reshape(G * 162))
                # upper bounds (float32 sums of 8 non-negative terms are within 10 u of the exact ones)
                WA = W * np.abs(X)
                up = 1.0 + 2.0 ** -16
                W0 = W.sum(axis=1).astype(F64) * up
                W1 = WA.sum(axis=1).astype(F64) * up
                W2 = (WA * np.abs(X)).sum(axis=1).astype(F64) * up
                ok = np.isfinite(W0) & np.isfinite(W1) & np.isfinite(W2)   # NaN and inf propagate
            self._bounds = (tabs[0], tabs[1], W0, W1, W2, ok)
        return self._bounds

    # ----------------------------------------------------------------------------------------------
    def search(self, ids, scales, mask=None):
        """Project every group at every trial: ids, scales (T, S) float32 (``scales`` is the scale
        the neighbour search uses). With ``mask`` (ng, T, S) only those groups' neighbours are
        searched. Returns (L (n, T, S) uint8 levels, gi (ng, T, S) grid indices, on_grid)."""
        tb, xa = self.tb, self.xa
        n, S = xa.shape
        ng, T = self.ng, ids.shape[0]
        with np.errstate(all="ignore"):
            a = ids[None, :, :] * xa[:, None, :]                 # id*xval
            if (np.abs(ids) * self.amax[None, :] < _SAFE).all():
                # nearest_int(0.5f*(a - 1)) >= 1  <=>  a > 2, and >= 2  <=>  a >= 4 (a - 1 is exact
                # there, rint is round-half-even like the bit trick while |.| < 2**22)
                L = np.greater(a, F32(2.0)).view(U8)
                L += np.greater_equal(a, F32(4.0)).view(U8)
            else:
                a -= F32(1.0)
                a *= F32(0.5)
                li = nearest_int(a)
                np.clip(li, 0, 2, out=li)
                L = li.astype(U8)
        l4 = L.reshape(ng, 8, T, S)
        u = l4[:, 0].astype(np.uint16)                           # codes < 43692 fit in uint16
        for i in range(1, 8):                                    # u |= l_i << 2i
            u |= np.left_shift(l4[:, i], 2 * i, dtype=np.uint16)
        gi = tb.kmap[u]
        on_grid = gi >= 0
        off = ~on_grid if mask is None else ~on_grid & mask
        idx = np.flatnonzero(off.transpose(0, 2, 1))             # ordered by group, then trial
        if idx.size:
            g, t = np.divmod(idx, T)
            k, s = np.divmod(g, S)
            best = self.resolve(u[k, t, s].astype(np.int64), g, scales[t, s])
            gi[k, t, s] = best
            l4[k, :, t, s] = tb.lev8[best]
        return L, gi, on_grid

    def resolve(self, u, g, s):
        """Best neighbour for (code u, group g, scale s) cells ordered by group then trial."""
        out = np.empty(u.size, np.int64)
        _, _, W0, W1, W2, ok = self.bounds()
        s64 = s.astype(F64)
        with np.errstate(all="ignore"):
            Z = (25.0 * s64 * s64) * W0[g] + (10.0 * np.abs(s64)) * W1[g] + W2[g]
            fast = ok[g] & np.isfinite(s64) & (s64 > 0) & (Z < _Z_MAX) & (Z < _ZS_MAX * (s64 * s64))
        if fast.all():
            with np.errstate(all="ignore"):
                out[:] = self._resolve_fast(u, g, s, s64, Z)
        else:
            f = np.flatnonzero(fast)
            if f.size:
                with np.errstate(all="ignore"):
                    out[f] = self._resolve_fast(u[f], g[f], s[f], s64[f], Z[f])
            e = np.flatnonzero(~fast)
            owner, pos, starts = _expand(self.tb.count[u[e]], self.tb.first[u[e]])
            d2 = self._exact_d2(g[e][owner], s[e][owner], self.tb.nb[pos])
            out[e] = self.tb.nb[pos[_first_strict_min(d2, starts)]]
        return out

    def _exact_d2(self, g, s, p):
        """ggml's float32 ``d2`` of candidate grid point p for group g at scale s, in C's order."""
        q = self.tb.qf[p]
        X, W = self.XG[g], self.WG[g]
        d2 = np.zeros(g.size, F32)
        with np.errstate(all="ignore"):
            for i in range(8):
                diff = s * q[:, i] - X[:, i]                     # scale*q - xval[i]
                d2 += (W[:, i] * diff) * diff                    # weight[i]*diff*diff
        return d2

    def _resolve_fast(self, u, g, s, s64, Z):
        """The pruned search (see the module docstring); float warnings are off (caller)."""
        tb = self.tb
        tabA, tabB = self.bounds()[:2]
        N = u.size
        new = np.ones(N, bool)
        new[1:] = (g[1:] != g[:-1]) | (u[1:] != u[:-1])
        pst = np.flatnonzero(new)                                # first cell of each (group, code) pair
        pair = np.cumsum(new) - 1
        P = pst.size
        gp, up = g[pst], u[pst]
        s_hi = np.maximum.reduceat(s, pst)
        s_lo = np.minimum.reduceat(s, pst)
        slo64 = s_lo.astype(F64)
        tol_p = ((_TOL_REL * np.maximum.reduceat(Z, pst) + _TOL_ABS) / (slo64 * slo64) + _TOL_ABS_G).astype(F32)
        c_hi = F32(2.0) / s_hi                               # 2t at both ends of the interval
        c_lo = F32(2.0) / s_lo

        # stage 1: every candidate of every pair; g(t) = A - 2Bt is linear in t = 1/s
        cnt = tb.count[up]
        ends = np.cumsum(cnt)
        starts = ends - cnt
        E = int(ends[-1])
        pos = np.arange(E, dtype=np.int64)
        pos += np.repeat(tb.first[up] - starts, cnt)             # offset of each candidate in the lists
        base = np.repeat(gp * 162, cnt)
        i1 = np.add(tb.nbclo.take(pos), base)
        i2 = np.add(tb.nbchi.take(pos), base)
        A = tabA.take(i1)
        A += tabA.take(i2)
        B = tabB.take(i1)
        B += tabB.take(i2)
        g1 = A - B * np.repeat(c_hi, cnt)                        # g at t1 = 1/s_hi
        g2 = A - B * np.repeat(c_lo, cnt)                        # g at t2 = 1/s_lo
        m1 = np.minimum.reduceat(g1, starts)
        m2 = np.minimum.reduceat(g2, starts)
        # q1 (best at t1) and q2 (best at t2) as reference lines: their values at the other end
        inf = F32(np.inf)
        v12 = np.minimum.reduceat(np.where(g1 == np.repeat(m1, cnt), g2, inf), starts)
        v21 = np.minimum.reduceat(np.where(g2 == np.repeat(m2, cnt), g1, inf), starts)
        T = F32(2.0) * tol_p
        # a candidate beaten by more than 2 tol at both ends by the same line is beaten everywhere
        surv = g1 <= np.repeat(m1 + T, cnt)
        surv |= g2 <= np.repeat(v12 + T, cnt)
        surv2 = g1 <= np.repeat(v21 + T, cnt)
        surv2 |= g2 <= np.repeat(m2 + T, cnt)
        surv &= surv2
        ns = np.add.reduceat(surv, starts, dtype=np.int64)
        sidx = np.flatnonzero(surv)                              # survivors, pair by pair, list order
        sfirst = np.cumsum(ns) - ns
        best_pair = np.full(P, -1, np.int64)
        one = ns == 1
        best_pair[one] = tb.nb[pos[sidx[sfirst[one]]]]
        res = best_pair[pair]
        if one.all():
            return res

        # stage 2: cells of the other pairs, each at its own scale, over the pair's survivors
        cells = np.flatnonzero(~one[pair])
        cp = pair[cells]
        n2 = ns[cp]
        own2, i2, st2 = _expand(n2, sfirst[cp])
        se = sidx[i2]                                            # stage-1 entry of each candidate
        sc = s64[cells]
        tol_c = ((_TOL_REL * Z[cells] + _TOL_ABS) / (sc * sc) + _TOL_ABS_G).astype(F32)
        gv = A[se] - B[se] * np.repeat(F32(2.0) / s[cells], n2)
        thr2 = np.minimum.reduceat(gv, st2) + F32(2.0) * tol_c
        keep = gv <= np.repeat(thr2, n2)
        nk = np.add.reduceat(keep, st2, dtype=np.int64)
        kidx = np.flatnonzero(keep)
        kfirst = np.cumsum(nk) - nk
        one2 = nk == 1
        res[cells[one2]] = tb.nb[pos[se[kidx[kfirst[one2]]]]]
        if one2.all():
            return res

        # stage 3: near ties, ggml's float32 d2 in list order
        c3 = np.flatnonzero(~one2)
        own3, i3, st3 = _expand(nk[c3], kfirst[c3])
        e3 = se[kidx[i3]]
        cell3 = cells[c3][own3]
        p3 = tb.nb[pos[e3]]
        d2 = self._exact_d2(g[cell3], s[cell3], p3)
        res[cells[c3]] = p3[_first_strict_min(d2, st3)]
        return res


def _make_qp_scale(X, nmax: int, QW):
    """ggml's make_qp_quants for every sub-block (columns of X, QW (n, S)) -> the returned scale (S,).

    As ``search.make_qp_quants`` (L is uint8 in ggml: negative levels wrap), with the refinement
    passes run as events: for every column the next position (in C's order, from the current one)
    whose change would be accepted is found for all positions at once from the current sums; it is
    applied (the sums change), and the search goes on after it; a pass that finds nothing ends (and
    ends the refinement if it changed nothing, or after the fifth pass). Until a change is applied
    the sums do not move, so this visits exactly the states of ggml's loop."""
    n, S = X.shape
    mx = np.zeros(S, F32)
    for i in range(n):
        mx = np.where(mx > X[i], mx, X[i])                       # MAX(max, x[i])
    zero = mx < search.GROUP_MAX_EPS
    nmaxf = F32(nmax)
    with np.errstate(all="ignore"):
        iscale = nmaxf / mx
        L0 = (nearest_int(iscale[None, :] * X) & 0xFF).astype(F32)   # uint8_t L[i]
        scale = F32(1.0) / iscale
        QWX = QW * X

        diff = X - scale[None, :] * L0
        best = seq_sum((QW * diff) * diff, axis=0)
        tries = np.array([i for i in range(-4, 5) if i], F32)
        isc = (F32(0.1) * tries[:, None] + nmaxf) / mx[None, :]      # (8, S)
        sc = F32(1.0) / isc
        v = isc[None, :, :] * X[:, None, :]                         # (n, 8, S)
        if (np.abs(X).max(axis=0) * isc.max(axis=0) < _SAFE).all():
            l = np.minimum(np.rint(v, out=v), nmaxf, out=v)          # rint == nearest_int here
        else:
            l = np.minimum(nearest_int(v), nmax).astype(F32)
        diff = X[:, None, :] - sc[None, :, :] * l
        mse = seq_sum((QW[:, None, :] * diff) * diff, axis=0)        # (8, S)
        for k in range(tries.size):
            acc = mse[k] < best
            best = np.where(acc, mse[k], best)
            iscale = np.where(acc, isc[k], iscale)

        li = np.minimum(nearest_int(iscale[None, :] * X), nmax)
        lf = li.astype(F32)
        sumlx = seq_sum(QWX * lf, axis=0)
        suml2 = seq_sum((QW * lf) * lf, axis=0)
        L = li & 0xFF                                            # uint8_t L[i] = l

        live = np.flatnonzero(~zero)
        nxt = np.zeros(S, np.int64)                               # next position of the current pass
        npass = np.zeros(S, np.int64)
        changed = np.zeros(S, bool)
        rows = np.arange(n)[:, None]
        while live.size:
            w, wx, x = QW[:, live], QWX[:, live], X[:, live]
            Lc = L[:, live]
            Li = Lc.astype(F32)
            sx, s2 = sumlx[live], suml2[live]
            slx = sx - wx * Li
            sl2 = s2 - (w * Li) * Li
            new_l = np.minimum(nearest_int((x * sl2) / slx), nmax)
            nl = new_l.astype(F32)
            slx2 = slx + wx * nl
            sl22 = sl2 + (w * nl) * nl
            ok = (slx > 0) & (sl2 > 0) & (new_l != Lc) & ((slx2 * slx2) * s2 > (sx * sx) * sl22)
            ok &= rows >= nxt[live]
            has = ok.any(axis=0)
            j = np.argmax(ok, axis=0)
            hc = np.flatnonzero(has)
            if hc.size:
                col, jj = live[hc], j[hc]
                L[jj, col] = new_l[jj, hc] & 0xFF
                sumlx[col] = slx2[jj, hc]
                suml2[col] = sl22[jj, hc]
                nxt[col] = jj + 1
                changed[col] = True
            ec = live[~has]                                       # end of a pass
            again = changed[ec] & (npass[ec] < 4)
            npass[ec] += 1
            nxt[ec] = 0
            changed[ec] = False
            live = np.concatenate([live[has], ec[again]])
        res = np.where(suml2 > F32(0.0), sumlx / suml2, F32(0.0)).astype(F32)
    return np.where(zero, F32(0.0), res)


def _sums(W, WX, L):
    """sumqx = sum w*xval*q, sumq2 = sum w*q*q with q = 2L+1 over axis 0, in C's order.
    W, WX = w*xval (n, S); L (n, T, S) uint8 levels -> (T, S) each."""
    q = L.astype(F32)
    q *= F32(2.0)
    q += F32(1.0)
    with np.errstate(all="ignore"):
        a = WX[:, None, :] * q                                   # (w*xval[i])*q
        b = W[:, None, :] * q
        b *= q                                                   # (w*q)*q
        return seq_sum(a, axis=0), seq_sum(b, axis=0)


def _levels_of(tb: _Tables, gi):
    """(ng, S) grid indices -> (n, S) uint8 levels."""
    ng, S = gi.shape
    return np.take(tb.lev8T, gi, axis=1).transpose(1, 0, 2).reshape(ng * 8, S)


def _cmax_fold(X):
    """``m = x[0]; for i >= 1: m = MAX(m, x[i])`` over the rows (ggml's MAX(a, b) = a > b ? a : b)."""
    m = X[0].copy()
    for i in range(1, X.shape[0]):
        m = np.where(m > X[i], m, X[i])
    return m


# --------------------------------------------------------------------------------------------------
# one chunk of super-blocks

_KIND = {
    # name: (sub-block size, parity-even signs, GROUP_MAX_EPS, sigma2 = 2*sumx2/QK_K, trials)
    "IQ2_XXS": (32, True, F32(1e-15), False, np.arange(-6, 7)),
    "IQ2_XS": (16, True, F32(1e-15), False, np.arange(-9, 10)),
    "IQ2_S": (16, False, F32(1e-8), True, np.arange(-9, 10)),
}


def _fit(name, tb, trials, xa, Wa, wauxa, denom, scale):
    """The candidate scales, the acceptance and the final re-projection for sub-blocks (columns of
    xa (n, S)) -> (scale (S,), grid index of each group (ng, S))."""
    n, Sa = xa.shape
    ng = n // 8
    with np.errstate(all="ignore"):
        grp = _Groups(tb, xa, wauxa)
        WXa = Wa * xa
        if name == "IQ2_XXS":
            gib = np.full((ng, Sa), -1, np.int64)
        else:
            gib = np.full((ng, Sa), tb.kmap[0], np.int64)        # L = 0 until a trial is taken
        ongb = np.ones((ng, Sa), bool)
        ids = (F32(5.0) + trials.astype(F32)[:, None] * F32(0.1)) / denom[None, :]   # (2*kMaxQ-1+is*0.1f)/max
        L, gi, ong = grp.search(ids, F32(1.0) / ids)
        sumqx, sumq2 = _sums(Wa, WXa, L)
        ratio = sumqx / sumq2                                    # the scale a trial would set
        sq = sumqx * sumqx
        pos2 = sumq2 > 0
        best = np.zeros(Sa, F32)
        tsel = np.full(Sa, -1, np.int64)
        for t in range(len(trials)):                             # the sequential acceptance
            acc = pos2[t] & (sq[t] > best * sumq2[t])            # sumq2 > 0 && sumqx*sumqx > best*sumq2
            np.copyto(best, ratio[t] * sumqx[t], where=acc)      # best = scale*sumqx
            np.copyto(tsel, t, where=acc)
        took = tsel >= 0
        if took.any():
            ts = np.maximum(tsel, 0)
            cols = np.arange(Sa)
            scale = np.where(took, ratio[ts, cols], scale)
            gib = np.where(took[None, :], gi[:, ts, cols], gib)
            ongb = np.where(took[None, :], ong[:, ts, cols], ongb)
        if name == "IQ2_XXS":                                    # every group again at the chosen scale
            redo = scale > 0
            mask = np.broadcast_to(redo[None, None, :], (ng, 1, Sa))
        else:                                                    # only the groups that were off the grid
            redo = (~ongb).any(axis=0) & (scale > 0)
            mask = (~ongb & redo[None, :])[:, None, :]
        if redo.any():
            sr = np.where(redo, scale, F32(1.0))
            _, gi, _ = grp.search((F32(1.0) / sr)[None, :], sr[None, :], mask)
            gi = gi[:, 0]
            if name != "IQ2_XXS":
                gi = np.where(ongb, gib, gi)
            gin = np.where(redo[None, :], gi, gib)
            sumqx, sumq2 = _sums(Wa, WXa, _levels_of(tb, np.where(gin < 0, 0, gin))[:, None, :])
            scale = np.where(redo & (sumq2[0] > 0), sumqx[0] / sumq2[0], scale)
            gib = gin
    if (gib < 0).any():
        raise GGSpecError(f"{name}: quantized point not on the grid (ggml aborts here)")
    return scale, gib


def _chunk(name, xb, QW):
    """Quantize (B, 256) super-blocks -> (d, max_scale (B,), scale nibbles (B, nsub),
    grid indices (B, 32), sign bytes (B, 32)); skipped sub-blocks have index and signs 0."""
    n, even, eps, two, trials = _KIND[name]
    tb = _tables(name)
    B = xb.shape[0]
    nsub = QK_K // n
    ng = n // 8
    S = B * nsub
    with np.errstate(all="ignore"):
        XB = np.ascontiguousarray(xb.T)
        sumx2 = seq_sum(XB * XB, axis=0)                         # per super-block
        sigma2 = ((F32(2.0) * sumx2) if two else sumx2) / F32(QK_K)
        X = np.ascontiguousarray(xb.reshape(S, n).T)             # (n, S)
        sig = np.repeat(sigma2.astype(F32), nsub)[None, :]
        if QW is not None:
            W = np.ascontiguousarray(QW.reshape(S, n).T) * np.sqrt(sig + X * X)
        else:
            W = F32(0.25) * sig + X * X
        W = W.astype(F32, copy=False)
        waux = np.sqrt(W)

        # signs: xval = |x| (x >= 0 fails for NaN: negated), one sign byte per group of 8
        neg = ~(X >= 0)
        xval = np.where(neg, -X, X)
        n3 = neg.reshape(ng, 8, S)
        signs = np.zeros((ng, S), np.int64)
        for i in range(8):
            signs |= n3[:, i].astype(np.int64) << i
        if even:
            odd = (n3.sum(axis=1) & 1).astype(bool)              # nflip % 2
            if odd.any():
                A = ((W * X) * X).reshape(ng, 8, S)              # weight*xb*xb
                mn = A[:, 0].copy()
                imin = np.zeros((ng, S), np.int64)
                for i in range(1, 8):
                    take = A[:, i] < mn
                    np.copyto(mn, A[:, i], where=take)
                    np.copyto(imin, i, where=take)
                x3 = xval.reshape(ng, 8, S)
                flip = (np.arange(8)[None, :, None] == imin[:, None, :]) & odd[:, None, :]
                np.negative(x3, out=x3, where=flip)
                signs ^= np.where(odd, np.int64(1) << imin, 0)
            signs &= 127

        vmax = _cmax_fold(xval)
        active = ~(vmax < eps)
        scale_all = np.zeros(S, F32)
        gi_all = np.zeros((ng, S), np.int64)

        if name == "IQ2_XXS" and active.any():
            cols = np.flatnonzero(active)
            sq = _make_qp_scale(np.ascontiguousarray(xval[:, cols]), 4, np.ascontiguousarray(W[:, cols]))
            eff_max = sq * F32(3.0)
            active[cols[eff_max <= 0]] = False
            qp_scale = np.zeros(S, F32)
            qp_scale[cols] = sq
            eff_all = np.zeros(S, F32)
            eff_all[cols] = eff_max

        cols = np.flatnonzero(active)
        step = SEARCH_WEIGHTS // n
        for c0 in range(0, cols.size, step):
            cb = cols[c0:c0 + step]
            xa = np.ascontiguousarray(xval[:, cb])
            if name == "IQ2_XXS":
                scale, denom = qp_scale[cb], eff_all[cb]
            else:
                denom = vmax[cb]
                scale = denom / F32(5.0)                         # max/(2*kMaxQ-1)
            scale, gib = _fit(name, tb, trials, xa, np.ascontiguousarray(W[:, cb]),
                              np.ascontiguousarray(waux[:, cb]), denom, scale)
            negs = scale < 0
            if negs.any():
                scale = np.where(negs, -scale, scale)
                sg = signs[:, cb]
                signs[:, cb] = np.where(negs[None, :], (~sg) & (127 if even else 255), sg)
            scale_all[cb] = scale
            gi_all[:, cb] = gib

        # per super-block: max_scale = MAX(max_scale, scale) over the sub-blocks that were not skipped
        sc_b = scale_all.reshape(B, nsub)
        act_b = active.reshape(B, nsub)
        max_scale = np.zeros(B, F32)
        for j in range(nsub):
            m = np.where(max_scale > sc_b[:, j], max_scale, sc_b[:, j])
            np.copyto(max_scale, m, where=act_b[:, j])
        d = max_scale / F32(31.0)
        idv = F32(1.0) / d
        l = nearest_int(F32(0.5) * (idv[:, None] * sc_b - F32(1.0)))
        np.clip(l, 0, 15, out=l)
    actg = act_b.repeat(ng, axis=1)
    gi_b = np.where(actg, gi_all.T.reshape(B, nsub * ng), 0)
    sg_b = np.where(actg, signs.T.reshape(B, nsub * ng), 0)
    return d, max_scale, l, gi_b, sg_b


def _pack_xxs(xb, QW):
    B = xb.shape[0]
    d, max_scale, l, gi, sg = _chunk("IQ2_XXS", xb, QW)
    gi = gi.reshape(B, 8, 4).astype(np.uint32)
    sg = sg.reshape(B, 8, 4).astype(np.uint32)
    q = np.empty((B, 8, 2), np.uint32)
    q[:, :, 0] = gi[..., 0] | (gi[..., 1] << 8) | (gi[..., 2] << 16) | (gi[..., 3] << 24)
    q[:, :, 1] = (sg[..., 0] | (sg[..., 1] << 7) | (sg[..., 2] << 14) | (sg[..., 3] << 21)
                  | (l.astype(np.uint32) << 28))
    zero = max_scale == 0                                        # if (!max_scale): qs zeroed, d = 0
    q[zero] = 0
    ob = np.empty((B, 66), U8)
    ob[:, 0:2] = np.where(zero, f16_bits(F32(0.0)), f16_bits(d)).astype("<u2").view(U8).reshape(B, 2)
    ob[:, 2:66] = q.astype("<u4").view(U8).reshape(B, 64)
    return ob


def _nibbles(l):
    l = l.astype(np.uint8)
    return l[:, 0::2] | (l[:, 1::2] << 4)


def _pack_xs(xb, QW):
    B = xb.shape[0]
    d, max_scale, l, gi, sg = _chunk("IQ2_XS", xb, QW)
    q2 = (gi | (sg << 9)).astype("<u2")
    zero = max_scale == 0
    q2[zero] = 0
    sc = _nibbles(l)
    sc[zero] = 0
    ob = np.empty((B, 74), U8)
    ob[:, 0:2] = np.where(zero, f16_bits(F32(0.0)), f16_bits(d)).astype("<u2").view(U8).reshape(B, 2)
    ob[:, 2:66] = q2.view(U8).reshape(B, 64)
    ob[:, 66:74] = sc
    return ob


def _pack_s(xb, QW):
    B = xb.shape[0]
    d, max_scale, l, gi, sg = _chunk("IQ2_S", xb, QW)
    zero = max_scale == 0                                        # d = 0, scales 0; indices and signs stay
    with np.errstate(all="ignore"):
        dd = d * F32(0.9875)
    hi = (gi >> 8).reshape(B, 8, 4)
    qh = hi[..., 0] | (hi[..., 1] << 2) | (hi[..., 2] << 4) | (hi[..., 3] << 6)
    sc = _nibbles(l)
    sc[zero] = 0
    ob = np.empty((B, 82), U8)
    ob[:, 0:2] = np.where(zero, f16_bits(F32(0.0)), f16_bits(dd)).astype("<u2").view(U8).reshape(B, 2)
    ob[:, 2:34] = gi & 255
    ob[:, 34:66] = sg
    ob[:, 66:74] = qh
    ob[:, 74:82] = sc
    return ob


def _runner(chunk_fn, ts):
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


QUANT: dict = {
    "IQ2_XXS": _runner(_pack_xxs, 66),
    "IQ2_XS": _runner(_pack_xs, 74),
    "IQ2_S": _runner(_pack_s, 82),
}
