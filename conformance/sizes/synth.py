"""Synthetic F16 GGUFs of every modelled architecture (gguf-py ``GGUFWriter``), for checking the size
model against llama.cpp: ``llama_model_quantize`` quantizes them (file bytes and per-tensor types) and
``llama_cpp.Llama`` loads and runs them (peak RSS).  Random weights, the small SentencePiece vocabulary
(``vocabulary``) padded with word pieces to ``n_vocab``.  gguf-py is needed (the ``peers`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .archs import ModelShape


def vocabulary(n_vocab: int):
    """A SentencePiece-style vocabulary of exactly ``n_vocab`` tokens: <unk>, <s>, </s>, the 256 byte tokens,
    then word pieces (llama.cpp's SPM loader takes it for any architecture)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"\u2581t{i}" for i in range(n_vocab - len(tokens))]
    types += [1] * (n_vocab - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(259, n_vocab)]
    return tokens, scores, types


def write_f16(shape: ModelShape, path: "str | Path", seed: int = 0) -> Path:
    """Write ``shape`` as an F16 GGUF (1-D tensors and the MoE router F32), as convert_hf_to_gguf lays it out."""
    import gguf

    path = Path(path)
    a = shape.arch
    w = gguf.GGUFWriter(str(path), a)
    w.add_name("ggspec synthetic")  # not the shape name: llama.cpp keys token attributes on "phi3" in general.name
    w.add_file_type(1)
    w.add_context_length(shape.context_length)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(shape.n_embd_head)
    if shape.head_dim:
        w.add_key_length(shape.n_embd_head)
        w.add_value_length(shape.n_embd_head)
    if shape.n_expert:
        w.add_expert_count(shape.n_expert)
        w.add_expert_used_count(shape.n_expert_used or 2)
        if a == "qwen3moe":
            w.add_expert_feed_forward_length(shape.n_ff)
    if shape.n_swa:
        w.add_sliding_window(shape.n_swa)
    if shape.rope_factors:
        w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        w.add_rope_scaling_orig_ctx_len(shape.context_length)
        w.add_rope_scaling_attn_factors(1.1)
    tokens, scores, types = vocabulary(shape.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    rng = np.random.default_rng(seed)
    for name, ne, src in shape.tensors():
        np_shape = tuple(reversed(ne))
        if src == "F32":
            arr = np.ones(np_shape, np.float32) if "norm" in name or "rope" in name else \
                (rng.standard_normal(np_shape, dtype=np.float32) * 0.02)
            w.add_tensor(name, arr.astype(np.float32))
        else:
            x = rng.standard_normal(np_shape, dtype=np.float32)
            x *= 1.0 / np.sqrt(ne[0])
            w.add_tensor(name, x.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# Small shapes of every modelled architecture: odd widths where the fallbacks matter, GQA, tied
# embeddings, biases, fused QKV, experts, sliding windows.
SYNTH_SHAPES: dict[str, ModelShape] = {s.name: s for s in (
    ModelShape("llama", 256, 4, 8, 2, 512, 1000, tied=True, name="llama-tied"),
    ModelShape("llama", 576, 3, 9, 3, 1536, 1000, tied=True, name="llama-576-tied"),     # SmolLM-like widths
    ModelShape("llama", 256, 4, 4, 4, 768, 1000, rope_freqs=True, name="llama3-ropefreqs"),
    ModelShape("llama", 256, 4, 8, 2, 512, 1000, n_expert=8, n_expert_used=2, name="mixtral-8x"),
    ModelShape("qwen2", 256, 4, 8, 2, 704, 1000, name="qwen2"),
    ModelShape("qwen2", 128, 80, 4, 4, 256, 600, name="qwen2-80-layers"),                # LLM_TYPE_70B
    ModelShape("qwen", 256, 4, 4, 4, 1024, 1000, name="qwen-v1"),
    ModelShape("gemma", 256, 4, 4, 1, 512, 1000, head_dim=64, tied=True, name="gemma"),
    ModelShape("gemma2", 256, 4, 4, 2, 512, 1000, head_dim=64, tied=True, n_swa=128, swa_pattern=2, name="gemma2"),
    ModelShape("gemma3", 640, 6, 4, 1, 2048, 1000, head_dim=256, tied=True, n_swa=512, swa_pattern=6,
               name="gemma3-270m-like"),
    ModelShape("phi3", 256, 4, 8, 8, 512, 1000, name="phi3"),
    ModelShape("qwen3", 256, 4, 8, 2, 768, 1000, head_dim=64, tied=True, name="qwen3"),
    ModelShape("qwen3moe", 256, 4, 8, 2, 256, 1000, head_dim=64, n_expert=8, n_expert_used=2, name="qwen3moe"),
)}


# Shapes for the peak-RSS validation (a few hundred MB as F16): the real-file cases of the issue
# (a 135M tied-embedding Llama with a 49152-token vocabulary, a Gemma 3 270M) and one of each other family.
RSS_SHAPES: dict[str, ModelShape] = {s.name: s for s in (
    ModelShape("llama", 576, 30, 9, 3, 1536, 49152, tied=True, name="smollm-135m-like"),
    ModelShape("gemma3", 640, 18, 4, 1, 2048, 262144, head_dim=256, tied=True, n_swa=512, swa_pattern=6,
               context_length=32768, name="gemma3-270m-like"),
    ModelShape("qwen2", 896, 12, 14, 2, 4864, 32000, tied=True, name="qwen2-0.5b-like"),
    ModelShape("llama", 512, 8, 8, 2, 1024, 32000, n_expert=8, n_expert_used=2, name="mixtral-small"),
    ModelShape("phi3", 1024, 8, 16, 16, 2816, 32064, name="phi3-small"),
    ModelShape("qwen", 1024, 8, 16, 16, 5632, 32000, name="qwen-v1-small"),
    ModelShape("qwen3moe", 512, 8, 8, 2, 512, 32000, head_dim=128, n_expert=16, n_expert_used=4,
               name="qwen3moe-small"),
)}
