"""The i-quants (reference/iquants.py) against live libggml, plus oracle-free properties.

Differential tests draw fresh inputs every run: random block bytes (fp16 scales including
subnormals, infinities and NaNs) for dequantize, random rows and importance matrices for quantize.
The Python i-quant searches are slow, so quantize examples are one row of one or two super-blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec import reference
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal
from ggspec.conformance.strategies import block_bytes, imatrices, rows
from ggspec.reference import grids, iquants
from ggspec.reference.fp import f32_to_f16
from ggspec.reference.types import get_type

# fp.read_f16 widens a numpy scalar; for negative scales its uint32 wrap-around warns (harmless)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar add:RuntimeWarning")

ALL = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS"]
QUANTIZERS = [name for name in ALL if name in iquants.QUANTIZE]

SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00, 0xFC00, 0x7E00,
               0xFE00, 0x7C01, 0xFD55]


def _with_iq1m_scale(raw: bytes, nb: int, bits: list[int]) -> bytes:
    """Write fp16 bits into the top nibbles of each IQ1_M block's four uint16 scales."""
    b = bytearray(raw)
    for i in range(nb):
        off = i * 56 + 48
        for k in range(4):
            v = int.from_bytes(b[off + 2 * k:off + 2 * k + 2], "little")
            v = (v & 0x0FFF) | (((bits[i] >> (4 * k)) & 0xF) << 12)
            b[off + 2 * k:off + 2 * k + 2] = v.to_bytes(2, "little")
    return bytes(b)


# --------------------------------------------------------------------------------------------------
# dequantize: differential

@pytest.mark.oracle
@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
def test_dequantize_random_blocks_matches_libggml(oracle, name, data):
    raw, n = data.draw(block_bytes(name, max_blocks=3))
    if name == "IQ1_M":
        nb = n // 256
        bits = data.draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from(SPECIAL_F16)),
                                  min_size=nb, max_size=nb))
        raw = _with_iq1m_scale(raw, nb, bits)
    assert_bits_equal(reference.dequantize(name, raw, n), oracle.to_float(name, raw, n), f"{name} dequantize")


@pytest.mark.oracle
@pytest.mark.parametrize("name", ALL)
@given(data=st.data())
def test_dequantize_of_ggml_quantized_rows_matches_libggml(oracle, name, data):
    t = get_type(name)
    x = data.draw(rows(name, max_rows=1, max_blocks_per_row=2 if t.block_size == 256 else 8))
    im = data.draw(imatrices(x.shape[1]))
    raw = oracle.quantize(name, x, im)
    assert_bits_equal(reference.dequantize(name, raw, x.size), oracle.to_float(name, raw, x.size),
                      f"{name} dequantize of ggml's quantization")


# --------------------------------------------------------------------------------------------------
# dequantize: oracle-free, hand-built blocks (expected values computed here in float64, exact)

def test_iq2_xxs_hand_built_block():
    # d = 1, scale nibble 3 -> db = (0.5 + 3) * 0.25 = 0.875; group 0 = grid entry 0 (all 0x08 = 8);
    # sign code 1 -> ksigns 129 = weights 0 and 7 negative
    aux0 = 0  # four grid indices, all 0
    aux1 = (3 << 28) | 1  # group 0 sign code 1, others 0
    block = (int(f32_to_f16(np.float32(1.0))).to_bytes(2, "little")
             + (aux0.to_bytes(4, "little") + aux1.to_bytes(4, "little")) * 8)
    y = reference.dequantize("IQ2_XXS", block, 256)
    expect = np.full(256, 0.875 * 8)
    for ib in range(8):
        expect[32 * ib + 0] = expect[32 * ib + 7] = -0.875 * 8
    assert np.array_equal(y, expect)


def test_iq4_nl_hand_built_block():
    d = 0.5
    qs = bytes((j & 0xF) | (((15 - j) & 0xF) << 4) for j in range(16))
    block = int(f32_to_f16(np.float32(d))).to_bytes(2, "little") + qs
    y = reference.dequantize("IQ4_NL", block, 32)
    k = list(grids.kvalues_iq4nl)
    assert list(y) == [d * k[j] for j in range(16)] + [d * k[15 - j] for j in range(16)]


def test_iq4_xs_six_bit_scales():
    # scale of block ib = ib + 28 (so ls - 32 = ib - 4): low nibble in scales_l, high 2 bits in scales_h
    ls = [ib + 28 for ib in range(8)]
    scales_l = bytes((ls[2 * i] & 0xF) | ((ls[2 * i + 1] & 0xF) << 4) for i in range(4))
    scales_h = sum((l >> 4) << (2 * ib) for ib, l in enumerate(ls))
    block = (int(f32_to_f16(np.float32(1.0))).to_bytes(2, "little") + scales_h.to_bytes(2, "little")
             + scales_l + bytes([0x98]) * 128)  # low nibble 8 (value 1), high nibble 9 (value 13)
    y = reference.dequantize("IQ4_XS", block, 256).reshape(8, 32)
    for ib in range(8):
        assert list(y[ib]) == [(ib - 4) * 1.0] * 16 + [(ib - 4) * 13.0] * 16


def test_iq1_m_scale_lives_in_the_top_nibbles():
    # d = 2.0 (fp16 0x4000): nibbles 0,0,0,4 from sc[0..3]; all 3-bit scales 0 (dl = d), grid entry 0
    # (all -1), delta bits clear (+0.125): every weight is 2 * (-1 + 0.125) = -1.75
    sc = [0x0000, 0x0000, 0x0000, 0x4000]
    block = bytes(32) + bytes(16) + b"".join(v.to_bytes(2, "little") for v in sc)
    assert np.array_equal(reference.dequantize("IQ1_M", block, 256), np.full(256, -1.75))


def test_iq1_s_delta_sign_and_scale():
    # qh = 0x8000 | (2 << 12): dl = d * 5, delta = -0.125; grid entry 0 is all -1
    qh = (0x8000 | (2 << 12)).to_bytes(2, "little")
    block = int(f32_to_f16(np.float32(0.25))).to_bytes(2, "little") + bytes(32) + qh * 8
    assert np.array_equal(reference.dequantize("IQ1_S", block, 256), np.full(256, 0.25 * 5 * (-1.125)))


@pytest.mark.parametrize("name", ALL)
def test_nan_scale_gives_nan_everywhere(name):
    t = get_type(name)
    raw = bytearray(np.random.default_rng(7).integers(0, 256, t.type_size, dtype=np.uint8).tobytes())
    if name == "IQ1_M":
        raw = bytearray(_with_iq1m_scale(bytes(raw), 1, [0x7E00]))
    else:
        raw[0:2] = (0x7E00).to_bytes(2, "little")
    assert np.isnan(reference.dequantize(name, bytes(raw), t.block_size)).all()


# --------------------------------------------------------------------------------------------------
# quantize: differential

IMATRIX_KINDS = ("uniform", "skewed", "zeros")


def _imatrix(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        w = rng.uniform(0.5, 1.5, n)
    elif kind == "skewed":
        w = rng.lognormal(0.0, 2.0, n)
    else:  # zero in places
        w = np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(0.1, 4.0, n))
    return w.astype(np.float32)


def _rows(kind: str, n_rows: int, n: int, seed: int, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([_row(kind, n, rng, scale) for _ in range(n_rows)])


def _row(kind: str, n: int, rng, scale: float) -> np.ndarray:
    x = rng.standard_normal(n)
    if kind == "zero_subblocks":  # whole sub-blocks (16 or 32) of zeros: ggml's skip paths
        width = int(rng.choice([16, 32]))
        for ib in rng.choice(n // width, size=max(1, n // (4 * width)), replace=False):
            x[width * ib:width * (ib + 1)] = 0.0
    elif kind == "ties":  # few distinct values: ties in every sort and comparison
        x = rng.integers(-3, 4, n) * 0.5
    elif kind == "heavy":
        x = rng.standard_t(2, n)
    elif kind == "tiny":  # x*x and the weights go subnormal, products underflow to zero
        x = x * 1e-19
    return (x * scale).astype(np.float32).reshape(1, n)


def quantize_examples(name: str):
    t = get_type(name)
    blocks = 2 if t.block_size == 256 else 8          # at most 512 values per example
    imatrix_kinds = IMATRIX_KINDS if t.requires_imatrix else ("none",) + IMATRIX_KINDS
    return st.tuples(
        st.sampled_from(["normal", "zero_subblocks", "ties", "heavy", "tiny"]),
        st.sampled_from([(1, blocks // 2), (1, blocks), (2, blocks // 2)]).map(lambda s: (s[0], s[1] * t.block_size)),
        st.integers(0, 2**32 - 1),
        st.floats(-6, 4).map(lambda e: 10.0 ** e),
        st.sampled_from(imatrix_kinds),
    )


def _check_quantize(oracle, name, example):
    kind, (n_rows, n), seed, scale, im_kind = example
    x = _rows(kind, n_rows, n, seed, scale)
    im = None if im_kind == "none" else _imatrix(im_kind, n, seed + 1)
    expected = oracle.quantize(name, x, im)
    got = reference.quantize(name, x, im)
    what = f"{name} quantize ({kind}, {n_rows}x{n}, seed={seed}, scale={scale}, imatrix={im_kind})"
    assert_bytes_equal(got, expected, what, get_type(name).type_size)


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZERS)
@given(data=st.data())
def test_quantize_matches_libggml(oracle, name, data):
    _check_quantize(oracle, name, data.draw(quantize_examples(name)))


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZERS)
@given(data=st.data())
def test_quantize_shared_strategies_match_libggml(oracle, name, data):
    t = get_type(name)
    x = data.draw(rows(name, max_rows=1, max_blocks_per_row=1 if t.block_size == 256 else 8))
    im = data.draw(imatrices(x.shape[1])) if t.requires_imatrix or data.draw(st.booleans()) else None
    assert_bytes_equal(reference.quantize(name, x, im), oracle.quantize(name, x, im),
                       f"{name} quantize (imatrix={im is not None})", t.type_size)


def _edge_rows(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    half = np.zeros(n)
    half[: n // 2] = rng.standard_normal(n // 2)
    zero32 = rng.standard_normal(n)
    zero32[32:64] = 0.0
    outlier = np.zeros(n)
    outlier[17] = 5.0
    return {
        "zeros": np.zeros(n),
        "constant": np.full(n, 1.5),
        "tiny_constant": np.full(n, -3e-20),         # subnormal weights, sumqx underflows to 0
        "tiny_normal": rng.standard_normal(n) * 1e-19,
        "subnormal": rng.standard_normal(n) * 1e-42,
        "large": rng.standard_normal(n) * 6e4,
        "alternating": np.tile([0.7, -0.7], n // 2),
        "one_outlier": outlier,
        "half_zero": half,
        "zero_subblock_32": zero32,
        "signed_zeros": np.where(rng.uniform(size=n) < 0.5, 0.0, -0.0),
        "negative": -np.abs(rng.standard_normal(n)),
    }


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantize_edge_rows_match_libggml(oracle, name):
    t = get_type(name)
    n = 256
    imatrices_ = {"uniform": np.ones(n, np.float32), "all_zero": np.zeros(n, np.float32),
                  "skewed": _imatrix("skewed", n, 5)}
    if not t.requires_imatrix:
        imatrices_["none"] = None
    for row_kind, x in _edge_rows(n).items():
        x = x.astype(np.float32).reshape(1, n)
        for im_kind, im in imatrices_.items():
            assert_bytes_equal(reference.quantize(name, x, im), oracle.quantize(name, x, im),
                               f"{name} quantize ({row_kind}, imatrix={im_kind})", t.type_size)


# --------------------------------------------------------------------------------------------------
# quantize: oracle-free properties

@pytest.mark.parametrize("name", QUANTIZERS)
def test_zero_row_dequantizes_to_zero(name):
    t = get_type(name)
    n = 256
    raw = reference.quantize(name, np.zeros((1, n), np.float32), np.ones(n, np.float32))
    assert len(raw) == t.row_size(n)
    assert not np.any(reference.dequantize(name, raw, n))


# relative RMS error bound of quantize -> dequantize on a normal row (generous; a broken search or
# a wrong bit layout lands far above it)
RMSE_BOUND = {"IQ4_NL": 0.1, "IQ4_XS": 0.1, "IQ3_S": 0.2, "IQ3_XXS": 0.25, "IQ2_S": 0.35,
              "IQ2_XS": 0.4, "IQ2_XXS": 0.45, "IQ1_M": 0.6, "IQ1_S": 0.6}


@pytest.mark.parametrize("name", QUANTIZERS)
def test_round_trip_error_is_small(name):
    rng = np.random.default_rng(11)
    n = 256
    x = rng.standard_normal((1, n)).astype(np.float32)
    y = reference.dequantize(name, reference.quantize(name, x, np.ones(n, np.float32)), n)
    rel = np.sqrt(np.mean((y - x[0]) ** 2) / np.mean(x[0] ** 2))
    assert rel < RMSE_BOUND[name], rel


def test_best_index_int8_picks_the_nearest_level_ties_up():
    v = iquants.KVALUES_IQ4NL
    xs = np.array([-1000, -127, -115.5, -115.6, 0, -4.5, -4.6, 1, 113, 1e9, np.nan], np.float32)
    got = list(iquants.best_index_int8(v, xs))
    # -115.5 is the midpoint of -127 and -104 (tie -> upper index 1); -4.5 is the midpoint of -10 and 1
    assert got == [0, 0, 1, 0, 8, 8, 7, 8, 15, 15, 15]


# --------------------------------------------------------------------------------------------------
# the start-up search tables (ggml's iq2xs_init_impl / iq3xs_init_impl), oracle-free
#
# Byte-exact quantization against ggml (above) is what proves them; these check their structure
# against a direct, slow re-derivation.

TABLE_TYPES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ3_XXS", "IQ3_S"]
NWANT = {"IQ2_XXS": 2, "IQ2_XS": 2, "IQ2_S": 1, "IQ1_S": 3, "IQ3_XXS": 2, "IQ3_S": 3}
FORMAT_GRID = {"IQ2_XXS": (grids.iq2xxs_grid, 8), "IQ2_XS": (grids.iq2xs_grid, 8),
               "IQ2_S": (grids.iq2s_grid, 8), "IQ1_S": (grids.iq1s_grid, 8),
               "IQ3_XXS": (grids.iq3xxs_grid, 4), "IQ3_S": (grids.iq3s_grid, 4)}


def _points(name):
    """The grid as 2*level+1 per coordinate, derived here from the format table."""
    table, nbytes = FORMAT_GRID[name]
    signed = name == "IQ1_S"
    rows = [[b - 256 if signed and b > 127 else b for b in e.to_bytes(nbytes, "little")] for e in table]
    values = sorted({v for r in rows for v in r})
    return [[2 * values.index(v) + 1 for v in r] for r in rows]


@pytest.mark.parametrize("name", TABLE_TYPES)
def test_every_grid_point_maps_to_itself(name):
    tab = iquants.quant_grid(name)
    bits = 3 if name.startswith("IQ3") else 2
    pts = _points(name)
    assert tab.pos.tolist() == pts
    for k, p in enumerate(pts):
        u = sum(((v - 1) // 2) << (bits * i) for i, v in enumerate(p))
        assert tab.kmap[u] == k
    assert (tab.kmap >= 0).sum() == len(pts)


@pytest.mark.parametrize("name", TABLE_TYPES)
def test_neighbour_lists_follow_ggml_order(name):
    """For off-grid codes: all grid points within the nwant smallest distinct distances, sorted by
    (distance, grid index) -- the order of ggml's qsort with iq2_compare_func, whose key
    (distance, index) is a total order, so qsort's instability cannot matter."""
    tab = iquants.quant_grid(name)
    bits = 3 if name.startswith("IQ3") else 2
    ncoord = 4 if name.startswith("IQ3") else 8
    pts = np.array(_points(name))
    off = np.flatnonzero(tab.kmap < 0)
    rng = np.random.default_rng(123)
    for u in list(off[:3]) + list(off[-3:]) + list(rng.choice(off, 40, replace=False)):
        u = int(u)
        pos = np.array([2 * ((u >> (bits * i)) & ((1 << bits) - 1)) + 1 for i in range(ncoord)])
        d2 = ((pts - pos) ** 2).sum(axis=1)
        keep = sorted(set(d2.tolist()))[:NWANT[name]]
        expect = sorted((int(d), j) for j, d in enumerate(d2) if d in keep)
        assert tab.neighbours_of(u).tolist() == [j for _, j in expect], u


@pytest.mark.parametrize("name", TABLE_TYPES)
def test_neighbour_table_layout_is_ggmls(name):
    """kmap[u] = -(offset+1) for off-grid codes in increasing order; at offset: count, members."""
    tab = iquants.quant_grid(name)
    off = np.flatnonzero(tab.kmap < 0)
    offsets = -tab.kmap[off] - 1
    counts = tab.neighbours[offsets].astype(np.int64)
    assert offsets[0] == 0 and (counts > 0).all()
    assert np.array_equal(offsets[1:], offsets[:-1] + 1 + counts[:-1])
    assert offsets[-1] + 1 + counts[-1] == tab.neighbours.size
    members = np.ones(tab.neighbours.size, dtype=bool)
    members[offsets] = False
    assert int(tab.neighbours[members].max()) < len(tab.pos)


def test_iq1_s_and_iq1_m_share_one_table():
    assert iquants.quant_grid("IQ1_S") is iquants.quant_grid("IQ1_M")
