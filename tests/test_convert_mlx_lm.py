"""``ggspec convert MODEL.gguf OUT/ --to mlx-lm`` end to end: tiny synthetic GGUFs of each
architecture (llama, llama with tied embeddings, qwen2, Mixtral-style MoE) and weight type
(llama.cpp's Q4_K_M mix, Q6_K, IQ2_XS with an importance matrix, Q8_0), converted to float32 and
run by mlx-lm (mlx[cpu] on Linux):

* logits: mlx-lm's against llama.cpp's on an F32 copy of the same GGUF holding the GGUF's exact
  dequantized values (so both compute in float32 on identical weights; only summation order
  differs): max |diff| / max |logit| <= F32_BOUND. Against llama.cpp on the quantized file itself
  (which quantizes activations to Q8 for quantized mat-muls) and against ggspec's reference forward
  (llama) the differences are measured and printed (documented in docs/mlx.md);
* greedy generation of 32 tokens: mlx-lm's token ids equal llama.cpp's on the F32 copy;
* the tokenizer rebuilt from the GGUF: encode/decode of a sample text equal llama.cpp's
  (llama_tokenize / llama_detokenize through llama-cpp-python).

Unit checks without the oracle: the un-permutation inverts llama.cpp's permute; unknown architecture
and unknown tensor give UnsupportedModelError naming them with nothing written; a truncated GGUF
gives FormatError.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="mlx is not installed (pip install 'mlx[cpu]')")

from ggspec.accel import mlx_convert  # noqa: E402
from ggspec.errors import FormatError  # noqa: E402
from ggspec.reference import gguf as G  # noqa: E402

F32_BOUND = 1e-4          # relative to max |logit|; observed values are printed by the test
# against llama.cpp / the reference on the quantized file itself, whose mat-muls quantize activations
# (Q8_0/Q8_K) -- mlx-lm keeps them float32; observed <= 0.12 (MoE: a routing choice can flip)
QUANT_BOUND = 0.25
SAMPLE = "Hello world, the quick brown fox jumps over the lazy dog.\n  It is 2026: ünïcødé ok?"
ARCHS = ["llama", "tied", "qwen2", "moe"]
WTYPES = ["Q4_K_M", "Q6_K", "IQ2_XS", "Q8_0"]


# ------------------------------------------------------------------------------------------------
# oracle-free

def test_unpermute_inverts_llama_cpp_permute():
    rng = np.random.default_rng(0)
    for n_head, hd, cols in ((4, 8, 5), (2, 16, 3), (1, 4, 1)):
        w = rng.standard_normal((n_head * hd, cols)).astype(np.float32)
        p = mlx_convert.permute(w, n_head)
        assert not np.array_equal(p, w)
        assert np.array_equal(mlx_convert.unpermute(p, n_head), w)
        # llama.cpp's permute, written out: within a head, rows (0, hd/2, 1, hd/2+1, ...) of the HF order
        h0 = p[:hd]
        assert np.array_equal(h0[0::2], w[:hd // 2]) and np.array_equal(h0[1::2], w[hd // 2:hd])
        b = rng.standard_normal(n_head * hd).astype(np.float32)
        assert np.array_equal(mlx_convert.unpermute(mlx_convert.permute(b, n_head), n_head), b)


def _small_gguf(path, arch="llama", extra=None):
    w = G.GGUFWriter()
    w.add("general.architecture", arch)
    for k, v in {"block_count": 1, "embedding_length": 32, "feed_forward_length": 64, "attention.head_count": 2,
                 "context_length": 64}.items():
        w.add(f"{arch}.{k}", v, G.ValueType.UINT32)
    w.add(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5, G.ValueType.FLOAT32)
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "\u2581a"])
    w.add("tokenizer.ggml.scores", [0.0, 0.0, 0.0, -1.0], G.ValueType.ARRAY, G.ValueType.FLOAT32)
    w.add("tokenizer.ggml.token_type", [2, 3, 3, 1], G.ValueType.ARRAY, G.ValueType.INT32)
    w.add_tensor("token_embd.weight", np.ones((4, 32), np.float32))
    w.add_tensor("output_norm.weight", np.ones(32, np.float32))
    for name, t in (extra or {}).items():
        w.add_tensor(name, t)
    w.write(path)
    return path


def test_unknown_architecture_nothing_written(tmp_path):
    src = _small_gguf(tmp_path / "a.gguf", arch="gpt2")
    out = tmp_path / "out"
    with pytest.raises(mlx_convert.UnsupportedModelError, match="gpt2"):
        mlx_convert.convert(src, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.gguf"]


def test_unknown_tensor_nothing_written(tmp_path):
    src = _small_gguf(tmp_path / "a.gguf", extra={"blk.0.attn_sinks.weight": np.ones(32, np.float32)})
    out = tmp_path / "out"
    with pytest.raises(mlx_convert.UnsupportedModelError, match="blk.0.attn_sinks.weight"):
        mlx_convert.convert(src, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.gguf"]


def test_truncated_gguf(tmp_path):
    src = _small_gguf(tmp_path / "a.gguf")
    data = src.read_bytes()
    (tmp_path / "t.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError) as ei:
        mlx_convert.convert(tmp_path / "t.gguf", tmp_path / "out")
    assert ei.value.offset is not None
    assert not (tmp_path / "out").exists()


def test_cli_error_exit(tmp_path, capsys):
    from ggspec.cli import main
    src = _small_gguf(tmp_path / "a.gguf", arch="bert")
    assert main(["convert", str(src), str(tmp_path / "o"), "--to", "mlx-lm"]) == 2
    assert "bert" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# end to end (llama.cpp, gguf-py, mlx-lm)

@pytest.fixture(scope="module")
def env(oracle):
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
        import mlx_lm  # noqa: F401
    except ImportError as e:
        pytest.skip(f"needs llama-cpp-python, gguf-py and mlx-lm (pip install '.[mlx-lm]'): {e}")
    from ggspec.conformance import tinymodels
    return tinymodels


def _write(T, arch, wtype, path):
    write = {"llama": None, "tied": T.write_tiny_tied_llama, "qwen2": T.write_tiny_qwen2, "moe": T.write_tiny_moe}[arch]
    spec_kw = dict(n_head_kv=2, seed=11 + ARCHS.index(arch))
    if wtype == "Q4_K_M":
        spec = T.TinySpec(wtype="F32", **spec_kw)
        f32 = path.with_suffix(".f32.gguf")
        (T.write_tiny_llama(spec, f32) if write is None else write(spec, f32))
        return T.quantize_with_llama_cpp(f32, path, "Q4_K_M")
    spec = T.TinySpec(wtype=wtype, **spec_kw)
    if write is None:
        if wtype == "IQ2_XS":        # write_tiny_llama quantizes without an importance matrix
            return _llama_imatrix(T, spec, path)
        return T.write_tiny_llama(spec, path)
    return write(spec, path, imatrix=(wtype == "IQ2_XS"))


def _llama_imatrix(T, spec, path):
    """write_tiny_llama's tensors, IQ2_XS-quantized with an importance matrix."""
    import gguf
    from ggspec.conformance.tinymodels import _quantize_rows
    tmp = T.write_tiny_llama(T.TinySpec(**{**spec.__dict__, "wtype": "F32"}), path.with_suffix(".src.gguf"))
    g = G.read(tmp)
    ts = {}
    for i, (name, t) in enumerate(g.tensors.items()):
        a = t.dequantize()
        if a.ndim == 2:
            ts[name] = ("IQ2_XS", t.shape, _quantize_rows("IQ2_XS", a, True, i).tobytes())
        else:
            ts[name] = a
    G.write(path, g.values, ts)
    return path


def _f32_copy(src, dst):
    """The same GGUF with every tensor replaced by its exact dequantized float32 values."""
    g = G.read(src)
    G.write(dst, g.values, {n: t.dequantize() for n, t in g.tensors.items()})
    return dst


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("conv")


def _mlx_logits(model, tokens):
    out = model(mx.array([tokens]))
    mx.eval(out)
    return np.array(out[0].astype(mx.float32))


def _mlx_greedy(model, tokens, n):
    import mlx_lm
    from mlx_lm.generate import generate_step
    got = []
    for (tok, _), _i in zip(generate_step(mx.array(tokens), model, max_tokens=n), range(n)):
        got.append(int(tok))
    return got


@pytest.mark.oracle
@pytest.mark.parametrize("wtype", WTYPES)
@pytest.mark.parametrize("arch", ARCHS)
def test_convert_run_generate(env, work, arch, wtype):
    import mlx_lm
    T = env
    src = _write(T, arch, wtype, work / f"{arch}-{wtype}.gguf")
    out = work / f"{arch}-{wtype}-mlx"
    rep = mlx_convert.convert(src, out, dtype="float32")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == {"llama": "llama", "tied": "llama", "qwen2": "qwen2", "moe": "mixtral"}[arch]
    assert cfg["tie_word_embeddings"] == (arch == "tied")
    model, tok = mlx_lm.load(str(out))
    md = G.read(src).metadata
    n_vocab = len(md["tokenizer.ggml.tokens"])
    rng = np.random.default_rng(3)
    prompt = [int(t) for t in rng.integers(3, n_vocab - 4, 24)]

    f32 = _f32_copy(src, work / f"{arch}-{wtype}.exact-f32.gguf")
    theirs = T.llama_cpp_logits(f32, prompt, n_ctx=128)
    ours = _mlx_logits(model, prompt)
    scale = float(np.abs(theirs).max())
    rel = float(np.abs(ours - theirs).max()) / scale
    quant = T.llama_cpp_logits(src, prompt, n_ctx=128)
    rel_q = float(np.abs(ours - quant).max()) / float(np.abs(quant).max())
    # ggspec's reference forward (reference/llama.py) on the F32 copy and on the quantized file
    # (with llama_cpp_logits' context: F32 K/V cache)
    from ggspec.reference.llama import ContextParams, LlamaModel
    cp = lambda: ContextParams(n_ctx=128, type_k="F32", type_v="F32")  # noqa: E731
    ref = LlamaModel.from_gguf(f32).forward(prompt, cp())
    rel_ref = float(np.abs(ours - ref).max()) / float(np.abs(ref).max())
    ref_q = LlamaModel.from_gguf(src).forward(prompt, cp())
    rel_ref_q = float(np.abs(ours - ref_q).max()) / float(np.abs(ref_q).max())
    print(f"\n{arch} {wtype}: max|diff|/max|logit| of mlx-lm vs llama.cpp: F32 copy {rel:.2e}, quantized file "
          f"{rel_q:.2e}; vs the reference forward: F32 copy {rel_ref:.2e}, quantized file {rel_ref_q:.2e}")
    assert rel <= F32_BOUND, rel
    assert rel_ref <= F32_BOUND, rel_ref
    assert rel_q <= QUANT_BOUND and rel_ref_q <= QUANT_BOUND, (rel_q, rel_ref_q)

    want = T.llama_cpp_generate(f32, prompt, 32, n_ctx=128)
    got = _mlx_greedy(model, prompt, 32)
    assert got == want


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tokenizer_matches_llama_cpp(env, work, arch):
    import llama_cpp
    from transformers import AutoTokenizer
    T = env
    src = work / f"tok-{arch}.gguf"
    # (the SentencePiece vocabulary of write_tiny_tied_llama: every piece made of two pieces, as in a
    # trained vocabulary; write_tiny_llama's has pieces like "\u2581hb" without "\u2581" -- see
    # test_unreachable_pieces_reported)
    (T.write_tiny_tied_llama if arch == "llama" else T.write_tiny_qwen2)(T.TinySpec(wtype="F32"), src)
    out = work / f"tok-{arch}-mlx"
    mlx_convert.convert(src, out)
    hf = AutoTokenizer.from_pretrained(str(out))
    llm = llama_cpp.Llama(model_path=str(src), n_ctx=64, verbose=False, vocab_only=True)
    # add_bos=True is llama_tokenize's add_special: BOS/EOS where the vocabulary says so
    for text in (SAMPLE, " hello world", "a", ""):
        want = llm.tokenize(text.encode(), add_bos=True, special=False)
        got = hf.encode(text)
        assert got == want, (text, got, want)
        assert hf.decode(want, skip_special_tokens=True) == llm.detokenize(want).decode("utf-8", "replace")


def test_unreachable_pieces_reported():
    """A SentencePiece piece that llama.cpp reaches only through a character that is not a token
    (here "\u2581b" and "\u2581ab" without "\u2581") cannot be a BPE merge: the converter counts and names it."""
    pytest.importorskip("tokenizers", reason="the tokenizer rebuild needs tokenizers (the [mlx-lm] extra)")
    md = {"tokenizer.ggml.model": "llama",
          "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>", "a", "b", "ab", "\u2581b", "\u2581ab"],
          "tokenizer.ggml.scores": [0, 0, 0, -5, -6, -1, -2, -3],
          "tokenizer.ggml.token_type": [2, 3, 3, 1, 1, 1, 1, 1]}
    tj, tc, notes = mlx_convert.build_tokenizer(md, with_notes=True)
    assert notes["unreachable_pieces"] == ["\u2581b", "\u2581ab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in tj["model"]["merges"]]
    assert merges[0] == ("a", "b")
    assert ("\u2581", "ab") not in merges


@pytest.mark.oracle
def test_q4_reports_error(env, work):
    T = env
    src = T.write_tiny_qwen2(T.TinySpec(wtype="Q8_0", n_head_kv=2), work / "q4src.gguf")
    rep = mlx_convert.convert(src, work / "q4-mlx", dtype="q4")
    import mlx_lm
    model, _ = mlx_lm.load(str(work / "q4-mlx"))
    assert np.isfinite(_mlx_logits(model, [5, 6, 7])).all()
    e = rep.quant_error["model.layers.0.self_attn.q_proj.weight"]
    assert 0 < e["rms"] < e["max_abs"]
    # the error is against the GGUF's own values: recompute it independently
    from ggspec.accel import mlx_gguf
    g = G.read(src)
    exact = g.tensors["blk.0.attn_q.weight"].dequantize()
    wq, sc, bi = mx.quantize(mx.array(exact), group_size=64, bits=4)
    d = np.array(mx.dequantize(wq, sc, bi, group_size=64, bits=4)) - exact
    assert e["max_abs"] == pytest.approx(float(np.abs(d).max()), rel=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("rope", ["none", "linear", "ntk", "yarn", "llama3"])
def test_rope_scaling_in_config(env, work, rope):
    """config.json's rope_scaling (llama3: parameters recovered from rope_freqs.weight) makes mlx-lm's
    RoPE llama.cpp's: a 200-token prompt (positions well past the unscaled range of the short test)."""
    import mlx_lm
    T = env
    src = T.write_tiny_llama(T.TinySpec(n_head_kv=2, wtype="F32", rope=rope, seed=4), work / f"rope-{rope}.gguf")
    out = work / f"rope-{rope}-mlx"
    mlx_convert.convert(src, out)
    cfg = json.loads((out / "config.json").read_text())
    want_type = {"none": None, "ntk": None, "linear": "linear", "yarn": "yarn", "llama3": "llama3"}[rope]
    assert (cfg.get("rope_scaling") or {}).get("rope_type") == want_type
    model, _ = mlx_lm.load(str(out))
    prompt = [int(t) for t in np.random.default_rng(1).integers(3, 300, 200)]
    theirs = T.llama_cpp_logits(src, prompt, n_ctx=512)
    rel = float(np.abs(_mlx_logits(model, prompt) - theirs).max() / np.abs(theirs).max())
    print(f"\nrope {rope}: {rel:.2e}")
    assert rel <= F32_BOUND, rel


def test_longrope_with_attn_factor_refused(tmp_path):
    """LongRoPE with a stored attention factor is not modelled for mlx-lm: refused, nothing written."""
    T = pytest.importorskip("ggspec.conformance.tinymodels")
    pytest.importorskip("gguf")
    src = T.write_tiny_llama(T.TinySpec(n_layer=1, rope="longrope"), tmp_path / "lr.gguf")
    with pytest.raises(mlx_convert.UnsupportedModelError, match="longrope"):
        mlx_convert.convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.oracle
@pytest.mark.parametrize("vocab", ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "mpt"])
def test_real_vocabularies_match_llama_cpp(llama_cpp_vendor, vocab):
    """The tokenizer rebuilt from the real vocabularies llama.cpp ships for its tokenizer tests
    (models/ggml-vocab-*.gguf: SentencePiece llama/phi-3, GPT-2 BPE llama-bpe/qwen2/gpt-2): every test
    text of the matching .inp file encodes to llama.cpp's llama_tokenize ids and decodes to its
    llama_detokenize text."""
    llama_cpp = pytest.importorskip("llama_cpp")
    tokenizers = pytest.importorskip("tokenizers")
    path = llama_cpp_vendor / "models" / f"ggml-vocab-{vocab}.gguf"
    if not path.exists():
        pytest.skip(f"{path} is not in the pinned source")
    md = G.read(path).metadata
    tj, _, notes = mlx_convert.build_tokenizer(md, with_notes=True)
    assert notes["unreachable_pieces"] == []
    tk = tokenizers.Tokenizer.from_str(json.dumps(tj))
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    texts = (path.parent / (path.name + ".inp")).read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    assert len(texts) > 20
    for tx in texts:
        want = llm.tokenize(tx.encode(), add_bos=True, special=False)     # add_special: as the vocab says
        assert tk.encode(tx).ids == want, tx
        # llama-cpp-python's detokenize drops one leading space after a BOS for every vocabulary (a
        # Python-side rule for SentencePiece's space prefix); for a BPE vocabulary compare the text
        # after the BOS, which is llama.cpp's token pieces joined
        ids = want[1:] if md["tokenizer.ggml.model"] == "gpt2" and want[:1] == [llm.token_bos()] else want
        assert tk.decode(ids, skip_special_tokens=True) == llm.detokenize(ids).decode("utf-8", "replace"), tx


def _real_vocab_model(vocab_path, arch, out, seed=0):
    """A small random-weight model (64 wide, 2 layers) of ``arch`` around a real vocabulary: every
    tokenizer.* key of llama.cpp's vocabulary GGUF, F32 weights from tinymodels.tiny_weights_arch."""
    from ggspec.conformance import tinymodels as T
    src = G.read(vocab_path)
    n_vocab = len(src.metadata["tokenizer.ggml.tokens"])
    spec = T.TinySpec(n_embd=64, n_head=4, n_head_kv=2, n_layer=2, n_ff=128, seed=seed)
    w = T.tiny_weights_arch(spec, "qwen2" if arch == "qwen2" else "moe" if arch == "moe" else "llama-tied", n_vocab,
                            n_expert=4)
    if arch == "llama":
        w["output.weight"] = (np.random.default_rng(seed).standard_normal((n_vocab, 64)) / 4).astype(np.float32)
    V, U32, F32 = G.ValueType, G.ValueType.UINT32, G.ValueType.FLOAT32
    a = "qwen2" if arch == "qwen2" else "llama"
    md = {"general.architecture": G.Value(a, V.STRING)}
    for k, v in {"context_length": 512, "embedding_length": 64, "block_count": 2, "feed_forward_length": 128,
                 "attention.head_count": 4, "attention.head_count_kv": 2, "rope.dimension_count": 16}.items():
        md[f"{a}.{k}"] = G.Value(v, U32)
    md[f"{a}.attention.layer_norm_rms_epsilon"] = G.Value(1e-5, F32)
    md[f"{a}.rope.freq_base"] = G.Value(10000.0, F32)
    if arch == "moe":
        md["llama.expert_count"] = G.Value(4, U32)
        md["llama.expert_used_count"] = G.Value(2, U32)
    md.update({k: v for k, v in src.values.items() if k.startswith("tokenizer.")})
    return G.write(out, md, w)


@pytest.mark.oracle
@pytest.mark.parametrize("vocab,arch", [("llama-spm", "llama"), ("qwen2", "qwen2"), ("llama-bpe", "moe")])
def test_text_generation_real_vocab(env, work, llama_cpp_vendor, vocab, arch):
    """Text in, text out, with a real vocabulary: mlx_lm.generate's greedy continuation of a prompt
    equals llama.cpp's (llama-cpp-python, greedy, on the same GGUF in float32)."""
    import llama_cpp
    import mlx_lm
    path = llama_cpp_vendor / "models" / f"ggml-vocab-{vocab}.gguf"
    if not path.exists():
        pytest.skip(f"{path} is not in the pinned source")
    src = _real_vocab_model(path, arch, work / f"real-{vocab}-{arch}.gguf")
    out = work / f"real-{vocab}-{arch}-mlx"
    mlx_convert.convert(src, out)
    model, tok = mlx_lm.load(str(out))
    prompt = "The quick brown fox jumps over the lazy dog. Once upon a time"
    llm = llama_cpp.Llama(model_path=str(src), vocab_only=True, verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=False)
    assert tok.encode(prompt) == ids
    want = env.llama_cpp_generate(src, ids, 24, n_ctx=256)
    from mlx_lm.generate import generate_step
    got = [int(t) for (t, _), _i in zip(generate_step(mx.array(ids), model, max_tokens=24), range(24))]
    assert got == want
    text = mlx_lm.generate(model, tok, prompt=ids, max_tokens=24)
    assert text == tok.decode(want)
