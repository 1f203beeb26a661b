"""The golden-vector format: loading, validation and iteration.

A vector file is JSON (``vectors/<family>/<TYPE>.json``; the format is documented in
``docs/vectors.md`` and ``vectors/schema/vectors.schema.json``). Floats travel as the little-endian
hex of their float32 bits, block bytes as hex, so a consumer needs only a JSON parser and a hex decoder.

    {"schema": "ggspec-vectors/1", "type": "Q4_K", "ggml_type_id": 12, "block_size": 256,
     "type_size": 144, "family": "kquant", "provenance": {...},
     "testGroups": [
       {"op": "quantize", "imatrix": false, "n_per_row": 256, "source": "ggml_quantize_chunk",
        "tests": [{"tcId": 1, "comment": "...", "flags": ["Normal"], "rows": 2,
                   "input_f32_hex": "...", "expected_hex": "...", "dequantized_f32_hex": "..."}]},
       {"op": "quantize", "imatrix": true, ... each test also has "imatrix_f32_hex"},
       {"op": "dequantize", "source": "to_float", "tests": [{"tcId": 40, "comment": "...",
        "flags": ["SpecialScale"], "n": 256, "input_hex": "...", "expected_f32_hex": "..."}]}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import FormatError

SCHEMA = "ggspec-vectors/1"
NOT_CODEC = ("schema", "model", "gguf", "mix", "tables")


# ------------------------------------------------------------------------------------------------
# hex codecs (little-endian float32 bits)

def f32_to_hex(a) -> str:
    return np.ascontiguousarray(a, dtype="<f4").reshape(-1).tobytes().hex()


def hex_to_f32(s: str) -> np.ndarray:
    b = bytes.fromhex(s)
    if len(b) % 4:
        raise FormatError(f"float32 hex has {len(b)} bytes, not a multiple of 4")
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


# ------------------------------------------------------------------------------------------------
# cases

@dataclass
class QuantizeCase:
    type: str
    tcId: int
    comment: str
    flags: list
    x: np.ndarray            # float32 (rows, n_per_row)
    imatrix: "np.ndarray | None"
    expected: bytes
    dequantized: "np.ndarray | None"
    source: str = "ggml_quantize_chunk"
    op: str = field(default="quantize", init=False)


@dataclass
class DequantizeCase:
    type: str
    tcId: int
    comment: str
    flags: list
    raw: bytes
    n: int
    expected: np.ndarray     # float32 (n,)
    source: str = "to_float"
    op: str = field(default="dequantize", init=False)


@dataclass
class VectorFile:
    type: str
    ggml_type_id: int
    block_size: int
    type_size: int
    family: str
    provenance: dict
    groups: list
    path: str = ""

    def cases(self, op: "str | None" = None) -> Iterator["QuantizeCase | DequantizeCase"]:
        for g in self.groups:
            if op and g["op"] != op:
                continue
            for t in g["tests"]:
                yield _case(self, g, t)


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise FormatError(f"{where}: missing key {key!r}")
    return d[key]


def _case(vf: VectorFile, g: dict, t: dict):
    where = f"{vf.path or vf.type} tcId {t.get('tcId')}"
    if g["op"] == "quantize":
        n_per_row = int(_need(g, "n_per_row", where))
        rows = int(_need(t, "rows", where))
        x = hex_to_f32(_need(t, "input_f32_hex", where))
        if x.size != rows * n_per_row:
            raise FormatError(f"{where}: input has {x.size} floats, expected {rows}x{n_per_row}")
        imatrix = hex_to_f32(t["imatrix_f32_hex"]) if g.get("imatrix") else None
        deq = hex_to_f32(t["dequantized_f32_hex"]) if "dequantized_f32_hex" in t else None
        return QuantizeCase(vf.type, int(t["tcId"]), t.get("comment", ""), list(t.get("flags", [])),
                            x.reshape(rows, n_per_row), imatrix, bytes.fromhex(_need(t, "expected_hex", where)),
                            deq, g.get("source", "ggml_quantize_chunk"))
    if g["op"] == "dequantize":
        return DequantizeCase(vf.type, int(t["tcId"]), t.get("comment", ""), list(t.get("flags", [])),
                              bytes.fromhex(_need(t, "input_hex", where)), int(_need(t, "n", where)),
                              hex_to_f32(_need(t, "expected_f32_hex", where)), g.get("source", "to_float"))
    raise FormatError(f"{where}: unknown op {g['op']!r}")


def parse(doc: dict, path: str = "") -> VectorFile:
    where = path or "vector file"
    if doc.get("schema") != SCHEMA:
        raise FormatError(f"{where}: schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    vf = VectorFile(
        type=_need(doc, "type", where), ggml_type_id=int(_need(doc, "ggml_type_id", where)),
        block_size=int(_need(doc, "block_size", where)), type_size=int(_need(doc, "type_size", where)),
        family=_need(doc, "family", where), provenance=_need(doc, "provenance", where),
        groups=list(_need(doc, "testGroups", where)), path=path)
    ids = set()
    for g in vf.groups:
        for t in _need(g, "tests", where):
            if t["tcId"] in ids:
                raise FormatError(f"{where}: duplicate tcId {t['tcId']}")
            ids.add(t["tcId"])
    return vf


def load_file(path: "str | Path") -> VectorFile:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not JSON: {e.msg}", e.pos) from None
    return parse(doc, str(path))


def vectors_root() -> Path:
    """The embedded vectors directory (inside the installed package)."""
    return Path(str(resources.files("ggspec.vectors")))


def vector_paths(root: "str | Path | None" = None) -> list[Path]:
    root = Path(root) if root else vectors_root()
    # only the codec suite's per-type files: schema/ holds JSON schemas, the other directories are
    # other suites' vectors (model/: RoPE, attention, forward; gguf/; mix/) and tables/ the i-quant grids
    return sorted(p for p in root.glob("*/*.json") if p.parent.name not in NOT_CODEC)


def load_all(root: "str | Path | None" = None) -> dict[str, VectorFile]:
    """type name -> VectorFile for every vector file under ``root`` (default: the embedded set)."""
    out = {}
    for p in vector_paths(root):
        vf = load_file(p)
        out[vf.type] = vf
    return out
