"""Q1_0 and Q2_0 against live libggml, plus oracle-free properties of the formats."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.conformance.strategies import block_bytes, imatrices, rows
from ggspec.reference.fp import fp16
from ggspec.reference.types import get_type

f32 = np.float32
LOWBIT = ["Q1_0", "Q2_0"]


def _check_quantize(oracle, t, x, im):
    tt = get_type(t)
    expected = oracle.quantize(t, x, im)
    got = reference.quantize(t, x, im)
    assert_bytes_equal(got, expected, f"{t} quantize (imatrix={im is not None})", tt.type_size)
    assert_bits_equal(reference.dequantize(t, got, x.size), oracle.to_float(t, expected, x.size),
                      f"{t} dequantize of quantized data")


@pytest.mark.oracle
@pytest.mark.parametrize("t", LOWBIT)
@given(data=st.data())
def test_quantize_matches_libggml(oracle, t, data):
    x = data.draw(rows(t, max_rows=2, max_blocks_per_row=4))
    im = data.draw(imatrices(x.shape[1])) if data.draw(st.booleans()) else None
    _check_quantize(oracle, t, x, im)


def _special_rows(n):
    rng = np.random.default_rng(99)
    base = rng.standard_normal(n).astype(np.float32)
    out = {
        "zeros": np.zeros(n, np.float32),
        "negative_zeros": np.full(n, -0.0, np.float32),
        "constant": np.full(n, -0.7, np.float32),
        "outlier": np.where(np.arange(n) == 3, 500.0, base * 0.01).astype(np.float32),
        "halves": (rng.integers(-4, 5, n) * 0.25).astype(np.float32),  # x/d = ±0.5 ties for Q2_0
        "subnormal": (base * 1e-41).astype(np.float32),
        "huge": (base * 1e37).astype(np.float32),
        "large_sum": np.full(n, 3e38, np.float32),  # Q1_0's sum of |x| overflows to Inf
    }
    for name, v in (("nan", np.nan), ("inf", np.inf), ("neg_inf", -np.inf)):
        x = base.copy()
        x[7] = v
        out[name] = x
    return out


SPECIAL = _special_rows(256)


@pytest.mark.oracle
@pytest.mark.parametrize("t", LOWBIT)
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_quantize_special_rows(oracle, t, kind):
    x = SPECIAL[kind].reshape(1, -1)
    _check_quantize(oracle, t, x, None)
    _check_quantize(oracle, t, x, np.ones(x.shape[1], np.float32))


@pytest.mark.oracle
@pytest.mark.parametrize("t", LOWBIT)
@given(data=st.data())
def test_dequantize_random_blocks_matches_libggml(oracle, t, data):
    raw, n = data.draw(block_bytes(t, max_blocks=8))
    assert_bits_equal(reference.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t} dequantize")


@pytest.mark.oracle
@pytest.mark.parametrize("t", LOWBIT)
def test_dequantize_every_fp16_scale(oracle, t):
    tt = get_type(t)
    b = np.random.default_rng(8).integers(0, 256, (65536, tt.type_size), dtype=np.uint8)
    h = np.arange(65536, dtype=np.uint32)
    b[:, 0], b[:, 1] = h & 0xFF, h >> 8
    raw, n = b.tobytes(), 65536 * tt.block_size
    assert_bits_equal(reference.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t} dequantize")


# --------------------------------------------------------------------------------------------------
# oracle-free

def test_layouts():
    assert (get_type("Q1_0").block_size, get_type("Q1_0").type_size) == (128, 18)
    assert (get_type("Q2_0").block_size, get_type("Q2_0").type_size) == (64, 18)
    x = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
    assert len(reference.quantize("Q1_0", x)) == 2 * 2 * 18
    assert len(reference.quantize("Q2_0", x)) == 2 * 4 * 18


@given(seed=st.integers(0, 2**32 - 1))
def test_q1_0_keeps_signs_and_the_mean_magnitude(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(128).astype(np.float32)
    y = reference.dequantize("Q1_0", reference.quantize("Q1_0", x[None]), 128)
    assert np.all(np.signbit(y) == (x < 0))
    mean_abs = float(np.mean(np.abs(x.astype(np.float64))))
    assert abs(float(np.abs(y[0])) - mean_abs) <= mean_abs * 2.0**-10


def test_q1_0_bit_order_is_lsb_first():
    x = -np.ones(128, np.float32)
    x[0] = x[9] = x[127] = 1.0
    raw = reference.quantize("Q1_0", x[None])
    qs = raw[2:]
    assert qs[0] == 0x01 and qs[1] == 0x02 and qs[15] == 0x80 and sum(qs) == 0x83
    assert raw[:2] == np.float16(1.0).tobytes()


@given(seed=st.integers(0, 2**32 - 1), e=st.integers(-12, 12))
def test_q2_0_reproduces_a_three_level_grid(seed, e):
    """x in {-d, 0, +d} with ±d present: exact round trip (the +2d level is never produced)."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-1, 2, 64)
    q[5] = 1
    x = (q * 2.0**e).astype(np.float32) + f32(0.0)
    raw = reference.quantize("Q2_0", x[None])
    assert_bits_equal(reference.dequantize("Q2_0", raw, 64), x, "Q2_0 roundtrip")
    levels = np.unpackbits(np.frombuffer(raw[2:], np.uint8), bitorder="little").reshape(-1, 2)
    assert not np.any((levels[:, 0] == 1) & (levels[:, 1] == 1))  # no level 3


@given(data=st.data())
def test_q2_0_error_is_at_most_half_the_scale(data):
    x = data.draw(rows("Q2_0", max_rows=1, max_blocks_per_row=4))[0]
    if not np.all(np.isfinite(x)) or np.abs(x).max() > 1e4:
        return
    y = reference.dequantize("Q2_0", reference.quantize("Q2_0", x[None]), x.size)
    for xb, yb in zip(x.reshape(-1, 64), y.reshape(-1, 64)):
        d = float(fp16(np.abs(xb).max()))
        err = np.abs(xb.astype(np.float64) - yb)
        assert np.all(err <= 0.5 * float(np.abs(xb).max()) + abs(d - float(np.abs(xb).max())) + 2.0**-24)
