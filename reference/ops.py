"""The element-wise and row kernels of ggml's CPU backend that a forward pass uses, bit-exact to the
portable build of llama.cpp (x86-64 baseline: SSE2, no FMA, no F16C, ``-ffp-contract=off``).

In that build ``GGML_SIMD`` is undefined, so most of ggml-cpu runs plain C loops. Three kernels keep
an ``__SSE2__`` path, which is part of every x86-64 CPU and therefore of the definition:

================================  ===========================================================
kernel (ggml-cpu/vec.cpp, vec.h)   what runs, in this order
================================  ===========================================================
``ggml_vec_soft_max_f32``          4 values at a time: ``ggml_v_expf(x - max)`` (SSE2 polynomial,
                                   below), their sum as ``(v0+v1) + (v2+v3)`` in float, added to a
                                   double; the last ``n % 4`` values: libm ``expf``, one by one.
``ggml_vec_silu_f32``              4 at a time: ``x / (1 + ggml_v_expf(0 - x))``; the rest:
                                   ``x / (1.0f + expf(-x))`` with libm ``expf``.
``ggml_vec_swiglu_f32``            as silu, times ``g`` (one float multiply).
================================  ===========================================================

``ggml_v_expf`` (the ARM optimized-routines expf, SSE2 version, without FMA: every ``MADD`` is a
float multiply then a float add) -- see :func:`v_expf`.

Everything else here is a plain C loop:

* ``rms_norm`` (+ the ``mul`` by the weight, fused or not: the same float operations)::

      sum   = 0.0 (double);  sum += (double)(x[i]*x[i])      sequentially
      mean  = (float)(sum / n)
      scale = 1.0f / sqrtf(mean + eps)
      y[i]  = (x[i] * scale) * w[i]

* ``soft_max_ext(x, mask, scale)`` (ggml_compute_forward_soft_max_f32, ALiBi off: slope = 1)::

      w[i] = x[i] * scale;  w[i] += 1.0f * mask[i]
      max  = max_i w[i]      (sequential MAX)
      sum  = ggml_vec_soft_max_f32(w, max)   -> y[i] = exp(w[i] - max)
      y[i] *= (float)(1.0 / sum)             (the reciprocal in double, rounded to float once)

* ``add``, ``mul``: one float operation per element (numpy float32 does the same).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

from ..errors import GGSpecError

f32 = np.float32
u32 = np.uint32


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=f32).view(u32)


def _float(w) -> np.ndarray:
    return np.asarray(w, dtype=u32).view(f32)


# ------------------------------------------------------------------------------------------------
# libm expf (the scalar tails call the C library's expf)
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _libm_expf():
    name = ctypes.util.find_library("m")
    try:
        lib = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        fn = lib.expf
    except (OSError, AttributeError) as e:
        raise GGSpecError(f"bit-exact softmax/silu need the C library's expf (ctypes): {e}") from e
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return fn


def expf(x) -> np.ndarray:
    """The C library's ``expf``, element by element (glibc's is not correctly rounded in every case)."""
    x = np.asarray(x, dtype=f32)
    fn = _libm_expf()
    flat = x.reshape(-1)
    return np.fromiter((fn(float(v)) for v in flat), dtype=f32, count=flat.size).reshape(x.shape)


# ------------------------------------------------------------------------------------------------
# ggml_v_expf, SSE2 without FMA (ggml-cpu/vec.h)
# ------------------------------------------------------------------------------------------------

_R = f32(float.fromhex("0x1.8p23"))
_LOG2E = f32(float.fromhex("0x1.715476p+0"))
_LN2_HI = f32(float.fromhex("0x1.62e4p-1"))
_LN2_LO = f32(float.fromhex("0x1.7f7d1cp-20"))
_C5, _C4 = f32(float.fromhex("0x1.0e4020p-7")), f32(float.fromhex("0x1.573e2ep-5"))
_C3, _C2 = f32(float.fromhex("0x1.555e66p-3")), f32(float.fromhex("0x1.fffdb6p-2"))
_C1 = f32(float.fromhex("0x1.ffffecp-1"))


def v_expf(x) -> np.ndarray:
    """``ggml_v_expf`` lane by lane (each lane is independent; the all-lanes shortcut in C returns
    the same value as the general blend for lanes with ``|n| <= 126``)::

        z = x*log2e + 0x1.8p23          n = z - 0x1.8p23
        b = (x - n*ln2_hi) - n*ln2_lo   e = bits(z) << 23        k = float(e + bits(1.0f))
        u = b*b
        j = ((c5*b + c4)*u + (c3*b + c2))*u + c1*b
        |n| <= 126:  k*j + k
        |n| >  192:  s1*s1                     (s1 = float(g + 0x7f000000), g = n <= 0 ? 0x82000000 : 0)
        otherwise:   (s2*j + s2)*s1            (s2 = float(e - g))
    """
    x = np.asarray(x, dtype=f32)
    with np.errstate(all="ignore"):
        z = x * _LOG2E + _R
        n = z - _R
        b = (x - n * _LN2_HI) - n * _LN2_LO
        e = (_bits(z) << u32(23)).astype(u32)
        k = _float(e + _bits(f32(1.0)))
        an = np.abs(n)
        c = an > f32(126)
        u = b * b
        j = ((_C5 * b + _C4) * u + (_C3 * b + _C2)) * u + _C1 * b
        g = np.where(n <= f32(0), u32(0x82000000), u32(0)).astype(u32)
        s1 = _float((g + u32(0x7F000000)).astype(u32))
        s2 = _float((e - g).astype(u32))
        d = an > f32(192)
        out = np.where(d, s1 * s1, np.where(c, (s2 * j + s2) * s1, k * j + k))
    return out.astype(f32)


# ------------------------------------------------------------------------------------------------
# row kernels
# ------------------------------------------------------------------------------------------------

def vec_soft_max(w: np.ndarray, mx: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """``ggml_vec_soft_max_f32`` on rows: ``w`` float32 (rows, n), ``mx`` float32 (rows,).

    Returns ``y`` (rows, n) float32 = exp(w - max) and ``sum`` (rows,) float64 in ggml's order.
    """
    w = np.asarray(w, dtype=f32)
    rows, n = w.shape
    n4 = n - n % 4
    y = np.empty_like(w)
    s = np.zeros(rows, dtype=np.float64)
    with np.errstate(all="ignore"):
        d = w[:, :n4] - mx[:, None]
        v = v_expf(d)
    y[:, :n4] = v
    if n4:
        v4 = v.reshape(rows, n4 // 4, 4)
        part = (v4[:, :, 0] + v4[:, :, 1]) + (v4[:, :, 2] + v4[:, :, 3])   # float32, per group of 4
        for gi in range(part.shape[1]):                                     # double, sequential
            s += part[:, gi].astype(np.float64)
    for i in range(n4, n):                                                   # scalar tail: libm expf
        with np.errstate(all="ignore"):
            t = expf(w[:, i] - mx)
        y[:, i] = t
        s += t.astype(np.float64)
    return y, s


def soft_max_ext(x, mask=None, scale: float = 1.0) -> np.ndarray:
    """``ggml_soft_max_ext(x, mask, scale, max_bias=0)`` over the last axis; ``x`` float32 (..., n);
    ``mask`` float32 broadcastable to ``x`` (a float16 mask is converted exactly first), or None."""
    x = np.asarray(x, dtype=f32)
    shape = x.shape
    with np.errstate(all="ignore"):       # overflow to Inf is part of the semantics
        w = (x * f32(scale)).astype(f32)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == np.float16:
            m = m.astype(f32)
        with np.errstate(all="ignore"):
            w = (w + f32(1.0) * np.broadcast_to(m.astype(f32), shape)).astype(f32)
    w2 = w.reshape(-1, shape[-1])
    if not np.isnan(w2).any():
        mx = np.max(w2, axis=1) if shape[-1] else np.full(w2.shape[0], -np.inf, f32)
    else:
        # ggml_vec_max_f32: max = -INFINITY; max = MAX(max, x[i]) with MAX(a, b) = a > b ? a : b, so a
        # NaN is taken and forgotten again at the next element (only a NaN in the last place stays);
        # np.max would keep any NaN (and not its bits)
        mx = np.full(w2.shape[0], -np.inf, f32)
        for i in range(shape[-1]):
            mx = np.where(mx > w2[:, i], mx, w2[:, i])
    y, s = vec_soft_max(w2, mx.astype(f32))
    inv = (1.0 / s).astype(f32)            # sum = 1.0/sum (double); ggml_vec_scale_f32 takes a float
    return (y * inv[:, None]).astype(f32).reshape(shape)


def silu(x) -> np.ndarray:
    """``ggml_vec_silu_f32`` along the last axis (SSE2 groups of 4, libm tail)."""
    x = np.asarray(x, dtype=f32)
    n = x.shape[-1]
    n4 = n - n % 4
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        a = x[..., :n4]
        out[..., :n4] = a / (f32(1) + v_expf(f32(0) - a))
        if n4 < n:
            t = x[..., n4:]
            out[..., n4:] = t / (f32(1.0) + expf(-t))
    return out


def swiglu(x, g) -> np.ndarray:
    """``ggml_vec_swiglu_f32``: ``silu(x) * g`` along the last axis."""
    with np.errstate(all="ignore"):
        return (silu(x) * np.asarray(g, dtype=f32)).astype(f32)


def rms_norm(x, eps: float, w=None) -> np.ndarray:
    """``ggml_rms_norm(x, eps)`` (and ``ggml_mul`` by ``w`` when given) over the last axis."""
    x = np.asarray(x, dtype=f32)
    n = x.shape[-1]
    sq = (x * x).astype(f32).astype(np.float64)
    acc = np.zeros(x.shape[:-1], dtype=np.float64)
    for i in range(n):                          # sequential double sum, as the C loop
        acc += sq[..., i]
    mean = (acc / n).astype(f32)
    with np.errstate(all="ignore"):
        scale = (f32(1.0) / np.sqrt((mean + f32(eps)).astype(f32))).astype(f32)
        y = (x * scale[..., None]).astype(f32)
        if w is not None:
            y = (y * np.asarray(w, dtype=f32)).astype(f32)
    return y


def fwht(x, n: int) -> np.ndarray:
    """``ggml_compute_forward_fwht`` (a ``mul_mat`` with a Hadamard matrix hinted
    ``GGML_HINT_SRC0_IS_HADAMARD``) on each run of ``n`` values along the last axis:
    ``y = x * (1.0f/sqrtf(n))``, then butterflies ``(u, v) -> (u + v, u - v)`` for
    ``len = 1, 2, 4, ..., n/2`` in float (the scalar passes; no SIMD in the portable build)."""
    x = np.asarray(x, dtype=f32)
    shape = x.shape
    if shape[-1] % n or n & (n - 1):
        raise GGSpecError(f"fwht: size {n} must be a power of two dividing {shape[-1]}")
    scale = f32(f32(1.0) / np.sqrt(f32(n)))
    y = (x.reshape(-1, n) * scale).astype(f32)
    length = 1
    with np.errstate(all="ignore"):
        while length < n:
            y = y.reshape(-1, n // (2 * length), 2, length)
            u, v = y[:, :, 0, :].copy(), y[:, :, 1, :].copy()
            y[:, :, 0, :] = u + v
            y[:, :, 1, :] = u - v
            y = y.reshape(-1, n)
            length <<= 1
    return y.reshape(shape).astype(f32)
