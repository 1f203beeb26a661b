"""The numpy backend's fast dequantizers (accel/_np/dequant.py) stay bit-exact against live libggml.

The fast paths change how values are produced (packed lookup tables, signs folded into int8 grid
values, scales repeated per element, scratch buffers reused across chunks), so these tests aim at the
cases those tricks could get wrong: every special scale (NaN with any payload, signalling NaN, +-Inf,
+-0, fp16 subnormals, largest finite), every index of the packed tables, ragged chunk ends and
scratch reuse across different chunk sizes and threads. Expected values always come from the oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

from ggspec.accel import numpy_backend
from ggspec.conformance.compare import assert_bits_equal
from ggspec.reference.types import live_type

pytestmark = pytest.mark.oracle

B1 = numpy_backend.Backend(threads=1)
B2 = numpy_backend.Backend(threads=2)

# fp16 field offsets of the block scales ggml reads with GGML_FP16_TO_FP32
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "TQ1_0": [52], "TQ2_0": [64], "Q1_0": [0], "Q2_0": [0],
    "IQ4_NL": [0], "IQ4_XS": [0], "IQ2_XXS": [0], "IQ2_XS": [0], "IQ2_S": [0],
    "IQ3_XXS": [0], "IQ3_S": [0], "IQ1_S": [0],
}
TYPES = sorted(F16_FIELDS) + ["IQ1_M", "MXFP4", "NVFP4", "Q8_K"]

SPECIAL_F16 = np.array([
    0x0000, 0x8000,                  # +-0
    0x0001, 0x8001, 0x03FF, 0x0200,  # subnormals
    0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF,   # normals, largest finite
    0x7C00, 0xFC00,                  # +-Inf
    0x7C01, 0xFC01, 0x7D55,          # signalling NaNs (ggml quiets them)
    0x7E00, 0xFE00, 0x7FFF, 0xFFFF,  # quiet NaNs, payloads
], dtype=np.uint16)


def _check(oracle, t, blocks: np.ndarray, backend=B1):
    raw = np.ascontiguousarray(blocks, dtype=np.uint8).tobytes()
    n = blocks.shape[0] * t.block_size
    assert_bits_equal(backend.dequantize(t, raw, n), oracle.to_float(t, raw, n), t.name)


def _random_blocks(t, nb, seed):
    return np.random.default_rng(seed).integers(0, 256, (nb, t.type_size), dtype=np.uint8)


@pytest.mark.parametrize("name", TYPES)
def test_random_bytes_many_blocks(oracle, name):
    # random bytes: every field takes arbitrary bit patterns (about 3% of fp16 scales are NaN/Inf)
    t = live_type(name)
    _check(oracle, t, _random_blocks(t, 3000, 11))


@pytest.mark.parametrize("name", sorted(F16_FIELDS))
def test_special_fp16_scales(oracle, name):
    # every pair of special values in the scale fields (d and dmin/m), the rest of the block random
    t = live_type(name)
    offs = F16_FIELDS[name]
    vals = SPECIAL_F16
    combos = np.array(np.meshgrid(*[vals] * len(offs))).reshape(len(offs), -1).T      # (k, len(offs))
    blocks = _random_blocks(t, combos.shape[0] * 3, 12)
    for j, off in enumerate(offs):
        blocks[:, off:off + 2] = np.tile(combos[:, j], 3).astype("<u2").view(np.uint8).reshape(-1, 2)
    _check(oracle, t, blocks)


def test_special_scales_iq1_m(oracle):
    # IQ1_M's fp16 scale is the top nibble of each of the 4 uint16 scale words
    t = live_type("IQ1_M")
    blocks = _random_blocks(t, len(SPECIAL_F16) * 8, 13)
    sc = blocks[:, 48:56].copy().view("<u2")                 # (nb, 4)
    v = np.repeat(SPECIAL_F16, 8).astype(np.uint16)
    for k in range(4):
        sc[:, k] = (sc[:, k] & 0x0FFF) | (((v >> (4 * k)) & 0xF) << 12)
    blocks[:, 48:56] = sc.view(np.uint8)
    _check(oracle, t, blocks)


def test_q8_k_special_f32_scales(oracle):
    t = live_type("Q8_K")
    d = np.array([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x3F800000, 0x7F7FFFFF,
                  0x7F800000, 0xFF800000, 0x7F800001, 0x7FC00000, 0xFFC12345], dtype="<u4")
    blocks = _random_blocks(t, d.size * 2, 14)
    blocks[:, 0:4] = np.tile(d, 2).view(np.uint8).reshape(-1, 4)
    _check(oracle, t, blocks)


@pytest.mark.parametrize("name,off", [("IQ4_NL", 2), ("MXFP4", 1)])
def test_every_packed_nibble_pair(oracle, name, off):
    # the 4-bit lookups index 65536-entry tables by two packed bytes: hit every entry, low and high
    t = live_type(name)
    pairs = np.arange(65536, dtype="<u2").view(np.uint8).reshape(-1, 16)   # 8 pairs per block
    blocks = _random_blocks(t, pairs.shape[0], 15)
    blocks[:, off:off + 16] = pairs
    _check(oracle, t, blocks)


def test_every_nvfp4_and_iq4_xs_pair(oracle):
    for name, off, width in (("NVFP4", 4, 32), ("IQ4_XS", 8, 128)):
        t = live_type(name)
        codes = np.arange(65536, dtype="<u2").view(np.uint8)
        nb = -(-codes.size // width)
        blocks = _random_blocks(t, nb, 16)
        q = np.resize(codes, nb * width).reshape(nb, width)
        blocks[:, off:off + width] = q
        if name == "NVFP4":
            blocks[:, 0:4] = 0x38                               # a finite ue4m3 scale
        _check(oracle, t, blocks)


def test_every_iq2_xs_code(oracle):
    # IQ2_XS's table is indexed by the whole uint16 field (grid index and sign code)
    t = live_type("IQ2_XS")
    q = np.arange(65536, dtype="<u2").view(np.uint8).reshape(-1, 64)       # 32 codes per block
    blocks = _random_blocks(t, q.shape[0], 17)
    blocks[:, 2:66] = q
    blocks[:, 0:2] = np.frombuffer(np.float16(0.75).tobytes(), np.uint8)
    _check(oracle, t, blocks)


def test_every_iq2_xxs_grid_and_sign_code(oracle):
    # IQ2_XXS: (grid byte, 7-bit sign code) pairs: 256 x 128, four per sub-block
    t = live_type("IQ2_XXS")
    g = np.arange(256 * 128) // 128
    c = np.arange(256 * 128) % 128
    nsub = g.size // 4
    sub = np.zeros((nsub, 8), np.uint8)
    sub[:, 0:4] = g.reshape(nsub, 4)
    aux = np.zeros(nsub, np.uint32)
    for l in range(4):
        aux |= c.reshape(nsub, 4)[:, l].astype(np.uint32) << np.uint32(7 * l)
    aux |= np.uint32(5) << np.uint32(28)
    sub[:, 4:8] = aux.astype("<u4").view(np.uint8).reshape(nsub, 4)
    blocks = _random_blocks(t, nsub // 8, 18)
    blocks[:, 2:66] = sub.reshape(-1, 64)
    _check(oracle, t, blocks)


@pytest.mark.parametrize("name", ["Q4_0", "Q5_1", "Q3_K", "Q4_K", "Q6_K", "IQ2_S", "IQ3_XXS", "IQ1_M", "NVFP4", "TQ1_0"])
def test_ragged_chunks_and_scratch_reuse(oracle, name, monkeypatch):
    # small chunks: many chunks per call on two threads, a ragged last chunk, and scratch buffers
    # reused across calls with different chunk sizes (same thread-local keys, other shapes)
    t = live_type(name)
    monkeypatch.setattr(numpy_backend, "CHUNK_ELEMENTS", 4 * t.block_size * 7)
    for nb, seed in ((7 * 9 + 5, 20), (3, 21), (7 * 4, 22), (1, 23)):
        blocks = _random_blocks(t, nb, seed)
        _check(oracle, t, blocks, B2)
        _check(oracle, t, blocks, B1)


def test_every_iq3_xxs_grid_pair_and_sign_code_pair(oracle):
    # IQ3_XXS gathers two grid indices per uint16 and two 7-bit sign codes per 14-bit index
    t = live_type("IQ3_XXS")
    nb = 2048
    blocks = _random_blocks(t, nb, 19)
    blocks[:, 2:66] = np.arange(65536, dtype="<u2").view(np.uint8).reshape(nb, 64)
    k = np.arange(nb * 8, dtype=np.uint32) % 16384
    aux = k | (((k * 7919) % 16384) << np.uint32(14)) | (np.arange(nb * 8, dtype=np.uint32) % 16 << np.uint32(28))
    blocks[:, 66:98] = aux.astype("<u4").view(np.uint8).reshape(nb, 32)
    blocks[:, 0:2] = np.frombuffer(np.float16(-1.5).tobytes(), np.uint8)
    _check(oracle, t, blocks)
