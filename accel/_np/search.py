"""ggml's scale searches (``make_qx_quants`` & co. in ggml-quants.c) for many groups at once.

Layout: a group is what the C function receives (``n`` floats: one sub-block); ``G`` groups are
processed together as "structure of arrays": ``X`` has shape (n, G), so ``X[i]`` is element i of
every group and each C statement over one element becomes one numpy op over a G-vector. Per-group
scalars (``sumlx``, ``scale``, ...) are (G,) vectors.

Exactness: element-wise statements are element-wise ops in the C order of operations (``w*x[i]*l``
is ``(w*x)*l``); every sum is accumulated in C's order, position by position (``seq_sum``); every
``if`` becomes a mask (strict comparisons, so NaN never wins, as in C); a group's trial is accepted
exactly when the C would accept it. The refinement passes of ``make_q3_quants``/``make_qp_quants``
run element by element in the C order, for all groups at once; a group whose pass changed nothing
would change nothing in a further pass either, so running extra passes for it is harmless.
"""

from __future__ import annotations

import numpy as np

from .common import F32, I32, MAGIC, nearest_int, seq_sum

GROUP_MAX_EPS = F32(1e-15)
SAFE = F32(2.0**21)          # below 2**22, v + MAGIC - MAGIC is nearest_int(v), as a float


def round_clip_f(v, lo: int, hi: int):
    """``MAX(lo, MIN(hi, nearest_int(v)))`` as float32, in place, for |v| < 2**22 (the caller
    checks): v + 1.5*2**23 lands in [2**23, 2**24) where the float32 spacing is 1, so the add rounds
    v to the nearest integer (ties to even, as nearest_int's bit trick) and the subtraction is exact."""
    v += MAGIC
    v -= MAGIC
    np.clip(v, F32(lo), F32(hi), out=v)
    return v


def _div(a, b):
    with np.errstate(all="ignore"):
        return np.divide(a, b, dtype=F32)


def first_absmax_T(X):
    """``amax = 0, max = 0; if (fabsf(x[i]) > amax) {amax = fabsf(x[i]); max = x[i];}`` -> (amax, max)."""
    A = np.abs(X)
    amax = np.zeros(X.shape[1], F32)
    mx = np.zeros(X.shape[1], F32)
    for i in range(X.shape[0]):
        take = A[i] > amax
        np.copyto(amax, A[i], where=take)
        np.copyto(mx, X[i], where=take)
    return amax, mx


def minmax_from_first_T(X):
    """``min = max = x[0]; for i >= 1: if (x[i] < min) min = x[i]; if (x[i] > max) max = x[i];``"""
    mn = X[0].copy()
    mx = X[0].copy()
    for i in range(1, X.shape[0]):
        np.copyto(mn, X[i], where=X[i] < mn)
        np.copyto(mx, X[i], where=X[i] > mx)
    return mn, mx


# --------------------------------------------------------------------------------------------------

def make_qx_quants(X, nmax: int, rmse_type: int, QW=None):
    """make_qx_quants for every group: (scale (G,), L (n, G) int8 holding l + nmax)."""
    n, G = X.shape
    amax, mx = first_absmax_T(X)
    zero = amax < GROUP_MAX_EPS
    iscale = _div(F32(-nmax), mx)                         # -nmax / max

    # The float path of the rounding (round_clip_f) is exact while |isc*x| < 2**21: true of every
    # group with amax >= GROUP_MAX_EPS when all x are finite (|isc*x| <= nmax + 1 there); the other
    # groups' results are replaced by zeros at the end, whatever they are.
    fast = bool(np.isfinite(X).all())

    def levels(isc):
        """(n, G) float32 levels l (without the offset nmax)."""
        with np.errstate(all="ignore"):
            v = isc[None, :] * X
            if fast:
                return round_clip_f(v, -nmax, nmax - 1)
            l = nearest_int(v)
        np.clip(l, -nmax, nmax - 1, out=l)
        return l.astype(F32)

    def offset_i8(lf):
        with np.errstate(all="ignore"):
            return (lf + F32(nmax)).astype(np.int8)

    l = levels(iscale)
    if rmse_type == 0:
        L = offset_i8(l)
        L[:, zero] = 0
        return np.where(zero, F32(0.0), _div(F32(1.0), iscale)), L
    return_early = rmse_type < 0
    rmse_type = abs(rmse_type)
    with np.errstate(all="ignore"):
        if QW is not None:
            W = QW
        elif rmse_type == 1:
            W = X * X
        elif rmse_type == 2:
            W = np.ones_like(X)
        elif rmse_type == 3:
            W = np.abs(X)
        else:
            W = np.sqrt(np.abs(X))
        WX = W * X                                        # w*x[i]*l is (w*x[i])*l

    def sums(lf):
        with np.errstate(all="ignore"):
            sumlx = seq_sum(WX * lf, axis=0)
            suml2 = seq_sum((W * lf) * lf, axis=0)
        return sumlx, suml2

    Lf = l                                                # the best levels so far (float32)
    sumlx, suml2 = sums(l)
    with np.errstate(all="ignore"):
        scale = np.where(suml2 != 0, _div(sumlx, suml2), F32(0.0)).astype(F32)
        if return_early:
            inv = _div(F32(1.0), iscale)
            res = np.where(suml2 > 0, F32(0.5) * (scale + inv), inv).astype(F32)
            L = offset_i8(Lf)
            L[:, zero] = 0
            return np.where(zero, F32(0.0), res), L
        best = scale * sumlx
        for is_ in range(-9, 10):
            if is_ == 0:
                continue
            isc = _div(-(F32(nmax) + F32(0.1) * F32(is_)), mx)
            l = levels(isc)
            sumlx, suml2 = sums(l)
            acc = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            if acc.any():
                np.copyto(Lf, l, where=acc[None, :])
                scale = np.where(acc, _div(sumlx, suml2), scale)
                best = np.where(acc, scale * sumlx, best)
    L = offset_i8(Lf)
    L[:, zero] = 0
    return np.where(zero, F32(0.0), scale).astype(F32), L


def make_q3_quants(X, nmax: int, do_rmse: bool):
    """make_q3_quants for every group: (scale (G,), L (n, G) int8 holding l + nmax)."""
    n, G = X.shape
    amax, mx = first_absmax_T(X)
    zero = amax < GROUP_MAX_EPS
    iscale = _div(F32(-nmax), mx)
    with np.errstate(all="ignore"):
        l = nearest_int(iscale[None, :] * X)
    np.clip(l, -nmax, nmax - 1, out=l)
    if not do_rmse:
        L = (l + nmax).astype(np.int8)
        L[:, zero] = 0
        return np.where(zero, F32(0.0), _div(F32(1.0), iscale)), L
    with np.errstate(all="ignore"):
        W = X * X
        WX = W * X
        lf = l.astype(F32)
        sumlx = seq_sum(WX * lf, axis=0)
        suml2 = seq_sum((W * lf) * lf, axis=0)
        L = l                                              # int32 (n, G), levels without the offset
        # A group whose pass changed nothing would change nothing in the next one either (ggml
        # breaks out of its loop): each pass runs on the groups the previous pass changed only.
        act = None                                         # None: all groups
        for _itry in range(5):
            if act is None:
                Wa, WXa, Xa, La, sx, s2 = W, WX, X, L, sumlx, suml2
            else:
                Wa, WXa, Xa = W[:, act], WX[:, act], X[:, act]
                La, sx, s2 = L[:, act], sumlx[act], suml2[act]
            changed = np.zeros(Wa.shape[1], bool)
            for i in range(n):
                w, wx, x = Wa[i], WXa[i], Xa[i]
                Li = La[i].astype(F32)
                slx = sx - wx * Li                         # sumlx - w*x[i]*L[i]
                m = slx > 0
                sl2 = s2 - (w * Li) * Li                   # suml2 - w*L[i]*L[i]
                new_l = nearest_int(_div(x * sl2, slx))   # x[i] * sl2 / slx
                np.clip(new_l, -nmax, nmax - 1, out=new_l)
                m &= new_l != La[i]
                nl = new_l.astype(F32)
                slx2 = slx + wx * nl
                sl22 = sl2 + (w * nl) * nl
                m &= (sl22 > 0) & ((slx2 * slx2) * s2 > (sx * sx) * sl22)
                if m.any():
                    np.copyto(La[i], new_l, where=m)
                    np.copyto(sx, slx2, where=m)
                    np.copyto(s2, sl22, where=m)
                    changed |= m
            if act is not None:                            # write the subset back
                L[:, act], sumlx[act], suml2[act] = La, sx, s2
                act = act[changed]
            else:
                act = np.flatnonzero(changed)
            if act.size == 0:
                break
        scale = np.where(suml2 > F32(0.0), _div(sumlx, suml2), F32(0.0)).astype(F32)
    Lout = (L + nmax).astype(np.int8)
    Lout[:, zero] = 0
    return np.where(zero, F32(0.0), scale), Lout


def _qkx(X, W, nmax, rmin, rdelta, nstep, use_mad, le):
    """Common body of make_qkx2_quants / make_qkx3_quants. Returns (scale, L uint8 (n, G), the_min)."""
    n, G = X.shape
    mn, mx = minmax_from_first_T(X)
    with np.errstate(all="ignore"):
        sum_w = W[0].copy()
        WXf = W * X
        sum_x = WXf[0].copy()
        for i in range(1, n):
            sum_w += W[i]
            sum_x += WXf[i]
        mn = np.where(mn > 0, F32(0.0), mn).astype(F32)
        degenerate = (mx <= mn) if le else (mx == mn)

        ebuf = np.empty_like(X)

        def error(scale, min_v, Lf):
            diff = np.multiply(Lf, scale[None, :], out=ebuf)     # scale*L[i] + min - x[i]
            diff += min_v[None, :]
            diff -= X
            if use_mad:
                np.abs(diff, out=diff)
            else:
                diff *= diff
            diff *= W                                            # err += w*diff
            return seq_sum(diff, axis=0)

        iscale = _div(F32(nmax), mx - mn)
        scale = _div(F32(1.0), iscale)
        L = nearest_int(iscale[None, :] * (X - mn[None, :]))
        np.clip(L, 0, nmax, out=L)
        L = L.astype(F32)                                    # levels as float32 from here on
        best = error(scale, mn, L)
        # the float rounding path is exact while |isc*(x - min)| < 2**21 (checked per step on the
        # per-group bound |isc| * max(max - min, |min_x - min|); non-finite x: the integer path)
        finite = bool(np.isfinite(X).all())
        xmin = X.min(axis=0)
        vbuf, wbuf, tbuf = np.empty_like(X), np.empty_like(X), np.empty_like(X)
        if nstep >= 1:
            rmin, rdelta = F32(rmin), F32(rdelta)
            for is_ in range(nstep + 1):
                isc = _div(rmin + rdelta * F32(is_) + F32(nmax), mx - mn)   # max - (current) min
                v = np.subtract(X, mn[None, :], out=vbuf)              # uses the current min
                v *= isc[None, :]
                bound = np.abs(isc) * np.maximum(np.abs(mx - mn), np.abs(xmin - mn))
                if finite and bool((bound[~degenerate] < SAFE).all()):
                    lf = round_clip_f(v, 0, nmax)                      # in place: lf is vbuf
                else:
                    Laux = nearest_int(v)
                    np.clip(Laux, 0, nmax, out=Laux)
                    lf = Laux.astype(F32)
                wl = np.multiply(W, lf, out=wbuf)
                sum_l = seq_sum(wl, axis=0)
                sum_l2 = seq_sum(np.multiply(wl, lf, out=tbuf), axis=0)
                sum_xl = seq_sum(np.multiply(wl, X, out=tbuf), axis=0)
                D = sum_w * sum_l2 - sum_l * sum_l
                ok = D > 0
                this_scale = _div(sum_w * sum_xl - sum_x * sum_l, D)
                this_min = _div(sum_l2 * sum_x - sum_l * sum_xl, D)
                pos = this_min > 0
                this_min = np.where(pos, F32(0.0), this_min).astype(F32)
                this_scale = np.where(pos, _div(sum_xl, sum_l2), this_scale).astype(F32)
                cur = error(this_scale, this_min, lf)
                acc = ok & (cur < best)
                if acc.any():
                    np.copyto(L, lf, where=acc[None, :])
                    best = np.where(acc, cur, best)
                    scale = np.where(acc, this_scale, scale)
                    mn = np.where(acc, this_min, mn)
    L = L.astype(np.uint8)                                   # integer-valued floats in 0..nmax
    L[:, degenerate] = 0
    scale = np.where(degenerate, F32(0.0), scale).astype(F32)
    return scale, L, (-mn).astype(F32)


def make_qkx2_quants(X, W, nmax, rmin, rdelta, nstep, use_mad):
    return _qkx(X, W, nmax, rmin, rdelta, nstep, use_mad, le=False)


def make_qkx3_quants(X, W, nmax, rmin, rdelta, nstep, use_mad):
    if W is None:
        with np.errstate(all="ignore"):
            W = X * X
    return _qkx(X, W, nmax, rmin, rdelta, nstep, use_mad, le=True)


def make_qp_quants(X, nmax: int, QW):
    """make_qp_quants for every group: (scale (G,), L (n, G) uint8)."""
    n, G = X.shape
    mx = np.zeros(G, F32)
    for i in range(n):
        mx = np.where(mx > X[i], mx, X[i])                # MAX(max, x[i])
    zero = mx < GROUP_MAX_EPS
    with np.errstate(all="ignore"):
        iscale = _div(F32(nmax), mx)
        L0 = nearest_int(iscale[None, :] * X)              # stored in uint8_t: low 8 bits
        L0u = (L0 & 0xFF).astype(F32)
        scale = _div(F32(1.0), iscale)

        def mse(scale_v, lf):
            diff = X - scale_v[None, :] * lf               # x[i] - scale*L[i]
            return seq_sum((QW * diff) * diff, axis=0)     # w*diff*diff

        best = mse(scale, L0u)
        for is_ in range(-4, 5):
            if is_ == 0:
                continue
            isc = _div(F32(0.1) * F32(is_) + F32(nmax), mx)
            sc = _div(F32(1.0), isc)
            l = np.minimum(nearest_int(isc[None, :] * X), nmax)
            m = mse(sc, l.astype(F32))
            acc = m < best
            best = np.where(acc, m, best)
            iscale = np.where(acc, isc, iscale).astype(F32)

        l = np.minimum(nearest_int(iscale[None, :] * X), nmax)
        lf = l.astype(F32)
        QWX = QW * X
        sumlx = seq_sum(QWX * lf, axis=0)                  # the sums use the int l
        suml2 = seq_sum((QW * lf) * lf, axis=0)
        L = (l & 0xFF).astype(I32)                         # uint8_t L[i] = l
        for _itry in range(5):
            changed = np.zeros(G, bool)
            for i in range(n):
                w, wx, x = QW[i], QWX[i], X[i]
                Li = L[i].astype(F32)
                slx = sumlx - wx * Li
                sl2 = suml2 - (w * Li) * Li
                m = (slx > 0) & (sl2 > 0)
                new_l = np.minimum(nearest_int(_div(x * sl2, slx)), nmax)
                m &= new_l != L[i]
                nl = new_l.astype(F32)
                slx2 = slx + wx * nl
                sl22 = sl2 + (w * nl) * nl
                m &= (slx2 * slx2) * suml2 > (sumlx * sumlx) * sl22
                if m.any():
                    np.copyto(L[i], new_l & 0xFF, where=m)
                    np.copyto(sumlx, slx2, where=m)
                    np.copyto(suml2, sl22, where=m)
                    changed |= m
            if not changed.any():
                break
        scale = np.where(suml2 > F32(0.0), _div(sumlx, suml2), F32(0.0)).astype(F32)
    L = L.astype(np.uint8)
    L[:, zero] = 0
    return np.where(zero, F32(0.0), scale), L
