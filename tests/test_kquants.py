"""k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K): the reference against live libggml, plus
oracle-free checks of the layouts.

Quantize: equal bytes, without an importance matrix (``quantize_row_qX_K_ref``) and with one
(``quantize_row_qX_K_impl``). Dequantize: equal uint32 views, on quantized data and on random block
bytes whose fp16 (Q8_K: float32) scale fields include subnormals, infinities and NaNs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.reference import kquants
from ggspec.reference.fp import f16_to_f32, f32_to_f16
from ggspec.reference.types import get_type

KQ = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
ALL = KQ + ["Q8_K"]
QK_K = 256

# byte offsets of the float scale fields (fp16 unless Q8_K, whose d is float32 at 0)
F16_FIELDS = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x0003, 0x03FF, 0x8200, 0x0400, 0x7BFF, 0x7C00, 0xFC00,
               0x7E00, 0xFE00, 0x7C01, 0x7D55, 0xFD55, 0xFFFF]
SPECIAL_F32 = [0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x7F7FFFFF, 0x7F800000, 0xFF800000,
               0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA01234, 0xFFB00001, 0x3F800000, 0x2F000000]


# --------------------------------------------------------------------------------------------------
# strategies

KINDS = ("normal", "zeros", "constant", "outlier", "alternating", "ties", "blockscale", "sparse",
         "onesign", "tiny_groups")


@st.composite
def k_rows(draw, max_rows=4, max_blocks=4):
    """float32 (rows, 256*k): mixtures that matter to the k-quant searches."""
    n_rows = draw(st.integers(1, max_rows))
    n = QK_K * draw(st.integers(1, max_blocks))
    kind = draw(st.sampled_from(KINDS))
    scale = 10.0 ** draw(st.floats(-8, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (n_rows, n)
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "zeros":
        x = np.zeros(shape) * draw(st.sampled_from([1.0, -1.0]))  # +0 or -0 everywhere
    elif kind == "constant":
        x = np.full(shape, draw(st.floats(-10, 10, allow_subnormal=False)))
    elif kind == "outlier":
        x = rng.standard_normal(shape) * 0.01
        x[rng.integers(0, n_rows), rng.integers(0, n)] = draw(st.sampled_from([100.0, -100.0, 7.0, -3.0]))
    elif kind == "alternating":
        x = np.abs(rng.standard_normal(shape)) * np.where(np.arange(n) % 2, 1.0, -1.0)
    elif kind == "ties":
        # values on a half-integer grid: the level rounding meets exact .5 ties
        x = rng.integers(-16, 17, shape) * 0.5 + draw(st.sampled_from([0.0, 0.25]))
    elif kind == "blockscale":
        groups = 10.0 ** rng.uniform(-3, 3, (n_rows, n // 16))
        x = rng.standard_normal(shape) * np.repeat(groups, 16, axis=1)
    elif kind == "sparse":
        x = np.where(rng.uniform(size=shape) < 0.8, 0.0, rng.standard_normal(shape))
    elif kind == "onesign":
        x = np.abs(rng.standard_normal(shape)) * draw(st.sampled_from([1.0, -1.0]))
    else:  # some sub-blocks all zero or constant, the rest normal
        x = rng.standard_normal(shape)
        g = x.reshape(n_rows, n // 16, 16)
        pick = rng.uniform(size=(n_rows, n // 16)) < 0.5
        g[pick] = np.where(rng.uniform(size=(int(pick.sum()), 1)) < 0.5, 0.0, 1.0)
    return np.ascontiguousarray(x * scale, dtype=np.float32)


@st.composite
def k_imatrix(draw, n):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["ones", "lognormal", "zeros_in_places", "dominant", "tiny", "all_zero_groups"]))
    if kind == "ones":
        w = np.ones(n)
    elif kind == "lognormal":
        w = np.exp(rng.standard_normal(n) * 2)
    elif kind == "zeros_in_places":
        w = np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(0.1, 4, n))
    elif kind == "dominant":
        w = np.ones(n)
        w[rng.integers(0, n)] = 1e4
    elif kind == "tiny":
        w = np.full(n, 1e-6)
    else:  # whole sub-blocks of zero weight
        w = rng.uniform(0.1, 4, n)
        w.reshape(-1, 16)[rng.uniform(size=n // 16) < 0.4] = 0.0
    return w.astype(np.float32)


@st.composite
def k_blocks(draw, name, max_blocks=4):
    """(raw, n): random blocks with drawn scale fields (subnormal, Inf, NaN included)."""
    t = get_type(name)
    nb = draw(st.integers(1, max_blocks))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = rng.integers(0, 256, (nb, t.type_size), dtype=np.uint8)
    for i in range(nb):
        if name == "Q8_K":
            v = draw(st.one_of(st.sampled_from(SPECIAL_F32), st.integers(0, 2**32 - 1),
                               st.floats(-1e3, 1e3, width=32).map(lambda f: int(np.float32(f).view(np.uint32)))))
            b[i, 0:4] = np.frombuffer(int(v).to_bytes(4, "little"), np.uint8)
            continue
        for off in F16_FIELDS[name]:
            v = draw(st.one_of(st.sampled_from(SPECIAL_F16), st.integers(0, 0xFFFF),
                               st.floats(1e-6, 1e3).map(lambda f: int(np.float16(f).view(np.uint16)))))
            b[i, off:off + 2] = [v & 0xFF, v >> 8]
    return b.tobytes(), nb * QK_K


# --------------------------------------------------------------------------------------------------
# differential tests (oracle)

@pytest.mark.oracle
@pytest.mark.parametrize("name", ALL)
def test_quantize_ref_matches_libggml(oracle, name):
    t = get_type(name)

    @given(x=k_rows())
    def check(x):
        expected = oracle.quantize(name, x)
        got = reference.quantize(name, x)
        assert_bytes_equal(got, expected, f"{name} quantize (no imatrix)", t.type_size)
        assert_bits_equal(reference.dequantize(name, got, x.size), oracle.to_float(name, expected, x.size),
                          f"{name} dequantize of quantized data")

    check()


@pytest.mark.oracle
@pytest.mark.parametrize("name", KQ)
def test_quantize_imatrix_matches_libggml(oracle, name):
    t = get_type(name)

    @given(data=st.data())
    def check(data):
        x = data.draw(k_rows())
        im = data.draw(k_imatrix(x.shape[1]))
        expected = oracle.quantize(name, x, im)
        got = reference.quantize(name, x, im)
        assert_bytes_equal(got, expected, f"{name} quantize (imatrix)", t.type_size)
        assert_bits_equal(reference.dequantize(name, got, x.size), oracle.to_float(name, expected, x.size),
                          f"{name} dequantize of imatrix-quantized data")

    check()


@pytest.mark.oracle
@pytest.mark.parametrize("name", ALL)
def test_dequantize_random_blocks_matches_libggml(oracle, name):
    @settings(max_examples=max(settings().max_examples, 50))
    @given(k_blocks(name))
    def check(case):
        raw, n = case
        assert_bits_equal(reference.dequantize(name, raw, n), oracle.to_float(name, raw, n), f"{name} dequantize")

    check()


@pytest.mark.oracle
@pytest.mark.parametrize("name", ALL)
def test_dequantize_many_random_blocks_matches_libggml(oracle, name):
    """A few thousand random blocks at once (numpy random, fixed seed): zero differing bits."""
    t = get_type(name)
    rng = np.random.default_rng(20240611)
    nb = 2000
    b = rng.integers(0, 256, (nb, t.type_size), dtype=np.uint8)
    if name == "Q8_K":
        specials = np.array(SPECIAL_F32, dtype="<u4").view(np.uint8).reshape(-1, 4)
        b[::3, 0:4] = specials[rng.integers(0, len(SPECIAL_F32), b[::3].shape[0])]
    else:
        specials = np.array(SPECIAL_F16, dtype="<u2").view(np.uint8).reshape(-1, 2)
        for off in F16_FIELDS[name]:
            b[::3, off:off + 2] = specials[rng.integers(0, len(SPECIAL_F16), b[::3].shape[0])]
    raw = b.tobytes()
    assert_bits_equal(reference.dequantize(name, raw, nb * QK_K), oracle.to_float(name, raw, nb * QK_K),
                      f"{name} dequantize of {nb} random blocks")


@pytest.mark.oracle
@pytest.mark.parametrize("name", KQ)
def test_rounding_ties_and_edges_match_libggml(oracle, name):
    """Fixed edge rows: exact ties of the level rounding, a lone non-zero, a negative-only row, one
    sub-block dwarfing the others, -0.0 everywhere; with and without an importance matrix."""
    t = get_type(name)
    n = QK_K
    rows = [
        np.tile(np.array([0.5, 1.5, -0.5, -2.5, 2.5, 3.5, -3.5, 0.0], np.float32), n // 8),
        np.where(np.arange(n) == 37, 1.0, 0.0).astype(np.float32),
        -np.abs(np.linspace(0.1, 3.0, n, dtype=np.float32)),
        np.where(np.arange(n) < 16, 1000.0, 0.001).astype(np.float32) * np.where(np.arange(n) % 2, 1, -1),
        np.full(n, -0.0, np.float32),
        np.arange(n, dtype=np.float32) - 128.0,
        np.full(n, 2.0 ** -20, np.float32),
    ]
    ims = [None, np.ones(n, np.float32), np.linspace(0.0, 2.0, n, dtype=np.float32)]
    for i, r in enumerate(rows):
        x = r.reshape(1, n).astype(np.float32)
        for im in ims:
            assert_bytes_equal(reference.quantize(name, x, im), oracle.quantize(name, x, im),
                               f"{name} edge row {i} (imatrix={im is not None})", t.type_size)


# --------------------------------------------------------------------------------------------------
# oracle-free tests

def test_sizes_match_registry():
    for name in ALL:
        t = get_type(name)
        x = np.random.default_rng(1).standard_normal((1, 2 * QK_K)).astype(np.float32)
        assert len(reference.quantize(name, x)) == 2 * t.type_size
    assert [get_type(n).type_size for n in ALL] == [84, 110, 144, 176, 210, 292]


def test_get_scale_min_k4_round_trips_every_code():
    rng = np.random.default_rng(7)
    for _ in range(200):
        ls = rng.integers(0, 64, 8)
        lm = rng.integers(0, 64, 8)
        packed = kquants.pack_scale_min_k4(ls, lm)
        assert len(packed) == 12
        got = [kquants.get_scale_min_k4(j, packed) for j in range(8)]
        assert got == list(zip(ls.tolist(), lm.tolist()))


def test_q3_K_scales_round_trip():
    rng = np.random.default_rng(8)
    for _ in range(200):
        l6 = rng.integers(0, 64, 16).tolist()
        assert kquants.unpack_q3_K_scales(kquants.pack_q3_K_scales(l6)) == l6


def _hand_q4_K_block(d, dmin, ls, lm, q):
    return (f32_to_f16(np.float32(d)).astype("<u2").tobytes() + f32_to_f16(np.float32(dmin)).astype("<u2").tobytes()
            + kquants.pack_scale_min_k4(ls, lm) + bytes((q[64 * c + l] | (q[64 * c + 32 + l] << 4))
                                                      for c in range(4) for l in range(32)))


def test_q4_K_dequantize_hand_block():
    """A block built from the layout description (not from the quantizer): exact small values."""
    ls = [1, 2, 3, 4, 5, 6, 7, 63]
    lm = [0, 1, 0, 2, 0, 3, 0, 63]
    q = [k % 16 for k in range(QK_K)]
    y = reference.dequantize("Q4_K", _hand_q4_K_block(0.5, 0.25, ls, lm, q), QK_K)
    expected = np.array([0.5 * ls[k // 32] * q[k] - 0.25 * lm[k // 32] for k in range(QK_K)], np.float32)
    np.testing.assert_array_equal(y, expected)


def test_q6_K_dequantize_hand_block():
    """Q6_K layout: weight 128h + 32s + l from ql/qh as documented; scale per 16 weights."""
    rng = np.random.default_rng(3)
    q = rng.integers(0, 64, QK_K)  # stored 6-bit values
    sc = rng.integers(-128, 128, 16)
    ql = np.zeros(128, np.int64)
    qh = np.zeros(64, np.int64)
    for k in range(QK_K):
        h, s, l = k // 128, (k % 128) // 32, k % 32
        ql[64 * h + 32 * (s & 1) + l] |= (q[k] & 0xF) << (4 * (s >> 1))
        qh[32 * h + l] |= (q[k] >> 4) << (2 * s)
    block = (ql.astype(np.uint8).tobytes() + qh.astype(np.uint8).tobytes() + sc.astype(np.int8).tobytes()
             + f32_to_f16(np.float32(0.125)).astype("<u2").tobytes())
    y = reference.dequantize("Q6_K", block, QK_K)
    expected = np.array([0.125 * sc[k // 16] * (q[k] - 32) for k in range(QK_K)], np.float32)
    np.testing.assert_array_equal(y, expected)


def test_q2_K_q3_K_q5_K_layout_by_hand():
    """Single set bits land on the documented weights."""
    # Q2_K: d = 1, dmin = 0, all scales 1; one 2-bit code 3 at qs byte 32*h + 16*g + l, shift 2*s
    for (h, s, g, l) in [(0, 0, 0, 0), (1, 3, 1, 15), (0, 2, 1, 5)]:
        blk = bytearray(84)
        blk[0:16] = bytes([1] * 16)
        blk[16 + 32 * h + 16 * g + l] = 3 << (2 * s)
        blk[80:82] = f32_to_f16(np.float32(1.0)).astype("<u2").tobytes()
        y = reference.dequantize("Q2_K", bytes(blk), QK_K)
        k = 128 * h + 32 * s + 16 * g + l
        assert y[k] == 3.0 and np.count_nonzero(y) == 1
    # Q3_K: scales all 33 (sc - 32 = 1), hmask all set (no -4), one low code 2
    blk = bytearray(110)
    blk[0:32] = b"\xff" * 32
    blk[96:108] = kquants.pack_q3_K_scales([33] * 16)
    blk[108:110] = f32_to_f16(np.float32(1.0)).astype("<u2").tobytes()
    blk[32 + 32 * 1 + 16 * 1 + 3] = 2 << (2 * 2)
    y = reference.dequantize("Q3_K", bytes(blk), QK_K)
    assert y[128 + 64 + 16 + 3] == 2.0 and np.count_nonzero(y) == 1
    blk[0:32] = bytes(32)  # no high bits: every other weight is now -4
    y = reference.dequantize("Q3_K", bytes(blk), QK_K)
    assert y[128 + 64 + 16 + 3] == -2.0 and np.count_nonzero(y == -4.0) == QK_K - 1
    # Q5_K: the high bit of weight 32*j + l is bit j of qh[l]
    blk = bytearray(176)
    blk[0:2] = f32_to_f16(np.float32(1.0)).astype("<u2").tobytes()
    blk[4:16] = kquants.pack_scale_min_k4([1] * 8, [0] * 8)
    blk[16 + 7] = 1 << 5
    y = reference.dequantize("Q5_K", bytes(blk), QK_K)
    assert y[32 * 5 + 7] == 16.0 and np.count_nonzero(y) == 1


def test_q8_K_quantize_properties():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(QK_K) * 3).astype(np.float32)
    x[100] = -9.0  # make the extreme element known
    x[x < -9.0] = -8.0
    raw = reference.quantize("Q8_K", x.reshape(1, -1))
    d = np.frombuffer(raw, "<f4", 1, 0)[0]
    qs = np.frombuffer(raw, np.int8, QK_K, 4).astype(np.int64)
    bsums = np.frombuffer(raw, "<i2", 16, 260).astype(np.int64)
    assert qs[100] == -127                      # iscale = -127/max: the extreme element maps to -127
    assert d == np.float32(1.0) / (np.float32(-127.0) / np.float32(-9.0))
    assert np.array_equal(bsums, qs.reshape(16, 16).sum(axis=1))
    assert reference.quantize("Q8_K", np.zeros((1, QK_K), np.float32)) == bytes(292)


def test_quantize_round_trip_error_is_small():
    """The quantizers actually quantize: relative RMS error falls with the bit width."""
    x = np.random.default_rng(5).standard_normal((1, 2 * QK_K)).astype(np.float32)
    errs = {}
    for name in ALL:
        y = reference.dequantize(name, reference.quantize(name, x), x.size)
        errs[name] = float(np.sqrt(np.mean((y - x[0]) ** 2)))
    assert errs["Q2_K"] < 0.5 and errs["Q8_K"] < 0.02
    assert errs["Q2_K"] > errs["Q3_K"] > errs["Q4_K"] > errs["Q5_K"] > errs["Q6_K"] > errs["Q8_K"]


def test_imatrix_changes_the_choice():
    """With a skewed importance matrix the weighted path gives other bytes than the reference path
    (the dispatcher does not silently ignore the imatrix)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, QK_K)).astype(np.float32)
    im = np.exp(rng.standard_normal(QK_K) * 2).astype(np.float32)
    for name in KQ:
        assert reference.quantize(name, x, im) != reference.quantize(name, x)


def test_zero_rows_quantize_to_zero_dequantized():
    z = np.zeros((1, QK_K), np.float32)
    for name in ALL:
        y = reference.dequantize(name, reference.quantize(name, z), QK_K)
        assert not np.any(y), name
    assert f16_to_f32(np.uint16(0)) == 0
