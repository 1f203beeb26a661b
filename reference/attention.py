"""Causal self-attention with a KV cache, bit-exact to llama.cpp's portable build, on both paths
llama.cpp takes: ``mul_mat -> soft_max_ext -> mul_mat`` and ``flash_attn_ext``.

Shapes (numpy order): ``q`` (n_tokens, n_head, head_dim); the cache holds ``n_ctx`` cells of
(n_head_kv, head_dim). Query head ``h`` reads KV head ``h // (n_head // n_head_kv)`` (ggml's
broadcast ``ik2 = iq2 / (neq2/nek2)``):  MHA n_head_kv == n_head, GQA 1 < n_head_kv < n_head,
MQA n_head_kv == 1.

The cache (llama_kv_cache)
--------------------------
* ``type_k`` / ``type_v`` = F32, F16 (default) or Q8_0. Storing a token is ``ggml_set_rows`` from
  float32: F16 with ggml's software fp32->fp16 (round to nearest even), Q8_0 with
  ``quantize_row_q8_0`` (reference.legacy), F32 a copy.
* ``n_kv``, the number of cells an ubatch attends over: ``min(n_ctx, max(256, pad256(last used
  cell + 1)))``. Cells are filled from 0 in order.
* The mask (n_tokens, n_kv): 0 where the cell is used and its position <= the query's position,
  -inf elsewhere (unused cells, the future). F32 for the mul_mat path, F16 for flash attention:
  both hold only 0 and -inf, so the values are the same.

Path 1: ``flash_attn = False`` (llama-cpp-python's default)
-----------------------------------------------------------
1. ``kq = mul_mat(k, q)``: per (query head, token, cell) the weight type's mat-mul
   (:mod:`reference.matmul`): with an F16 cache, q is rounded to fp16 and the dot is a sequential
   double sum of exact products; F32: double sum of float products; Q8_0: q quantized to Q8_0.
2. ``soft_max_ext(kq, mask, scale)``: :func:`reference.ops.soft_max_ext` (SSE2 ``ggml_v_expf`` in
   groups of 4, double sum, ``(float)(1.0/sum)``).
3. ``kqv = mul_mat(v^T, kq)``: the V cache is stored transposed, so each output is a dot over the
   ``n_kv`` cells, with the probabilities converted to V's vec_dot_type (fp16 for an F16 cache).

Path 2: ``flash_attn = True`` (``ggml_compute_forward_flash_attn_ext_f16``)
---------------------------------------------------------------------------
Per query row (token, head) it runs an online softmax; which of three kernels runs is fixed by
shapes, not by data:

* **split-KV** (one token, K and V both F32 or both F16, ``n_kv >= 512``): the cells are cut into
  ``n_threads`` chunks of ``ceil(n_kv / n_threads)``; each chunk runs the one-chunk kernel without
  normalizing, then the chunks are merged in order (``M = fmaxf``, ``expf`` rescales, float).
  **This is the only place where the thread count changes the bits**; with one thread it is the
  one-chunk kernel.
* **tiled** (K/V both F32 or both F16, ``n_tokens >= 64``): for each tile of 64 cells
  ``KQ = q . k`` as a *float* sequential sum of float32 products (q not rounded), ``KQ *= scale``,
  ``KQ += mask``; ``M' = fmaxf(M, max KQ)``; if ``M' > M``: ``VKQ *= expf(M - M')``,
  ``S *= expf(M - M')``; ``S += (double) ggml_vec_soft_max_f32(KQ, M')`` (SSE2 expf);
  ``VKQ[d] += sum_c KQ[c] * v[c][d]`` as a float sequential sum. A tile whose 64 mask values are
  all -inf for a row leaves that row unchanged.
* **one-chunk** (everything else): for each cell in order, skipping masked ones:
  ``s = vec_dot(k_cell, q converted to K's vec_dot_type) * scale + mask``; if ``s > M``:
  ``ms = expf(M - s)``, ``M = s``, ``VKQ *= ms``; else ``vs = expf(s - M)``;
  ``VKQ += v_cell * vs``; ``S = S*ms + vs``. With an F16 V cache ``VKQ`` is an **fp16**
  accumulator (every ``*=`` and ``+=`` is rounded to fp16); otherwise float32 (Q8_0 V is
  dequantized first).

All three end with ``VKQ *= (S == 0 ? 0 : 1.0f/S)``. ``expf`` is the C library's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from ..errors import ShapeError
from . import ops
from .fp import f16_to_f32, f32_to_f16

f32 = np.float32

KV_TYPES = ("F32", "F16", "Q8_0")
FA_TILE_Q = 64       # GGML_FA_TILE_Q
FA_TILE_KV = 64      # GGML_FA_TILE_KV
KV_PAD = 256         # llama_kv_cache::get_n_kv pads to max(n_pad, 256)


def kq_scale(head_dim: int) -> np.float32:
    """``1.0f/sqrtf(float(n_embd_head))`` (llama.cpp's default attention scale)."""
    return f32(f32(1.0) / np.sqrt(f32(head_dim)))


# ------------------------------------------------------------------------------------------------
# the cache
# ------------------------------------------------------------------------------------------------

def _to_f16(x) -> np.ndarray:
    return f32_to_f16(np.asarray(x, dtype=f32)).view(np.float16)


@dataclass
class KVCache:
    """llama.cpp's unified KV cache for one sequence: ``n_ctx`` cells per layer, filled in order.

    ``k[layer]`` / ``v[layer]`` hold the stored values: float32 / float16 arrays of shape
    (n_ctx, n_head_kv, head_dim), or for Q8_0 a uint8 array (n_ctx, row bytes) of Q8_0 blocks.
    """

    n_layer: int
    n_ctx: int
    n_head_kv: int
    head_dim: int
    type_k: str = "F16"
    type_v: str = "F16"
    k: List[np.ndarray] = field(default_factory=list)
    v: List[np.ndarray] = field(default_factory=list)
    pos: np.ndarray = None
    n_used: int = 0

    def __post_init__(self):
        for t in (self.type_k, self.type_v):
            if t not in KV_TYPES:
                raise ShapeError(f"KV cache type {t!r} is not modelled (modelled: {', '.join(KV_TYPES)})")
        if (self.type_k == "Q8_0" or self.type_v == "Q8_0") and self.head_dim % 32:
            raise ShapeError(f"a Q8_0 cache needs head_dim to be a multiple of 32 (got {self.head_dim}); "
                             "llama.cpp refuses the context too")
        self.k = [self._empty(self.type_k) for _ in range(self.n_layer)]
        self.v = [self._empty(self.type_v) for _ in range(self.n_layer)]
        self.pos = np.full(self.n_ctx, -1, dtype=np.int64)

    def _empty(self, t: str) -> np.ndarray:
        n = self.n_head_kv * self.head_dim
        if t == "F32":
            return np.zeros((self.n_ctx, self.n_head_kv, self.head_dim), f32)
        if t == "F16":
            return np.zeros((self.n_ctx, self.n_head_kv, self.head_dim), np.float16)
        return np.zeros((self.n_ctx, (n // 32) * 34), np.uint8)   # Q8_0 blocks, zero bytes = 0.0

    def _encode(self, t: str, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=f32)
        if t == "F32":
            return x.copy()
        if t == "F16":
            return _to_f16(x)
        from . import quantize           # quantize_row_q8_0: the CPU backend's from_float is the ref one
        rows = np.ascontiguousarray(x.reshape(x.shape[0], -1))
        return np.frombuffer(quantize("Q8_0", rows), np.uint8).reshape(x.shape[0], -1)

    def store(self, layer: int, k_cur, v_cur, cells: np.ndarray) -> None:
        """``ggml_set_rows`` of this ubatch's keys/values (n_tokens, n_head_kv, head_dim) into ``cells``."""
        self.k[layer][cells] = self._encode(self.type_k, k_cur)
        self.v[layer][cells] = self._encode(self.type_v, v_cur)

    def allocate(self, positions: Sequence[int]) -> np.ndarray:
        """The cells for a new ubatch (the next free ones, as find_slot gives for one sequence)."""
        n = len(positions)
        if self.n_used + n > self.n_ctx:
            raise ShapeError(f"the KV cache has {self.n_ctx} cells; {self.n_used} used, {n} more requested "
                             "(more tokens than n_ctx)")
        cells = np.arange(self.n_used, self.n_used + n)
        self.pos[cells] = np.asarray(positions, dtype=np.int64)
        self.n_used += n
        return cells

    def n_kv(self) -> int:
        """Cells an ubatch attends over: ``min(n_ctx, max(256, GGML_PAD(used, 256)))``."""
        return min(self.n_ctx, max(KV_PAD, -(-self.n_used // KV_PAD) * KV_PAD))

    def mask(self, q_pos: Sequence[int], n_kv: int) -> np.ndarray:
        """float32 (n_tokens, n_kv): 0 where the cell is used and not in the future, else -inf."""
        q = np.asarray(q_pos, dtype=np.int64)[:, None]
        p = self.pos[:n_kv][None, :]
        ok = (p >= 0) & (p <= q)
        return np.where(ok, f32(0), f32(-np.inf)).astype(f32)

    def flash_view(self, layer: int) -> "KVCache":
        """The cache as llama.cpp's flash-attention graph reads it: an F32 K or V is first cast to F16
        (``ggml_cast`` in build_attn_mha, round to nearest even). A one-layer view."""
        view = KVCache.__new__(KVCache)
        view.__dict__.update(self.__dict__)
        view.n_layer = 1
        view.type_k = "F16" if self.type_k == "F32" else self.type_k
        view.type_v = "F16" if self.type_v == "F32" else self.type_v
        view.k = [_to_f16(self.k[layer]) if self.type_k == "F32" else self.k[layer]]
        view.v = [_to_f16(self.v[layer]) if self.type_v == "F32" else self.v[layer]]
        return view

    # views of the stored cache, per KV head, as the attention kernels read them
    def k_rows(self, layer: int, n_kv: int, g: int) -> "tuple[str, bytes]":
        return self._rows(self.type_k, self.k[layer], n_kv, g)

    def _rows(self, t, arr, n_kv, g):
        if t == "Q8_0":
            raise ShapeError("per-head Q8_0 rows are read through _q8_head")
        return t, np.ascontiguousarray(arr[:n_kv, g, :]).tobytes()

    def values_f32(self, which: str, layer: int, n_kv: int) -> np.ndarray:
        """The stored values as float32 (n_kv, n_head_kv, head_dim) (ggml's to_float)."""
        t = self.type_k if which == "k" else self.type_v
        arr = (self.k if which == "k" else self.v)[layer][:n_kv]
        if t == "F32":
            return arr
        if t == "F16":
            return f16_to_f32(arr.view(np.uint16)).astype(f32)
        from . import dequantize
        flat = dequantize("Q8_0", arr.tobytes(), n_kv * self.n_head_kv * self.head_dim)
        return flat.reshape(n_kv, self.n_head_kv, self.head_dim)


# ------------------------------------------------------------------------------------------------
# path 1: mul_mat -> soft_max_ext -> mul_mat
# ------------------------------------------------------------------------------------------------

def _head_group(n_head: int, n_head_kv: int) -> int:
    if n_head % n_head_kv:
        raise ShapeError(f"n_head {n_head} is not a multiple of n_head_kv {n_head_kv}")
    return n_head // n_head_kv


def _k_weight(cache: KVCache, layer: int, n_kv: int, g: int) -> "tuple[str, bytes]":
    """The K rows of KV head ``g`` as a (n_kv, head_dim) weight of the cache type."""
    t = cache.type_k
    arr = cache.k[layer][:n_kv]
    if t == "Q8_0":
        # each cell's row is n_head_kv*head_dim values; head g is its own run of whole blocks
        bpr = cache.head_dim // 32 * 34
        return t, np.ascontiguousarray(arr[:, g * bpr:(g + 1) * bpr]).tobytes()
    return t, np.ascontiguousarray(arr[:, g, :]).tobytes()


def _vt_weight(cache: KVCache, layer: int, n_kv: int, g: int) -> "tuple[str, bytes]":
    """V^T of KV head ``g``: a (head_dim, n_kv) weight (the non-FA cache stores V transposed)."""
    t = cache.type_v
    if t == "Q8_0":
        raise ShapeError("a Q8_0 V cache needs flash attention (llama.cpp refuses it otherwise)")
    arr = cache.v[layer][:n_kv, g, :]
    return t, np.ascontiguousarray(arr.T).tobytes()


def attention_mul_mat(q, cache: KVCache, layer: int, mask, scale) -> np.ndarray:
    """Path 1 for one ubatch: ``q`` float32 (n_tokens, n_head, head_dim) -> (n_tokens, n_head*head_dim)."""
    from .matmul import mul_mat

    q = np.asarray(q, dtype=f32)
    n_tokens, n_head, d = q.shape
    n_kv = mask.shape[1]
    gs = _head_group(n_head, cache.n_head_kv)
    out = np.empty((n_tokens, n_head, d), f32)
    for g in range(cache.n_head_kv):
        heads = slice(g * gs, (g + 1) * gs)
        # src1 rows in ggml order: for each head, its n_tokens rows (q permuted to (head, token))
        x = np.ascontiguousarray(q[:, heads, :].transpose(1, 0, 2)).reshape(gs * n_tokens, d)
        kt, kraw = _k_weight(cache, layer, n_kv, g)
        kq = mul_mat(kt, kraw, n_kv, d, x).reshape(gs, n_tokens, n_kv)          # 1. KQ
        p = ops.soft_max_ext(kq, mask[None, :, :], scale)                         # 2. softmax
        vt, vraw = _vt_weight(cache, layer, n_kv, g)
        kqv = mul_mat(vt, vraw, d, n_kv, p.reshape(gs * n_tokens, n_kv))         # 3. KQV
        out[:, heads, :] = kqv.reshape(gs, n_tokens, d).transpose(1, 0, 2)
    return out.reshape(n_tokens, n_head * d)


# ------------------------------------------------------------------------------------------------
# path 2: flash_attn_ext
# ------------------------------------------------------------------------------------------------

def fa_kernel(n_tokens: int, n_kv: int, type_k: str, type_v: str, n_threads: int) -> str:
    """Which flash-attention kernel ggml's CPU backend runs: "split-kv", "tiled" or "one-chunk"."""
    kv_f = type_k in ("F32", "F16")
    if n_tokens == 1 and kv_f and type_k == type_v and n_kv >= 512:
        return "split-kv"
    if kv_f and type_k == type_v and n_tokens >= FA_TILE_Q:
        return "tiled"
    return "one-chunk"


def _one_chunk(q, cache, layer, mask, scale, c0, c1, normalize=True):
    """The one-chunk kernel over cells [c0, c1), every query row at once (rows are independent).

    Returns VKQ (n_tokens, n_head, DV) float32 normalized, or (M, S, VKQ) unnormalized.
    """
    from .matmul import _add, mul_mat

    n_tokens, n_head, d = q.shape
    n_kv = mask.shape[1]
    gs = _head_group(n_head, cache.n_head_kv)
    # s[t, h, c] = vec_dot(k_c, q converted to K's vec_dot_type): the same dot as mul_mat(k, q)
    s_all = np.empty((n_tokens, n_head, n_kv), f32)
    for g in range(cache.n_head_kv):
        heads = slice(g * gs, (g + 1) * gs)
        x = q[:, heads, :].reshape(n_tokens * gs, d)
        kt, kraw = _k_weight(cache, layer, n_kv, g)
        s_all[:, heads, :] = mul_mat(kt, kraw, n_kv, d, x).reshape(n_tokens, gs, n_kv)
    vals = cache.values_f32("v", layer, n_kv)                      # v_to_float / fp16 widened
    vh = vals[:, np.arange(n_head) // gs, :]                       # (n_kv, n_head, DV)
    f16_acc = cache.type_v == "F16"
    S = np.zeros((n_tokens, n_head), f32)
    M = np.full((n_tokens, n_head), -np.inf, f32)
    VKQ = np.zeros((n_tokens, n_head, d), f32)                     # fp16 values when f16_acc
    one = f32(1.0)
    with np.errstate(all="ignore"):
        for c in range(c0, c1):
            mv = mask[:, c]                                        # slope (1) * mask
            live = (mv != -np.inf)[:, None] & np.ones((1, n_head), bool)
            if not live.any():
                continue
            s = (s_all[:, :, c] * f32(scale)).astype(f32)
            s = (s + mv[:, None]).astype(f32)
            new_max = s > M
            # one expf per live row and cell: expf(M - s) on a new maximum, else expf(s - M)
            e = np.ones_like(s)
            need = live
            if need.any():
                e[need] = ops.expf(np.where(new_max, M - s, s - M)[need])
            ms = np.where(new_max, e, one).astype(f32)
            vs = np.where(new_max, one, e).astype(f32)
            M2 = np.where(new_max, s, M)
            v_c = vh[c][None, :, :]
            # ggml_vec_mad_f16 / _f32: y[i] += x[i]*v, compiled as (x[i]*v) + y[i]: when both are NaN
            # the product's NaN comes out (x86 addss keeps its first operand's)
            if f16_acc:
                scaled = _f16r(VKQ * ms[..., None])
                acc = np.where(new_max[..., None], scaled, VKQ)
                acc = _f16r(_add((v_c * vs[..., None]).astype(f32), acc))
            else:
                scaled = (VKQ * ms[..., None]).astype(f32)
                acc = np.where(new_max[..., None], scaled, VKQ)
                acc = _add((v_c * vs[..., None]).astype(f32), acc).astype(f32)
            S2 = ((S * ms).astype(f32) + vs).astype(f32)
            VKQ = np.where(live[..., None], acc, VKQ)
            S = np.where(live, S2, S)
            M = np.where(live, M2, M)
    if not normalize:
        return M, S, VKQ
    return _normalize(VKQ, S)


def _f16r(x) -> np.ndarray:
    """Round float32 values to fp16 and back (GGML_CPU_FP32_TO_FP16 then FP16_TO_FP32)."""
    return f16_to_f32(f32_to_f16(np.asarray(x, dtype=f32))).astype(f32)


def _normalize(VKQ, S) -> np.ndarray:
    with np.errstate(all="ignore"):
        inv = np.where(S == f32(0), f32(0), (f32(1.0) / S).astype(f32)).astype(f32)
        return (VKQ * inv[..., None]).astype(f32)


def _tiled(q, cache, layer, mask, scale):
    n_tokens, n_head, d = q.shape
    n_kv = mask.shape[1]
    gs = _head_group(n_head, cache.n_head_kv)
    kv = cache.values_f32("k", layer, n_kv)[:, np.arange(n_head) // gs, :]   # (n_kv, n_head, DK)
    vv = cache.values_f32("v", layer, n_kv)[:, np.arange(n_head) // gs, :]   # (n_kv, n_head, DV)
    S = np.zeros((n_tokens, n_head), f32)
    M = np.full((n_tokens, n_head), -np.inf, f32)
    VKQ = np.zeros((n_tokens, n_head, d), f32)
    with np.errstate(all="ignore"):
        for c0 in range(0, n_kv, FA_TILE_KV):
            w = min(FA_TILE_KV, n_kv - c0)
            mt = np.full((n_tokens, FA_TILE_KV), -np.inf, f32)
            mt[:, :w] = mask[:, c0:c0 + w]
            row_live = (mt != -np.inf).any(axis=1)                 # a row whose tile is all -inf: no change
            if not row_live.any():
                continue
            # KQ[t,h,c] = sum_dk q[t,h,dk] * k[c,h,dk]: float, sequential over dk
            kt = kv[c0:c0 + w]                                     # (w, n_head, DK)
            KQ = np.zeros((n_tokens, n_head, FA_TILE_KV), f32)
            part = np.zeros((n_tokens, n_head, w), f32)
            for dk in range(d):
                part = (part + (q[:, :, dk][:, :, None] * kt[:, :, dk].T[None, :, :]).astype(f32)).astype(f32)
            KQ[:, :, :w] = part
            KQ = (KQ * f32(scale)).astype(f32)
            KQ[:, :, w:] = -np.inf
            KQ = (KQ + mt[:, None, :]).astype(f32)
            # ggml_vec_max_f32: the sequential MAX(a, b) = a > b ? a : b from -INFINITY, which forgets a
            # NaN at the next cell (np.max would keep it and poison a row whose tile is otherwise masked)
            tile_max = np.full(KQ.shape[:2], -np.inf, f32)
            for c in range(FA_TILE_KV):
                tile_max = np.where(tile_max > KQ[:, :, c], tile_max, KQ[:, :, c])
            skip = tile_max == -np.inf
            Mnew = np.fmax(M, tile_max).astype(f32)
            grow = (Mnew > M) & ~skip
            ms = ops.expf(np.where(grow, M - Mnew, 0)).astype(f32)
            VKQ = np.where(grow[..., None], (VKQ * ms[..., None]).astype(f32), VKQ)
            S = np.where(grow, (S * ms).astype(f32), S)
            M = np.where(skip, M, Mnew)
            rows = KQ.reshape(-1, FA_TILE_KV)
            e, tot = ops.vec_soft_max(rows, np.where(skip, f32(0), Mnew).reshape(-1).astype(f32))
            e = e.reshape(KQ.shape)
            S = np.where(skip, S, (S.astype(np.float64) + tot.reshape(S.shape)).astype(f32))
            e = np.where(skip[..., None], f32(0), e)
            # VKQ[t,h,:] += sum_c e[t,h,c] * v[c,h,:]: float, sequential over the 64 tile cells
            vt = np.zeros((FA_TILE_KV, n_head, d), f32)
            vt[:w] = vv[c0:c0 + w]
            acc = VKQ
            for c in range(FA_TILE_KV):
                acc = (acc + (e[:, :, c][..., None] * vt[c][None, :, :]).astype(f32)).astype(f32)
            live = row_live[:, None] & np.ones((1, n_head), bool)
            VKQ = np.where(live[..., None], acc, VKQ)
    return _normalize(VKQ, S)


def _split_kv(q, cache, layer, mask, scale, n_threads):
    n_kv = mask.shape[1]
    chunk = -(-n_kv // n_threads)
    Mf = np.full(q.shape[:2], -np.inf, f32)
    Sf = np.zeros(q.shape[:2], f32)
    Vf = np.zeros(q.shape, f32)
    with np.errstate(all="ignore"):
        for i in range(n_threads):
            c0, c1 = i * chunk, min((i + 1) * chunk, n_kv)
            if c0 >= n_kv:
                continue
            M, S, V = _one_chunk(q, cache, layer, mask, scale, c0, c1, normalize=False)
            if cache.type_v == "F16":
                V = V.astype(f32)                                  # VKQ16 -> VKQ32 before the partial is written
            use = S != f32(0)
            Mn = np.fmax(Mf, M).astype(f32)
            so = ops.expf(Mf - Mn)
            sn = ops.expf(M - Mn)
            Vn = ((Vf * so[..., None]).astype(f32) + (V * sn[..., None]).astype(f32)).astype(f32)
            Sn = ((Sf * so).astype(f32) + (S * sn).astype(f32)).astype(f32)
            Vf = np.where(use[..., None], Vn, Vf)
            Sf = np.where(use, Sn, Sf)
            Mf = np.where(use, Mn, Mf)
        inv = np.where(Sf != f32(0), (f32(1.0) / Sf).astype(f32), f32(1.0))
        return np.where((Sf != f32(0))[..., None], (Vf * inv[..., None]).astype(f32), Vf)


def flash_attn_ext(q, cache: KVCache, layer: int, mask, scale, n_threads: int = 1) -> np.ndarray:
    """Path 2 for one ubatch: ``q`` float32 (n_tokens, n_head, head_dim) -> (n_tokens, n_head*head_dim)."""
    q = np.asarray(q, dtype=f32)
    n_tokens, n_head, d = q.shape
    kind = fa_kernel(n_tokens, mask.shape[1], cache.type_k, cache.type_v, n_threads)
    if kind == "split-kv":
        out = _split_kv(q, cache, layer, mask, scale, max(1, int(n_threads)))
    elif kind == "tiled":
        out = _tiled(q, cache, layer, mask, scale)
    else:
        out = _one_chunk(q, cache, layer, mask, scale, 0, mask.shape[1])
    return out.reshape(n_tokens, n_head * d)
