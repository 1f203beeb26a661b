"""Vectorized IQ3_XXS / IQ3_S quantizers: ``QUANT[name](t, x, imatrix, out, threads)``.

The bytes of ``ggml_quantize_chunk`` (``quantize_iq3_xxs`` / ``quantize_iq3_s`` in ggml-quants.c;
the readable per-block version is ``reference/iquants.py``: ``_iq3_search`` and
``quantize_block_iq3_*``). Without an importance matrix ggml weighs each value by x*x, with one
by qw * sqrt(sigma2 + x*x); neither type requires one.

Layout: a chunk of G super-blocks is cut into its S = 8G sub-blocks of 32 and transposed to
structure of arrays, ``X[i, s]`` = element i of sub-block s (s = 8*g + ib). Group k of a sub-block
(4 weights, one grid point) is rows 4k..4k+3. Each C statement over one element becomes one numpy
op over all sub-blocks; each C sum is a loop over the 32 rows in C's order (``seq_sum``); each
``if`` a mask.

The scale search (31 trial scales for IQ3_XXS, 19 for IQ3_S) runs in three steps:
1. the level code of every group at every trial (cheap, element-wise);
2. ggml's neighbour search for every (trial, group) whose code is off the grid (most of them):
   iq3_find_best_neighbour takes the first strict minimum below FLT_MAX of
   ``d2 = sum waux*(scale*q - xval)^2`` (4 terms, in order) over the code's neighbour list. A
   group keeps the same code over a run of consecutive trials, so the exact d2 is evaluated only
   at the two ends of each run, and a proof (error bounds of ggml's float32 d2 against the real
   one, whose differences between candidates are s times a linear function of the scale s)
   settles the trials in between, or sends them to an exact search (``_trial_neighbours``);
3. the sums and the accept test of every trial, in C's order, then the re-projection at the
   chosen scale (exact search), and the packing.
The lists are padded (in length buckets) with NaN candidates, whose d2 is NaN and never taken, as
in C's strict ``d2 < best``. When no d2 is below FLT_MAX ggml aborts
(``GGML_ASSERT(grid_index >= 0)``); so does this (``GGSpecError``, like the reference).

nearest_int(0.5f*(id*x - 1)) is taken from the bits of ``(id*x - 1) + 3*2**23`` (the float32 sum is
exactly twice C's ``0.5f*(id*x - 1) + 1.5*2**23``, binary scaling commutes with rounding, so its
mantissa bits are the same: the same int, for every input, including the out-of-range ones).
"""

from __future__ import annotations

import functools

import numpy as np

from ...errors import GGSpecError
from ...reference.iquants import quant_grid
from ...reference.types import QK_K
from .common import F32, I32, U8, U32, nearest_int, run_chunks, seq_sum
from .quant import f16_bytes

FLT_MAX = F32(np.finfo(np.float32).max)
MAGIC2 = F32(25165824.0)           # 3 * 2**23: x + MAGIC2 rounds x to an even integer
EPS_XXS = F32(1e-8)                # GROUP_MAX_EPS_IQ3_XXS
CHUNK_BLOCKS = 1024                # super-blocks per chunk: 256k weights, 8192 sub-blocks
BUCKETS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 18, 20, 23, 26, 30, 34, 40)  # lists padded to these
U = 2.0 ** -24


@functools.lru_cache(maxsize=None)
def _tables(name: str):
    """(kmap int32 (4096,), gcode int32 (ngrid,): the code of each grid point, bucket int8 (4096,),
    buckets: list of (P, Q (P, 4, 4096) float32 candidate q = 2l+1, NaN padded, C (P, 4096) int32
    candidate grid indices, in ggml's list order), qgrid (ngrid, 4) float32 q of each grid point,
    on-grid bool (4096,), CBf / boff: the candidate lists flat, slot j of code u at
    CBf[j * 4096 + boff[u]])."""
    tab = quant_grid(name)
    kmap = np.where(tab.kmap >= 0, tab.kmap, -1).astype(I32)
    ncode = kmap.size
    gcode = tab.code(tab.levels).astype(I32)
    qgrid = tab.pos.astype(F32)
    off = np.flatnonzero(tab.kmap < 0)
    start = -tab.kmap[off] - 1                         # each list: count, then the grid indices
    cnt = tab.neighbours[start].astype(np.int64)
    assert cnt.min() >= 1 and cnt.max() <= BUCKETS[-1]
    bucket = np.full(ncode, -1, np.int8)
    bucket[off] = np.searchsorted(BUCKETS, cnt)
    buckets = []
    for bi, P in enumerate(BUCKETS):
        Q = np.full((P, 4, ncode), np.nan, F32)
        C = np.zeros((P, ncode), I32)
        sel = bucket[off] == bi
        u, st, ct = off[sel], start[sel], cnt[sel]
        for j in range(P):
            has = ct > j
            g = tab.neighbours[st[has] + 1 + j].astype(np.int64)
            C[j, u[has]] = g
            Q[j, :, u[has]] = qgrid[g]
        buckets.append((P, Q, C))
    # all candidate lists as one flat array: slot j of code u at CBf[j * 4096 + boff[u]]
    CBf = np.concatenate([C for _, _, C in buckets], axis=0).reshape(-1)
    first = np.concatenate([[0], np.cumsum([P for P, _, _ in buckets])[:-1]])
    boff = (first[np.maximum(bucket, 0)] * ncode + np.arange(ncode)).astype(np.int64)
    return kmap, gcode, bucket, buckets, qgrid, kmap >= 0, CBf, boff


def _distances(Q, x, w, s):
    """iq3_find_best_neighbour's d2 for every candidate: (P, n) from Q (P, 4, n), x, w (4, n), s (n,).

    ``d2 = 0; d2 += weight[i]*diff*diff`` with ``diff = scale*q - xval[i]`` (the leading 0 + only
    turns -0 into +0, which no comparison sees)."""
    d2 = None
    for i in range(4):
        diff = Q[:, i, :] * s
        diff -= x[i]
        t = diff * w[i]
        t *= diff
        if d2 is None:
            d2 = t
        else:
            d2 += t
    return d2


FLT_MAX_BITS = int(FLT_MAX.view(U32))


def _first_min(d2):
    """``best = FLT_MAX; j = -1; for p: if (d2[p] < best) {best = d2[p]; j = p;}`` over axis 0
    -> (j (n,) int32, best (n,) float32).

    d2 >= +0 or NaN here (w >= 0), and + 0.0 turns a -0 into +0, so the uint32 bits order the
    values as floats do, with every NaN above +inf. The min of (bits << 6 | p) is the smallest
    value at its smallest p: the first strict minimum. Taken only when below FLT_MAX, as in C."""
    k = np.add(d2, F32(0.0)).view(U32).astype(np.int64)
    k <<= 6
    k |= np.arange(d2.shape[0], dtype=np.int64)[:, None]
    m = k.min(axis=0)
    bits = (m >> 6).astype(U32)
    j = (m & 63).astype(I32)
    j[bits >= FLT_MAX_BITS] = -1
    return j, bits.view(F32)


def _no_neighbour(name):
    return GGSpecError(f"{name}: no finite neighbour distance (ggml aborts here)")


def _by_bucket(bucket_of_code, codes, nb):
    """(order, bounds): the runs sorted by bucket (stable), bucket bi is order[bounds[bi]:bounds[bi+1]]."""
    bk = bucket_of_code[codes]
    order = np.argsort(bk, kind="stable")
    bounds = np.searchsorted(bk[order], np.arange(nb + 1))
    return order, bounds


def _best_neighbours(name, codes, x, w, s):
    """iq3_find_best_neighbour for n groups at once -> grid index (n,) int32.

    codes (n,) off-grid codes; x, w (4, n) xval and waux of each group; s (n,) the scale."""
    _, _, bucket, buckets = _tables(name)[:4]
    out = np.empty(codes.size, I32)
    order, bounds = _by_bucket(bucket, codes, len(buckets))
    codes = codes[order]
    x = np.take(x, order, axis=1)
    w = np.take(w, order, axis=1)
    s = s[order]
    res = np.empty(codes.size, I32)
    for bi, (P, QB, CB) in enumerate(buckets):
        lo, hi = bounds[bi], bounds[bi + 1]
        if lo == hi:
            continue
        c = codes[lo:hi]
        j, _ = _first_min(_distances(np.take(QB, c, axis=2), x[:, lo:hi], w[:, lo:hi], s[lo:hi]))
        if (j < 0).any():
            raise _no_neighbour(name)
        res[lo:hi] = CB[j, c]
    out[order] = res
    return out


def _runs_best_neighbours(name, codes, x, w, s_hi, s_lo, interior, safe):
    """The best neighbours of runs of trials that share a group and an off-grid code.

    A run's trials have scales in [s_lo, s_hi] (this_scale falls as ``is`` grows). ggml's d2 is
    evaluated exactly at both ends: candidate slot ``jh`` wins at s_hi, ``jl`` at s_lo. Returns
    (jh, jl, ok, ends) (slots in the code's list; ``safe``: the group's values are in the range
    below; ends (4, n): d2 of the s_hi winner and of the s_lo winner at s_hi, then at s_lo; cx (n,)
    Cx of the tested runs) with ok telling that at every scale in between, every
    other candidate has a strictly larger d2 than the better of those two, so that ggml's choice
    there is one of them (the one with the smaller d2, the earlier slot on a tie).

    Why ok is a proof (real arithmetic D(s) = sum w (s q - x)^2 for a candidate's q; u = 2^-24):
    - ggml's float32 d2 (s*q rounded, minus x rounded, two products rounded, three additions of
      non-negative terms rounded) is within K <= 7.01u D + 2.01u sqrt(SA D) + 2.01u^2 (SA + D) of
      D, SA = sum w (s q)^2 <= 2 (Cx + D), Cx = sum w x^2; hence D <= 1.143 d2 + 23.1u^2 Cx and
      K <= Kb(d2) = 12u d2 + 3.1u sqrt(Cx d2) + 18u^2 Cx (+1e-37 for what underflow can lose in the
      value ranges the test is restricted to: w = 0 or 1e-12 <= w <= 1e8, |x| <= 1e8,
      1e-12 <= s <= 1e8, where nothing overflows; ``safe`` and the scales). D is convex in s, so
      over the run K stays below Kb of the larger of the two end values, Fm.
    - For a candidate c and X in {a, b} (the winners at s_hi and at s_lo):
      D_c(s) - D_X(s) = s g(s) with g linear (the x^2 terms cancel). With M = Kb_c(Fm_c) +
      Kb_X(Fm_X), g is at least the linear interpolation of (d2_c - d2_X - M)/s between the two
      ends, so d2_c(s) > d2_X(s) wherever mu_X(tau) > 0, mu_X the linear interpolation (tau = 0 at
      s_lo, 1 at s_hi) of mu_X0 = d2_c - d2_X - 2M at s_lo and mu_X1 = (d2_c - d2_X - M) s_lo/s_hi - M
      at s_hi. ok asks, for every other c, that max(mu_a, mu_b) > 0 on all of [0, 1] (see
      _envelope_quick for the float32 form of the test).
    """
    _, _, bucket, buckets = _tables(name)[:4]
    n = codes.size
    nb = len(buckets)
    # kind: 0 = has interior trials and is in the proof's range (tested), 1 = both ends only,
    # 2 = a single trial (one evaluation)
    kind = np.where(s_hi == s_lo, 2, 1).astype(np.int8)
    kind[interior & safe & (s_lo >= F32(1e-12)) & (s_hi <= F32(1e8))] = 0
    kind[interior & (s_hi == s_lo)] = 1
    key = bucket[codes].astype(np.int16) * 3 + kind
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(3 * nb + 1))
    codes = codes[order]
    x = np.take(x, order, axis=1)
    w = np.take(w, order, axis=1)
    s_hi = s_hi[order]
    s_lo = s_lo[order]
    jh_s = np.empty(n, I32)
    jl_s = np.empty(n, I32)
    ok_s = np.zeros(n, bool)
    ends_s = np.empty((4, n), F32)                    # d2 of (a at s_hi, b at s_hi, a at s_lo, b at s_lo)
    cx_s = np.zeros(n, F32)
    for bi, (P, QB, CB) in enumerate(buckets):
        b0, b1, b2, b3 = bounds[3 * bi:3 * bi + 4]
        if b0 == b3:
            continue
        c = codes[b0:b3]
        Q = np.take(QB, c, axis=2)
        xr = x[:, b0:b3]
        wr = w[:, b0:b3]
        Fh = _distances(Q, xr, wr, s_hi[b0:b3])
        jh, bh = _first_min(Fh)
        if (jh < 0).any():
            raise _no_neighbour(name)
        jh_s[b0:b3] = jh
        ends_s[0, b0:b3] = bh
        ends_s[1:, b2:b3] = bh[b2 - b0:]              # single trials: s_lo == s_hi
        jl_s[b2:b3] = jh[b2 - b0:]
        if b2 == b0:
            continue
        m = b2 - b0
        Fh = Fh[:, :m]
        jh = jh[:m]
        Fl = _distances(Q[:, :, :m], xr[:, :m], wr[:, :m], s_lo[b0:b2])
        jl, bl = _first_min(Fl)
        if (jl < 0).any():
            raise _no_neighbour(name)
        jl_s[b0:b2] = jl
        cols = np.arange(m)
        ends_s[1, b0:b2] = np.take(Fh.reshape(-1), jl * m + cols)
        ends_s[2, b0:b2] = np.take(Fl.reshape(-1), jh * m + cols)
        ends_s[3, b0:b2] = bl
        if b1 == b0:
            continue
        k = b1 - b0
        cx = seq_sum((wr[:, :k] * xr[:, :k]) * xr[:, :k], axis=0)
        cx_s[b0:b1] = cx
        ok_s[b0:b1] = _envelope_quick(Fh[:, :k], Fl[:, :k], cx, s_lo[b0:b1] / s_hi[b0:b1],
                                      ends_s[:, b0:b1], jh[:k], jl[:k])
    jh_out = np.empty(n, I32)
    jl_out = np.empty(n, I32)
    ok = np.empty(n, bool)
    jh_out[order] = jh_s
    jl_out[order] = jl_s
    ok[order] = ok_s
    ends = np.empty((4, n), F32)
    for i in range(4):
        ends[i, order] = ends_s[i]
    cx = np.empty(n, F32)
    cx[order] = cx_s
    return jh_out, jl_out, ok, ends, cx


def _envelope_quick(Fh, Fl, cx, rat, ends, ja, jb):
    """The test of _runs_best_neighbours for n runs (float32): d2 at s_hi / s_lo (P, n), Cx (n,),
    r = s_lo/s_hi, ends (4, n) (d2 of a and b at s_hi, then at s_lo), ja / jb the winning slots.

    With M = Kb_c(Fm_c) + Kb_X(Fm_X) <= 13.6u (Fm_c + Fm_X) + 3.12u Cx + 2e-37 (sqrt(Cx F) <=
    (Cx + F)/2), the lower bounds of _runs_best_neighbours' mu at the two ends are, per slot,
        mu_X0 >= d2_c(s_lo) - k Fm_c - (d2_X(s_lo) + k Fm_X + C)
        mu_X1 >= d2_c(s_hi) r - k Fm_c - (d2_X(s_hi) r + k Fm_X + C)
    with k = 36u and C = 6.31u Cx + 8e-37: 2 * 1.01 * (13.6u, 3.12u, 2e-37) plus 8u Fm and 4e-37,
    which cover the float32 rounding of these expressions (and of Cx and r) and underflow. A slot
    passes when both are > 0 for X = a or for X = b, or (crossing) when b's are good on [0, t_b]
    and a's on [t_a, 1] with t_a < t_b (or the mirror), t the zeros of the linear interpolations,
    compared in float64 with 1e-9 to spare. Returns ok (n,)."""
    P, n = Fh.shape
    cols = np.arange(n)
    FaH, FbH, FaL, FbL = ends
    k = F32(36 * U)
    C = F32(6.31 * U) * cx + F32(8e-37)
    Fm = np.maximum(Fh, Fl)
    Fmf = Fm.reshape(-1)
    FmA = np.take(Fmf, ja * n + cols)
    FmB = np.take(Fmf, jb * n + cols)
    Fm *= k
    v0 = Fl - Fm
    v1 = Fh * rat
    v1 -= Fm
    th = []
    for FXh, FXl, FmX in ((FaH, FaL, FmA), (FbH, FbL, FmB)):
        base = k * FmX + C
        th.append((FXl + base, FXh * rat + base))
    (ta0, ta1), (tb0, tb1) = th
    good = v0 > ta0
    good &= v1 > ta1
    g = v0 > tb0
    g &= v1 > tb1
    good |= g
    good |= np.isnan(v0)                                 # padding
    gf = good.reshape(-1)
    gf[ja * n + cols] = True
    gf[jb * n + cols] = True
    ok = good.all(axis=0)
    bad = np.flatnonzero(~gf)
    if bad.size:
        f64 = np.float64
        col = bad % n
        w0 = np.take(v0.reshape(-1), bad).astype(f64)
        w1 = np.take(v1.reshape(-1), bad).astype(f64)
        a0, a1 = w0 - ta0[col], w1 - ta1[col]
        b0, b1 = w0 - tb0[col], w1 - tb1[col]
        with np.errstate(all="ignore"):
            za = a0 / (a0 - a1)                          # zero of mu_a
            zb = b0 / (b0 - b1)                          # zero of mu_b
            cross = (a0 <= 0) & (a1 > 0) & (b0 > 0) & (b1 <= 0) & (zb - za > 1e-9)
            cross |= (a0 > 0) & (a1 <= 0) & (b0 <= 0) & (b1 > 0) & (za - zb > 1e-9)
        ok[col] = True                                   # runs whose failing slots all cross ...
        ok[col[~cross]] = False                          # ... and no other
    return ok


def _d2_one(q, x, w, s):
    """d2 of one candidate per column: q, x, w (4, n), s (n,) -> (n,) (as _distances)."""
    d2 = None
    for i in range(4):
        diff = q[i] * s
        diff -= x[i]
        t = diff * w[i]
        t *= diff
        if d2 is None:
            d2 = t
        else:
            d2 += t
    return d2


def _safe_groups(XV, WA):
    """(8, S) bool: the group's xval and waux are in the range _runs_best_neighbours' proof covers."""
    ok = (WA == 0) | ((WA >= F32(1e-12)) & (WA <= F32(1e8)))
    ok &= np.abs(XV) <= F32(1e8)
    return ok.reshape(8, 4, -1).all(axis=1)


def _trial_neighbours(name, U2, off2, TS, XV, WA):
    """The effective code of every group at every trial (T, 8S): U2 where the code is on the grid
    (or the sub-block is skipped), else the code of ggml's best neighbour at that trial's
    this_scale TS[t] (off2 marks those).

    A run is a stretch of consecutive trials in which a group has the same off-grid code (codes
    only grow with ``is``, so a code never comes back). Each run is searched exactly at its two
    ends; when _runs_best_neighbours proves that only the two end winners can win in between,
    the interior trials only compare those two (most of them decided by _pair_bounds); otherwise
    the run is cut in two at its middle trial and each half is treated the same way (a few times
    at most, then trial by trial)."""
    _, gcode, bucket, buckets, qgrid = _tables(name)[:5]
    T, G8 = U2.shape
    S = G8 // 8
    same = np.zeros((T, G8), bool)
    np.equal(U2[1:], U2[:-1], out=same[1:])
    start = off2 & ~same
    end = off2.copy()
    end[:-1] &= ~same[1:]
    ts, gs = np.divmod(np.flatnonzero(start), G8)
    n = ts.size
    RID = np.full((T, G8), -1, I32)
    RID.reshape(-1)[ts * G8 + gs] = np.arange(n, dtype=I32)
    for t in range(1, T):                           # forward fill: the run each off trial is in
        np.maximum(RID[t], RID[t - 1], out=RID[t])
    te, ge = np.divmod(np.flatnonzero(end), G8)
    tend = np.empty(n, np.int64)
    tend[np.take(RID.reshape(-1), te * G8 + ge)] = te
    s = gs % S
    codes = np.take(U2.reshape(-1), ts * G8 + gs)
    x = np.take(XV.reshape(8, 4, S).transpose(1, 0, 2).reshape(4, G8), gs, axis=1)   # (4, n)
    w = np.take(WA.reshape(8, 4, S).transpose(1, 0, 2).reshape(4, G8), gs, axis=1)
    safe = np.take(_safe_groups(XV, WA).reshape(-1), gs)
    CBf, boff = _tables(name)[6:8]
    base = boff[codes]
    qgT = np.ascontiguousarray(qgrid.T)
    TSf = TS.reshape(-1)

    def interior_trials(f, t0, t1):
        cnt = t1 - t0 - 1
        rr = np.repeat(f, cnt)
        tt = np.arange(rr.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        tt += np.repeat(t0 + 1, cnt)
        return rr, tt, cnt

    UE2 = None
    iv = None                                       # intervals: run (None: all runs), first and last trial
    t0 = ts
    t1 = tend
    for depth in range(4):
        if iv is None:
            c, xi, wi, si, gi_, sf, bi_ = codes, x, w, s, gs, safe, base
        else:
            c, xi, wi, si, gi_, sf, bi_ = (codes[iv], np.take(x, iv, axis=1), np.take(w, iv, axis=1), s[iv], gs[iv],
                                          safe[iv], base[iv])
        jh, jl, ok, ends, cx = _runs_best_neighbours(name, c, xi, wi, TSf[t0 * S + si], TSf[t1 * S + si], t1 - t0 >= 2, sf)
        uh = gcode[np.take(CBf, jh * 4096 + bi_)]    # the winners' codes
        ul = gcode[np.take(CBf, jl * 4096 + bi_)]
        if UE2 is None:                             # every trial of a run: the winner at its start
            UE2 = np.where(off2, np.take(uh, RID), U2)
            UEf = UE2.reshape(-1)
        else:
            UEf[t0 * G8 + gi_] = uh
        UEf[t1 * G8 + gi_] = ul
        inner = t1 - t0 >= 2
        if depth:
            f = np.flatnonzero(inner & ok & (jh == jl))
            if f.size:
                rr, tt, _ = interior_trials(f, t0[f], t1[f])
                UEf[tt * G8 + gi_[rr]] = uh[rr]
        f = np.flatnonzero(inner & ok & (jh != jl))
        if f.size:
            rr, tt, cnt = interior_trials(f, t0[f], t1[f])
            sr = si[rr]
            ts_f = TSf[tt * S + sr]
            a_wins, b_wins = _pair_bounds(ends[:, f], cx[f], TSf[t1[f] * S + si[f]], TSf[t0[f] * S + si[f]], cnt, ts_f)
            gg = tt * G8 + gi_[rr]
            if depth:
                sel = np.flatnonzero(a_wins)
                UEf[gg[sel]] = uh[rr[sel]]
            sel = np.flatnonzero(b_wins)
            UEf[gg[sel]] = ul[rr[sel]]
            u = np.flatnonzero(~(a_wins | b_wins))
            if u.size:
                ru = rr[u]
                ga = np.take(CBf, jh[ru] * 4096 + bi_[ru])
                gb = np.take(CBf, jl[ru] * 4096 + bi_[ru])
                a = _pair_winner(np.take(qgT, ga, axis=1), np.take(qgT, gb, axis=1), jh[ru], jl[ru],
                                 np.take(xi, ru, axis=1), np.take(wi, ru, axis=1), ts_f[u])
                UEf[gg[u]] = np.where(a, uh[ru], ul[ru])
        bad = inner & ~ok
        if not bad.any():
            break
        f = np.flatnonzero(bad)
        split = sf[f] & (depth < 3)
        rest = f[~split]
        if rest.size:                               # trial by trial
            rr, tt, _ = interior_trials(rest, t0[rest], t1[rest])
            UEf[tt * G8 + gi_[rr]] = gcode[_best_neighbours(name, c[rr], np.take(xi, rr, axis=1),
                                                            np.take(wi, rr, axis=1), TSf[tt * S + si[rr]])]
        f = f[split]
        if not f.size:
            break
        mid = (t0[f] + t1[f]) // 2
        run = f if iv is None else iv[f]
        iv = np.concatenate([run, run])
        t0, t1 = np.concatenate([t0[f], mid]), np.concatenate([mid, t1[f]])
    return UE2


def _pair_bounds(ends, cx, s_lo, s_hi, cnt, s):
    """Which interior trials of pair runs provably go to a (the s_hi winner) or to b (the s_lo
    winner), without evaluating d2 there. h(s) = D_a(s) - D_b(s) = s g(s) with g linear; at the two
    ends h is within M = Kb(a) + Kb(b) of the float32 difference e (see _runs_best_neighbours), so g
    lies within the interpolation of M/s of the interpolation gc of e/s, and d2_a - d2_b lies within
    s gc(s) +- (s M/s_lo + M) <= s gc(s) +- H, H = (1 + s_hi/s_lo) M. Below -H: a has the strictly
    smaller d2; above H: b. Evaluated in float32 with M taken 4 times: with s_hi/s_lo <= 1.5 (the
    whole range of trial scales) the rounding here stays below 45u (Fm_a + Fm_b), less than the
    3 extra M's times 1 + s_hi/s_lo. ends (4, n) float32 as _runs_best_neighbours returns them, cx
    (n,), the run's end scales, cnt (n,) interior trials per run, s (sum cnt,) each trial's scale
    -> (a_wins, b_wins)."""
    FaH, FbH, FaL, FbL = ends
    Fm = np.maximum(FaH, FaL) + np.maximum(FbH, FbL)
    M = F32(4 * 1.01 * 13.6 * U) * Fm + (F32(4 * 1.01 * 3.12 * U) * cx + F32(1e-36))
    with np.errstate(all="ignore"):
        c0 = (FaL - FbL) / s_lo
        dc = (FaH - FbH) / s_hi - c0
        inv = F32(1.0) / (s_hi - s_lo)
        H = (F32(1.0) + s_hi / s_lo) * M
        v = s - np.repeat(s_lo, cnt)
        v *= np.repeat(inv, cnt)                                       # tau
        v *= np.repeat(dc, cnt)
        v += np.repeat(c0, cnt)
        v *= s
        Hr = np.repeat(H, cnt)
        a = v < -Hr
        b = v > Hr
    return a, b


def _pair_winner(qa, qb, ja, jb, x, w, s):
    """ggml's choice between two candidates (all others known to lose): grid-point q (4, n) each,
    list slots ja, jb, the group's x, w (4, n), the scale s (n,) -> True where a is chosen."""
    Fa = _d2_one(qa, x, w, s)
    Fb = _d2_one(qb, x, w, s)
    return (Fa < Fb) | ((Fa == Fb) & (ja < jb))


def _levels(idv, XV):
    """l = MAX(0, MIN(7, nearest_int(0.5f*(id*xval - 1)))) -> int32 (32, S)."""
    t = np.multiply(XV, idv, dtype=F32)
    t -= F32(1.0)
    t += MAGIC2
    li = t.view(I32)
    li &= 0x007FFFFF
    li -= 0x00400000
    np.clip(li, 0, 7, out=li)
    return li


def _codes(li, out=None):
    """u = l0 | l1 << 3 | l2 << 6 | l3 << 9 per group -> int32 (8, S)."""
    L3 = li.reshape(8, 4, -1)
    u = np.left_shift(L3[:, 3], 9, out=out)
    u |= L3[:, 2] << 6
    u |= L3[:, 1] << 3
    u |= L3[:, 0]
    return u


def _q_of_codes(ue, q):
    """q = 2l+1 (32, S) float32 from the codes (8, S) of every group."""
    q3 = q.reshape(8, 4, -1)
    for i in range(4):
        l = ue >> (3 * i) if i else ue.copy()
        l &= 7
        l <<= 1
        l += 1
        q3[:, i, :] = l


def _sums(WXV, W, q):
    sumqx = seq_sum(WXV * q, axis=0)
    t = W * q
    t *= q
    return sumqx, seq_sum(t, axis=0)


def _trials(name, XV, vmax, valid, is_range):
    """The trial scales: this_scale TS (T, S) and the level code of every group U2 (T, 8S) (column
    k*S + s is group k of sub-block s), with on2 (code on the grid) and off2 (off the grid, in a
    sub-block that is searched)."""
    S = XV.shape[1]
    T = 2 * is_range + 1
    TS = np.empty((T, S), F32)
    idv = np.empty(S, F32)
    U2 = np.empty((T, 8 * S), I32)
    for t in range(T):
        np.divide(F32(15.0) + F32(t - is_range) * F32(0.2), vmax, out=idv)     # (2*kMaxQ-1+is*0.2f)/max
        np.divide(F32(1.0), idv, out=TS[t])
        _codes(_levels(idv, XV), out=U2[t].reshape(8, S))
    on2 = _tables(name)[5][U2]
    off2 = ~on2
    off2 &= np.tile(valid, 8)[None, :]
    return TS, U2, on2, off2


def _search(name, XV, W, WA, vmax, valid, is_range, init_on_grid, refine_all):
    """_iq3_search for all sub-blocks -> (scale (S,), gi (8, S) grid index of each group)."""
    kmap, gcode = _tables(name)[:2]
    S = XV.shape[1]
    T = 2 * is_range + 1
    TS, U2, on2, off2 = _trials(name, XV, vmax, valid, is_range)
    # the code of each group's grid point at each trial (skipped sub-blocks: their own codes)
    UE2 = _trial_neighbours(name, U2, off2, TS, XV, WA) if off2.any() else U2

    WXV = W * XV                                   # w*xval[i]*q is (w*xval)*q
    best = np.zeros(S, F32)
    scale = (vmax / F32(15.0)).astype(F32)
    best_t = np.full(S, -1, np.int64)              # the accepted trial (-1: none, L = 0)
    q = np.empty((32, S), F32)
    for t in range(T):
        _q_of_codes(UE2[t].reshape(8, S), q)
        sumqx, sumq2 = _sums(WXV, W, q)
        acc = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        if acc.any():
            sc = sumqx / sumq2
            scale = np.where(acc, sc, scale)
            best = np.where(acc, sc * sumqx, best)
            best_t[acc] = t
    cols = np.arange(S)
    bt = np.maximum(best_t, 0)
    ue_best = np.take(UE2.reshape(-1), (bt * 8)[None, :] * S + np.arange(8)[:, None] * S + cols)
    on_best = np.take(on2.reshape(-1), (bt * 8)[None, :] * S + np.arange(8)[:, None] * S + cols)
    none = best_t < 0
    if none.any():
        ue_best[:, none] = 0                       # L = 0: code 0 (grid index 0 on both grids)
        on_best[:, none] = bool(init_on_grid)
    R = valid & (~on_best).any(axis=0) & (scale > 0)
    if R.any():
        idv = (F32(1.0) / scale).astype(F32)
        u = _codes(_levels(idv, XV))
        gi = kmap[u]
        redo = np.broadcast_to(R, (8, S)) if refine_all else (~on_best & R)
        k, s = np.nonzero(redo & (gi < 0))
        if k.size:
            gi[k, s] = _best_neighbours(name, u[k, s], XV.reshape(8, 4, S)[k, :, s].T,
                                        WA.reshape(8, 4, S)[k, :, s].T, scale[s])
            u[k, s] = gcode[gi[k, s]]
        np.copyto(ue_best, u, where=redo)
        _q_of_codes(ue_best, q)
        sumqx, sumq2 = _sums(WXV, W, q)
        np.copyto(scale, sumqx / sumq2, where=R & (sumq2 > 0))
    return scale, kmap[ue_best]


def _prepare(xb, qwb, parity):
    """Per sub-block arrays from G blocks (G, 256): X, weight, waux, xval (32, S), sign bytes (4, S)."""
    G = xb.shape[0]
    S = 8 * G
    X = np.ascontiguousarray(xb.reshape(S, 32).T)
    if qwb is None:
        W = X * X
    else:
        sumx2 = seq_sum(np.ascontiguousarray((xb * xb).T), axis=0)           # (G,)
        sigma2 = (F32(2.0) * sumx2 / F32(QK_K)).astype(F32)
        QW = np.ascontiguousarray(qwb.reshape(S, 32).T)
        W = QW * np.sqrt(np.repeat(sigma2, 8)[None, :] + X * X)
    WA = np.sqrt(W)
    neg = ~(X >= 0)
    XV = np.where(neg, -X, X).astype(F32)
    neg4 = neg.reshape(4, 8, S)
    signs = np.zeros((4, S), np.int32)
    for i in range(8):
        signs |= neg4[:, i].astype(np.int32) << i
    if parity:
        odd = (neg4.sum(axis=1) & 1).astype(bool)                             # (4, S)
        if odd.any():
            A = ((W * X) * X).reshape(4, 8, S)
            m = A[:, 0].copy()
            imin = np.zeros((4, S), np.int32)
            for i in range(1, 8):
                take = A[:, i] < m
                np.copyto(m, A[:, i], where=take)
                np.copyto(imin, i, where=take)
            k, s = np.nonzero(odd)
            rows = 8 * k + imin[k, s]
            XV[rows, s] = -XV[rows, s]
            signs[k, s] ^= 1 << imin[k, s]
        signs &= 127
    return X, W, WA, XV, signs


def _max_from_first(XV):
    m = XV[0].copy()
    for i in range(1, XV.shape[0]):
        m = np.where(m > XV[i], m, XV[i])
    return m


def _scale_max(scales, valid):
    """max_scale = 0; for (ib) if (valid) max_scale = MAX(max_scale, scale) -> (G,)."""
    m = np.zeros(scales.shape[0], F32)
    for ib in range(8):
        v = scales[:, ib]
        np.copyto(m, np.where(m > v, m, v), where=valid[:, ib])
    return m


def _scale_codes(scales, d, kmax=15):
    """nearest_int(0.5f*(id*scale - 1)) clamped to 0..15 with id = 1/d -> int32 (G, 8)."""
    idv = (F32(1.0) / d).astype(F32)
    l = nearest_int(F32(0.5) * (idv[:, None] * scales - F32(1.0)))
    return np.clip(l, 0, kmax)


def _block_iq3_xxs(xb, qwb):
    G = xb.shape[0]
    name = "IQ3_XXS"
    X, W, WA, XV, signs = _prepare(xb, qwb, parity=True)
    vmax = _max_from_first(XV)
    valid = ~(vmax < EPS_XXS)
    scale, gi = _search(name, XV, W, WA, vmax, valid, 15, init_on_grid=True, refine_all=False)
    flip = scale < 0
    scale = np.where(flip, -scale, scale).astype(F32)
    signs = np.where(flip[None, :], ~signs & 127, signs)
    sas = signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)                 # (S,)
    sas = np.where(valid, sas, 0).reshape(G, 8).astype(np.int64)
    scales = np.where(valid, scale, F32(0.0)).reshape(G, 8)
    vg = valid.reshape(G, 8)
    max_scale = _scale_max(scales, vg)
    d = (max_scale / F32(31.0)).astype(F32)
    sas |= _scale_codes(scales, d).astype(np.int64) << 28
    q3 = np.where(valid[None, :], gi, 0).T.reshape(G, 64)
    ob = np.zeros((G, 98), U8)
    ob[:, 0:2] = f16_bytes(d * F32(1.0125))
    ob[:, 2:66] = q3
    ob[:, 66:98] = (sas & 0xFFFFFFFF).astype("<u4").view(U8).reshape(G, 32)
    ob[max_scale == 0] = 0                      # if (!max_scale): d = 0 and everything zero
    return ob


def _block_iq3_s(xb, qwb):
    G = xb.shape[0]
    name = "IQ3_S"
    X, W, WA, XV, signs = _prepare(xb, qwb, parity=False)
    vmax = _max_from_first(XV)
    valid = vmax != 0
    scale, gi = _search(name, XV, W, WA, vmax, valid, 9, init_on_grid=False, refine_all=True)
    flip = scale < 0
    scale = np.where(flip, -scale, scale).astype(F32)
    signs = np.where(flip[None, :], ~signs & 0xFF, signs)
    scales = np.where(valid, scale, F32(0.0)).reshape(G, 8)
    vg = valid.reshape(G, 8)
    max_scale = _scale_max(scales, vg)
    d = (max_scale / F32(31.0)).astype(F32)
    nib = _scale_codes(scales, d)
    ob = np.zeros((G, 110), U8)
    ob[:, 0:2] = f16_bytes(d * F32(1.033))
    ob[max_scale == 0, 0:2] = 0
    gT = gi.T.reshape(G, 8, 8)                                                # (G, ib, k)
    qh = ((gT >> 8) << np.arange(8)).sum(axis=2) & 0xFF                       # (G, ib)
    ob[:, 66:74] = np.where(vg, qh, 0)
    sg = signs.T.reshape(G, 8, 4)
    if vg.all():
        ob[:, 2:66] = (gT & 0xFF).reshape(G, 64)
        ob[:, 74:106] = sg.reshape(G, 32)
    else:
        # ggml advances qs / signs only after a sub-block that was not all zero
        rank = np.cumsum(vg, axis=1) - 1
        g, ib = np.nonzero(vg)
        r = rank[g, ib]
        ob[g[:, None], 2 + 8 * r[:, None] + np.arange(8)] = gT[g, ib] & 0xFF
        ob[g[:, None], 74 + 4 * r[:, None] + np.arange(4)] = sg[g, ib]
    sc = (nib[:, 0::2] | (nib[:, 1::2] << 4))
    ob[:, 106:110] = np.where((max_scale == 0)[:, None], 0, sc)
    return ob


def _runner(block_fn, type_size):
    def q(t, x, imatrix, out, threads):
        rows, n_per_row = x.shape
        xb = x.reshape(-1, QK_K)
        ob = out.reshape(-1, type_size)
        nbpr = n_per_row // QK_K
        imb = None if imatrix is None else np.asarray(imatrix, F32).reshape(nbpr, QK_K)

        def work(lo, hi):
            qwb = None if imb is None else imb[np.arange(lo, hi) % nbpr]
            ob[lo:hi] = block_fn(xb[lo:hi], qwb)

        run_chunks(xb.shape[0], CHUNK_BLOCKS, work, threads)
    return q


QUANT: dict = {
    "IQ3_XXS": _runner(_block_iq3_xxs, 98),
    "IQ3_S": _runner(_block_iq3_s, 110),
}
