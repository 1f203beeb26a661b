"""ggml_mul_mat: the reference (ggspec.reference.matmul) against llama.cpp's portable build, bit for bit.

The oracle is ``ggml_mul_mat`` of the portable llama-cpp-python 0.3.36 build (no SIMD, no llamafile,
no repacking, no FMA contraction), run in a child process (``portable`` fixture;
conformance/ggml_graph.py ``mul_mat_typed``). Bit-exact means equal uint32 views of the float32
results. Weights are random blocks: random bytes with the scale fields set to chosen fp16 values
(so every grid index, sign and sub-scale occurs), and, for the types with a fast reference
quantizer, quantized random floats.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec.errors import ShapeError, UnsupportedTypeError
from ggspec.reference import get_type, quantize
from ggspec.reference import matmul as M

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4", "NVFP4",
         "Q1_0", "Q2_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0", "TQ2_0", "IQ2_XXS", "IQ2_XS",
         "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_XS"]

# byte offsets of the fp16 scale fields in each block (ggml-common.h); every other byte is random
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "IQ4_NL": [0], "Q1_0": [0],
    "Q2_0": [0], "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "TQ1_0": [52], "TQ2_0": [64], "IQ2_XXS": [0], "IQ2_XS": [0], "IQ2_S": [0], "IQ3_XXS": [0],
    "IQ3_S": [0], "IQ1_S": [0], "IQ4_XS": [0],
}
# types whose reference quantizer is quick enough to make realistic weights here
QUANTIZABLE = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0",
               "TQ2_0", "IQ4_NL", "MXFP4", "Q1_0", "Q2_0"}


def _scales(rng, shape, kind: str) -> np.ndarray:
    """fp16 scales: 'normal' (~0.02), 'wide' (zeros, subnormals, up to 6e4, both signs)."""
    if kind == "normal":
        v = rng.standard_normal(shape) * 0.02
    else:
        v = rng.choice([0.0, -0.0, 6e-8, -3e-6, 1e-3, 0.5, -2.0, 300.0, 6e4], size=shape)
        v = v * rng.uniform(0.5, 1.0, size=shape)
    return v.astype(np.float16)


def make_weights(rng, w_type: str, n_out: int, n_in: int, kind: str = "normal") -> bytes:
    t = get_type(w_type)
    if kind == "raw":                            # every byte random: NaN and Inf scales with any payload
        return rng.integers(0, 256, size=n_out * n_in // t.block_size * t.type_size, dtype=np.uint8).tobytes()
    if w_type in ("F32", "F16", "BF16"):
        w = rng.standard_normal((n_out, n_in)).astype(np.float32) * np.float32(0.05)
        if kind == "wide":
            w *= rng.choice(np.array([0.0, 1e-30, 1.0, 1e3, 1e30], np.float32), size=(n_out, n_in))
        if kind == "cancel":   # see make_x: the products cancel exactly but for one small one
            h = n_in // 2
            a = rng.choice([-1.0, 1.0], size=(n_out, h)) * 2.0 ** rng.integers(-20, 16, size=(n_out, h))
            b = -a
            b[:, -1] = 2.0 ** -10
            w = np.concatenate([a, b], axis=1).astype(np.float32)
        if w_type == "F32":
            return w.tobytes()
        if w_type == "F16":
            return w.astype(np.float16).tobytes()
        return (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()   # truncated: any bf16 is a weight
    if kind == "quantized":
        w = rng.standard_normal((n_out, n_in)).astype(np.float32)
        return quantize(w_type, w)
    nb = n_in // t.block_size
    raw = rng.integers(0, 256, size=(n_out, nb, t.type_size), dtype=np.uint8)
    for off in F16_FIELDS.get(w_type, []):
        raw[..., off:off + 2] = _scales(rng, (n_out, nb), kind).view(np.uint8).reshape(n_out, nb, 2)
        if kind == "nan":   # a quarter of the scales: NaNs with random payloads and signs, or +-Inf
            bits = (rng.integers(0, 2, (n_out, nb)) << 15) | 0x7C00 | rng.integers(0, 1024, (n_out, nb))
            sel = rng.random((n_out, nb)) < 0.25
            cur = raw[..., off:off + 2].copy().view("<u2")[..., 0]
            raw[..., off:off + 2] = np.where(sel, bits, cur).astype("<u2").view(np.uint8).reshape(n_out, nb, 2)
    if w_type == "MXFP4":                        # e8m0 exponent: keep it finite (255 is Inf)
        raw[..., 0] = rng.integers(100, 140, size=(n_out, nb)) if kind == "normal" else rng.integers(0, 255, size=(n_out, nb))
    if w_type == "NVFP4" and kind == "normal":   # ue4m3 sub-block scales of moderate size
        raw[..., 0:4] = rng.integers(0x20, 0x48, size=(n_out, nb, 4))
    if w_type == "IQ1_M":                        # the fp16 scale lives in the top nibbles of 4 uint16
        s = _scales(rng, (n_out, nb), kind).view(np.uint16).astype(np.int64)
        sc = raw[..., 48:56].copy().view("<u2").astype(np.int64)
        sc = (sc & 0x0FFF) | (((s[..., None] >> (4 * np.arange(4))) & 0xF) << 12)
        raw[..., 48:56] = sc.astype("<u2").view(np.uint8)
    return raw.tobytes()


def make_x(rng, n: int, n_in: int, kind: str = "normal") -> np.ndarray:
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    if kind == "cancel":   # both halves equal: with make_weights' "cancel" rows (second half = -first),
        h = (rng.choice([-1.0, 1.0], size=(n, n_in // 2)) * 2.0 ** rng.integers(-20, 16, size=(n, n_in // 2))
             * rng.uniform(1, 2, size=(n, n_in // 2)))   # products 2**-40 .. 2**32 whose exact sum is ~0:
        return np.concatenate([h, h], axis=1).astype(np.float32)   # the result is the rounding of the double
                                                                    # additions, so their order shows
    if kind == "nan":      # NaN and +-Inf activations (Q8 scales become NaN / Inf)
        x[rng.random((n, n_in)) < 0.02] = np.nan
        x[rng.random((n, n_in)) < 0.02] = np.inf
        x[rng.random((n, n_in)) < 0.01] = -np.inf
        last = x[:, 31::32]                              # Q8_0's amax (MAX(a, b) = a > b ? a : b) keeps a
        last[rng.random(last.shape) < 0.3] = np.nan      # NaN only when no value follows it in the block
        return x
    if kind == "wide":
        row_scale = rng.choice(np.array([0.0, 1e-40, 1e-20, 1.0, 1e4, 1e30], np.float32), size=(n, 1))
        x = x * row_scale
        x[rng.random((n, n_in)) < 0.1] = 0.0
        if n > 2:
            x[1, :] = 0.0                                        # an all-zero row
            x[2, : n_in // 2] = -0.0
    return x


def _bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same(ref, got, what: str):
    assert ref.shape == got.shape, (what, ref.shape, got.shape)
    bad = np.argwhere(_bits(ref) != _bits(got))
    if bad.size:
        t, o = bad[0]
        pytest.fail(f"{what}: {len(bad)} of {ref.size} outputs differ; first [{t}, {o}]: "
                    f"reference {ref[t, o]!r} ({_bits(ref)[t, o]:#010x}), ggml {got[t, o]!r} ({_bits(got)[t, o]:#010x})")


def _blocks_for(w_type: str, n_blocks: int) -> int:
    """n_in for ``n_blocks`` weight blocks (at least one activation block)."""
    t = get_type(w_type)
    vb = {"Q8_0": 32, "Q8_1": 32, "Q8_K": 256}.get(M.vec_dot_type(w_type), 1)
    bs = max(t.block_size, vb)
    return bs * n_blocks if t.block_size > 1 else 32 * n_blocks


def oracle_mul_mat(portable, w_type, raw, n_out, n_in, x, n_threads=1):
    return portable.call("ggspec.conformance.ggml_graph", "op", "mul_mat_typed", w_type, raw, n_out, n_in, x,
                         n_threads=n_threads)


# ---------------------------------------------------------------------------------------------
# no oracle

def test_vec_dot_type_table_matches_vendored_source(llama_cpp_vendor):
    """VEC_DOT_TYPE is type_traits_cpu's vec_dot_type, read from the pinned ggml-cpu.c."""
    src = (llama_cpp_vendor / "ggml" / "src" / "ggml-cpu" / "ggml-cpu.c").read_text()
    table = src[src.index("type_traits_cpu[GGML_TYPE_COUNT] = {") + len("type_traits_cpu[GGML_TYPE_COUNT] = {"):]
    table = table[:table.index("};")]
    found = {}
    for m in re.finditer(r"\[GGML_TYPE_(\w+)\]\s*=\s*\{(.*?)\n    \}", table, re.S):
        body = m.group(2)
        vd = re.search(r"^\s*\.vec_dot\s*=", body, re.M)
        vdt = re.search(r"\.vec_dot_type\s*=\s*GGML_TYPE_(\w+)", body)
        if vd and vdt:
            found[m.group(1)] = vdt.group(1)
    assert found == M.VEC_DOT_TYPE


def test_errors():
    x = np.zeros((2, 64), np.float32)
    with pytest.raises(ShapeError):
        M.mul_mat("Q8_0", b"\0" * 33, 1, 64, x)               # wrong byte count
    with pytest.raises(ShapeError):
        M.mul_mat("Q8_0", b"\0" * 34, 1, 32, x)               # x has the wrong width
    with pytest.raises(ShapeError):
        M.mul_mat("Q4_K", b"\0" * 144, 1, 250, np.zeros((1, 250), np.float32))
    with pytest.raises(ShapeError):
        M.mul_mat("F32", b"\0" * 256, 1, 64, x.astype(np.float64))
    with pytest.raises(UnsupportedTypeError):
        M.mul_mat("Q8_K", b"\0" * 292, 1, 256, np.zeros((1, 256), np.float32))
    with pytest.raises(UnsupportedTypeError):
        M.vec_dot_type("I32")
    with pytest.raises(UnsupportedTypeError):
        M.mul_mat("Q4_2", b"", 0, 32, np.zeros((0, 32), np.float32))
    assert M.mul_mat("Q8_0", b"", 0, 64, x).shape == (2, 0)
    assert M.mul_mat("Q8_0", b"\0" * 68, 1, 64, np.zeros((0, 64), np.float32)).shape == (0, 1)


def test_quantize_activations_formats():
    x = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    assert len(M.quantize_activations("Q8_0", x)) == 3 * 16 * 34
    assert len(M.quantize_activations("Q8_1", x)) == 3 * 16 * 36
    assert len(M.quantize_activations("Q8_K", x)) == 3 * 2 * 292
    assert len(M.quantize_activations("F16", x)) == 3 * 512 * 2
    with pytest.raises(ShapeError):
        M.quantize_activations("Q8_K", x[:, :32])


@pytest.mark.oracle
@pytest.mark.parametrize("vdt", ["Q8_0", "Q8_1", "Q8_K"])
def test_quantize_activations_equal_ggml_ref(oracle, vdt):
    """The from_float step equals ggml's quantize_row_*_ref (wide magnitudes, zero blocks, -0)."""
    rng = np.random.default_rng(1)
    x = make_x(rng, 9, 512, "wide")
    assert M.quantize_activations(vdt, x) == oracle.from_float_ref(vdt, x)


@pytest.mark.oracle
@pytest.mark.parametrize("vdt", ["F16", "BF16"])
def test_quantize_activations_fp16_bf16_equal_ggml(oracle, vdt):
    rng = np.random.default_rng(2)
    x = make_x(rng, 9, 256, "wide")
    x[0, :4] = [np.inf, -np.inf, 7e4, -1e-8]
    assert M.quantize_activations(vdt, x) == oracle.quantize(vdt, x)


# ---------------------------------------------------------------------------------------------
# the portable oracle

@pytest.mark.oracle
def test_oracle_is_the_portable_build(portable):
    """llama_print_system_info of the oracle: no SIMD extension, no llamafile, no repacking."""
    info = portable.system_info()
    for feat in ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "AVX512", "LLAMAFILE", "REPACK"):
        assert f"{feat} = 1" not in info, info


CASES = [  # (n tokens, n_out, n weight blocks, weights kind, x kind)
    (1, 1, 1, "normal", "normal"),
    (2, 5, 2, "normal", "wide"),
    (17, 33, 3, "wide", "wide"),
    (70, 40, 2, "normal", "normal"),
]


@pytest.mark.oracle
@pytest.mark.parametrize("w_type", TYPES)
def test_mul_mat_bit_exact(portable, w_type):
    rng = np.random.default_rng(zlib.crc32(w_type.encode()))
    cases = list(CASES)
    if w_type in QUANTIZABLE:
        cases.append((16, 24, 2, "quantized", "normal"))
    if w_type in ("F32", "F16", "BF16"):   # sums whose bits depend on the order of the double additions
        cases += [(9, 20, 8, "cancel", "cancel"), (3, 7, 1, "cancel", "cancel")]
    for n, n_out, nbk, wkind, xkind in cases:
        n_in = _blocks_for(w_type, nbk)
        raw = make_weights(rng, w_type, n_out, n_in, wkind)
        x = make_x(rng, n, n_in, xkind)
        ref = M.mul_mat(w_type, raw, n_out, n_in, x)
        got = oracle_mul_mat(portable, w_type, raw, n_out, n_in, x)
        assert_same(ref, got, f"{w_type} n={n} n_out={n_out} n_in={n_in} w={wkind} x={xkind}")


@pytest.mark.oracle
@pytest.mark.parametrize("w_type", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("n_in", [1, 7, 13, 65])
def test_mul_mat_float_any_width(portable, w_type, n_in):
    """F32/F16/BF16 have no blocks: any n_in (attention's kq @ v has n_in = n_kv)."""
    rng = np.random.default_rng(n_in)
    for n, n_out, wkind, xkind in ((5, 9, "normal", "normal"), (17, 3, "wide", "wide"), (4, 6, "raw", "nan")):
        raw = make_weights(rng, w_type, n_out, n_in, wkind)
        x = make_x(rng, n, n_in, xkind)
        assert_same(M.mul_mat(w_type, raw, n_out, n_in, x), oracle_mul_mat(portable, w_type, raw, n_out, n_in, x),
                    f"{w_type} n={n} n_out={n_out} n_in={n_in} w={wkind} x={xkind}")


@pytest.mark.oracle
@pytest.mark.parametrize("w_type", TYPES)
def test_mul_mat_bit_exact_nan_inf(portable, w_type):
    """NaN and Inf everywhere: random bytes as weights (NaN scales with any payload), NaN/Inf
    activations. The NaN that comes out is the one x86 propagates in ggml's compiled code."""
    rng = np.random.default_rng(zlib.crc32(w_type.encode()) + 1)
    for n, n_out, nbk, wkind, xkind in ((9, 13, 2, "raw", "normal"), (9, 13, 3, "raw", "nan"),
                                        (12, 10, 2, "nan", "nan"), (5, 40, 1, "raw", "wide"),
                                        (7, 9, 3, "nan", "normal")):
        n_in = _blocks_for(w_type, nbk)
        raw = make_weights(rng, w_type, n_out, n_in, wkind)
        x = make_x(rng, n, n_in, xkind)
        ref = M.mul_mat(w_type, raw, n_out, n_in, x)
        got = oracle_mul_mat(portable, w_type, raw, n_out, n_in, x)
        assert_same(ref, got, f"{w_type} n={n} n_out={n_out} n_in={n_in} w={wkind} x={xkind}")


@pytest.mark.oracle
@pytest.mark.parametrize("w_type", TYPES)
def test_mul_mat_same_for_one_and_two_threads(portable, w_type):
    """ggml's result does not depend on the thread count (chunking by rows and by tokens)."""
    rng = np.random.default_rng(7)
    for n, n_out in ((40, 64), (3, 70)):
        n_in = _blocks_for(w_type, 2)
        raw = make_weights(rng, w_type, n_out, n_in)
        x = make_x(rng, n, n_in)
        one = oracle_mul_mat(portable, w_type, raw, n_out, n_in, x, n_threads=1)
        two = oracle_mul_mat(portable, w_type, raw, n_out, n_in, x, n_threads=2)
        assert_same(one, two, f"{w_type}: 1 vs 2 threads, n={n}")
        assert_same(M.mul_mat(w_type, raw, n_out, n_in, x), two, f"{w_type}: reference vs 2 threads")


@pytest.mark.oracle
@given(w_type=st.sampled_from(TYPES), n=st.integers(1, 72), n_out=st.integers(1, 48),
       n_blocks=st.integers(1, 4), wkind=st.sampled_from(["normal", "wide", "raw", "nan"]),
       xkind=st.sampled_from(["normal", "wide", "nan"]), seed=st.integers(0, 2**32 - 1))
def test_mul_mat_random_shapes(portable, w_type, n, n_out, n_blocks, wkind, xkind, seed):
    rng = np.random.default_rng(seed)
    n_in = _blocks_for(w_type, n_blocks)
    raw = make_weights(rng, w_type, n_out, n_in, wkind)
    x = make_x(rng, n, n_in, xkind)
    assert_same(M.mul_mat(w_type, raw, n_out, n_in, x), oracle_mul_mat(portable, w_type, raw, n_out, n_in, x),
                f"{w_type} n={n} n_out={n_out} n_in={n_in} w={wkind} x={xkind}")
