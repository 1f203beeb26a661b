"""``ggspec run``: top-k logits and greedy continuation from the reference forward pass, and
``--compare-llama-cpp`` against the portable build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ggspec.cli import main
from ggspec.conformance import tinymodels as T
from ggspec.reference.llama import ContextParams, LlamaModel


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return T.write_tiny_llama(T.TinySpec(n_layer=1, n_head_kv=2, rope="yarn", wtype="Q8_0", n_embd=256),
                              tmp_path_factory.mktemp("run") / "m.gguf")


def test_run_json_top_k_and_greedy(model, capsys):
    assert main(["run", str(model), "--tokens", "1,17,300", "--n-predict", "3", "--top-k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = LlamaModel.from_gguf(model)
    logits = m.forward([1, 17, 300], ContextParams(n_ctx=512))
    top = np.argsort(-logits[-1], kind="stable")[:4]
    assert [r["token"] for r in out["top_k"]] == top.tolist()
    assert out["top_k"][0]["logit_bits"] == f"{logits[-1, top[0]:top[0] + 1].view(np.uint32)[0]:08x}"
    assert out["greedy"] == m.generate([1, 17, 300], 3)


def test_run_text_output(model, capsys):
    assert main(["run", str(model), "--tokens", "1,2", "--n-predict", "2"]) == 0
    text = capsys.readouterr().out
    assert "top-5 logits at position 1" in text and "greedy continuation:" in text


@pytest.mark.parametrize("argv,msg", [
    (["--tokens", "1,x"], "comma-separated integers"),
    (["--tokens", "1,99999"], "out of range"),
    (["--tokens", ",".join(["1"] * 20), "--n-ctx", "16"], "n_ctx"),
])
def test_run_bad_input_is_a_clear_error(model, capsys, argv, msg):
    assert main(["run", str(model)] + argv) == 2
    assert msg in capsys.readouterr().err


def test_run_unsupported_architecture(tmp_path, capsys):
    import gguf
    p = tmp_path / "falcon.gguf"
    w = gguf.GGUFWriter(str(p), "falcon")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    assert main(["run", str(p), "--tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert "falcon" in err and "llama" in err and "qwen2" in err


@pytest.mark.oracle
@pytest.mark.parametrize("flash", [False, True])
def test_run_compare_llama_cpp_says_identical(portable, model, capsys, flash):
    argv = ["run", str(model), "--tokens", "1,17,300,5", "--n-predict", "4", "--compare-llama-cpp", "--json"]
    assert main(argv + (["--flash-attn"] if flash else [])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["llama_cpp"]["oracle"] == "portable"
    assert out["llama_cpp"]["identical"] is True, out["llama_cpp"]
    assert main(["run", str(model), "--tokens", "1,17,300,5", "--compare-llama-cpp"]) == 0
    assert "llama.cpp (portable build): identical" in capsys.readouterr().out
