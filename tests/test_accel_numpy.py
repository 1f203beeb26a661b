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
