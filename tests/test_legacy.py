"""Legacy quants (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) and the scale searches in reference/search.py.

Differential tests run ggspec.reference against live libggml (the `oracle` fixture) on fresh random
inputs; the oracle-free tests check properties that a wrong implementation breaks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.conformance.strategies import block_bytes, imatrices, rows
from ggspec.reference import search
from ggspec.reference.fp import f16_to_f32, fp16, nearest_int
from ggspec.reference.types import get_type

f32 = np.float32
LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]
TAKES_IMATRIX = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]  # ggml_quantize_chunk types (Q8_0 ignores it)


def _oracle_dequantize(oracle, t, raw, n):
    """ggml's to_float; for Q8_1 (which has none) Q8_0's to_float on the same d and qs."""
    if t != "Q8_1":
        return oracle.to_float(t, raw, n)
    b = np.frombuffer(raw, np.uint8).reshape(-1, 36)
    q8_0 = np.concatenate((b[:, 0:2], b[:, 4:36]), axis=1).tobytes()
    return oracle.to_float("Q8_0", q8_0, n)


def _check_quantize(oracle, t, x, im):
    tt = get_type(t)
    expected = oracle.quantize(t, x, im)
    got = reference.quantize(t, x, im)
    assert_bytes_equal(got, expected, f"{t} quantize (imatrix={im is not None})", tt.type_size)
    assert_bits_equal(reference.dequantize(t, got, x.size), _oracle_dequantize(oracle, t, expected, x.size),
                      f"{t} dequantize of quantized data")


# --------------------------------------------------------------------------------------------------
# differential: quantize

@pytest.mark.oracle
@pytest.mark.parametrize("t", LEGACY)
@given(data=st.data())
def test_quantize_matches_libggml(oracle, t, data):
    x = data.draw(rows(t, max_rows=2, max_blocks_per_row=8))
    use_im = t in TAKES_IMATRIX and data.draw(st.booleans())
    im = data.draw(imatrices(x.shape[1])) if use_im else None
    _check_quantize(oracle, t, x, im)


@pytest.mark.oracle
@pytest.mark.parametrize("t", ["Q4_0", "Q4_1", "Q5_0", "Q5_1"])
@given(data=st.data())
def test_quantize_with_imatrix_matches_libggml(oracle, t, data):
    """The imatrix paths (make_qx_quants / make_qkx3_quants), always with an imatrix, normal rows
    at random scales 1e-8..1e4 (the row-level sigma2 couples the blocks of a row)."""
    n_blocks = data.draw(st.integers(1, 8))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** data.draw(st.floats(-8, 4))
    x = (rng.standard_normal((2, 32 * n_blocks)) * scale).astype(np.float32)
    im = data.draw(imatrices(x.shape[1]))
    _check_quantize(oracle, t, x, im)


def _special_rows():
    rng = np.random.default_rng(1234)
    base = rng.standard_normal(64).astype(np.float32)
    out = {
        "zeros": np.zeros(64, np.float32),
        "negative_zeros": np.full(64, -0.0, np.float32),
        "constant": np.full(64, 0.37, np.float32),
        "negative_constant": np.full(64, -3.0, np.float32),
        "outlier": np.where(np.arange(64) == 17, 1000.0, base * 0.01).astype(np.float32),
        "ties": (rng.integers(-16, 17, 64) * 0.5).astype(np.float32),
        "quarter_ties": (rng.integers(-64, 65, 64) * 0.25).astype(np.float32),
        "alternating": np.where(np.arange(64) % 2 == 0, 1.0, -1.0).astype(np.float32),
        "subnormal": (base * 1e-40).astype(np.float32),
        "tiny": (base * 1e-30).astype(np.float32),
        "huge": (base * 1e36).astype(np.float32),
        "one_sign": np.abs(base),
        "equal_magnitudes": np.where(np.arange(64) % 3 == 0, -2.0, 2.0).astype(np.float32),
    }
    for name, v in (("nan", np.nan), ("inf", np.inf), ("neg_inf", -np.inf), ("max_float", 3.4e38)):
        x = base.copy()
        x[5] = v
        out[name] = x
    return out


SPECIAL = _special_rows()


@pytest.mark.oracle
@pytest.mark.parametrize("t", LEGACY)
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_quantize_special_rows(oracle, t, kind):
    x = SPECIAL[kind].reshape(1, -1)
    _check_quantize(oracle, t, x, None)
    if t in TAKES_IMATRIX:
        im = np.linspace(0.0, 3.0, x.shape[1]).astype(np.float32)  # includes a zero weight
        _check_quantize(oracle, t, x, im)


# --------------------------------------------------------------------------------------------------
# differential: dequantize random bytes

@pytest.mark.oracle
@pytest.mark.parametrize("t", LEGACY)
@given(data=st.data())
def test_dequantize_random_blocks_matches_libggml(oracle, t, data):
    raw, n = data.draw(block_bytes(t, max_blocks=8))
    assert_bits_equal(reference.dequantize(t, raw, n), _oracle_dequantize(oracle, t, raw, n), f"{t} dequantize")


@pytest.mark.oracle
@pytest.mark.parametrize("t", LEGACY)
def test_dequantize_every_fp16_scale(oracle, t):
    """All 65536 values of d (and of m for Q4_1/Q5_1, paired with a shuffled d) on random levels:
    subnormals, infinities, signalling and quiet NaNs with payloads."""
    tt = get_type(t)
    rng = np.random.default_rng(7)
    b = rng.integers(0, 256, (65536, tt.type_size), dtype=np.uint8)
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    b[:, 0], b[:, 1] = h & 0xFF, h >> 8
    if t in ("Q4_1", "Q5_1", "Q8_1"):
        h2 = rng.permutation(h)
        b[:, 2], b[:, 3] = h2 & 0xFF, h2 >> 8
    raw, n = b.tobytes(), 65536 * tt.block_size
    assert_bits_equal(reference.dequantize(t, raw, n), _oracle_dequantize(oracle, t, raw, n), f"{t} dequantize")


# --------------------------------------------------------------------------------------------------
# oracle-free

@pytest.mark.parametrize("t", LEGACY)
def test_row_sizes_follow_the_registry(t):
    tt = get_type(t)
    x = np.random.default_rng(0).standard_normal((3, 96)).astype(np.float32)
    assert len(reference.quantize(t, x)) == 3 * 96 // 32 * tt.type_size
    assert tt.block_size == 32
    assert tt.type_size == {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24, "Q8_0": 34, "Q8_1": 36}[t]


@pytest.mark.parametrize("t", LEGACY)
def test_zero_row_dequantizes_to_zeros(t):
    raw = reference.quantize(t, np.zeros((1, 64), np.float32))
    assert np.all(reference.dequantize(t, raw, 64) == 0)
    # d = max / -8 (or -16) of a zero block is -0.0: ggml stores 0x8000 and level 8 (16) for Q4_0 (Q5_0)
    expected_d = b"\x00\x80" if t in ("Q4_0", "Q5_0") else b"\x00\x00"
    assert raw[:2] == expected_d


@pytest.mark.parametrize("t, levels, offset", [("Q4_0", 16, 8), ("Q5_0", 32, 16), ("Q8_0", 255, 127)])
@given(seed=st.integers(0, 2**32 - 1), e=st.integers(-20, 10))
def test_symmetric_types_reproduce_exactly_representable_blocks(t, levels, offset, seed, e):
    """x = (q - offset) * 2**e with the most negative level present: d = 2**e exactly, so the block
    must dequantize back to x bit for bit (Q4/Q5 put the extreme element on level 0)."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, levels, 32)
    q[rng.integers(0, 32)] = 0
    x = ((q - offset) * 2.0**e).astype(np.float32)
    if t == "Q8_0":
        x = -x + f32(0.0)  # amax/127 with amax = 127*2**e (and +0.0, as 0*d gives)
    y = reference.dequantize(t, reference.quantize(t, x[None]), 32)
    assert_bits_equal(y, x, f"{t} roundtrip")


@pytest.mark.parametrize("t, nmax", [("Q4_0", 8), ("Q5_0", 16), ("Q4_1", 15), ("Q5_1", 31), ("Q8_0", 127), ("Q8_1", 127)])
@given(data=st.data())
def test_roundtrip_error_is_within_half_a_step(t, nmax, data):
    """Without an imatrix every element lands within d/2 of its value (d/1 for the element that
    the symmetric 4/5-bit types clamp), up to fp16 rounding of d and m."""
    x = data.draw(rows(t, max_rows=1, max_blocks_per_row=4))[0]
    if not np.all(np.isfinite(x)) or np.abs(x).max() > 1e4 or np.abs(x).max() < 1e-4:
        return
    y = reference.dequantize(t, reference.quantize(t, x[None]), x.size)
    for xb, yb in zip(x.reshape(-1, 32).astype(np.float64), y.reshape(-1, 32).astype(np.float64)):
        if t in ("Q4_1", "Q5_1"):
            step = (xb.max() - xb.min()) / nmax
            slack = 0.5 * step + nmax * step * 2.0**-10 + abs(xb.min()) * 2.0**-10
        else:
            step = np.abs(xb).max() / nmax
            slack = (1.0 if t in ("Q4_0", "Q5_0") else 0.5) * step + nmax * step * 2.0**-10
        slack += (nmax + 1) * 2.0**-25  # fp16 subnormal spacing of d and m
        assert np.all(np.abs(xb - yb) <= slack * (1 + 1e-5) + 1e-30), (t, np.abs(xb - yb).max(), slack)


def test_q8_1_s_is_d_times_the_sum_of_the_levels():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    raw = reference.quantize("Q8_1", x)
    b = np.frombuffer(raw, np.uint8).reshape(-1, 36)
    d = f16_to_f32(b[:, 0:2].copy().view("<u2").reshape(-1))
    s = f16_to_f32(b[:, 2:4].copy().view("<u2").reshape(-1))
    qs = b[:, 4:].view(np.int8).astype(np.int64)
    for i, xb in enumerate(x.reshape(-1, 32)):
        d_unrounded = f32(np.abs(xb).max()) / f32(127)  # s uses the float32 d, before fp16 rounding
        assert d[i] == fp16(d_unrounded)
        assert s[i] == fp16(f32(qs[i].sum()) * d_unrounded)
        assert abs(float(s[i]) - float(xb.sum())) <= 32 * float(d[i])


def test_imatrix_of_ones_weights_by_magnitude():
    """With an imatrix, Q4_0's scale is a weighted least-squares fit: on a block whose values sit
    exactly on a level grid, the fit must reproduce the grid."""
    q = np.array(list(range(-8, 8)) * 2, dtype=np.float32)
    x = (q * f32(0.25)).reshape(1, -1)
    y = reference.dequantize("Q4_0", reference.quantize("Q4_0", x, np.ones(32, np.float32)), 32)
    assert_bits_equal(y, x[0], "Q4_0 imatrix on a grid")


# --------------------------------------------------------------------------------------------------
# search.py: helpers and the searches (oracle-free; the legacy and k-quant differential tests prove
# them against ggml)

@given(st.lists(st.floats(-(2.0**100), 2.0**100, width=32), min_size=0, max_size=64))
def test_seq_sum_is_a_left_to_right_float32_loop(values):
    v = np.array(values, dtype=np.float32)
    acc = f32(0.0)
    for a in v:
        acc = f32(acc + a)
    assert search.seq_sum(v).view(np.uint32) == np.float32(acc).view(np.uint32)


def test_seq_sum_differs_from_pairwise_where_order_matters():
    v = np.array([1e8, 1.0, 1.0, 1.0, 1.0, -1e8] + [1.0] * 200, np.float32)
    assert search.seq_sum(v) == f32(200.0)  # the four 1.0 after 1e8 are absorbed
    assert search.seq_sum(np.array([-0.0], np.float32)).view(np.uint32) == 0  # 0.0f + -0.0f = +0.0f


@given(st.floats(-4e6, 4e6, width=32))
def test_nearest_int_array_matches_the_scalar(v):
    assert int(search.nearest_int_array(np.array([v], np.float32))[0]) == nearest_int(f32(v))


def test_c_conversions():
    r = search.c_roundf(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.0, 8388607.5, np.inf], np.float32))
    assert list(r[:6]) == [1.0, 2.0, 3.0, -1.0, -3.0, 0.0] and np.signbit(r[6]) and r[7] == 8388608.0
    assert np.isposinf(r[8])
    i = search.c_int(np.array([2.9, -2.9, np.nan, 3e9, -3e9, -2147483648.0], np.float32))
    assert list(i) == [2, -2, -2**31, -2**31, -2**31, -2**31]
    assert list(search.to_int8([127, 128, 255, 256, -129])) == [127, -128, -1, 0, 127]
    assert search.c_max(f32(1), f32(np.nan)) != search.c_max(f32(1), f32(np.nan))  # MAX(a, NaN) is NaN
    assert search.c_max(f32(np.nan), f32(1)) == 1


@given(seed=st.integers(0, 2**32 - 1), e=st.integers(-10, 10), nmax=st.sampled_from([4, 8, 16, 32]))
def test_make_qx_quants_recovers_an_exact_grid(seed, e, nmax):
    rng = np.random.default_rng(seed)
    l = rng.integers(-nmax, nmax, 16)
    l[0] = -nmax
    x = (l * 2.0**e).astype(np.float32)
    for rmse_type in (0, 1, 2, 3, 4, -1):
        scale, L = search.make_qx_quants(16, nmax, -x, rmse_type, None)  # max = -x[0] > 0 -> -nmax
        assert scale == f32(-(2.0**e))
        assert_bits_equal(scale * (L.astype(np.float32) - nmax), -x, f"make_qx_quants rmse_type={rmse_type}")


@given(seed=st.integers(0, 2**32 - 1), e=st.integers(-8, 8))
def test_make_qkx_quants_recover_scale_and_min(seed, e):
    """x = scale*L - the_min with both extremes present is reproduced exactly by the first trial."""
    rng = np.random.default_rng(seed)
    nmax = 15
    L = rng.integers(0, nmax + 1, 32)
    L[3], L[9] = 0, nmax
    scale, the_min = f32(2.0**e), f32(3 * 2.0**e)
    x = (L * scale - the_min).astype(np.float32)
    w = np.ones(32, np.float32)
    for fn, weights in ((search.make_qkx2_quants, w), (search.make_qkx3_quants, w), (search.make_qkx3_quants, None)):
        s, Lq, m = fn(32, nmax, x, weights, -1.0, 0.1, 20, False)
        assert_bits_equal(s * Lq.astype(np.float32) - m, x, fn.__name__)


def test_make_qkx_quants_degenerate_and_positive_blocks():
    x = np.full(16, 2.5, np.float32)  # min raised to 0, max 2.5: one level
    s, L, m = search.make_qkx2_quants(16, 3, x, np.ones(16, np.float32), -0.5, 0.1, 15, True)
    assert m == 0 and np.all(L == L[0]) and abs(float(s) * L[0] - 2.5) < 1e-6
    s, L, m = search.make_qkx3_quants(16, 3, np.full(16, -1.0, np.float32), None, -0.9, 0.05, 36, False)
    assert s == 0 and np.all(L == 0) and m == 1.0  # max (-1) <= min (-1): all at the min
    s, L = search.make_qx_quants(16, 8, np.zeros(16, np.float32), 1, None)
    assert s == 0 and np.all(L == 0)


def test_make_q3_quants_refinement_does_not_increase_the_error():
    rng = np.random.default_rng(11)
    for _ in range(50):
        x = rng.standard_normal(16).astype(np.float32)
        s0, L0 = search.make_q3_quants(16, 4, x, False)
        s1, L1 = search.make_q3_quants(16, 4, x, True)
        w = x.astype(np.float64) ** 2
        err0 = np.sum(w * (x - float(s0) * (L0.astype(np.float64) - 4)) ** 2)
        err1 = np.sum(w * (x - float(s1) * (L1.astype(np.float64) - 4)) ** 2)
        assert err1 <= err0 * (1 + 1e-4) + 1e-12
        assert L1.min() >= 0 and L1.max() <= 7


def test_make_qp_quants_on_exact_multiples():
    rng = np.random.default_rng(5)
    for nmax in (15, 63):
        L = rng.integers(0, nmax + 1, 16)
        L[2] = nmax
        x = (L * f32(0.125)).astype(np.float32)
        s, Lq = search.make_qp_quants(16, nmax, x, np.ones(16, np.float32))
        assert_bits_equal(s * Lq.astype(np.float32), x, f"make_qp_quants nmax={nmax}")
    s, Lq = search.make_qp_quants(8, 15, np.zeros(8, np.float32), np.ones(8, np.float32))
    assert s == 0 and not Lq.any()
