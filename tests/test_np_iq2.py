"""The numpy backend's IQ2_XXS / IQ2_XS / IQ2_S quantizers (accel/_np/iq2.py): byte-exact vs the
golden vectors and vs live ggml_quantize_chunk on fresh data."""

from __future__ import annotations

import numpy as np
import pytest

from ggspec import accel
from ggspec.accel import numpy_backend
from ggspec.accel._np import iq2
from ggspec.conformance import adapters, runner, vectors
from ggspec.errors import ImatrixRequiredError
from ggspec.reference.types import live_type

NAMES = ["IQ2_XXS", "IQ2_XS", "IQ2_S"]
B = accel.backend("numpy")
VECTORS = vectors.load_all()


def _first_diff(got: bytes, want: bytes, t) -> str:
    g, w = np.frombuffer(got, np.uint8), np.frombuffer(want, np.uint8)
    if g.size != w.size:
        return f"{g.size} bytes, expected {w.size}"
    d = np.flatnonzero(g != w)
    return f"{d.size} bytes differ, first at {d[:1]} (block {d[:1] // t.type_size})"


@pytest.mark.parametrize("name", NAMES)
def test_quantizer_is_vectorized(name):
    assert name in iq2.QUANT
    assert B.vectorized(name, "quantize")


@pytest.mark.parametrize("name", NAMES)
def test_vectors_quantize_pass(name):
    report = runner.run_file(adapters.AccelImpl("numpy"), VECTORS[name], ops=("quantize", "quantize+imatrix"))
    im = report.results[(name, "quantize+imatrix")]
    assert im.passed > 0 and im.status == "pass", im.failure
    plain = report.results[(name, "quantize")]
    if live_type(name).requires_imatrix:
        assert plain.passed == 0                            # ggml has no plain path for this type
    else:
        assert plain.passed > 0 and plain.status == "pass", plain.failure


@pytest.mark.parametrize("name", ["IQ2_XXS", "IQ2_XS"])
def test_imatrix_required(name):
    with pytest.raises(ImatrixRequiredError):
        B.quantize(name, np.ones((1, 256), np.float32))


# --------------------------------------------------------------------------------------------------
# fresh data against libggml

def _rows(rng, n_per_row: int) -> np.ndarray:
    """Rows that exercise the searches; values kept where ggml's float32 distances cannot overflow
    (ggml aborts then)."""
    nrm = lambda: rng.standard_normal(n_per_row)  # noqa: E731
    rows = [
        nrm(),
        rng.standard_cauchy(n_per_row),                                   # heavy tails
        rng.standard_t(2, n_per_row) * 0.1,
        np.where(rng.random(n_per_row) < 0.7, 0.0, nrm()),                # mostly zeros
        np.round(nrm() * 2) / 2,                                          # many repeated values
        np.round(nrm()),                                                  # few distinct values
        nrm() * 1e-12,                                                    # tiny (above ggml's 1e-15 / 1e-8)
        nrm() * 1e12,                                                     # huge
        np.abs(nrm()),                                                    # one sign only
        -np.abs(nrm()) * 3,
        nrm() * np.repeat(10.0 ** rng.integers(-20, 3, n_per_row // 16), 16),   # scales per 16 weights
    ]
    x = np.array(rows, dtype=np.float32)
    x[0, :256] = 0.0                                                      # an all-zero block
    x[1, 256:512] = -0.0
    x[2, :256] = 1.0                                                      # a constant block
    x[3, 256:288] = 1e-17                                                 # a sub-block below every epsilon
    x[4, :8] = [1, -1, 1, -1, 1, -1, 1, 1]                                # odd sign count, ties
    return x


def _imatrix(rng, n_per_row: int, kind: str) -> np.ndarray:
    im = (rng.random(n_per_row) ** 2).astype(np.float32)
    if kind == "zeros":
        im[: n_per_row // 8] = 0.0                                        # zero importance on a stretch
        im[rng.random(n_per_row) < 0.2] = 0.0                             # and scattered
    elif kind == "spread":
        im = (10.0 ** rng.uniform(-6, 4, n_per_row)).astype(np.float32)
    return im


CASES = [(n, k) for n in NAMES for k in ("plain", "uniform", "zeros", "spread")
         if k != "plain" or not live_type(n).requires_imatrix]


@pytest.mark.oracle
@pytest.mark.parametrize("name,kind", CASES, ids=lambda v: v)
def test_fresh_data_matches_libggml(oracle, name, kind):
    t = live_type(name)
    rng = np.random.default_rng(sum(map(ord, name + kind)))
    n_per_row = 768
    x = _rows(rng, n_per_row)
    imatrix = None if kind == "plain" else _imatrix(rng, n_per_row, kind)
    got = B.quantize(t, x, imatrix)
    want = oracle.quantize(t, x, imatrix)
    assert got == want, f"{name} {kind}: {_first_diff(got, want, t)}"


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_scales_match_libggml(oracle, name, seed):
    # each block a different distribution and scale
    t = live_type(name)
    rng = np.random.default_rng(seed * 101 + len(name))
    nb = 24
    scale = 10.0 ** rng.uniform(-8, 8, (nb, 1))
    x = rng.standard_normal((nb, 256)) * scale
    heavy = rng.random(nb) < 0.3
    x[heavy] = rng.standard_cauchy((int(heavy.sum()), 256)) * scale[heavy]
    x = x.astype(np.float32).reshape(4, -1)
    imatrix = rng.random(x.shape[1]).astype(np.float32)
    imatrix[rng.random(x.shape[1]) < 0.1] = 0.0
    for im in (imatrix, None):
        if im is None and t.requires_imatrix:
            continue
        got = B.quantize(t, x, im)
        want = oracle.quantize(t, x, im)
        assert got == want, f"{name} seed {seed} imatrix {im is not None}: {_first_diff(got, want, t)}"


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_multi_chunk_threaded_matches_libggml(oracle, name):
    t = live_type(name)
    n_per_row = 2560                                                      # 10 super-blocks per row
    rows = 2 * iq2.CHUNK_BLOCKS // 10 + 3                                 # three chunks, ragged end
    rng = np.random.default_rng(17)
    x = rng.standard_normal((rows, n_per_row)).astype(np.float32)
    x[1] *= 1e-3
    x[2] = rng.standard_cauchy(n_per_row)
    imatrix = rng.random(n_per_row).astype(np.float32)
    b2 = numpy_backend.Backend(threads=2)
    assert (rows * n_per_row // 256) > 2 * iq2.CHUNK_BLOCKS
    for im in (imatrix, None):
        if im is None and t.requires_imatrix:
            continue
        got = b2.quantize(t, x, im)
        want = oracle.quantize(t, x, im)
        assert got == want, f"{name} imatrix {im is not None}: {_first_diff(got, want, t)}"


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("path", ["exact-search", "bit-trick-levels"])
def test_fallback_paths_match_libggml(oracle, monkeypatch, name, path):
    # the paths taken only for extreme data, forced on ordinary data: every neighbour list evaluated
    # exactly (no pruning), and levels through ggml's nearest_int bit trick instead of thresholds
    if path == "exact-search":
        monkeypatch.setattr(iq2, "_Z_MAX", -1.0)
    else:
        monkeypatch.setattr(iq2, "_SAFE", np.float32(0.0))
    t = live_type(name)
    rng = np.random.default_rng(7)
    x = _rows(rng, 512)[[0, 1, 3, 4, 10]]
    imatrix = _imatrix(rng, 512, "zeros")
    for im in (imatrix, None):
        if im is None and t.requires_imatrix:
            continue
        got = B.quantize(t, x, im)
        want = oracle.quantize(t, x, im)
        assert got == want, f"{name} {path} imatrix {im is not None}: {_first_diff(got, want, t)}"
