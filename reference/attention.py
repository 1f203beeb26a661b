"""Causal self-attention as llama.cpp builds it: MHA, GQA, MQA, with a KV cache.

Shapes (numpy order): q (n_tokens, n_head, head_dim), k/v (n_tokens, n_head_kv, head_dim).
``n_head_kv`` must divide ``n_head``; query head ``h`` reads KV head ``h // (n_head // n_head_kv)``
(ggml_mul_mat broadcasts K/V over groups of consecutive query heads, llama.cpp ``build_attn_mha``):

    MHA: n_head_kv == n_head        GQA: 1 < n_head_kv < n_head        MQA: n_head_kv == 1

The arithmetic, exactly (this is what the golden vectors are computed with)
--------------------------------------------------------------------------
Inputs are float32. Every tensor llama.cpp materializes is rounded to float32 here too; every
reduction inside one op is carried out in float64 (numpy) and rounded once to float32 at the end:

1. scores   ``s[h,i,j] = f32( sum_d f64(q[i,h,d]) * f64(k[j,g(h),d]) )``            (KQ, ggml_mul_mat)
2. scaled   ``z = f32(s * scale)``, ``scale = f32(1/sqrtf(head_dim))`` (float32 sqrtf, then 1.0f/x);
   masked   ``z = z + mask`` with mask 0 for ``j <= pos_i`` (causal: key position <= query position)
   and -inf otherwise (ggml_soft_max_ext: ``wp = x*scale; wp += mask``).
3. softmax  ``m = max_j z``; ``e_j = f32(exp(f64(z_j - m)))`` (the subtraction is float32);
   ``S = sum_j f64(e_j)`` (float64, ggml's ggml_float); ``p_j = f32(e_j * f32(1/S))``
   (ggml computes 1.0/sum in double and scales with a float: ``ggml_vec_scale_f32(dp, (float)(1/sum))``).
4. output   ``o[i,h,d] = f32( sum_j f64(p[h,i,j]) * f64(v[j,g(h),d]) )``           (KQV, ggml_mul_mat)

ggml itself accumulates the two products in float32 SIMD lanes (order depends on the CPU), uses a
polynomial ``expf`` in ``ggml_vec_soft_max_f32`` and by default stores K and V in an F16 cache; those
are the sources of the differences measured in docs/attention.md. ``kv_dtype="f16"`` rounds the
cached K (after RoPE) and V to float16 like llama.cpp's default ``type_k = type_v = f16``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..errors import ShapeError

f32 = np.float32


def kq_scale(head_dim: int) -> np.float32:
    """llama.cpp's ``1.0f/sqrtf(float(n_embd_head))``."""
    return f32(f32(1.0) / f32(np.sqrt(f32(head_dim))))


def causal_mask(q_pos, k_pos) -> np.ndarray:
    """float32 (n_q, n_k): 0 where key position <= query position, -inf elsewhere."""
    q_pos = np.asarray(q_pos).reshape(-1, 1)
    k_pos = np.asarray(k_pos).reshape(1, -1)
    return np.where(k_pos <= q_pos, f32(0), f32(-np.inf)).astype(f32)


def softmax_rows(z) -> np.ndarray:
    """Step 3 above over the last axis of float32 ``z`` (already scaled and masked)."""
    z = np.asarray(z, dtype=f32)
    m = z.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp((z - m).astype(f32).astype(np.float64)).astype(f32)
    S = e.astype(np.float64).sum(axis=-1, keepdims=True)
    inv = (1.0 / S).astype(f32)
    return (e * inv).astype(f32)


def attention(q, k, v, q_pos, k_pos, *, scale: Optional[float] = None, causal: bool = True,
              f16_operands: bool = False) -> np.ndarray:
    """Attention of queries ``q`` over keys/values ``k``, ``v`` (see module docstring).

    ``q_pos`` (n_q,) and ``k_pos`` (n_k,) are positions used for the causal mask. Returns float32
    (n_q, n_head, head_dim). ``f16_operands`` models an F16 KV cache in ggml's mul_mat: the other
    operand is converted to the cache's vec_dot_type, i.e. q (step 1) and p (step 4) are rounded
    to float16 before the products.
    """
    q = np.asarray(q, dtype=f32)
    k = np.asarray(k, dtype=f32)
    v = np.asarray(v, dtype=f32)
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ShapeError("q, k, v must be (n_tokens, n_heads, head_dim)")
    n_q, n_head, d = q.shape
    n_k, n_head_kv, dk = k.shape
    if v.shape[:2] != (n_k, n_head_kv):
        raise ShapeError(f"v shape {v.shape} does not match k {k.shape}")
    if dk != d:
        raise ShapeError("q and k head sizes differ")
    if n_head_kv <= 0 or n_head % n_head_kv:
        raise ShapeError(f"n_head_kv {n_head_kv} must divide n_head {n_head}")
    group = n_head // n_head_kv
    sc = kq_scale(d) if scale is None else f32(scale)
    mask = causal_mask(q_pos, k_pos) if causal else np.zeros((n_q, n_k), f32)
    out = np.empty((n_q, n_head, v.shape[2]), dtype=f32)
    if f16_operands:
        q = q.astype(np.float16).astype(f32)
    q64 = q.astype(np.float64)
    k64 = k.astype(np.float64)
    v64 = v.astype(np.float64)
    for h in range(n_head):
        g = h // group
        s = (q64[:, h, :] @ k64[:, g, :].T).astype(f32)             # 1. KQ
        z = ((s * sc).astype(f32) + mask).astype(f32)                 # 2. scale, mask
        p = softmax_rows(z)                                           # 3. softmax
        if f16_operands:
            p = p.astype(np.float16).astype(f32)
        out[:, h, :] = (p.astype(np.float64) @ v64[:, g, :]).astype(f32)   # 4. KQV
    return out


@dataclass
class KVCache:
    """Per-layer cache of rotated keys and values for incremental decoding.

    ``kv_dtype``: "f32" (exact float32 storage) or "f16" (llama.cpp's default cache type: values
    are rounded to float16 when stored and widened back to float32 when read).
    """

    n_layer: int
    kv_dtype: str = "f32"
    k: List[Optional[np.ndarray]] = field(default_factory=list)
    v: List[Optional[np.ndarray]] = field(default_factory=list)
    pos: List[Optional[np.ndarray]] = field(default_factory=list)

    def __post_init__(self):
        if self.kv_dtype not in ("f32", "f16"):
            raise ValueError("kv_dtype must be 'f32' or 'f16'")
        self.k = [None] * self.n_layer
        self.v = [None] * self.n_layer
        self.pos = [None] * self.n_layer

    def _store(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=f32)
        return x.astype(np.float16).astype(f32) if self.kv_dtype == "f16" else x

    def append(self, layer: int, k, v, pos) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
        """Add this step's keys/values; return everything cached for the layer (k, v, positions)."""
        k, v = self._store(k), self._store(v)
        pos = np.asarray(pos).reshape(-1)
        if self.k[layer] is None:
            self.k[layer], self.v[layer], self.pos[layer] = k, v, pos
        else:
            self.k[layer] = np.concatenate([self.k[layer], k])
            self.v[layer] = np.concatenate([self.v[layer], v])
            self.pos[layer] = np.concatenate([self.pos[layer], pos])
        return self.k[layer], self.v[layer], self.pos[layer]

    @property
    def n_tokens(self) -> int:
        return 0 if self.k[0] is None else int(self.k[0].shape[0])
