"""Rotary position embedding (RoPE), as ggml computes it, and the Hugging Face variants beside it.

ggml's op (``ggml_rope_ext``, ggml-cpu/ops.cpp ``ggml_compute_forward_rope_flt``)
===================================================================================

Input ``x`` is (n_tokens, n_head, head_dim); ``pos`` one int32 per token; the first ``n_dims``
values of each head are rotated in pairs, the rest copied. For pair ``i`` (0 <= i < n_dims/2):

    theta_scale    = powf(freq_base, -2.0f/n_dims)                          (float32, libm powf)
    theta_extrap_i = ((float)pos * theta_scale^i) / ff[i]                   (theta *= theta_scale, i times, in float32)
    theta_interp_i = freq_scale * theta_extrap_i
    ext_factor == 0:  theta_i = theta_interp_i;   mscale = attn_factor
    ext_factor != 0 (YaRN):
        low, high  = ggml_rope_yarn_corr_dims(n_dims, n_ctx_orig, freq_base, beta_fast, beta_slow)
        ramp_i     = 1 - clamp((i - low) / max(0.001f, high - low), 0, 1)
        mix_i      = ramp_i * ext_factor
        theta_i    = theta_interp_i * (1 - mix_i) + theta_extrap_i * mix_i
        mscale     = attn_factor * (1 + 0.1f * logf(1/freq_scale))
    cos_i = cosf(theta_i) * mscale;   sin_i = sinf(theta_i) * mscale

    NORMAL (mode 0, LLaMA):   pair i = (x[2i], x[2i+1])
    NEOX   (mode 2):          pair i = (x[i],  x[i + n_dims/2])
    (x0, x1) -> (x0*cos_i - x1*sin_i,  x0*sin_i + x1*cos_i)

``ff`` are the optional frequency factors (``rope_freqs`` tensor for Llama 3.x, ``rope_factors_long``/
``_short`` for LongRoPE), 1.0 when absent. corr_dims:

    corr_dim(n_rot) = n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(freq_base))
    low  = max(0, floorf(corr_dim(beta_fast)));   high = min(n_dims - 1, ceilf(corr_dim(beta_slow)))

Precision and bit-exactness (proven in tests/test_rope.py against the oracle's libggml)
-------------------------------------------------------------------------------------
Every step above is float32 (``np.float32`` element-wise arithmetic here, which rounds exactly like
C floats). Three things are not visible in the C source and are modelled explicitly:

1. **libm.** ``sinf``, ``cosf`` (the compiler merges them into ``sincosf``), ``logf`` and ``powf`` come
   from the C library. With ``math="libm"`` (default where a C library is found) the reference calls
   the same functions through ctypes and is bit-exact. With ``math="numpy"`` it evaluates them in
   float64 and rounds to float32 (correctly rounded except in rare double-rounding cases), which
   differs from glibc 2.36 by at most 1 ulp on a small fraction of angles (numbers in docs/rope.md).
2. **FMA contraction.** The definition is the portable build (``-ffp-contract=off``): every multiply and
   add rounds on its own -- ``contract="none"``, the default. A native build compiled with
   ``-march=native`` lets GCC contract multiply-adds, and *how* depends on the CPU it was compiled on
   (AVX-512 vs AVX2 chunking); on the AVX-512 machine where it was measured it contracts
   ``theta_interp*(1-mix) + theta_extrap*mix``  -> ``fmaf(theta_interp, 1-mix, theta_extrap*mix)``,
   ``1 + 0.1f*logf(..)``                         -> ``fmaf(0.1f, logf(..), 1)``,
   and the rotation to ``fmaf(x0, cos, -(x1*sin))`` / ``fmaf(x0, sin, x1*cos)``; but in NORMAL mode the
   vectorizer handles the pairs in chunks of 8 (zmm) and 4 (ymm) with FMA and the last
   ``(n_dims/2) % 4`` pairs with separate multiply and add/sub (``vaddsubps``). ``contract="ggml-x86"``
   reproduces exactly that one native build (kept as a documented model; on an AVX2-only CPU the
   native build differs again, so it is not part of the definition).
   Seen by disassembling libggml-cpu.so (vfmadd132ss/vfmsub231ss/vfmaddsub231ps in the rope kernel).
3. **F16 input**: each x is widened to float32, the pair computed as above, the result rounded to
   fp16 (round to nearest even).

Hugging Face transformers (``modeling_rope_utils``) differs in how theta is built and in some
scaling rules; the functions ``hf_*`` below give its inverse frequencies and attention factors, and
``theta="hf"`` / ``theta="exact"`` in :func:`rope_cache` swap ggml's repeated multiplication for
HF's float32 ``pos * inv_freq`` (inv_freq from ``base ** (2i/d)``) or for float64 ``pos * base^(-2i/d)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from ..errors import GGSpecError, ShapeError

f32 = np.float32

MODES = {"normal": 0, "neox": 2}
GGML_ROPE_TYPE_NORMAL = 0
GGML_ROPE_TYPE_NEOX = 2


# ------------------------------------------------------------------------------------------------
# C float helpers: libm through ctypes, or float64-then-round; exact float32 fma
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _libm():
    name = ctypes.util.find_library("m")
    try:
        lib = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        for fn in ("sinf", "cosf", "logf", "powf"):
            getattr(lib, fn)
    except (OSError, AttributeError):
        return None
    for fn in ("sinf", "cosf", "logf"):
        getattr(lib, fn).restype = ctypes.c_float
        getattr(lib, fn).argtypes = [ctypes.c_float]
    lib.powf.restype = ctypes.c_float
    lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
    return lib


def libm_available() -> bool:
    return _libm() is not None


def _default_math() -> str:
    return "libm" if libm_available() else "numpy"


def _unary(fn_name: str, x, math_: str) -> np.ndarray:
    x = np.asarray(x, dtype=f32)
    if math_ == "libm":
        lib = _libm()
        if lib is None:
            raise GGSpecError("math='libm' requested but no C math library could be loaded")
        f = getattr(lib, fn_name)
        flat = x.reshape(-1)
        out = np.fromiter((f(float(v)) for v in flat), dtype=f32, count=flat.size)
        return out.reshape(x.shape)
    if math_ == "numpy":
        np_fn = {"sinf": np.sin, "cosf": np.cos, "logf": np.log}[fn_name]
        with np.errstate(all="ignore"):
            return np_fn(x.astype(np.float64)).astype(f32)
    raise ValueError(f"math must be 'libm' or 'numpy', got {math_!r}")


def sinf(x, math: str = None) -> np.ndarray:
    return _unary("sinf", x, math or _default_math())


def cosf(x, math: str = None) -> np.ndarray:
    return _unary("cosf", x, math or _default_math())


def logf(x, math: str = None) -> np.float32:
    return f32(_unary("logf", f32(x), math or _default_math()))


def powf(x, y, math: str = None) -> np.float32:
    math = math or _default_math()
    if math == "libm":
        lib = _libm()
        return f32(lib.powf(float(f32(x)), float(f32(y))))
    with np.errstate(all="ignore"):
        return f32(np.power(np.float64(f32(x)), np.float64(f32(y))))


def fmaf(a, b, c) -> np.ndarray:
    """Exact float32 fused multiply-add ``a*b + c`` with one rounding (C's ``fmaf``).

    a*b of two floats is exact in float64; the float64 sum is made *round-to-odd* (exact error via
    TwoSum, then the odd neighbour when inexact) so that the final rounding to float32 is the
    correctly rounded result (53 >= 2*24 + 2 bits).
    """
    a = np.asarray(a, dtype=f32)
    b = np.asarray(b, dtype=f32)
    c = np.asarray(c, dtype=f32)
    with np.errstate(all="ignore"):
        p = a.astype(np.float64) * b.astype(np.float64)
        cd = c.astype(np.float64)
        s = p + cd
        bb = s - p
        err = (p - (s - bb)) + (cd - bb)
        s = np.array(s, dtype=np.float64, copy=True)
        odd = (s.view(np.int64) & 1) == 1
        fix = (err != 0) & ~odd & np.isfinite(s)
        if np.any(fix):
            toward = np.where(err > 0, np.inf, -np.inf)
            s = np.where(fix, np.nextafter(s, toward), s)
        return s.astype(f32)


# ------------------------------------------------------------------------------------------------
# ggml's parameters
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RopeParams:
    """The arguments of ``ggml_rope_ext`` (besides the tensors)."""

    n_dims: int
    mode: str = "normal"            # "normal" (GGML_ROPE_TYPE_NORMAL, LLaMA) or "neox"
    freq_base: float = 10000.0
    freq_scale: float = 1.0
    ext_factor: float = 0.0
    attn_factor: float = 1.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    n_ctx_orig: int = 0
    freq_factors: Optional[tuple] = None   # n_dims/2 float32 values (rope_freqs / rope_factors_*)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if self.n_dims <= 0 or self.n_dims % 2:
            raise ValueError(f"n_dims must be a positive even number, got {self.n_dims}")
        if self.freq_factors is not None:
            ff = tuple(float(f32(v)) for v in self.freq_factors)
            if len(ff) < self.n_dims // 2:
                raise ValueError(f"freq_factors needs {self.n_dims // 2} values, got {len(ff)}")
            object.__setattr__(self, "freq_factors", ff)

    @property
    def mode_id(self) -> int:
        return MODES[self.mode]

    def ggml_kwargs(self) -> dict:
        """Keyword arguments for ``conformance.ggml_graph.GGMLGraph.rope_ext``."""
        return dict(n_dims=self.n_dims, mode=self.mode_id, n_ctx_orig=self.n_ctx_orig,
                    freq_base=self.freq_base, freq_scale=self.freq_scale, ext_factor=self.ext_factor,
                    attn_factor=self.attn_factor, beta_fast=self.beta_fast, beta_slow=self.beta_slow,
                    freq_factors=None if self.freq_factors is None else np.array(self.freq_factors, f32))

    def with_(self, **kw) -> "RopeParams":
        return replace(self, **kw)


def theta_scale(freq_base, n_dims: int, math: str = None) -> np.float32:
    """``powf(freq_base, -2.0f/n_dims)`` -- the -2.0f/n_dims division is float32."""
    return powf(f32(freq_base), f32(-2.0) / f32(n_dims), math)


def yarn_corr_dim(n_dims: int, n_ctx_orig: int, n_rot, base, math: str = None) -> np.float32:
    """ggml_rope_yarn_corr_dim: ``n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base))``.

    Evaluation order (all float32): ((n_rot*2)*pi_f), n_ctx_orig/that, logf, n_dims*log, 2*logf(base), divide.
    """
    denom = f32(f32(n_rot) * f32(2)) * f32(math_pi_f32())
    num = f32(f32(n_dims) * logf(f32(n_ctx_orig) / denom, math))
    return f32(num / f32(f32(2) * logf(base, math)))


def math_pi_f32() -> np.float32:
    return f32(math.pi)


def yarn_corr_dims(n_dims: int, n_ctx_orig: int, freq_base, beta_fast, beta_slow,
                   math: str = None) -> "tuple[np.float32, np.float32]":
    """ggml_rope_yarn_corr_dims: (low, high) = (max(0, floor(dim(beta_fast))), min(n_dims-1, ceil(dim(beta_slow))))."""
    start = f32(np.floor(yarn_corr_dim(n_dims, n_ctx_orig, beta_fast, freq_base, math)))
    end = f32(np.ceil(yarn_corr_dim(n_dims, n_ctx_orig, beta_slow, freq_base, math)))
    low = start if not (f32(0) > start) else f32(0)            # MAX(0, start): (0 > start ? 0 : start)
    high = f32(n_dims - 1) if (f32(n_dims - 1) < end) else end  # MIN(n_dims-1, end)
    return f32(low), f32(high)


def yarn_ramp(low, high, i: int) -> np.float32:
    """rope_yarn_ramp(low, high, i0) with i = i0/2: ``1 - MIN(1, MAX(0, (i - low) / MAX(0.001f, high - low)))``."""
    d = f32(high) - f32(low)
    d = f32(0.001) if f32(0.001) > d else d                    # MAX(0.001f, high - low)
    y = f32(f32(f32(i) - f32(low)) / d)
    y = f32(0) if f32(0) > y else y                            # MAX(0, y)
    y = f32(1) if f32(1) < y else y                            # MIN(1, y)
    return f32(f32(1) - y)


# ------------------------------------------------------------------------------------------------
# the cos/sin cache (ggml_rope_cache_init + rope_yarn), vectorized over positions only
# ------------------------------------------------------------------------------------------------

def rope_cache(pos, p: RopeParams, *, math: str = None, contract: str = "none",
               theta: str = "ggml") -> "tuple[np.ndarray, np.ndarray]":
    """cos and sin, float32 arrays of shape (len(pos), n_dims/2), exactly as ggml's rope cache.

    ``theta``: "ggml"  theta_i = (float)pos * theta_scale^i by repeated float32 multiplication (ggml);
               "hf"    theta_i = f32(f32(pos) * inv_freq_i), inv_freq_i = f32(1 / f32(base ** f32(2i/n_dims)))
                       (transformers' float32 tensors; pow evaluated in float64 and rounded);
               "exact" theta_i = f32(pos * base ** (-2i/n_dims)) evaluated in float64.
    Scaling (freq_scale, freq factors, YaRN) is applied identically afterwards.
    ``contract``: "ggml-x86" (the oracle's fused multiply-adds) or "none" (plain C, no contraction).
    """
    math = math or _default_math()
    if contract not in ("ggml-x86", "none"):
        raise ValueError(f"contract must be 'ggml-x86' or 'none', got {contract!r}")
    fused = contract == "ggml-x86"
    pos = np.asarray(pos).reshape(-1)
    n_pairs = p.n_dims // 2
    freq_scale = f32(p.freq_scale)
    ext_factor = f32(p.ext_factor)
    mscale = f32(p.attn_factor)
    corr = yarn_corr_dims(p.n_dims, p.n_ctx_orig, p.freq_base, p.beta_fast, p.beta_slow, math)
    if ext_factor != f32(0):
        # mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale)
        lg = logf(f32(f32(1) / freq_scale), math)
        mag = fmaf(f32(0.1), lg, f32(1)) if fused else f32(f32(1) + f32(f32(0.1) * lg))
        mscale = f32(mscale * f32(mag))

    cos = np.empty((pos.size, n_pairs), dtype=f32)
    sin = np.empty((pos.size, n_pairs), dtype=f32)
    ts = theta_scale(p.freq_base, p.n_dims, math)
    # theta_base = (float)p: int64 -> float conversion, round to nearest
    th = pos.astype(np.int64).astype(f32)
    for i in range(n_pairs):
        if theta == "ggml":
            t = th
        elif theta == "hf":
            expo = f32(f32(2 * i) / f32(p.n_dims))
            inv = f32(1.0 / np.float64(f32(np.power(np.float64(p.freq_base), np.float64(expo)))))
            t = (pos.astype(f32) * inv).astype(f32)
        elif theta == "exact":
            t = (pos.astype(np.float64) * np.power(np.float64(p.freq_base), -2.0 * i / p.n_dims)).astype(f32)
        else:
            raise ValueError(f"theta must be 'ggml', 'hf' or 'exact', got {theta!r}")
        if p.freq_factors is not None:
            t = (t / f32(p.freq_factors[i])).astype(f32)       # theta / ff
        theta_extrap = t
        theta_interp = (freq_scale * theta_extrap).astype(f32)
        if ext_factor != f32(0):
            mix = f32(yarn_ramp(corr[0], corr[1], i) * ext_factor)
            one_minus = f32(f32(1) - mix)
            b = (theta_extrap * mix).astype(f32)
            if fused:
                ang = fmaf(theta_interp, one_minus, b)
            else:
                ang = ((theta_interp * one_minus).astype(f32) + b).astype(f32)
        else:
            ang = theta_interp
        cos[:, i] = (cosf(ang, math) * mscale).astype(f32)
        sin[:, i] = (sinf(ang, math) * mscale).astype(f32)
        th = (th * ts).astype(f32)                               # theta *= theta_scale
    return cos, sin


def fused_pairs(n_pairs: int, mode: str, contract: str = "none") -> np.ndarray:
    """Which pairs the oracle rotates with FMA (bool[n_pairs]).

    NEOX: all (scalar loop, contracted). NORMAL: the vectorized loop covers the first
    4*floor(n_pairs/4) pairs with vfmaddsub (fused); the remaining n_pairs % 4 pairs go through a
    128-bit vmulps/vaddsubps epilogue (not fused). "none": no pair is fused.
    """
    if contract == "none":
        return np.zeros(n_pairs, dtype=bool)
    if mode == "neox":
        return np.ones(n_pairs, dtype=bool)
    out = np.zeros(n_pairs, dtype=bool)
    out[: 4 * (n_pairs // 4)] = True
    return out


def rotate(x0, x1, cos, sin, fused) -> "tuple[np.ndarray, np.ndarray]":
    """(x0*cos - x1*sin, x0*sin + x1*cos) in float32; where ``fused``: fmaf(x0, cos, -(x1*sin)), fmaf(x0, sin, x1*cos)."""
    a = (x1 * sin).astype(f32)
    b = (x1 * cos).astype(f32)
    y0_plain = ((x0 * cos).astype(f32) - a).astype(f32)
    y1_plain = ((x0 * sin).astype(f32) + b).astype(f32)
    if not np.any(fused):
        return y0_plain, y1_plain
    y0 = np.where(fused, fmaf(x0, cos, -a), y0_plain)
    y1 = np.where(fused, fmaf(x0, sin, b), y1_plain)
    return y0.astype(f32), y1.astype(f32)


def apply_rope(x, pos, p: RopeParams, *, math: str = None, contract: str = "none",
               theta: str = "ggml") -> np.ndarray:
    """ggml_rope_ext: rotate ``x`` (n_tokens, n_head, head_dim), float32 or float16, at ``pos`` (n_tokens,).

    Returns an array of x's dtype. Values past ``n_dims`` in each head are copied unchanged.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ShapeError(f"x must be (n_tokens, n_head, head_dim), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float16):
        raise ShapeError(f"x must be float32 or float16, got {x.dtype}")
    pos = np.asarray(pos).reshape(-1)
    if pos.size != x.shape[0]:
        raise ShapeError(f"{pos.size} positions for {x.shape[0]} tokens")
    if p.n_dims > x.shape[2]:
        raise ShapeError(f"n_dims {p.n_dims} > head_dim {x.shape[2]}")
    n_pairs = p.n_dims // 2
    cos, sin = rope_cache(pos, p, math=math, contract=contract, theta=theta)
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    xf = x.astype(f32)
    if p.mode == "normal":
        i0 = np.arange(n_pairs) * 2
        i1 = i0 + 1
    else:
        i0 = np.arange(n_pairs)
        i1 = i0 + n_pairs
    fused = fused_pairs(n_pairs, p.mode, contract)
    if x.dtype == np.float16:
        fused = fused_pairs_f16(n_pairs, p.mode, contract)
    y0, y1 = rotate(xf[..., i0], xf[..., i1], cos, sin, fused)
    out = xf.copy()
    out[..., i0] = y0
    out[..., i1] = y1
    if x.dtype == np.float16:
        res = x.copy()
        res[..., : p.n_dims] = out[..., : p.n_dims].astype(np.float16)   # round to nearest even
        return res
    return out


def fused_pairs_f16(n_pairs: int, mode: str, contract: str = "none") -> np.ndarray:
    """Which pairs the oracle's F16 kernel rotates with FMA (see fused_pairs)."""
    if contract == "none":
        return np.zeros(n_pairs, dtype=bool)
    return np.ones(n_pairs, dtype=bool)


# ------------------------------------------------------------------------------------------------
# Hugging Face transformers' inverse frequencies (modeling_rope_utils), float32 like its tensors
# ------------------------------------------------------------------------------------------------

def _hf_pow_f32(base: float, expo: np.ndarray) -> np.ndarray:
    """torch: ``base ** float32_tensor`` -> float32; modelled as float64 pow rounded to float32."""
    return np.power(np.float64(base), expo.astype(np.float64)).astype(f32)


def hf_default_inv_freq(dim: int, base: float) -> np.ndarray:
    """``1.0 / (base ** (arange(0, dim, 2).float() / dim))`` in float32."""
    expo = (np.arange(0, dim, 2).astype(f32) / f32(dim)).astype(f32)
    return (f32(1.0) / _hf_pow_f32(base, expo)).astype(f32)


def hf_linear_inv_freq(dim: int, base: float, factor: float) -> np.ndarray:
    return (hf_default_inv_freq(dim, base) / f32(factor)).astype(f32)


def hf_dynamic_base(base: float, dim: int, factor: float, max_position_embeddings: int, seq_len: int) -> float:
    """transformers' dynamic NTK: base * ((factor*L/max_pos) - (factor - 1)) ** (dim/(dim-2)), L = max(seq_len, max_pos).

    Python float64. Recomputed whenever the running sequence length grows past the cached length
    (``dynamic_rope_update``), so the frequencies depend on the *current* sequence length.
    """
    L = max(int(seq_len), int(max_position_embeddings))
    return float(base) * ((float(factor) * L / max_position_embeddings) - (float(factor) - 1)) ** (dim / (dim - 2))


def hf_dynamic_inv_freq(dim: int, base: float, factor: float, max_position_embeddings: int, seq_len: int) -> np.ndarray:
    return hf_default_inv_freq(dim, hf_dynamic_base(base, dim, factor, max_position_embeddings, seq_len))


def ntk_alpha_base(base: float, alpha: float, dim: int) -> np.float32:
    """NTK-aware (static) base change: base * alpha^(dim/(dim-2)), in float32 as llama.cpp computes
    it for ``rope.scaling.alpha`` (``powf(alpha, (float)dim/(float)(dim-2))``)."""
    e = f32(f32(dim) / f32(dim - 2))
    return f32(f32(base) * powf(f32(alpha), e))


def hf_yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def hf_yarn(dim: int, base: float, factor: float, original_max_position_embeddings: int,
            beta_fast: float = 32, beta_slow: float = 1, attention_factor: Optional[float] = None,
            mscale: Optional[float] = None, mscale_all_dim: Optional[float] = None,
            truncate: bool = True) -> "tuple[np.ndarray, float]":
    """transformers' ``_compute_yarn_parameters``: (inv_freq float32, attention_factor).

    low/high are float64 (math.log), floored/ceiled when ``truncate``; the ramp is float32.
    """
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(hf_yarn_get_mscale(factor, mscale) / hf_yarn_get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = hf_yarn_get_mscale(factor)

    def corr_dim(num_rot):
        return (dim * math.log(original_max_position_embeddings / (num_rot * 2 * math.pi))) / (2 * math.log(base))

    low, high = corr_dim(beta_fast), corr_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    expo = (np.arange(0, dim, 2).astype(f32) / f32(dim)).astype(f32)
    pos_freqs = _hf_pow_f32(base, expo)
    inv_extra = (f32(1.0) / pos_freqs).astype(f32)
    inv_inter = (f32(1.0) / (f32(factor) * pos_freqs).astype(f32)).astype(f32)
    lin = ((np.arange(dim // 2, dtype=f32) - f32(low)) / f32(high - low)).astype(f32)
    w = (f32(1) - np.clip(lin, f32(0), f32(1))).astype(f32)          # inv_freq_extrapolation_factor
    inv = ((inv_inter * (f32(1) - w)).astype(f32) + (inv_extra * w).astype(f32)).astype(f32)
    return inv, float(attention_factor)


def hf_longrope(dim: int, base: float, short_factor: Sequence[float], long_factor: Sequence[float],
                original_max_position_embeddings: int, max_position_embeddings: int,
                seq_len: Optional[int], factor: Optional[float] = None,
                attention_factor: Optional[float] = None) -> "tuple[np.ndarray, float]":
    """transformers' ``_compute_longrope_parameters``: long factors iff seq_len > original max (per call)."""
    if factor is None:
        factor = max_position_embeddings / original_max_position_embeddings
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original_max_position_embeddings))
    ext = np.asarray(long_factor if (seq_len and seq_len > original_max_position_embeddings) else short_factor, dtype=f32)
    expo = (np.arange(0, dim, 2).astype(f32) / f32(dim)).astype(f32)
    inv = (f32(1.0) / (ext * _hf_pow_f32(base, expo)).astype(f32)).astype(f32)
    return inv, float(attention_factor)


def hf_llama3_inv_freq(dim: int, base: float, factor: float = 8.0, low_freq_factor: float = 1.0,
                       high_freq_factor: float = 4.0, original_max_position_embeddings: int = 8192) -> np.ndarray:
    """transformers' ``_compute_llama3_parameters`` (float32 tensors)."""
    inv = hf_default_inv_freq(dim, base)
    old = original_max_position_embeddings
    low_wl = old / low_freq_factor
    high_wl = old / high_freq_factor
    wavelen = (f32(2 * math.pi) / inv).astype(f32)
    inv_l = np.where(wavelen > f32(low_wl), (inv / f32(factor)).astype(f32), inv).astype(f32)
    smooth = ((f32(old) / wavelen).astype(f32) - f32(low_freq_factor)).astype(f32) / f32(high_freq_factor - low_freq_factor)
    smooth = smooth.astype(f32)
    smoothed = (((f32(1) - smooth) * inv_l).astype(f32) / f32(factor)).astype(f32) + (smooth * inv_l).astype(f32)
    medium = ~(wavelen < f32(high_wl)) & ~(wavelen > f32(low_wl))
    return np.where(medium, smoothed.astype(f32), inv_l).astype(f32)


def llama3_rope_freqs(dim: int, base: float, factor: float = 8.0, low_freq_factor: float = 1.0,
                      high_freq_factor: float = 4.0, original_max_position_embeddings: int = 8192) -> np.ndarray:
    """The ``rope_freqs.weight`` tensor llama.cpp's converter writes for rope_type "llama3" (float32).

    For each pair: wavelen = 2*pi/freq; factor 1 if wavelen < old/high_freq_factor, ``factor`` if
    wavelen > old/low_freq_factor, else 1/((1-smooth)/factor + smooth) with
    smooth = (old/wavelen - low_freq_factor)/(high_freq_factor - low_freq_factor). ggml then divides
    theta by it (so inv_freq/ff equals HF's llama3 inv_freq up to rounding).
    """
    freqs = hf_default_inv_freq(dim, base)
    old = original_max_position_embeddings
    low_wl = old / low_freq_factor
    high_wl = old / high_freq_factor
    out = []
    for fr in freqs:
        wavelen = f32(f32(2 * math.pi) / fr)
        if wavelen < high_wl:
            out.append(1.0)
        elif wavelen > low_wl:
            out.append(factor)
        else:
            smooth = f32(f32(f32(old) / wavelen) - f32(low_freq_factor)) / f32(high_freq_factor - low_freq_factor)
            smooth = f32(smooth)
            out.append(float(f32(f32(1) / f32(f32(f32(1) - smooth) / f32(factor) + smooth))))
    return np.array(out, dtype=f32)


def apply_rope_hf(x, pos, inv_freq, attention_factor: float = 1.0, mode: str = "neox") -> np.ndarray:
    """transformers' apply_rotary_pos_emb on float32 (n_tokens, n_head, head_dim): theta = f32(pos*inv_freq),
    cos/sin (float64 then rounded) times attention_factor, ``q*cos + rotate_half(q)*sin`` unfused.
    ``mode="normal"`` applies the same angles to adjacent pairs (the layout after llama.cpp's Q/K permute)."""
    x = np.asarray(x, dtype=f32)
    pos = np.asarray(pos).reshape(-1)
    inv = np.asarray(inv_freq, dtype=f32)
    n_pairs = inv.size
    ang = (pos.astype(f32)[:, None] * inv[None, :]).astype(f32)
    c = (np.cos(ang.astype(np.float64)).astype(f32) * f32(attention_factor)).astype(f32)[:, None, :]
    s = (np.sin(ang.astype(np.float64)).astype(f32) * f32(attention_factor)).astype(f32)[:, None, :]
    if mode == "normal":
        i0, i1 = np.arange(n_pairs) * 2, np.arange(n_pairs) * 2 + 1
    else:
        i0, i1 = np.arange(n_pairs), np.arange(n_pairs) + n_pairs
    out = x.copy()
    x0, x1 = x[..., i0], x[..., i1]
    out[..., i0] = ((x0 * c).astype(f32) - (x1 * s).astype(f32)).astype(f32)
    out[..., i1] = ((x1 * c).astype(f32) + (x0 * s).astype(f32)).astype(f32)
    return out
