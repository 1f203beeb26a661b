"""ggml's scale searches: the shared helpers that pick a block's scale (and min) and its integer levels.

Every quantizer that does more than "divide by the absolute maximum" calls one of these. They live
in ``ggml-quants.c`` (``static`` functions, not exported); this module is their readable twin,
float32-exact: each step is a float32 operation in ggml's order, every float sum is sequential
left-to-right (see ``seq_sum``), and comparisons keep C's semantics with NaN.

| Python here          | ggml (ggml-quants.c)  | used by (in ggml 0.25.3)                                          |
|----------------------|-----------------------|-------------------------------------------------------------------|
| ``make_qx_quants``   | ``make_qx_quants``    | Q4_0/Q5_0 with imatrix; Q3_K (imatrix and not); Q6_K              |
| ``make_q3_quants``   | ``make_q3_quants``    | ``quantize_row_q3_K_ref``                                         |
| ``make_qkx2_quants`` | ``make_qkx2_quants``  | ``quantize_row_q2_K_ref`` / ``_q4_K_ref`` / ``_q5_K_ref``          |
| ``make_qkx3_quants`` | ``make_qkx3_quants``  | Q4_1/Q5_1 with imatrix; Q2_K/Q4_K/Q5_K with imatrix               |
| ``make_qp_quants``   | ``make_qp_quants``    | Q2_K/Q4_K/Q5_K with imatrix (scales of scales); IQ2_XXS/IQ2_XS   |

``make_qkx1_quants`` also exists in ggml-quants.c, but no ggml quantizer calls it any more (its two
call sites are commented out), so the compiled oracle cannot check it and it is not reproduced here.

The C functions write their levels through an output pointer ``L`` (and ``the_min``); here they are
returned. Argument order follows C so the two can be read side by side:

    make_qx_quants(n, nmax, x, rmse_type, qw)                     -> (scale, L: int8[n])
    make_q3_quants(n, nmax, x, do_rmse)                           -> (scale, L: int8[n])
    make_qkx2_quants(n, nmax, x, weights, rmin, rdelta, nstep, use_mad) -> (scale, L: uint8[n], the_min)
    make_qkx3_quants(n, nmax, x, weights, rmin, rdelta, nstep, use_mad) -> (scale, L: uint8[n], the_min)
    make_qp_quants(n, nmax, x, quant_weights)                     -> (scale, L: uint8[n])

``scale`` and ``the_min`` are ``numpy.float32`` scalars. ``x``, ``weights``/``qw`` are float32
arrays of length ``n`` (``qw``/``weights`` may be None where the C pointer may be NULL).

The module also holds the small C-semantics helpers that the family modules share:
``seq_sum`` (a sequential float32 sum), ``nearest_int_array`` (ggml's ``nearest_int`` on an
array), ``c_int`` (C's float -> int conversion as x86-64 performs it), ``c_roundf`` (``roundf``),
``c_max``/``c_min`` (ggml's ``MAX``/``MIN`` macros), ``to_int8`` (C's conversion of an int to
``int8_t``), and ``blockwise_row_quantizer`` (a row quantizer for types whose ggml quantizer works
block by block and ignores the importance matrix).
"""

from __future__ import annotations

import numpy as np

from .fp import nearest_int

f32 = np.float32

GROUP_MAX_EPS = f32(1e-15)  # #define GROUP_MAX_EPS 1e-15f

__all__ = [
    "make_qx_quants", "make_q3_quants", "make_qkx2_quants", "make_qkx3_quants", "make_qp_quants",
    "seq_sum", "nearest_int_array", "c_int", "c_roundf", "c_max", "c_min", "to_int8", "GROUP_MAX_EPS",
]


# --------------------------------------------------------------------------------------------------
# C semantics

def blockwise_row_quantizer(name: str, qk: int, block_fn):
    """The row quantizer of a type that ggml quantizes block by block, ignoring the importance matrix:
    ``block_fn`` (float32[qk] -> bytes) applied to each block of the row, in order."""
    def quantize_row(row: np.ndarray, imatrix=None) -> bytes:
        """One row, block by block; ggml ignores the importance matrix for this type."""
        row = np.asarray(row, dtype=np.float32)
        with np.errstate(all="ignore"):
            return b"".join(block_fn(row[i:i + qk]) for i in range(0, row.size, qk))
    quantize_row.__name__ = quantize_row.__qualname__ = f"quantize_row_{name}"
    return quantize_row


def seq_sum(values, start=f32(0.0)) -> np.float32:
    """``float s = start; for (i...) s += values[i];`` in float32, strictly left to right.

    ``np.add.accumulate`` computes each prefix from the previous one, so its last element is the
    sequential sum (``np.sum`` would add pairwise and give different bits). ``start`` is the C
    initialiser; note ``0.0f + -0.0f`` is ``+0.0f``, which the explicit start reproduces.
    """
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    return np.add.accumulate(np.concatenate(([f32(start)], v)), dtype=np.float32)[-1]


def nearest_int_array(fval) -> np.ndarray:
    """ggml's ``nearest_int`` element-wise (int64 array): add 1.5*2**23 in float32, keep the low
    mantissa bits. Round half to even for |fval| <= 2**22; NaN gives 0 (ggml asserts |fval| is small)."""
    with np.errstate(invalid="ignore", over="ignore"):
        val = np.asarray(fval, dtype=np.float32) + f32(12582912.0)
    i = val.view(np.int32).astype(np.int64)
    return (i & 0x007FFFFF) - 0x00400000


_I32_MIN = -(2**31)


def c_int(v) -> np.ndarray:
    """C's ``(int)v`` for float32 ``v`` as x86-64 does it (``cvttss2si``): truncate toward zero;
    NaN and values outside the int32 range give INT32_MIN. Returns int64 (array or 0-d array)."""
    v = np.asarray(v, dtype=np.float32)
    ok = (v >= f32(-2147483648.0)) & (v < f32(2147483648.0))  # False for NaN
    safe = np.where(ok, v, f32(0.0))
    return np.where(ok, np.trunc(safe).astype(np.int64), np.int64(_I32_MIN))


def to_int8(i):
    """C's conversion of an int to ``int8_t`` (keep the low 8 bits, two's complement)."""
    return ((np.asarray(i, dtype=np.int64) + 128) & 0xFF) - 128


def c_roundf(v) -> np.ndarray:
    """``roundf``: round half away from zero, float32 in and out (signed zeros, Inf and NaN kept).

    ``v - trunc(v)`` is exact in float32, so comparing the fraction with 0.5 is exact.
    """
    v = np.asarray(v, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        t = np.trunc(v)
        frac_ge_half = np.abs(v - t) >= f32(0.5)
        return np.where(frac_ge_half, t + np.sign(v).astype(np.float32), t).astype(np.float32)


def c_max(a, b):
    """ggml's ``MAX(a, b)``: ``a > b ? a : b`` (so a NaN ``b`` wins, a NaN ``a`` loses)."""
    return a if a > b else b


def c_min(a, b):
    """ggml's ``MIN(a, b)``: ``a < b ? a : b``."""
    return a if a < b else b


def _absmax_with_sign(x):
    """``if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }`` from amax = max = 0:
    the first element of greatest magnitude, with its sign (NaN never taken)."""
    amax = f32(0.0)
    max_ = f32(0.0)
    for v in x:
        ax = abs(v)
        if ax > amax:
            amax = ax
            max_ = v
    return amax, max_


def _minmax_from_first(x):
    """``min = max = x[0]; for i >= 1: if (x[i] < min) min = x[i]; if (x[i] > max) max = x[i];``
    (on ties the earlier element stays, which decides the sign of a zero)."""
    min_ = x[0]
    max_ = x[0]
    for v in x[1:]:
        if v < min_:
            min_ = v
        if v > max_:
            max_ = v
    return min_, max_


# --------------------------------------------------------------------------------------------------
# make_qx_quants

def _rmse_weights(x, rmse_type, qw):
    """The weight of each element in make_qx_quants: ``qw[i]`` when given, else by rmse_type
    1: x*x, 2: 1, 3: |x|, other: sqrt(|x|)."""
    if qw is not None:
        return np.asarray(qw, dtype=np.float32)
    if rmse_type == 1:
        return x * x
    if rmse_type == 2:
        return np.ones_like(x)
    if rmse_type == 3:
        return np.abs(x)
    return np.sqrt(np.abs(x))


def make_qx_quants(n, nmax, x, rmse_type, qw=None):
    """Symmetric levels ``L[i] - nmax`` in [-nmax, nmax-1] and the scale that best fits them.

    ggml: ``static float make_qx_quants(int n, int nmax, const float * x, int8_t * L, int rmse_type,
    const float * qw)``. Returns ``(scale, L)``, ``L`` int8 holding ``l + nmax``.

    Algorithm:
      1. ``max`` = the first element of largest magnitude (with its sign). If ``|max| < 1e-15``
         every level is 0 (i.e. l = -nmax) and the scale is 0.
      2. ``iscale = -nmax / max`` (the sign makes the extreme element land on ``-nmax``);
         ``l = clamp(nearest_int(iscale*x), -nmax, nmax-1)``.
      3. ``rmse_type == 0``: return ``1/iscale`` with those levels.
      4. Otherwise weights ``w`` (``qw`` if given, else x², 1, |x| or sqrt|x| for rmse_type
         1, 2, 3, 4) and the least-squares scale for the levels:
         ``sumlx = Σ w·x·l``, ``suml2 = Σ w·l²``, ``scale = sumlx/suml2``. A negative rmse_type
         stops here and returns ``(scale + 1/iscale)/2``.
      5. Try 18 more inverse scales ``-(nmax + 0.1·is)/max`` for is = -9..9 (is ≠ 0); keep the
         levels of a trial when it increases ``sumlx²/suml2`` (tested as
         ``sumlx*sumlx > best*suml2`` with ``best = scale*sumlx``).
    """
    x = np.asarray(x, dtype=np.float32)
    assert x.shape == (n,)
    amax, max_ = _absmax_with_sign(x)
    if amax < GROUP_MAX_EPS:  # all zero
        return f32(0.0), np.zeros(n, dtype=np.int8)

    def levels(iscale):
        # l = MAX(-nmax, MIN(nmax-1, nearest_int(iscale * x[i])))  -- element-wise, exact
        return np.clip(nearest_int_array(iscale * x), -nmax, nmax - 1)

    iscale = f32(-nmax) / max_  # -nmax is an int negation, then converted to float
    if rmse_type == 0:
        return f32(1.0) / iscale, (levels(iscale) + nmax).astype(np.int8)
    return_early = False
    if rmse_type < 0:
        rmse_type = -rmse_type
        return_early = True

    w = _rmse_weights(x, rmse_type, qw)
    wx = w * x  # C: w*x[i]*l is (w*x[i])*l

    def sums(l):
        lf = l.astype(np.float32)
        sumlx = seq_sum(wx * lf)        # sumlx += w*x[i]*l
        suml2 = seq_sum((w * lf) * lf)  # suml2 += w*l*l
        return sumlx, suml2

    l = levels(iscale)
    L = (l + nmax).astype(np.int8)
    sumlx, suml2 = sums(l)
    scale = sumlx / suml2 if suml2 != 0 else f32(0.0)  # C: suml2 ? sumlx/suml2 : 0.0f
    if return_early:
        return (f32(0.5) * (scale + f32(1.0) / iscale) if suml2 > 0 else f32(1.0) / iscale), L
    best = scale * sumlx
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        iscale = -(f32(nmax) + f32(0.1) * f32(is_)) / max_  # 0.1f*is in float, then + nmax
        l = levels(iscale)
        sumlx, suml2 = sums(l)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            L = (l + nmax).astype(np.int8)
            scale = sumlx / suml2
            best = scale * sumlx
    return scale, L


# --------------------------------------------------------------------------------------------------
# make_q3_quants

def make_q3_quants(n, nmax, x, do_rmse):
    """Symmetric levels in [-nmax, nmax-1] refined one element at a time (Q3_K's reference).

    ggml: ``static float make_q3_quants(int n, int nmax, const float * x, int8_t * L, bool do_rmse)``.
    Returns ``(scale, L)``, ``L`` int8 holding ``l + nmax``.

    Algorithm: ``max`` = first element of largest magnitude (all-zero groups, ``|max| < 1e-15``,
    give levels 0 and scale 0); ``iscale = -nmax/max``; ``l = clamp(nearest_int(iscale*x))``.
    Without ``do_rmse`` return ``1/iscale``. With it, weights ``w = x²``, running sums
    ``sumlx = Σ w·x·l``, ``suml2 = Σ w·l²``, then up to 5 passes over the elements: for element
    i remove its terms (``slx``, ``sl2``), propose ``new_l = clamp(nearest_int(x·sl2/slx))`` (only
    when ``slx > 0``), and accept it when ``slx'²·suml2 > sumlx²·sl2'`` (the error decreases).
    A pass without change stops. The scale is ``sumlx/suml2`` (0 if ``suml2 <= 0``).
    The sums change as elements are accepted, so this loop is inherently sequential.
    """
    x = np.asarray(x, dtype=np.float32)
    assert x.shape == (n,)
    amax, max_ = _absmax_with_sign(x)
    if amax < GROUP_MAX_EPS:
        return f32(0.0), np.zeros(n, dtype=np.int8)
    iscale = f32(-nmax) / max_
    l0 = np.clip(nearest_int_array(iscale * x), -nmax, nmax - 1)
    if not do_rmse:
        return f32(1.0) / iscale, (l0 + nmax).astype(np.int8)

    L = [int(v) for v in l0]
    xs = [f32(v) for v in x]
    sumlx = f32(0.0)
    suml2 = f32(0.0)
    for i in range(n):
        w = xs[i] * xs[i]
        lf = f32(L[i])
        sumlx = sumlx + (w * xs[i]) * lf  # w*x[i]*l
        suml2 = suml2 + (w * lf) * lf     # w*l*l
    for _itry in range(5):
        n_changed = 0
        for i in range(n):
            w = xs[i] * xs[i]
            Li = f32(L[i])
            slx = sumlx - (w * xs[i]) * Li
            if slx > 0:
                sl2 = suml2 - (w * Li) * Li
                new_l = nearest_int((xs[i] * sl2) / slx)  # x[i] * sl2 / slx, left to right
                new_l = max(-nmax, min(nmax - 1, new_l))
                if new_l != L[i]:
                    nl = f32(new_l)
                    slx = slx + (w * xs[i]) * nl
                    sl2 = sl2 + (w * nl) * nl
                    if sl2 > 0 and (slx * slx) * suml2 > (sumlx * sumlx) * sl2:
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if not n_changed:
            break
    Lout = (np.array(L, dtype=np.int64) + nmax).astype(np.int8)
    return (sumlx / suml2 if suml2 > f32(0.0) else f32(0.0)), Lout


# --------------------------------------------------------------------------------------------------
# make_qkx2_quants / make_qkx3_quants: asymmetric (scale and min) searches

def _qkx_search(n, nmax, x, w, rmin, rdelta, nstep, use_mad, degenerate_if_le):
    """The common body of make_qkx2_quants and make_qkx3_quants (they differ only in the weights'
    default and in ``max == min`` vs ``max <= min``)."""
    min_, max_ = _minmax_from_first(x)
    # sum_w = w[0]; sum_x = sum_w*x[0]; then += w[i] and += w[i]*x[i] for i >= 1
    sum_w = seq_sum(w[1:], start=w[0])
    wx = w * x
    sum_x = seq_sum(wx[1:], start=wx[0])
    if min_ > 0:
        min_ = f32(0.0)
    if (max_ <= min_) if degenerate_if_le else (max_ == min_):
        return f32(0.0), np.zeros(n, dtype=np.uint8), -min_

    def error(scale, min_v, Lf):
        # diff = scale*L[i] + min - x[i]; diff = use_mad ? |diff| : diff*diff; err += w*diff
        diff = (scale * Lf + min_v) - x
        diff = np.abs(diff) if use_mad else diff * diff
        return seq_sum(w * diff)

    iscale = f32(nmax) / (max_ - min_)
    scale = f32(1.0) / iscale
    L = np.clip(nearest_int_array(iscale * (x - min_)), 0, nmax)
    best_error = error(scale, min_, L.astype(np.float32))
    if nstep < 1:
        return scale, L.astype(np.uint8), -min_

    rmin, rdelta = f32(rmin), f32(rdelta)
    for is_ in range(nstep + 1):
        # NB: min changes when a trial is accepted, and later trials use the new min both here
        # and in x - min below (as the C does).
        iscale = (rmin + rdelta * f32(is_) + f32(nmax)) / (max_ - min_)
        Laux = np.clip(nearest_int_array(iscale * (x - min_)), 0, nmax)
        lf = Laux.astype(np.float32)
        wl = w * lf
        sum_l = seq_sum(wl)              # sum_l  += w*l
        sum_l2 = seq_sum(wl * lf)        # sum_l2 += w*l*l
        sum_xl = seq_sum(wl * x)         # sum_xl += w*l*x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min = f32(0.0)
                this_scale = sum_xl / sum_l2
            cur_error = error(this_scale, this_min, lf)
            if cur_error < best_error:
                L = Laux
                best_error = cur_error
                scale = this_scale
                min_ = this_min
    return scale, L.astype(np.uint8), -min_


def make_qkx2_quants(n, nmax, x, weights, rmin, rdelta, nstep, use_mad):
    """Levels in [0, nmax] with a scale and a (non-positive) offset: ``x ≈ scale·L + min``.

    ggml: ``static float make_qkx2_quants(int n, int nmax, const float * x, const float * weights,
    uint8_t * L, float * the_min, uint8_t * Laux, float rmin, float rdelta, int nstep, bool use_mad)``.
    Returns ``(scale, L, the_min)`` with ``the_min = -min`` (so ``x ≈ scale·L - the_min``).

    Algorithm:
      1. ``min``/``max`` of x (``min`` raised to 0 if positive); ``sum_w = Σw``, ``sum_x = Σw·x``.
         If ``max == min``: levels 0, scale 0.
      2. Start: ``iscale = nmax/(max-min)``, ``L = clamp(nearest_int(iscale·(x-min)), 0, nmax)``,
         scale ``1/iscale``; its weighted error Σ w·e with e = |scale·L + min - x| (``use_mad``)
         or its square.
      3. For is = 0..nstep: ``iscale = (rmin + rdelta·is + nmax)/(max-min)``, levels as above,
         then the weighted least-squares fit of ``scale`` and ``min`` to those levels
         (D = Σw·Σwl² - (Σwl)²; if the fitted min is positive, min = 0 and scale = Σwlx/Σwl²).
         Keep the trial if its error is strictly smaller.
    ``weights`` must be given.
    """
    x = np.asarray(x, dtype=np.float32)
    assert x.shape == (n,)
    w = np.asarray(weights, dtype=np.float32)
    return _qkx_search(n, nmax, x, w, rmin, rdelta, nstep, use_mad, degenerate_if_le=False)


def make_qkx3_quants(n, nmax, x, weights, rmin, rdelta, nstep, use_mad):
    """As ``make_qkx2_quants``, with two differences: ``weights`` may be None (then w = x²), and
    the degenerate test is ``max <= min``.

    ggml: ``static float make_qkx3_quants(int n, int nmax, const float * x, const float * weights,
    uint8_t * L, float * the_min, uint8_t * Laux, float rmin, float rdelta, int nstep, bool use_mad)``.
    Returns ``(scale, L, the_min)``. Used with an importance matrix by Q4_1/Q5_1
    (rmin=-0.9, rdelta=0.05, nstep=36, squared error) and by Q2_K/Q4_K/Q5_K.
    """
    x = np.asarray(x, dtype=np.float32)
    assert x.shape == (n,)
    w = x * x if weights is None else np.asarray(weights, dtype=np.float32)
    return _qkx_search(n, nmax, x, w, rmin, rdelta, nstep, use_mad, degenerate_if_le=True)


# --------------------------------------------------------------------------------------------------
# make_qp_quants

def make_qp_quants(n, nmax, x, quant_weights):
    """Levels in [0, nmax] for non-negative ``x`` (a block's sub-scales) with a weighted fit.

    ggml: ``static float make_qp_quants(int n, int nmax, const float * x, uint8_t * L,
    const float * quant_weights)``. Returns ``(scale, L)``.

    Algorithm:
      1. ``max = MAX(max, x[i])`` from 0; if ``max < 1e-15`` levels 0 and scale 0.
      2. ``iscale = nmax/max``, ``L = nearest_int(iscale·x)`` (no clamp; stored as uint8), and its
         weighted squared error with ``scale = 1/iscale``.
      3. For is = -4..4 (≠ 0) try ``iscale_is = (0.1·is + nmax)/max`` with levels
         ``min(nmax, nearest_int(iscale_is·x))``; keep the iscale with the smallest error.
      4. Levels from the chosen iscale, running sums ``sumlx = Σ w·x·l``, ``suml2 = Σ w·l²``; then
         up to 5 passes of the one-element-at-a-time refinement of ``make_q3_quants`` (proposal
         ``min(nmax, nearest_int(x·sl2/slx))`` when ``slx > 0`` and ``sl2 > 0``).
      5. Scale ``sumlx/suml2`` (0 if ``suml2 <= 0``).
    """
    x = np.asarray(x, dtype=np.float32)
    assert x.shape == (n,)
    qw = np.asarray(quant_weights, dtype=np.float32)
    max_ = f32(0.0)
    for v in x:
        max_ = c_max(max_, v)  # max = MAX(max, x[i])
    if max_ < GROUP_MAX_EPS:  # all zero
        return f32(0.0), np.zeros(n, dtype=np.uint8)

    def weighted_mse(scale, l):
        # mse += w*diff*diff with diff = x[i] - scale*l  ((w*diff)*diff)
        diff = x - scale * l.astype(np.float32)
        return seq_sum((qw * diff) * diff)

    iscale = f32(nmax) / max_
    L0 = nearest_int_array(iscale * x) & 0xFF  # L[i] = nearest_int(...) stored in a uint8_t
    scale = f32(1.0) / iscale
    best_mse = weighted_mse(scale, L0)
    for is_ in range(-4, 5):
        if is_ == 0:
            continue
        iscale_is = (f32(0.1) * f32(is_) + f32(nmax)) / max_
        scale_is = f32(1.0) / iscale_is
        l = np.minimum(nmax, nearest_int_array(iscale_is * x))
        mse = weighted_mse(scale_is, l)
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is

    l = np.minimum(nmax, nearest_int_array(iscale * x))
    L = [int(v) & 0xFF for v in l]  # uint8_t L[i] = l
    xs = [f32(v) for v in x]
    ws = [f32(v) for v in qw]
    sumlx = f32(0.0)
    suml2 = f32(0.0)
    for i in range(n):
        lf = f32(int(l[i]))  # the sums use the int l, before the uint8 store
        sumlx = sumlx + (ws[i] * xs[i]) * lf  # w*x[i]*l
        suml2 = suml2 + (ws[i] * lf) * lf     # w*l*l
    for _itry in range(5):
        n_changed = 0
        for i in range(n):
            w = ws[i]
            Li = f32(L[i])
            slx = sumlx - (w * xs[i]) * Li
            sl2 = suml2 - (w * Li) * Li
            if slx > 0 and sl2 > 0:
                new_l = nearest_int((xs[i] * sl2) / slx)
                new_l = min(nmax, new_l)
                if new_l != L[i]:
                    nl = f32(new_l)
                    slx = slx + (w * xs[i]) * nl
                    sl2 = sl2 + (w * nl) * nl
                    if (slx * slx) * suml2 > (sumlx * sumlx) * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if not n_changed:
            break
    return (sumlx / suml2 if suml2 > f32(0.0) else f32(0.0)), np.array(L, dtype=np.uint8)
