"""``ggspec vectors export DIR``: every vector file, byte for byte, with a manifest of sha256s."""

import hashlib
import json

from ggspec import cli
from ggspec.conformance import cmd_vectors, vectors


def test_export_writes_every_file_and_a_manifest(tmp_path, capsys):
    out = tmp_path / "v"
    assert cli.main(["vectors", "export", str(out)]) == 0
    m = json.loads((out / "MANIFEST.json").read_text())
    shipped = cmd_vectors.files()
    assert len(m["files"]) == len(shipped) > 40
    for e in m["files"]:
        data = (out / e["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["bytes"]
        assert data == (vectors.vectors_root() / e["path"]).read_bytes()
    suites = {e["suite"] for e in m["files"]}
    assert {"codec", "gguf", "rope", "schema"} <= suites
    assert m["ggml"] and m["ggspec"] and "llama-cpp-python" in m["oracle"]
    assert "wrote" in capsys.readouterr().out


def test_export_is_repeatable_and_the_manifest_catches_a_change(tmp_path):
    a = cmd_vectors.export(tmp_path / "a")
    b = cmd_vectors.export(tmp_path / "b")
    assert a == b
    src = tmp_path / "src"
    cmd_vectors.export(src)
    p = src / "gguf" / "gguf.json"
    p.write_bytes(p.read_bytes().replace(b'"tcId": 1,', b'"tcId": 1 ,', 1))
    c = cmd_vectors.export(tmp_path / "c", root=src)
    diff = [x["path"] for x, y in zip(a["files"], c["files"]) if x["sha256"] != y["sha256"]]
    assert diff == ["gguf/gguf.json"]
