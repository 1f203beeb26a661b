"""Convert a GGUF model into a folder that mlx-lm runs (``ggspec convert MODEL.gguf OUT/ --to mlx-lm``).

    from ggspec.accel import mlx_convert
    report = mlx_convert.convert("model.gguf", "out/", dtype="float32")   # or float16/bfloat16/q4/q8
    # then: model, tok = mlx_lm.load("out/"); mlx_lm.generate(model, tok, prompt="Hello")

What is written (all of it first into a temporary folder beside OUT, renamed to OUT at the end, so a
failure leaves nothing half written):

* ``config.json``: the Hugging Face config of the architecture (``model_type`` llama / qwen2 /
  mixtral), from the GGUF metadata: sizes, heads, ``rms_norm_eps``, ``rope_theta``, ``rope_scaling``
  (linear, yarn, llama3 -- its parameters recovered from ``rope_freqs.weight`` and checked to
  reproduce it exactly --, longrope from ``rope_factors_long/short``), ``tie_word_embeddings`` (no
  ``output.weight``), MoE expert counts, bos/eos ids, and ``quantization`` for q4/q8.
* ``model.safetensors`` (or ``model-0000k-of-0000n.safetensors`` + index past SHARD_BYTES): every
  weight under its Hugging Face name, dequantized exactly (``mlx_gguf``), then kept in float32,
  rounded once to float16/bfloat16, or re-quantized with MLX's affine quantization (q4, q8;
  group size 64) -- the error this adds against the GGUF's own values is reported per tensor.
  Q and K rows of the llama architecture (and Mixtral) are un-permuted: llama.cpp's converter
  (``LlamaModel.permute`` in convert_hf_to_gguf.py) reorders each head's rows from the Hugging Face
  half-split RoPE layout to ggml's interleaved pairs, ``w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)``;
  the inverse is ``w.reshape(n_head, hd/2, 2, ...).swapaxes(1, 2)`` (n_head_kv for K). qwen2 uses
  NEOX RoPE in llama.cpp, which is the Hugging Face layout: no permutation.
* ``tokenizer.json`` + ``tokenizer_config.json``: the tokenizer rebuilt from ``tokenizer.ggml.*``
  (see ``build_tokenizer``): SentencePiece ("llama") as a byte-fallback BPE whose merges are ranked
  by the merged piece's score (llama.cpp's SPM merges the highest-scoring pair first), GPT-2 BPE
  ("gpt2") from the stored merges with the pre-tokenizer regexes llama.cpp uses for its ``pre`` type.

Architectures: ``llama`` (dense, tied or not, and Mixtral-style MoE when ``llama.expert_count`` > 0)
and ``qwen2``. Anything else -- another architecture, a tensor this mapping does not know, a
tokenizer model or pre-tokenizer type not listed -- raises ``UnsupportedModelError`` naming it,
before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..errors import GGSpecError
from ..reference import gguf as _gguf

DTYPES = ("float32", "float16", "bfloat16", "q4", "q8")
SHARD_BYTES = 2 << 30
GROUP_SIZE = 64


class UnsupportedModelError(GGSpecError, ValueError):
    """The GGUF uses an architecture, tensor or tokenizer that the converter does not handle."""


# --------------------------------------------------------------------------------------------------
# names

_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")
_DENSE = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_MOE = {
    "ffn_gate_inp.weight": "block_sparse_moe.gate.weight",
    "ffn_gate_exps.weight": "block_sparse_moe.switch_mlp.gate_proj.weight",
    "ffn_up_exps.weight": "block_sparse_moe.switch_mlp.up_proj.weight",
    "ffn_down_exps.weight": "block_sparse_moe.switch_mlp.down_proj.weight",
}
_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
# consumed into config.json (rope scaling), not written as weights
_CONFIG_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
_ARCHS = ("llama", "qwen2")


@dataclass
class Plan:
    arch: str                        # gguf architecture
    model_type: str                  # llama / qwen2 / mixtral
    config: dict
    names: Dict[str, str]            # gguf tensor name -> HF name
    permute: Dict[str, int]          # gguf tensor name -> n_head for the un-permutation
    tokenizer: dict                  # tokenizer.json content
    tokenizer_config: dict
    tokenizer_notes: dict


def hf_name(gname: str, moe: bool) -> str:
    if gname in _GLOBAL:
        return _GLOBAL[gname]
    m = _LAYER.match(gname)
    if m:
        table = dict(_DENSE, **_MOE) if moe else _DENSE
        if m.group(2) in table:
            return f"model.layers.{m.group(1)}.{table[m.group(2)]}"
    raise UnsupportedModelError(f"tensor {gname!r} has no Hugging Face name in the "
                                f"{'MoE ' if moe else ''}mapping of the converter")


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's ``LlamaModel.permute`` (rows of each head: interleaved RoPE pairs back to
    the half-split order). ``w``: numpy shape (rows, ...) with rows = n_head * head_dim."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise UnsupportedModelError(f"cannot un-permute {rows} rows over {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` (HF -> GGUF), for tests."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --------------------------------------------------------------------------------------------------
# config

def _md(md, arch, key, default=None):
    return md.get(f"{arch}.{key}", default)


def _fit_llama3(freqs: np.ndarray, n_rot: int, base: float, n_ctx_train: int) -> dict:
    """llama3 rope_scaling parameters whose rope_freqs reproduce ``freqs`` bit for bit (the GGUF stores
    only the factors; llama.cpp's converter computed them from these four numbers)."""
    from ..reference import rope as R
    factor = float(np.max(freqs))
    cands_factor = sorted({factor, float(round(factor)), 8.0, 32.0, 16.0, 4.0, 2.0})
    origs = [8192, 4096, 2048, 16384, 32768, 131072, n_ctx_train]
    best = (math.inf, None)
    for f in cands_factor:
        for lo in (1.0, 2.0, 0.5):
            for hi in (4.0, 8.0, 2.0, 1.0, 16.0):
                if hi <= lo:
                    continue
                for orig in origs:
                    try:
                        c = R.llama3_rope_freqs(n_rot, base, f, lo, hi, orig)
                    except Exception:
                        continue
                    if c.shape != freqs.shape:
                        continue
                    cfg = {"rope_type": "llama3", "factor": f, "low_freq_factor": lo,
                           "high_freq_factor": hi, "original_max_position_embeddings": int(orig)}
                    if np.array_equal(c.view(np.uint32), freqs.view(np.uint32)):
                        return cfg
                    err = float(np.max(np.abs(c.astype(np.float64) / freqs.astype(np.float64) - 1)))
                    if err < best[0]:
                        best = (err, cfg)
    # a converter that computed the factors in another precision: accept a fit within float32 rounding
    # noise (mlx-lm recomputes the frequencies from these parameters in float32 anyway)
    if best[1] is not None and best[0] <= 1e-5:
        return dict(best[1], _fit_max_rel_error=best[0])
    raise UnsupportedModelError("rope_freqs.weight does not match llama3 scaling for any parameters tried "
                                "(factor, low/high_freq_factor, original context): rope scaling not modelled")


def make_config(g, arch: str) -> "tuple[dict, str]":
    md = g.metadata
    n_embd = int(_md(md, arch, "embedding_length"))
    n_head = int(_md(md, arch, "attention.head_count"))
    n_head_kv = int(_md(md, arch, "attention.head_count_kv", n_head))
    n_layer = int(_md(md, arch, "block_count"))
    n_ff = int(_md(md, arch, "feed_forward_length"))
    n_ctx = int(_md(md, arch, "context_length", 4096))
    head_dim = int(_md(md, arch, "attention.key_length", n_embd // n_head))
    n_rot = int(_md(md, arch, "rope.dimension_count", head_dim))
    if n_rot != head_dim:
        raise UnsupportedModelError(f"partial RoPE (rope.dimension_count {n_rot} != head_dim {head_dim}) "
                                    "is not modelled by the converter")
    vocab = int(g.tensors["token_embd.weight"].shape[1]) if "token_embd.weight" in g.tensors else None
    if vocab is None:
        raise UnsupportedModelError("the GGUF has no token_embd.weight")
    base = float(_md(md, arch, "rope.freq_base", 10000.0))
    n_expert = int(_md(md, arch, "expert_count", 0) or 0)
    moe = n_expert > 0
    if arch == "qwen2" and moe:
        raise UnsupportedModelError("qwen2 with experts (qwen2moe) is not handled by the converter")
    model_type = "mixtral" if moe else arch
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                           "mixtral": "MixtralForCausalLM"}[model_type]],
        "model_type": model_type,
        "hidden_size": n_embd,
        "num_hidden_layers": n_layer,
        "intermediate_size": n_ff,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "head_dim": head_dim,
        "rms_norm_eps": float(np.float32(_md(md, arch, "attention.layer_norm_rms_epsilon", 1e-5))),
        "vocab_size": vocab,
        "max_position_embeddings": n_ctx,
        "rope_theta": base,
        "tie_word_embeddings": "output.weight" not in g.tensors,
        "torch_dtype": "float32",
    }
    if arch == "qwen2":
        cfg["attention_bias"] = True
    if moe:
        cfg["num_local_experts"] = n_expert
        cfg["num_experts_per_tok"] = int(_md(md, arch, "expert_used_count", 2))
    if "tokenizer.ggml.bos_token_id" in md:
        cfg["bos_token_id"] = int(md["tokenizer.ggml.bos_token_id"])
    if "tokenizer.ggml.eos_token_id" in md:
        cfg["eos_token_id"] = int(md["tokenizer.ggml.eos_token_id"])

    # rope scaling
    stype = _md(md, arch, "rope.scaling.type")
    factor = _md(md, arch, "rope.scaling.factor")
    if stype is None and _md(md, arch, "rope.scale_linear") is not None:
        stype, factor = "linear", _md(md, arch, "rope.scale_linear")
    orig = _md(md, arch, "rope.scaling.original_context_length")
    rs = None
    if "rope_freqs.weight" in g.tensors:
        fr = g.tensors["rope_freqs.weight"].dequantize().astype(np.float32).reshape(-1)
        rs = _fit_llama3(fr, n_rot, base, n_ctx)
    elif "rope_factors_long.weight" in g.tensors:
        lf = g.tensors["rope_factors_long.weight"].dequantize().reshape(-1)
        sf = g.tensors["rope_factors_short.weight"].dequantize().reshape(-1)
        rs = {"rope_type": "longrope", "type": "longrope", "long_factor": [float(v) for v in lf],
              "short_factor": [float(v) for v in sf],
              "original_max_position_embeddings": int(orig or n_ctx)}
        af = _md(md, arch, "rope.scaling.attn_factor")
        if af is not None:
            raise UnsupportedModelError("longrope with rope.scaling.attn_factor: mlx-lm's SuScaledRoPE derives "
                                        "the attention factor itself; not modelled")
    elif stype in (None, "none"):
        rs = None
    elif stype == "linear":
        if factor not in (None, 1.0):
            rs = {"rope_type": "linear", "type": "linear", "factor": float(factor)}
    elif stype == "yarn":
        rs = {"rope_type": "yarn", "type": "yarn", "factor": float(factor),
              "original_max_position_embeddings": int(orig or n_ctx)}
        for k, hk in (("rope.scaling.yarn_beta_fast", "beta_fast"), ("rope.scaling.yarn_beta_slow", "beta_slow")):
            if _md(md, arch, k) is not None:
                rs[hk] = float(_md(md, arch, k))
    else:
        raise UnsupportedModelError(f"rope scaling type {stype!r} is not handled by the converter")
    if rs is not None:
        rs.pop("_fit_max_rel_error", None)
        if moe:
            raise UnsupportedModelError("mlx-lm's mixtral model ignores rope_scaling; a scaled MoE is not handled")
        cfg["rope_scaling"] = rs
    return cfg, model_type


# --------------------------------------------------------------------------------------------------
# tokenizer

# llama.cpp's pre-tokenizer regexes (src/llama-vocab.cpp) by tokenizer.ggml.pre
_RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_RE_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_RE_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_RE_DEFAULT = [r"[\p{P}\$\+<=>\^~\|]+", _RE_GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"]
# tokenizer.ggml.pre -> llama.cpp's pre-type group (llama_vocab::impl::load), each group one regex list
_LLAMA3_PRE = ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
               "jina-v5-nano")
_GPT2_PRE = ("gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
             "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "exaone4", "mpt", "olmo")
_QWEN2_PRE = ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2")
_SMOLLM_PRE = ("smollm", "codeshell", "exaone", "minerva-7b")
PRE_REGEXES = {"default": _RE_DEFAULT, "": _RE_DEFAULT}
PRE_REGEXES.update({k: [_RE_LLAMA3] for k in _LLAMA3_PRE})
PRE_REGEXES.update({k: [_RE_GPT2] for k in _GPT2_PRE})
PRE_REGEXES.update({k: [_RE_QWEN2] for k in _QWEN2_PRE})
PRE_REGEXES.update({k: [r"\p{N}", _RE_GPT2] for k in _SMOLLM_PRE})
# llama.cpp sets ignore_merges (a word that is a token is not split) and add_bos for the llama3 group
IGNORE_MERGES = _LLAMA3_PRE


def _spm_merges(tokens, scores, types) -> "list[tuple[str, str]]":
    """Merges of a SentencePiece vocabulary as a BPE: every split (a, b) of a normal token into two
    tokens, ranked by the merged token's score (highest first; llama.cpp merges the best-scoring
    adjacent pair), then by the token id."""
    ids = {t: i for i, t in enumerate(tokens)}
    cands = []
    for i, t in enumerate(tokens):
        if types[i] not in (1, 4) or len(t) < 2:
            continue
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            if a in ids and b in ids:
                cands.append((-scores[i], i, ids[a], a, b))
    cands.sort()
    return [(a, b) for _, _, _, a, b in cands]


def unreachable_pieces(tokens, types) -> "list[str]":
    """Normal pieces that llama.cpp's SentencePiece merging can produce but a BPE cannot: llama.cpp
    merges any two adjacent symbols whose concatenation is a piece, and a symbol may be a single
    character that is not itself a piece; a BPE merge needs both halves in the vocabulary. A piece
    is BPE-reachable when it is one character or splits into two BPE-reachable pieces."""
    ids = {t: i for i, t in enumerate(tokens)}
    ok = set()
    llama_ok = set()
    for t in sorted((t for i, t in enumerate(tokens) if types[i] in (1, 4)), key=len):
        if len(t) == 1:
            ok.add(t)
            llama_ok.add(t)
            continue
        if any(t[:k] in ok and t[k:] in ok for k in range(1, len(t))):
            ok.add(t)
        # llama.cpp: each half is a reachable piece or a single character (any character)
        if any((t[:k] in llama_ok or len(t[:k]) == 1) and (t[k:] in llama_ok or len(t[k:]) == 1)
               for k in range(1, len(t))):
            llama_ok.add(t)
    return sorted(llama_ok - ok, key=lambda t: ids[t])


def build_tokenizer(md: dict, with_notes: bool = False):
    """(tokenizer.json, tokenizer_config.json) content from the GGUF's tokenizer metadata; with
    ``with_notes`` also a dict of what the rebuilt tokenizer cannot reproduce
    (``unreachable_pieces``: see ``unreachable_pieces``)."""
    try:
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    except ImportError as e:
        raise GGSpecError(f"the tokenizer needs the 'tokenizers' package (pip install 'ggspec[mlx-lm]'): {e}") from None
    kind = md.get("tokenizer.ggml.model")
    tokens = md.get("tokenizer.ggml.tokens")
    if kind is None or tokens is None:
        raise UnsupportedModelError("the GGUF has no tokenizer.ggml.model / tokenizer.ggml.tokens")
    types = list(md.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    vocab = {t: i for i, t in enumerate(tokens)}
    notes = {"unreachable_pieces": []}

    def tok(key):
        i = md.get(f"tokenizer.ggml.{key}_token_id")
        return None if i is None or not (0 <= int(i) < len(tokens)) else tokens[int(i)]

    bos, eos, unk, pad = tok("bos"), tok("eos"), tok("unknown") or tok("unk"), tok("padding")
    if kind == "llama":
        scores = [float(s) for s in md.get("tokenizer.ggml.scores", [0.0] * len(tokens))]
        model = models.BPE(vocab=vocab, merges=_spm_merges(tokens, scores, types), unk_token=unk,
                           byte_fallback=True, fuse_unk=True)
        tk = Tokenizer(model)
        norm = [normalizers.Replace(" ", "\u2581")]
        if md.get("tokenizer.ggml.add_space_prefix", True):
            norm.insert(0, normalizers.Prepend("\u2581"))
        tk.normalizer = normalizers.Sequence(norm)
        dec = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        if md.get("tokenizer.ggml.add_space_prefix", True):
            dec.append(decoders.Strip(" ", 1, 0))
        tk.decoder = decoders.Sequence(dec)
        add_bos_default = True
        notes["unreachable_pieces"] = unreachable_pieces(tokens, types)
    elif kind == "gpt2":
        pre = md.get("tokenizer.ggml.pre", "default")
        if pre not in PRE_REGEXES:
            raise UnsupportedModelError(f"BPE pre-tokenizer {pre!r} is not handled by the converter "
                                        f"(handled: {', '.join(sorted(PRE_REGEXES))})")
        merges = [tuple(m.split(" ", 1)) for m in md.get("tokenizer.ggml.merges", [])]
        model = models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in IGNORE_MERGES)
        tk = Tokenizer(model)
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_REGEXES[pre]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tk.decoder = decoders.ByteLevel()
        add_bos_default = pre in _LLAMA3_PRE
    else:
        raise UnsupportedModelError(f"tokenizer model {kind!r} is not handled by the converter "
                                    "(handled: llama = SentencePiece, gpt2 = BPE)")
    specials = [AddedToken(t, special=(types[i] == 3), normalized=False)
                for i, t in enumerate(tokens) if i < len(types) and types[i] in (3, 4)]
    if specials:
        tk.add_tokens(specials)
    add_bos = bool(md.get("tokenizer.ggml.add_bos_token", add_bos_default))
    add_eos = bool(md.get("tokenizer.ggml.add_eos_token", False))
    single, sp = "$A", []
    if add_bos and bos is not None:
        single = f"{bos} $A"
        sp.append((bos, vocab[bos]))
    if add_eos and eos is not None:
        single += f" {eos}"
        if (eos, vocab[eos]) not in sp:
            sp.append((eos, vocab[eos]))
    if sp:
        tk.post_processor = processors.TemplateProcessing(single=single, special_tokens=sp)
    tj = json.loads(tk.to_str())
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": add_bos, "add_eos_token": add_eos,
           "clean_up_tokenization_spaces": False, "model_max_length": 1 << 30}
    for k, v in (("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)):
        if v is not None:
            cfg[k] = v
    if md.get("tokenizer.chat_template"):
        cfg["chat_template"] = md["tokenizer.chat_template"]
    return (tj, cfg, notes) if with_notes else (tj, cfg)


# --------------------------------------------------------------------------------------------------
# plan + convert

def plan(g) -> Plan:
    md = g.metadata
    arch = md.get("general.architecture")
    if arch not in _ARCHS:
        raise UnsupportedModelError(f"architecture {arch!r} is not handled by the converter "
                                    f"(handled: {', '.join(_ARCHS)}; Mixtral-style MoE as llama)")
    cfg, model_type = make_config(g, arch)
    moe = model_type == "mixtral"
    names, perm = {}, {}
    for name, t in g.tensors.items():
        if name in _CONFIG_TENSORS:
            continue
        names[name] = hf_name(name, moe)
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_q.bias")):
            perm[name] = cfg["num_attention_heads"]
        elif arch == "llama" and name.endswith(("attn_k.weight", "attn_k.bias")):
            perm[name] = cfg["num_key_value_heads"]
    for need in ("token_embd.weight", "output_norm.weight"):
        if need not in g.tensors:
            raise UnsupportedModelError(f"the GGUF has no {need}")
    tj, tc, notes = build_tokenizer(md, with_notes=True)
    return Plan(arch, model_type, cfg, names, perm, tj, tc, notes)


@dataclass
class ConvertReport:
    out: str
    model_type: str
    dtype: str
    n_tensors: int = 0
    n_bytes: int = 0
    files: List[str] = field(default_factory=list)
    # per tensor, for q4/q8: {name: {"max_abs": .., "rms": .., "bits": .., "group_size": ..}}
    quant_error: Dict[str, dict] = field(default_factory=dict)
    # per tensor, for float16/bfloat16: {name: (overflow, underflow)} where non-zero
    range_loss: Dict[str, tuple] = field(default_factory=dict)
    # SentencePiece pieces the rebuilt tokenizer cannot produce (see unreachable_pieces)
    unreachable_pieces: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"out": self.out, "model_type": self.model_type, "dtype": self.dtype,
                "n_tensors": self.n_tensors, "n_bytes": self.n_bytes, "files": self.files,
                "quant_error": self.quant_error, "unreachable_pieces": self.unreachable_pieces,
                "range_loss": {k: {"overflow": o, "underflow": u} for k, (o, u) in self.range_loss.items()}}


def _quantizable(hname: str, shape) -> bool:
    return len(shape) >= 2 and shape[-1] % GROUP_SIZE == 0 and not hname.endswith("norm.weight")


def convert(src, out, *, to: str = "mlx-lm", dtype: str = "float32",
            progress: Optional[Callable[[int, int, str], None]] = None) -> ConvertReport:
    """Convert the GGUF ``src`` into the folder ``out`` (which must not exist or be empty)."""
    import mlx.core as mx
    from . import mlx_gguf

    if to != "mlx-lm":
        raise GGSpecError(f"--to {to!r}: only 'mlx-lm' is supported")
    if dtype not in DTYPES:
        raise GGSpecError(f"--dtype {dtype!r}: one of {', '.join(DTYPES)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GGSpecError(f"{out} exists and is not an empty folder")
    g = _gguf.read(src)
    try:
        p = plan(g)                       # every check before anything is written
        cfg = dict(p.config)
        bits = {"q4": 4, "q8": 8}.get(dtype)
        if bits:
            cfg["quantization"] = {"group_size": GROUP_SIZE, "bits": bits}
        cfg["torch_dtype"] = {"float16": "float16", "bfloat16": "bfloat16"}.get(dtype, "float32")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        rep = ConvertReport(str(out), p.model_type, dtype)
        rep.unreachable_pieces = list(p.tokenizer_notes.get("unreachable_pieces", []))
        try:
            shard, shard_bytes, shards, index = {}, 0, [], {}

            def flush():
                nonlocal shard, shard_bytes
                if not shard:
                    return
                fn = f"model-{len(shards) + 1:05d}.safetensors"
                mx.save_safetensors(str(tmp / fn), shard, metadata={"format": "mlx"})
                shards.append(fn)
                for k in shard:
                    index[k] = fn
                shard, shard_bytes = {}, 0

            names = list(p.names.items())
            for i, (gname, hname) in enumerate(names):
                if progress:
                    progress(i, len(names), gname)
                t = g.tensors[gname]
                a, _, _ = mlx_gguf.load_tensor(t)                  # exact float32
                if gname in p.permute:
                    a = mx.array(unpermute(np.array(a, copy=False), p.permute[gname]))
                stored = {}
                if bits and _quantizable(hname, a.shape):
                    wq, sc, bi = mx.quantize(a, group_size=GROUP_SIZE, bits=bits)
                    back = mx.dequantize(wq, sc, bi, group_size=GROUP_SIZE, bits=bits)
                    d = (back - a).astype(mx.float32)
                    mx.eval(d)
                    dn = np.array(d, copy=False).astype(np.float64)
                    rep.quant_error[hname] = {"max_abs": float(np.max(np.abs(dn))) if dn.size else 0.0,
                                              "rms": float(np.sqrt(np.mean(dn * dn))) if dn.size else 0.0,
                                              "bits": bits, "group_size": GROUP_SIZE}
                    base = hname[: -len(".weight")]
                    stored = {hname: wq, base + ".scales": sc, base + ".biases": bi}
                elif dtype in ("float16", "bfloat16"):
                    y = np.array(a, copy=False).reshape(-1)
                    fn_ = mlx_gguf.round_to_f16_bits if dtype == "float16" else mlx_gguf.round_to_bf16_bits
                    b16, o, u = fn_(y)
                    if o or u:
                        rep.range_loss[hname] = (o, u)
                    r = mx.array(b16).view(mx.float16 if dtype == "float16" else mx.bfloat16).reshape(a.shape)
                    stored = {hname: r}
                else:
                    stored = {hname: a}
                for k, v in stored.items():
                    mx.eval(v)
                    shard[k] = v
                    shard_bytes += v.nbytes
                    rep.n_bytes += v.nbytes
                rep.n_tensors += 1
                mlx_gguf._release(g, t)
                if shard_bytes >= SHARD_BYTES:
                    flush()
            flush()
            if len(shards) == 1:
                os.rename(tmp / shards[0], tmp / "model.safetensors")
                rep.files = ["model.safetensors"]
            else:
                final = []
                for k, fn in enumerate(shards):
                    nf = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
                    os.rename(tmp / fn, tmp / nf)
                    final.append(nf)
                ren = dict(zip(shards, final))
                (tmp / "model.safetensors.index.json").write_text(json.dumps(
                    {"metadata": {"total_size": rep.n_bytes}, "weight_map": {k: ren[v] for k, v in index.items()}},
                    indent=2))
                rep.files = final + ["model.safetensors.index.json"]
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
            (tmp / "tokenizer.json").write_text(json.dumps(p.tokenizer, ensure_ascii=False))
            (tmp / "tokenizer_config.json").write_text(json.dumps(p.tokenizer_config, indent=2, ensure_ascii=False))
            rep.files += ["config.json", "tokenizer.json", "tokenizer_config.json"]
            if out.exists():
                out.rmdir()
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if progress:
            progress(len(names), len(names), "")
        return rep
    finally:
        g.close()
