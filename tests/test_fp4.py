"""MXFP4 and NVFP4 against live libggml, plus oracle-free properties of the e2m1 formats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.conformance.strategies import imatrices, rows
from ggspec.reference import fp4
from ggspec.reference.types import get_type

f32 = np.float32
FP4 = ["MXFP4", "NVFP4"]


def _check_quantize(oracle, t, x, im=None):
    tt = get_type(t)
    expected = oracle.quantize(t, x, im)
    got = reference.quantize(t, x, im)
    assert_bytes_equal(got, expected, f"{t} quantize (imatrix={im is not None})", tt.type_size)
    assert_bits_equal(reference.dequantize(t, got, x.size), oracle.to_float(t, expected, x.size),
                      f"{t} dequantize of quantized data")


@pytest.mark.oracle
@pytest.mark.parametrize("t", FP4)
@given(data=st.data())
def test_quantize_matches_libggml(oracle, t, data):
    x = data.draw(rows(t, max_rows=2, max_blocks_per_row=8))
    im = data.draw(imatrices(x.shape[1])) if data.draw(st.booleans()) else None
    _check_quantize(oracle, t, x, im)


@pytest.mark.oracle
@pytest.mark.parametrize("t", FP4)
@given(data=st.data())
def test_quantize_any_finite_bits_matches_libggml(oracle, t, data):
    """Rows of arbitrary finite float32 bit patterns: every exponent, subnormals, signed zeros."""
    n = get_type(t).block_size * data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 2**32 - 1))
    w = np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    x = w.view(np.float32)
    x = np.where(np.isfinite(x), x, f32(1.0)).astype(np.float32)
    _check_quantize(oracle, t, x.reshape(1, -1))


@pytest.mark.oracle
def test_mxfp4_shared_exponent_next_to_every_power_of_two(oracle):
    """floorf(log2f(amax)) rounds up just below 2**k (for all k but -1..2): blocks whose amax is one of
    the 8 largest float32 values below each power of two, or the power itself, at every exponent."""
    words = [(ex << 23) + m for ex in range(255) for m in list(range(0x7FFFF8, 0x800000)) + [0]]
    amax = np.array(words, np.uint32).view(np.float32)
    amax = amax[amax > 0]
    rng = np.random.default_rng(4)
    x = (rng.uniform(-1, 1, (amax.size, 32)) * amax[:, None]).astype(np.float32)
    x[np.arange(amax.size), rng.integers(0, 32, amax.size)] = amax
    _check_quantize(oracle, "MXFP4", x.reshape(1, -1))


@pytest.mark.oracle
@pytest.mark.parametrize("t", FP4)
@pytest.mark.parametrize("scale", [2.0**-3, 1.0, 2.0**10, 0.75, 3.0 / 7.0])
def test_quantize_ties_between_codes(oracle, t, scale):
    """Values exactly halfway between neighbouring e2m1 values (the first code must win)."""
    rng = np.random.default_rng(int(scale * 1000))
    kv = np.array([0, 1, 2, 3, 4, 6, 8, 12], np.float64)
    points = np.concatenate([(kv[:-1] + kv[1:]) / 2, kv])
    bs = get_type(t).block_size
    x = rng.choice(points, (16, bs)) * rng.choice([-1.0, 1.0], (16, bs)) * scale
    x[:, ::16] = 12 * scale
    _check_quantize(oracle, t, x.astype(np.float32))


def _special_rows(n):
    rng = np.random.default_rng(55)
    base = rng.standard_normal(n).astype(np.float32)
    out = {
        "zeros": np.zeros(n, np.float32),
        "negative_zeros": np.full(n, -0.0, np.float32),
        "constant": np.full(n, 5.0, np.float32),
        "outlier": np.where(np.arange(n) == 33, 1e4, base).astype(np.float32),
        "subnormal": (base * 1e-42).astype(np.float32),
        "min_subnormal": np.where(np.arange(n) % 2 == 0, 1e-45, -1e-45).astype(np.float32),
        "huge": (base * 1e37).astype(np.float32),
        "max_float": np.full(n, 3.4028235e38, np.float32),
        "above_ue4m3_range": (base * 1e4).astype(np.float32),  # amax/6 > 448 saturates
        "below_ue4m3_range": (base * 1e-5).astype(np.float32),
    }
    for name, pos, v in (("nan", 2, np.nan), ("inf", 3, np.inf), ("neg_inf", 40, -np.inf)):
        x = base.copy()
        x[pos] = v
        out[name] = x
    return out


SPECIAL = _special_rows(128)


@pytest.mark.oracle
@pytest.mark.parametrize("t", FP4)
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_quantize_special_rows(oracle, t, kind):
    _check_quantize(oracle, t, SPECIAL[kind].reshape(1, -1))


@pytest.mark.oracle
def test_mxfp4_dequantize_every_exponent_and_code(oracle):
    """All 256 e8m0 bytes (0 is 2**-128, a subnormal; 255 is 2**127) with all 256 qs bytes."""
    b = np.zeros((256 * 16, 17), np.uint8)
    b[:, 0] = np.repeat(np.arange(256), 16)
    b[:, 1:] = (np.arange(256 * 16)[:, None] * 16 + np.arange(16)[None, :]) % 256
    raw, n = b.tobytes(), b.shape[0] * 32
    assert_bits_equal(reference.dequantize("MXFP4", raw, n), oracle.to_float("MXFP4", raw, n), "MXFP4 dequantize")


@pytest.mark.oracle
def test_nvfp4_dequantize_every_ue4m3_scale_and_code(oracle):
    """All 256 ue4m3 bytes in every sub-block position (sign bit ignored, 0x7F and 0x00 are zero)."""
    b = np.random.default_rng(3).integers(0, 256, (1024, 36), dtype=np.uint8)
    for s in range(4):
        b[:, s] = (np.arange(1024) + 67 * s) % 256
    raw, n = b.tobytes(), b.shape[0] * 64
    assert_bits_equal(reference.dequantize("NVFP4", raw, n), oracle.to_float("NVFP4", raw, n), "NVFP4 dequantize")


@pytest.mark.oracle
@pytest.mark.parametrize("t", FP4)
@given(seed=st.integers(0, 2**32 - 1), nb=st.integers(1, 8))
def test_dequantize_random_blocks_matches_libggml(oracle, t, seed, nb):
    tt = get_type(t)
    raw = np.random.default_rng(seed).integers(0, 256, nb * tt.type_size, dtype=np.uint8).tobytes()
    n = nb * tt.block_size
    assert_bits_equal(reference.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{t} dequantize")


# --------------------------------------------------------------------------------------------------
# oracle-free

def test_layouts_and_table():
    assert (get_type("MXFP4").block_size, get_type("MXFP4").type_size) == (32, 17)
    assert (get_type("NVFP4").block_size, get_type("NVFP4").type_size) == (64, 36)
    # e2m1: sign, 2 exponent bits (bias 1), 1 mantissa bit; the table holds twice the value
    e2m1 = []
    for code in range(16):
        sign, exp, man = code >> 3, (code >> 1) & 3, code & 1
        v = (man / 2) if exp == 0 else (1 + man / 2) * 2.0 ** (exp - 1)
        e2m1.append(-v if sign else v)
    assert list(fp4.kvalues_mxfp4.astype(float)) == [2 * v + 0.0 for v in e2m1]


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(-100, 100))
def test_mxfp4_represents_e2m1_grid_exactly(seed, k):
    """x = e2m1 value * 2**k with 6 * 2**k present: e = floor(log2(6 * 2**k)) - 2 + 127 = k + 127,
    d = 2**(e - 128) = 2**(k - 1) (the table is doubled), and the block round-trips exactly."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, 32)
    codes[7] = 7  # +6
    x = (fp4.kvalues_mxfp4[codes].astype(np.float64) / 2 * 2.0**k).astype(np.float32) + f32(0.0)
    raw = reference.quantize("MXFP4", x[None])
    assert raw[0] == k + 127
    assert_bits_equal(reference.dequantize("MXFP4", raw, 32), x, "MXFP4 roundtrip")


@given(data=st.data())
def test_nvfp4_error_bound(data):
    """Each value is within half a code step of the sub-block's grid: |x - y| <= 1 * ds (the largest
    gap of the doubled table is 4, i.e. 2 in e2m1 units) plus the clipping above 6 * scale."""
    x = data.draw(rows("NVFP4", max_rows=1, max_blocks_per_row=2))[0]
    if not np.all(np.isfinite(x)):
        return
    y = reference.dequantize("NVFP4", reference.quantize("NVFP4", x[None]), x.size)
    for xb, yb in zip(x.reshape(-1, 16).astype(np.float64), y.reshape(-1, 16).astype(np.float64)):
        amax = np.abs(xb).max()
        if amax / 6 > 448 or amax / 6 < 2.0**-6:  # outside ue4m3's normal range: no clean bound
            continue
        # ue4m3 has 3 mantissa bits: the scale is within 1/16 of amax/6, so 6*scale >= amax*15/16
        assert np.all(np.abs(xb - yb) <= (amax / 6) * (1 + 1 / 16) + amax / 16 + 1e-30)


def test_floor_log2f_next_to_powers_of_two():
    below_256 = np.array([0x437FFFFF], np.uint32).view(np.float32)[0]  # largest float below 256
    assert fp4._floor_log2f(below_256) == 8  # log2f rounds up to 8.0
    below_2 = np.array([0x3FFFFFFF], np.uint32).view(np.float32)[0]
    assert fp4._floor_log2f(below_2) == 0
    assert fp4._floor_log2f(f32(2.0**-149)) == -149
    assert fp4._floor_log2f(f32(np.inf)) == np.inf
    assert math.isclose(float(fp4._floor_log2f(f32(1000.0))), 9)
