"""ggml's graph ops, called directly through ctypes: the oracle for RoPE (and softmax/attention pieces).

The quantization oracle (``libggml.py``) needs only ``libggml-base``; running an *op* needs a graph,
so this module also loads ``libggml-cpu`` from the same directory and uses

    ggml_init({mem_size, NULL, no_alloc=false})     -> ggml_context*
    ggml_new_tensor_{1,2,3}d(ctx, type, ne...)       -> ggml_tensor*   (data inside the context)
    ggml_rope_ext / ggml_rope_multi                  -> ggml_tensor*   (the op node)
    ggml_new_graph(ctx); ggml_build_forward_expand(graph, node)
    ggml_graph_compute_with_ctx(ctx, graph, n_threads)   (libggml-cpu)
    ggml_get_data(tensor); ggml_free(ctx)

Everything runs single-threaded by default (each RoPE row is independent, so the thread count does
not change the bits; it is a parameter so that can be checked).

    from ggspec.conformance import ggml_graph
    G = ggml_graph.load()
    y = G.rope_ext(x, pos, n_dims=64, mode=0, freq_base=10000.0, ...)   # x float32 (n_tokens, n_head, head_dim)
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from ..errors import OracleUnavailable, ShapeError
from . import libggml

GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GGML_TYPE_I32 = 26

GGML_ROPE_TYPE_NORMAL = 0
GGML_ROPE_TYPE_NEOX = 2
GGML_ROPE_TYPE_MROPE = 8
GGML_ROPE_TYPE_VISION = 24
GGML_ROPE_TYPE_IMROPE = 40


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


_P = ctypes.c_void_p
_F = ctypes.c_float
_I = ctypes.c_int


class GGMLGraph:
    """libggml-base + libggml-cpu of the oracle, with small helpers that run one op on numpy arrays."""

    def __init__(self, base_path: "str | os.PathLike | None" = None):
        base = Path(base_path) if base_path else libggml.find_library()
        self._base_path = base
        cpu = None
        for name in ("libggml-cpu.so", "libggml-cpu.dylib", "ggml-cpu.dll"):
            if (base.parent / name).exists():
                cpu = base.parent / name
                break
        if cpu is None:
            raise OracleUnavailable(f"no libggml-cpu next to {base}")
        try:
            # RTLD_GLOBAL so libggml-cpu resolves its libggml-base symbols against the same copy.
            self.base = ctypes.CDLL(str(base), mode=ctypes.RTLD_GLOBAL)
            self.cpu = ctypes.CDLL(str(cpu), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise OracleUnavailable(f"cannot load {base} / {cpu}: {e}") from e
        b, c = self.base, self.cpu
        b.ggml_init.restype = _P
        b.ggml_init.argtypes = [_InitParams]
        b.ggml_free.restype = None
        b.ggml_free.argtypes = [_P]
        for n, k in (("ggml_new_tensor_1d", 1), ("ggml_new_tensor_2d", 2), ("ggml_new_tensor_3d", 3),
                     ("ggml_new_tensor_4d", 4)):
            f = getattr(b, n)
            f.restype = _P
            f.argtypes = [_P, _I] + [ctypes.c_int64] * k
        b.ggml_get_data.restype = _P
        b.ggml_get_data.argtypes = [_P]
        b.ggml_nbytes.restype = ctypes.c_size_t
        b.ggml_nbytes.argtypes = [_P]
        b.ggml_rope_ext.restype = _P
        b.ggml_rope_ext.argtypes = [_P, _P, _P, _P, _I, _I, _I, _F, _F, _F, _F, _F, _F]
        b.ggml_rope_ext_inplace.restype = _P
        b.ggml_rope_ext_inplace.argtypes = b.ggml_rope_ext.argtypes
        b.ggml_rope_multi.restype = _P
        b.ggml_rope_multi.argtypes = [_P, _P, _P, _P, _I, ctypes.POINTER(_I * 4), _I, _I, _F, _F, _F, _F, _F, _F]
        b.ggml_rope_yarn_corr_dims.restype = None
        b.ggml_rope_yarn_corr_dims.argtypes = [_I, _I, _F, _F, _F, ctypes.POINTER(_F * 2)]
        b.ggml_soft_max_ext.restype = _P
        b.ggml_soft_max_ext.argtypes = [_P, _P, _P, _F, _F]
        b.ggml_rms_norm.restype = _P
        b.ggml_rms_norm.argtypes = [_P, _P, _F]
        b.ggml_mul.restype = _P
        b.ggml_mul.argtypes = [_P, _P, _P]
        b.ggml_mul_mat.restype = _P
        b.ggml_mul_mat.argtypes = [_P, _P, _P]
        b.ggml_flash_attn_ext.restype = _P
        b.ggml_flash_attn_ext.argtypes = [_P, _P, _P, _P, _P, _F, _F, _F]
        b.ggml_flash_attn_ext_set_prec.restype = None
        b.ggml_flash_attn_ext_set_prec.argtypes = [_P, _I]
        b.ggml_new_graph.restype = _P
        b.ggml_new_graph.argtypes = [_P]
        b.ggml_build_forward_expand.restype = None
        b.ggml_build_forward_expand.argtypes = [_P, _P]
        c.ggml_graph_compute_with_ctx.restype = _I
        c.ggml_graph_compute_with_ctx.argtypes = [_P, _P, _I]
        if hasattr(c, "ggml_cpu_init"):
            c.ggml_cpu_init.restype = None
            c.ggml_cpu_init.argtypes = []
            c.ggml_cpu_init()  # fills the fp16 tables the CPU ops use

    # ------------------------------------------------------------------------------------------
    def _ctx(self, nbytes: int):
        params = _InitParams(int(nbytes) + (16 << 20), None, False)
        ctx = self.base.ggml_init(params)
        if not ctx:
            raise OracleUnavailable("ggml_init failed")
        return ctx

    def _tensor(self, ctx, arr: np.ndarray, gtype: int):
        """A ggml tensor holding ``arr`` (numpy shape is ggml's ne reversed)."""
        ne = list(reversed(arr.shape))
        f = getattr(self.base, f"ggml_new_tensor_{len(ne)}d")
        t = f(ctx, gtype, *ne)
        data = self.base.ggml_get_data(t)
        raw = np.ascontiguousarray(arr).tobytes()
        assert len(raw) == self.base.ggml_nbytes(t)
        ctypes.memmove(data, raw, len(raw))
        return t

    def _read(self, t, shape, dtype) -> np.ndarray:
        n = self.base.ggml_nbytes(t)
        buf = (ctypes.c_char * n).from_address(self.base.ggml_get_data(t))
        return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape).copy()

    def _compute(self, ctx, node, n_threads: int):
        g = self.base.ggml_new_graph(ctx)
        self.base.ggml_build_forward_expand(g, node)
        rc = self.cpu.ggml_graph_compute_with_ctx(ctx, g, int(n_threads))
        if rc != 0:
            raise RuntimeError(f"ggml_graph_compute_with_ctx returned {rc}")

    # ------------------------------------------------------------------------------------------
    def rope_ext(self, x, pos, *, n_dims: int, mode: int = 0, freq_factors=None, n_ctx_orig: int = 0,
                 freq_base: float = 10000.0, freq_scale: float = 1.0, ext_factor: float = 0.0,
                 attn_factor: float = 1.0, beta_fast: float = 32.0, beta_slow: float = 1.0,
                 inplace: bool = False, n_threads: int = 1) -> np.ndarray:
        """ggml_rope_ext on ``x`` (n_tokens, n_head, head_dim), float32 or float16; ``pos`` int32 (n_tokens,)."""
        x = np.ascontiguousarray(x)
        if x.ndim != 3:
            raise ShapeError("x must be (n_tokens, n_head, head_dim)")
        if x.dtype == np.float32:
            gt = GGML_TYPE_F32
        elif x.dtype == np.float16:
            gt = GGML_TYPE_F16
        else:
            raise ShapeError(f"x must be float32 or float16, got {x.dtype}")
        pos = np.ascontiguousarray(pos, dtype=np.int32).reshape(-1)
        if pos.size != x.shape[0]:
            raise ShapeError("one position per token")
        if not (0 < n_dims <= x.shape[2] and n_dims % 2 == 0):
            raise ShapeError(f"n_dims {n_dims} must be even and <= head_dim {x.shape[2]}")
        if mode & GGML_ROPE_TYPE_MROPE:
            raise ShapeError("use rope_multi for MROPE/VISION")
        ff = None
        if freq_factors is not None:
            ff = np.ascontiguousarray(freq_factors, dtype=np.float32).reshape(-1)
            if ff.size < n_dims // 2:
                raise ShapeError(f"freq_factors needs {n_dims // 2} values")
        ctx = self._ctx(3 * x.nbytes + pos.nbytes + (ff.nbytes if ff is not None else 0))
        try:
            a = self._tensor(ctx, x, gt)
            b = self._tensor(ctx, pos, GGML_TYPE_I32)
            c = self._tensor(ctx, ff, GGML_TYPE_F32) if ff is not None else None
            fn = self.base.ggml_rope_ext_inplace if inplace else self.base.ggml_rope_ext
            node = fn(ctx, a, b, c, int(n_dims), int(mode), int(n_ctx_orig), freq_base, freq_scale,
                      ext_factor, attn_factor, beta_fast, beta_slow)
            self._compute(ctx, node, n_threads)
            return self._read(node, x.shape, x.dtype)
        finally:
            self.base.ggml_free(ctx)

    def rope_multi(self, x, pos, *, n_dims: int, sections, mode: int, freq_factors=None,
                   n_ctx_orig: int = 0, freq_base: float = 10000.0, freq_scale: float = 1.0,
                   ext_factor: float = 0.0, attn_factor: float = 1.0, beta_fast: float = 32.0,
                   beta_slow: float = 1.0, n_threads: int = 1) -> np.ndarray:
        """ggml_rope_multi (MROPE/IMROPE/VISION): ``pos`` int32 (4, n_tokens) -- t, h, w, e rows."""
        x = np.ascontiguousarray(x)
        gt = GGML_TYPE_F32 if x.dtype == np.float32 else GGML_TYPE_F16
        pos = np.ascontiguousarray(pos, dtype=np.int32)
        if pos.shape != (4, x.shape[0]):
            raise ShapeError("pos must be (4, n_tokens)")
        ctx = self._ctx(3 * x.nbytes + pos.nbytes + 4096)
        try:
            a = self._tensor(ctx, x, gt)
            b = self._tensor(ctx, pos.reshape(-1), GGML_TYPE_I32)
            c = None
            if freq_factors is not None:
                c = self._tensor(ctx, np.ascontiguousarray(freq_factors, dtype=np.float32), GGML_TYPE_F32)
            sec = (_I * 4)(*[int(s) for s in sections])
            node = self.base.ggml_rope_multi(ctx, a, b, c, int(n_dims), ctypes.byref(sec), int(mode),
                                             int(n_ctx_orig), freq_base, freq_scale, ext_factor,
                                             attn_factor, beta_fast, beta_slow)
            self._compute(ctx, node, n_threads)
            return self._read(node, x.shape, x.dtype)
        finally:
            self.base.ggml_free(ctx)

    def rope_yarn_corr_dims(self, n_dims: int, n_ctx_orig: int, freq_base: float, beta_fast: float,
                            beta_slow: float) -> "tuple[float, float]":
        out = (_F * 2)()
        self.base.ggml_rope_yarn_corr_dims(int(n_dims), int(n_ctx_orig), freq_base, beta_fast, beta_slow,
                                           ctypes.byref(out))
        return float(out[0]), float(out[1])

    def soft_max_ext(self, x, mask=None, *, scale: float = 1.0, max_bias: float = 0.0,
                     n_threads: int = 1) -> np.ndarray:
        """ggml_soft_max_ext over the last axis of float32 ``x`` (rows, n); ``mask`` float32 (rows, n) or None."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        ctx = self._ctx(4 * x.nbytes)
        try:
            a = self._tensor(ctx, x, GGML_TYPE_F32)
            m = self._tensor(ctx, np.ascontiguousarray(mask, dtype=np.float32), GGML_TYPE_F32) if mask is not None else None
            node = self.base.ggml_soft_max_ext(ctx, a, m, scale, max_bias)
            self._compute(ctx, node, n_threads)
            return self._read(node, x.shape, np.float32)
        finally:
            self.base.ggml_free(ctx)


    def rms_norm_mul(self, x, w, eps: float, n_threads: int = 1) -> np.ndarray:
        """ggml_mul(ggml_rms_norm(x, eps), w) over rows of float32 ``x`` (rows, n); ``w`` float32 (n,)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        ctx = self._ctx(4 * x.nbytes)
        try:
            a = self._tensor(ctx, x, GGML_TYPE_F32)
            wt = self._tensor(ctx, np.ascontiguousarray(w, dtype=np.float32), GGML_TYPE_F32)
            node = self.base.ggml_mul(ctx, self.base.ggml_rms_norm(ctx, a, eps), wt)
            self._compute(ctx, node, n_threads)
            return self._read(node, x.shape, np.float32)
        finally:
            self.base.ggml_free(ctx)

    def mul_mat(self, w, x, n_threads: int = 1) -> np.ndarray:
        """ggml_mul_mat(w, x): float32 w (out, in), x (n, in) -> (n, out)."""
        w = np.ascontiguousarray(w, dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        ctx = self._ctx(4 * (w.nbytes + 2 * x.nbytes + x.shape[0] * w.shape[0] * 4))
        try:
            a = self._tensor(ctx, w, GGML_TYPE_F32)
            b = self._tensor(ctx, x, GGML_TYPE_F32)
            node = self.base.ggml_mul_mat(ctx, a, b)
            self._compute(ctx, node, n_threads)
            return self._read(node, (x.shape[0], w.shape[0]), np.float32)
        finally:
            self.base.ggml_free(ctx)


    def mul_mat_typed(self, w_type: str, w_raw: bytes, n_out: int, n_in: int, x,
                      n_threads: int = 1) -> np.ndarray:
        """ggml_mul_mat(w, x) with ``w`` a ggml tensor of type ``w_type`` (ne = [n_in, n_out]) given as
        its raw bytes, and float32 ``x`` (n, n_in) -> float32 (n, n_out). The CPU backend converts x to
        the weight type's vec_dot_type and runs ggml_vec_dot_<type> per output."""
        from ..reference.types import get_type

        t = get_type(w_type)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != n_in:
            raise ShapeError(f"x must be (n, {n_in})")
        if n_in % t.block_size:
            raise ShapeError(f"n_in {n_in} is not a multiple of {w_type}'s block size {t.block_size}")
        nbytes = n_out * (n_in // t.block_size) * t.type_size
        if len(w_raw) != nbytes:
            raise ShapeError(f"{w_type} weight of {n_out}x{n_in} needs {nbytes} bytes, got {len(w_raw)}")
        ctx = self._ctx(nbytes + 8 * x.nbytes + 4 * x.shape[0] * n_out)
        try:
            a = self.base.ggml_new_tensor_2d(ctx, t.id, n_in, n_out)
            ctypes.memmove(self.base.ggml_get_data(a), bytes(w_raw), nbytes)
            b = self._tensor(ctx, x, GGML_TYPE_F32)
            node = self.base.ggml_mul_mat(ctx, a, b)
            self._compute(ctx, node, n_threads)
            return self._read(node, (x.shape[0], n_out), np.float32)
        finally:
            self.base.ggml_free(ctx)

    # ------------------------------------------------------------------------------------------
    # attention, as llama.cpp's build_attn_mha builds it (one layer, one ubatch)
    def _typed(self, ctx, type_name: str, values: np.ndarray):
        """A ggml tensor of ``type_name`` (F32/F16/Q8_0...) holding float32 ``values`` (numpy shape =
        ne reversed), converted with the type's from_float (ggml_quantize_chunk for quantized types)."""
        from ..reference.types import get_type
        from . import libggml

        t = get_type(type_name)
        values = np.ascontiguousarray(values, dtype=np.float32)
        ne = list(reversed(values.shape))
        f = getattr(self.base, f"ggml_new_tensor_{len(ne)}d")
        tt = f(ctx, t.id, *ne)
        if type_name == "F32":
            raw = values.tobytes()
        else:
            raw = libggml.load(str(self._base_path)).quantize(type_name, values.reshape(-1, values.shape[-1]))
        assert len(raw) == self.base.ggml_nbytes(tt), (type_name, len(raw))
        ctypes.memmove(self.base.ggml_get_data(tt), raw, len(raw))
        return tt

    def attention(self, q, k, v, mask, scale: float, *, type_k: str = "F16", type_v: str = "F16",
                  flash_attn: bool = False, n_threads: int = 1) -> np.ndarray:
        """One attention op of llama.cpp on the CPU backend.

        q float32 (n_tokens, n_head, d); k, v float32 (n_kv, n_head_kv, d) -- the cache contents
        *before* storing (converted here to ``type_k``/``type_v`` by ggml itself); mask float32
        (n_tokens, n_kv) of 0/-inf. Returns float32 (n_tokens, n_head*d).

        flash_attn=False: kq = mul_mat(k, q); soft_max_ext(kq, mask(F32), scale, 0);
        kqv = mul_mat(v^T, kq).  flash_attn=True: flash_attn_ext(q, k, v, mask(F16), scale), F32 prec.
        """
        b = self.base
        q = np.ascontiguousarray(q, dtype=np.float32)
        n_tokens, n_head, d = q.shape
        n_kv, n_head_kv = k.shape[0], k.shape[1]
        ctx = self._ctx(64 * (q.nbytes + 4 * k.nbytes + 4 * v.nbytes + 4 * n_tokens * n_kv * n_head) + (64 << 20))
        try:
            qt = self._tensor(ctx, np.ascontiguousarray(q.transpose(1, 0, 2)), GGML_TYPE_F32)  # ne [d, n_tokens, n_head]
            kt = self._typed(ctx, type_k, np.ascontiguousarray(np.asarray(k).transpose(1, 0, 2)))  # ne [d, n_kv, n_head_kv]
            if flash_attn:
                vt = self._typed(ctx, type_v, np.ascontiguousarray(np.asarray(v).transpose(1, 0, 2)))
                m16 = np.asarray(mask, np.float32).astype(np.float16)
                mt = self._tensor(ctx, m16, GGML_TYPE_F16)                                 # ne [n_kv, n_tokens]
                node = b.ggml_flash_attn_ext(ctx, qt, kt, vt, mt, scale, 0.0, 0.0)
                b.ggml_flash_attn_ext_set_prec(node, 10)                                   # GGML_PREC_F32
                self._compute(ctx, node, n_threads)
                return self._read(node, (n_tokens, n_head * d), np.float32)
            vT = self._typed(ctx, type_v, np.ascontiguousarray(np.asarray(v).transpose(1, 2, 0)))  # ne [n_kv, d, n_head_kv]
            mt = self._tensor(ctx, np.asarray(mask, np.float32), GGML_TYPE_F32)
            kq = b.ggml_mul_mat(ctx, kt, qt)                                                # ne [n_kv, n_tokens, n_head]
            kq = b.ggml_soft_max_ext(ctx, kq, mt, scale, 0.0)
            kqv = b.ggml_mul_mat(ctx, vT, kq)                                               # ne [d, n_tokens, n_head]
            self._compute(ctx, kqv, n_threads)
            out = self._read(kqv, (n_head, n_tokens, d), np.float32)
            return np.ascontiguousarray(out.transpose(1, 0, 2)).reshape(n_tokens, n_head * d)
        finally:
            b.ggml_free(ctx)


def op(name: str, *args, **kwargs):
    """``load().<name>(*args, **kwargs)``: a module-level entry point for the portable oracle's child
    process (``portable.Oracle().call("ggspec.conformance.ggml_graph", "op", "mul_mat_typed", ...)``)."""
    return getattr(load(), name)(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def load(path: "str | None" = None) -> GGMLGraph:
    """The graph oracle, loaded once; OracleUnavailable with the reason if it cannot be."""
    return GGMLGraph(path)
