"""The forward pass (ggspec.reference.llama) bit-identical to llama.cpp's portable build, on tiny
synthetic GGUFs: every RoPE scaling, MHA/GQA/MQA, F32/F16 K/V caches, both attention paths, several
ubatches, decode steps; plus the bad-input errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ggspec.conformance import tinymodels as T
from ggspec.errors import FormatError, GGSpecError, ShapeError, UnsupportedArchitectureError
from ggspec.reference.llama import ContextParams, LlamaModel

f32 = np.float32
RUN = "ggspec.conformance.llama_run"


def first_diff(a, b) -> str:
    a, b = np.asarray(a, f32), np.asarray(b, f32)
    if a.shape != b.shape:
        return f"shapes {a.shape} vs {b.shape}"
    bad = np.argwhere(a.view(np.uint32) != b.view(np.uint32))
    if bad.size == 0:
        return "identical"
    t, v = bad[0]
    return f"{len(bad)} logits differ; first at token {t}, vocab {v}: {a[t, v]!r} vs {b[t, v]!r}; " \
           f"max |diff| {np.nanmax(np.abs(a - b)):.3g}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("llama")


def model_file(workdir, spec, writer=T.write_tiny_llama):
    path = workdir / f"{spec.name()}-{writer.__name__}.gguf"
    if not path.exists():
        writer(spec, path)
    return path


def check(portable, path, tokens, cp, n_predict=0):
    want, want_gen = portable.call(RUN, "run", str(path), list(tokens), dataclasses.asdict(cp), n_predict=n_predict)
    got, gen = LlamaModel.from_gguf(path).run(tokens, cp, n_predict)
    assert gen == want_gen, f"greedy continuation differs: {gen} vs {want_gen}"
    assert np.array_equal(np.asarray(want, f32).view(np.uint32), got.view(np.uint32)), first_diff(want, got)


TOKENS = [1, 300, 17, 42, 280, 5, 99, 260, 3, 77, 150, 201, 8]


@pytest.mark.oracle
@pytest.mark.parametrize("rope", T.ROPE_CONFIGS)
@pytest.mark.parametrize("layout", list(T.HEAD_LAYOUTS))
def test_forward_bit_identical_f32_weights(portable, workdir, rope, layout):
    spec = T.TinySpec(rope=rope, n_head_kv=T.HEAD_LAYOUTS[layout], wtype="F32", n_layer=2, seed=3)
    check(portable, model_file(workdir, spec), TOKENS, ContextParams(n_ctx=256))


@pytest.mark.oracle
@pytest.mark.parametrize("flash", [False, True])
@pytest.mark.parametrize("kv", ["F16", "F32"])
def test_forward_kv_types_and_flash(portable, workdir, flash, kv):
    spec = T.TinySpec(rope="yarn", n_head_kv=2, wtype="F16", seed=4)
    check(portable, model_file(workdir, spec), TOKENS,
          ContextParams(n_ctx=512, type_k=kv, type_v=kv, flash_attn=flash))


@pytest.mark.oracle
@pytest.mark.parametrize("types", [("Q8_0", "F16", False), ("Q8_0", "F16", True), ("Q8_0", "Q8_0", True),
                                   ("F16", "Q8_0", True)], ids=lambda t: f"k{t[0]}-v{t[1]}-{'flash' if t[2] else 'mm'}")
@pytest.mark.parametrize("head_dim", [64, 32])
def test_forward_q8_0_cache(portable, workdir, types, head_dim):
    """A quantized cache: with head_dim % 64 == 0 llama.cpp Hadamard-rotates q/k (and v, and the output)."""
    spec = T.TinySpec(rope="none", n_embd=4 * head_dim, n_head=4, n_head_kv=2, wtype="F16", seed=8)
    check(portable, model_file(workdir, spec), TOKENS,
          ContextParams(n_ctx=256, type_k=types[0], type_v=types[1], flash_attn=types[2]), n_predict=4)


@pytest.mark.oracle
@pytest.mark.parametrize("flash", [False, True])
def test_forward_ubatches_and_tiled_flash(portable, workdir, flash):
    """70 tokens in ubatches of 64 + 6 (the tiled flash kernel for the first), then 32 greedy tokens."""
    spec = T.TinySpec(rope="none", n_head_kv=1, wtype="F16", seed=5)
    toks = [int(t) for t in np.random.default_rng(0).integers(3, 300, 70)]
    check(portable, model_file(workdir, spec), toks, ContextParams(n_ctx=512, n_ubatch=64, flash_attn=flash),
          n_predict=32)


@pytest.mark.oracle
def test_greedy_generation_32_tokens(portable, workdir):
    spec = T.TinySpec(rope="llama3", n_head_kv=2, wtype="F32", seed=6)
    check(portable, model_file(workdir, spec), TOKENS[:5], ContextParams(n_ctx=256), n_predict=32)


# ------------------------------------------------------------------------------------------------
# bad input

def test_unsupported_architecture_names_it(tmp_path):
    with pytest.raises(UnsupportedArchitectureError, match="falcon.*supported: llama, qwen2"):
        LlamaModel.from_tensors({"general.architecture": "falcon"}, {})


def test_missing_and_misshapen_tensors(tmp_path):
    spec = T.TinySpec(n_layer=1)
    md, tensors = T.read_gguf(T.write_tiny_llama(spec, tmp_path / "m.gguf"))
    t2 = dict(tensors)
    del t2["blk.0.ffn_up.weight"]
    t, ne, raw = t2["blk.0.attn_q.weight"]
    t2["blk.0.attn_q.weight"] = (t, (ne[0], ne[1] // 2), raw[:len(raw) // 2])
    with pytest.raises(FormatError) as e:
        LlamaModel.from_tensors(md, t2)
    assert "blk.0.ffn_up.weight" in str(e.value) and "blk.0.attn_q.weight" in str(e.value)


def test_token_out_of_range_and_too_many_tokens(tmp_path):
    spec = T.TinySpec(n_layer=1)
    m = LlamaModel.from_gguf(T.write_tiny_llama(spec, tmp_path / "m.gguf"))
    with pytest.raises(ShapeError, match="out of range"):
        m.forward([1, spec.n_vocab])
    with pytest.raises(ShapeError, match="n_ctx"):
        m.forward([1] * 20, ContextParams(n_ctx=16))
    with pytest.raises(GGSpecError):
        m.forward([], ContextParams(n_ctx=16))
