"""vectors/schema/*.json: the JSON that ggspec prints or ships validates against its schema.

A small validator for the keywords the schemas use (type, enum, required, properties,
additionalProperties, items, minimum), so no extra dependency is needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ggspec.conformance.vectors import vectors_root

SCHEMAS = vectors_root() / "schema"
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(v, t) -> bool:
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, _TYPES[t])


def errors(v, s, path="$") -> list:
    out = []
    if "type" in s:
        ts = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_is(v, t) for t in ts):
            return [f"{path}: {type(v).__name__} is not {ts}"]
    if "enum" in s and v not in s["enum"]:
        out.append(f"{path}: {v!r} not in {s['enum']}")
    if "minimum" in s and _is(v, "number") and v < s["minimum"]:
        out.append(f"{path}: {v} < {s['minimum']}")
    if isinstance(v, dict):
        for k in s.get("required", []):
            if k not in v:
                out.append(f"{path}: missing {k!r}")
        props = s.get("properties", {})
        for k, x in v.items():
            if k in props:
                out += errors(x, props[k], f"{path}.{k}")
            elif s.get("additionalProperties") is False:
                out.append(f"{path}: unexpected key {k!r}")
            elif isinstance(s.get("additionalProperties"), dict):
                out += errors(x, s["additionalProperties"], f"{path}.{k}")
    if isinstance(v, list) and "items" in s:
        for i, x in enumerate(v):
            out += errors(x, s["items"], f"{path}[{i}]")
    return out


def inspect_json(path) -> dict:
    out = subprocess.run([sys.executable, "-m", "ggspec.cli", "inspect", "--json", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


SCHEMA = json.loads((SCHEMAS / "inspect.schema.json").read_text())


def test_inspect_json_of_a_gguf_with_tensors_validates(tmp_path):
    from ggspec.reference import gguf as G
    md = {"general.architecture": "llama", "general.name": "t", "x": G.Value(float("nan"), G.ValueType.FLOAT32),
          "toks": G.Value([f"t{i}" for i in range(40)], G.ValueType.ARRAY, G.ValueType.STRING)}
    tensors = {"w": np.ones((4, 32), np.float32), "e": ("Q4_0", (32, 2), bytes(36))}
    path = G.write(tmp_path / "m.gguf", md, tensors)
    doc = inspect_json(path)
    assert errors(doc, SCHEMA) == []
    assert doc["format"] == "gguf" and len(doc["tensors"]) == 2


def test_the_validator_catches_a_wrong_document(tmp_path):
    from ggspec.reference import gguf as G
    doc = inspect_json(G.write(tmp_path / "m.gguf", {"general.architecture": "llama"}, {"w": np.ones(4, np.float32)}))
    doc["tensors"][0]["nbytes"] = "16"
    doc["surprise"] = 1
    del doc["totals"]["bpw"]
    errs = errors(doc, SCHEMA)
    assert any("nbytes" in e for e in errs) and any("surprise" in e for e in errs) and any("bpw" in e for e in errs)


def _vocab():
    from ggspec.conformance import oracle_setup
    d = oracle_setup.source_root() / "vendor" / "llama.cpp" / "models"
    return sorted(d.glob("ggml-vocab-*.gguf"), key=lambda p: p.stat().st_size)[:1] if d.is_dir() else []


@pytest.mark.skipif(not _vocab(), reason="no vocabulary GGUF of llama.cpp's source here (ggspec oracle setup --source)")
def test_inspect_json_of_a_real_vocabulary_file_validates():
    doc = inspect_json(_vocab()[0])
    assert errors(doc, SCHEMA) == []


@pytest.mark.parametrize("schema,files", [
    ("gguf-vectors.schema.json", ["gguf/gguf.json"]),
    ("mix-vectors.schema.json", ["mix/mix.json"]),
    ("table.schema.json", sorted(p.relative_to(vectors_root()).as_posix()
                                 for p in (vectors_root() / "tables").glob("*.json"))),
])
def test_shipped_vectors_validate_against_their_schema(schema, files):
    s = json.loads((SCHEMAS / schema).read_text())
    assert files
    for rel in files:
        p = vectors_root() / rel
        if not p.exists():
            pytest.skip(f"{rel} not generated")
        assert errors(json.loads(p.read_text()), s) == [], rel
