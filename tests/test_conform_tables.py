"""vectors/tables/*.json: the i-quant grids as data, consistent, equal to the reference's tables, and
what ggml's dequantizers actually use (every grid entry selected in a block and decoded by libggml)."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from ggspec.conformance.vectors import vectors_root
from ggspec.reference import grids

TABLES = sorted((vectors_root() / "tables").glob("*.json"))


def load(name):
    return json.loads((vectors_root() / "tables" / f"{name}.json").read_text())


def entries(name) -> np.ndarray:
    """Each entry's bytes as ggml holds them: (entries, bytes_per_entry) int16 (signed as C reads them)."""
    t = load(name)
    raw = np.frombuffer(bytes.fromhex(t["bytes_hex"]), np.uint8).reshape(t["entries"], t["bytes_per_entry"])
    return raw.astype(np.int16)


def test_every_table_is_there_and_consistent():
    assert {p.stem for p in TABLES} == {"kmask_iq2xs", "ksigns_iq2xs", "iq2xxs_grid", "iq2xs_grid", "iq2s_grid",
                                         "iq3xxs_grid", "iq3s_grid", "iq1s_grid", "kvalues_iq4nl"}
    for p in TABLES:
        t = json.loads(p.read_text())
        raw = bytes.fromhex(t["bytes_hex"])
        assert hashlib.sha256(raw).hexdigest() == t["sha256"], p.name
        assert len(raw) == t["entries"] * t["bytes_per_entry"] == len(t["values"]) * t["bytes_per_entry"]
        fmt = {"uint8_t": "B", "int8_t": "b", "uint32_t": "I", "uint64_t": "Q"}[t["c_type"]]
        vals = [int(v, 16) if isinstance(v, str) else v for v in t["values"]]
        assert struct.pack("<" + fmt * len(vals), *vals) == raw, p.name
        assert tuple(vals) == tuple(getattr(grids, t["name"])), p.name


# ------------------------------------------------------------------------------------------------
# ggml's behaviour: blocks that select every entry, decoded by libggml's to_float

F16 = {1.0: 0x3C00, 4.0: 0x4400, 8.0: 0x4800}


def spread(n: int, n_blocks: int) -> list:
    """Every index 0..n-1 once, in a fixed pseudo-random order, so the high index bits (qh) vary
    inside each group of a block and a wrong bit order cannot go unnoticed."""
    return [int(i) for i in np.random.default_rng(n).permutation(n)]


def _deq(oracle, type_name, blocks: bytes, n_blocks: int, block=256) -> np.ndarray:
    return oracle.to_float(type_name, blocks, n_blocks * block)


@pytest.mark.oracle
def test_iq2xxs_grid_and_ksigns_match_ggml(oracle):
    grid = entries("iq2xxs_grid")
    blocks = b""
    for b in range(8):                                   # 32 entries per block, d = 8: db = 1
        qs = b""
        for ib in range(8):
            idx = [32 * b + 4 * ib + l for l in range(4)]
            qs += bytes(idx) + struct.pack("<I", 0)
        blocks += struct.pack("<H", F16[8.0]) + qs
    y = _deq(oracle, "IQ2_XXS", blocks, 8).reshape(256, 8)
    assert np.array_equal(y, grid.astype(np.float32))
    signs = entries("ksigns_iq2xs")[:, 0]
    blocks = b""
    for b in range(4):                                   # sign codes 32b..32b+31 on grid entry 0
        qs = b""
        for ib in range(8):
            codes = [32 * b + 4 * ib + l for l in range(4)]
            aux1 = sum(c << (7 * l) for l, c in enumerate(codes))
            qs += bytes(4) + struct.pack("<I", aux1)
        blocks += struct.pack("<H", F16[8.0]) + qs
    y = _deq(oracle, "IQ2_XXS", blocks, 4).reshape(128, 8)
    want = np.where((signs[:, None] >> np.arange(8)) & 1, -1, 1) * grid[0]
    assert np.array_equal(y, want.astype(np.float32))


@pytest.mark.oracle
def test_iq2xs_and_iq2s_grids_match_ggml(oracle):
    grid = entries("iq2xs_grid")
    blocks = b""
    for b in range(16):
        qs = struct.pack("<32H", *range(32 * b, 32 * b + 32))
        blocks += struct.pack("<H", F16[8.0]) + qs + bytes(8)
    y = _deq(oracle, "IQ2_XS", blocks, 16).reshape(512, 8)
    assert np.array_equal(y, grid.astype(np.float32))
    grid = entries("iq2s_grid")
    blocks = b""
    order = spread(1024, 32)
    for b in range(32):
        idx = order[32 * b: 32 * b + 32]
        low = bytes(i & 0xFF for i in idx)
        qh = bytes(sum(((idx[4 * ib + l] >> 8) & 3) << (2 * l) for l in range(4)) for ib in range(8))
        blocks += struct.pack("<H", F16[8.0]) + low + bytes(32) + qh + bytes(8)
    y = _deq(oracle, "IQ2_S", blocks, 32).reshape(1024, 8)
    assert np.array_equal(y, grid[order].astype(np.float32))


@pytest.mark.oracle
def test_iq3_grids_match_ggml(oracle):
    grid = entries("iq3xxs_grid")
    blocks = b""
    for b in range(4):                                   # 64 entries per block, d = 4: db = 1
        blocks += struct.pack("<H", F16[4.0]) + bytes(range(64 * b, 64 * b + 64)) + bytes(32)
    y = _deq(oracle, "IQ3_XXS", blocks, 4).reshape(256, 4)
    assert np.array_equal(y, grid.astype(np.float32))
    grid = entries("iq3s_grid")
    blocks = b""
    order = spread(512, 8)
    for b in range(8):                                   # d = 1, scales 0: db = 1
        idx = order[64 * b: 64 * b + 64]
        low = bytes(i & 0xFF for i in idx)
        qh = bytes(sum(((idx[8 * ib + e] >> 8) & 1) << e for e in range(8)) for ib in range(8))
        blocks += struct.pack("<H", F16[1.0]) + low + qh + bytes(32) + bytes(4)
    y = _deq(oracle, "IQ3_S", blocks, 8).reshape(512, 4)
    assert np.array_equal(y, grid[order].astype(np.float32))


@pytest.mark.oracle
def test_iq1s_grid_and_iq4nl_values_match_ggml(oracle):
    grid = entries("iq1s_grid")
    grid = np.where(grid > 127, grid - 256, grid)        # int8 bytes
    blocks = b""
    order = spread(2048, 64)
    for b in range(64):                                  # 32 entries per block; d = 1, scale 0: y = grid + 1/8
        idx = order[32 * b: 32 * b + 32]
        qs = bytes(i & 0xFF for i in idx)
        qh = struct.pack("<8H", *[sum(((idx[4 * ib + l] >> 8) & 7) << (3 * l) for l in range(4)) for ib in range(8)])
        blocks += struct.pack("<H", F16[1.0]) + qs + qh
    y = _deq(oracle, "IQ1_S", blocks, 64).reshape(2048, 8)
    assert np.array_equal(y, (grid[order] + np.float32(0.125)).astype(np.float32))
    kv = entries("kvalues_iq4nl")[:, 0]
    kv = np.where(kv > 127, kv - 256, kv)
    qs = bytes(j | ((15 - j) << 4) for j in range(16))
    y = oracle.to_float("IQ4_NL", struct.pack("<H", F16[1.0]) + qs, 32)
    assert np.array_equal(y[:16], kv.astype(np.float32)) and np.array_equal(y[16:], kv[::-1].astype(np.float32))


def test_tables_regenerate_identically(tmp_path):
    from ggspec.conformance import oracle_setup
    src = oracle_setup.source_root()
    if not (src / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-common.h").is_file():
        pytest.skip(f"llama.cpp's source is not at {src} (ggspec oracle setup --source)")
    from ggspec.vectors import generate_tables
    assert generate_tables.main(["--out", str(tmp_path), "--source", str(src)]) == 0
    for p in TABLES:
        assert (tmp_path / "tables" / p.name).read_bytes() == p.read_bytes(), p.name
