"""Hypothesis strategies for ggml data, exported for other projects' tests.

    from ggspec.conformance.strategies import rows, block_bytes, imatrices
    @given(rows("Q4_K"))
    def test_mine(x): ...

``rows(type)``: float32 arrays (n_rows, n_per_row) with n_per_row a multiple of the block size,
drawn from mixtures that matter to quantizers (normal at random scales, outliers, zeros, constants,
half-integer grids, per-block scales). ``block_bytes(type)``: raw blocks for dequantizers, with the
scale fields drawn to include subnormals, infinities and NaNs. ``imatrices(n)``: importance matrices.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..reference.types import GGMLType, get_type

# byte offsets of 16-bit float scale fields per type (d, dmin, m, s); see docs/formats/*
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ2_XXS": [0], "IQ2_XS": [0], "IQ2_S": [0], "IQ3_XXS": [0], "IQ3_S": [0], "IQ1_S": [0],
    "IQ4_NL": [0], "IQ4_XS": [0], "TQ1_0": [52], "TQ2_0": [64], "Q1_0": [0], "Q2_0": [0],
}

_SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFD55]


def _f16_scale():
    """fp16 bit patterns: mostly ordinary scales, sometimes anything, sometimes special."""
    ordinary = st.floats(1e-6, 1e3).map(lambda v: int(np.float16(v).view(np.uint16)))
    return st.one_of(ordinary, ordinary, st.integers(0, 0xFFFF), st.sampled_from(_SPECIAL_F16))


@st.composite
def block_bytes(draw, type, max_blocks: int = 4):
    """Raw bytes of 1..max_blocks blocks of ``type``, with drawn scale fields; returns (raw, n)."""
    t: GGMLType = get_type(type)
    nb = draw(st.integers(1, max_blocks))
    seed = draw(st.integers(0, 2**32 - 1))
    b = np.random.default_rng(seed).integers(0, 256, (nb, t.type_size), dtype=np.uint8)
    for i in range(nb):
        for off in F16_FIELDS.get(t.name, []):
            v = draw(_f16_scale())
            b[i, off:off + 2] = [v & 0xFF, v >> 8]
        if t.name == "IQ1_M":  # its fp16 scale is split over the top nibbles of the four uint16 scales
            v = draw(_f16_scale())
            sc = b[i, 48:56].view("<u2").copy()
            for k in range(4):
                sc[k] = (sc[k] & 0x0FFF) | (((v >> (4 * k)) & 0xF) << 12)
            b[i, 48:56] = sc.view(np.uint8)
    return b.tobytes(), nb * t.block_size


_KINDS = ("normal", "uniform", "outlier", "zeros", "constant", "halfgrid", "blockscale", "sparse", "onesign")


@st.composite
def rows(draw, type, max_rows: int = 2, max_blocks_per_row: "int | None" = None):
    """float32 (n_rows, n_per_row) inputs for quantizers of ``type``."""
    t: GGMLType = get_type(type)
    unit = max(t.block_size, 1)
    if max_blocks_per_row is None:
        max_blocks_per_row = max(1, 512 // unit)
    n_per_row = unit * draw(st.integers(1, max_blocks_per_row))
    n_rows = draw(st.integers(1, max_rows))
    kind = draw(st.sampled_from(_KINDS))
    scale = 10.0 ** draw(st.floats(-8, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (n_rows, n_per_row)
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "uniform":
        x = rng.uniform(-1, 1, shape)
    elif kind == "outlier":
        x = rng.standard_normal(shape) * 0.01
        x[rng.integers(0, n_rows), rng.integers(0, n_per_row)] = draw(st.sampled_from([100.0, -100.0, 7.0]))
    elif kind == "zeros":
        x = np.zeros(shape)
    elif kind == "constant":
        x = np.full(shape, draw(st.floats(-10, 10)))
    elif kind == "halfgrid":
        x = rng.integers(-16, 17, shape) * 0.5
    elif kind == "blockscale":
        groups = 10.0 ** rng.uniform(-3, 3, (n_rows, -(-n_per_row // 32)))
        x = rng.standard_normal(shape) * np.repeat(groups, 32, axis=1)[:, :n_per_row]
    elif kind == "sparse":
        x = np.where(rng.uniform(size=shape) < 0.9, 0.0, rng.standard_normal(shape))
    else:
        x = np.abs(rng.standard_normal(shape)) * draw(st.sampled_from([1.0, -1.0]))
    return np.ascontiguousarray(x * scale, dtype=np.float32)


@st.composite
def imatrices(draw, n: int):
    """float32 (n,) importance matrices: uniform, log-normal, zero in places, one dominant column."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["ones", "lognormal", "zeros", "dominant", "tiny"]))
    if kind == "ones":
        w = np.ones(n)
    elif kind == "lognormal":
        w = np.exp(rng.standard_normal(n) * 2)
    elif kind == "zeros":
        w = np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(0.1, 4, n))
    elif kind == "dominant":
        w = np.ones(n)
        w[rng.integers(0, n)] = 1e4
    else:
        w = np.full(n, 1e-6)
    return w.astype(np.float32)
