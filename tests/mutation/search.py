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
``--exhaustive-q3 -22..20`` is that page's step (d), about 20 s per binade.
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


def q3_pair_scan(e: int, W: int = 6, chunk: int = 1 << 19) -> dict:
    """make_q3_quants' state {M: -4, z: +-1}, all else 0, for every float32 M = -(1 + k/2^23)*2^e
    and z within W float32 steps of |M|/8, either sign, z's level from the initial rounding or from
    an addition to {M} alone: how often z is proposed 0, accepted (ggml's test), tied; and whether
    M's proposal ever leaves -4 (docs/vectors.md, q3-accept-no-sl2-check, step (d))."""
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
    args = ap.parse_args(argv)
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
