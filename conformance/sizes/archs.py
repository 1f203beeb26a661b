"""Architectures and their tensor inventories."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from ...errors import GGSpecError
from .tokenizer import LLAMA_SPM, TokenizerStats, known_vocab

# ---------------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------------

# tensor roles -> names.  ggmlv3: llama.cpp's original (Meta checkpoint) names, as convert.py of
# July 2023 wrote them (convert_transformers_to_orig); gguf: llama.cpp's LLM_TENSOR_NAMES for LLM_ARCH_LLAMA.
GGMLV3_NAMES = {
    "token_embd": "tok_embeddings.weight",
    "output_norm": "norm.weight",
    "output": "output.weight",
    "attn_q": "layers.{i}.attention.wq.weight",
    "attn_k": "layers.{i}.attention.wk.weight",
    "attn_v": "layers.{i}.attention.wv.weight",
    "attn_output": "layers.{i}.attention.wo.weight",
    "ffn_gate": "layers.{i}.feed_forward.w1.weight",
    "ffn_down": "layers.{i}.feed_forward.w2.weight",
    "ffn_up": "layers.{i}.feed_forward.w3.weight",
    "attn_norm": "layers.{i}.attention_norm.weight",
    "ffn_norm": "layers.{i}.ffn_norm.weight",
}
GGUF_NAMES = {
    "token_embd": "token_embd.weight",
    "output_norm": "output_norm.weight",
    "output": "output.weight",
    "attn_q": "blk.{i}.attn_q.weight",
    "attn_k": "blk.{i}.attn_k.weight",
    "attn_v": "blk.{i}.attn_v.weight",
    "attn_output": "blk.{i}.attn_output.weight",
    "ffn_gate": "blk.{i}.ffn_gate.weight",
    "ffn_down": "blk.{i}.ffn_down.weight",
    "ffn_up": "blk.{i}.ffn_up.weight",
    "attn_norm": "blk.{i}.attn_norm.weight",
    "ffn_norm": "blk.{i}.ffn_norm.weight",
    "rope_freqs": "rope_freqs.weight",
}
# HF transformers names (what GPTQ files use)
HF_NAMES = {
    "token_embd": "model.embed_tokens.weight",
    "output_norm": "model.norm.weight",
    "output": "lm_head.weight",
    "attn_q": "model.layers.{i}.self_attn.q_proj",
    "attn_k": "model.layers.{i}.self_attn.k_proj",
    "attn_v": "model.layers.{i}.self_attn.v_proj",
    "attn_output": "model.layers.{i}.self_attn.o_proj",
    "ffn_gate": "model.layers.{i}.mlp.gate_proj",
    "ffn_down": "model.layers.{i}.mlp.down_proj",
    "ffn_up": "model.layers.{i}.mlp.up_proj",
    "attn_norm": "model.layers.{i}.input_layernorm.weight",
    "ffn_norm": "model.layers.{i}.post_attention_layernorm.weight",
}
LINEAR_ROLES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up")


@dataclass(frozen=True)
class Tensor:
    """One tensor: its role, layer (None for the global ones) and shape in ggml order."""

    role: str
    layer: "int | None"
    ne: tuple[int, ...]

    def name(self, era: str = "gguf") -> str:
        names = GGMLV3_NAMES if era == "ggmlv3" else GGUF_NAMES
        return names[self.role].format(i=self.layer)

    @property
    def n_elements(self) -> int:
        return math.prod(self.ne)

    @property
    def n_dims(self) -> int:
        return len(self.ne)


@dataclass(frozen=True)
class LlamaArchitecture:
    """A Llama-family decoder (LLaMA 1/2, Code Llama, Mistral 7B): hyper-parameters and tensors."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    n_vocab: int
    name: str = "llama"
    context_length: int = 4096
    norm_eps: float = 1e-5
    rope_theta: "float | None" = None  # written to GGUF only when the source config sets it
    head_dim: "int | None" = None  # None: dim // n_heads
    tied_embeddings: bool = False  # no output.weight (token_embd doubles as the output)
    tokenizer: TokenizerStats = LLAMA_SPM
    rope_freqs: bool = False  # Llama 3.1's llama3 rope scaling: a rope_freqs.weight tensor (head_dim / 2, F32)

    def __post_init__(self):
        if self.n_heads % self.n_kv_heads:
            raise GGSpecError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim is None and self.dim % self.n_heads:
            raise GGSpecError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")

    # derived hyper-parameters, llama.cpp's names
    @property
    def n_embd_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.dim // self.n_heads

    @property
    def n_gqa(self) -> int:
        return self.n_heads // self.n_kv_heads

    @property
    def n_embd_q(self) -> int:
        return self.n_embd_head * self.n_heads

    @property
    def n_embd_kv(self) -> int:
        return self.n_embd_head * self.n_kv_heads

    @property
    def vocab(self) -> TokenizerStats:
        if self.tokenizer is LLAMA_SPM and self.n_vocab != LLAMA_SPM.n_tokens:
            known = known_vocab(self.n_vocab)  # Llama 3, DeepSeek, Qwen2 ... (llama.cpp's vocab files)
            if known is not None:
                return known
        return self.tokenizer.resized(self.n_vocab)

    @property
    def is_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B for LLM_ARCH_LLAMA: 80 layers with grouped-query attention."""
        return self.n_layers == 80 and self.n_heads != self.n_kv_heads

    @property
    def n_mult(self) -> int:
        """The ggmlv3 header's n_mult, as convert.py's find_n_mult derived it from ffn_dim (2023)."""
        for n_mult in range(8192, 1, -1):
            if ((8 * self.dim) // 3 + n_mult - 1) // n_mult * n_mult == self.ffn_dim:
                return n_mult
        return 256  # GQA models (70B) have no n_mult that fits; the 2023 converter wrote 4096/256

    def layer_tensors(self, i: int) -> list[Tensor]:
        d, q, kv, f = self.dim, self.n_embd_q, self.n_embd_kv, self.ffn_dim
        return [
            Tensor("attn_q", i, (d, q)),
            Tensor("attn_k", i, (d, kv)),
            Tensor("attn_v", i, (d, kv)),
            Tensor("attn_output", i, (q, d)),
            Tensor("ffn_gate", i, (d, f)),
            Tensor("ffn_down", i, (f, d)),
            Tensor("ffn_up", i, (d, f)),
            Tensor("attn_norm", i, (d,)),
            Tensor("ffn_norm", i, (d,)),
        ]

    def tensors(self, era: str = "gguf") -> list[Tensor]:
        """All tensors in the order the era's tools wrote them.

        ggmlv3: convert.py (July 2023) from HF checkpoints: tok_embeddings, norm, output, then per
        layer wq wk wv wo w1 w2 w3 attention_norm ffn_norm.  gguf: today's llama-quantize order
        (``weights_map``: non-layer tensors by name, then layers in order, names sorted within).
        Sizes do not depend on the order except for the first ggmlv3 tensor header's padding.
        """
        glob = [Tensor("token_embd", None, (self.dim, self.n_vocab)), Tensor("output_norm", None, (self.dim,))]
        if not self.tied_embeddings:
            glob.append(Tensor("output", None, (self.dim, self.n_vocab)))
        if self.rope_freqs and era != "ggmlv3":
            glob.append(Tensor("rope_freqs", None, (self.n_embd_head // 2,)))
        if era == "ggmlv3":
            out = list(glob)
            for i in range(self.n_layers):
                lt = {t.role: t for t in self.layer_tensors(i)}
                out += [lt[r] for r in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down",
                                        "ffn_up", "attn_norm", "ffn_norm")]
            return out
        out = sorted(glob, key=lambda t: t.name("gguf"))
        for i in range(self.n_layers):
            out += sorted(self.layer_tensors(i), key=lambda t: t.name("gguf"))
        return out

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors())

    def describe(self) -> str:
        return (f"{self.name}: dim {self.dim}, {self.n_layers} layers, {self.n_heads} heads, "
                f"{self.n_kv_heads} KV heads, ffn {self.ffn_dim}, vocab {self.n_vocab}")


def llama_architecture(dim: int, n_layers: int, n_heads: int, n_kv_heads: int, ffn_dim: int, n_vocab: int,
                       **kw) -> LlamaArchitecture:
    """A Llama-family architecture from its six shape parameters (keywords: name, context_length, ...)."""
    return LlamaArchitecture(dim, n_layers, n_heads, n_kv_heads, ffn_dim, n_vocab, **kw)


# Published hyper-parameters (the models' params.json / config.json).
ARCHITECTURES: dict[str, LlamaArchitecture] = {
    a.name: a
    for a in (
        llama_architecture(4096, 32, 32, 32, 11008, 32000, name="llama-7b", context_length=2048, norm_eps=1e-6),
        llama_architecture(5120, 40, 40, 40, 13824, 32000, name="llama-13b", context_length=2048, norm_eps=1e-6),
        llama_architecture(6656, 60, 52, 52, 17920, 32000, name="llama-33b", context_length=2048, norm_eps=1e-6),
        llama_architecture(8192, 80, 64, 64, 22016, 32000, name="llama-65b", context_length=2048, norm_eps=1e-5),
        llama_architecture(4096, 32, 32, 32, 11008, 32000, name="llama-2-7b"),
        llama_architecture(5120, 40, 40, 40, 13824, 32000, name="llama-2-13b"),
        llama_architecture(8192, 80, 64, 8, 28672, 32000, name="llama-2-70b"),
        llama_architecture(4096, 32, 32, 32, 11008, 32016, name="codellama-7b", context_length=16384,
                           rope_theta=1e6),
        llama_architecture(5120, 40, 40, 40, 13824, 32016, name="codellama-13b", context_length=16384,
                           rope_theta=1e6),
        llama_architecture(8192, 48, 64, 8, 22016, 32000, name="codellama-34b", context_length=16384,
                           rope_theta=1e6),
        llama_architecture(8192, 80, 64, 8, 28672, 32016, name="codellama-70b", context_length=16384,
                           rope_theta=1e6),
        llama_architecture(4096, 32, 32, 8, 14336, 32000, name="mistral-7b", context_length=32768,
                           rope_theta=10000.0),
    )
}
ARCHITECTURES["llama-30b"] = replace(ARCHITECTURES["llama-33b"], name="llama-30b")


def get_architecture(name: str) -> LlamaArchitecture:
    key = name.lower().replace("_", "-")
    if key in ARCHITECTURES:
        return ARCHITECTURES[key]
    raise GGSpecError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")


def from_hf_config(config: "Mapping | str | Path", name: "str | None" = None) -> LlamaArchitecture:
    """An architecture from a Hugging Face ``config.json`` (a dict, or a path to the file or its folder)."""
    if not isinstance(config, Mapping):
        config = _read_config(config)
    c = config
    hf_arch = (c.get("architectures") or ["LlamaForCausalLM"])[0]
    if hf_arch not in ("LlamaForCausalLM", "MistralForCausalLM") or c.get("num_local_experts"):
        from .mixes import NotModelled
        raise NotModelled(f"{hf_arch} as a Llama-2-shaped LlamaArchitecture (dated eras and GPTQ model dense "
                          f"Llama/Mistral only; today's GGUF rules: shape_from_hf_config)")
    n_heads = int(c["num_attention_heads"])
    head_dim = c.get("head_dim")
    if head_dim is not None and int(head_dim) * n_heads == int(c["hidden_size"]):
        head_dim = None
    return LlamaArchitecture(
        dim=int(c["hidden_size"]),
        n_layers=int(c["num_hidden_layers"]),
        n_heads=n_heads,
        n_kv_heads=int(c.get("num_key_value_heads") or n_heads),
        ffn_dim=int(c["intermediate_size"]),
        n_vocab=int(c["vocab_size"]),
        name=name or c.get("_name_or_path") or c.get("model_type", "llama"),
        context_length=int(c.get("max_position_embeddings", 4096)),
        norm_eps=float(c.get("rms_norm_eps", 1e-5)),
        rope_theta=float(c["rope_theta"]) if c.get("rope_theta") is not None else None,
        head_dim=int(head_dim) if head_dim is not None else None,
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        rope_freqs=((c.get("rope_scaling") or {}).get("rope_type") or (c.get("rope_scaling") or {}).get("type")) == "llama3",
    )


def from_gguf(path: "str | Path") -> LlamaArchitecture:
    """An architecture from a GGUF file's metadata (needs ``ggspec.reference.gguf``)."""
    try:
        from ...reference import gguf as gguf_reader
    except ImportError as e:  # pragma: no cover - depends on what has landed
        raise GGSpecError("reading GGUF metadata needs ggspec.reference.gguf, which is not available") from e
    from .mixes import NotModelled
    g = gguf_reader.read(path)
    kv = g.metadata
    arch = kv.get("general.architecture")
    if arch is None:
        raise NotModelled("the architecture: the file has no general.architecture")
    if arch != "llama" or kv.get("llama.expert_count"):
        raise NotModelled(f"architecture {arch!r}{' with experts' if arch == 'llama' else ''} as a Llama-2-shaped "
                          f"LlamaArchitecture (use read_inventory / predict_inventory)")
    for k in ("embedding_length", "block_count", "attention.head_count", "feed_forward_length"):
        if f"{arch}.{k}" not in kv:
            raise NotModelled(f"{arch}.{k}: missing from the metadata")
    tokens = kv.get("tokenizer.ggml.tokens")
    n_vocab = kv.get(f"{arch}.vocab_size") or (len(tokens) if tokens is not None else None)
    n_heads = int(kv[f"{arch}.attention.head_count"])
    dim = int(kv[f"{arch}.embedding_length"])
    key_len = kv.get(f"{arch}.attention.key_length")
    return LlamaArchitecture(
        dim=dim,
        n_layers=int(kv[f"{arch}.block_count"]),
        n_heads=n_heads,
        n_kv_heads=int(kv.get(f"{arch}.attention.head_count_kv", n_heads)),
        ffn_dim=int(kv[f"{arch}.feed_forward_length"]),
        n_vocab=int(n_vocab),
        name=str(kv.get("general.name", arch)),
        context_length=int(kv.get(f"{arch}.context_length", 4096)),
        norm_eps=float(kv.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(kv[f"{arch}.rope.freq_base"]) if f"{arch}.rope.freq_base" in kv else None,
        head_dim=int(key_len) if key_len and int(key_len) * n_heads != dim else None,
    )




# ---------------------------------------------------------------------------------------------------
# Architectures beyond Llama-2: one declarative entry each (ARCH_SPECS)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """The hyper-parameters a tensor inventory, a quant mix and a RAM estimate need, for any modelled
    architecture (llama.cpp's ``hparams``; HF config names in the comments)."""

    arch: str                   # general.architecture
    n_embd: int                 # hidden_size
    n_layer: int                # num_hidden_layers
    n_head: int                 # num_attention_heads
    n_head_kv: int              # num_key_value_heads
    n_ff: int                   # intermediate_size (GGUF feed_forward_length)
    n_vocab: int                # vocab_size
    head_dim: int = 0           # 0: n_embd // n_head
    n_expert: int = 0           # num_local_experts
    n_expert_used: int = 0      # num_experts_per_tok
    tied: bool = False          # tie_word_embeddings (no output.weight)
    rope_freqs: bool = False    # llama3 rope scaling: a rope_freqs.weight tensor
    rope_factors: bool = False  # phi3 longrope: rope_factors_long/short tensors
    n_swa: int = 0              # sliding window (0: none)
    swa_pattern: int = 0        # every swa_pattern-th layer is global (gemma2: 2, gemma3: 6)
    context_length: int = 4096
    name: str = ""

    @property
    def n_embd_head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def n_embd_k_gqa(self) -> int:
        return self.n_embd_head * self.n_head_kv

    def is_swa(self, il: int) -> bool:
        """``hparams.is_swa``: set_swa_pattern(n) makes layer il sliding-window unless il % n == n - 1."""
        return bool(self.n_swa) and self.swa_pattern > 0 and il % self.swa_pattern < self.swa_pattern - 1

    def tensors(self) -> list[tuple[str, tuple[int, ...], str]]:
        """[(name, ne, source type)] as convert_hf_to_gguf writes an F16 file: 1-D tensors and the MoE
        router F32, every other matrix F16."""
        return ARCH_SPECS[self.arch].inventory(self)

    @property
    def n_params(self) -> int:
        return sum(math.prod(ne) for _, ne, _ in self.tensors())

    def describe(self) -> str:
        moe = f", {self.n_expert} experts ({self.n_expert_used} used)" if self.n_expert else ""
        return (f"{self.name or self.arch} [{self.arch}]: dim {self.n_embd}, {self.n_layer} layers, {self.n_head} heads, "
                f"{self.n_head_kv} KV heads, head dim {self.n_embd_head}, ffn {self.n_ff}{moe}, vocab {self.n_vocab}"
                + (", tied embeddings" if self.tied else ""))


def _attn(s: ModelShape, i: int, bias: bool = False, fused: bool = False) -> list:
    e, hd = s.n_embd, s.n_embd_head
    q, kv = hd * s.n_head, hd * s.n_head_kv
    p = f"blk.{i}."
    if fused:
        out = [(p + "attn_qkv.weight", (e, q + 2 * kv), "F16")]
        if bias:
            out.append((p + "attn_qkv.bias", (q + 2 * kv,), "F32"))
    else:
        out = [(p + "attn_q.weight", (e, q), "F16"), (p + "attn_k.weight", (e, kv), "F16"),
               (p + "attn_v.weight", (e, kv), "F16")]
        if bias:
            out += [(p + "attn_q.bias", (q,), "F32"), (p + "attn_k.bias", (kv,), "F32"), (p + "attn_v.bias", (kv,), "F32")]
    return out + [(p + "attn_output.weight", (q, e), "F16"), (p + "attn_norm.weight", (e,), "F32")]


def _ffn(s: ModelShape, i: int, n_ff: "int | None" = None) -> list:
    e, f, p = s.n_embd, n_ff or s.n_ff, f"blk.{i}."
    if s.n_expert:
        x = s.n_expert
        return [(p + "ffn_gate_inp.weight", (e, x), "F32"), (p + "ffn_gate_exps.weight", (e, f, x), "F16"),
                (p + "ffn_down_exps.weight", (f, e, x), "F16"), (p + "ffn_up_exps.weight", (e, f, x), "F16"),
                (p + "ffn_norm.weight", (e,), "F32")]
    return [(p + "ffn_gate.weight", (e, f), "F16"), (p + "ffn_down.weight", (f, e), "F16"),
            (p + "ffn_up.weight", (e, f), "F16"), (p + "ffn_norm.weight", (e,), "F32")]


def _globals(s: ModelShape, output: bool = True) -> list:
    out = [("token_embd.weight", (s.n_embd, s.n_vocab), "F16"), ("output_norm.weight", (s.n_embd,), "F32")]
    if output and not s.tied:
        out.append(("output.weight", (s.n_embd, s.n_vocab), "F16"))
    if s.rope_freqs:
        out.append(("rope_freqs.weight", (s.n_embd_head // 2,), "F32"))
    if s.rope_factors:
        out += [("rope_factors_long.weight", (s.n_embd_head // 2,), "F32"),
                ("rope_factors_short.weight", (s.n_embd_head // 2,), "F32")]
    return out


def _inv_llama(s):
    return _globals(s) + [t for i in range(s.n_layer) for t in _attn(s, i) + _ffn(s, i)]


def _inv_qwen2(s):
    return _globals(s) + [t for i in range(s.n_layer) for t in _attn(s, i, bias=True) + _ffn(s, i)]


def _inv_qwen(s):  # Qwen v1: fused QKV with bias; the GGUF n_ff is intermediate_size, the matrices half of it
    return _globals(s) + [t for i in range(s.n_layer) for t in _attn(s, i, bias=True, fused=True) + _ffn(s, i, s.n_ff // 2)]


def _inv_gemma(s):
    return _globals(s, output=False) + [t for i in range(s.n_layer) for t in _attn(s, i) + _ffn(s, i)]


def _post_norms(s, i):
    return [(f"blk.{i}.post_attention_norm.weight", (s.n_embd,), "F32"),
            (f"blk.{i}.post_ffw_norm.weight", (s.n_embd,), "F32")]


def _inv_gemma2(s):
    return _globals(s, output=False) + [t for i in range(s.n_layer) for t in _attn(s, i) + _ffn(s, i) + _post_norms(s, i)]


def _inv_gemma3(s):
    return _globals(s) + [t for i in range(s.n_layer) for t in _attn(s, i) + _ffn(s, i) + _post_norms(s, i) + [
        (f"blk.{i}.attn_q_norm.weight", (s.n_embd_head,), "F32"), (f"blk.{i}.attn_k_norm.weight", (s.n_embd_head,), "F32")]]


def _qk_norms(s, i):
    return [(f"blk.{i}.attn_q_norm.weight", (s.n_embd_head,), "F32"), (f"blk.{i}.attn_k_norm.weight", (s.n_embd_head,), "F32")]


def _inv_qwen3(s):  # dense or MoE (qwen3moe: n_ff is the expert FFN width, moe_intermediate_size)
    return _globals(s) + [t for i in range(s.n_layer) for t in _attn(s, i) + _qk_norms(s, i) + _ffn(s, i)]


def _inv_phi3(s):
    out = _globals(s)
    for i in range(s.n_layer):
        out += _attn(s, i, fused=True)
        out += [(f"blk.{i}.ffn_down.weight", (s.n_ff, s.n_embd), "F16"),
                (f"blk.{i}.ffn_up.weight", (s.n_embd, 2 * s.n_ff), "F16"), (f"blk.{i}.ffn_norm.weight", (s.n_embd,), "F32")]
    return out


_ATTN_NAMES = r"attn_(q|k|v|qkv|output)\.(weight|bias)|attn_norm\.weight"
_FFN_NAMES = (r"ffn_(gate|down|up)\.(weight|bias)|ffn_norm\.weight|ffn_gate_inp\.weight|"
              r"ffn_(gate|down|up)_(exps|shexp)\.weight|ffn_(gate|down|up)\.\d+\.weight")


@dataclass(frozen=True)
class ArchSpec:
    """One architecture as the size model knows it.

    ``global_names`` / ``layer_names``: regexes of every tensor name llama.cpp's loader accepts for it
    (``load_arch_tensors``; layer names without the ``blk.N.`` prefix) -- a file with any other tensor
    is "not modelled".  ``type_70b(n_layer, n_head, n_head_kv, n_expert)``: when ``load_arch_hparams``
    sets ``LLM_TYPE_70B`` (the one model type the quantizer looks at).  ``inventory``: the tensors of an
    F16 conversion from the shape.  ``swa_pattern``: the default sliding-window pattern."""

    name: str
    hf_architectures: tuple[str, ...]
    global_names: str
    layer_names: str
    type_70b: "object"
    inventory: "object"
    swa_pattern: int = 0
    notes: str = ""

    def knows(self, name: str) -> bool:
        m = re.match(r"^blk\.\d+\.(.*)$", name)
        if m:
            return re.fullmatch(self.layer_names, m.group(1)) is not None
        return re.fullmatch(self.global_names, name) is not None


_GLOBALS = r"token_embd\.weight|output_norm\.weight|output\.weight|rope_freqs\.weight|output\.bias"

ARCH_SPECS: dict[str, ArchSpec] = {s.name: s for s in (
    ArchSpec("llama", ("LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"), _GLOBALS,
             _ATTN_NAMES + "|" + _FFN_NAMES + r"|attn_rot_embd|rope_freqs\.weight",
             # models/llama.cpp: 80 layers without 8 experts, n_head != n_head_kv
             lambda nl, nh, nkv, nx: nx != 8 and nl == 80 and nh != nkv, _inv_llama,
             notes="Llama 1/2/3, Mistral, Mixtral (n_expert 8: 3-D *_exps or the older per-expert ffn_*.E)"),
    ArchSpec("qwen2", ("Qwen2ForCausalLM",), _GLOBALS, _ATTN_NAMES + "|" + _FFN_NAMES,
             lambda nl, nh, nkv, nx: nl == 80, _inv_qwen2,  # models/qwen2.cpp: case 80 -> LLM_TYPE_70B
             notes="Qwen1.5 / Qwen2 dense: Q/K/V biases"),
    ArchSpec("qwen", ("QWenLMHeadModel",), _GLOBALS, _ATTN_NAMES + "|" + _FFN_NAMES,
             lambda nl, nh, nkv, nx: False, _inv_qwen, notes="Qwen v1: fused attn_qkv with bias"),
    ArchSpec("gemma", ("GemmaForCausalLM",), _GLOBALS, _ATTN_NAMES + "|" + _FFN_NAMES,
             lambda nl, nh, nkv, nx: False, _inv_gemma, notes="tied embeddings"),
    ArchSpec("gemma2", ("Gemma2ForCausalLM",), _GLOBALS,
             _ATTN_NAMES + "|" + _FFN_NAMES + r"|post_attention_norm\.weight|post_ffw_norm\.weight",
             lambda nl, nh, nkv, nx: False, _inv_gemma2, swa_pattern=2,
             notes="tied embeddings, post norms, sliding window on every other layer"),
    ArchSpec("gemma3", ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"), _GLOBALS,
             _ATTN_NAMES + "|" + _FFN_NAMES + r"|post_attention_norm\.weight|post_ffw_norm\.weight|attn_[qk]_norm\.weight",
             lambda nl, nh, nkv, nx: False, _inv_gemma3, swa_pattern=6,
             notes="tied embeddings, q/k norms, post norms, 5 of 6 layers sliding window"),
    ArchSpec("qwen3", ("Qwen3ForCausalLM",), _GLOBALS, _ATTN_NAMES + "|" + _FFN_NAMES + r"|attn_[qk]_norm\.weight",
             lambda nl, nh, nkv, nx: False, _inv_qwen3, notes="q/k norms, explicit head dim"),
    ArchSpec("qwen3moe", ("Qwen3MoeForCausalLM",), _GLOBALS, _ATTN_NAMES + "|" + _FFN_NAMES + r"|attn_[qk]_norm\.weight",
             lambda nl, nh, nkv, nx: False, _inv_qwen3, notes="q/k norms, experts (3-D *_exps, router F32)"),
    ArchSpec("phi3", ("Phi3ForCausalLM",), _GLOBALS + r"|rope_factors_(long|short)\.weight",
             _ATTN_NAMES + "|" + _FFN_NAMES + r"|rope_factors_(long|short)\.weight",
             lambda nl, nh, nkv, nx: False, _inv_phi3, notes="fused attn_qkv, fused gate/up in ffn_up (2 n_ff)"),
)}


def arch_spec(name: str) -> ArchSpec:
    from .mixes import NotModelled
    if name not in ARCH_SPECS:
        raise NotModelled(f"architecture {name!r}: its tensor inventory, model-type rule and KV cache are not "
                          f"transcribed (modelled: {', '.join(ARCH_SPECS)})")
    return ARCH_SPECS[name]


def quant_model(arch_name: str, tensors: "Sequence[tuple]", hp: "Mapping") -> "object":
    """The ``QuantModel`` llama.cpp would build for these tensors (``hp``: n_layer, n_head, n_head_kv,
    n_expert as read from the file; what is missing is inferred from the shapes, or NotModelled)."""
    from .mixes import NotModelled, QuantModel
    spec = arch_spec(arch_name)
    unknown = [t[0] for t in tensors if not spec.knows(t[0])]
    if unknown:
        raise NotModelled(f"tensor(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} of architecture "
                          f"{arch_name!r} (not in its transcribed inventory)")
    shapes = {t[0]: tuple(t[1]) for t in tensors}
    n_layer = hp.get("n_layer")
    if not n_layer:
        layers = [int(m.group(1)) for n in shapes if (m := re.match(r"^blk\.(\d+)\.", n))]
        if not layers:
            raise NotModelled("the layer count (no blk.N tensors and no block_count)")
        n_layer = max(layers) + 1
    n_expert = hp.get("n_expert")
    if n_expert is None:
        n_expert = 0
        for n, ne in shapes.items():
            if n.endswith("ffn_gate_inp.weight"):
                n_expert = ne[1]
            elif "_exps." in n and len(ne) == 3:
                n_expert = ne[2]
    n_head, n_head_kv = hp.get("n_head"), hp.get("n_head_kv")
    if not n_head or not n_head_kv:
        q, k = shapes.get("blk.0.attn_q.weight"), shapes.get("blk.0.attn_k.weight")
        if q is None or k is None:
            raise NotModelled("the head counts (n_head, n_head_kv): not in the metadata and the attention is fused")
        n_head, n_head_kv = n_head or q[1], n_head_kv or k[1]  # the ratio is what the rules use
    return QuantModel(arch_name, int(n_layer), int(n_head), int(n_head_kv), int(n_expert),
                      bool(spec.type_70b(int(n_layer), int(n_head), int(n_head_kv), int(n_expert))))


def _read_config(path) -> dict:
    """A config.json (or the folder holding one) as a dict; typed errors for missing or bad files."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        c = json.loads(p.read_text())
    except OSError as e:
        raise GGSpecError(f"cannot open {p}: {e.strerror or e}") from None
    except ValueError as e:
        raise GGSpecError(f"{p}: not a JSON config ({e})") from None
    if not isinstance(c, dict):
        raise GGSpecError(f"{p}: not a JSON object")
    return c


def _hp_get(c: Mapping, *keys, default=None):
    for k in keys:
        if c.get(k) is not None:
            return c[k]
    return default


def shape_from_hf_config(config: "Mapping | str | Path", name: "str | None" = None) -> ModelShape:
    """A ``ModelShape`` from a Hugging Face ``config.json`` (dict, file or folder), any modelled architecture;
    ``NotModelled`` for the others."""
    from .mixes import NotModelled
    if not isinstance(config, Mapping):
        config = _read_config(config)
    c = dict(config)
    if "text_config" in c and "hidden_size" not in c:  # multimodal wrappers (Gemma 3 4B+)
        c = {**c, **c["text_config"]}
    hf_arch = (c.get("architectures") or [""])[0]
    arch = next((s.name for s in ARCH_SPECS.values() if hf_arch in s.hf_architectures), None)
    if arch is None:
        raise NotModelled(f"HF architecture {hf_arch or c.get('model_type')!r} (modelled: "
                          + ", ".join(a for s in ARCH_SPECS.values() for a in s.hf_architectures) + ")")
    n_embd = int(_hp_get(c, "hidden_size", "n_embd"))
    n_head = int(_hp_get(c, "num_attention_heads", "n_head"))
    n_layer = int(_hp_get(c, "num_hidden_layers", "n_layer"))
    head_dim = _hp_get(c, "head_dim", "kv_channels")
    rs = c.get("rope_scaling") or {}
    n_expert = int(_hp_get(c, "num_local_experts", "num_experts", default=0) or 0)
    tied = bool(c.get("tie_word_embeddings", arch in ("gemma", "gemma2", "gemma3")))
    if arch == "qwen":
        tied = False  # Qwen v1 always has lm_head
    n_swa = 0
    if arch in ("gemma2", "gemma3"):
        n_swa = int(c.get("sliding_window") or (4096 if arch == "gemma2" else 0))
    return ModelShape(
        arch=arch, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        n_head_kv=int(_hp_get(c, "num_key_value_heads", default=n_head) or n_head),
        n_ff=int(_hp_get(c, "moe_intermediate_size", "intermediate_size", "n_inner", default=4 * n_embd)
                 if arch == "qwen3moe" else _hp_get(c, "intermediate_size", "n_inner", default=4 * n_embd)),
        n_vocab=int(c["vocab_size"]), head_dim=int(head_dim) if head_dim else 0, n_expert=n_expert,
        n_expert_used=int(_hp_get(c, "num_experts_per_tok", default=0) or 0), tied=tied,
        rope_freqs=arch == "llama" and (rs.get("rope_type") or rs.get("type")) == "llama3",
        rope_factors=arch == "phi3" and (rs.get("type") or rs.get("rope_type")) in ("longrope", "su"),
        n_swa=n_swa, swa_pattern=ARCH_SPECS[arch].swa_pattern if n_swa else 0,
        context_length=int(_hp_get(c, "max_position_embeddings", "seq_length", default=4096)),
        name=name or c.get("_name_or_path") or "",
    )
