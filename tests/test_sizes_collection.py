"""The 2-bit collection table, --hf-config / --tokenizer metadata, and rope --compress-pos-emb."""

from __future__ import annotations

import json

import pytest

from ggspec.cli import main
from ggspec.conformance import sizes as S
from ggspec.conformance.sizes.collection import BASE_CONFIGS, COLLECTION, collection_rows

SEED = ["Senku-70B", "Nous-Hermes2-70B", "Miquliz-120B", "Tess-72B", "WizardLM-70B", "Qwen1.5-72B", "CausalLM-72B",
        "Xwin-70B", "Codellama-70B", "DeepMoney-67B", "Deepseek-67B", "DiscoLM-120B", "BigWeave-103B", "Saily-100B",
        "Nous-Hermes-34B", "Kafka-70B", "Kafka-Mixtral", "LongAlpaca-70B", "Mistral-Alpha-70B", "MoMo-72B",
        "Notux-Mixtral", "Qwen-72B", "Smaug-72B", "Smaug-34B", "Synthia-70B", "Tess-M", "Yarn-Llama2-70b-32k",
        "Laser-Mistral"]


def test_every_model_of_the_seed_has_a_row_and_a_source():
    assert [m for m, _, _ in COLLECTION] == SEED
    for name, base, how in COLLECTION:
        assert how
        if base is None:
            assert "not found" in how
        else:
            assert BASE_CONFIGS[base]["source"]
    rows = collection_rows()
    for r in rows:
        if r["base"] is None:
            assert "IQ2_XXS" not in r  # no number without a config
        else:
            assert r["IQ2_XXS"]["bytes"] < r["IQ2_XS"]["bytes"] < r["IQ2_XS"]["ram"]


def _llama2_70b_types(mix):
    shape = S.collection.base_shape("llama-2-70b")
    return shape, S.predict_tensor_types("llama", shape.tensors(), mix, True, hparams={
        "n_layer": 80, "n_head": 64, "n_head_kv": 8, "n_expert": 0})


@pytest.mark.oracle
@pytest.mark.parametrize("mix", ["IQ2_XXS", "IQ2_XS"])
def test_llama2_70b_iq2_rows_use_llama_cpps_types(oracle, mix):
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location("tsa", pathlib.Path(__file__).with_name("test_sizes_archs.py"))
    tsa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tsa)
    shape, ours = _llama2_70b_types(mix)
    theirs = tsa.oracle_types(shape, S.FTYPES[mix])
    assert {n: ours[n] for n in theirs} == theirs
    row = next(r for r in collection_rows() if r["model"] == "Xwin-70B")
    meta = S.estimate_metadata(shape)
    expect = S.gguf_header_bytes(shape.tensors(), meta["kv_bytes"]) + sum(
        -(-S.tensor_nbytes(theirs.get(n, "F32"), ne) // 32) * 32 for n, ne, _ in shape.tensors())
    assert row[mix]["bytes"] == expect


def test_collection_command(capsys):
    assert main(["sizes", "--collection", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == SEED


def test_tokenizer_kv_bytes_of_a_gguf_equal_gguf_py_field_sizes(tmp_path):
    gguf = pytest.importorskip("gguf")
    from ggspec.conformance.sizes.synth import SYNTH_SHAPES, write_f16
    p = write_f16(SYNTH_SHAPES["qwen2"], tmp_path / "m.gguf")
    r = gguf.GGUFReader(str(p))
    expect = sum(sum(part.nbytes for part in f.parts) for k, f in r.fields.items() if k.startswith("tokenizer."))
    n, src = S.tokenizer_kv_bytes(p)
    assert n == expect and "tokenizer.*" in src


def test_tokenizer_json_counts_tokens_and_merges(tmp_path):
    tj = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
          "added_tokens": [{"id": 3, "content": "<|end|>"}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    n, src = S.tokenizer_kv_bytes(tmp_path / "tokenizer.json")

    def kv(key, v):
        return 8 + len(key) + 4 + v
    toks = ["a", "b", "ab", "<|end|>"]
    expect = (kv("tokenizer.ggml.model", 8 + 4) + kv("tokenizer.ggml.tokens", 12 + sum(8 + len(t) for t in toks))
              + kv("tokenizer.ggml.token_type", 12 + 16) + kv("tokenizer.ggml.merges", 12 + 8 + 3)
              + kv("tokenizer.ggml.bos_token_id", 4) + kv("tokenizer.ggml.eos_token_id", 4)
              + kv("tokenizer.ggml.pre", 16))
    assert n == expect and "4 tokens, 1 merges" in src


def test_hf_config_says_metadata_is_estimated(tmp_path, capsys):
    cfg = dict(BASE_CONFIGS["yi-34b"]["config"])
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert main(["sizes", "--hf-config", str(tmp_path), "--mix", "IQ2_XS", "--ram"]) == 0
    out = capsys.readouterr().out
    assert "metadata bytes estimated" in out and "can be off by up to" in out
    assert main(["sizes", "--hf-config", str(tmp_path), "--mix", "IQ2_XS", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["metadata"]["uncertainty"] > 0 and r["results"][0]["mix"] == "IQ2_XS"


def _rope(capsys, *flags):
    assert main(["rope", "--explain", "--json", "--", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_compress_pos_emb_is_linear_scaling(capsys):
    a = _rope(capsys, "--compress-pos-emb", "8", "-c", "32768")
    b = _rope(capsys, "--rope-scale", "8", "-c", "32768")
    strip = {k: v for k, v in a.items() if k not in ("notes", "source")}
    assert strip == {k: v for k, v in b.items() if k not in ("notes", "source")}
    assert a["freq_scale"] == 0.125 and a["ext_factor"] == 0.0
    assert any("--compress-pos-emb 8" in n for n in a["notes"])
    # a YaRN model (Yarn-Llama2-70b-32k: the GGUF says yarn, factor 8, original context 4096) keeps YaRN
    y = _rope_model(capsys, ["--model-scaling", "yarn", "--model-factor", "8", "--n-ctx-train", "4096"],
                    "--compress-pos-emb", "8", "-c", "32768")
    assert y["freq_scale"] == 0.125 and y["ext_factor"] == 1.0 and y["n_ctx_orig"] == 4096


def _rope_model(capsys, model, *flags):
    assert main(["rope", "--explain", "--json", *model, "--", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_known_vocab_bytes_recomputed_from_llama_cpps_vocab_files(llama_cpp_vendor):
    # every tokenizer.* key/value of vendor/llama.cpp/models/ggml-vocab-<name>.gguf (chat template excluded),
    # read with gguf-py, against the numbers the size model keeps
    gguf = pytest.importorskip("gguf")
    from ggspec.conformance.sizes.tokenizer import KNOWN_VOCAB_KV_BYTES, KNOWN_VOCAB_MERGES
    for n_vocab, (name, kv_bytes) in KNOWN_VOCAB_KV_BYTES.items():
        path = llama_cpp_vendor / "models" / f"ggml-vocab-{name}.gguf"
        r = gguf.GGUFReader(str(path))
        n = sum(sum(p.nbytes for p in f.parts) for k, f in r.fields.items()
                if k.startswith("tokenizer.") and k != "tokenizer.chat_template")
        assert (len(r.fields["tokenizer.ggml.tokens"].data), n) == (n_vocab, kv_bytes), name
        merges = r.fields.get("tokenizer.ggml.merges")
        assert (len(merges.data) if merges is not None else 0) == KNOWN_VOCAB_MERGES[n_vocab], name


def test_llama31_70b_table_shape_uses_the_llama3_vocabulary_and_rope_freqs(tmp_path):
    p = tmp_path / "t.psv"
    p.write_text("# Meta-Llama-3.1-70B-Instruct, GGUF files, imatrix quants\n"
                 "# Architecture: dim 8192, 80 layers, 64 heads, 8 KV heads, ffn 28672, vocab 128256, rope_theta 500000\n"
                 "name|quant_method|size_gb\nx.gguf|Q4_K_M|0\n")
    t = S.read_table(p)
    a = S.table_architecture(t)
    assert a.rope_freqs and a.vocab.name == "llama-bpe" and a.rope_theta == 500000.0
    names = [x.name() for x in a.tensors("gguf")]
    assert "rope_freqs.weight" in names
    md = S.gguf_metadata(a, "Q4_K_M")
    assert any(kv.kind == "raw" and kv.value == 7_817_598 for kv in md)
