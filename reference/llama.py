"""A Llama forward pass from GGUF weights, as llama.cpp (``src/models/llama.cpp``) computes it.

    x      = token_embd[tokens]                                   (get_rows: dequantized row)
    per layer l:
      h    = rms_norm(x) * attn_norm                              (see rms_norm below)
      q, k, v = Wq h, Wk h, Wv h                                  (ggml_mul_mat; W is (out, in))
      q, k = rope(q), rope(k)                                     (reference.rope, bit-exact to ggml)
      a    = attention(q, k, v)                                   (reference.attention, causal, GQA)
      x    = x + Wo a
      h    = rms_norm(x) * ffn_norm
      x    = x + W_down( silu(W_gate h) * (W_up h) )              (SwiGLU)
    logits = W_out ( rms_norm(x) * output_norm )                  (output.weight, or token_embd if absent)

Precision (the definition the golden logits use)
------------------------------------------------
Weights are dequantized with ``ggspec.reference.dequantize`` (bit-exact to ggml's to_float).
Activations are float32 between ops. Inside an op:

* ``rms_norm``: exactly ggml's: ``sum += (double)(x_i*x_i)`` (float product, double sequential
  sum), ``mean = (float)(sum/n)``, ``scale = 1.0f/sqrtf(mean + eps)``, ``y_i = (x_i*scale)*w_i``
  -- bit-exact.
* ``matmul``: ``y = f32( sum_i f64(W[o,i]) * f64(a_i) )``, one rounding per output. ggml instead
  accumulates in float32 SIMD lanes; with ``act="ggml"`` the activations are first converted to the
  weight's ``vec_dot_type`` as ggml's CPU backend does (F16 weights: activations rounded to fp16;
  Q4_0/Q5_0/Q8_0/IQ4_NL: Q8_0 with ggml's AVX quantize_row_q8_0; Q4_1/Q5_1: Q8_1; K-quants: Q8_K),
  which removes the largest systematic difference. ``act="exact"`` (default) keeps float32
  activations.
* SiLU: ``f32(g / (1 + exp(-g)))`` evaluated in float64; ``silu(g)*u`` rounded to float32.
* residual adds: float32.
* attention: ``reference.attention`` (float64 reductions, one rounding per tensor).

RoPE parameters come from the GGUF metadata and the context exactly like ``llama_context``:
see :func:`rope_params_for_context`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import FormatError, GGSpecError, ShapeError
from .attention import KVCache, attention, kq_scale
from .rope import RopeParams, apply_rope, logf

f32 = np.float32

# (ggml type name, ne (ggml order: ne[0] = row length), raw bytes)
TensorSource = Dict[str, Tuple[str, Tuple[int, ...], bytes]]


# ------------------------------------------------------------------------------------------------
# hyper-parameters
# ------------------------------------------------------------------------------------------------

@dataclass
class LlamaHParams:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int
    rms_eps: float
    n_rot: int
    rope_freq_base: float = 10000.0
    rope_scaling_type: str = "linear"          # llama.cpp's default when the key is absent
    rope_freq_scale_train: float = 1.0          # 1/rope.scaling.factor (float32)
    rope_attn_factor: float = 1.0               # rope.scaling.attn_factor
    n_ctx_orig_yarn: int = 0                    # rope.scaling.original_context_length (default n_ctx_train)
    rope_yarn_log_mul: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_metadata(cls, md: dict, n_vocab: Optional[int] = None) -> "LlamaHParams":
        arch = md.get("general.architecture", "llama")
        if arch != "llama":
            raise FormatError(f"not a llama model: general.architecture = {arch!r}", 0)

        def key(name, default=None, required=False):
            k = f"{arch}.{name}"
            if k in md:
                return md[k]
            if required:
                raise FormatError(f"missing GGUF key {k}", 0)
            return default

        n_embd = int(key("embedding_length", required=True))
        n_head = int(key("attention.head_count", required=True))
        n_ctx_train = int(key("context_length", required=True))
        factor = key("rope.scaling.factor", None)
        if factor is None:
            factor = key("rope.scale_linear", 0.0)
        factor = f32(factor)
        freq_scale = f32(1.0) if factor == f32(0) else f32(f32(1.0) / factor)
        if n_vocab is None:
            n_vocab = key("vocab_size", None)
            if n_vocab is None and "tokenizer.ggml.tokens" in md:
                n_vocab = len(md["tokenizer.ggml.tokens"])
        return cls(
            n_vocab=int(n_vocab or 0), n_embd=n_embd, n_layer=int(key("block_count", required=True)),
            n_head=n_head, n_head_kv=int(key("attention.head_count_kv", n_head)),
            n_ff=int(key("feed_forward_length", required=True)), n_ctx_train=n_ctx_train,
            rms_eps=float(f32(key("attention.layer_norm_rms_epsilon", required=True))),
            n_rot=int(key("rope.dimension_count", n_embd // n_head)),
            rope_freq_base=float(f32(key("rope.freq_base", 10000.0))),
            rope_scaling_type=str(key("rope.scaling.type", "linear")),
            rope_freq_scale_train=float(freq_scale),
            rope_attn_factor=float(f32(key("rope.scaling.attn_factor", 1.0))),
            n_ctx_orig_yarn=int(key("rope.scaling.original_context_length", n_ctx_train)),
            rope_yarn_log_mul=float(f32(key("rope.scaling.yarn_log_multiplier", 0.0))),
        )


@dataclass
class ContextParams:
    """The llama_context_params that affect the math (0 / None / negative = 'from the model')."""

    n_ctx: int = 512
    rope_scaling_type: Optional[str] = None   # "none" | "linear" | "yarn" | "longrope"
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    yarn_ext_factor: float = -1.0
    yarn_attn_factor: float = -1.0
    yarn_beta_fast: float = -1.0
    yarn_beta_slow: float = -1.0
    yarn_orig_ctx: int = 0


def yarn_attn_factor(freq_scale, rope_yarn_log_mul=0.0, rope_attn_factor=1.0, math: str = None) -> np.float32:
    """llama_context's YaRN attn_factor (llama-context.cpp), float32:

        factor = 1/freq_scale
        attn   = get_mscale(factor, 1)            get_mscale(s, m) = s <= 1 ? 1 : 0.1f*m*logf(s) + 1
               (or get_mscale(factor, 1)/get_mscale(factor, log_mul) when rope.scaling.yarn_log_multiplier != 0)
        attn  *= 1/(1 + 0.1f*logf(factor))       -- cancels ggml's own 1 + 0.1*ln(1/freq_scale)
        attn  *= rope.scaling.attn_factor

    The expressions are evaluated as written in float32 (libllama was checked for FMA contraction
    only in the rope kernel; see docs/rope.md).
    """
    factor = f32(f32(1.0) / f32(freq_scale))

    def get_mscale(s, m):
        return f32(1.0) if s <= f32(1.0) else f32(f32(f32(f32(0.1) * f32(m)) * logf(s, math)) + f32(1.0))

    if f32(rope_yarn_log_mul) != f32(0):
        a = f32(get_mscale(factor, 1.0) / get_mscale(factor, rope_yarn_log_mul))
    else:
        a = get_mscale(factor, 1.0)
    a = f32(a * f32(f32(1.0) / f32(f32(1.0) + f32(f32(0.1) * logf(factor, math)))))
    return f32(a * f32(rope_attn_factor))


def rope_params_for_context(hp: LlamaHParams, cp: ContextParams, freq_factors=None,
                            long_factors=None, short_factors=None) -> RopeParams:
    """The ggml_rope_ext arguments llama.cpp uses for this model and context (llama_context ctor)."""
    freq_base = f32(hp.rope_freq_base if cp.rope_freq_base == 0 else cp.rope_freq_base)
    freq_scale = f32(hp.rope_freq_scale_train if cp.rope_freq_scale == 0 else cp.rope_freq_scale)
    n_ctx_orig = cp.yarn_orig_ctx if cp.yarn_orig_ctx != 0 else (hp.n_ctx_orig_yarn or hp.n_ctx_train)
    stype = cp.rope_scaling_type or hp.rope_scaling_type
    if stype == "none":
        freq_scale = f32(1.0)
    ext = f32(cp.yarn_ext_factor)
    if ext < 0:
        ext = f32(1.0) if stype == "yarn" else f32(0.0)
    attn = f32(cp.yarn_attn_factor) if cp.yarn_attn_factor >= 0 else f32(1.0)
    if ext != 0:
        attn = yarn_attn_factor(freq_scale, hp.rope_yarn_log_mul, 1.0)
    attn = f32(attn * f32(hp.rope_attn_factor))
    beta_fast = f32(cp.yarn_beta_fast) if cp.yarn_beta_fast >= 0 else f32(32.0)
    beta_slow = f32(cp.yarn_beta_slow) if cp.yarn_beta_slow >= 0 else f32(1.0)
    ff = None
    if freq_factors is not None:                    # rope_freqs (llama3) wins
        ff = freq_factors
    elif long_factors is not None or short_factors is not None:
        ff = long_factors if cp.n_ctx > n_ctx_orig else short_factors   # get_rope_factors: n_ctx_seq > n_ctx_orig_yarn
    return RopeParams(n_dims=hp.n_rot, mode="normal", freq_base=float(freq_base), freq_scale=float(freq_scale),
                      ext_factor=float(ext), attn_factor=float(attn), beta_fast=float(beta_fast),
                      beta_slow=float(beta_slow), n_ctx_orig=int(n_ctx_orig),
                      freq_factors=None if ff is None else tuple(np.asarray(ff, f32).tolist()))


# ------------------------------------------------------------------------------------------------
# ops
# ------------------------------------------------------------------------------------------------

def rms_norm(x, w, eps) -> np.ndarray:
    """ggml_rms_norm followed by ggml_mul with the weight, bit-exact (see module docstring).

    x float32 (n_tokens, n); w float32 (n,).
    """
    x = np.asarray(x, dtype=f32)
    sq = (x * x).astype(f32).astype(np.float64)
    total = np.cumsum(sq, axis=-1)[..., -1:]               # sequential double sum, like the C loop
    mean = (total / x.shape[-1]).astype(f32)              # double division, rounded to float
    scale = (f32(1.0) / np.sqrt((mean + f32(eps)).astype(f32))).astype(f32)
    return ((x * scale).astype(f32) * np.asarray(w, f32)).astype(f32)


def silu(g) -> np.ndarray:
    g = np.asarray(g, dtype=np.float64)
    with np.errstate(over="ignore"):
        return (g / (1.0 + np.exp(-g))).astype(f32)


def _round_half_even(x):
    return np.rint(x)


def act_q8_0(a) -> np.ndarray:
    """ggml-cpu's AVX quantize_row_q8_0 then back to float: d = amax/127 stored as fp16,
    q = round_half_even(x * (127/amax)); value = q * fp16(d)."""
    a = np.asarray(a, f32).reshape(-1, 32)
    amax = np.abs(a).max(axis=1, keepdims=True).astype(f32)
    d16 = (amax / f32(127)).astype(f32).astype(np.float16).astype(f32)
    with np.errstate(divide="ignore"):
        idv = np.where(amax != 0, (f32(127) / amax).astype(f32), f32(0)).astype(f32)
    q = _round_half_even((a * idv).astype(f32))
    return (q.astype(f32) * d16).astype(f32).reshape(-1)


def act_q8_1(a) -> np.ndarray:
    """quantize_row_q8_1 (AVX): same scaling as Q8_0 for the values used in the dot product."""
    return act_q8_0(a)


def act_q8_K(a) -> np.ndarray:
    """quantize_row_q8_K_ref then back to float: per 256 values, max = the value of largest |x|
    (first one on ties, like the C loop's strict ``>``), iscale = -127/max,
    q = min(127, nearest_int(iscale*x)), d = 1/iscale; value = d*q."""
    a = np.asarray(a, f32).reshape(-1, 256)
    idx = np.argmax(np.abs(a), axis=1)
    mx = a[np.arange(a.shape[0]), idx][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = (f32(-127.0) / mx).astype(f32)
        q = np.minimum(127, _round_half_even((iscale * a).astype(f32)))
        out = ((f32(1.0) / iscale).astype(f32) * q.astype(f32)).astype(f32)
    out[(mx == 0).reshape(-1)] = 0
    return out.reshape(-1)


VEC_DOT_ACT: Dict[str, Callable] = {
    "F32": lambda a: a,
    "F16": lambda a: np.asarray(a, f32).astype(np.float16).astype(f32),
    "BF16": None,
    "Q4_0": act_q8_0, "Q5_0": act_q8_0, "Q8_0": act_q8_0, "IQ4_NL": act_q8_0,
    "Q4_1": act_q8_1, "Q5_1": act_q8_1,
}
for _k in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S",
           "IQ1_S", "IQ1_M", "IQ4_XS", "TQ1_0", "TQ2_0"):
    VEC_DOT_ACT[_k] = act_q8_K


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------

@dataclass
class LlamaModel:
    hp: LlamaHParams
    w: Dict[str, np.ndarray]                  # float32, numpy shape = reversed ggml ne
    types: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_tensors(cls, metadata: dict, tensors: TensorSource,
                     dequantize: Optional[Callable] = None) -> "LlamaModel":
        """Build from GGUF metadata and raw tensors {name: (type_name, ne, raw)}."""
        if dequantize is None:
            from . import dequantize as dequantize
        w, types = {}, {}
        for name, (tname, ne, raw) in tensors.items():
            n = int(np.prod(ne))
            vals = np.asarray(dequantize(tname, raw, n), dtype=f32)
            w[name] = vals.reshape(tuple(reversed([int(v) for v in ne])))
            types[name] = tname
        n_vocab = w["token_embd.weight"].shape[0]
        hp = LlamaHParams.from_metadata(metadata, n_vocab=n_vocab)
        return cls(hp, w, types)

    @classmethod
    def from_gguf(cls, path, dequantize: Optional[Callable] = None) -> "LlamaModel":
        """Read a GGUF with ``ggspec.reference.gguf`` (the containers module)."""
        try:
            from . import gguf as _gguf
        except ImportError as e:  # pragma: no cover - depends on the containers work
            raise GGSpecError("ggspec.reference.gguf is not available; build with LlamaModel.from_tensors") from e
        md, tensors = _gguf_to_source(_gguf.read(path))
        return cls.from_tensors(md, tensors, dequantize)

    # --------------------------------------------------------------------------------------------
    def rope_params(self, cp: Optional[ContextParams] = None) -> RopeParams:
        cp = cp or ContextParams()
        return rope_params_for_context(self.hp, cp, self.w.get("rope_freqs.weight"),
                                       self.w.get("rope_factors_long.weight"),
                                       self.w.get("rope_factors_short.weight"))

    def _matmul(self, name: str, a: np.ndarray, act: str) -> np.ndarray:
        W = self.w[name]
        a = np.asarray(a, f32)
        if act == "ggml":
            fn = VEC_DOT_ACT.get(self.types.get(name, "F32"))
            if fn is None:
                raise GGSpecError(f"no vec_dot_type model for {self.types.get(name)}")
            a = np.stack([fn(row) for row in a]) if a.ndim == 2 else fn(a)
        return (a.astype(np.float64) @ W.astype(np.float64).T).astype(f32)

    def forward(self, tokens: Sequence[int], pos: Optional[Sequence[int]] = None,
                cache: Optional[KVCache] = None, cp: Optional[ContextParams] = None,
                act: str = "exact", rope_kw: Optional[dict] = None) -> np.ndarray:
        """Logits float32 (n_tokens, n_vocab) for ``tokens`` at ``pos`` (default: continuing the cache)."""
        hp = self.hp
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if pos is None:
            start = cache.n_tokens if cache is not None else 0
            pos = np.arange(start, start + tokens.size)
        pos = np.asarray(pos).reshape(-1)
        rp = self.rope_params(cp)
        rope_kw = rope_kw or {}
        hd, nh, nkv = hp.head_dim, hp.n_head, hp.n_head_kv
        x = self.w["token_embd.weight"][tokens].astype(f32)
        for il in range(hp.n_layer):
            b = f"blk.{il}."
            h = rms_norm(x, self.w[b + "attn_norm.weight"], hp.rms_eps)
            q = self._matmul(b + "attn_q.weight", h, act).reshape(-1, nh, hd)
            k = self._matmul(b + "attn_k.weight", h, act).reshape(-1, nkv, hd)
            v = self._matmul(b + "attn_v.weight", h, act).reshape(-1, nkv, hd)
            q = apply_rope(q, pos, rp, **rope_kw)
            k = apply_rope(k, pos, rp, **rope_kw)
            if cache is not None:
                k_all, v_all, kpos = cache.append(il, k, v, pos)
            else:
                k_all, v_all, kpos = k, v, pos
            a = attention(q, k_all, v_all, pos, kpos, scale=kq_scale(hd),
                          f16_operands=cache is not None and cache.kv_dtype == "f16")
            o = self._matmul(b + "attn_output.weight", a.reshape(-1, nh * hd), act)
            x = (x + o).astype(f32)
            h = rms_norm(x, self.w[b + "ffn_norm.weight"], hp.rms_eps)
            g = self._matmul(b + "ffn_gate.weight", h, act)
            u = self._matmul(b + "ffn_up.weight", h, act)
            d = self._matmul(b + "ffn_down.weight", (silu(g) * u).astype(f32), act)
            x = (x + d).astype(f32)
        h = rms_norm(x, self.w["output_norm.weight"], hp.rms_eps)
        out_name = "output.weight" if "output.weight" in self.w else "token_embd.weight"
        return self._matmul(out_name, h, act)

    def generate(self, tokens: Sequence[int], n_new: int, *, cp: Optional[ContextParams] = None,
                 act: str = "exact", kv_dtype: str = "f32") -> "list[int]":
        """Greedy decoding with a KV cache: the prompt in one batch, then one token at a time."""
        cache = KVCache(self.hp.n_layer, kv_dtype=kv_dtype)
        logits = self.forward(tokens, cache=cache, cp=cp, act=act)
        out = []
        for _ in range(n_new):
            nxt = int(np.argmax(logits[-1]))
            out.append(nxt)
            logits = self.forward([nxt], cache=cache, cp=cp, act=act)
        return out


def _gguf_to_source(g) -> "tuple[dict, TensorSource]":
    """Adapt ggspec.reference.gguf.read's result (``.metadata``, ``.tensors`` name -> view with
    ``.type``, ``.shape`` in ggml order, ``.raw``) to (metadata, TensorSource)."""
    md = dict(g.metadata)
    tensors = {}
    for name, t in g.tensors.items():
        tensors[name] = (t.type.name, tuple(t.shape), bytes(t.raw))
    return md, tensors
