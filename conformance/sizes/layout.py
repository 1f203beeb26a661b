"""File byte layouts: ggmlv3 (ggjt v3), GGUF, AutoGPTQ safetensors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ...errors import GGSpecError
from .archs import HF_NAMES, LlamaArchitecture, Tensor
from .common import tensor_nbytes
from .mixes import FTYPES, _rules_date, normalize_mix, published_mix, tensor_types

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
        if self.kind == "raw":  # a group of key/values known only by their total bytes (v3)
            return int(self.value)  # type: ignore[arg-type]
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
    ]
    if v.gguf_kv_bytes is not None:  # a vocabulary llama.cpp ships (Llama 3, DeepSeek, Qwen2 ...): its bytes
        kvs.append(KV(f"tokenizer.* ({v.name})", "raw", v.gguf_kv_bytes))
    else:
        kvs += [
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
                   metadata: "Sequence[KV] | None" = None, gguf_version: int = 3, overrides=None) -> int:
    """Exact bytes of a llama.cpp model file: ``era`` "ggmlv3", "gguf" or "gguf@YYYY-MM-DD".

    For GGUF, ``metadata`` replaces the default key/value set (``gguf_metadata``); ``gguf_version=1``
    gives the August 2023 GGUF v1 layout (32-bit counts).
    """
    types = tensor_types(arch, mix, era, imatrix, overrides)
    base, _ = _rules_date(era)
    if base == "ggmlv3":
        return ggmlv3_file_size(arch, types)
    if metadata is None:
        metadata = gguf_metadata(arch, published_mix(mix)[0])
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




def gguf_header_bytes(tensors: "Sequence[tuple]", kv_bytes: int, alignment: int = 32) -> int:
    """Bytes before the tensor data of a GGUF v3 file: magic, version, counts, ``kv_bytes`` of key/values,
    one tensor info per [(name, ne, ...)], padded to ``alignment``."""
    size = 4 + 4 + 8 + 8 + kv_bytes
    for t in tensors:
        size += 8 + len(t[0].encode()) + 4 + 8 * len(t[1]) + 4 + 8
    return _pad(size, alignment)
