"""The tiny qwen2 / tied-embedding llama / Mixtral-style MoE GGUF writers of conformance/tinymodels.py:
llama.cpp (llama-cpp-python 0.3.36) loads and runs each, and what each one adds is really used."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def T(oracle):
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama-cpp-python / gguf-py not installed: {e}")
    from ggspec.conformance import tinymodels
    return tinymodels


def _tokens(n, hi, seed=0):
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(3, hi, n)]


@pytest.mark.parametrize("wtype", ["F32", "Q8_0", "Q4_K"])
@pytest.mark.parametrize("arch", ["qwen2", "tied", "moe"])
def test_llama_cpp_loads_and_runs(T, tmp_path, arch, wtype):
    spec = T.TinySpec(n_head_kv=2, wtype=wtype, seed=7)
    write = {"qwen2": T.write_tiny_qwen2, "tied": T.write_tiny_tied_llama, "moe": T.write_tiny_moe}[arch]
    path = write(spec, tmp_path / f"{arch}.gguf")
    md, tensors = T.read_gguf(path)
    n_vocab = len(md["tokenizer.ggml.tokens"])
    logits = T.llama_cpp_logits(path, _tokens(16, n_vocab - 4), n_ctx=64)
    assert logits.shape == (16, n_vocab)
    assert np.isfinite(logits).all()
    assert float(logits.std()) > 0.1
    if arch == "qwen2":
        assert md["general.architecture"] == "qwen2" and "blk.0.attn_q.bias" in tensors
    if arch == "tied":
        assert "output.weight" not in tensors
    if arch == "moe":
        assert md["llama.expert_count"] == 4 and md["llama.expert_used_count"] == 2
        ne = tensors["blk.0.ffn_up_exps.weight"][1]
        assert ne == (spec.n_embd, spec.n_ff, 4)


def test_tied_equals_explicit_output(T, tmp_path):
    """llama.cpp uses token_embd as the output projection of the tied file: an untied copy whose
    output.weight is token_embd gives the same logits, bit for bit."""
    import gguf
    spec = T.TinySpec(n_head_kv=2, wtype="F32", seed=3)
    tied = T.write_tiny_tied_llama(spec, tmp_path / "tied.gguf")
    r = gguf.GGUFReader(str(tied))
    wr = gguf.GGUFWriter(str(tmp_path / "untied.gguf"), "llama")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            wr.add_key_value(k, f.contents(), vt, sub_type=f.types[-1])
        else:
            wr.add_key_value(k, f.contents(), vt)
    for t in r.tensors:
        wr.add_tensor(t.name, np.array(t.data))
    emb = next(t for t in r.tensors if t.name == "token_embd.weight")
    wr.add_tensor("output.weight", np.array(emb.data))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    toks = _tokens(12, 300)
    a = T.llama_cpp_logits(tied, toks, n_ctx=64)
    b = T.llama_cpp_logits(tmp_path / "untied.gguf", toks, n_ctx=64)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_qwen2_biases_matter(T, tmp_path):
    """The Q/K/V biases are read: the same file with zero biases gives other logits."""
    import gguf
    spec = T.TinySpec(n_head_kv=2, wtype="F32", seed=5)
    path = T.write_tiny_qwen2(spec, tmp_path / "q.gguf")
    r = gguf.GGUFReader(str(path))
    wr = gguf.GGUFWriter(str(tmp_path / "q0.gguf"), "qwen2")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            wr.add_key_value(k, f.contents(), vt, sub_type=f.types[-1])
        else:
            wr.add_key_value(k, f.contents(), vt)
    for t in r.tensors:
        a = np.array(t.data)
        wr.add_tensor(t.name, np.zeros_like(a) if t.name.endswith(".bias") else a)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    toks = _tokens(12, 300)
    a = T.llama_cpp_logits(path, toks, n_ctx=64)
    b = T.llama_cpp_logits(tmp_path / "q0.gguf", toks, n_ctx=64)
    assert float(np.abs(a - b).max()) > 1e-3


def test_qwen2_bpe_vocabulary(T, tmp_path):
    """llama.cpp tokenizes with the merges: ' hello world' -> 'Ġhello', 'Ġworld'."""
    import llama_cpp
    path = T.write_tiny_qwen2(T.TinySpec(wtype="F32"), tmp_path / "q.gguf")
    md, _ = T.read_gguf(path)
    toks = md["tokenizer.ggml.tokens"]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=32, verbose=False, vocab_only=True)
    ids = llm.tokenize(b" hello world", add_bos=False, special=False)
    assert [toks[i] for i in ids] == ["\u0120hello", "\u0120world"]
    assert llm.detokenize(ids) == b" hello world"


def test_imatrix_type(T, tmp_path):
    """IQ2_XS needs an importance matrix: the writers quantize with one when asked."""
    spec = T.TinySpec(n_head_kv=2, wtype="IQ2_XS", seed=1)
    path = T.write_tiny_moe(spec, tmp_path / "m.gguf", imatrix=True)
    _, tensors = T.read_gguf(path)
    assert tensors["blk.0.ffn_up_exps.weight"][0] == "IQ2_XS"
    logits = T.llama_cpp_logits(path, _tokens(8, 300), n_ctx=64)
    assert np.isfinite(logits).all()


def test_llama_cpp_q4_k_m_mix(T, tmp_path):
    """quantize_with_llama_cpp gives llama.cpp's own Q4_K_M mix (Q4_K and Q6_K tensors)."""
    spec = T.TinySpec(n_head_kv=2, wtype="F32", seed=2)
    src = T.write_tiny_qwen2(spec, tmp_path / "f32.gguf")
    dst = T.quantize_with_llama_cpp(src, tmp_path / "q4km.gguf", "Q4_K_M")
    _, tensors = T.read_gguf(dst)
    kinds = {v[0] for k, v in tensors.items() if v[1][-1] > 1 and len(v[1]) == 2}
    assert "Q4_K" in kinds and "Q6_K" in kinds, kinds
