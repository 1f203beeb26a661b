"""The size model: bits per weight, exact file sizes and a RAM estimate for Llama-family models.

A model file is an *architecture* (tensor names and shapes) plus a *quant mix* (which ggml type each
tensor gets) laid out in a *container*.  All three are versioned:

* **ggmlv3** -- the ``ggjt`` version 3 ``.bin`` files of July/August 2023.  Container: llama.cpp's
  ``llama_file_saver``; mix: ``llama_model_quantize_internal`` as of llama.cpp commit
  ``097e121e2`` (2023-08-18, the last commit before GGUF); these rules did not change between
  ``bbef28218`` (2023-07-11) and GGUF (2023-08-21).
* **gguf** -- GGUF v3 (v2 is byte-identical for little-endian files; v1, August 2023, used 32-bit
  counts).  Mix: today's ``llama_tensor_get_type`` of the vendored llama.cpp (``src/llama-quant.cpp``
  of llama-cpp-python 0.3.36) by default, or the rules in force at a date (``era="gguf@2023-09-15"``):
  the quantization rules changed several times after August 2023 (see ``GGUF_RULE_CHANGES``).
* **gptq** -- AutoGPTQ safetensors (``gptq_file_size``).

Everything is exact integer arithmetic: no tolerances.  Published tables round to 10^9 bytes with two
decimals; a row reproduces when our byte count rounds to the published figure (``round_gb``).

The sources each rule follows are named next to it; ``docs/sizes.md`` explains the whole model.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import GGSpecError
from ..reference.types import QK_K, GGMLType, get_type

# ---------------------------------------------------------------------------------------------------
# Bits per weight
# ---------------------------------------------------------------------------------------------------


def bits_per_weight(type_name: "str | GGMLType") -> Fraction:
    """Exact bits per weight of a ggml type's block layout: ``8 * type_size / block_size``."""
    t = get_type(type_name)
    if t.removed:
        raise GGSpecError(f"{t.name} was removed from ggml and has no layout")
    return t.bpw


def tensor_nbytes(type_name: "str | GGMLType", ne: Sequence[int]) -> int:
    """Bytes of a tensor of shape ``ne`` (ggml order, ``ne[0]`` = row length): ``ggml_nbytes``."""
    t = get_type(type_name)
    if ne[0] % t.block_size:
        raise GGSpecError(f"row length {ne[0]} is not a multiple of the {t.name} block size {t.block_size}")
    rows = 1
    for n in ne[1:]:
        rows *= n
    return t.row_size(ne[0]) * rows


def round_gb(n_bytes: int) -> str:
    """A byte count as published: 10^9 bytes, two decimals, round half up (exact, no float)."""
    hundredths = (2 * n_bytes + 10**7) // (2 * 10**7)  # round(n / 1e7), halves up
    return f"{hundredths // 100}.{hundredths % 100:02d}"


# ---------------------------------------------------------------------------------------------------
# Tokenizer statistics (the vocabulary bytes inside a file)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerStats:
    """What a file stores about the vocabulary, reduced to the numbers its size depends on.

    ``gguf_text_bytes``: total UTF-8 bytes of all token texts as GGUF stores them (the sentencepiece
    pieces verbatim: ``▁`` is U+2581, 3 bytes; byte tokens as ``<0x0A>``; ``<unk>``, ``<s>``, ``</s>``).
    ``ggmlv3_text_bytes``: the same as the 2023 ``convert.py`` wrote them into ggml files
    (``SentencePieceVocab.sentencepiece_tokens`` at 097e121e2): ``▁`` replaced by a space (1 byte),
    byte tokens as the single raw byte, control tokens (``<s>``, ``</s>``) as the empty string, the
    unknown token as ``" \\u2047 "`` (5 bytes).
    """

    name: str
    n_tokens: int
    gguf_text_bytes: int
    ggmlv3_text_bytes: int
    bos_token_id: int = 1
    eos_token_id: int = 2
    unknown_token_id: int = 0

    def resized(self, n_vocab: int) -> "TokenizerStats":
        """The statistics for a vocabulary of ``n_vocab`` entries built on this one.

        Extra entries (CodeLlama's 32016, added tokens) are not in our data: each is counted as the
        mean token length of this vocabulary, rounded down -- an approximation of a few dozen bytes
        at most for the vocabularies we know (documented in docs/sizes.md).
        """
        if n_vocab == self.n_tokens:
            return self
        extra = n_vocab - self.n_tokens
        return replace(
            self,
            name=f"{self.name}+{extra}" if extra > 0 else f"{self.name}[:{n_vocab}]",
            n_tokens=n_vocab,
            gguf_text_bytes=self.gguf_text_bytes + extra * (self.gguf_text_bytes // self.n_tokens),
            ggmlv3_text_bytes=self.ggmlv3_text_bytes + extra * (self.ggmlv3_text_bytes // self.n_tokens),
        )


# Derived from llama.cpp's models/ggml-vocab-llama-spm.gguf (vendored in llama-cpp-python 0.3.36), the
# 32000-token LLaMA / Llama 2 sentencepiece vocabulary: 31741 normal, 256 byte, 2 control, 1 unknown.
# gguf: sum of len(token) over tokenizer.ggml.tokens = 210919.
# ggmlv3: the same tokens re-encoded with the 2023 convert.py rules (see TokenizerStats) = 176574.
# Only these two numbers are kept; the vocabulary file is not part of this repository.
LLAMA_SPM = TokenizerStats("llama-spm", 32000, gguf_text_bytes=210919, ggmlv3_text_bytes=176574)


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
        p = Path(config)
        if p.is_dir():
            p = p / "config.json"
        config = json.loads(p.read_text())
    c = config
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
    )


def from_gguf(path: "str | Path") -> LlamaArchitecture:
    """An architecture from a GGUF file's metadata (needs ``ggspec.reference.gguf``)."""
    try:
        from ..reference import gguf as gguf_reader  # written by the containers work; optional
    except ImportError as e:  # pragma: no cover - depends on what has landed
        raise GGSpecError("reading GGUF metadata needs ggspec.reference.gguf, which is not available") from e
    g = gguf_reader.read(path)
    kv = getattr(g, "metadata", None) or getattr(g, "kv", None) or g
    arch = kv["general.architecture"]
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
# Quant mixes
# ---------------------------------------------------------------------------------------------------

# llama.h's enum llama_ftype (the value stored as general.file_type / the ggmlv3 header's ftype)
FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21,
    "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27,
    "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36, "TQ2_0": 37,
    "MXFP4_MOE": 38, "Q1_0": 40, "Q2_0": 41,
}

# llama_ftype_get_default_type (vendored llama-quant.cpp)
DEFAULT_TYPE: dict[str, str] = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
    "Q5_1": "Q5_1", "Q8_0": "Q8_0", "Q1_0": "Q1_0", "Q2_0": "Q2_0", "MXFP4_MOE": "MXFP4",
    "Q2_K_S": "Q2_K", "Q2_K": "Q2_K", "IQ3_XS": "IQ3_S", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K", "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS",
    "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S", "IQ3_XXS": "IQ3_XXS", "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M",
    "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S",
}

# mixes of the ggml era (llama.cpp 2023-07/08, built with k-quants)
GGMLV3_MIXES = ("F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M",
                "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K")
GGUF_MIXES = tuple(m for m in FTYPES)

# ftypes whose low-bit tensors llama-quantize refuses to make without an importance matrix
# (tensor_requires_imatrix): the default for ``imatrix=None``.
IMATRIX_MIXES = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "Q2_K_S")


def normalize_mix(mix: str) -> str:
    """``q4_K_M`` / ``Q4_K_M`` / ``LLAMA_FTYPE_MOSTLY_Q4_K_M`` / ``mostly q4_k_m`` -> ``Q4_K_M``."""
    m = mix.strip().upper()
    for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_", "LLAMA_FTYPE_", "MOSTLY_", "MOSTLY "):
        if m.startswith(prefix):
            m = m[len(prefix):]
    if m not in FTYPES:
        raise GGSpecError(f"unknown quant mix {mix!r}; known: {', '.join(FTYPES)}")
    return m


# The dates at which llama.cpp changed the mix of a dense Llama model (git history of llama.cpp;
# commit, date, what changed).  ``gguf@DATE`` selects the rules in force at the end of that day.
GGUF_RULE_CHANGES: tuple[tuple[str, str, str], ...] = (
    ("6381d4e11", "2023-08-21", "GGUF; quantization rules unchanged from the ggml era (097e121e2)"),
    ("bac66994c", "2023-08-22", "Q2_K: attn_v/attn_output/ffn_down/gate/up -> Q3_K; Q3_K_M first 2 attn_v and "
                                "ffn_down Q5_K; Q4_K_S first 4 attn_v and ffn_down Q5_K"),
    ("759237540", "2023-08-26", "70B: attn_v Q3_K/Q4_K -> Q5_K"),
    ("04f4b1eb1", "2023-08-26", "k-quants only need ne[0] % 256 == 0 (ne[1] no longer checked)"),
    ("a6d1189fd", "2023-08-27", "output: Q8_0 when ne[0] % 256 != 0 or mix is Q8_0, else Q6_K"),
    ("bd6d9e205", "2023-10-28", "incompatible rows fall back per type (Q2_K->Q4_0, Q3_K->Q4_1, Q4_K->Q5_0, "
                                "Q5_K->Q5_1, Q6_K->Q8_0) instead of output F16 / token_embd Q4_0 / error"),
    ("147b17ac9", "2024-01-14", "Q2_K: ffn_gate/up back to Q2_K; Q3_K_M ffn_down first n/16 Q5_K; Q4_K_S "
                                "ffn_down first n/8 Q5_K; Q2_K_S added"),
    ("2b3a665d3", "2024-01-17", "Q2_K attn_v Q4_K when n_gqa >= 4; Q4_0/Q5_0 with imatrix: first n/8 ffn_down "
                                "Q4_1/Q5_1"),
    ("vendored", "today", "llama-cpp-python 0.3.36's llama-quant.cpp: same for dense Llama K/legacy mixes, "
                          "plus IQ/TQ/MXFP4 mixes and the current fallback table"),
)


# when llama.cpp added the mixes that the ggml era did not have (git history); for dated rules after
# these days the i-quant / ternary choices follow today's code (their early variants are not modelled)
MIX_INTRODUCED = {
    "Q2_K_S": "2024-01-14", "IQ2_XXS": "2024-01-14", "IQ2_XS": "2024-01-14", "IQ3_XS": "2024-01-22",
    "IQ3_XXS": "2024-01-30", "IQ1_S": "2024-02-18", "IQ4_NL": "2024-02-21", "IQ3_S": "2024-02-24",
    "IQ3_M": "2024-02-24", "IQ2_S": "2024-02-26", "IQ2_M": "2024-02-26", "IQ4_XS": "2024-02-27",
    "IQ1_M": "2024-03-26", "BF16": "2024-03-11", "TQ1_0": "2024-09-05", "TQ2_0": "2024-09-05",
}
# the last llama.cpp commit whose rules were transcribed date by date; later dates use today's rules
LAST_DATED_RULES = "2025-02-20"


def _rules_date(era: str) -> "tuple[str, str]":
    """('ggmlv3'|'gguf', 'YYYY-MM-DD' or 'today') from an era string such as 'gguf@2023-09-15'."""
    base, _, date = era.partition("@")
    base = base.strip().lower()
    if base not in ("ggmlv3", "gguf"):
        raise GGSpecError(f"unknown era {era!r}: use 'ggmlv3', 'gguf' or 'gguf@YYYY-MM-DD'")
    if base == "ggmlv3":
        if date:
            raise GGSpecError("the ggmlv3 era has one rule set (llama.cpp 097e121e2); drop the @date")
        return base, "2023-08-18"
    if not date or date == "today":
        return base, "today"
    try:
        d = datetime.strptime(date.strip(), "%Y-%m-%d" if len(date.strip()) > 7 else "%Y-%m")
    except ValueError as e:
        raise GGSpecError(f"bad date in era {era!r}: use YYYY-MM-DD") from e
    if len(date.strip()) <= 7:  # a month: its last day
        nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1)
        d = datetime.fromordinal(nxt.toordinal() - 1)
    if d.strftime("%Y-%m-%d") < "2023-08-21":
        raise GGSpecError(f"GGUF did not exist before 2023-08-21 (era {era!r})")
    if d.strftime("%Y-%m-%d") > LAST_DATED_RULES:
        return base, "today"
    return base, d.strftime("%Y-%m-%d")


def _since(date: str, change: str) -> bool:
    return date == "today" or date >= change


@dataclass
class _QuantState:
    """The counters of llama.cpp's quantize_state (the i-th attn_v / ffn_down ... seen so far)."""

    n_attention_wv: int
    n_ffn_down: int
    n_ffn_gate: int
    n_ffn_up: int
    has_imatrix: bool
    has_output: bool
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: the first and last eighth of the layers, and every third between.

    C integer division; ``(i - n/8) % 3 == 2`` with C's remainder (the operand is never negative here
    because the first branch already covers i < n/8).
    """
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _ggmlv3_mix(arch: LlamaArchitecture, mix: str) -> list[tuple[Tensor, str]]:
    """Tensor types of a ggmlv3 file: llama.cpp ``llama_model_quantize_internal`` at 097e121e2.

    * Only 2-D tensors whose name ends in ``weight`` are quantized; 1-D norms stay F32 (as the
      converter wrote them).
    * ``output.weight`` gets Q6_K when both its dimensions are multiples of QK_K -- for *every*
      quantized mix, the legacy ones (q4_0 ... q8_0) included, since k-quants were compiled in.
    * ``attention.wv``: q2_K and q3_K_M -> Q4_K, q3_K_L -> Q5_K, q4_K_M / q5_K_M -> Q6_K where
      ``use_more_bits(i, n)``.  ``feed_forward.w2``: the same.  ``attention.wo``: q2_K and q3_K_M ->
      Q4_K, q3_K_L -> Q5_K.  Nothing else changes (no GQA / 70B special case existed yet).
    * A k-quant target needs ne[0] and ne[1] to be multiples of 256: otherwise ``output.weight``
      falls back to F16, ``tok_embeddings.weight`` to Q4_0, any other tensor is an error.
    """
    if mix not in GGMLV3_MIXES:
        raise GGSpecError(f"mix {mix} did not exist in the ggml era; ggmlv3 mixes: {', '.join(GGMLV3_MIXES)}")
    tensors = arch.tensors("ggmlv3")
    if mix in ("F32", "F16"):  # convert.py output: 2-D weights in the chosen float type, 1-D F32
        return [(t, mix if t.n_dims == 2 else "F32") for t in tensors]
    base = DEFAULT_TYPE[mix]
    n_wv = sum(1 for t in tensors if t.role == "attn_v")
    n_w2 = sum(1 for t in tensors if t.role == "ffn_down")
    i_wv = i_w2 = 0
    out = []
    for t in tensors:
        if t.n_dims != 2:
            out.append((t, "F32"))
            continue
        new = base
        nx, ny = t.ne[0], t.ne[1]
        if t.role == "output":
            if nx % QK_K == 0 and ny % QK_K == 0:
                new = "Q6_K"
        elif t.role == "attn_v":
            if mix in ("Q3_K_M", "Q2_K"):
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
            elif mix in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_wv, n_wv):
                new = "Q6_K"
            i_wv += 1
        elif t.role == "ffn_down":
            if mix in ("Q3_K_M", "Q2_K"):
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
            elif mix in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_w2, n_w2):
                new = "Q6_K"
            i_w2 += 1
        elif t.role == "attn_output":
            if mix in ("Q3_K_M", "Q2_K"):
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
        if new in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K") and (nx % QK_K or ny % QK_K):
            if t.role == "output":
                new = "F16"
            elif t.role == "token_embd":
                new = "Q4_0"
            else:
                raise GGSpecError(f"{t.name('ggmlv3')} {t.ne}: unsupported tensor size for k-quants (ggml era)")
        out.append((t, new))
    return out


_IQ2_FAMILY = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def _gguf_impl_type(arch: LlamaArchitecture, t: Tensor, mix: str, new: str, qs: _QuantState, date: str) -> str:
    """``llama_tensor_get_type_impl`` for LLM_ARCH_LLAMA (dense: n_expert 0), at a rules date."""
    role = t.role
    n_gqa = arch.n_gqa
    q = mix
    if role == "output" or (not qs.has_output and role == "token_embd"):
        nx = t.ne[0]
        if not _since(date, "2023-08-27"):
            # ggml-era rule: Q6_K when the tensor fits k-quants (ne[1] dropped on 2023-08-26)
            fits = nx % QK_K == 0 and (t.ne[1] % QK_K == 0 or _since(date, "2023-08-26"))
            return "Q6_K" if fits else new
        qk = get_type(new).block_size if date == "today" else QK_K
        if q == "MXFP4_MOE" or nx % qk:
            return "Q8_0"
        if q in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return "Q5_K"
        if new != "Q8_0":
            return "Q6_K"
        return new
    if q == "MXFP4_MOE":
        return "Q8_0"  # dense tensors (ne[2] == 1)
    if role == "token_embd":
        if q in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if q in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if q in ("TQ1_0", "TQ2_0", "Q2_0"):
            return "Q4_K"
        return new
    if q in _IQ2_FAMILY:
        if role == "attn_v":
            new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if q in ("IQ2_S", "IQ2_M") else "Q2_K")
            qs.i_attention_wv += 1
        elif role == "ffn_down":
            if qs.i_ffn_down < qs.n_ffn_down // 8:
                new = "IQ3_S" if q in ("IQ2_S", "IQ2_M") else "Q2_K"
            qs.i_ffn_down += 1
        elif role == "attn_output":
            if q in ("IQ1_S", "IQ1_M"):
                new = "IQ2_XXS"
            elif q in ("IQ2_S", "IQ2_M"):
                new = "IQ3_S"
        return new
    if role == "attn_v":
        if q == "Q2_K":
            if _since(date, "2024-01-17"):
                new = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif _since(date, "2023-08-22"):
                new = "Q3_K"
            else:
                new = "Q4_K"
        elif q == "Q2_K_S" and n_gqa >= 4 and _since(date, "2024-01-17"):
            new = "Q4_K"
        elif q == "IQ3_XXS":
            new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if not qs.has_imatrix else "IQ3_XXS")
        elif q in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
            new = "Q4_K"
        elif q == "IQ3_M":
            new = "Q4_K"
        elif q == "Q3_K_M":
            if _since(date, "2023-08-22"):
                new = "Q5_K" if qs.i_attention_wv < 2 else "Q4_K"
            else:
                new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
            new = "Q5_K"
        elif q in ("Q4_K_M", "Q5_K_M") and use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new = "Q6_K"
        elif q == "Q4_K_S" and qs.i_attention_wv < 4 and _since(date, "2023-08-22"):
            new = "Q5_K"
        if arch.is_70b and _since(date, "2023-08-26"):
            # 8 heads share attn_v in the 70B model: more bits for a nearly free size increase
            if new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
        qs.i_attention_wv += 1
        return new
    if role == "attn_k":
        if q == "IQ3_XS":
            return "IQ3_XXS"
        if q == "IQ3_XXS":
            return "IQ2_S"
        return new
    if role == "attn_q":
        if q == "IQ3_XS":
            return "IQ3_XXS"
        if q == "IQ3_XXS":
            return "IQ2_S"
        return new
    if role == "ffn_down":
        i, n = qs.i_ffn_down, qs.n_ffn_down
        first_q3km = (n // 16) if _since(date, "2024-01-14") else 2
        first_q4ks = (n // 8) if _since(date, "2024-01-14") else 4
        if q == "Q2_K":
            new = "Q3_K" if _since(date, "2023-08-22") else "Q4_K"
        elif q == "Q2_K_S":
            if i < n // 8:
                new = "Q4_K"
        elif q == "IQ3_XXS" and not qs.has_imatrix:
            new = "Q4_K" if i < n // 8 else "Q3_K"
        elif q == "Q3_K_M":
            if _since(date, "2023-08-22"):
                new = "Q5_K" if i < first_q3km else "Q4_K"  # (Q3_K only for Falcon)
            else:
                new = "Q4_K"
        elif q == "IQ3_M" and i < n // 8:
            new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q == "Q4_K_M":
            if use_more_bits(i, n):
                new = "Q6_K"
        elif i < n // 8 and q in ("IQ4_NL", "IQ4_XS") and not qs.has_imatrix:
            new = "Q5_K"
        elif q == "Q5_K_M" and use_more_bits(i, n):
            new = "Q6_K"
        elif q == "Q4_K_S" and i < first_q4ks and _since(date, "2023-08-22"):
            new = "Q5_K"
        elif q in ("Q4_0", "Q5_0") and qs.has_imatrix and i < n // 8 and _since(date, "2024-01-17"):
            new = "Q4_1" if q == "Q4_0" else "Q5_1"
        qs.i_ffn_down += 1
        return new
    if role == "attn_output":
        if q == "Q2_K":
            new = "Q3_K" if _since(date, "2023-08-22") else "Q4_K"
        elif q == "IQ3_XXS":
            new = "IQ3_S"
        elif q == "Q3_K_M":
            new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q == "IQ3_M":
            new = "Q4_K"
        return new
    if role in ("ffn_gate", "ffn_up"):
        i = qs.i_ffn_gate if role == "ffn_gate" else qs.i_ffn_up
        n = qs.n_ffn_gate if role == "ffn_gate" else qs.n_ffn_up
        if q == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "IQ3_XXS"
        elif q == "Q2_K" and _since(date, "2023-08-22") and not _since(date, "2024-01-14"):
            new = "Q3_K"
        if role == "ffn_gate":
            qs.i_ffn_gate += 1
        else:
            qs.i_ffn_up += 1
        return new
    return new


# today's tensor_type_fallback: rows not a multiple of the target's block size
_FALLBACK_TODAY = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_0": "Q4_0", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
# 2023-10-28 .. 2024-02-20: the first per-type fallback table (bd6d9e205)
_FALLBACK_2023_10 = {"Q2_K": "Q4_0", "Q3_K": "Q4_1", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
# 2024-02-21 (a14679cc3) .. at least 2025-02-20: Q2_K, Q3_K and the i-quants fall back to IQ4_NL
_FALLBACK_2024_02 = {"IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL",
                     "IQ3_S": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL",
                     "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
                     "TQ1_0": "Q4_0", "TQ2_0": "Q4_0"}


def _gguf_fallback(t: Tensor, new: str, date: str) -> str:
    ncols = t.ne[0]
    kquants = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
    if date != "today":
        if _since(date, "2024-02-21"):
            if get_type(new).block_size != QK_K or ncols % QK_K == 0:
                return new
            return _FALLBACK_2024_02[new]
        if new not in kquants:
            return new
        bad = ncols % QK_K != 0 or (not _since(date, "2023-08-26") and t.ne[1] % QK_K != 0)
        if not bad:
            return new
        if _since(date, "2023-10-28"):
            return _FALLBACK_2023_10[new]
        if t.role == "output":
            return "F16"
        if t.role == "token_embd":
            return "Q4_0"
        raise GGSpecError(f"{t.name()} {t.ne}: unsupported tensor size for k-quants (rules of {date})")
    bs = get_type(new).block_size
    if ncols % bs == 0:
        return new
    if new in _FALLBACK_TODAY:
        ret = _FALLBACK_TODAY[new]
    elif bs <= 32:
        ret = new
    else:
        raise GGSpecError(f"no tensor type fallback is defined for type {new}")
    if ncols % get_type(ret).block_size:
        ret = "F16"  # "must use F16 due to unusual shape"
    return ret


def _gguf_mix(arch: LlamaArchitecture, mix: str, date: str, imatrix: "bool | None") -> list[tuple[Tensor, str]]:
    """Tensor types of a GGUF file made by llama-quantize from an F16/F32 conversion (rules at ``date``)."""
    tensors = arch.tensors("gguf")
    if mix in ("F32", "F16", "BF16"):  # the converter's output (convert.py: 1-D tensors stay F32)
        return [(t, mix if t.n_dims == 2 else "F32") for t in tensors]
    if date != "today" and mix not in GGMLV3_MIXES:
        since = MIX_INTRODUCED.get(mix, "today")
        if since == "today" or date < since:
            raise GGSpecError(f"mix {mix} did not exist on {date} (llama.cpp added it on {since}); "
                              f"pass era='gguf' for today's rules")
    base = DEFAULT_TYPE[mix]
    has_imatrix = (mix in IMATRIX_MIXES) if imatrix is None else bool(imatrix)
    qs = _QuantState(
        n_attention_wv=sum(1 for t in tensors if t.role == "attn_v"),
        n_ffn_down=arch.n_layers, n_ffn_gate=arch.n_layers, n_ffn_up=arch.n_layers,
        has_imatrix=has_imatrix, has_output=not arch.tied_embeddings,
    )
    out = []
    for t in tensors:
        # tensor_allows_quantization: 2-D, name ends in "weight", not a norm
        if t.n_dims < 2 or t.role in ("attn_norm", "ffn_norm", "output_norm"):
            out.append((t, "F32"))
            continue
        new = _gguf_impl_type(arch, t, mix, base, qs, date)
        new = _gguf_fallback(t, new, date)
        out.append((t, new))
    return out


def tensor_types(arch: LlamaArchitecture, mix: str, era: str = "gguf", imatrix: "bool | None" = None
                 ) -> list[tuple[Tensor, str]]:
    """[(tensor, ggml type name)] in file order: the quant mix of ``mix`` for ``arch`` in ``era``.

    ``era``: ``"ggmlv3"``, ``"gguf"`` (today's rules) or ``"gguf@YYYY-MM-DD"`` (rules of that day).
    ``imatrix``: whether an importance matrix was used (changes a few GGUF-era choices); None means
    "only where llama-quantize requires one".
    """
    mix = normalize_mix(mix)
    base, date = _rules_date(era)
    if base == "ggmlv3":
        return _ggmlv3_mix(arch, mix)
    return _gguf_mix(arch, mix, date, imatrix)


def mix_breakdown(types: Iterable[tuple[Tensor, str]]) -> dict[str, dict]:
    """{type: {"count", "bytes", "roles": {role: count}}} of a tensor-type list."""
    out: dict[str, dict] = {}
    for t, ty in types:
        e = out.setdefault(ty, {"count": 0, "elements": 0, "bytes": 0, "roles": {}})
        e["count"] += 1
        e["elements"] += t.n_elements
        e["bytes"] += tensor_nbytes(ty, t.ne)
        e["roles"][t.role] = e["roles"].get(t.role, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------------


def _pad(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def ggmlv3_header_bytes(arch: LlamaArchitecture) -> int:
    """Magic, version and the seven uint32 hparams, then the vocabulary (u32 length, text, f32 score)."""
    vocab = arch.vocab
    return 4 + 4 + 7 * 4 + vocab.n_tokens * (4 + 4) + vocab.ggmlv3_text_bytes


def ggmlv3_file_size(arch: LlamaArchitecture, types: Sequence[tuple[Tensor, str]]) -> int:
    """Exact size of a ggjt v3 file (``llama_file_saver``, 097e121e2).

    Per tensor: int32 n_dims, int32 name length, int32 ggml type, int32 ne[n_dims], the name, zero
    padding to the next multiple of 32 bytes *of the file offset*, then the data (no padding after).
    """
    pos = ggmlv3_header_bytes(arch)
    for t, ty in types:
        pos += 4 * 3 + 4 * t.n_dims + len(t.name("ggmlv3").encode())
        pos = _pad(pos, 32)
        pos += tensor_nbytes(ty, t.ne)
    return pos


# GGUF value types (gguf.h enum gguf_type) and their scalar sizes
GGUF_SCALAR_BYTES = {"u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4, "f32": 4, "bool": 1,
                     "u64": 8, "i64": 8, "f64": 8}


@dataclass(frozen=True)
class KV:
    """One GGUF key/value: ``kind`` a scalar type, ``"str"``, ``"arr[<scalar>]"`` or ``"arr[str]"``.

    Arrays of strings are described by their count and total text bytes (``value=(count, text_bytes)``);
    other arrays by their count (``value=count``).
    """

    key: str
    kind: str
    value: object

    def nbytes(self, version: int = 3) -> int:
        n = 4 if version == 1 else 8  # length / count fields: uint32 in GGUF v1, uint64 from v2
        size = n + len(self.key.encode()) + 4  # key string, value type
        if self.kind == "str":
            return size + n + len(str(self.value).encode())
        if self.kind.startswith("arr["):
            elem = self.kind[4:-1]
            size += 4 + n  # element type, count
            if elem == "str":
                count, text = self.value  # type: ignore[misc]
                return size + count * n + text
            return size + int(self.value) * GGUF_SCALAR_BYTES[elem]  # type: ignore[arg-type]
        return size + GGUF_SCALAR_BYTES[self.kind]


def gguf_metadata(arch: LlamaArchitecture, mix: str, name: "str | None" = None) -> list[KV]:
    """The key/values of a Llama GGUF as llama.cpp's ``convert.py`` (Aug-Dec 2023) wrote them, plus
    the two keys ``llama-quantize`` sets (``general.quantization_version``, ``general.file_type``).

    ``general.name``: convert.py used "LLaMA v2" for a 4096 context, else the model folder name.
    """
    mix = normalize_mix(mix)
    v = arch.vocab
    if name is None:
        name = "LLaMA v2" if arch.context_length == 4096 else arch.name
    kvs = [
        KV("general.architecture", "str", "llama"),
        KV("general.name", "str", name),
        KV("llama.context_length", "u32", arch.context_length),
        KV("llama.embedding_length", "u32", arch.dim),
        KV("llama.block_count", "u32", arch.n_layers),
        KV("llama.feed_forward_length", "u32", arch.ffn_dim),
        KV("llama.rope.dimension_count", "u32", arch.n_embd_head),
        KV("llama.attention.head_count", "u32", arch.n_heads),
        KV("llama.attention.head_count_kv", "u32", arch.n_kv_heads),
        KV("llama.attention.layer_norm_rms_epsilon", "f32", arch.norm_eps),
    ]
    if arch.rope_theta is not None:
        kvs.append(KV("llama.rope.freq_base", "f32", arch.rope_theta))
    kvs += [
        KV("general.file_type", "u32", FTYPES[mix]),
        KV("tokenizer.ggml.model", "str", "llama"),
        KV("tokenizer.ggml.tokens", "arr[str]", (v.n_tokens, v.gguf_text_bytes)),
        KV("tokenizer.ggml.scores", "arr[f32]", v.n_tokens),
        KV("tokenizer.ggml.token_type", "arr[i32]", v.n_tokens),
        KV("tokenizer.ggml.bos_token_id", "u32", v.bos_token_id),
        KV("tokenizer.ggml.eos_token_id", "u32", v.eos_token_id),
        KV("tokenizer.ggml.unknown_token_id", "u32", v.unknown_token_id),
    ]
    if mix not in ("F32", "F16", "BF16"):
        kvs.append(KV("general.quantization_version", "u32", 2))
    return kvs


def gguf_file_size(types: Sequence[tuple[Tensor, str]], metadata: Sequence[KV], version: int = 3,
                   alignment: int = 32) -> int:
    """Exact size of a GGUF file: header, KVs, tensor infos, padding, tensor data each padded.

    Header: magic, uint32 version, tensor count and KV count (uint64; uint32 in v1).  Tensor info:
    name string, uint32 n_dims, ne[n_dims] (uint64; uint32 in v1), int32 type, uint64 offset.  The
    data section starts at a multiple of ``alignment``; llama-quantize (and gguf-py) pad every
    tensor's data, the last one included, to ``alignment``.
    """
    n = 4 if version == 1 else 8
    size = 4 + 4 + 2 * n
    size += sum(kv.nbytes(version) for kv in metadata)
    for t, _ in types:
        size += n + len(t.name("gguf").encode()) + 4 + t.n_dims * n + 4 + 8
    size = _pad(size, alignment)
    for t, ty in types:
        size += _pad(tensor_nbytes(ty, t.ne), alignment)
    return size


def gguf_data_offsets(types: Sequence[tuple[Tensor, str]], metadata: Sequence[KV], version: int = 3,
                      alignment: int = 32) -> list[tuple[int, int]]:
    """[(start, end)] absolute file offsets of each tensor's data in a GGUF laid out as ``gguf_file_size``."""
    n = 4 if version == 1 else 8
    pos = 4 + 4 + 2 * n + sum(kv.nbytes(version) for kv in metadata)
    for t, _ in types:
        pos += n + len(t.name("gguf").encode()) + 4 + t.n_dims * n + 4 + 8
    pos = _pad(pos, alignment)
    out = []
    for t, ty in types:
        nb = tensor_nbytes(ty, t.ne)
        out.append((pos, pos + nb))
        pos += _pad(nb, alignment)
    return out


def ggml_file_size(arch: LlamaArchitecture, mix: str, era: str = "gguf", *, imatrix: "bool | None" = None,
                   metadata: "Sequence[KV] | None" = None, gguf_version: int = 3) -> int:
    """Exact bytes of a llama.cpp model file: ``era`` "ggmlv3", "gguf" or "gguf@YYYY-MM-DD".

    For GGUF, ``metadata`` replaces the default key/value set (``gguf_metadata``); ``gguf_version=1``
    gives the August 2023 GGUF v1 layout (32-bit counts).
    """
    types = tensor_types(arch, mix, era, imatrix)
    base, _ = _rules_date(era)
    if base == "ggmlv3":
        return ggmlv3_file_size(arch, types)
    if metadata is None:
        metadata = gguf_metadata(arch, mix)
    return gguf_file_size(types, metadata, version=gguf_version)


# ---------------------------------------------------------------------------------------------------
# GPTQ (AutoGPTQ safetensors)
# ---------------------------------------------------------------------------------------------------


def gptq_tensors(arch: LlamaArchitecture, bits: int, group_size: "int | None", act_order: bool = True,
                 inv_freq: "bool | None" = None) -> list[tuple[str, str, tuple[int, ...]]]:
    """[(name, safetensors dtype, shape)] of an AutoGPTQ checkpoint (``QuantLinear``, qlinear_cuda_old).

    Per linear layer (in_features -> out_features; AutoGPTQ 0.3/0.4 ``make_quant`` passes bias=True):
    ``qweight`` I32 [in // 32 * bits, out], ``qzeros`` I32 [groups, out // 32 * bits], ``scales`` F16
    [groups, out], ``g_idx`` I32 [in] (always, act-order or not), ``bias`` F16 [out];
    groups = ceil(in / group_size), one group when there is no grouping (group_size -1).
    Embeddings, lm_head and the RMS norms stay F16.  ``act_order`` does not change any shape.

    ``inv_freq``: transformers up to 4.31 (Llama 2's release, 2023-07-18, until 4.32 on 2023-08-22,
    PR #24998) registered ``LlamaRotaryEmbedding.inv_freq`` as a *persistent* buffer, so checkpoints
    saved from ``model.state_dict()`` then carry ``model.layers.N.self_attn.rotary_emb.inv_freq``
    (F32, head_dim / 2) per layer.  None: assume it for configs transformers 4.31 could load without
    ``rope_theta`` (LLaMA 1/2) -- see ``default_inv_freq``.
    """
    if inv_freq is None:
        inv_freq = default_inv_freq(arch)
    if bits not in (2, 3, 4, 8):
        raise GGSpecError(f"AutoGPTQ supports 2, 3, 4 and 8 bits, not {bits}")
    out: list[tuple[str, str, tuple[int, ...]]] = [
        (HF_NAMES["token_embd"], "F16", (arch.n_vocab, arch.dim)),
        (HF_NAMES["output_norm"], "F16", (arch.dim,)),
        (HF_NAMES["output"], "F16", (arch.n_vocab, arch.dim)),
    ]
    for i in range(arch.n_layers):
        for t in arch.layer_tensors(i):
            if t.role in ("attn_norm", "ffn_norm"):
                out.append((HF_NAMES[t.role].format(i=i), "F16", (arch.dim,)))
                continue
            in_f, out_f = t.ne  # ggml ne = (in_features, out_features)
            gs = in_f if group_size in (None, -1, 0) else group_size
            groups = math.ceil(in_f / gs)
            if (in_f * bits) % 32 or (out_f * bits) % 32:
                raise GGSpecError(f"{t.role}: {in_f}x{out_f} does not pack into int32 at {bits} bits")
            base = HF_NAMES[t.role].format(i=i)
            out += [
                (f"{base}.qweight", "I32", (in_f // 32 * bits, out_f)),
                (f"{base}.qzeros", "I32", (groups, out_f // 32 * bits)),
                (f"{base}.scales", "F16", (groups, out_f)),
                (f"{base}.g_idx", "I32", (in_f,)),
                (f"{base}.bias", "F16", (out_f,)),
            ]
        if inv_freq:
            out.append((f"model.layers.{i}.self_attn.rotary_emb.inv_freq", "F32", (arch.n_embd_head // 2,)))
    return out


def default_inv_freq(arch: LlamaArchitecture) -> bool:
    """Whether a 2023 GPTQ checkpoint of ``arch`` carries rotary ``inv_freq`` buffers by default.

    True for LLaMA-1/Llama-2 configs (no ``rope_theta``; quantized with transformers 4.31 in July and
    August 2023); False for models that needed a later transformers (Code Llama's rope_theta, Mistral).
    """
    return arch.rope_theta is None


SAFETENSORS_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4,
                           "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
# safetensors' Rust enum Dtype order (v0.3): data is sorted by *descending* dtype, then by name
_SAFETENSORS_DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64",
                            "U64"]


def autogptq_metadata(bits: int, group_size: "int | None", act_order: bool, damp: float = 0.01,
                      version: str = "0.3.2") -> dict[str, str]:
    """The ``__metadata__`` AutoGPTQ 0.3.2-0.4.x ``save_quantized`` wrote into the safetensors header."""
    return {
        "format": "pt",
        "auto_gptq_version": version,
        "gptq_bits": str(bits),
        "gptq_group_size": str(-1 if group_size in (None, -1, 0) else group_size),
        "gptq_desc_act": str(bool(act_order)),
        "gptq_damp_percent": str(damp),
    }


def safetensors_file_size(tensors: Sequence[tuple[str, str, tuple[int, ...]]],
                          metadata: "Mapping[str, str] | None" = None) -> int:
    """Exact bytes of a safetensors file (Rust ``serialize``, v0.3): u64 header length, JSON header
    padded with spaces to a multiple of 8, then the data sorted by descending dtype then by name.

    The JSON is serde_json's compact form: ``{"__metadata__":{...},"name":{"dtype":"I32","shape":
    [a,b],"data_offsets":[s,e]},...}``.  Only the header's *length* matters here, and the offsets'
    digit counts depend on the data order, so the order is reproduced.
    """
    order = sorted(tensors, key=lambda x: (-_SAFETENSORS_DTYPE_ORDER.index(x[1]), x[0].encode()))
    entries = []
    offset = 0
    for name, dtype, shape in order:
        n = math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]
        entries.append(json.dumps(name) + ":" + json.dumps(
            {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}, separators=(",", ":")))
        offset += n
    if metadata is not None:
        entries.insert(0, '"__metadata__":' + json.dumps(dict(metadata), separators=(",", ":")))
    header = "{" + ",".join(entries) + "}"
    h = len(header.encode())
    return 8 + _pad(h, 8) + offset


def gptq_file_size(arch: LlamaArchitecture, bits: int, group_size: "int | None", act_order: bool = True, *,
                   metadata: "Mapping[str, str] | None | bool" = True, inv_freq: "bool | None" = None) -> int:
    """Exact bytes of an AutoGPTQ ``model.safetensors`` (``metadata=True``: AutoGPTQ's own keys;
    ``inv_freq``: see ``gptq_tensors``)."""
    if metadata is True:
        metadata = autogptq_metadata(bits, group_size, act_order)
    elif metadata is False:
        metadata = None
    return safetensors_file_size(gptq_tensors(arch, bits, group_size, act_order, inv_freq), metadata)


# ---------------------------------------------------------------------------------------------------
# RAM
# ---------------------------------------------------------------------------------------------------

# TheBloke's model cards (GGML and GGUF, 2023): "Max RAM required" = file size + 2.50 GB, every row
# (max_ram_gb - size_gb == 2.50 on all rows of the shared tables).  A card convention, not a measurement.
CARD_RAM_OVERHEAD_BYTES = 2_500_000_000


def card_max_ram(file_bytes: int) -> int:
    """The cards' "Max RAM required" rule: the file size plus a flat 2.5 GB (no GPU offloading)."""
    return file_bytes + CARD_RAM_OVERHEAD_BYTES


CACHE_TYPE_BYTES = {"f32": Fraction(4), "f16": Fraction(2), "bf16": Fraction(2), "q8_0": Fraction(34, 32),
                    "q4_0": Fraction(18, 32), "q4_1": Fraction(20, 32), "q5_0": Fraction(22, 32),
                    "q5_1": Fraction(24, 32), "iq4_nl": Fraction(18, 32)}


def kv_cache_bytes(arch: LlamaArchitecture, n_ctx: int, cache_type: str = "f16") -> int:
    """K and V caches: n_ctx x n_layer x 2 x n_head_kv x head_dim x bytes per element of the type.

    llama.cpp allocates the whole cache up front and clears it (``ggml_backend_buffer_clear``), so all
    of it is resident from the start.
    """
    per = CACHE_TYPE_BYTES[cache_type.lower()]
    return int(n_ctx * arch.n_layers * 2 * arch.n_embd_kv * per)


def _pad_to(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def compute_buffer_bytes(arch: LlamaArchitecture, n_kv: int, n_tokens: int, n_outputs: int = 1,
                         weight_types: "Iterable[str]" = ()) -> int:
    """The part of llama.cpp's CPU compute buffer a graph of ``n_tokens`` tokens attending ``n_kv``
    cache cells touches: the largest live set of the graph (ggml-alloc reuses memory between ops),
    plus the CPU backend's work buffer for the quantized activations.

    * attention (no flash attention): KQ [n_kv, n_tokens, n_head] f32 (soft_max runs in place), the
      f32 KQ mask [n_kv, n_tokens], and about eight n_embd-wide f32 activations (residual, norm, Q, K,
      V, roped Q/K, KQV);
    * FFN: gate, up and their SwiGLU product [n_ff, n_tokens] f32 (the fused GLU op does not run in
      place) and three n_embd-wide;
    * output: the logits [n_vocab, n_outputs] f32 and three n_embd-wide.
    Work buffer: the activations converted to the weights' ``vec_dot_type`` for the widest mat-mul
    input (Q8_K: 292/256 bytes per value; Q8_0: 34/32; F16: 2).
    """
    d, nt = arch.dim, n_tokens
    attn = 4 * (n_kv * nt * (arch.n_heads + 1) + 8 * d * nt)
    ffn = 4 * (3 * arch.ffn_dim * nt + 3 * d * nt)
    out = 4 * (arch.n_vocab * n_outputs + 3 * d * nt)
    per_value = Fraction(0)
    for ty in weight_types:
        t = get_type(ty)
        if t.family == "kquant" or ty.startswith(("IQ", "TQ")) and t.block_size == QK_K:
            per_value = max(per_value, Fraction(292, 256))
        elif t.family in ("legacy", "iquant", "fp4", "lowbit"):
            per_value = max(per_value, Fraction(34, 32))
        elif ty in ("F16", "BF16"):
            per_value = max(per_value, Fraction(2))
    work = int(max(arch.ffn_dim, arch.dim) * nt * per_value)
    return max(attn, ffn, out) + work


# CPU "repack" (ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type): on x86 with AVX2 the
# mat-mul weights of these types (rows a multiple of 8; not token_embd, which is read by get_rows) are
# copied into an interleaved layout in an anonymous CPU_REPACK buffer -- in addition to the mmapped file
# pages, which stay resident.  AVX-512 adds Q2_K.  (ARM NEON has its own list; pass ``repack=``.)
REPACK_AVX2 = ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4")
REPACK_AVX512 = REPACK_AVX2 + ("Q2_K",)


def host_repack_types() -> tuple[str, ...]:
    """The repacked types on this machine (x86 flags from /proc/cpuinfo; none elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ()
    if "avx512f" in flags and "avx2" in flags:
        return REPACK_AVX512
    if "avx2" in flags:
        return REPACK_AVX2
    return ()


# The fixed part of the peak RSS: the host process (for the validation harness: CPython with numpy
# and llama_cpp imported, ~42 MB) plus llama.cpp's own state that does not scale with the model
# (backend and thread pool, vocabulary maps for 32000 tokens, tensor and graph metadata, the code
# pages of libggml/libllama).  Measured: peak RSS of the smallest synthetic model (1 layer, dim 256)
# with no evaluation, minus its mapped tensor data and KV cache (docs/sizes.md, "RAM").
FIXED_OVERHEAD_BYTES = 52_000_000


def ram_estimate(arch: LlamaArchitecture, mix: str, era: str = "gguf", n_ctx: int = 4096,
                 cache_type: str = "f16", mmap: bool = True, n_gpu_layers: int = 0, *,
                 n_prompt: "int | None" = None, n_batch: int = 512, n_ubatch: int = 512, n_outputs: int = 1,
                 repack: "Sequence[str] | None" = None, overhead: int = FIXED_OVERHEAD_BYTES) -> dict[str, int]:
    """Peak resident memory (bytes, by component) of llama.cpp running the model on the CPU.

    weights   with mmap the span of the file from the first to the last tensor read from the mapping
              (llama.cpp maps the file with MAP_POPULATE, so every page is resident, then unmaps the
              parts outside that span: the header, repacked or offloaded tensors at the ends); without
              mmap the data of those tensors, copied into anonymous memory.
    repack    the anonymous copies of the weights the CPU backend repacks (``repack``: the types; None =
              this machine's, see ``host_repack_types``).
    kv_cache  ``kv_cache_bytes`` of the layers kept on the CPU.
    compute   ``compute_buffer_bytes`` for the largest ubatch of a prompt of ``n_prompt`` tokens (None:
              ``n_ctx``, the worst case), attending at most ``n_ctx`` cells (padded to 256).
    overhead  ``FIXED_OVERHEAD_BYTES``.
    ``total`` is the sum (the peak RSS); ``reclaimable`` the part of it that is clean file pages.
    The estimate is checked against measured peak RSS in tests/test_sizes.py.
    """
    types = tensor_types(arch, mix, era)
    repack_types = host_repack_types() if repack is None else tuple(repack)
    n_cpu_layers = arch.n_layers - min(max(n_gpu_layers, 0), arch.n_layers)
    offload_output = n_gpu_layers > arch.n_layers

    def on_cpu(t: Tensor) -> bool:
        if t.layer is not None:
            return t.layer < n_cpu_layers
        return not (offload_output and t.role in ("output", "output_norm"))

    def is_repacked(t: Tensor, ty: str) -> bool:
        return on_cpu(t) and ty in repack_types and t.n_dims == 2 and t.role != "token_embd" and t.ne[1] % 8 == 0

    repacked = sum(tensor_nbytes(ty, t.ne) for t, ty in types if is_repacked(t, ty))
    mapped = [(t, ty) for t, ty in types if on_cpu(t) and not is_repacked(t, ty)]
    if mmap and _rules_date(era)[0] == "gguf":
        # llama.cpp maps the file with MAP_POPULATE, then unmaps what lies outside the span of the
        # tensors it reads from the mapping (the header; repacked or offloaded tensors at the ends)
        offsets = gguf_data_offsets(types, gguf_metadata(arch, mix))
        spans = [off for (t, ty), off in zip(types, offsets) if (t, ty) in set(mapped)]
        weights = (max(e for _, e in spans) - min(b for b, _ in spans)) if spans else 0
    else:
        weights = sum(tensor_nbytes(ty, t.ne) for t, ty in mapped)
    kv = kv_cache_bytes(arch, n_ctx, cache_type) * n_cpu_layers // arch.n_layers
    n_prompt = n_ctx if n_prompt is None else min(n_prompt, n_ctx)
    if n_prompt > 0:
        nt = min(n_ubatch, n_batch, n_prompt)
        n_kv = min(n_ctx, _pad_to(n_prompt, 256))
        compute = compute_buffer_bytes(arch, n_kv, nt, min(n_outputs, nt), {ty for _, ty in types})
    else:
        compute = 0
    out = {"weights": weights, "repack": repacked, "kv_cache": kv, "compute": compute, "overhead": overhead}
    out["total"] = sum(out.values())
    # mmapped file pages are clean page cache: the kernel can drop them under memory pressure (and read
    # them again), so the memory a run *needs* is the total minus this
    out["reclaimable"] = weights if mmap else 0
    return out


# ---------------------------------------------------------------------------------------------------
# Published tables (pipe-separated, '#' comment header)
# ---------------------------------------------------------------------------------------------------


@dataclass
class Table:
    path: Path
    comments: list[str]
    columns: list[str]
    rows: list[dict[str, str]]

    @property
    def header_text(self) -> str:
        return "\n".join(self.comments)


def read_table(path: "str | Path") -> Table:
    """A published table: ``#`` comment lines, then a ``|``-separated header and rows."""
    path = Path(path)
    comments, lines = [], []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            comments.append(line[1:].strip())
        elif line.strip():
            lines.append(line)
    if not lines:
        raise GGSpecError(f"{path}: no table rows")
    columns = [c.strip() for c in lines[0].split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > len(columns):  # a '|' inside the last (free text) column
            cells = cells[:len(columns) - 1] + ["|".join(cells[len(columns) - 1:])]
        rows.append(dict(zip(columns, cells)))
    return Table(path, comments, columns, rows)


_MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august",
                                       "september", "october", "november", "december"], 1)}


def table_architecture(table: Table) -> LlamaArchitecture:
    """The architecture a table's header describes ("Architecture: dim 8192, 80 layers, ...") or names."""
    text = table.header_text
    m = re.search(r"architecture:\s*(.*)", text, re.IGNORECASE)
    if m:
        spec = m.group(1)
        nums = {}
        for key, pat in (("dim", r"dim(?:ension)?\s*(\d+)"), ("n_layers", r"(\d+)\s*layers"),
                         ("n_heads", r"(\d+)\s*heads"), ("n_kv_heads", r"(\d+)\s*kv\s*heads"),
                         ("ffn_dim", r"ffn(?:_dim)?\s*(\d+)"), ("n_vocab", r"vocab(?:ulary)?\s*(\d+)")):
            mm = re.search(pat, spec, re.IGNORECASE)
            if mm:
                nums[key] = int(mm.group(1))
        # "64 heads" must not pick up "8 KV heads"
        mm = re.search(r"(\d+)\s*heads", re.sub(r"\d+\s*kv\s*heads", "", spec, flags=re.IGNORECASE), re.IGNORECASE)
        if mm:
            nums["n_heads"] = int(mm.group(1))
        if {"dim", "n_layers", "n_heads", "ffn_dim"} <= set(nums):
            nums.setdefault("n_kv_heads", nums["n_heads"])
            nums.setdefault("n_vocab", 32000)
            preset = _preset_for(nums, text + " " + table.path.name)
            if preset is not None:
                return preset
            return llama_architecture(**nums, name="table")
        name = spec.strip().split()[0].rstrip(".,") if spec.strip() else ""
        if name.lower() in ARCHITECTURES:
            return ARCHITECTURES[name.lower()]
    # fall back on a preset name in the header or file name
    hay = (text + " " + table.path.name).lower().replace("_", "-").replace(" ", "-")
    for key in sorted(ARCHITECTURES, key=len, reverse=True):
        if key in hay:
            return ARCHITECTURES[key]
    raise GGSpecError(f"{table.path}: cannot tell the architecture; add 'Architecture: dim D, L layers, ...' "
                      f"to the header or pass --arch")


def _preset_for(nums: Mapping[str, int], hay: str = "") -> "LlamaArchitecture | None":
    """The preset with these shape numbers; among equal shapes (llama-7b / llama-2-7b) the one named in
    ``hay`` (header text and file name), else the first."""
    same = [a for a in ARCHITECTURES.values()
            if (a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.ffn_dim, a.n_vocab) == (
                nums["dim"], nums["n_layers"], nums["n_heads"], nums["n_kv_heads"], nums["ffn_dim"], nums["n_vocab"])]
    hay = hay.lower().replace("_", "-").replace(" ", "-")
    for a in sorted(same, key=lambda a: -len(a.name)):
        if a.name in hay:
            return a
    return same[0] if same else None


def table_kind(table: Table) -> str:
    """'gptq', 'ggmlv3' or 'gguf@<date>' from the columns and header words."""
    text = table.header_text.lower()
    if "group_size" in table.columns or "gptq" in text.split("architecture")[0]:
        if "bits" in table.columns and "group_size" in table.columns:
            return "gptq"
    names = " ".join(r.get("name", "") for r in table.rows).lower()
    if "ggmlv3" in text or "ggml" in text.split("\n")[0] and "gguf" not in text or ".bin" in names:
        return "ggmlv3"
    if "gguf" in text or ".gguf" in names:
        date = _published(text)
        if date and len(date) == 4:
            date += "-12"  # a year only: the rules at its end
        return f"gguf@{date}" if date and date >= "2023-08" else "gguf"
    raise GGSpecError(f"{table.path}: cannot tell whether the table is GGML, GGUF or GPTQ")


def _published(text: str) -> "str | None":
    """'published September 2023' -> '2023-09' (the rules at the end of that month); 'published 2023'
    -> '2023-12'; None when the header gives no date."""
    m = re.search(r"published\s+(?:in\s+)?(?:([a-z]+)\s+)?(\d{4})", text, re.IGNORECASE)
    if not m:
        return None
    if (m.group(1) or "").lower() not in _MONTHS:
        return f"{int(m.group(2)):04d}"  # a year only
    return f"{int(m.group(2)):04d}-{_MONTHS[m.group(1).lower()]:02d}"


def _yes(s: str) -> bool:
    return s.strip().lower() in ("yes", "true", "y", "1")


def evaluate_table(table: Table, arch: "LlamaArchitecture | None" = None, era: "str | None" = None
                   ) -> list[dict]:
    """Predict every row: [{label, mix/bits..., predicted_bytes, predicted_gb, published_gb, ok, ...}]."""
    arch = arch or table_architecture(table)
    kind = era or table_kind(table)
    results = []
    for row in table.rows:
        r: dict = {"label": row.get("name") or row.get("branch") or "?"}
        if kind == "gptq":
            bits = int(row["bits"])
            gs_text = row.get("group_size", "None").strip()
            gs = None if gs_text.lower() in ("none", "-1", "", "0") else int(gs_text)
            act = _yes(row.get("act_order", "no"))
            # transformers dropped the persistent inv_freq buffers on 2023-08-22 (v4.32)
            published = _published(table.header_text)
            inv = default_inv_freq(arch) and (published is None or len(published) == 4 or published <= "2023-08")
            n = gptq_file_size(arch, bits, gs, act, inv_freq=inv)
            r.update(kind="gptq", bits=bits, group_size=gs, act_order=act, predicted_bytes=n,
                     breakdown=_gptq_breakdown(arch, bits, gs, act))
        else:
            try:
                mix = normalize_mix(row.get("quant_method") or row.get("mix") or row["name"].rsplit(".", 2)[-2])
                types = tensor_types(arch, mix, kind)
                n = ggml_file_size(arch, mix, kind)
            except (GGSpecError, KeyError, IndexError) as e:  # a row we cannot predict is a failing row
                r.update(kind=kind, mix=row.get("quant_method", "?"), predicted_bytes=0, predicted_gb="",
                         published_gb=row.get("size_gb", ""), ok=False, error=str(e), breakdown={})
                results.append(r)
                continue
            r.update(kind=kind, mix=mix, predicted_bytes=n, breakdown=mix_breakdown(types))
            if row.get("max_ram_gb"):
                r["published_ram_gb"] = row["max_ram_gb"]
                r["predicted_ram_gb"] = round_gb(card_max_ram(n))
        r["predicted_gb"] = round_gb(n)
        r["published_gb"] = row.get("size_gb", "")
        r["ok"] = _same_gb(r["predicted_gb"], r["published_gb"])
        if "published_ram_gb" in r:
            r["ram_ok"] = _same_gb(r["predicted_ram_gb"], r["published_ram_gb"])
        results.append(r)
    return results


def _same_gb(a: str, b: str) -> bool:
    try:
        return Fraction(a) == Fraction(b)
    except (ValueError, ZeroDivisionError):
        return False


def _gptq_breakdown(arch: LlamaArchitecture, bits: int, gs: "int | None", act: bool) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, dtype, shape in gptq_tensors(arch, bits, gs, act):
        kind = name.rsplit(".", 1)[-1] if ".layers." in name and "layernorm" not in name else name.split(".")[-2]
        key = f"{kind} ({dtype})"
        e = out.setdefault(key, {"count": 0, "bytes": 0})
        e["count"] += 1
        e["bytes"] += math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]
    return out


__all__ = [
    "bits_per_weight", "tensor_nbytes", "round_gb", "TokenizerStats", "LLAMA_SPM", "Tensor", "LlamaArchitecture",
    "llama_architecture", "ARCHITECTURES", "get_architecture", "from_hf_config", "from_gguf", "FTYPES",
    "GGMLV3_MIXES", "GGUF_MIXES", "GGUF_RULE_CHANGES", "normalize_mix", "use_more_bits", "tensor_types",
    "mix_breakdown", "ggml_file_size", "ggmlv3_file_size", "gguf_file_size", "gguf_metadata", "KV",
    "gptq_tensors", "gptq_file_size", "safetensors_file_size", "autogptq_metadata", "card_max_ram",
    "kv_cache_bytes", "ram_estimate", "read_table", "evaluate_table", "table_architecture", "table_kind",
]
