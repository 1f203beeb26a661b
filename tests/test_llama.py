"""The Llama forward pass against llama.cpp (llama-cpp-python 0.3.36) on tiny synthetic GGUFs.

Every head layout (MHA, GQA, MQA) x every RoPE configuration llama.cpp supports for the llama
architecture (none, linear, static NTK base, YaRN, llama3 rope_freqs, LongRoPE) x weight types.
Logits of a 64-token prompt plus 2 single-token decode steps (KV cache) are compared. Bounds are
relative to max|logit| (see docs/attention.md for the measured numbers and the reasons):

  F32             1e-5   float32 accumulation order only (observed <= 1.2e-6)
  F16             3e-3   fp16 activation rounding flips (observed <= 6e-4)
  Q8_0/Q4_0/Q4_K  5e-2   Q8 activation quantum flips (observed <= 2.3e-2)
"""

from __future__ import annotations

import numpy as np
import pytest

from ggspec.reference import llama as L
from ggspec.reference import rope as R

BOUND = {"F32": 1e-5, "F16": 3e-3, "Q8_0": 5e-2, "Q4_0": 5e-2, "Q4_K": 5e-2}
LAYOUTS = {"MHA": None, "GQA": 2, "MQA": 1}
ROPES = ("none", "linear", "ntk", "yarn", "llama3", "longrope")

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def T(oracle):
    try:
        import llama_cpp  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama-cpp-python / gguf-py not installed: {e}")
    from ggspec.conformance import tinymodels
    return tinymodels


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


def _tokens(n, seed=0):
    rng = np.random.default_rng(seed)
    return [1] + [int(t) for t in rng.integers(3, 320, n - 1)]


CASES = [(w, r, l) for w in ("F32", "F16") for r in ROPES for l in LAYOUTS]
# quantized weights: every RoPE configuration, layouts rotating (the dequantization is the slow part)
CASES += [(w, r, list(LAYOUTS)[i % 3]) for w in ("Q8_0", "Q4_0", "Q4_K") for i, r in enumerate(ROPES)
          if (w != "Q8_0" or i % 2 == 0) and (w != "Q4_0" or i % 2 == 1)]


@pytest.mark.parametrize("wtype,rope,layout", CASES)
def test_logits_match_llama_cpp(T, workdir, wtype, rope, layout):
    spec = T.TinySpec(n_head_kv=LAYOUTS[layout], rope=rope, wtype=wtype, seed=hash((rope, layout)) % 1000)
    r = T.compare(spec, _tokens(64), workdir=workdir, n_ctx=512, decode_steps=2)
    assert r["max_rel"] <= BOUND[wtype], r


@pytest.mark.parametrize("rope", ["linear", "yarn", "llama3", "longrope", "ntk"])
def test_wrong_rope_is_detected(T, workdir, rope):
    """At 200 tokens, using unscaled RoPE in the reference breaks the F32 bound by far: the
    comparison really checks the RoPE configuration."""
    spec = T.TinySpec(n_head_kv=2, rope=rope, wtype="F32", seed=11)
    toks = _tokens(200, 1)
    good = T.compare(spec, toks, workdir=workdir)
    assert good["max_rel"] <= BOUND["F32"], good
    wrong = R.RopeParams(n_dims=spec.head_dim, freq_base=spec.rope_freq_base)
    bad = T.compare(spec, toks, workdir=workdir, ref_rope=wrong)
    assert bad["max_rel"] > 100 * BOUND["F32"], bad


def test_longrope_long_factors_when_context_exceeds_original(T, workdir):
    spec = T.TinySpec(n_head_kv=1, rope="longrope", wtype="F32", seed=5)
    toks = _tokens(100, 2)
    r = T.compare(spec, toks, workdir=workdir, n_ctx=8192)        # n_ctx > original 4096 -> long factors
    assert r["max_rel"] <= BOUND["F32"], r
    w = T.tiny_weights(spec)
    assert r["rope"].freq_factors == tuple(w["rope_factors_long.weight"].tolist())


def test_f16_kv_cache_modelled(T, workdir):
    """llama.cpp's default F16 K/V cache (and the f16 rounding of Q and of the softmax it implies)."""
    spec = T.TinySpec(n_head_kv=2, rope="yarn", wtype="F32", seed=6)
    r = T.compare(spec, _tokens(64, 3), workdir=workdir, kv_f32=False, decode_steps=2)
    assert r["max_rel"] <= BOUND["F16"], r


def test_greedy_generation_matches(T, workdir):
    import llama_cpp
    spec = T.TinySpec(n_head_kv=2, rope="llama3", wtype="F32", seed=9)
    path = workdir / "gen.gguf"
    T.write_tiny_llama(spec, path)
    model = T.load_reference(path)
    prompt = _tokens(12, 4)
    ours = model.generate(prompt, 6, cp=L.ContextParams(n_ctx=128))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=1, verbose=False, type_k=0, type_v=0,
                          logits_all=True)
    theirs = []
    llm.eval(prompt)
    for _ in range(6):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        theirs.append(t)
        llm.eval([t])
    assert ours == theirs


def test_rope_params_from_metadata():
    hp = L.LlamaHParams.from_metadata({
        "general.architecture": "llama", "llama.embedding_length": 256, "llama.attention.head_count": 4,
        "llama.context_length": 4096, "llama.block_count": 1, "llama.feed_forward_length": 512,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.scaling.type": "yarn",
        "llama.rope.scaling.factor": 4.0, "llama.rope.scaling.original_context_length": 2048}, n_vocab=10)
    p = L.rope_params_for_context(hp, L.ContextParams(n_ctx=8192))
    assert (p.freq_scale, p.ext_factor, p.n_ctx_orig, p.beta_fast, p.beta_slow) == (0.25, 1.0, 2048, 32.0, 1.0)
    # llama.cpp cancels ggml's 1 + 0.1 ln s inside attn_factor, so the net magnitude is get_mscale(4)
    assert abs(p.attn_factor * (1 + 0.1 * np.log(4)) - (1 + 0.1 * np.log(4))) < 1e-6


def test_from_gguf_uses_ggspec_reader_and_matches_gguf_py_path(tmp_path):
    """LlamaModel.from_gguf (ggspec.reference.gguf) and tinymodels.load_reference (gguf-py) agree bit for bit."""
    pytest.importorskip("gguf", reason="tinymodels writes with gguf-py")
    from ggspec.conformance import tinymodels as tm
    from ggspec.reference.llama import LlamaModel
    spec = tm.TinySpec(n_embd=64, n_head=4, n_head_kv=2, n_layer=1, n_ff=128, wtype="Q8_0")
    path = tm.write_tiny_llama(spec, tmp_path / "m.gguf")
    a = np.asarray(LlamaModel.from_gguf(path).forward([1, 5, 9, 11]), np.float32)
    b = np.asarray(tm.load_reference(path).forward([1, 5, 9, 11]), np.float32)
    assert a.shape == (4, spec.n_vocab)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
