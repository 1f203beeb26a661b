"""Reference quantizers next to libggml's, same data, same run (pytest-benchmark).

    python -m pytest benchmarks/test_reference_quantizers.py --benchmark-only \
        --benchmark-json=/tmp/refq.json && python benchmarks/reference_report.py /tmp/refq.json

No speed target for the reference (it is written for reading); this measures how far it is from C.
"""

from __future__ import annotations

import numpy as np
import pytest

from ggspec import reference
from ggspec.reference.types import LIVE_TYPES

ROWS, N_PER_ROW = 4, 256          # the reference is slow: a small tensor, same bytes for both
TYPES = [t for t in LIVE_TYPES if t.quantize_chunk and t.family not in ("float",)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, N_PER_ROW)).astype(np.float32)
    im = np.exp(rng.standard_normal(N_PER_ROW)).astype(np.float32)
    return x, im


@pytest.mark.parametrize("impl", ["reference", "libggml"])
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_quantize(benchmark, lib, data, t, impl):
    x, im = data
    imatrix = im if t.family in ("iquant", "kquant", "legacy") else None
    fn = (lambda: reference.quantize(t, x, imatrix)) if impl == "reference" else (lambda: lib.quantize_chunk(t, x, imatrix))
    benchmark.group = t.name
    benchmark.extra_info.update(type=t.name, impl=impl, n_weights=x.size, imatrix=imatrix is not None)
    out = benchmark.pedantic(fn, rounds=3 if impl == "reference" else 50, iterations=1, warmup_rounds=1)
    assert out == lib.quantize_chunk(t, x, imatrix)   # same bytes, or the timing means nothing
