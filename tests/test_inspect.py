"""``ggspec inspect``: text and JSON for GGUF, legacy GGML and GPTQ; typed errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ggspec.cli import main
from ggspec.conformance import inspect as I
from ggspec.reference import ggml_legacy as L
from ggspec.reference import gguf as G
from ggspec.reference import gptq as Q


@pytest.fixture
def gguf_file(tmp_path):
    md = {"general.architecture": "llama", "tokenizer.ggml.tokens": [f"t{i}" for i in range(40)],
          "x.nan": float("nan"), "x.nested": G.Value([G.Value([1, 2], G.ValueType.ARRAY, G.ValueType.INT32)],
                                                     G.ValueType.ARRAY, G.ValueType.ARRAY)}
    return G.write(tmp_path / "m.gguf", md, {"w": np.ones((4, 32), np.float32),
                                              "q": ("Q4_0", (64, 2), bytes(72))})


def _json(capsys, *argv):
    assert main(["inspect", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_gguf_json(capsys, gguf_file):
    r = _json(capsys, str(gguf_file))
    assert (r["format"], r["version"], r["file_size"]) == ("gguf", 3, gguf_file.stat().st_size)
    assert r["metadata"]["tokenizer.ggml.tokens"] == {"type": "array", "item_type": "STRING", "length": 40,
                                                      "head": [f"t{i}" for i in range(8)]}
    assert r["metadata"]["x.nan"] == "nan" and r["metadata"]["x.nested"] == [[1, 2]]
    assert r["value_types"]["x.nested"] == "ARRAY[ARRAY]"
    g = G.read(gguf_file)
    assert r["tensors"] == [
        {"name": "w", "type": "F32", "shape": [32, 4], "offset": g.tensors["w"].offset, "nbytes": 512,
         "elements": 128, "bpw": 32.0},
        {"name": "q", "type": "Q4_0", "shape": [64, 2], "offset": g.tensors["q"].offset, "nbytes": 72,
         "elements": 128, "bpw": 4.5}]
    assert r["totals"]["by_type"]["Q4_0"]["bytes"] == 72 and r["totals"]["bpw"] == round(8 * 584 / 256, 4)
    full = _json(capsys, str(gguf_file), "--full-arrays")
    assert full["metadata"]["tokenizer.ggml.tokens"] == [f"t{i}" for i in range(40)]


def test_gguf_text(capsys, gguf_file):
    assert main(["inspect", str(gguf_file)]) == 0
    out = capsys.readouterr().out
    assert "gguf v3" in out and "[STRING x 40]" in out and "Q4_0" in out and "bits per weight" in out


def test_legacy(capsys, tmp_path):
    hp = L.Hyperparameters(3, 32, 256, 1, 1, 32, 2)
    data = L.to_bytes("ggjt", 1, hp, [(b"a", 0.0), (b"\xff", 1.0), (b"c", 2.0)],
                      [("w", 2, (32, 2), bytes(40)), ("n", 0, (4,), bytes(16))])
    p = tmp_path / "old.bin"
    p.write_bytes(data)
    r = _json(capsys, str(p))
    assert (r["format"], r["version"]) == ("ggjt", 1)
    assert r["header"]["n_vocab"] == 3 and r["header"]["ftype_name"] == "MOSTLY_Q4_0"
    assert r["metadata"]["vocab"] == ["a", {"hex": "ff"}, "c"]
    assert r["tensors"][0]["type"] == "Q4_0 (ggml/ggmf/ggjt v1 layout)" and r["tensors"][0]["nbytes"] == 40
    assert main(["inspect", str(p)]) == 0
    assert "ggjt v1" in capsys.readouterr().out


def test_gptq(capsys, tmp_path):
    rng = np.random.default_rng(0)
    parts = Q.quantize_linear(rng.standard_normal((64, 128)).astype(np.float32), 4, 32)
    Q.save(tmp_path, {"model.layers.0.mlp.up_proj": parts}, Q.GPTQConfig(bits=4, group_size=32),
           extra={"lm_head.weight": np.zeros((8, 64), np.float16)})
    r = _json(capsys, str(tmp_path))
    assert r["format"] == "gptq" and r["header"]["quantize_config"]["bits"] == 4
    rows = {t["name"]: t for t in r["tensors"]}
    assert rows["model.layers.0.mlp.up_proj"]["shape"] == [64, 128]
    assert rows["model.layers.0.mlp.up_proj"]["type"] == "GPTQ4"
    assert rows["lm_head.weight"]["type"] == "FLOAT16"


@pytest.mark.parametrize("content,match", [(b"", "unknown format"), (b"GGUF\x03\x00", "ends inside"),
                                           (b"tjgg" + bytes(3), "ends inside"), (b"hello world", "unknown format")])
def test_bad_files_give_typed_errors(tmp_path, capsys, content, match):
    p = tmp_path / "bad.bin"
    p.write_bytes(content)
    assert main(["inspect", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ggspec: error:") and __import__("re").search(match, err)


def test_missing_and_empty_dir(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.gguf")]) == 2
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a GPTQ checkpoint" in capsys.readouterr().err


def test_json_value_rules():
    assert I.json_value(float("inf")) == "inf"
    assert I.json_value(b"\x00a") == "\x00a" and I.json_value(b"\xc3") == {"hex": "c3"}
    assert I.json_value(list(range(20)), 4)["length"] == 20


def test_big_endian_and_v1(capsys, tmp_path):
    md = {"general.architecture": "x", "n": G.Value(7, G.ValueType.UINT64)}
    for order, version in ((">", 3), ("<", 1)):
        p = G.write(tmp_path / f"m{version}.gguf", md, {"w": np.arange(32, dtype=np.float32)}, order, version)
        r = _json(capsys, str(p))
        assert r["version"] == version and r["header"]["byte_order"] == ("big" if order == ">" else "little")
        assert r["metadata"]["n"] == 7 and r["tensors"][0]["shape"] == [32]


def test_inspect_gguf_prediction_and_ram(tmp_path):
    """inspect puts the size model's prediction (from the file's own inventory) and a RAM estimate built on
    the file's actual tensor bytes beside the actual size."""
    pytest.importorskip("gguf", reason="the synthetic models are written with gguf-py")
    from ggspec.conformance import tinymodels as tm
    from ggspec.conformance.sizes.synth import SYNTH_SHAPES, write_f16
    path = write_f16(SYNTH_SHAPES["gemma3-270m-like"], tmp_path / "m.gguf")
    r = I.report(path)
    pr = r["prediction"]
    assert pr["mix"] == "F16" and pr["actual_file_size"] == path.stat().st_size == pr["predicted_file_size"]
    assert pr["deviations"] == []
    ram = pr["ram_estimate"]
    data = sum(t["nbytes"] for t in r["tensors"])
    # weights: the span of the actual tensor data (no repacked F16/F32 weights here)
    assert data <= ram["weights"] <= r["file_size"] - r["header"]["data_offset"]
    assert ram["total"] == sum(v for k, v in ram.items() if k not in ("total", "reclaimable"))
    assert "every tensor has the mix's type" in I.render_text(r)
    # a file without general.file_type: no guess, "not modelled" naming what is missing
    p2 = tm.write_tiny_llama(tm.TinySpec(n_embd=64, n_head=4, n_layer=1, n_ff=128, wtype="Q8_0"), tmp_path / "t.gguf")
    r2 = I.report(p2)
    assert "general.file_type" in r2["prediction"]["not_modelled"]
    assert "size model: not modelled:" in I.render_text(r2)


def test_inspect_v1_without_tensors_says_not_modelled(tmp_path, capsys):
    # used to print "size model: not applicable (TypeError: 'GGUFFile' object is not subscriptable)"
    p = G.write(tmp_path / "v1.gguf", {}, {}, "<", 1)
    assert main(["inspect", str(p)]) == 0
    out = capsys.readouterr().out
    assert "size model: not modelled: the architecture: the file has no general.architecture" in out
    assert "TypeError" not in out
