"""TQ1_0 and TQ2_0 against live libggml, plus oracle-free properties of the base-3 packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.conformance.strategies import block_bytes, imatrices, rows
from ggspec.reference import ternary
from ggspec.reference.types import get_type

f32 = np.float32
TERNARY = ["TQ1_0", "TQ2_0"]


def _check_quantize(oracle, t, x, im):
    tt = get_type(t)
    expected = oracle.quantize(t, x, im)
    got = reference.quantize(t, x, im)
    assert_bytes_equal(got, expected, f"{t} quantize (imatrix={im is not None})", tt.type_size)
    assert_bits_equal(reference.dequantize(t, got, x.size), oracle.to_float(t, expected, x.size),
                      f"{t} dequantize of quantized data")


@pytest.mark.oracle
@pytest.mark.parametrize("t", TERNARY)
@given(data=st.data())
def test_quantize_matches_libggml(oracle, t, data):
    x = data.draw(rows(t, max_rows=2, max_blocks_per_row=2))
    im = data.draw(imatrices(x.shape[1])) if data.draw(st.booleans()) else None
    _check_quantize(oracle, t, x, im)


def _special_rows(n):
    rng = np.random.default_rng(77)
    base = rng.standard_normal(n).astype(np.float32)
    out = {
        "zeros": np.zeros(n, np.float32),
        "negative_zeros": np.full(n, -0.0, np.float32),
        "ternary": rng.integers(-1, 2, n).astype(np.float32) * f32(0.75),
        "halves": (rng.integers(-2, 3, n) * 0.5).astype(np.float32),  # x/d = ±0.5: lroundf ties
        "constant": np.full(n, 2.0, np.float32),
        "outlier": np.where(np.arange(n) == 200, -300.0, base * 0.01).astype(np.float32),
        "subnormal": (base * 1e-42).astype(np.float32),
        "huge": (base * 1e37).astype(np.float32),
    }
    for name, pos, v in (("nan", 5, np.nan), ("nan_last", n - 1, np.nan), ("inf", 9, np.inf),
                         ("neg_inf_last", n - 1, -np.inf)):
        x = base.copy()
        x[pos] = v
        out[name] = x
    return out


SPECIAL = _special_rows(256)


@pytest.mark.oracle
@pytest.mark.parametrize("t", TERNARY)
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_quantize_special_rows(oracle, t, kind):
    _check_quantize(oracle, t, SPECIAL[kind].reshape(1, -1), None)


@pytest.mark.oracle
@pytest.mark.parametrize("t", TERNARY)
@given(data=st.data())
def test_dequantize_random_blocks_matches_libggml(oracle, t, data):
    raw, n = data.draw(block_bytes(t, max_blocks=4))
    assert_bits_equal(reference.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t} dequantize")


@pytest.mark.oracle
@pytest.mark.parametrize("t", TERNARY)
def test_dequantize_every_byte_and_fp16_scale(oracle, t):
    """Every byte value in every position (including the TQ1_0 bytes >= 243 that the quantizer never
    writes), and all 65536 scales."""
    tt = get_type(t)
    off = tt.type_size - 2
    b = np.random.default_rng(9).integers(0, 256, (65536, tt.type_size), dtype=np.uint8)
    b[:, :off] = (np.arange(65536)[:, None] + np.arange(off)[None, :]) % 256
    h = np.arange(65536, dtype=np.uint32)
    b[:, off], b[:, off + 1] = h & 0xFF, h >> 8
    raw, n = b.tobytes(), 65536 * 256
    assert_bits_equal(reference.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t} dequantize")


# --------------------------------------------------------------------------------------------------
# oracle-free

def test_layouts():
    assert (get_type("TQ1_0").block_size, get_type("TQ1_0").type_size) == (256, 54)
    assert (get_type("TQ2_0").block_size, get_type("TQ2_0").type_size) == (256, 66)
    x = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
    assert len(reference.quantize("TQ1_0", x)) == 3 * 2 * 54
    assert len(reference.quantize("TQ2_0", x)) == 3 * 2 * 66


@pytest.mark.parametrize("t", TERNARY)
@given(seed=st.integers(0, 2**32 - 1), e=st.integers(-14, 14))
def test_ternary_grid_round_trips_exactly(t, seed, e):
    """x in {-d, 0, d} with d = 2**e present: every element must come back bit for bit, which checks
    the element order of the packing as well as the arithmetic."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-1, 2, 256)
    q[rng.integers(0, 256)] = -1
    x = (q * 2.0**e).astype(np.float32) + f32(0.0)
    y = reference.dequantize(t, reference.quantize(t, x[None]), 256)
    assert_bits_equal(y, x, f"{t} roundtrip")


def test_tq1_0_every_five_digit_word_decodes_back():
    """ceil(N*256/243) then (b*3**k mod 256)*3 >> 8 recovers all five digits, for all 243 words."""
    for N in range(243):
        digits = [(N // 3 ** (4 - k)) % 3 for k in range(5)]
        b = int(ternary._ceil_to_byte(np.array([N]))[0])
        assert [(((b * 3**k) & 0xFF) * 3) >> 8 for k in range(5)] == digits


def test_tq2_0_element_order():
    x = np.zeros(256, np.float32)
    x[0], x[32], x[33], x[128 + 96 + 5] = 1.0, -1.0, 1.0, -1.0
    raw = reference.quantize("TQ2_0", x[None])
    qs = np.frombuffer(raw[:64], np.uint8)
    # byte m of the first 32 holds x[m], x[m+32], x[m+64], x[m+96] in bits 0-1, 2-3, 4-5, 6-7
    assert qs[0] == (2 | 0 << 2 | 1 << 4 | 1 << 6)  # x[0] = +1, x[32] = -1, x[64] = x[96] = 0
    assert qs[1] == (1 | 2 << 2 | 1 << 4 | 1 << 6)  # x[1] = 0, x[33] = +1
    assert (qs[37] >> 6) & 3 == 0  # x[128 + 96 + 5] = -1
