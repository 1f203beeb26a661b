"""The reference against every embedded golden vector (no oracle needed), and the vector files
themselves: schema, sizes, and (with the oracle) byte-identical regeneration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ggspec import reference
from ggspec.conformance import adapters, runner, vectors
from ggspec.reference.types import LIVE_TYPES, get_type

VECTORS = vectors.load_all()



def test_every_live_type_has_a_vector_file():
    assert sorted(VECTORS) == sorted(t.name for t in LIVE_TYPES)


def test_vector_files_agree_with_the_registry():
    for name, vf in VECTORS.items():
        t = get_type(name)
        assert (vf.ggml_type_id, vf.block_size, vf.type_size) == (t.id, t.block_size, t.type_size), name
        assert vf.provenance["oracle"] == "llama-cpp-python 0.3.36"


def test_codec_vectors_under_16_mb():
    total = sum(p.stat().st_size for p in vectors.vector_paths())
    assert total < 16 * 1024 * 1024


def test_whole_vector_set_under_40_mb():
    """The budget of issue 15: every shipped vector file (codec, gguf, model) together."""
    root = vectors.vectors_root()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".gguf", ".bin"))
    assert total < 40 * 1000 * 1000, f"{total / 1e6:.1f} MB"


def _ops_with_cases(vf) -> list:
    ops = set()
    for c in vf.cases():
        if c.op == "dequantize" or c.dequantized is not None:
            ops.add("dequantize")
        if c.op == "quantize":
            ops.add("quantize+imatrix" if c.imatrix is not None else "quantize")
    return [op for op in runner.OPS if op in ops]


# only (type, op) pairs for which ggml has the operation, and so the vectors have cases
CASES = [(name, op) for name in sorted(VECTORS, key=lambda n: get_type(n).id) for op in _ops_with_cases(VECTORS[name])]


@pytest.mark.parametrize("name,op", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_reference_matches_vectors(name, op):
    report = runner.run_file(adapters.ReferenceImpl(), VECTORS[name], ops=(op,))
    outcome = report.results[(name, op)]
    if outcome.status == "unsupported":
        pytest.fail(f"the reference does not support {op} for {name}")
    assert outcome.status == "pass", outcome.failure
    assert outcome.passed == outcome.total > 0


def test_every_quantizable_type_has_quantize_vectors():
    for t in LIVE_TYPES:
        ops = _ops_with_cases(VECTORS[t.name])
        assert "dequantize" in ops, t.name
        if t.quantize_chunk and not t.requires_imatrix:
            assert "quantize" in ops, t.name
        if t.quantize_chunk and t.family != "float":
            assert "quantize+imatrix" in ops, t.name


def test_runner_reports_a_tampered_vector(tmp_path):
    """The runner can fail: flip one expected byte and it must say FAIL with the tcId."""
    src = vectors.vector_paths()
    q80 = next(p for p in src if p.name == "Q8_0.json")
    doc = json.loads(q80.read_text())
    t0 = doc["testGroups"][0]["tests"][0]
    h = bytearray(bytes.fromhex(t0["expected_hex"]))
    h[5] ^= 0x01
    t0["expected_hex"] = h.hex()
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "Q8_0.json").write_text(json.dumps(doc))
    report = runner.run(adapters.ReferenceImpl(), vectors.load_all(tmp_path), ops=("quantize",))
    o = report.results[("Q8_0", "quantize")]
    assert o.status == "FAIL" and f"tcId {t0['tcId']}" in o.failure and "byte 5" in o.failure


@pytest.mark.oracle
def test_regeneration_is_byte_identical(oracle, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ggspec.vectors.generate", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("*/*.json"))
    shipped = sorted(p.relative_to(vectors.vectors_root()) for p in vectors.vector_paths())
    assert fresh == shipped
    for rel in shipped:
        assert (tmp_path / rel).read_bytes() == (vectors.vectors_root() / rel).read_bytes(), str(rel)
