"""Fresh random inputs, every live type: ggspec.reference against live libggml.

Quantize: equal bytes (with and without an importance matrix where ggml takes one).
Dequantize: equal uint32 views, on the oracle's own blocks and on random block bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.conformance.strategies import block_bytes, imatrices, rows
from ggspec.reference.types import LIVE_TYPES

pytestmark = pytest.mark.oracle

SLOW = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"}  # python i-quant searches: fewer, smaller examples

QUANTIZABLE = [t for t in LIVE_TYPES if t.quantize_chunk or t.name in ("Q8_1", "Q8_K")]
DEQUANTIZABLE = [t for t in LIVE_TYPES if t.to_float or t.name == "Q8_K"]


def _require(op, t):
    if not reference.supports(op, t):
        pytest.fail(f"the reference does not implement {op} for {t.name}")


@pytest.mark.parametrize("t", QUANTIZABLE, ids=lambda t: t.name)
def test_quantize_matches_libggml(oracle, t):
    _require("quantize", t)
    n_ex = 4 if t.name in SLOW else None

    @settings(max_examples=n_ex) if n_ex else (lambda f: f)
    @given(data=st.data())
    def check(data):
        x = data.draw(rows(t, max_rows=1 if t.name in SLOW else 2,
                           max_blocks_per_row=1 if t.name in SLOW else None))
        use_im = t.requires_imatrix or (t.quantize_chunk and t.family != "float" and data.draw(st.booleans()))
        im = data.draw(imatrices(x.shape[1])) if use_im else None
        expected = oracle.quantize(t, x, im)
        got = reference.quantize(t, x, im)
        assert_bytes_equal(got, expected, f"{t.name} quantize (imatrix={im is not None})", t.type_size)
        if oracle.has_to_float(t) and reference.supports("dequantize", t):
            assert_bits_equal(reference.dequantize(t, got, x.size), oracle.to_float(t, expected, x.size),
                              f"{t.name} dequantize of quantized data")

    check()


@pytest.mark.parametrize("t", DEQUANTIZABLE, ids=lambda t: t.name)
def test_dequantize_random_blocks_matches_libggml(oracle, t):
    _require("dequantize", t)

    @given(block_bytes(t, max_blocks=4 if t.block_size > 1 else 64))
    def check(case):
        raw, n = case
        assert_bits_equal(reference.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t.name} dequantize")

    check()


def test_dequantize_rejects_short_input():
    from ggspec.errors import ShapeError
    with pytest.raises(ShapeError):
        reference.dequantize("F16", b"\x00" * 3, 2)
    with pytest.raises(ShapeError):
        reference.dequantize("F32", b"\x00" * 8, 3)


def test_quantize_rejects_bad_shapes():
    from ggspec.errors import ShapeError
    with pytest.raises(ShapeError):
        reference.quantize("F16", np.zeros((2, 3), np.float64))
    with pytest.raises(ShapeError):
        reference.quantize("F16", np.zeros((2, 2, 2), np.float32))
