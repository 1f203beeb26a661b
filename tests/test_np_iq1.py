"""The numpy backend's vectorized IQ1_S / IQ1_M quantizers: byte-exact against the vectors and live libggml.

Every expected byte string comes from ggml (the vector files or ``ggml_quantize_chunk`` called now).
Besides ordinary data, the cases push each internal path of ``accel/_np/iq1.py``: sub-blocks skipped
as all-zero, sub-blocks outside the "tame" range (exact candidate-by-candidate scan), ties in the
sort and in the split scores, neighbour searches with several near-equal candidates (zero
importance), and super-blocks with no scale at all.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from ggspec.accel._np import iq1
from ggspec.accel.numpy_backend import Backend
from ggspec.conformance import adapters, runner, vectors
from ggspec.errors import GGSpecError
from ggspec.reference.types import live_type

B1 = Backend(threads=1)
B2 = Backend(threads=2)
NAMES = ("IQ1_S", "IQ1_M")
VECTORS = vectors.load_all()


def _diff(got: bytes, want: bytes, t) -> str:
    g = np.frombuffer(got, np.uint8).reshape(-1, t.type_size)
    w = np.frombuffer(want, np.uint8).reshape(-1, t.type_size)
    bad = np.flatnonzero((g != w).any(axis=1))
    return f"{t.name}: {bad.size} of {g.shape[0]} blocks differ, first {bad[:5].tolist()}"


def _check(oracle, name, x, imatrix, backend=B1):
    t = live_type(name)
    want = oracle.quantize(t, x, imatrix)
    got = backend.quantize(t, x, imatrix)
    assert got == want, _diff(got, want, t)


def test_quantizers_are_vectorized():
    assert set(NAMES) <= set(iq1.QUANT)
    assert all(B1.vectorized(n, "quantize") for n in NAMES)


def test_pruned_neighbour_lists_are_dominated_by_listed_neighbours():
    """Every neighbour left out of a pruned list has, in the full list, a neighbour that changes a
    strict subset of its changed coordinates to the same levels (what makes leaving it out safe)."""
    g = iq1._grid()
    for r in range(0, g.full.count.size, 7):
        full = g.full.nb[r, :g.full.count[r]].astype(np.int64)
        kept = set(g.pruned.nb[r, :g.pruned.count[r]].tolist())
        assert kept <= set(full.tolist()) and len(kept) > 0
        code = int(np.flatnonzero(g.row_of_code == r)[0])              # the off-grid point u
        ul = (code >> (2 * np.arange(8))) & 3
        L = g.levels[full].astype(np.int64)
        D = L != ul
        for c in range(full.size):
            if int(full[c]) in kept:
                continue
            sub = (D <= D[c]).all(axis=1) & (D.sum(axis=1) < D[c].sum())
            same = ((L == L[c]) | ~D).all(axis=1)
            assert (sub & same).any(), (r, c)


@pytest.mark.parametrize("name", NAMES)
def test_vectors_quantize_pass(name):
    ops = ("quantize", "quantize+imatrix")
    report = runner.run_file(adapters.AccelImpl("numpy"), VECTORS[name], ops=ops)
    ran = 0
    for op in ops:
        o = report.results.get((name, op))
        if o is None or o.total == 0:
            continue
        assert o.status == "pass", (op, o.failure)
        ran += o.passed
    want = sum(1 for c in VECTORS[name].cases() if getattr(c, "op", None) == "quantize")
    assert ran == want > 0


# --------------------------------------------------------------------------------------------------
# fresh random data vs live ggml_quantize_chunk

def _rows(rng, n_per_row: int) -> np.ndarray:
    """One row per distribution; some blocks overwritten with special patterns."""
    n = n_per_row
    rows = [
        rng.standard_normal(n),
        rng.standard_cauchy(n),                                           # heavy tails
        rng.standard_t(3, n),
        np.round(rng.standard_normal(n) * 2) / 2,                         # many repeated values
        rng.integers(-2, 3, n).astype(np.float64),                        # only 5 distinct values
        np.where(rng.random(n) < 0.7, 0.0, rng.standard_normal(n)),       # mostly zeros
        rng.standard_normal(n) * 1e-30,                                   # tiny: skipped or exact scan
        rng.standard_normal(n) * 1e-6,
        rng.standard_normal(n) * 1e18,                                    # huge
        rng.standard_normal(n) * 1e30,
        np.abs(rng.standard_normal(n)),                                   # one sign only
        -np.abs(rng.standard_normal(n)) * 3,
        rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n)),         # every scale at once
    ]
    x = np.array(rows, dtype=np.float32)
    x[0, :256] = 0.0                                                      # an all-zero super-block
    x[1, 256:512] = -0.0
    x[2, :256] = 1.0                                                      # a constant super-block
    x[3, 256:288] = 0.0                                                   # one zero IQ1_S sub-block
    x[3, 300:316] = -0.0                                                  # one -0.0 IQ1_M sub-block
    x[4, 512:544] = np.tile([0.0, -0.0], 16)                              # +-0 ties in the sort
    return x


def _imatrices(rng, n: int):
    return {
        "squared-uniform": (rng.random(n) ** 2).astype(np.float32),
        "ones": np.ones(n, np.float32),
        "zero-stretch": np.where(np.arange(n) < n // 4, 0.0, rng.random(n)).astype(np.float32),
        "half-zero": np.where(rng.random(n) < 0.5, 0.0, rng.random(n)).astype(np.float32),
        "log-normal": np.exp(rng.standard_normal(n) * 3).astype(np.float32),
        "tiny": (rng.random(n) * 1e-30).astype(np.float32),
        "huge": (rng.random(n) * 1e25).astype(np.float32),
    }


IMATRICES = tuple(_imatrices(np.random.default_rng(0), 8))


@pytest.mark.oracle
@pytest.mark.parametrize("name,imx", [(n, i) for i in IMATRICES + ("none",) for n in NAMES
                                      if not (i == "none" and n == "IQ1_S")])   # IQ1_S requires one
def test_random_rows_match_libggml(oracle, name, imx):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{imx}".encode()))
    n_per_row = 1024
    x = _rows(rng, n_per_row)
    imatrix = None if imx == "none" else _imatrices(rng, n_per_row)[imx]
    _check(oracle, name, x, imatrix)


def _weird(rng, n=512):
    base = rng.standard_normal((4, n)).astype(np.float32)
    naninf = base.copy()
    naninf[0, 5], naninf[1, 300], naninf[2, 7] = np.nan, np.inf, -np.inf
    with np.errstate(over="ignore"):
        huge = (base * 3e38).astype(np.float32)                          # sums overflow to inf
    ims = {"negative": rng.standard_normal(n).astype(np.float32),
           "some-nan": np.where(rng.random(n) < 0.01, np.nan, rng.random(n)).astype(np.float32),
           "some-inf": np.where(rng.random(n) < 0.01, np.inf, rng.random(n)).astype(np.float32),
           "plain": rng.random(n).astype(np.float32)}
    return {"nan-inf-x": naninf, "huge-x": huge, "normal-x": base}, ims


# (x, imatrix) pairs where ggml returns bytes; the others abort in ggml (see the next test)
WEIRD_OK = [("nan-inf-x", "negative"), ("nan-inf-x", "some-nan"), ("nan-inf-x", "plain"),
            ("huge-x", "negative"), ("huge-x", "some-nan"), ("huge-x", "some-inf"), ("huge-x", "plain"),
            ("normal-x", "negative"), ("normal-x", "some-nan")]


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("xk,ik", WEIRD_OK, ids=lambda v: v)
def test_non_finite_and_negative_inputs_match_libggml(oracle, name, xk, ik):
    xs, ims = _weird(np.random.default_rng(3))
    _check(oracle, name, xs[xk], ims[ik])
    if name == "IQ1_M" and xk != "nan-inf-x":
        _check(oracle, name, xs[xk], None)


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_split_scores_out_of_range_match_libggml(oracle, name):
    """Weights in range but split scores above the fast search's range: every sub-block of a chunk
    leaves the fast search (an empty near-max set) and takes ggml's exact scan."""
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((4, 1024)) * 1e9).astype(np.float32)
    _check(oracle, name, x, (rng.random(1024) * 1e-10).astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_nan_scale_raises_where_ggml_aborts(name):
    """An infinite importance makes ggml pick a split whose scale is NaN; it then aborts
    (GGML_ASSERT(scale >= 0), or no neighbour found). Checked against libggml in a subprocess
    while writing this; here the backend must raise instead of returning bytes."""
    xs, ims = _weird(np.random.default_rng(3))
    with pytest.raises(GGSpecError):
        B1.quantize(live_type(name), xs["normal-x"], ims["some-inf"])


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_exact_scan_path_matches_libggml(oracle, name, monkeypatch):
    """With the "tame" range emptied every sub-block takes ggml's candidate-by-candidate scan."""
    monkeypatch.setattr(iq1, "TAME_HI", np.float32(0))
    rng = np.random.default_rng(7)
    x = _rows(rng, 1024)[[0, 3, 4, 5, 9, 12], :512]
    _check(oracle, name, x, _imatrices(rng, 512)["half-zero"])


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_all_neighbours_exact_path_matches_libggml(oracle, name, monkeypatch):
    """With a huge tolerance every neighbour is evaluated exactly (the filter keeps them all)."""
    monkeypatch.setattr(iq1, "NB_TOL", np.float32(1e30))
    rng = np.random.default_rng(8)
    x = _rows(rng, 1024)[[0, 1, 3, 12], :512]
    _check(oracle, name, x, _imatrices(rng, 512)["squared-uniform"])


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_many_subblocks_match_libggml(oracle, name):
    """Enough sub-blocks (half of them with repeated values) that near-ties in the split scores
    occur, including the rare ones where the first threshold's checks fail and another is used."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((48, 4096)).astype(np.float32)
    x[24:] = np.round(x[24:] * 2) / 2
    _check(oracle, name, x, rng.random(4096).astype(np.float32))


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_multi_chunk_threaded_tensor_matches_libggml(oracle, name):
    """Several chunks per call on two threads, rows spanning chunk boundaries, a ragged last chunk."""
    n_per_row = 2304                                   # 9 super-blocks: rows straddle chunk boundaries
    per_chunk = max(1, iq1.CHUNK_SUBBLOCKS[name] * (32 if name == "IQ1_S" else 16) // 256)
    rows = (3 * per_chunk * 256) // n_per_row + 2
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((rows, n_per_row)) * np.exp(rng.uniform(-3, 3, (rows, 1)))).astype(np.float32)
    x[1, :300] = 0.0
    imatrix = (rng.random(n_per_row) ** 2).astype(np.float32)
    imatrix[100:200] = 0.0
    _check(oracle, name, x, imatrix, backend=B2)
    if name == "IQ1_M":
        _check(oracle, name, x, None, backend=B2)
