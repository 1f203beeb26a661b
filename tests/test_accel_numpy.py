"""The numpy backend: bit-exact against the vectors and against live libggml, including chunking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from ggspec import accel
from ggspec.conformance import adapters, runner, vectors
from ggspec.conformance.compare import assert_bits_equal
from ggspec.conformance.strategies import block_bytes
from ggspec.reference.types import LIVE_TYPES

B = accel.backend("numpy")
VECTORS = vectors.load_all()
VECTORIZED = [t for t in LIVE_TYPES if B.vectorized(t)]


def test_every_live_type_dequantizes():
    assert all(B.supports("dequantize", t) for t in LIVE_TYPES)
    # the hot types are vectorized, not a per-block fallback
    for name in ("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"):
        assert B.vectorized(name), name


@pytest.mark.parametrize("name", sorted(VECTORS), ids=str)
def test_vectors_pass(name):
    report = runner.run_file(adapters.AccelImpl("numpy"), VECTORS[name], ops=("dequantize",))
    o = report.results[(name, "dequantize")]
    assert o.status == "pass", o.failure


@pytest.mark.oracle
@pytest.mark.parametrize("t", [t for t in VECTORIZED if t.to_float or t.name == "Q8_K"], ids=lambda t: t.name)
def test_random_blocks_match_libggml(oracle, t):
    @given(block_bytes(t, max_blocks=8 if t.block_size > 1 else 256))
    def check(case):
        raw, n = case
        assert_bits_equal(B.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t.name}")
    check()


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["Q4_0", "Q4_K", "Q6_K", "Q8_0"])
def test_multi_chunk_threaded_tensor_matches_libggml(oracle, name):
    from ggspec.accel import numpy_backend as nb
    t = next(t for t in LIVE_TYPES if t.name == name)
    n_blocks = nb.CHUNK_ELEMENTS // t.block_size * 2 + 7                 # several chunks on two threads, ragged end
    x = np.random.default_rng(5).standard_normal(n_blocks * t.block_size).astype(np.float32)
    raw = oracle.quantize(t, x.reshape(-1, t.block_size * 8 if n_blocks % 8 == 0 else t.block_size), None)
    assert_bits_equal(B.dequantize(t, raw, x.size), oracle.to_float(t, raw, x.size), name)


# --------------------------------------------------------------------------------------------------
# quantize: the vectorized quantizers (the grid i-quants have their own files, test_np_iq*.py)

from ggspec.accel._np import iq1, iq2, iq3  # noqa: E402

_GRID_IQ = set(iq1.QUANT) | set(iq2.QUANT) | set(iq3.QUANT)
QUANT_TYPES = [t for t in LIVE_TYPES if B.vectorized(t, "quantize") and t.name not in _GRID_IQ]


def test_quantizers_are_vectorized():
    # every type ggml quantizes outside the grid i-quants has a vectorized quantizer, not a fallback
    names = {t.name for t in QUANT_TYPES}
    for name in ("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
                 "Q5_K", "Q6_K", "Q8_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4"):
        assert name in names, name


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_vectors_quantize_pass(t):
    if t.name not in VECTORS:
        pytest.skip(f"no vector file for {t.name}")
    report = runner.run_file(adapters.AccelImpl("numpy"), VECTORS[t.name], ops=("quantize", "quantize+imatrix"))
    assert report.results[(t.name, "quantize")].status == "pass", report.results[(t.name, "quantize")].failure
    im = report.results.get((t.name, "quantize+imatrix"))
    if t.block_size > 1 and t.quantize_chunk:          # ggml takes an importance matrix for this type
        assert im is not None and im.status == "pass", im and im.failure


def _hard_rows(rng, n_per_row: int, bs: int) -> np.ndarray:
    """Rows that exercise the searches: normal, heavy tails, ties, zeros, tiny and huge scales, -0.0."""
    rows = [
        rng.standard_normal(n_per_row),
        rng.standard_cauchy(n_per_row),
        np.round(rng.standard_normal(n_per_row) * 2) / 2,                 # many repeated values
        np.where(rng.random(n_per_row) < 0.7, 0.0, rng.standard_normal(n_per_row)),
        rng.standard_normal(n_per_row) * 1e-30,
        rng.standard_normal(n_per_row) * 1e30,
        np.abs(rng.standard_normal(n_per_row)),                            # one sign only
        -np.abs(rng.standard_normal(n_per_row)) * 3,
    ]
    x = np.array(rows, dtype=np.float32)
    x[0, :bs] = 0.0                                                         # an all-zero block
    x[1, bs:2 * bs] = -0.0
    x[2, :bs] = 1.0                                                         # a constant block
    return x


# (type, with imatrix): the imatrix path where ggml_quantize_chunk has one (not Q8_1 / Q8_K, which
# only have reference row quantizers), the plain path where ggml allows it
QUANT_CASES = [(t, im) for t in QUANT_TYPES for im in (False, True)
               if (not im or t.quantize_chunk) and (im or not t.requires_imatrix)]


@pytest.mark.oracle
@pytest.mark.parametrize("t,with_imatrix", QUANT_CASES, ids=lambda v: v.name if hasattr(v, "name") else ("imatrix" if v else "plain"))
def test_quantize_matches_libggml(oracle, t, with_imatrix):
    rng = np.random.default_rng(t.id * 7 + with_imatrix)
    bs = t.block_size if t.block_size > 1 else 32
    n_per_row = bs * 6
    x = _hard_rows(rng, n_per_row, bs)
    imatrix = None
    if with_imatrix:
        imatrix = (rng.random(n_per_row) ** 2).astype(np.float32)
        imatrix[: n_per_row // 8] = 0.0                                     # zero importance on a stretch
    got = B.quantize(t, x, imatrix)
    want = oracle.quantize(t, x, imatrix)
    assert got == want, f"{t.name}: first differing byte {np.flatnonzero(np.frombuffer(got, np.uint8) != np.frombuffer(want, np.uint8))[:1]}"


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["Q4_0", "Q4_K", "Q6_K", "Q2_K", "IQ4_XS"])
def test_quantize_multi_chunk_threaded_matches_libggml(oracle, name):
    from ggspec.accel._np import quant
    t = next(t for t in LIVE_TYPES if t.name == name)
    n_per_row = 4096
    rows = quant.CHUNK_ELEMENTS * 3 // n_per_row + 3                    # several chunks, ragged end
    x = np.random.default_rng(11).standard_normal((rows, n_per_row)).astype(np.float32)
    imatrix = np.random.default_rng(12).random(n_per_row).astype(np.float32)
    for im in (None, imatrix):
        if im is None and t.requires_imatrix:
            continue
        assert B.quantize(t, x, im) == oracle.quantize(t, x, im), name


@pytest.mark.parametrize("n", [1, 2, 8, 9, 16, 32, 33, 256, 1000])
@pytest.mark.parametrize("g", [1, 2, 3, 64, 2049])
def test_seq_sum_is_c_order(n, g):
    """seq_sum must be C's ``s = 0.0f; for (i) s += a[i];`` (written out here) for every shape and
    layout, on data where the order of additions changes the bits; -0.0 sums come out +0.0."""
    from ggspec.accel._np.common import seq_sum
    rng = np.random.default_rng(n * 7919 + g)
    a = (rng.standard_normal((n, g)) * np.exp(rng.uniform(-25, 25, (n, g)))).astype(np.float32)
    a[:, 0] = -0.0
    for arr in (a, np.asfortranarray(a), a[:, ::-1]):
        want = np.zeros(g, np.float32)
        for i in range(n):
            want = (want + arr[i]).astype(np.float32)
        got = seq_sum(arr, axis=0)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        got_t = seq_sum(np.ascontiguousarray(arr.T), axis=-1)
        assert np.array_equal(got_t.view(np.uint32), want.view(np.uint32))


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["F16", "BF16"])
def test_float_conversions_every_pattern_class(oracle, name):
    """F16/BF16 both ways on every fp16/bf16 pattern and on 2**20 random float32 patterns (NaN
    payloads, signalling NaNs, subnormals, overflow to inf, ties), against ggml."""
    t = next(t for t in LIVE_TYPES if t.name == name)
    every = np.arange(65536, dtype=np.uint16).tobytes()
    assert_bits_equal(B.dequantize(t, every, 65536), oracle.to_float(t, every, 65536), name)
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    bits[:4096] = (bits[:4096] & 0x807FFFFF) | 0x7F800000           # NaN / inf exponents
    bits[4096:8192] = (bits[4096:8192] & 0x80001FFF) | (rng.integers(100, 115, 4096).astype(np.uint32) << 23)
    x = bits.view(np.float32).reshape(-1, 1024)
    assert B.quantize(t, x) == oracle.quantize(t, x), name


def test_iq4_level_lookup_equals_ggml_binary_search():
    """The floor(x) table of accel/_np/iq4.py against best_index_int8 as the reference writes it
    (ggml's binary search), on every integer and its neighbours, random values, NaN, inf and -0.0."""
    from ggspec.accel._np import iq4
    from ggspec.reference.iquants import KVALUES_IQ4NL, best_index_int8
    ints = np.arange(-140, 141).astype(np.float32)
    x = np.concatenate([ints, np.nextafter(ints, np.float32(-1e9)), np.nextafter(ints, np.float32(1e9)),
                        ints + np.float32(0.5), np.random.default_rng(0).standard_normal(100_000).astype(np.float32) * 80,
                        np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, -3e38], np.float32)]).astype(np.float32)
    want = best_index_int8(KVALUES_IQ4NL, x)
    assert np.array_equal(iq4.best_index(x).astype(np.int64), want)
    assert np.array_equal(iq4.nearest_level(x).view(np.uint32), KVALUES_IQ4NL.astype(np.float32)[want].view(np.uint32))
