"""Tiny synthetic Llama GGUFs (random weights from a seed) that llama.cpp loads, and a reader.

    spec = TinySpec(n_head=4, n_head_kv=1, rope="yarn", wtype="Q8_0", seed=3)
    path = write_tiny_llama(spec, "/tmp/m.gguf")          # via gguf-py (GGUFWriter)
    md, tensors = read_gguf(path)                          # via gguf-py (GGUFReader): raw bytes
    model = LlamaModel.from_gguf(path)                     # ggspec.reference.llama

Vocabulary: a SentencePiece ("llama") vocabulary of <unk>, <s>, </s>, the 256 byte tokens
<0x00>..<0xFF> and a few word pieces -- the smallest llama.cpp's SPM loader takes without warnings
about a missing newline token. Weights: normal(0, 1/sqrt(fan_in)) per matrix, norms around 1.

RoPE configurations written into the metadata (llama.rope.*):
    none      no scaling keys                           linear   scaling.type=linear, factor
    yarn      type=yarn, factor, original_context_length  llama3   rope_freqs.weight tensor
    longrope  type=longrope, rope_factors_long/short tensors, scaling.attn_factor
    ntk       a larger rope.freq_base = base*alpha^(d/(d-2)) (static NTK-aware)
gguf-py is used here (conformance code), never in ggspec.reference.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Optional

import numpy as np

from ..reference import rope as R

f32 = np.float32

ROPE_CONFIGS = ("none", "linear", "ntk", "yarn", "llama3", "longrope")
HEAD_LAYOUTS = {"MHA": None, "GQA": 2, "MQA": 1}      # n_head_kv (None = n_head)


@dataclass(frozen=True)
class TinySpec:
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: Optional[int] = None
    n_layer: int = 2
    n_ff: int = 512
    n_ctx_train: int = 4096
    rope: str = "none"
    rope_factor: float = 4.0
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5
    wtype: str = "F32"            # type of the 2-D weight matrices (norms stay F32)
    seed: int = 0
    n_extra_tokens: int = 61
    rope_orig_ctx: int = 0        # rope.scaling.original_context_length for yarn/longrope (0: n_ctx_train)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_head_kv is None else self.n_head_kv

    @property
    def n_vocab(self) -> int:
        return 3 + 256 + self.n_extra_tokens

    def name(self) -> str:
        return f"tiny-h{self.n_head}kv{self.kv_heads}-{self.rope}-{self.wtype}-s{self.seed}"


def vocabulary(n_extra: int):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    words = ["\u2581" + "".join(chr(ord("a") + (i * 7 + j) % 26) for j in range(1 + i % 4)) for i in range(n_extra)]
    seen = set()
    for w in words:
        while w in seen:
            w += "x"
        seen.add(w)
        tokens.append(w)
        types.append(1)
    scores = [0.0] * len(tokens)
    for i in range(259, len(tokens)):
        scores[i] = -float(i)
    return tokens, scores, types


def _quantize(wtype: str, x: np.ndarray) -> np.ndarray:
    """Raw rows of ``wtype`` as uint8 (rows, row_bytes): ggml's quantizer when the oracle is present
    (fast; the reference quantizers are byte-exact to it), else the reference quantizer."""
    if wtype == "F32":
        return x.astype(f32)
    if wtype == "F16":
        return x.astype(np.float16)
    from . import libggml
    try:
        raw = libggml.load().quantize(wtype, x.astype(f32))
    except Exception:
        from .. import reference
        raw = reference.quantize(wtype, x.astype(f32))
    return np.frombuffer(raw, dtype=np.uint8).reshape(x.shape[0], -1)


def tiny_weights(spec: TinySpec) -> "dict[str, np.ndarray]":
    """float32 weights by GGUF name, numpy shape (rows=out, cols=in)."""
    rng = np.random.default_rng(spec.seed)
    E, F, V = spec.n_embd, spec.n_ff, spec.n_vocab
    hd, nkv = spec.head_dim, spec.kv_heads

    def mat(o, i, gain=1.0):
        return (rng.standard_normal((o, i)) * gain / math.sqrt(i)).astype(f32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(f32)

    w = {"token_embd.weight": (rng.standard_normal((V, E))).astype(f32),
         "output_norm.weight": norm(E), "output.weight": mat(V, E, 2.0)}
    for il in range(spec.n_layer):
        b = f"blk.{il}."
        w[b + "attn_norm.weight"] = norm(E)
        w[b + "attn_q.weight"] = mat(E, E, 2.0)
        w[b + "attn_k.weight"] = mat(nkv * hd, E, 2.0)
        w[b + "attn_v.weight"] = mat(nkv * hd, E)
        w[b + "attn_output.weight"] = mat(E, E)
        w[b + "ffn_norm.weight"] = norm(E)
        w[b + "ffn_gate.weight"] = mat(F, E)
        w[b + "ffn_up.weight"] = mat(F, E)
        w[b + "ffn_down.weight"] = mat(E, F)
    n_rot = hd
    if spec.rope == "llama3":
        w["rope_freqs.weight"] = R.llama3_rope_freqs(n_rot, spec.rope_freq_base, spec.rope_factor, 1.0, 4.0,
                                                     spec.n_ctx_train)
    if spec.rope == "longrope":
        w["rope_factors_long.weight"] = (1.0 + rng.random(n_rot // 2) * (spec.rope_factor * 4 - 1)).astype(f32)
        w["rope_factors_short.weight"] = (1.0 + rng.random(n_rot // 2) * 0.5).astype(f32)
    return w


def rope_freq_base(spec: TinySpec) -> float:
    if spec.rope == "ntk":
        return float(R.ntk_alpha_base(spec.rope_freq_base, spec.rope_factor, spec.head_dim))
    return spec.rope_freq_base


def write_tiny_llama(spec: TinySpec, path) -> Path:
    """Write the model; returns the path."""
    import gguf

    path = Path(path)
    w = tiny_weights(spec)
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_name(spec.name())
    wr.add_context_length(spec.n_ctx_train)
    wr.add_embedding_length(spec.n_embd)
    wr.add_block_count(spec.n_layer)
    wr.add_feed_forward_length(spec.n_ff)
    wr.add_head_count(spec.n_head)
    wr.add_head_count_kv(spec.kv_heads)
    wr.add_layer_norm_rms_eps(spec.rms_eps)
    wr.add_rope_dimension_count(spec.head_dim)
    wr.add_rope_freq_base(rope_freq_base(spec))
    wr.add_vocab_size(spec.n_vocab)
    if spec.rope == "none":
        wr.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    elif spec.rope == "linear":
        wr.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        wr.add_rope_scaling_factor(spec.rope_factor)
    elif spec.rope == "yarn":
        wr.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        wr.add_rope_scaling_factor(spec.rope_factor)
        wr.add_rope_scaling_orig_ctx_len(spec.n_ctx_train)
    elif spec.rope == "longrope":
        wr.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        wr.add_rope_scaling_orig_ctx_len(spec.rope_orig_ctx or spec.n_ctx_train)
        af = math.sqrt(1 + math.log(spec.rope_factor) / math.log(spec.n_ctx_train))
        wr.add_rope_scaling_attn_factors(af)
    tokens, scores, types = vocabulary(spec.n_extra_tokens)
    wr.add_tokenizer_model("llama")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(tokens)
    wr.add_token_scores(scores)
    wr.add_token_types(types)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_add_bos_token(False)
    qtype = getattr(gguf.GGMLQuantizationType, spec.wtype)
    for name, arr in w.items():
        if arr.ndim == 2 and spec.wtype != "F32":
            data = _quantize(spec.wtype, arr)
            if spec.wtype in ("F16",):
                wr.add_tensor(name, data)
            else:
                wr.add_tensor(name, data, raw_dtype=qtype)
        else:
            wr.add_tensor(name, arr.astype(f32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def read_gguf(path) -> "tuple[dict, dict]":
    """(metadata {key: python value}, tensors {name: (type_name, ne, raw bytes)}) via gguf-py."""
    import gguf

    r = gguf.GGUFReader(str(path))
    md = {}
    for k, fld in r.fields.items():
        if k.startswith("GGUF."):
            continue
        try:
            md[k] = fld.contents()
        except Exception:  # pragma: no cover
            continue
    tensors = {}
    for t in r.tensors:
        ne = tuple(int(v) for v in t.shape)
        tensors[t.name] = (t.tensor_type.name, ne, np.asarray(t.data).tobytes())
    return md, tensors


# ------------------------------------------------------------------------------------------------
# llama.cpp (the oracle) on the same file
# ------------------------------------------------------------------------------------------------

def llama_cpp_logits(path, tokens, *, n_ctx: int = 256, kv_f32: bool = True, decode_steps: int = 0,
                     **ctx_kw) -> np.ndarray:
    """Logits (n_tokens + decode_steps, n_vocab) from llama-cpp-python 0.3.36 for ``tokens`` evaluated
    as one batch, then ``decode_steps`` greedy single-token steps (each step feeds the argmax).

    ``kv_f32``: type_k = type_v = GGML_TYPE_F32 (else llama.cpp's default F16 cache).
    """
    import llama_cpp

    kw = dict(n_ctx=n_ctx, n_batch=max(32, len(tokens)), n_ubatch=max(32, len(tokens)), logits_all=True,
              n_threads=1, n_threads_batch=1, verbose=False, flash_attn=False, seed=0)
    if kv_f32:
        kw.update(type_k=0, type_v=0)
    kw.update(ctx_kw)
    llm = llama_cpp.Llama(model_path=str(path), **kw)
    try:
        llm.reset()
        llm.eval(list(int(t) for t in tokens))
        n = len(tokens)
        for _ in range(decode_steps):
            nxt = int(np.argmax(llm.scores[n - 1]))
            llm.eval([nxt])
            n += 1
        return np.array(llm.scores[:n], dtype=f32)
    finally:
        llm.close() if hasattr(llm, "close") else None


def spec_matrix(wtypes=("F32", "F16"), ropes=ROPE_CONFIGS, layouts=HEAD_LAYOUTS):
    """All TinySpecs for the given weight types x RoPE configurations x head layouts."""
    out = []
    for wt in wtypes:
        for rp in ropes:
            for lname, nkv in layouts.items():
                out.append((lname, TinySpec(n_head_kv=nkv, rope=rp, wtype=wt, seed=len(out))))
    return out


# ------------------------------------------------------------------------------------------------
# More architectures: qwen2 (Q/K/V biases, GPT-2 byte-level BPE vocabulary), llama with tied
# embeddings (no output.weight: llama.cpp reuses token_embd), and Mixtral-style MoE (arch "llama"
# with llama.expert_count: ffn_gate_inp and 3-D ffn_{gate,up,down}_exps).
#
#     write_tiny_qwen2(TinySpec(n_head_kv=2, wtype="Q8_0"), "/tmp/q.gguf")
#     write_tiny_tied_llama(TinySpec(wtype="Q6_K"), "/tmp/t.gguf")
#     write_tiny_moe(TinySpec(n_head_kv=2, wtype="Q4_K"), "/tmp/m.gguf", n_expert=4, n_expert_used=2)
#     quantize_with_llama_cpp("/tmp/m-f32.gguf", "/tmp/m-q4km.gguf", "Q4_K_M")   # llama.cpp's own mix
#
# Vocabularies: qwen2 a GPT-2 byte-level BPE (bpe_vocabulary), the llama ones a SentencePiece vocabulary
# whose every piece is made of two smaller pieces, as trained ones are (spm_vocabulary).
#
# Each writer takes ``imatrix=True`` to quantize with an importance matrix (needed for IQ2_XXS,
# IQ2_XS, IQ1_S, IQ1_M): per column, the mean square of random activations (seeded).
# The RoPE keys follow TinySpec.rope as for write_tiny_llama (qwen2.* keys for qwen2).
# ------------------------------------------------------------------------------------------------

def gpt2_byte_unicode() -> "dict[int, str]":
    """GPT-2's byte -> printable character map (byte-level BPE vocabularies are written in it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BPE_WORDS = ("the", "and", "ing", "hello", "world", "token", "model", "quick", "brown", "fox", "jumps",
             "over", "lazy", "dog", "is", "of", "to", "in", "on", "at", "it", "be", "we", "you")
BPE_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def bpe_vocabulary(words=BPE_WORDS):
    """(tokens, types, merges) of a small GPT-2 byte-level BPE vocabulary: the 256 byte tokens, the
    tokens made by merging each word (with and without its leading space "Ġ") left to right, then
    the special tokens (type 3, control). Every merge's result is a token."""
    byte = gpt2_byte_unicode()
    tokens = [byte[b] for b in range(256)]
    merges, seen = [], set(tokens)
    for w in words:
        for prefix in ("\u0120", ""):
            enc = [byte[b] for b in (" " + w if prefix else w).encode()]
            cur = enc[0]
            for c in enc[1:]:
                m = f"{cur} {c}"
                cur = cur + c
                if cur not in seen:
                    seen.add(cur)
                    tokens.append(cur)
                    merges.append(m)
    types = [1] * len(tokens)
    for s in BPE_SPECIALS:
        tokens.append(s)
        types.append(3)
    return tokens, types, merges


SPM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.:;?!'-"


def spm_vocabulary(words=BPE_WORDS):
    """(tokens, scores, types) of a small SentencePiece vocabulary shaped like a real one: <unk>, <s>,
    </s>, the 256 byte tokens, "\u2581" and single characters, then each word's pieces "\u2581w",
    "\u2581wo", ... (and without the leading "\u2581"), so that every piece is two smaller pieces
    (as in trained vocabularies). Scores: -(position) for the pieces, lower for single characters."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    seen = set(tokens)
    for i, c in enumerate("\u2581" + SPM_CHARS):
        tokens.append(c)
        types.append(1)
        scores.append(-1000.0 - i)
        seen.add(c)
    k = 0
    for w in words:
        for prefix in ("\u2581", ""):
            s = prefix + w
            for j in range(2, len(s) + 1):
                piece = s[:j]
                if piece not in seen:
                    seen.add(piece)
                    tokens.append(piece)
                    types.append(1)
                    scores.append(-10.0 - k)
                    k += 1
    return tokens, scores, types


def _imatrix_for(n_per_row: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(10_000 + seed + n_per_row)
    a = rng.standard_normal((64, n_per_row)).astype(f32) * (0.5 + rng.random(n_per_row)).astype(f32)
    return np.mean(a * a, axis=0).astype(f32)


def _quantize_rows(wtype: str, x: np.ndarray, imatrix: bool, seed: int) -> np.ndarray:
    """Raw rows of a 2-D or 3-D float32 array (3-D: experts stacked, each row quantized alike)."""
    if wtype in ("F32", "F16") or not imatrix:
        if x.ndim == 3:
            q = _quantize(wtype, x.reshape(-1, x.shape[-1]))
            return q.reshape(x.shape[0], x.shape[1], -1)
        return _quantize(wtype, x)
    from . import libggml
    x2 = x.reshape(-1, x.shape[-1]).astype(f32)
    raw = libggml.load().quantize(wtype, x2, _imatrix_for(x.shape[-1], seed))
    q = np.frombuffer(raw, dtype=np.uint8).reshape(x2.shape[0], -1)
    return q.reshape(*x.shape[:-1], -1)


def tiny_weights_arch(spec: TinySpec, arch: str, n_vocab: int, *, n_expert: int = 0) -> "dict[str, np.ndarray]":
    """float32 weights by GGUF name (numpy shape) for ``arch`` in "llama-tied", "qwen2", "moe".

    qwen2 adds attn_{q,k,v}.bias; llama-tied has no output.weight; moe replaces ffn_{gate,up,down}
    by ffn_gate_inp (n_expert, n_embd) and ffn_{gate,up}_exps (n_expert, n_ff, n_embd),
    ffn_down_exps (n_expert, n_embd, n_ff)."""
    if arch not in ("llama-tied", "qwen2", "moe"):
        raise ValueError(f"unknown tiny architecture {arch!r}")
    rng = np.random.default_rng(spec.seed + {"llama-tied": 101, "qwen2": 202, "moe": 303}[arch])
    E, F, V = spec.n_embd, spec.n_ff, n_vocab
    hd, nkv = spec.head_dim, spec.kv_heads

    def mat(*shape, gain=1.0):
        return (rng.standard_normal(shape) * gain / math.sqrt(shape[-1])).astype(f32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(f32)

    w = {"token_embd.weight": rng.standard_normal((V, E)).astype(f32), "output_norm.weight": norm(E)}
    if arch != "llama-tied":
        w["output.weight"] = mat(V, E, gain=2.0)
    for il in range(spec.n_layer):
        b = f"blk.{il}."
        w[b + "attn_norm.weight"] = norm(E)
        w[b + "attn_q.weight"] = mat(E, E, gain=2.0)
        w[b + "attn_k.weight"] = mat(nkv * hd, E, gain=2.0)
        w[b + "attn_v.weight"] = mat(nkv * hd, E)
        if arch == "qwen2":
            w[b + "attn_q.bias"] = (0.5 * rng.standard_normal(E)).astype(f32)
            w[b + "attn_k.bias"] = (0.5 * rng.standard_normal(nkv * hd)).astype(f32)
            w[b + "attn_v.bias"] = (0.1 * rng.standard_normal(nkv * hd)).astype(f32)
        w[b + "attn_output.weight"] = mat(E, E)
        w[b + "ffn_norm.weight"] = norm(E)
        if arch == "moe":
            w[b + "ffn_gate_inp.weight"] = mat(n_expert, E, gain=4.0)
            w[b + "ffn_gate_exps.weight"] = mat(n_expert, F, E)
            w[b + "ffn_up_exps.weight"] = mat(n_expert, F, E)
            w[b + "ffn_down_exps.weight"] = mat(n_expert, E, F)
        else:
            w[b + "ffn_gate.weight"] = mat(F, E)
            w[b + "ffn_up.weight"] = mat(F, E)
            w[b + "ffn_down.weight"] = mat(E, F)
    return w


def _add_rope_keys(wr, spec: TinySpec) -> None:
    import gguf
    if spec.rope == "none":
        wr.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    elif spec.rope == "linear":
        wr.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        wr.add_rope_scaling_factor(spec.rope_factor)
    elif spec.rope == "yarn":
        wr.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        wr.add_rope_scaling_factor(spec.rope_factor)
        wr.add_rope_scaling_orig_ctx_len(spec.n_ctx_train)
    elif spec.rope != "ntk":
        raise ValueError(f"rope {spec.rope!r} is not written by the tiny qwen2/tied/moe writers "
                         "(none, linear, ntk, yarn are)")


def _write_arch(spec: TinySpec, path, arch: str, *, n_expert: int = 0, n_expert_used: int = 0,
                imatrix: bool = False) -> Path:
    import gguf

    path = Path(path)
    gguf_arch = "qwen2" if arch == "qwen2" else "llama"
    if arch == "qwen2":
        tokens, types, merges = bpe_vocabulary()
        scores = None
    else:
        tokens, scores, types = spm_vocabulary()
        merges = None
    w = tiny_weights_arch(spec, arch, len(tokens), n_expert=n_expert)
    wr = gguf.GGUFWriter(str(path), gguf_arch)
    wr.add_name(f"{spec.name()}-{arch}")
    wr.add_context_length(spec.n_ctx_train)
    wr.add_embedding_length(spec.n_embd)
    wr.add_block_count(spec.n_layer)
    wr.add_feed_forward_length(spec.n_ff)
    wr.add_head_count(spec.n_head)
    wr.add_head_count_kv(spec.kv_heads)
    wr.add_layer_norm_rms_eps(spec.rms_eps)
    wr.add_rope_dimension_count(spec.head_dim)
    wr.add_rope_freq_base(rope_freq_base(spec))
    wr.add_vocab_size(len(tokens))
    if arch == "moe":
        wr.add_expert_count(n_expert)
        wr.add_expert_used_count(n_expert_used)
    _add_rope_keys(wr, spec)
    if arch == "qwen2":
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("qwen2")
        wr.add_token_list(tokens)
        wr.add_token_types(types)
        wr.add_token_merges(merges)
        eot = tokens.index("<|endoftext|>")
        wr.add_bos_token_id(eot)
        wr.add_eos_token_id(tokens.index("<|im_end|>"))
        wr.add_pad_token_id(eot)
        wr.add_add_bos_token(False)
    else:
        wr.add_tokenizer_model("llama")
        wr.add_tokenizer_pre("default")
        wr.add_token_list(tokens)
        wr.add_token_scores(scores)
        wr.add_token_types(types)
        wr.add_bos_token_id(1)
        wr.add_eos_token_id(2)
        wr.add_unk_token_id(0)
        wr.add_add_bos_token(True)
    qtype = getattr(gguf.GGMLQuantizationType, spec.wtype)
    for i, (name, arr) in enumerate(w.items()):
        if arr.ndim >= 2 and spec.wtype != "F32" and not name.endswith("ffn_gate_inp.weight"):
            data = _quantize_rows(spec.wtype, arr, imatrix, spec.seed + i)
            if spec.wtype == "F16":
                wr.add_tensor(name, data)
            else:
                wr.add_tensor(name, data, raw_dtype=qtype)
        else:
            wr.add_tensor(name, arr.astype(f32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def write_tiny_qwen2(spec: TinySpec, path, *, imatrix: bool = False) -> Path:
    """A tiny qwen2 GGUF: Q/K/V biases, NEOX RoPE (llama.cpp's qwen2), a GPT-2 BPE vocabulary
    (tokenizer.ggml.model "gpt2", pre "qwen2"; see bpe_vocabulary)."""
    return _write_arch(spec, path, "qwen2", imatrix=imatrix)


def write_tiny_tied_llama(spec: TinySpec, path, *, imatrix: bool = False) -> Path:
    """A tiny llama GGUF without output.weight (the output projection is token_embd, tied)."""
    return _write_arch(spec, path, "llama-tied", imatrix=imatrix)


def write_tiny_moe(spec: TinySpec, path, *, n_expert: int = 4, n_expert_used: int = 2,
                   imatrix: bool = False) -> Path:
    """A tiny Mixtral-style MoE GGUF (arch "llama", llama.expert_count / expert_used_count)."""
    return _write_arch(spec, path, "moe", n_expert=n_expert, n_expert_used=n_expert_used, imatrix=imatrix)


LLAMA_FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
                "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16,
                "Q5_K_M": 17, "Q6_K": 18}


def quantize_with_llama_cpp(src, dst, ftype: str = "Q4_K_M", *, n_threads: int = 1) -> Path:
    """llama.cpp's llama_model_quantize (its own per-tensor type mix, e.g. Q4_K_M) of an F32/F16 GGUF."""
    import llama_cpp

    if ftype not in LLAMA_FTYPES:
        raise ValueError(f"unknown llama ftype {ftype!r}; known: {', '.join(LLAMA_FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPES[ftype]
    params.nthread = n_threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes_byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src}, {ftype}) returned {rc}")
    return Path(dst)


def ctypes_byref(x):
    import ctypes
    return ctypes.byref(x)


def llama_cpp_generate(path, tokens, n: int = 32, *, n_ctx: int = 256) -> "list[int]":
    """Greedy continuation of ``tokens`` by llama.cpp: ``n`` new token ids (argmax of each step's logits)."""
    logits = llama_cpp_logits(path, tokens, n_ctx=n_ctx, decode_steps=n)
    return [int(i) for i in np.argmax(logits[len(tokens) - 1:], axis=1)[:n]]
