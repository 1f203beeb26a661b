"""Search for inputs that tell a mutant apart from ggml: the adversarial-case finder.

    python tests/mutation/search.py --ids q3-four-passes,qp-four-passes --seeds 300

For each mutant and each of its types, rows from the recipes of ``vectors/generate.py`` (``RECIPES``,
with and without an importance matrix where the type takes one) are quantized by the oracle and by
the mutated reference (imported in this process from a throw-away copy, see mutation_harness.py); the first
(recipe, seed) whose bytes differ is printed as an entry for ``SEARCHED`` in vectors/generate.py.
Needs the oracle. Bounded: at most ``--seeds`` rows per recipe and ``--budget`` seconds per mutant.

Two mutants need constructed inputs rather than recipe rows:

    python tests/mutation/search.py --construct qp-trial-split      # QP_TRIAL in vectors/generate.py
    python tests/mutation/search.py --simulate q3 --groups 2000000  # make_q3_quants without `sl2 > 0`

``--construct qp-trial-split`` scans consecutive floats ``a`` for the single value of an importance-0
sub-block until make_qp_quants' trial scale ``(0.1f*is + nmax)/max`` and the split form
``nmax/max + 0.1f*is/max`` round ``a``'s sub-block scale to different levels, builds the row of
``vectors/generate.py``'s ``qp_trial_cases`` and checks it against the oracle and the mutant.
``--simulate q3`` runs make_q3_quants (n = 16, nmax = 4) vectorised over many structured groups at
scales 1e-15 ... 1e7 and reports any group where a change with ``sl2 <= 0`` would be accepted
without the ``sl2 > 0`` test (docs/vectors.md, "q3-accept-no-sl2-check");
``--exhaustive-q3 -22..20`` is that page's step (d), about 20 s per binade. ``--trace-q3 SECONDS``
counts, over random and removal-prone groups, ggml's accepted removals (a non-zero level set to 0),
changes of the largest value's level, visits with ``slx > 0`` and ``suml2 <=`` the visited term (the
only visits where the mutant can differ) and visits of the largest value with every other level 0.
``--roundtrip-q3 SECONDS`` is step (e) with 1 ... 14 other levels near |M|/8 (random, checked against
make_q3_quants); ``--drifted-pair-q3 SECONDS`` scans the pair state {M, z} with sums a few float32
steps off their exact values, the last step before the mutant can differ; ``--chain-q3 SECONDS
--helpers H`` searches the shortest runs that could reach such a state, ``--first-removal-q3
H:LO:HI`` enumerates their first step for every M in [LO, HI).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutation_catalogue as catalogue  # noqa: E402
import mutation_harness as harness  # noqa: E402


def search(m, seeds: int, budget: float, oracle, gen):
    from ggspec.reference.types import get_type
    tmp = Path(tempfile.mkdtemp(prefix="ggspec-search-"))
    ref = harness.load_in_process(m, tmp)
    found = []
    t0 = time.perf_counter()
    for tname in m.types:
        t = get_type(tname)
        imrecs = [None] if not t.quantize_chunk else ([None] if not t.requires_imatrix else []) + list(gen.IMATRIX_RECIPES)
        if t.requires_imatrix:
            imrecs = list(gen.IMATRIX_RECIPES)
        for seed in range(seeds):
            for rec in gen.RECIPES:
                for imrec in imrecs:
                    if time.perf_counter() - t0 > budget:
                        return found
                    x = gen.recipe_row(rec, seed)
                    im = None if imrec is None else gen.recipe_imatrix(imrec, seed)
                    try:
                        want = oracle.quantize(t, x, im)
                    except Exception:
                        continue
                    try:
                        got = ref.quantize(tname, x, im)
                    except Exception:
                        got = None
                    if got != want:
                        found.append((tname, rec, seed, imrec))
                        return found
    return found


# ---------------------------------------------------------------------------- qp-trial-split

QP_SHAPES = {"Q4_K": (8, 32, 15, 63), "Q5_K": (8, 32, 31, 63), "Q2_K": (16, 16, 3, 15)}


def construct_qp_trial(tname: str, sign: int, oracle):
    """(is, float32 bits of a) for QP_TRIAL: an importance-0 sub-block [a, 0, ...] has the scale
    t = 1/(nsub/a) (make_qkx3_quants keeps its first guess when every weight is 0); with the largest
    sub-block [1, 0, ...] (scale m = 1/(nsub/1)) the trial scales A = (0.1f*is + nmax)/m and
    B = nmax/m + 0.1f*is/m differ by an ulp, and a is scanned until nearest_int(A*t) != nearest_int(B*t).
    The row is then checked: oracle == reference, oracle != mutant."""
    from ggspec.reference.search import nearest_int
    from ggspec.vectors import generate as gen
    f32 = np.float32
    nb, sub, nsub, nq = QP_SHAPES[tname]
    m = f32(1.0) / (f32(nsub) / f32(1.0))
    for is_ in ((4, 3, 2, 1) if sign > 0 else (-4, -3, -2, -1)):
        a_tr = (f32(0.1) * f32(is_) + f32(nq)) / m
        b_tr = f32(nq) / m + (f32(0.1) * f32(is_)) / m
        if a_tr == b_tr:
            continue
        for k in range(nq // 2, nq - 1):
            start = np.array([f32((k + 0.5) / float(a_tr)) * f32(nsub)], f32).view(np.int32)[0]
            for d in range(-40, 41):
                a = np.array([start + d], np.int32).view(f32)[0]
                t = f32(1.0) / (f32(nsub) / a)
                if nearest_int(a_tr * t) != nearest_int(b_tr * t):
                    return is_, int(np.array([a], f32).view(np.uint32)[0])
    return None


def run_construct(which: str, oracle) -> int:
    if which != "qp-trial-split":
        raise SystemExit(f"--construct knows qp-trial-split, not {which}")
    import importlib
    from ggspec.vectors import generate as gen
    tmp = Path(tempfile.mkdtemp(prefix="ggspec-search-"))
    mut = harness.load_in_process(catalogue.BY_ID["qp-trial-split"], tmp)
    mk = importlib.import_module(mut.__name__ + ".kquants")
    from ggspec.reference import kquants as rk
    ok = True
    for tname in QP_SHAPES:
        found = tuple(construct_qp_trial(tname, s, oracle) for s in (1, -1))
        print(f'    "{tname}": ({", ".join(f"({i}, 0x{b:08X})" for i, b in found)}),', flush=True)
        saved = gen.QP_TRIAL.get(tname)
        gen.QP_TRIAL[tname] = found
        try:
            for _c, _fl, x, im in gen.qp_trial_cases(_type(tname)):
                fn = f"quantize_row_{tname[:2].lower()}{tname[2:]}"
                want = oracle.quantize(tname, x, im)
                ref, bad = getattr(rk, fn)(x[0], im), getattr(mk, fn)(x[0], im)
                print(f"#   oracle == reference: {want == ref}, oracle == mutant: {want == bad}")
                ok &= want == ref and want != bad
        finally:
            gen.QP_TRIAL[tname] = saved
    return 0 if ok else 1


def _type(name):
    from ggspec.reference.types import get_type
    return get_type(name)


# ---------------------------------------------------------------------- q3-accept-no-sl2-check

def q3_batch(X):
    """make_q3_quants(n, 4, x, do_rmse=true) on every row of X (float32 (N, n)), vectorised, in
    ggml's float32 order of operations. Returns (levels, scale, mutant_only) where mutant_only marks
    the rows in which some proposed change has sl2 <= 0 after the update and passes the error test,
    i.e. is accepted only without the `sl2 > 0` check."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    X = np.asarray(X, f32)
    N, n = X.shape
    with np.errstate(all="ignore"):
        ax = np.abs(X)
        idx = np.argmax(np.where(np.isnan(ax), -1, ax), axis=1)
        mx = X[np.arange(N), idx]
        active = np.abs(mx) >= f32(1e-15)
        iscale = f32(-4.0) / np.where(active, mx, f32(1))
        L = np.clip(ni(iscale[:, None] * X), -4, 3)
        W = X * X
        sumlx = np.zeros(N, f32)
        suml2 = np.zeros(N, f32)
        for i in range(n):
            lf = L[:, i].astype(f32)
            sumlx = sumlx + (W[:, i] * X[:, i]) * lf
            suml2 = suml2 + (W[:, i] * lf) * lf
        mutant_only = np.zeros(N, bool)
        for _ in range(5):
            changed = np.zeros(N, bool)
            for i in range(n):
                w, xi, li = W[:, i], X[:, i], L[:, i].astype(f32)
                slx = sumlx - (w * xi) * li
                sl2 = suml2 - (w * li) * li
                nl = np.clip(ni((xi * sl2) / slx), -4, 3)
                go = active & (slx > 0) & (nl != L[:, i])
                nf = nl.astype(f32)
                slx2 = slx + (w * xi) * nf
                sl22 = sl2 + (w * nf) * nf
                better = (slx2 * slx2) * suml2 > (sumlx * sumlx) * sl22
                mutant_only |= go & better & ~(sl22 > 0)
                acc = go & better & (sl22 > 0)
                L[:, i] = np.where(acc, nl, L[:, i])
                sumlx = np.where(acc, slx2, sumlx)
                suml2 = np.where(acc, sl22, suml2)
                changed |= acc
            active &= changed
        scale = np.where(suml2 > 0, sumlx / suml2, f32(0))
    return L, scale, mutant_only


def q3_groups(rng, N):
    """Structured 16-value groups with a negative largest value (make_q3_quants refines only then):
    random, sparse, log-uniform magnitudes, and values near fractions k/8 of the largest (level
    boundaries) with relative offsets down to one float32 step; at log-uniform scales 1e-15 ... 1e7."""
    n = 16
    kind = rng.integers(0, 4)
    if kind == 0:
        X = rng.standard_normal((N, n))
    elif kind == 1:
        X = rng.standard_normal((N, n)) * (rng.uniform(size=(N, n)) < rng.uniform(0.1, 0.4))
    elif kind == 2:
        X = np.exp(rng.uniform(-12, 0, (N, n))) * rng.choice([-1, 1], (N, n))
    else:
        fr = rng.choice([1 / 8, 3 / 8, 5 / 8, 7 / 8, 1 / 4, 1 / 2, 1 / 16], (N, n))
        off = rng.integers(-8, 9, (N, n)) * 2.0 ** -23 * rng.choice([1, 2 ** 10], (N, n))
        X = fr * (1 + off) * rng.choice([-1, 1], (N, n)) * (rng.uniform(size=(N, n)) < rng.uniform(0.1, 0.5))
    X = X / np.maximum(np.max(np.abs(X), axis=1, keepdims=True), 1e-30)
    X[np.arange(N), np.argmax(np.abs(X), axis=1)] = -1.0
    scale = np.exp(rng.uniform(np.log(1e-15), np.log(1e7), N))
    return (X * scale[:, None]).astype(np.float32)


def run_simulate_q3(groups: int, budget: float, seed: int) -> int:
    from ggspec.reference.search import make_q3_quants
    rng = np.random.default_rng([15, seed])
    # the vectorised loop must be make_q3_quants: compare a few hundred groups with the reference
    X = q3_groups(rng, 300)
    L, s, _ = q3_batch(X)
    for r in range(len(X)):
        sr, Lr = make_q3_quants(16, 4, X[r], True)
        assert np.array_equal(Lr.astype(np.int64) - 4, L[r]) and (sr == s[r]), r
    t0, done, hits = time.perf_counter(), 0, 0
    while done < groups and time.perf_counter() - t0 < budget:
        X = q3_groups(rng, 20000)
        _, _, bad = q3_batch(X)
        done += len(X)
        for r in np.nonzero(bad)[0][:3]:
            hits += 1
            print("    mutant-only acceptance:", X[r].view(np.uint32).tolist(), flush=True)
    print(f"# make_q3_quants without sl2 > 0: {hits} groups of {done} differ ({time.perf_counter() - t0:.0f}s)")
    return 0


def q3_trace(X):
    """make_q3_quants (n=16, nmax=4, do_rmse) on every row, ggml's float32 order; per row:
    removals (accepted nonzero -> 0 of a non-max element), those at a tie (the proposal
    |x*sl2/slx| within 2^-12 relative of 1/2), those in groups whose other values all lie within
    |M|/8*(1 + 2^-6) (the regime of docs/vectors.md's steps (c)-(e)), changes of the max's level,
    low visits (slx > 0 and float suml2 <= the visited term, i.e. sl2 = suml2 - t_i <= 0: the
    necessary condition for the mutant to differ), and visits of the max with every other level 0
    after some other level was non-zero ("max alone")."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    X = np.asarray(X, f32)
    N, n = X.shape
    R = np.arange(N)
    st = {k: np.zeros(N, np.int64) for k in ("removals", "tie_removals", "small_removals", "small_accepted", "max_changes", "low", "max_alone", "accepted")}
    with np.errstate(all="ignore"):
        ax = np.abs(X)
        im = np.argmax(np.where(np.isnan(ax), -1, ax), axis=1)
        mx = X[R, im]
        active = np.abs(mx) >= f32(1e-15)
        L = np.clip(ni((f32(-4.0) / np.where(active, mx, f32(1)))[:, None] * X), -4, 3)
        W = X * X
        sumlx = np.zeros(N, f32); suml2 = np.zeros(N, f32)
        for i in range(n):
            lf = L[:, i].astype(f32)
            sumlx = sumlx + (W[:, i] * X[:, i]) * lf
            suml2 = suml2 + (W[:, i] * lf) * lf
        ever = (L != 0) & (np.arange(n)[None, :] != im[:, None])
        # every value other than the max within |M|/8 * (1 + 2^-6): the regime of the docs' steps (c)-(e)
        small = np.all((ax <= np.abs(mx)[:, None] * f32(0.125 * (1 + 2 ** -6))) | (np.arange(n)[None, :] == im[:, None]), axis=1)
        for _ in range(5):
            changed = np.zeros(N, bool)
            for i in range(n):
                ismax = im == i
                others = (L != 0) & (np.arange(n)[None, :] != i)
                st["max_alone"] += active & ismax & ~others.any(1) & ever.any(1)
                w, xi, li = W[:, i], X[:, i], L[:, i].astype(f32)
                slx = sumlx - (w * xi) * li
                sl2 = suml2 - (w * li) * li
                st["low"] += active & (slx > 0) & ~(sl2 > 0)
                v = (xi * sl2) / slx
                nl = np.clip(ni(v), -4, 3)
                go = active & (slx > 0) & (nl != L[:, i])
                nf = nl.astype(f32)
                slx2 = slx + (w * xi) * nf
                sl22 = sl2 + (w * nf) * nf
                acc = go & (sl22 > 0) & ((slx2 * slx2) * suml2 > (sumlx * sumlx) * sl22)
                st["accepted"] += acc
                st["tie_removals"] += acc & (nl == 0) & (np.abs(v) > f32(0.5 * (1 - 2 ** -12)))
                st["small_removals"] += acc & (nl == 0) & small
                st["small_accepted"] += acc & small
                st["removals"] += acc & (nl == 0) & ~ismax
                st["max_changes"] += acc & ismax
                L[:, i] = np.where(acc, nl, L[:, i])
                ever[:, i] |= acc & (nl != 0) & ~ismax
                sumlx = np.where(acc, slx2, sumlx)
                suml2 = np.where(acc, sl22, suml2)
                changed |= acc
            active &= changed
    return L, st


def removal_groups(rng, N):
    """groups built to make ggml remove levels: max -1, a few values near 1 (positive: clamped to 3,
    raising the fit scale), several near the first level boundary 1/8 (relative offsets -2^-9 ... 2^-6,
    or -4096 ... +8 float32 steps) or the boundaries of the max's own level (|M|/3.5 ...), at
    log-uniform scales."""
    n = 16
    k = rng.integers(0, 5, (N, n))
    k = np.where(rng.uniform(size=(N, 1)) < 0.5, k, rng.choice([0, 2, 3], (N, n)))   # half: only values near |M|/8
    big = rng.uniform(0.3, 1.0, (N, n)) * rng.choice([-1, 1], (N, n))
    near8 = (1 / 8) * (1 + rng.uniform(-2 ** -9, 2 ** -6, (N, n))) * rng.choice([-1, 1], (N, n))
    bnd = rng.choice([1 / 7, 1 / 5, 1 / 3, 3 / 8, 5 / 8, 7 / 8], (N, n)) * (1 + rng.uniform(-2 ** -8, 2 ** -8, (N, n))) * rng.choice([-1, 1], (N, n))
    X = np.where(k == 0, 0.0, np.where(k == 1, big, np.where(k == 2, near8, bnd)))
    X *= rng.uniform(size=(N, n)) < rng.uniform(0.2, 0.8, (N, 1))
    im = rng.integers(0, n, N)
    X[np.arange(N), im] = -1.0
    X = np.clip(X, -1, 1)
    scale = np.exp(rng.uniform(np.log(1e-6), np.log(1e5), N))
    X = (X * scale[:, None]).astype(np.float32)
    # the float32 steps around |M|/8 of the float32 M itself
    m8 = (np.abs(X[np.arange(N), im]) / np.float32(8)).view(np.int32)[:, None]
    fine8 = (m8 + rng.integers(-4096, 9, (N, n))).astype(np.int32).view(np.float32)
    fine = (k == 3) & (X != 0) & (np.arange(n)[None, :] != im[:, None])
    return np.where(fine, fine8 * np.sign(X), X).astype(np.float32)


def run_trace_q3(budget: float, seed: int) -> int:
    """--trace-q3: q3_trace over q3_groups and removal_groups for ``budget`` seconds; prints the totals."""
    from ggspec.reference.search import make_q3_quants
    rng = np.random.default_rng([15, 1, seed])
    X = removal_groups(rng, 300)
    L, _ = q3_trace(X)
    for r in range(len(X)):   # the vectorised loop must be make_q3_quants
        assert np.array_equal(make_q3_quants(16, 4, X[r], True)[1].astype(np.int64) - 4, L[r]), r
    tot, done, t0 = {}, 0, time.perf_counter()
    while time.perf_counter() - t0 < budget:
        X = removal_groups(rng, 20000) if rng.integers(0, 2) else q3_groups(rng, 20000)
        _, st = q3_trace(X)
        done += len(X)
        for k, v in st.items():
            tot[k] = tot.get(k, 0) + int(v.sum())
            tot[k + "_groups"] = tot.get(k + "_groups", 0) + int((v > 0).sum())
    print(f"# make_q3_quants traced over {done} groups ({time.perf_counter() - t0:.0f}s):", tot)
    return 1 if tot.get("low", 0) or tot.get("max_alone", 0) or tot.get("small_removals", 0) else 0


def q3_roundtrip_batch(rng, N, kmax=14, W=3):
    """Step (e) with more levels present: the state {M: -4, k values 1..4 float32 steps above |M|/8 at
    level +-1 from the initial rounding} (k = 1..kmax, M at a random place in the summation order),
    then a value a within W steps of the tie of the others' scale, either sign, at level 0 initially:
    a is added on its first visit, and its next visit sees the round-trip sums
    fl(fl(sumlx + u) - u), fl(fl(suml2 + t) - t). Returns the counts and, as groups (a first, then the
    state's values in summation order), every accepted removal and a few other added and proposed
    cases for checking against make_q3_quants."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    m = (rng.integers(0, 1 << 23, N).astype(np.int32) + f32(1).view(np.int32)).view(f32)
    M = -m
    k = rng.integers(1, kmax + 1, N)
    wM = M * M
    uM, tM = (wM * M) * f32(-4), (wM * f32(-4)) * f32(-4)
    m8 = (m / f32(8)).view(np.int32)
    pos = rng.integers(0, kmax + 1, N)
    P0, Q0 = np.zeros(N, f32), np.zeros(N, f32)
    G = np.zeros((N, kmax + 2), f32)
    allnz = np.ones(N, bool)
    for q in range(kmax + 1):
        isM = pos == q
        jj = (m8 + rng.integers(1, 5, N).astype(np.int32)).view(f32) * rng.choice(np.array([-1, 1], f32), N)
        lj = np.clip(ni((f32(-4.0) / M) * jj), -4, 3).astype(f32)
        live = (q < k) | isM
        allnz &= ~live | (lj != 0)
        ut = np.where(live, np.where(isM, uM, (jj * jj * jj) * lj), f32(0))
        tt = np.where(live, np.where(isM, tM, ((jj * jj) * lj) * lj), f32(0))
        P0, Q0 = P0 + ut, Q0 + tt
        G[:, q + 1] = np.where(isM, M, np.where(live, jj, f32(0)))
    a0 = ((f32(0.5) * P0) / Q0).view(np.int32)
    res = dict(states=0, added=0, inexact=0, proposed=0, accepted=0, ties=0)
    samples = []
    for sg in (f32(1), f32(-1)):
        for d in range(-W, W + 1):
            a = (a0 + np.int32(d)).view(f32) * sg
            w = a * a
            nl = np.clip(ni((a * Q0) / P0), -4, 3)
            ok = allnz & (ni((f32(-4.0) / M) * a) == 0) & (nl != 0) & (P0 > 0)
            nf = nl.astype(f32)
            S1, S2 = P0 + (w * a) * nf, Q0 + (w * nf) * nf
            added = ok & (S2 > 0) & ((S1 * S1) * Q0 > (P0 * P0) * S2)
            P1, Q1 = S1 - (w * a) * nf, S2 - (w * nf) * nf
            nl1 = np.clip(ni((a * Q1) / P1), -4, 3)
            prop = added & (P1 > 0) & (nl1 != nl)
            n1 = nl1.astype(f32)
            P2, Q2 = P1 + (w * a) * n1, Q1 + (w * n1) * n1
            lhs, rhs = (P2 * P2) * S2, (S1 * S1) * Q2
            acc = prop & (Q2 > 0) & (lhs > rhs)
            for r, was in [(r, True) for r in np.nonzero(acc)[0]] + \
                    [(r, False) for r in np.nonzero(prop & ~acc)[0][:3]] + [(r, False) for r in np.nonzero(added & ~prop)[0][:2]]:
                g = G[r].copy()
                g[0] = a[r]
                samples.append((g, int(nl[r]), int(k[r]), was))
            res["states"] += int(ok.sum())
            res["added"] += int(added.sum())
            res["inexact"] += int((added & ((P1 != P0) | (Q1 != Q0))).sum())
            res["proposed"] += int(prop.sum())
            res["accepted"] += int(acc.sum())
            res["ties"] += int((prop & (Q2 > 0) & (lhs == rhs)).sum())
    return res, samples


def run_roundtrip_q3(budget: float, seed: int) -> int:
    """--roundtrip-q3: q3_roundtrip_batch for ``budget`` seconds; every accepted removal and a sample
    of the rest checked against make_q3_quants (a's final level, the others' untouched)."""
    from ggspec.reference.search import make_q3_quants
    from ggspec.reference.search import nearest_int_array as ni
    rng = np.random.default_rng([15, 2, seed])
    tot, t0, found = {}, time.perf_counter(), []
    with np.errstate(all="ignore"):
        while time.perf_counter() - t0 < budget:
            r, smp = q3_roundtrip_batch(rng, 1 << 18)
            for kk, v in r.items():
                tot[kk] = tot.get(kk, 0) + v
            for g, nl, k, acc in smp[:40] + [x for x in smp[40:] if x[3]]:
                L = make_q3_quants(16, 4, g, True)[1].astype(np.int64) - 4
                L0 = np.clip(ni((np.float32(-4.0) / g[np.argmax(np.abs(g))]) * g), -4, 3)
                assert L[0] == (0 if acc else nl) and np.array_equal(L[1:], L0[1:]), g.view(np.uint32).tolist()
                tot["checked"] = tot.get("checked", 0) + 1
                if acc:
                    found.append((int(np.count_nonzero(g[1:])) - 1, g))
    for k, g in found[:10]:
        print(f"    added then removed ({k} other levels near |M|/8):", g.view(np.uint32).tolist())
    print(f"# make_q3_quants, an added value revisited with round-trip sums ({time.perf_counter() - t0:.0f}s):", tot)
    return 0


def q3_drifted_pair(rng, N, D=3):
    """The last step before the mutant can differ: the state {M: -4, z: +-1} (z within 4 float32 steps
    of |M|/8, either sign) with sumlx and suml2 moved by dp, dq float32 steps (|dp|, |dq| <= D) from
    the exact pair sums fl(u_M + u_z), fl(t_M + t_z). Visit z: proposed 0, ggml accepts; then visit
    M: slx = sumlx - u_M > 0 and sl2 = suml2 - t_M <= 0, where the mutant accepts M's level 0 and ggml
    does not. ``reach`` marks z whose level +-1 comes from the initial rounding or from a proposal in
    the exact state {M}."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32

    def up(v, d):
        return (v.view(np.int32) + np.int32(d)).view(f32)
    m = (rng.integers(0, 1 << 23, N).astype(np.int32) + f32(1).view(np.int32)).view(f32)
    M = -m
    wM = M * M
    uM, tM = (wM * M) * f32(-4), (wM * f32(-4)) * f32(-4)
    m8 = (m / f32(8)).view(np.int32)
    res = dict(states=0, proposed=0, accepted=0, differ=0, reach_accepted=0, reach_differ=0)
    ex = []
    for sg in (f32(1), f32(-1)):
        for t in range(-4, 5):
            z = (m8 + np.int32(t)).view(f32) * sg
            w = z * z
            uz, tz = (w * z) * sg, (w * sg) * sg
            reach = (np.abs(ni((f32(-4.0) / M) * z)) == 1) | (np.abs(ni((z * tM) / uM)) == 1)
            P, Q = uM + uz, tM + tz
            for dp in range(-D, D + 1):
                for dq in range(-D, D + 1):
                    Pd, Qd = up(P, dp), up(Q, dq)
                    slx, sl2 = Pd - uz, Qd - tz
                    prop = (slx > 0) & (np.clip(ni((z * sl2) / slx), -4, 3) == 0)
                    acc = prop & (sl2 > 0) & ((slx * slx) * Qd > (Pd * Pd) * sl2)
                    e1, e2 = slx - uM, sl2 - tM
                    # M's visit: proposal round(M*e2/e1); the mutant accepts when sl2' = e2 + t_new <= 0
                    nlM = np.clip(ni((M * e2) / e1), -4, 3)
                    nf = nlM.astype(f32)
                    s1, s2 = e1 + (wM * M) * nf, e2 + (wM * nf) * nf
                    differ = acc & (e1 > 0) & (nlM != -4) & ~(s2 > 0) & ((s1 * s1) * sl2 > (slx * slx) * s2)
                    res["states"] += N
                    res["proposed"] += int(prop.sum())
                    res["accepted"] += int(acc.sum())
                    res["differ"] += int(differ.sum())
                    res["reach_accepted"] += int((acc & reach).sum())
                    res["reach_differ"] += int((differ & reach).sum())
                    for r in np.nonzero(differ & reach)[0][:1]:
                        ex.append((float(m[r]), t, int(sg), dp, dq))
    return res, ex


def run_drifted_pair_q3(budget: float, seed: int) -> int:
    rng = np.random.default_rng([15, 4, seed])
    tot, t0, exs = {}, time.perf_counter(), []
    with np.errstate(all="ignore"):
        while time.perf_counter() - t0 < budget:
            r, ex = q3_drifted_pair(rng, 1 << 16)
            exs += ex
            for k, v in r.items():
                tot[k] = tot.get(k, 0) + v
    for m, t, sg, dp, dq in exs[:10]:
        print(f"    M = -{m!r}, z = {'+' if sg > 0 else '-'}(|M|/8 {t:+d} steps), sumlx {dp:+d}, suml2 {dq:+d} steps")
    print(f"# drifted pair states {{M, z}} ({time.perf_counter() - t0:.0f}s):", tot)
    return 0


def q3_chain_groups(rng, N, H):
    """[h_H, ..., h_1, z, M, 0 ...]: z 1..3 float32 steps above |M|/8 (level +-1 from the initial
    rounding), each h_i within -2..3 steps of the tie of the scale of {M, z, h_1 .. h_i-1}, either
    sign: added one per pass (h_i needs h_1 .. h_i-1), then, if the roundings allow, set back to 0
    last-added first within one pass, z last, and M visited after them: the shortest runs that could
    reach a drifted pair state (see q3_drifted_pair)."""
    f32 = np.float32

    def step(v, d):
        return (v.view(np.int32) + d.astype(np.int32)).view(f32)
    m = (rng.integers(0, 1 << 23, N).astype(np.int32) + f32(1).view(np.int32)).view(f32)
    M = -m
    wM = M * M
    z = step(m / f32(8), rng.integers(1, 4, N)) * rng.choice(np.array([-1, 1], f32), N)
    lz = np.sign(z)
    P = (z * z * z) * lz + (wM * M) * f32(-4)
    Q = ((z * z) * lz) * lz + (wM * f32(-4)) * f32(-4)
    X = np.zeros((N, 16), f32)
    X[:, H], X[:, H + 1] = z, M
    for i in range(H):
        h = step((f32(0.5) * P) / Q, rng.integers(-2, 4, N)) * rng.choice(np.array([-1, 1], f32), N)
        X[:, H - 1 - i] = h
        lh = np.sign(h)
        P, Q = P + ((h * h) * h) * lh, Q + ((h * h) * lh) * lh
    return X


def run_chain_q3(budget: float, seed: int, H: int) -> int:
    rng = np.random.default_rng([15, 5, H, seed])
    tot, done, t0 = {}, 0, time.perf_counter()
    while time.perf_counter() - t0 < budget:
        X = q3_chain_groups(rng, 1 << 16, H)
        _, st = q3_trace(X)
        done += len(X)
        for k in ("accepted", "removals", "low"):
            tot[k + "_groups"] = tot.get(k + "_groups", 0) + int((st[k] > 0).sum())
        tot["all_added_groups"] = tot.get("all_added_groups", 0) + int((st["accepted"] >= H).sum())
        for r in np.nonzero(st["low"])[0][:3]:
            print("    low visit:", X[r].view(np.uint32).tolist(), flush=True)
    print(f"# chains of {H} helpers: {done} groups ({time.perf_counter() - t0:.0f}s):", tot)
    return 1 if tot.get("low_groups", 0) else 0


def _f32_step(v, d):
    """v moved d float32 steps (v > 0)"""
    return (v.view(np.int32) + np.int32(d)).view(np.float32)


def _q3_max_terms(m):
    """M = -m and its terms of sumlx and suml2 at level -4, in ggml's float32 order"""
    f32 = np.float32
    M = -m
    wM = M * M
    return M, (wM * M) * f32(-4), (wM * f32(-4)) * f32(-4)


def q3_first_removal(m, H: int, W: int = 3, signs: bool = True):
    """The first removal of a helper chain (see q3_chain_groups) for every M = -m of the vector m: z
    -2..4 float32 steps from |M|/8, either sign, at level +-1 from the initial rounding or from a
    proposal in the exact state {M} (the same sums); helpers h_1 ..
    h_H, each within -W..W steps of the tie of the scale of {M, z, h_1 .. h_i-1}, either sign, at
    level 0 initially, added in that order (sums in the run's order: z and M, then h_1, ..., h_H);
    is h_H set back to 0 on its next visit? Every removal must be the last-added level's, so a chain
    that ends in a drifted pair state starts with this one. Returns (states, hits).

    ``signs=False`` takes z and every helper positive only: with levels +-1 every term is sign-free
    (``(w*x)*l = |x|^3``, ``(w*l)*l = x^2``), nearest_int is odd and the +-1 levels are not clamped,
    so a negative value gives the same sums and the same decisions as its magnitude."""
    import itertools
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    step = _f32_step
    M, uM, tM = _q3_max_terms(m)
    hits, n = [], 0
    offs = [(d, sg) for d in range(-W, W + 1) for sg in ((1, -1) if signs else (1,))]
    for zt in range(-2, 5):
        for zs in ((1, -1) if signs else (1,)):
            z = step(m / f32(8), zt) * f32(zs)
            # z at level +-1 from the initial rounding, or added to M alone (the same sums)
            ok0 = (np.abs(ni((f32(-4.0) / M) * z)) == 1) | (np.abs(ni((z * tM) / uM)) == 1)
            P0, Q0 = (z * z * z) * f32(zs) + uM, ((z * z) * f32(zs)) * f32(zs) + tM
            for combo in itertools.product(offs, repeat=H):
                P, Q, ok = P0, Q0, ok0.copy()
                for d, sg in combo:
                    h = step((f32(0.5) * P) / Q, d) * f32(sg)
                    w = h * h
                    nl = np.clip(ni((h * Q) / P), -4, 3)
                    ok &= (ni((f32(-4.0) / M) * h) == 0) & (np.abs(nl) == 1)
                    nf = nl.astype(f32)
                    S1, S2 = P + (w * h) * nf, Q + (w * nf) * nf
                    ok &= (S2 > 0) & ((S1 * S1) * Q > (P * P) * S2)
                    P, Q = S1, S2
                P1, Q1 = P - (w * h) * nf, Q - (w * nf) * nf
                prop = ok & (P1 > 0) & (np.clip(ni((h * Q1) / P1), -4, 3) == 0)
                acc = prop & (Q1 > 0) & ((P1 * P1) * Q > (P * P) * Q1)
                n += int(ok.sum())
                hits += [(float(m[r]), zt, zs, combo) for r in np.nonzero(acc)[0]]
    return n, hits


def q3_first_removal_dfs(m, H: int, W: int = 3, wins=None, zmax: int = 4):
    """q3_first_removal(m, H, W, signs=False), depth first: each helper's additions are computed only
    for the rows (M, z, helpers so far) in which every earlier helper was added, so offsets that are
    never added (below the tie) prune their whole subtree. Same count and hits. ``wins`` gives helper
    i its own window -wins[i] ... wins[i] (instead of W for all), ``zmax`` the highest step of z."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    step = _f32_step
    M, uM, tM = _q3_max_terms(m)
    iscale = f32(-4.0) / M
    hits, n = [], 0

    def go(rows, P, Q, zt, combo):
        nonlocal n
        Wi = W if wins is None else wins[len(combo)]
        for d in range(-Wi, Wi + 1):
            h = step((f32(0.5) * P) / Q, d)
            w = h * h
            nl = np.clip(ni((h * Q) / P), -4, 3)
            ok = (ni(iscale[rows] * h) == 0) & (np.abs(nl) == 1)
            nf = nl.astype(f32)
            S1, S2 = P + (w * h) * nf, Q + (w * nf) * nf
            ok &= (S2 > 0) & ((S1 * S1) * Q > (P * P) * S2)
            if not ok.any():
                continue
            k = np.nonzero(ok)[0]
            if len(combo) + 1 < H:
                go(rows[k], S1[k], S2[k], zt, combo + (d,))
                continue
            hk, wk, nk, T1, T2 = h[k], w[k], nf[k], S1[k], S2[k]
            P1, Q1 = T1 - (wk * hk) * nk, T2 - (wk * nk) * nk   # the round trip
            prop = (P1 > 0) & (np.clip(ni((hk * Q1) / P1), -4, 3) == 0)
            acc = prop & (Q1 > 0) & ((P1 * P1) * T2 > (T1 * T1) * Q1)
            n += len(k)
            hits.extend((float(m[rows[k][r]]), zt, 1, combo + (d,)) for r in np.nonzero(acc)[0])

    for zt in range(-2, zmax + 1):
        z = step(m / f32(8), zt)
        ok0 = (np.abs(ni(iscale * z)) == 1) | (np.abs(ni((z * tM) / uM)) == 1)
        rows = np.nonzero(ok0)[0]
        P0, Q0 = ((z * z * z) + uM)[rows], ((z * z) + tM)[rows]
        go(rows, P0, Q0, zt, ())
    return n, hits


def q3_first_removal_states(m, H: int, wins, zmax: int = 4, low=None):
    """q3_first_removal_dfs(m, H, wins=wins, zmax=zmax) over distinct states: the first removal of
    helper H depends only on the sums (P, Q) before it and on its value, and a helper's window is
    placed from those sums alone, so chains reaching the same (M, P, Q) are merged (their number
    carried along). A helper's terms are about 2^-11 of the sums, so its window of float32 steps
    moves them by far less than one ulp: a handful of distinct states per M and helper instead of
    the product of the windows. ``low`` (default: z from -2, a helper from -wins[i]) is the lowest
    step below the tie for z and every helper. Same chain count as the depth-first search; a hit is (m, one representative chain as the
    window offsets in base 2·max(wins)+1, z's step first, number of chains merged in it)."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    step = _f32_step
    M, uM, tM = _q3_max_terms(m)
    iscale = f32(-4.0) / M

    def merge(rows, P, Q, cnt, path):
        key = np.lexsort((Q.view(np.uint32), P.view(np.uint32), rows))
        rows, P, Q, cnt, path = rows[key], P[key], Q[key], cnt[key], path[key]
        new = np.ones(len(rows), bool)
        new[1:] = ((rows[1:] != rows[:-1]) | (P[1:].view(np.uint32) != P[:-1].view(np.uint32))
                   | (Q[1:].view(np.uint32) != Q[:-1].view(np.uint32)))
        start = np.nonzero(new)[0]
        return rows[start], P[start], Q[start], np.add.reduceat(cnt, start), path[start]

    parts = []
    n_m = len(m)
    cur = [np.zeros(n_m, np.float32), np.zeros(n_m, np.float32), np.zeros(n_m, np.int64), np.zeros(n_m, np.int64)]
    cur_ok = np.zeros(n_m, bool)
    allrows = np.arange(n_m)
    for zt in range(-2 if low is None else -low, zmax + 1):   # runs of equal sums summed as for helpers
        z = step(m / f32(8), zt)
        ok = (np.abs(ni(iscale * z)) == 1) | (np.abs(ni((z * tM) / uM)) == 1)
        S1, S2 = (z * z * z) + uM, (z * z) + tM
        same = ok & cur_ok & (S1.view(np.uint32) == cur[0].view(np.uint32)) \
            & (S2.view(np.uint32) == cur[1].view(np.uint32))
        cur[2][same] += 1
        done = cur_ok & ~same
        parts.append((allrows[done], cur[0][done], cur[1][done], cur[2][done], cur[3][done]))
        fresh = ok & ~same
        cur[0][fresh], cur[1][fresh], cur[2][fresh], cur[3][fresh] = S1[fresh], S2[fresh], 1, zt
        cur_ok = same | fresh
    parts.append((allrows[cur_ok], cur[0][cur_ok], cur[1][cur_ok], cur[2][cur_ok], cur[3][cur_ok]))
    if H == 0:   # z itself is the first level set back to 0: its own visit, with the sums it made
        n, hits = 0, []
        for zt in range(-2 if low is None else -low, zmax + 1):
            z = step(m / f32(8), zt)
            ok = (np.abs(ni(iscale * z)) == 1) | (np.abs(ni((z * tM) / uM)) == 1)
            T1, T2 = (z * z * z) + uM, (z * z) + tM
            P1, Q1 = T1 - z * z * z, T2 - z * z
            prop = ok & (P1 > 0) & (ni((z * Q1) / P1) == 0)
            acc = prop & (Q1 > 0) & ((P1 * P1) * T2 > (T1 * T1) * Q1)
            n += int(ok.sum())
            hits.extend((float(m[r]), zt, 1) for r in np.nonzero(acc)[0])
        return n, hits, [n]
    state = merge(*(np.concatenate(c) for c in zip(*parts)))
    n, hits, nstates = 0, [], [len(state[0])]
    base = 2 * max(wins) + 1
    for i in range(H):
        rows, P, Q, cnt, path = state
        Wi = wins[i]
        parts = []
        cur = [np.zeros_like(P), np.zeros_like(Q), np.zeros_like(cnt), np.zeros_like(path)]
        cur_ok = np.zeros(len(rows), bool)
        for d in range(-Wi if low is None else -low, Wi + 1):
            h = step((f32(0.5) * P) / Q, d)
            w = h * h
            nl = np.clip(ni((h * Q) / P), -4, 3)
            ok = (ni(iscale[rows] * h) == 0) & (np.abs(nl) == 1)
            nf = nl.astype(f32)
            S1, S2 = P + (w * h) * nf, Q + (w * nf) * nf
            ok &= (S2 > 0) & ((S1 * S1) * Q > (P * P) * S2)
            if i + 1 < H:
                # runs of offsets giving the same next state are summed here (h moves the sums
                # monotonically, so a parent's next states come in a few runs); merge() does the rest
                same = ok & cur_ok & (S1.view(np.uint32) == cur[0].view(np.uint32)) \
                    & (S2.view(np.uint32) == cur[1].view(np.uint32))
                cur[2][same] += cnt[same]
                done = cur_ok & ~same
                parts.append((rows[done], cur[0][done], cur[1][done], cur[2][done], cur[3][done]))
                fresh = ok & ~same
                cur[0][fresh], cur[1][fresh] = S1[fresh], S2[fresh]
                cur[2][fresh], cur[3][fresh] = cnt[fresh], path[fresh] * base + (d + Wi)
                cur_ok = same | fresh
                continue
            k = np.nonzero(ok)[0]
            if not len(k):
                continue
            pk = path[k] * base + (d + Wi)
            hk, wk, nk, T1, T2 = h[k], w[k], nf[k], S1[k], S2[k]
            P1, Q1 = T1 - (wk * hk) * nk, T2 - (wk * nk) * nk   # the round trip
            prop = (P1 > 0) & (np.clip(ni((hk * Q1) / P1), -4, 3) == 0)
            acc = prop & (Q1 > 0) & ((P1 * P1) * T2 > (T1 * T1) * Q1)
            n += int(cnt[k].sum())
            hits.extend((float(m[rows[k][r]]), int(pk[r]), int(cnt[k][r])) for r in np.nonzero(acc)[0])
        if i + 1 < H:
            parts.append((rows[cur_ok], cur[0][cur_ok], cur[1][cur_ok], cur[2][cur_ok], cur[3][cur_ok]))
            if not sum(len(p[0]) for p in parts):
                break
            state = merge(*(np.concatenate(c) for c in zip(*parts)))
            nstates.append(len(state[0]))
    return n, hits, nstates


def run_first_removal_q3(spec: str) -> int:
    """--first-removal-q3 H:LO:HI[:W[:+[:ZMAX[:LOW]]]]: q3_first_removal for every float32 m in [LO, HI);
    helpers within W steps of their tie (default 3; "w1,w2,..." one window per helper, in the order
    they are added); '+' = positive values only (see q3_first_removal); z up to ZMAX steps above
    |M|/8 (default 4), z and every helper from LOW steps below (default: z 2, a helper its window).
    With '+' the merged-state enumeration (q3_first_removal_states) runs."""
    H, lo, hi, *rest = spec.split(":")
    wins = [int(x) for x in rest[0].split(",")] if rest and "," in rest[0] else None
    W = int(rest[0]) if rest and wins is None else (max(wins) if wins else 3)
    signs = not (len(rest) > 1 and rest[1] == "+")
    zmax = int(rest[2]) if len(rest) > 2 else 4
    low = int(rest[3]) if len(rest) > 3 else None
    a, b = np.float32(lo).view(np.int32), np.float32(hi).view(np.int32)
    t0, total, hits, states = time.perf_counter(), 0, [], 0
    with np.errstate(all="ignore"):
        for c in range(int(a), int(b), 1 << 16):
            mm = np.arange(c, min(c + (1 << 16), int(b)), dtype=np.int32).view(np.float32)
            if signs:
                n, h = q3_first_removal(mm, int(H), W, signs)
            else:
                n, h, ns = q3_first_removal_states(mm, int(H), wins or [W] * int(H) or [0], zmax, low)
                states += sum(ns)
            total += n
            hits += h
    for h in hits[:10]:
        print("    removed:", h)
    nrem = sum(h[2] for h in hits) if not signs else len(hits)
    print(f"# {H} helpers (W {wins or W}, z -{2 if low is None else low}..{zmax}{'' if signs else ', positive'}), M in [{lo}, {hi}): {total} chains with every helper added"
          f"{'' if signs else f' ({states} distinct states)'}, {nrem} first removals ({time.perf_counter() - t0:.0f}s)")
    return 0


def q3_margins(verbose: bool = True) -> dict:
    """The inequalities of the q3-accept-no-sl2-check proof (docs/vectors.md, "Proof: make_q3_quants
    without sl2 > 0 is equivalent", steps 3-6), in exact rational arithmetic, |M| = 1 (every bound is
    homogeneous: u-sums scale as |M|^3, t-sums as M^2, ratios as |M|). Asserts each step and returns
    the numbers. eps = 2^-24 is the unit roundoff; every float32 rounding is a relative error <= eps."""
    from fractions import Fraction as Fr
    eps = Fr(1, 2**24)
    # roundings per sum in a run: 15 for the initial 16-term sum, 2 per accepted change (5 passes x 16
    # visits), and 2 more for the visit being looked at (its own slx / sl2)
    N = 15 + 2 * 80 + 2

    def E(smax):  # drift of a running sum whose stored values never exceed smax (+1 % for the drift)
        return N * eps * smax * Fr(101, 100)

    theta = Fr(11, 1000)       # "M nearly alone": the other levels' exact t-sum <= theta
    out = {}
    E1c, E2c = E(16 * 4), E(16 * 16)          # crude: |x| <= |M| = 1, |L| <= 4
    out["crude"] = (float(E1c), float(E2c))
    assert E2c <= theta                       # a low visit at M: others' exact t-sum <= E2
    assert (E1c + 2 * E2c) * (1 + 7 * eps) <= theta   # M set to 0: others' exact t-sum <= E1 + 2 E2
    tf = 1 + 7 * eps                          # u_j <= |x_j/L_j| t_j (1 + 7 eps): the terms' own roundings

    def removal_bound(rho):
        """|y| of a value set to 0 while L_M != 0: others' scale <= (rho T' tf + E1)/(T' - E2), T' >= t_M >= 1 - 3 eps"""
        return Fr(1, 2) * (rho * tf + E1c) / (1 - 3 * eps - E2c) * (1 + eps) ** 2

    def sums(Y, lev):   # largest stored sums with M at -4 and 15 others |x| <= Y at |level| <= lev
        return (4 * (1 + 3 * eps) + 15 * lev * Y ** 3 * (1 + 3 * eps),
                16 * (1 + 3 * eps) + 15 * lev * lev * Y * Y * (1 + 3 * eps))

    def m_leaves(Y, c):
        """largest others' t-sum T'' at which M's proposal can reach |p| <= 1/c - 1/2 (scale >= c)"""
        P, Q = sums(Y, 4)
        E1, E2 = E(P), E(Q)
        return (E1 + c * E2) / (c - Y * tf)

    Y1 = removal_bound(Fr(1))                  # |L_M| >= 1
    T2 = m_leaves(Y1, Fr(2, 3) * (1 - 2 * eps))
    assert T2 < theta                          # so |L_M| >= 2 before F
    Y2 = removal_bound(Fr(1, 2))
    T3 = m_leaves(Y2, Fr(2, 7) * (1 - 2 * eps))
    assert T3 < theta                          # so L_M = -4 before F
    Y3 = removal_bound(Fr(1, 4))
    P, Q = sums(Y3, 1)
    E1r, E2r = E(P), E(Q)
    smin = (4 * (1 - 3 * eps) - E1r) / (Q + E2r)       # others' scale at any visit, the regime
    top = Y3 / smin * (1 + 2 * eps)
    assert top < Fr(3, 2)                      # every proposal of a value <= Y3 is 0 or +-1
    xlo = smin / 2 * (1 - 3 * eps)             # a value is added only from here up
    assert Fr(1, 8) * (1 - 3 * eps) >= xlo     # (initial levels start at 1/8 (1 - 3 eps))
    assert theta < xlo ** 2 * (1 - 3 * eps)    # one level +-1 keeps T'' above theta: F is "M alone"
    # relative drop of the exact scale U/T when a value x at +-1 joins: x^2 (1 - x T/U) / (T + x^2),
    # increasing in U and decreasing in T, so the smallest U and largest T of k others; x on a grid
    xs = [xlo + (Y3 - xlo) * Fr(i, 64) for i in range(65)]
    drop = min(x * x * (1 - x * (16 * (1 + 3 * eps) + k * Y3 * Y3) / (4 * (1 - 3 * eps) + k * xlo ** 3))
               / (16 * (1 + 3 * eps) + k * Y3 * Y3 + x * x) for k in range(15) for x in xs)
    drift = 2 * (E1r / 4 + E2r / 16)           # relative drift of slx/sl2 in the regime (both sums)
    assert drop > 8 * drift                    # last in, first out
    # windows: changes in a regime run are 0 <-> +-1, one rounding per sum each, at most 75 of them
    # (15 elements x 5 visits); a rounding is at most eps of the largest stored sum
    Pr, Qr = P / 4, Q / 16
    low = 2 + 75 * Pr + 75 * Qr + 1            # a helper below the top: eps-units above its tie
    zw = 2 + (1 + 75 * Pr + 1) + (1 + 75 * Qr + 1) + 1   # z: from |M|/8, the initial sum and its round trip
    topw = 2 + 2 + 2 + 1                       # the top helper: its own round trip only
    assert low < 160 and zw < 166 and topw < 8
    import math
    out.update(theta=float(theta), Y=(float(Y1), float(Y2), float(Y3 * 8)), T=(float(T2), float(T3)),
               regime=(float(E1r / eps), float(E2r / eps)), scale_min=float(smin), top_proposal=float(top),
               added_from=float(xlo * 8), lifo=(math.log2(drop), math.log2(drift)),
               windows=(float(topw), float(low), float(zw)))
    if verbose:
        print(f"crude drift E1 {out['crude'][0]:.3g} |M|^3, E2 {out['crude'][1]:.3g} M^2; theta {float(theta)}")
        print(f"removed values: |y| <= {float(Y1):.5f} (|L_M| >= 1), {float(Y2):.5f} (>= 2), "
              f"{float(Y3 * 8):.5f}/8 (L_M = -4)")
        print(f"M's level leaves <= -2 only if T'' <= {float(T2):.5f}, leaves -4 only if T'' <= {float(T3):.5f} (< theta)")
        print(f"regime: drift {float(E1r / eps):.0f} eps |M|^3, {float(E2r / eps):.0f} eps M^2; scale >= {float(smin):.5f}; "
              f"proposals <= {float(top):.4f}; values added from {float(xlo * 8):.5f}/8")
        print(f"an addition lowers the scale by >= 2^{math.log2(drop):.2f}, drift of the ratio <= 2^{math.log2(drift):.2f}")
        print(f"windows (steps above the tie): top helper {float(topw):.0f} (< 8), lower helpers {float(low):.1f} (< 160), "
              f"z {float(zw):.1f} (< 166)")
    return out


def q3_pair_scan(e: int, W: int = 6, chunk: int = 1 << 19) -> dict:
    """make_q3_quants' state {M: -4, z: +-1}, all else 0, for every float32 M = -(1 + k/2^23)*2^e
    and z within W float32 steps of |M|/8, either sign, z's level from the initial rounding or from
    an addition to {M} alone: how often z is proposed 0, accepted (ggml's test), tied; and whether
    M's proposal ever leaves -4 (an earlier check of docs/vectors.md's q3-accept-no-sl2-check proof; its
    step 7 now covers z's own removal with --first-removal-q3 0:...)."""
    from ggspec.reference.search import nearest_int_array as ni
    f32 = np.float32
    base = np.float32(2.0 ** e).view(np.int32)
    res = {"binade": e, "pairs": 0, "proposed_0": 0, "accepted": 0, "ties": 0, "m_changes": 0}
    with np.errstate(all="ignore"):
        for c0 in range(0, 1 << 23, chunk):
            m = (np.arange(c0, c0 + chunk, dtype=np.int32) + base).view(f32)
            M = -m
            iscale = f32(-4.0) / M
            wM = M * M
            aM, bM = (wM * M) * f32(-4), (wM * f32(-4)) * f32(-4)
            j0 = (m / f32(8)).view(np.int32)
            for sgn in (1, -1):
                for t in range(-W, W + 1):
                    z = (j0 + np.int32(t)).view(f32) * f32(sgn)
                    wz = z * z
                    L0 = np.clip(ni(iscale * z), -4, 3)
                    La = np.clip(ni((z * bM) / aM), -4, 3)       # proposal in the exact state {M}
                    laf = La.astype(f32)
                    sx, s2 = aM + (wz * z) * laf, bM + (wz * laf) * laf
                    added = (La != 0) & (s2 > 0) & ((sx * sx) * bM > (aM * aM) * s2)
                    for Lz, reach in ((L0, L0 != 0), (La, added)):
                        lf = Lz.astype(f32)
                        az, bz = (wz * z) * lf, (wz * lf) * lf
                        X, Y = aM + az, bM + bz
                        sxM, s2M = X - aM, Y - bM
                        res["m_changes"] += int((reach & (sxM > 0) & (np.clip(ni((M * s2M) / sxM), -4, 3) != -4)).sum())
                        slx, sl2 = X - az, Y - bz
                        nl = np.clip(ni((z * sl2) / slx), -4, 3)
                        p = reach & (slx > 0) & (nl != Lz)
                        nf = nl.astype(f32)
                        slx2, sl22 = slx + (wz * z) * nf, sl2 + (wz * nf) * nf
                        lhs, rhs = (slx2 * slx2) * Y, (X * X) * sl22
                        res["pairs"] += int(reach.sum())
                        res["proposed_0"] += int((p & (nl == 0)).sum())
                        res["accepted"] += int((p & (sl22 > 0) & (lhs > rhs)).sum())
                        res["ties"] += int((p & (sl22 > 0) & (lhs == rhs)).sum())
    return res


def run_exhaustive_q3(binades: str) -> int:
    lo, hi = (int(v) for v in binades.split(".."))
    bad = 0
    for e in range(lo, hi + 1):
        t0 = time.perf_counter()
        r = q3_pair_scan(e)
        bad += r["accepted"] + r["m_changes"]
        print(r, f"{time.perf_counter() - t0:.0f}s", flush=True)
    print(f"# pairs {{M, z}}: {bad} accepted removals or changes of M's level in binades {lo}..{hi}")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", default="")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per mutant")
    ap.add_argument("--construct", default="", help="qp-trial-split: rebuild QP_TRIAL")
    ap.add_argument("--simulate", default="", help="q3: vectorised make_q3_quants search")
    ap.add_argument("--groups", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exhaustive-q3", default="", metavar="LO..HI",
                    help="the {M, z} pair scan of make_q3_quants over binades 2^LO..2^HI (e.g. -22..20)")
    ap.add_argument("--trace-q3", type=float, default=0.0, metavar="SECONDS",
                    help="trace make_q3_quants over random and removal-prone groups: removals, low visits")
    ap.add_argument("--roundtrip-q3", type=float, default=0.0, metavar="SECONDS",
                    help="step (e) of docs/vectors.md with 1..14 other levels near |M|/8")
    ap.add_argument("--drifted-pair-q3", type=float, default=0.0, metavar="SECONDS",
                    help="the state {M, z} with sums a few steps off: where the mutant would differ")
    ap.add_argument("--chain-q3", type=float, default=0.0, metavar="SECONDS",
                    help="directed search of helper chains ending in a drifted pair state")
    ap.add_argument("--helpers", type=int, default=2, help="--chain-q3: helpers (1..4)")
    ap.add_argument("--q3-margins", action="store_true",
                    help="check the inequalities of the q3-accept-no-sl2-check proof (exact rationals)")
    ap.add_argument("--first-removal-q3", default="", metavar="H:LO:HI",
                    help="every M in [LO, HI): can the last of H helpers be set back to 0")
    args = ap.parse_args(argv)
    if args.q3_margins:
        q3_margins()
        return 0
    if args.first_removal_q3:
        return run_first_removal_q3(args.first_removal_q3)
    if args.chain_q3:
        return run_chain_q3(args.chain_q3, args.seed, args.helpers)
    if args.roundtrip_q3:
        return run_roundtrip_q3(args.roundtrip_q3, args.seed)
    if args.drifted_pair_q3:
        return run_drifted_pair_q3(args.drifted_pair_q3, args.seed)
    if args.trace_q3:
        return run_trace_q3(args.trace_q3, args.seed)
    if args.exhaustive_q3:
        return run_exhaustive_q3(args.exhaustive_q3)
    if args.simulate:
        return run_simulate_q3(args.groups, args.budget, args.seed)
    if args.construct:
        from ggspec.conformance import libggml
        return run_construct(args.construct, libggml.load())
    if not args.ids:
        ap.error("--ids, --construct or --simulate")
    from ggspec.conformance import libggml
    from ggspec.vectors import generate as gen
    oracle = libggml.load()
    for mid in args.ids.split(","):
        m = catalogue.BY_ID[mid.strip()]
        t0 = time.perf_counter()
        found = search(m, args.seeds, args.budget, oracle, gen)
        dt = time.perf_counter() - t0
        if found:
            for tname, rec, seed, imrec in found:
                print(f'    ("{tname}", "{rec}", {seed}, {imrec!r}, "{m.id}"),   # {dt:.0f}s', flush=True)
        else:
            print(f"# {m.id}: nothing found in {dt:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
