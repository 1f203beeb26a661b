"""The gguf suite's write op: a typed description -> the bytes ggml's own GGUF writer makes.

vectors/gguf/gguf_write.json comes from libggml (vectors/generate_gguf.py, write_vectors); these tests
check how the suite judges a writer (pass, FAIL naming the first differing byte and its field,
unsupported without write_gguf), the --exec request, and (with the oracle) that libggml passes and
that the file regenerates byte for byte. The writer mistakes it catches are in the mutation
catalogue (tests/mutation/mutation_catalogue.py, gguf-w-*).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ggspec.conformance import adapters
from ggspec.conformance.suites import gguf as S
from ggspec.conformance.vectors import vectors_root

HAVE = S.write_vector_path(None).is_file()
needs_vectors = pytest.mark.skipif(not HAVE, reason="vectors/gguf/gguf_write.json not generated")


def _doc():
    return json.loads(S.write_vector_path(None).read_text())


def _tests():
    return [t for g in _doc()["testGroups"] for t in g["tests"]]


def _case(cat):
    return next(t for t in _tests() if t["category"] == cat)


def _conform(capsys, *argv):
    from ggspec.conformance import cmd_conform
    p = argparse.ArgumentParser()
    cmd_conform.register(p.add_subparsers())
    args = p.parse_args(["conform", *argv, "--suite", "gguf", "--json", "--quiet"])
    code = args.func(args)
    return code, json.loads(capsys.readouterr().out)


def _write_cells(doc, i=0):
    res = doc["implementations"][i]["results"]
    return {row: cells["write"] for row, cells in res.items() if "write" in cells}


# --- judging

@needs_vectors
def test_the_first_difference_names_its_offset_and_field():
    t = _case("tensors")
    exp = bytes.fromhex(t["file_hex"])
    d = t["description"]
    regions = S.file_regions(exp, d)
    assert regions[0] == (0, 4, "header: magic") and regions[-1][1] == len(exp)
    assert all(a[1] == b[0] for a, b in zip(regions, regions[1:])), "the regions tile the file"
    labels = [r[2] for r in regions]
    assert any(lb.startswith("data of tensor 0") for lb in labels)
    assert any(lb.startswith("padding after tensor 1") for lb in labels)
    assert S.write_diff(exp, exp, d) is None

    def flip(i):
        b = bytearray(exp)
        b[i] ^= 0xFF
        return bytes(b)
    assert "(header: version, byte 0 of 4)" in S.write_diff(flip(4), exp, d)
    k = exp.index(b"general.architecture")
    assert 'kv 0 "general.architecture": key, byte 0' in S.write_diff(flip(k), exp, d)
    pad = next(a for a, e, lb in regions if lb == "padding before the data section")
    msg = S.write_diff(flip(pad), exp, d)
    assert msg.startswith(f"byte {pad} (padding before the data section") and "got ff" in msg
    data0 = next(a for a, e, lb in regions if lb.startswith("data of tensor 0"))
    assert 'data of tensor 0 "w", byte 0' in S.write_diff(flip(data0), exp, d)
    msg = S.write_diff(exp[:-5], exp, d)
    assert "the file ends at byte" in msg and "padding after tensor 1" in msg and f"expected {len(exp)}" in msg
    assert "3 bytes after the end" in S.write_diff(exp + b"abc", exp, d)


@needs_vectors
def test_every_row_is_a_known_category_and_the_file_stays_small():
    cats = {t["category"] for t in _tests()}
    assert cats <= set(S.WRITE_ROWS) and len(cats) == len(S.WRITE_ROWS)
    assert S.write_vector_path(None).stat().st_size < 60_000


@needs_vectors
def test_the_vectors_validate_against_their_schema():
    here = str(Path(__file__).parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from test_conform_schema import errors
    s = json.loads((vectors_root() / "schema" / "gguf-write-vectors.schema.json").read_text())
    assert errors(_doc(), s) == []


def test_reference_adapter_writes_ggml_n_dims():
    """ggml writes ne up to its last dimension that is not 1 (a 0-d tensor as ne (1))."""
    from ggspec.reference import gguf as G
    d = {"kv": [], "tensors": [{"name": "c", "type": 0, "ne": [2, 1], "data": "00" * 8},
                               {"name": "s", "type": 0, "ne": [], "data": "00" * 4},
                               {"name": "m", "type": 0, "ne": [1, 2, 1, 1], "data": "00" * 8}]}
    b = adapters.reference_gguf_write(G, d)
    g = G.parse(memoryview(b))
    assert [t.shape for t in g.tensors.values()] == [(2,), (1,), (1, 2)]


# --- through the runner

FAKES = """
import struct
from ggspec.conformance.adapters import ReferenceImpl


class ReadOnly(ReferenceImpl):
    name = "read-only"
    write_gguf = None          # a reader without a writer


class NoFinalPadding(ReferenceImpl):
    name = "no-final-padding"

    def write_gguf(self, d):
        b = super().write_gguf(d)
        n = sum(len(t["data"]) // 2 for t in d["tensors"][-1:])
        return b.rstrip(b"\\0") if d["tensors"] and n % 32 else b


read_only, no_final_padding = ReadOnly(), NoFinalPadding()
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    (tmp_path / "ggspec_write_fakes.py").write_text(FAKES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "ggspec_write_fakes"


@needs_vectors
def test_reference_passes_every_write_case(capsys):
    code, doc = _conform(capsys, "--impl", "reference")
    cells = _write_cells(doc)
    assert code == 0 and set(cells) == {f"write/{c}" for c in S.WRITE_ROWS}
    assert all(c["status"] == "pass" for c in cells.values())
    assert sum(c["passed"] for c in cells.values()) == len(_tests())


@needs_vectors
def test_a_reader_without_write_gguf_is_unsupported_not_failed(capsys, fakes):
    code, doc = _conform(capsys, "--impl", f"{fakes}:read_only")
    cells = _write_cells(doc)
    assert code == 0 and cells and all(c["status"] == "unsupported" for c in cells.values())


@needs_vectors
def test_a_writer_without_the_last_padding_fails_naming_the_padding(capsys, fakes):
    code, doc = _conform(capsys, "--impl", f"{fakes}:no_final_padding")
    cells = _write_cells(doc)
    assert code == 1
    assert cells["write/header"]["status"] == "pass"
    f = cells["write/tensors"]
    assert f["status"] == "FAIL" and "the file ends at byte" in f["failure"] and "padding after tensor" in f["failure"]


EXEC_CLIENT = """
import base64, json, sys
from ggspec.conformance.adapters import ReferenceImpl
mode = sys.argv[1]
sup = [["gguf", "*", "*"]] + ([["gguf", "write", "*"]] if mode != "no-claim" else [])
hello = {"hello": "ggspec-exec/1", "name": "py-writer", "supports": sup}
if mode == "b64":
    hello["encoding"] = "base64"
print(json.dumps(hello), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "write":
        if mode == "unsupported":
            out = {"unsupported": "no writer here"}
        elif mode == "no-claim":
            out = {"error": "asked to write without a claim"}
        else:
            b = ReferenceImpl().write_gguf(req["description"])
            out = {"file_b64": base64.b64encode(b).decode()} if mode == "b64" else {"file_hex": b.hex()}
    else:
        try:
            out = {"result": ReferenceImpl().read_gguf(req["path"])}
        except Exception as e:
            out = {"reject": str(e)}
    out["id"] = req["id"]
    print(json.dumps(out), flush=True)
"""


@needs_vectors
@pytest.mark.parametrize("mode,status", [("hex", "pass"), ("b64", "pass"), ("unsupported", "unsupported"),
                                         ("no-claim", "unsupported")])
def test_exec_write_requests(capsys, tmp_path, mode, status):
    client = tmp_path / "client.py"
    client.write_text(EXEC_CLIENT)
    code, doc = _conform(capsys, "--exec", f"{sys.executable} {client} {mode}")
    cells = _write_cells(doc)
    assert code == 0 and cells and {c["status"] for c in cells.values()} == {status}, cells


# --- with the oracle

@pytest.mark.oracle
@needs_vectors
def test_libggml_passes_its_own_write_vectors(oracle, capsys):
    code, doc = _conform(capsys, "--impl", "libggml")
    cells = _write_cells(doc)
    assert cells and all(c["status"] == "pass" for c in cells.values()), cells


@pytest.mark.oracle
def test_write_vectors_regenerate_identically(oracle, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ggspec.vectors.generate_gguf", "--write-only", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    rel = "gguf/gguf_write.json"
    assert (tmp_path / rel).read_bytes() == (vectors_root() / rel).read_bytes()


@pytest.mark.oracle
def test_ggml_ignores_a_general_alignment_set_on_an_empty_context(oracle, tmp_path, monkeypatch):
    """Why the generator takes its context from a file when the alignment is not 32: in ggml 0.3.36
    gguf_set_val_u32("general.alignment") does not change the alignment its writer pads to, so a
    gguf_init_empty context writes a file that says 64 and is laid out for 32, which ggml's own
    reader rejects."""
    from ggspec.errors import GGSpecError
    lib = adapters._gguf_write_lib(oracle.path)
    ctx = lib.gguf_init_empty()
    try:
        lib.gguf_set_val_u32(ctx, b"general.alignment", 64)
        assert lib.gguf_get_alignment(ctx) == 32
    finally:
        lib.gguf_free(ctx)
    d = {"kv": [{"key": "general.alignment", "type": "UINT32", "value": 64}],
         "tensors": [{"name": "a", "type": 0, "ne": [2], "data": "00" * 8},
                     {"name": "b", "type": 0, "ne": [2], "data": "00" * 8}]}
    p = tmp_path / "w.gguf"
    p.write_bytes(adapters.libggml_gguf_write(oracle.path, d))          # the context from a file: 64
    parse = adapters.libggml_gguf_parse(oracle.path, p)
    assert parse["alignment"] == 64 and [t["offset"] for t in parse["tensors"]] == [0, 64]
    monkeypatch.setattr(adapters, "_alignment_of", lambda d: 32)         # gguf_init_empty + set_val_u32
    p.write_bytes(adapters.libggml_gguf_write(oracle.path, d))
    with pytest.raises(GGSpecError, match="rejected"):
        adapters.libggml_gguf_parse(oracle.path, p)
