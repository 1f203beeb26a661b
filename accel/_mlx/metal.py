"""Optional Metal kernels (``mx.fast.metal_kernel``) for the hot types: Q4_0, Q8_0, Q4_K, Q6_K, IQ2_XXS.

Used by ``ggspec.accel.mlx_backend.Backend`` only when ``mx.metal.is_available()`` (Apple Silicon).
One GPU thread per output weight; each thread reads its block's fields and computes the value with
exactly the float32 operations of the MLX ops path (and of ggml's dequantize_row_*), in the same order.

What the GPU does not promise by itself is written out explicitly, so that the result is defined by
the source and not by the hardware:

* fp16 -> fp32 is built from bits (normal: re-biased exponent; Inf/NaN: quiet bit set, payload kept,
  as ggml's multiply by 2**-112 does on x86-64; subnormal: m * 2**-24, exact).
* ``x86_mul`` / ``x86_sub``: a NaN operand propagates quieted (the first one wins); Inf*0 and
  Inf-Inf give x86-64's default NaN 0xFFC00000; everything else is one IEEE float32 operation.
  The kernels are compiled in MLX's "safe" math mode and with ``#pragma clang fp contract(off)``
  so no a*b-c is fused into an FMA. No result of these types is subnormal (every scale is at least
  2**-24), so flush-to-zero cannot change a value.
* IQ2_XXS signs flip the sign bit (xor), as ggml's compiled code does.

Status: written and reviewed, but NOT run here (the development machine is Linux with MLX's CPU
build). tests/test_accel_mlx.py runs them against libggml wherever Metal exists and skips otherwise.
If a kernel fails to compile, the backend warns and falls back to the ops path.
"""

from __future__ import annotations

import warnings

import numpy as np
import mlx.core as mx

HEADER = r"""
#pragma clang fp contract(off)

inline float ggml_fp16_to_fp32(uint h) {
    uint sign = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1Fu;
    uint m = h & 0x3FFu;
    uint bits;
    if (e == 0u) {
        bits = as_type<uint>(float(m) * 0x1p-24f);          // subnormal fp16: exact, a normal float
    } else if (e == 31u) {
        bits = 0x7F800000u | (m << 13) | (m != 0u ? 0x00400000u : 0u);   // Inf; NaN quieted
    } else {
        bits = ((e + 112u) << 23) | (m << 13);
    }
    return as_type<float>(sign | bits);
}

inline bool bits_nan(uint u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }
inline bool bits_inf(uint u) { return (u & 0x7FFFFFFFu) == 0x7F800000u; }
inline bool bits_zero(uint u) { return (u & 0x7FFFFFFFu) == 0u; }

inline float x86_mul(float a, float b) {
    uint ua = as_type<uint>(a), ub = as_type<uint>(b);
    if (bits_nan(ua)) return as_type<float>(ua | 0x00400000u);
    if (bits_nan(ub)) return as_type<float>(ub | 0x00400000u);
    if ((bits_inf(ua) && bits_zero(ub)) || (bits_zero(ua) && bits_inf(ub))) return as_type<float>(0xFFC00000u);
    return a * b;
}

inline float x86_sub(float a, float b) {
    uint ua = as_type<uint>(a), ub = as_type<uint>(b);
    if (bits_nan(ua)) return as_type<float>(ua | 0x00400000u);
    if (bits_nan(ub)) return as_type<float>(ub | 0x00400000u);
    if (bits_inf(ua) && bits_inf(ub) && ((ua ^ ub) & 0x80000000u) == 0u) return as_type<float>(0xFFC00000u);
    return a - b;
}

inline uint rd_u16(const device uint8_t * p) { return uint(p[0]) | (uint(p[1]) << 8); }
inline uint rd_u32(const device uint8_t * p) {
    return uint(p[0]) | (uint(p[1]) << 8) | (uint(p[2]) << 16) | (uint(p[3]) << 24);
}
"""

# Each body: gid = weight index; `blocks` the raw bytes; `y` the float32 output.
SOURCES = {
    "Q4_0": (32, 18, r"""
        const device uint8_t * b = blocks + (gid / 32) * 18;
        uint j = gid % 32;
        float d = ggml_fp16_to_fp32(rd_u16(b));
        uint byte = b[2 + (j % 16)];
        int q = int(j < 16 ? (byte & 0xFu) : (byte >> 4)) - 8;
        y[gid] = x86_mul(float(q), d);                                  // x0*d
    """),
    "Q8_0": (32, 34, r"""
        const device uint8_t * b = blocks + (gid / 32) * 34;
        uint j = gid % 32;
        float d = ggml_fp16_to_fp32(rd_u16(b));
        int q = int(as_type<char>(b[2 + j]));
        y[gid] = x86_mul(float(q), d);                                  // qs[j]*d
    """),
    "Q4_K": (256, 144, r"""
        const device uint8_t * b = blocks + (gid / 256) * 144;
        uint j = gid % 256;
        float d = ggml_fp16_to_fp32(rd_u16(b));
        float dmin = ggml_fp16_to_fp32(rd_u16(b + 2));
        const device uint8_t * s = b + 4;
        uint c = j / 64, h = (j / 32) % 2, l = j % 32, is = 2 * c + h;
        uint sc, m;                                                     // get_scale_min_k4(is)
        if (is < 4) { sc = s[is] & 63u; m = s[is + 4] & 63u; }
        else { sc = (s[is + 4] & 0xFu) | ((s[is - 4] >> 6) << 4); m = (s[is + 4] >> 4) | ((s[is] >> 6) << 4); }
        float d1 = x86_mul(d, float(sc));
        float m1 = x86_mul(dmin, float(m));
        uint q = (uint(b[16 + c * 32 + l]) >> (4 * h)) & 0xFu;
        y[gid] = x86_sub(x86_mul(d1, float(q)), m1);                    // d1 * q - m1
    """),
    "Q6_K": (256, 210, r"""
        const device uint8_t * b = blocks + (gid / 256) * 210;
        uint j = gid % 256;
        float d = ggml_fp16_to_fp32(rd_u16(b + 208));
        uint n = j / 128, k = (j % 128) / 32, l = j % 32;
        uint lo = (uint(b[n * 64 + (k % 2) * 32 + l]) >> (4 * (k / 2))) & 0xFu;
        uint hi = (uint(b[128 + n * 32 + l]) >> (2 * k)) & 3u;
        int q = int(lo | (hi << 4)) - 32;
        int sc = int(as_type<char>(b[192 + j / 16]));
        y[gid] = x86_mul(x86_mul(d, float(sc)), float(q));              // d * sc[is] * q
    """),
    "IQ2_XXS": (256, 66, r"""
        const device uint8_t * b = blocks + (gid / 256) * 66;
        uint j = gid % 256;
        float d = ggml_fp16_to_fp32(rd_u16(b));
        uint ib = j / 32, l = (j % 32) / 8, k = j % 8;
        const device uint8_t * q = b + 2 + 8 * ib;
        uint a1 = rd_u32(q + 4);
        float db = x86_mul(x86_mul(d, 0.5f + float(a1 >> 28)), 0.25f);
        uint g = grid[uint(q[l]) * 8 + k];
        uint signs = ksigns[(a1 >> (7 * l)) & 127u];
        float v = x86_mul(db, float(g));
        y[gid] = as_type<float>(as_type<uint>(v) ^ (((signs >> k) & 1u) << 31));   // sign bit flipped
    """),
}


def kernel_body(name: str) -> str:
    """The Metal function body of a type's kernel (its own block, so the pragma may open it)."""
    return ("{\n    #pragma clang fp contract(off)\n    uint gid = thread_position_in_grid.x;\n"
            + SOURCES[name][2] + "}\n")


class MetalDequantizers:
    """Compiled-on-first-use Metal kernels for the hot types."""

    def __init__(self):
        self._kernels: dict = {}
        self._broken: set = set()
        self._tables = None

    def supports(self, name: str) -> bool:
        return name in SOURCES and name not in self._broken

    def _kernel(self, name):
        if name not in self._kernels:
            extra = ["grid", "ksigns"] if name == "IQ2_XXS" else []
            body = kernel_body(name)
            self._kernels[name] = mx.fast.metal_kernel(
                name=f"ggspec_dequantize_{name.lower()}", input_names=["blocks"] + extra, output_names=["y"],
                source=body, header=HEADER, ensure_row_contiguous=True,
                compile_options={"math_mode": "safe"})
        return self._kernels[name]

    def _iq2_tables(self):
        if self._tables is None:
            from ...reference import grids as G
            grid = np.asarray(G.iq2xxs_grid, dtype="<u8").view(np.uint8)
            self._tables = [mx.array(grid), mx.array(np.asarray(G.ksigns_iq2xs, np.uint8))]
        return self._tables

    def dequantize(self, name: str, blocks: np.ndarray, n: int):
        """float32 numpy array, or None if the kernel could not run (the caller falls back)."""
        try:
            inputs = [mx.array(blocks.reshape(-1))]
            if name == "IQ2_XXS":
                inputs += self._iq2_tables()
            (y,) = self._kernel(name)(
                inputs=inputs, grid=(n, 1, 1), threadgroup=(256, 1, 1),
                output_shapes=[(n,)], output_dtypes=[mx.float32], stream=mx.gpu)
            mx.eval(y)
            return np.array(memoryview(y), dtype=np.float32, copy=True)
        except Exception as e:  # a compile or launch failure must not lose the result
            self._broken.add(name)
            warnings.warn(f"ggspec mlx backend: Metal kernel for {name} failed ({e}); using the MLX ops path")
            return None
