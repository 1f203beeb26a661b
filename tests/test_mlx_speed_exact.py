"""The MLX backend's fast dequantizers (accel/mlx_backend.py ``_Dequantizers``) stay bit-exact
against live libggml, and stay fast.

The fast paths change how values are produced: nibbles and crumbs split on packed words with byte
masks (SWAR), several int8 values gathered per table item (signs folded into the grid values, 8 *
(grid + delta) for IQ1), fp16 scales through a 65536-entry table, and a chunk-level switch to the
plain paths ``_p_*`` when a scale is NaN (where ggml's sign flip differs from a multiply by a
negative value). These tests aim at what those tricks could get wrong: every special scale on both
sides of that switch, with the x86 NaN rewrite forced on too; every entry of the packed tables;
chunk boundaries on two threads. Expected values always come from the oracle.
"""

from __future__ import annotations


import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="mlx is not installed (pip install 'mlx[cpu]')")

from ggspec.accel import mlx_backend  # noqa: E402
from ggspec.conformance.compare import assert_bits_equal  # noqa: E402
from ggspec.reference.types import live_type  # noqa: E402

pytestmark = pytest.mark.oracle

MX = mlx_backend.Backend()
MX_NAN = mlx_backend.Backend(x86_nan=True)          # the made-NaN rewrite of arm64, forced on

F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "TQ1_0": [52], "TQ2_0": [64], "Q1_0": [0], "Q2_0": [0],
    "IQ4_NL": [0], "IQ4_XS": [0], "IQ2_XXS": [0], "IQ2_XS": [0], "IQ2_S": [0],
    "IQ3_XXS": [0], "IQ3_S": [0], "IQ1_S": [0],
}
TYPES = sorted(F16_FIELDS) + ["IQ1_M", "MXFP4", "NVFP4", "Q8_K"]
# the types whose fast path is exact only for a non-NaN scale (a plain path takes NaN chunks)
NAN_SWITCH = ["Q1_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"]

NUMBERS_F16 = np.array([
    0x0000, 0x8000,                  # +-0
    0x0001, 0x8001, 0x03FF, 0x0200,  # subnormals
    0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF,   # normals, largest finite
    0x7C00, 0xFC00,                  # +-Inf
], dtype=np.uint16)
NAN_F16 = np.array([0x7C01, 0xFC01, 0x7D55, 0x7E00, 0xFE00, 0x7FFF, 0xFFFF], dtype=np.uint16)


def _check(oracle, t, blocks: np.ndarray, backends=(MX, MX_NAN)):
    raw = np.ascontiguousarray(blocks, dtype=np.uint8).tobytes()
    n = blocks.shape[0] * t.block_size
    expected = oracle.to_float(t, raw, n)
    for b in backends:
        assert_bits_equal(b.dequantize(t, raw, n), expected, f"{t.name} (x86_nan={b.arith.fix})")


def _random_blocks(t, nb, seed):
    return np.random.default_rng(seed).integers(0, 256, (nb, t.type_size), dtype=np.uint8)


def _with_scales(t, blocks, values, seed):
    """Every combination of ``values`` in the block's fp16 scale fields (IQ1_M: its split scale)."""
    blocks = blocks.copy()
    if t.name == "IQ1_M":
        v = np.resize(values, blocks.shape[0]).astype(np.uint16)
        sc = blocks[:, 48:56].copy().view("<u2")
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((v >> (4 * k)) & 0xF) << 12)
        blocks[:, 48:56] = sc.view(np.uint8)
        return blocks
    offs = F16_FIELDS.get(t.name, [])
    rng = np.random.default_rng(seed)
    for j, off in enumerate(offs):
        v = np.resize(np.repeat(values, len(values) ** j), blocks.shape[0]) if j < 2 else rng.choice(values, blocks.shape[0])
        blocks[:, off:off + 2] = v.astype("<u2").view(np.uint8).reshape(-1, 2)
    return blocks


@pytest.mark.parametrize("name", TYPES)
def test_random_bytes_many_blocks(oracle, name):
    t = live_type(name)
    _check(oracle, t, _random_blocks(t, 3000, 31))


@pytest.mark.parametrize("name", sorted(F16_FIELDS) + ["IQ1_M"])
def test_special_scales_without_nan(oracle, name):
    # +-0, subnormals, largest finite, +-Inf in every scale field: one chunk with no NaN scale, so
    # the fast path handles it (for NAN_SWITCH types too)
    t = live_type(name)
    k = len(NUMBERS_F16) ** min(2, len(F16_FIELDS.get(name, [0])))
    blocks = _with_scales(t, _random_blocks(t, 3 * k, 32), NUMBERS_F16, 33)
    _check(oracle, t, blocks)


@pytest.mark.parametrize("name", sorted(F16_FIELDS) + ["IQ1_M"])
def test_special_scales_with_nan(oracle, name):
    # NaN payloads (signalling and quiet, both signs) among the other special values
    t = live_type(name)
    vals = np.concatenate([NUMBERS_F16, NAN_F16])
    k = len(vals) ** min(2, len(F16_FIELDS.get(name, [0])))
    blocks = _with_scales(t, _random_blocks(t, 2 * k, 34), vals, 35)
    _check(oracle, t, blocks)


@pytest.mark.parametrize("name", NAN_SWITCH)
def test_nan_switch_takes_the_right_path(oracle, name, monkeypatch):
    # a chunk without a NaN scale never reaches the plain path; one with a NaN scale does
    t = live_type(name)
    b = mlx_backend.Backend()
    calls = []
    plain = getattr(mlx_backend._Dequantizers, "_p_" + name)
    monkeypatch.setattr(b._deq, "_p_" + name, lambda blk: calls.append(1) or plain(b._deq, blk))
    blocks = _with_scales(t, _random_blocks(t, 40, 36), NUMBERS_F16, 37)
    _check(oracle, t, blocks, (b,))
    assert calls == []
    blocks[7, 0:2] = np.frombuffer(np.uint16(0x7E01).astype("<u2").tobytes(), np.uint8)
    _check(oracle, t, blocks, (b,))
    assert calls == [1]


@pytest.mark.parametrize("name", ["Q1_0", "IQ2_S"])
def test_nan_switch_over_many_chunks(oracle, name, monkeypatch):
    # several chunks: a segment without NaN scales never checks or takes the plain path; one NaN
    # scale sends exactly its own chunk there
    t = live_type(name)
    monkeypatch.setattr(mlx_backend, "CHUNK_ELEMENTS", 8 * t.block_size)
    b = mlx_backend.Backend(threads=2)
    calls = []
    plain = getattr(mlx_backend._Dequantizers, "_p_" + name)
    monkeypatch.setattr(b._deq, "_p_" + name, lambda blk: calls.append(blk.shape[0]) or plain(b._deq, blk))
    blocks = _with_scales(t, _random_blocks(t, 8 * 5 + 3, 39), NUMBERS_F16, 40)
    _check(oracle, t, blocks, (b,))
    assert calls == []
    blocks[8 * 2 + 5, 0:2] = np.frombuffer(np.uint16(0xFC07).astype("<u2").tobytes(), np.uint8)
    _check(oracle, t, blocks, (b,))
    assert calls == [8]


def test_q8_k_special_f32_scales(oracle):
    t = live_type("Q8_K")
    d = np.array([0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x3F800000, 0x7F7FFFFF,
                  0x7F800000, 0xFF800000, 0x7F800001, 0x7FC00000, 0xFFC12345], dtype="<u4")
    blocks = _random_blocks(t, d.size * 2, 38)
    blocks[:, 0:4] = np.tile(d, 2).view(np.uint8).reshape(-1, 4)
    _check(oracle, t, blocks)


def _finite_scales(t, blocks, seed):
    """Random finite fp16 scales (so that NAN_SWITCH types stay on their fast path)."""
    rng = np.random.default_rng(seed)
    for off in F16_FIELDS.get(t.name, []):
        v = (rng.uniform(0.01, 10, blocks.shape[0]) * rng.choice([-1, 1], blocks.shape[0])).astype(np.float16)
        blocks[:, off:off + 2] = v.view(np.uint8).reshape(-1, 2)
    return blocks


def _sweep(t, off, width, values_u8, seed):
    """Blocks whose bytes [off, off + width) run through ``values_u8`` (padded by repetition)."""
    nb = -(-values_u8.size // width)
    blocks = _finite_scales(t, _random_blocks(t, nb, seed), seed + 1000)
    blocks[:, off:off + width] = np.resize(values_u8, nb * width).reshape(nb, width)
    return blocks


PAIRS = np.arange(65536, dtype="<u2").view(np.uint8)          # every byte pair, as packed bytes
BYTES = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize("name,off,width", [
    ("IQ4_NL", 2, 16), ("MXFP4", 1, 16), ("NVFP4", 4, 32), ("IQ4_XS", 8, 128),   # 65536-entry pair tables
    ("IQ2_XS", 2, 64),                                        # the uint16 field (grid, sign code)
    ("IQ3_XXS", 2, 64),                                       # two grid indices per uint16
    ("Q4_0", 2, 16), ("Q4_1", 4, 16), ("Q5_0", 6, 16), ("Q5_1", 8, 16), ("TQ2_0", 0, 64),
])
def test_every_byte_pair(oracle, name, off, width):
    t = live_type(name)
    blocks = _sweep(t, off, width, PAIRS, 40)
    if name == "NVFP4":
        blocks[:, 0:4] = 0x38
    _check(oracle, t, blocks)


@pytest.mark.parametrize("name,off,width", [
    ("Q5_0", 2, 4), ("Q5_1", 4, 4),                           # qh byte -> 8 high-bit bytes
    ("Q1_0", 2, 16), ("Q2_0", 2, 16), ("TQ1_0", 0, 52),       # byte -> 8 signs / 4 crumbs / 5 trits
    ("IQ2_S", 34, 32), ("IQ3_S", 74, 32),                     # sign bytes -> negation masks
    ("Q3_K", 0, 32), ("Q5_K", 16, 32), ("Q6_K", 128, 64),     # high-bit planes
    ("IQ2_S", 66, 8), ("IQ3_S", 66, 8),                       # qh byte -> high index bits
    ("IQ2_XS", 66, 8), ("IQ2_S", 74, 8), ("IQ3_S", 106, 4),   # scale byte -> two scale factors
])
def test_every_byte(oracle, name, off, width):
    t = live_type(name)
    _check(oracle, t, _sweep(t, off, width, np.tile(BYTES, 4), 41))


def test_every_iq2_xxs_grid_and_sign_code(oracle):
    # (grid byte, 7-bit sign code) pairs: 256 x 128 table entries, four per sub-block
    t = live_type("IQ2_XXS")
    g = np.arange(256 * 128) // 128
    c = np.arange(256 * 128) % 128
    nsub = g.size // 4
    sub = np.zeros((nsub, 8), np.uint8)
    sub[:, 0:4] = g.reshape(nsub, 4)
    aux = np.zeros(nsub, np.uint32)
    for l in range(4):
        aux |= c.reshape(nsub, 4)[:, l].astype(np.uint32) << np.uint32(7 * l)
    aux |= (np.arange(nsub, dtype=np.uint32) % 16) << np.uint32(28)
    sub[:, 4:8] = aux.astype("<u4").view(np.uint8).reshape(nsub, 4)
    blocks = _random_blocks(t, nsub // 8, 42)
    blocks[:, 2:66] = sub.reshape(-1, 64)
    blocks[:, 0:2] = np.frombuffer(np.float16(-0.375).tobytes(), np.uint8)
    _check(oracle, t, blocks)


def test_every_iq2_s_grid_and_iq3_s_grid(oracle):
    # IQ2_S: 10-bit grid index = qs | 2 bits of qh; IQ3_S: 9-bit = qs | 1 bit of qh
    t = live_type("IQ2_S")
    idx = np.arange(1024)
    nb = idx.size // 32
    blocks = _finite_scales(t, _random_blocks(t, nb, 43), 143)
    blocks[:, 2:34] = (idx & 255).reshape(nb, 32)
    hi = (idx >> 8).reshape(nb, 8, 4)                         # slot l of group ib: bits 2l of qh[ib]
    blocks[:, 66:74] = (hi << (2 * np.arange(4))).sum(axis=2)
    _check(oracle, t, blocks)
    t = live_type("IQ3_S")
    idx = np.arange(512 * 2)
    nb = idx.size // 64
    blocks = _finite_scales(t, _random_blocks(t, nb, 44), 144)
    blocks[:, 2:66] = (idx & 255).reshape(nb, 64)
    hi = ((idx >> 8) & 1).reshape(nb, 8, 8)
    blocks[:, 66:74] = (hi << np.arange(8)).sum(axis=2)
    _check(oracle, t, blocks)


def test_every_iq1_index_and_delta_sign(oracle):
    # IQ1_S / IQ1_M: 11-bit grid index plus the delta sign: every entry of the 4096-row table
    idx = np.arange(4096)
    t = live_type("IQ1_S")
    nb = idx.size // 32
    blocks = _random_blocks(t, nb, 45)
    blocks[:, 2:34] = (idx & 255).reshape(nb, 32)
    hi = ((idx >> 8) & 7).reshape(nb, 8, 4)
    neg = (idx >> 11).reshape(nb, 8, 4)[:, :, 0]             # one delta sign per group of 4 slots
    qh = (hi << (3 * np.arange(4))).sum(axis=2) | ((np.arange(nb * 8).reshape(nb, 8) % 8) << 12) | (neg << 15)
    blocks[:, 34:50] = qh.astype("<u2").view(np.uint8).reshape(nb, 16)
    _check(oracle, t, blocks)
    t = live_type("IQ1_M")
    blocks = _random_blocks(t, nb, 46)
    blocks[:, 0:32] = (idx & 255).reshape(nb, 32)
    nib = (idx >> 8).reshape(nb, 16, 2)                      # slot 2k: low nibble of qh[k], 2k+1: high
    blocks[:, 32:48] = nib[:, :, 0] | (nib[:, :, 1] << 4)
    _check(oracle, t, blocks)


@pytest.mark.parametrize("name", ["Q4_0", "Q5_1", "Q3_K", "Q4_K", "Q6_K", "IQ2_S", "IQ3_XXS", "IQ1_M",
                                  "NVFP4", "TQ1_0", "Q1_0", "IQ2_XXS"])
def test_chunk_boundaries_two_threads(oracle, name, monkeypatch):
    # many chunks per call over two threads, a ragged last chunk; NaN scales in some chunks only
    t = live_type(name)
    monkeypatch.setattr(mlx_backend, "CHUNK_ELEMENTS", 7 * t.block_size)
    b = mlx_backend.Backend(threads=2)
    for nb, seed in ((7 * 9 + 5, 47), (3, 48), (1, 49)):
        blocks = _random_blocks(t, nb, seed)
        if name in F16_FIELDS:
            off = F16_FIELDS[name][0]
            blocks[:, off:off + 2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
            blocks[::11, off:off + 2] = np.frombuffer(np.uint16(0x7E00).astype("<u2").tobytes(), np.uint8)
        _check(oracle, t, blocks, (b,))


@pytest.mark.parametrize("name", ["F16", "BF16"])
def test_every_16_bit_pattern(oracle, name, monkeypatch):
    # F16 goes through ggml's conversion table; BF16 on the CPU device is the direct bit shift
    # (mlx_backend.BIT_COPIES), here over chunks of 1000 values on the backend's threads
    monkeypatch.setattr(mlx_backend, "BIT_COPY_CHUNK", 1000)
    t = live_type(name)
    _check(oracle, t, np.arange(65536, dtype="<u2").view(np.uint8).reshape(-1, 2))


def test_bf16_mlx_op_every_pattern(oracle):
    """The MLX op for BF16 (used on the GPU device, where BIT_COPIES does not apply): every pattern
    through the dequantizer itself, on the CPU stream."""
    t = live_type("BF16")
    raw = np.arange(65536, dtype="<u2").view(np.uint8).reshape(-1, 2)
    with mx.stream(mx.cpu):
        y = MX._deq.BF16(mx.array(raw))
        mx.eval(y)
    assert_bits_equal(np.array(memoryview(y), dtype=np.float32).reshape(-1),
                      oracle.to_float(t, raw.tobytes(), 65536), "BF16 as an MLX op")


def test_f32_bit_copy_keeps_every_nan(monkeypatch):
    """F32 is stored as is (ggml has no to_float for it; get_rows memcpys the row): the direct path
    must return the input bits, NaN payloads, signalling NaNs and -0 included, threaded."""
    monkeypatch.setattr(mlx_backend, "BIT_COPY_CHUNK", 1000)
    rng = np.random.default_rng(5)
    w = rng.integers(0, 2 ** 32, 20001, dtype=np.uint64).astype(np.uint32)
    w[::7] = (w[::7] & np.uint32(0x803FFFFF)) | np.uint32(0x7F800001)       # sNaN with payloads, both signs
    w[1::13] = 0x80000000
    raw = w.astype("<u4").tobytes()
    got = MX.dequantize("F32", raw, w.size)
    assert_bits_equal(got, w.view(np.float32), "F32 bit copy")
    out = np.empty(w.size, np.float32)
    assert np.shares_memory(MX.dequantize("F32", raw, w.size, out=out), out)
    assert_bits_equal(out, got, "F32 bit copy into out=")
