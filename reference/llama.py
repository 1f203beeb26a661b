"""The forward pass of llama.cpp, bit-identical to its portable build (every SIMD path, llamafile,
repacking and FMA contraction off), for the llama family (incl. tied embeddings and rope_freqs) and
qwen2, from a GGUF's own tensors.

    x      = get_rows(token_embd, tokens)                 each row dequantized (the type's to_float)
    per layer l, per ubatch:
      h    = rms_norm(x, eps) * attn_norm                 reference.ops.rms_norm
      q, k, v = mul_mat(Wq, h), mul_mat(Wk, h), mul_mat(Wv, h)   (+ bq, bk, bv for qwen2: float adds)
      q, k = rope_ext(q), rope_ext(k)                     reference.rope, no contraction; NORMAL mode
                                                          for llama, NEOX for qwen2
      store k, v in the KV cache (F32 / F16)              set_rows: fp32 -> fp16 round-to-nearest-even
      a    = attention(q, cache)                          reference.attention: mul_mat + soft_max_ext
                                                          + mul_mat, or flash_attn_ext (cp.flash_attn)
      x    = mul_mat(Wo, a) + x
      h    = rms_norm(x, eps) * ffn_norm
      x    = mul_mat(W_down, swiglu(mul_mat(W_gate, h), mul_mat(W_up, h))) + x
    logits = mul_mat(W_out, rms_norm(x, eps) * output_norm)    (output.weight, or token_embd if tied)

Every ``mul_mat`` is :func:`ggspec.reference.matmul.mul_mat`: the activations converted to the
weight type's ``vec_dot_type`` and ggml's generic ``vec_dot`` order on the weight's own blocks -- the
weights are never held as float32 (they stay memory-mapped). Tokens go through in batches of
``n_batch`` split into ubatches of ``n_ubatch`` (llama-cpp-python's ``eval`` then ``llama_decode``);
only attention sees the ubatch boundaries (the KV window ``n_kv`` and flash attention's kernel).

RoPE parameters come from the GGUF metadata and the context exactly like ``llama_context``:
see :func:`rope_params_for_context`. docs/attention.md has each op's order of operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import FormatError, GGSpecError, ShapeError, UnsupportedArchitectureError
from . import ops
from .attention import KV_TYPES, KVCache, attention_mul_mat, flash_attn_ext, kq_scale
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
    n_expert: int = 0
    n_expert_used: int = 0

    n_embd_head: int = 0                        # attention.key_length (default n_embd / n_head)

    @property
    def head_dim(self) -> int:
        return self.n_embd_head or self.n_embd // self.n_head

    @classmethod
    def from_metadata(cls, md: dict, n_vocab: Optional[int] = None, arch: Optional[str] = None) -> "LlamaHParams":
        arch = arch or md.get("general.architecture", "llama")

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
            n_rot=int(key("rope.dimension_count", key("attention.key_length", n_embd // n_head))),
            rope_freq_base=float(f32(key("rope.freq_base", 10000.0))),
            rope_scaling_type=str(key("rope.scaling.type", "linear")),
            rope_freq_scale_train=float(freq_scale),
            rope_attn_factor=float(f32(key("rope.scaling.attn_factor", 1.0))),
            n_ctx_orig_yarn=int(key("rope.scaling.original_context_length", n_ctx_train)),
            rope_yarn_log_mul=float(f32(key("rope.scaling.yarn_log_multiplier", 0.0))),
            n_expert=int(key("expert_count", 0)), n_expert_used=int(key("expert_used_count", 0)),
            n_embd_head=int(key("attention.key_length", n_embd // n_head)),
        )


def _default_threads() -> "tuple[int, int]":
    import multiprocessing
    n = multiprocessing.cpu_count()
    return max(n // 2, 1), n


@dataclass
class ContextParams:
    """The ``llama_context_params`` that change the bits, with the defaults that
    ``llama_cpp.Llama(model_path, n_ctx=...)`` of llama-cpp-python 0.3.36 uses (0 / None / negative =
    'from the model'): F16 K/V cache, flash attention off, n_batch = n_ubatch = 512,
    n_threads = cpu_count // 2 (single-token decode), n_threads_batch = cpu_count (prompts).

    Threads change the bits only in one place: flash attention's split-KV kernel for a single token
    over >= 512 cells (docs/attention.md).
    """

    n_ctx: int = 512
    type_k: str = "F16"
    type_v: str = "F16"
    flash_attn: bool = False
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int = field(default_factory=lambda: _default_threads()[0])
    n_threads_batch: int = field(default_factory=lambda: _default_threads()[1])
    rope_scaling_type: Optional[str] = None   # "none" | "linear" | "yarn" | "longrope"
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    yarn_ext_factor: float = -1.0
    yarn_attn_factor: float = -1.0
    yarn_beta_fast: float = -1.0
    yarn_beta_slow: float = -1.0
    yarn_orig_ctx: int = 0

    def validate(self) -> None:
        """Normalize like llama-cpp-python + llama_context: n_batch <= n_ctx, n_ubatch <= n_batch,
        the cache holds n_ctx rounded up to 256 cells."""
        if self.n_ctx <= 0:
            raise ShapeError(f"n_ctx must be positive, got {self.n_ctx} (n_ctx = 0 = n_ctx_train is not modelled)")
        for t in (self.type_k, self.type_v):
            if t not in KV_TYPES:
                raise ShapeError(f"KV cache type {t!r} is not modelled (modelled: {', '.join(KV_TYPES)})")
        if self.type_v == "Q8_0" and not self.flash_attn:
            raise ShapeError("a quantized V cache needs flash_attn (llama.cpp refuses it otherwise)")
        self.n_batch = max(1, min(self.n_ctx, self.n_batch))
        self.n_ubatch = max(1, min(self.n_batch, self.n_ubatch))

    @property
    def n_ctx_cells(self) -> int:
        """The KV cache size: ``GGML_PAD(n_ctx, 256)`` (llama_context)."""
        return -(-self.n_ctx // 256) * 256


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
        # llama_model::get_rope_factors: n_ctx_seq > hparams.n_ctx_orig_yarn -- the GGUF's value, not the
        # context's yarn_orig_ctx override (that one moves only YaRN's correction dims)
        ff = long_factors if cp.n_ctx_cells > (hp.n_ctx_orig_yarn or hp.n_ctx_train) else short_factors
    return RopeParams(n_dims=hp.n_rot, mode="normal", freq_base=float(freq_base), freq_scale=float(freq_scale),
                      ext_factor=float(ext), attn_factor=float(attn), beta_fast=float(beta_fast),
                      beta_slow=float(beta_slow), n_ctx_orig=int(n_ctx_orig),
                      freq_factors=None if ff is None else tuple(np.asarray(ff, f32).tolist()))




def attn_rotation(head_dim: int, cache_type: str, value: bool = False) -> int:
    """The Hadamard size llama_kv_cache uses for a quantized cache (attn_rot_k / attn_rot_v), or 0.

    A quantized K or V cache (and head_dim % 64 == 0; env LLAMA_ATTN_ROT_DISABLE turns it off in
    llama.cpp, ggspec models the default) makes llama.cpp rotate q and k (K) / v and the attention
    output (V) with ``ggml_compute_forward_fwht`` before storing: K uses the largest power of two
    >= 64 dividing head_dim, V always 64."""
    from .types import get_type
    if get_type(cache_type).block_size == 1 or head_dim % 64:          # ggml_is_quantized
        return 0
    if value:
        return 64
    n = 64
    while head_dim % (n * 2) == 0:
        n *= 2
    return n


# ------------------------------------------------------------------------------------------------
# architectures
# ------------------------------------------------------------------------------------------------

#: architecture -> (RoPE mode, description). Each is llama.cpp's graph for that arch (src/models/*.cpp).
ARCHITECTURES = {
    "llama": ("normal", "Llama family: optional tied embeddings (no output.weight), rope_freqs (llama3), "
                        "Mixtral-style MoE when llama.expert_count > 0 (softmax top-k routing)"),
    "qwen2": ("neox", "Qwen2: Q/K/V biases, NEOX RoPE"),
}


def _required_tensors(hp: "LlamaHParams", arch: str) -> "dict[str, tuple]":
    """name -> ne (ggml order) of every tensor the graph needs."""
    E, V, F = hp.n_embd, hp.n_vocab, hp.n_ff
    hd = hp.head_dim
    req = {"token_embd.weight": (E, V), "output_norm.weight": (E,)}
    for il in range(hp.n_layer):
        b = f"blk.{il}."
        req[b + "attn_norm.weight"] = (E,)
        req[b + "attn_q.weight"] = (E, hd * hp.n_head)
        req[b + "attn_k.weight"] = (E, hd * hp.n_head_kv)
        req[b + "attn_v.weight"] = (E, hd * hp.n_head_kv)
        req[b + "attn_output.weight"] = (hd * hp.n_head, E)
        req[b + "ffn_norm.weight"] = (E,)
        if arch == "qwen2":
            req[b + "attn_q.bias"] = (hd * hp.n_head,)
            req[b + "attn_k.bias"] = (hd * hp.n_head_kv,)
            req[b + "attn_v.bias"] = (hd * hp.n_head_kv,)
        if hp.n_expert:
            X = hp.n_expert
            req[b + "ffn_gate_inp.weight"] = (E, X)
            req[b + "ffn_gate_exps.weight"] = (E, F, X)
            req[b + "ffn_up_exps.weight"] = (E, F, X)
            req[b + "ffn_down_exps.weight"] = (F, E, X)
        else:
            req[b + "ffn_gate.weight"] = (E, F)
            req[b + "ffn_up.weight"] = (E, F)
            req[b + "ffn_down.weight"] = (F, E)
    return req


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------

@dataclass
class Tensor:
    """One weight as stored: ggml type name, ne (ggml order), raw bytes (a memoryview into the file)."""
    type: str
    ne: Tuple[int, ...]
    raw: "bytes | memoryview"

    def f32(self) -> np.ndarray:
        """Dequantized to float32, numpy shape = reversed ne (only for small tensors: norms, biases)."""
        from . import dequantize
        n = int(np.prod(self.ne))
        return np.asarray(dequantize(self.type, bytes(self.raw), n), dtype=f32).reshape(tuple(reversed(self.ne)))


@dataclass
class LlamaModel:
    """A forward pass bit-identical to llama.cpp's portable build (see the module docstring).

    Weights stay in their ggml type (raw bytes, memory-mapped from the GGUF); every mat-mul runs on
    the quantized blocks through :func:`ggspec.reference.matmul.mul_mat`.
    """

    hp: LlamaHParams
    tensors: Dict[str, Tensor]
    arch: str = "llama"
    _small: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_tensors(cls, metadata: dict, tensors: TensorSource, dequantize: Optional[Callable] = None
                     ) -> "LlamaModel":
        """Build from GGUF metadata and raw tensors {name: (type_name, ne, raw)}."""
        arch = metadata.get("general.architecture", "llama")
        if arch not in ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"architecture {arch!r} is not modelled; supported: {', '.join(sorted(ARCHITECTURES))}")
        ts = {name: Tensor(t, tuple(int(v) for v in ne), raw) for name, (t, ne, raw) in tensors.items()}
        if "token_embd.weight" not in ts:
            raise FormatError("missing tensor token_embd.weight", 0)
        n_vocab = ts["token_embd.weight"].ne[1]
        hp = LlamaHParams.from_metadata(metadata, n_vocab=n_vocab, arch=arch)
        vlen = metadata.get(f"{arch}.attention.value_length")
        if vlen is not None and int(vlen) != hp.head_dim:
            raise UnsupportedArchitectureError(f"attention.value_length {vlen} != key_length {hp.head_dim} is not "
                                               "modelled")
        m = cls(hp, ts, arch)
        m._check()
        return m

    @classmethod
    def from_gguf(cls, path, dequantize: Optional[Callable] = None) -> "LlamaModel":
        """Read a GGUF with ``ggspec.reference.gguf`` (tensor data stays memory-mapped)."""
        from . import gguf as _gguf
        md, tensors = _gguf_to_source(_gguf.read(path))
        return cls.from_tensors(md, tensors)

    def _check(self) -> None:
        hp = self.hp
        if hp.n_rot != hp.head_dim:
            raise FormatError(f"rope.dimension_count {hp.n_rot} != head size {hp.head_dim}: llama.cpp's {self.arch} "
                              "graph requires them equal (GGML_ASSERT(n_embd_head == n_rot))", 0)
        if hp.n_head % max(hp.n_head_kv, 1) or hp.n_head_kv < 1:
            raise FormatError(f"head_count {hp.n_head} is not a multiple of head_count_kv {hp.n_head_kv}", 0)
        req = _required_tensors(self.hp, self.arch)
        missing = [n for n in req if n not in self.tensors and not (n == "output.weight")]
        bad = [f"{n}: ne {self.tensors[n].ne}, expected {ne}" for n, ne in req.items()
               if n in self.tensors and tuple(self.tensors[n].ne) != tuple(ne)]
        out = self.tensors.get("output.weight")
        if out is not None and tuple(out.ne) != (self.hp.n_embd, self.hp.n_vocab):
            bad.append(f"output.weight: ne {out.ne}, expected {(self.hp.n_embd, self.hp.n_vocab)}")
        if missing or bad:
            raise FormatError("tensors missing or misshapen: " + "; ".join(
                [f"missing {n}" for n in missing] + bad), 0)

    def small(self, name: str) -> Optional[np.ndarray]:
        """A norm / bias / rope-factor tensor as float32 (cached), or None when absent."""
        if name not in self._small:
            t = self.tensors.get(name)
            self._small[name] = None if t is None else t.f32()
        return self._small[name]

    # --------------------------------------------------------------------------------------------
    def rope_params(self, cp: Optional[ContextParams] = None) -> RopeParams:
        cp = cp or ContextParams()
        p = rope_params_for_context(self.hp, cp, self.small("rope_freqs.weight"),
                                    self.small("rope_factors_long.weight"),
                                    self.small("rope_factors_short.weight"))
        if ARCHITECTURES[self.arch][0] != p.mode:
            from dataclasses import replace
            p = replace(p, mode=ARCHITECTURES[self.arch][0])
        return p

    def mm(self, name: str, x: np.ndarray) -> np.ndarray:
        """``ggml_mul_mat(W, x)``: x float32 (n, in) -> (n, out), on W's own blocks."""
        from .matmul import mul_mat
        t = self.tensors[name]
        return mul_mat(t.type, t.raw, t.ne[1], t.ne[0], x)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """``ggml_get_rows(token_embd, tokens)``: each row dequantized with the type's to_float."""
        from . import dequantize
        from .types import get_type
        t = self.tensors["token_embd.weight"]
        tt = get_type(t.type)
        row = t.ne[0] // tt.block_size * tt.type_size
        raw = memoryview(t.raw)
        return np.stack([np.asarray(dequantize(t.type, bytes(raw[i * row:(i + 1) * row]), t.ne[0]), f32)
                         for i in tokens]).astype(f32)

    def new_cache(self, cp: ContextParams) -> KVCache:
        hp = self.hp
        return KVCache(hp.n_layer, cp.n_ctx_cells, hp.n_head_kv, hp.head_dim, cp.type_k, cp.type_v)

    def forward(self, tokens: Sequence[int], cp: Optional[ContextParams] = None,
                cache: Optional[KVCache] = None) -> np.ndarray:
        """Logits float32 (n_tokens, n_vocab) for ``tokens``, continuing ``cache`` if given (else a
        fresh one): what ``llama_cpp.Llama(model, n_ctx=..., logits_all=True).eval(tokens)`` gives."""
        cp = cp or ContextParams()
        cp.validate()
        tokens = np.asarray(list(tokens), dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise ShapeError("no tokens")
        bad = tokens[(tokens < 0) | (tokens >= self.hp.n_vocab)]
        if bad.size:
            raise ShapeError(f"token id {int(bad[0])} is out of range (n_vocab = {self.hp.n_vocab})")
        if cache is None:
            cache = self.new_cache(cp)
        if cache.n_used + tokens.size > cp.n_ctx:
            raise ShapeError(f"{cache.n_used} cached + {tokens.size} new tokens exceed n_ctx = {cp.n_ctx}")
        out = []
        # llama-cpp-python's eval: batches of n_batch; llama_decode: ubatches of n_ubatch
        for b0 in range(0, tokens.size, cp.n_batch):
            batch = tokens[b0:b0 + cp.n_batch]
            for u0 in range(0, batch.size, cp.n_ubatch):
                out.append(self._ubatch(batch[u0:u0 + cp.n_ubatch], cache, cp))
        return np.concatenate(out).astype(f32)

    def _ubatch(self, tokens: np.ndarray, cache: KVCache, cp: ContextParams) -> np.ndarray:
        hp = self.hp
        pos = np.arange(cache.n_used, cache.n_used + tokens.size)
        cells = cache.allocate(pos)
        n_kv = cache.n_kv()
        mask = cache.mask(pos, n_kv)
        rp = self.rope_params(cp)
        hd, nh, nkv = hp.head_dim, hp.n_head, hp.n_head_kv
        scale = kq_scale(hd)
        n_threads = cp.n_threads if tokens.size == 1 else cp.n_threads_batch
        x = self.embed(tokens)                                               # inp_embd
        for il in range(hp.n_layer):
            b = f"blk.{il}."
            h = ops.rms_norm(x, hp.rms_eps, self.small(b + "attn_norm.weight"))  # attn_norm
            q, k, v = self.mm(b + "attn_q.weight", h), self.mm(b + "attn_k.weight", h), self.mm(b + "attn_v.weight", h)
            if self.arch == "qwen2":                                          # ggml_add(Qcur, bq) ...
                q = (q + self.small(b + "attn_q.bias")).astype(f32)
                k = (k + self.small(b + "attn_k.bias")).astype(f32)
                v = (v + self.small(b + "attn_v.bias")).astype(f32)
            q = apply_rope(q.reshape(-1, nh, hd), pos, rp, contract="none")
            k = apply_rope(k.reshape(-1, nkv, hd), pos, rp, contract="none")
            v = v.reshape(-1, nkv, hd)
            rot_k, rot_v = attn_rotation(hd, cp.type_k), attn_rotation(hd, cp.type_v, value=True)
            if rot_k:                                                         # quantized K: Hadamard-rotate q, k
                q, k = ops.fwht(q, rot_k), ops.fwht(k, rot_k)
            if rot_v:                                                         # quantized V: rotate v ...
                v = ops.fwht(v, rot_v)
            cache.store(il, k, v, cells)                                      # cpy_k / cpy_v (set_rows)
            if cp.flash_attn:
                # build_attn_mha casts an F32 K/V to F16 before ggml_flash_attn_ext
                a = flash_attn_ext(q, cache.flash_view(il), 0, mask, scale, n_threads=n_threads)
            else:
                a = attention_mul_mat(q, cache, il, mask, scale)
            if rot_v:                                                         # ... and rotate the output back
                a = ops.fwht(a, rot_v)
            o = self.mm(b + "attn_output.weight", a)                          # wo
            x = (o + x).astype(f32)                                           # ffn_inp = cur + inpSA
            h = ops.rms_norm(x, hp.rms_eps, self.small(b + "ffn_norm.weight"))
            if hp.n_expert:
                f = self._moe(il, h)
            else:
                g, u = self.mm(b + "ffn_gate.weight", h), self.mm(b + "ffn_up.weight", h)
                f = self.mm(b + "ffn_down.weight", ops.swiglu(g, u))         # swiglu_split(gate, up)
            x = (f + x).astype(f32)
        h = ops.rms_norm(x, hp.rms_eps, self.small("output_norm.weight"))
        out = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"
        return self.mm(out, h)

    def _expert_mm(self, name: str, e: int, x: np.ndarray) -> np.ndarray:
        """``ggml_mul_mat_id`` for the rows routed to expert ``e``: that expert's 2-D slice of the 3-D
        ``*_exps`` tensor (ne = [in, out, n_expert]) times ``x``; the same vec_dot as mul_mat."""
        from .matmul import mul_mat
        from .types import get_type
        t = self.tensors[name]
        n_in, n_out = t.ne[0], t.ne[1]
        tt = get_type(t.type)
        size = n_out * (n_in // tt.block_size) * tt.type_size
        return mul_mat(t.type, memoryview(t.raw)[e * size:(e + 1) * size], n_out, n_in, x)

    def _moe(self, il: int, h: np.ndarray) -> np.ndarray:
        """llama.cpp's build_moe_ffn for Mixtral (softmax gating, norm_w, no scale, SiLU, gated):

            probs   = soft_max(mul_mat(ffn_gate_inp, h))                  (n_tokens, n_expert)
            sel     = argsort_top_k(probs, n_expert_used)                 descending; ties by index here
            w       = probs[sel];  w = w / clamp((float) sum_double(w), 6.103515625e-5, inf)
            y_j     = mul_mat_id(down, swiglu(mul_mat_id(gate, h), mul_mat_id(up, h)), sel_j) * w_j
            out     = ((y_0 + y_1) + y_2) + ...                           float adds in slot order
        """
        hp = self.hp
        b = f"blk.{il}."
        k = hp.n_expert_used
        if not 0 < k <= hp.n_expert:
            raise FormatError(f"expert_used_count {k} must be in 1..expert_count {hp.n_expert}", 0)
        probs = ops.soft_max_ext(self.mm(b + "ffn_gate_inp.weight", h), None, 1.0)
        sel = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        w = np.take_along_axis(probs, sel, axis=1).astype(f32)                  # get_rows
        acc = np.zeros(w.shape[0], np.float64)
        for j in range(k):                                                     # ggml_vec_sum_f32: double
            acc += w[:, j].astype(np.float64)
        wsum = np.minimum(np.maximum(acc.astype(f32), f32(6.103515625e-5)), f32(np.inf))   # ggml_clamp
        w = (w / wsum[:, None]).astype(f32)                                     # ggml_div
        n, E = h.shape
        y = np.zeros((n, k, E), f32)
        for e in np.unique(sel):
            rows, slots = np.nonzero(sel == e)
            x = h[rows]
            g = self._expert_mm(b + "ffn_gate_exps.weight", int(e), x)
            u = self._expert_mm(b + "ffn_up_exps.weight", int(e), x)
            y[rows, slots] = self._expert_mm(b + "ffn_down_exps.weight", int(e), ops.swiglu(g, u))
        y = (y * w[:, :, None]).astype(f32)                                     # ggml_mul(experts, weights)
        out = y[:, 0]
        for j in range(1, k):
            out = (out + y[:, j]).astype(f32)
        return out

    def run(self, tokens: Sequence[int], cp: Optional[ContextParams] = None, n_predict: int = 0,
            progress: Optional[Callable[[int, int], None]] = None) -> "tuple[np.ndarray, list[int]]":
        """The prompt as llama.cpp evaluates it, then ``n_predict`` greedy tokens one at a time (each
        the argmax of the previous row, fed back). Returns (logits float32 (len(tokens) +
        max(n_predict - 1, 0), n_vocab), the greedy tokens); ``progress(i, n_predict)`` after each."""
        cp = cp or ContextParams()
        cache = self.new_cache(cp)
        rows = [self.forward(tokens, cp, cache)]
        gen: "list[int]" = []
        for i in range(n_predict):
            gen.append(int(np.argmax(rows[-1][-1])))
            if progress:
                progress(i + 1, n_predict)
            if i < n_predict - 1:
                rows.append(self.forward([gen[-1]], cp, cache))
        return np.concatenate(rows), gen

    def generate(self, tokens: Sequence[int], n_new: int, *, cp: Optional[ContextParams] = None) -> "list[int]":
        """Greedy decoding: the prompt as llama.cpp evaluates it, then one token at a time."""
        return self.run(tokens, cp, n_new)[1]


def _gguf_to_source(g) -> "tuple[dict, TensorSource]":
    """Adapt ggspec.reference.gguf.read's result (``.metadata``, ``.tensors`` name -> view with
    ``.type``, ``.shape`` in ggml order, ``.raw``) to (metadata, TensorSource)."""
    md = dict(g.metadata)
    tensors = {}
    for name, t in g.tensors.items():
        tensors[name] = (t.type.name, tuple(t.shape), t.raw)       # memory-mapped, not copied
    return md, tensors
