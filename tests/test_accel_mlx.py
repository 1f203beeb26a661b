"""The MLX backend (ggspec.accel.mlx_backend): every dequantizer bit-exact.

* oracle-marked hypothesis differential tests against live libggml for every type: random block
  bytes (scale fields drawn to include subnormals, Inf and NaN) and ggml's own quantized blocks;
* oracle-free: the embedded golden vectors through the conformance runner; the plain types
  (F32, F64, I8..I64, which have no ggml to_float) against the C casts numpy performs; MLX's CPU
  float arithmetic is IEEE (no flush-to-zero); the import error when mlx is missing.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="mlx is not installed (pip install 'mlx[cpu]'); the mlx backend cannot run")

from hypothesis import given, settings, strategies as st  # noqa: E402

from ggspec import accel  # noqa: E402
from ggspec.accel import mlx_backend  # noqa: E402
from ggspec.conformance import adapters, runner, vectors  # noqa: E402
from ggspec.conformance.compare import assert_bits_equal, assert_bytes_equal  # noqa: E402
from ggspec.conformance.strategies import block_bytes, imatrices, rows  # noqa: E402
from ggspec.reference.types import LIVE_TYPES, get_type  # noqa: E402

TO_FLOAT = [t for t in LIVE_TYPES if t.to_float or t.name == "Q8_K"]        # the oracle can dequantize
PLAIN = ["F32", "F64", "I8", "I16", "I32", "I64"]                              # C casts, no to_float
HOT = ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ2_XXS"]
NUMPY_CAST = {"F32": "<f4", "F64": "<f8", "I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}


@pytest.fixture(scope="module")
def mlx():
    return accel.backend("mlx")


def _c_cast(name, raw):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.frombuffer(raw, dtype=NUMPY_CAST[name]).astype(np.float32)


def _q8_1_as_q8_0(raw):
    """Q8_1 blocks (d, s, qs) -> Q8_0 blocks (d, qs): ggml's Q8_1 value is d*qs."""
    a = np.frombuffer(raw, np.uint8).reshape(-1, 36)
    return np.concatenate([a[:, 0:2], a[:, 4:36]], axis=1).tobytes()


# ------------------------------------------------------------------------------------------------
# interface

def test_backend_interface(mlx):
    assert mlx.name == "mlx"
    for t in LIVE_TYPES:
        assert mlx.supports("dequantize", t), t.name
    assert not mlx.supports("rope-that-does-not-exist", "Q4_0")
    assert mlx.dequantize("Q4_0", b"", 0).shape == (0,)


def test_bad_shapes_raise(mlx):
    from ggspec.errors import ShapeError, UnsupportedTypeError
    with pytest.raises(ShapeError):
        mlx.dequantize("Q4_0", bytes(18), 31)
    with pytest.raises(ShapeError):
        mlx.dequantize("Q4_K", bytes(100), 256)
    with pytest.raises(UnsupportedTypeError):
        mlx.dequantize("Q4_2", bytes(18), 32)


def test_missing_mlx_is_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx", None)
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    monkeypatch.delitem(sys.modules, "ggspec.accel.mlx_backend")
    monkeypatch.setattr(accel, "_INSTANCES", {})             # no shared instance made earlier
    with pytest.raises(accel.BackendUnavailable, match="mlx"):
        accel.backend("mlx")
    with pytest.raises(ImportError) as e:
        importlib.import_module("ggspec.accel.mlx_backend")
    assert "mlx" in str(e.value) and e.value.name == "mlx.core"


def test_quantize_is_delegated(mlx):
    """quantize() gives the delegate's bytes (numpy backend, else reference) for what it supports."""
    d = mlx.delegate()
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    n = 0
    for t in map(get_type, ["F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "IQ4_NL", "TQ2_0"]):
        try:
            expected = bool(d.supports("quantize", t))
        except ImportError:  # a reference family module not written yet
            expected = False
        assert mlx.supports("quantize", t) == expected, t.name
        if expected and not t.requires_imatrix:
            assert mlx.quantize(t, x) == d.quantize(t, x, None)
            n += 1
    assert n > 0


# ------------------------------------------------------------------------------------------------
# the MLX arithmetic itself

def test_mlx_cpu_float32_is_ieee_without_ftz():
    """Subnormal products and differences come out as IEEE binary32 (numpy on this CPU)."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(4096) * 1e-20).astype(np.float32)
    b = (rng.standard_normal(4096) * 1e-19).astype(np.float32)
    tiny = np.array([2.0 ** -149, 2.0 ** -126, 1.5 * 2.0 ** -130, 1e-40], np.float32)
    a[:4], b[:4] = tiny, np.array([1.0, 0.75, 0.5, 3.0], np.float32)
    with mx.stream(mx.cpu):
        pm = np.array(memoryview(mx.array(a) * mx.array(b)))
        ps = np.array(memoryview(mx.array(a * np.float32(1e-18)) - mx.array(tiny[3] * np.ones(4096, np.float32))))
    assert (np.abs(a * b) < 2.0 ** -126).sum() > 100              # the test really reaches subnormals
    assert_bits_equal(pm, a * b, "mlx multiply")
    assert_bits_equal(ps, a * np.float32(1e-18) - tiny[3], "mlx subtract")


def test_fp16_conversion_all_patterns(oracle):
    """ggml's fp16 -> fp32 for all 65536 bit patterns (signalling NaNs come out quieted)."""
    h = np.arange(65536, dtype=np.uint16)
    with mx.stream(mx.cpu):
        got = np.array(memoryview(mlx_backend.f16_to_f32(mx.array(h), mlx_backend._Arith(False))))
    expected = oracle.to_float("F16", h.tobytes(), 65536)
    assert_bits_equal(got, expected, "fp16 -> fp32")
    assert got.view(np.uint32)[0x7C01] == 0x7FC02000            # sNaN 0x7C01 quieted


def test_f64_integer_decoder_matches_c_cast():
    """The integer-op F64 decoder (used where MLX has no float64) equals (float)double."""
    rng = np.random.default_rng(2)
    f32_edges = np.array([0.0, 2.0 ** -149, 2.0 ** -150, 2.0 ** -151, 1.5 * 2.0 ** -149, 2.5 * 2.0 ** -149,
                          2.0 ** -126, 2.0 ** -126 * (1 - 2.0 ** -24), 3.4028234663852886e38,
                          3.4028235677973366e38, 3.4028235677973362e38, 1e39, 5e-324, 1.0 + 2.0 ** -24,
                          1.0 + 3 * 2.0 ** -24, 1.0 + 2.0 ** -24 + 2.0 ** -52, np.inf])
    vals = np.concatenate([f32_edges, -f32_edges, rng.standard_normal(2000) * 10.0 ** rng.uniform(-50, 45, 2000)])
    bits = np.concatenate([vals.view(np.uint64), rng.integers(0, 2 ** 64, 3000, dtype=np.uint64),
                           np.array([0x7FF0000000000001, 0xFFF8000000000123, 0x7FF4000000000000], np.uint64)])
    raw = bits.astype("<u8").tobytes()
    for cast in (True, False):
        b = mlx_backend.Backend()
        b._deq.float64_cast = cast
        assert_bits_equal(b.dequantize("F64", raw, bits.size), _c_cast("F64", raw), f"F64 (float64_cast={cast})")


@pytest.mark.parametrize("name", PLAIN)
def test_plain_types_random_bytes(mlx, name):
    t = get_type(name)

    @given(block_bytes(t, max_blocks=300))
    def check(case):
        raw, n = case
        assert_bits_equal(mlx.dequantize(t, raw, n), _c_cast(name, raw), f"{name} dequantize")

    check()


# ------------------------------------------------------------------------------------------------
# against live libggml

@pytest.mark.oracle
@pytest.mark.parametrize("t", TO_FLOAT + [get_type("Q8_1")], ids=lambda t: t.name)
def test_dequantize_random_blocks_matches_libggml(oracle, mlx, t):
    @given(block_bytes(t, max_blocks=8 if t.block_size > 1 else 256))
    def check(case):
        raw, n = case
        if t.name == "Q8_1":
            expected = oracle.to_float("Q8_0", _q8_1_as_q8_0(raw), n)
        else:
            expected = oracle.to_float(t, raw, n)
        assert_bits_equal(mlx.dequantize(t, raw, n), expected, f"{t.name} dequantize")

    check()


@pytest.mark.oracle
@pytest.mark.parametrize("t", [t for t in TO_FLOAT if t.quantize_chunk or t.name == "Q8_K"] + [get_type("Q8_1")],
                         ids=lambda t: t.name)
def test_dequantize_of_quantized_data_matches_libggml(oracle, mlx, t):
    slow = t.family == "iquant" and t.block_size == 256     # ggml's i-quant searches take a while

    @settings(max_examples=3 if slow else 8)
    @given(data=st.data())
    def check(data):
        x = data.draw(rows(t, max_rows=1 if slow else 2, max_blocks_per_row=1 if slow else 2))
        im = data.draw(imatrices(x.shape[1])) if t.requires_imatrix else None
        q = oracle.quantize(t, x, im)
        if t.name == "Q8_1":
            expected = oracle.to_float("Q8_0", _q8_1_as_q8_0(q), x.size)
        else:
            expected = oracle.to_float(t, q, x.size)
        assert_bits_equal(mlx.dequantize(t, q, x.size), expected, f"{t.name} dequantize of quantized data")

    check()


@pytest.mark.oracle
def test_many_chunks_and_x86_nan_rewrite(oracle, monkeypatch):
    """Chunk boundaries, and the made-NaN rewrite (a no-op on x86, required on arm64) forced on."""
    monkeypatch.setattr(mlx_backend, "CHUNK_ELEMENTS", 512)
    rng = np.random.default_rng(3)
    special = np.array([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFD55, 0x0000, 0x8000, 0x0001], np.uint16)
    from ggspec.conformance.strategies import F16_FIELDS
    for b in (mlx_backend.Backend(), mlx_backend.Backend(x86_nan=True)):
        for t in TO_FLOAT:
            nb = 40 if t.block_size > 1 else 5000
            a = rng.integers(0, 256, (nb, t.type_size), dtype=np.uint8)
            for off in F16_FIELDS.get(t.name, []):
                v = rng.choice(special, nb)
                a[::2, off], a[::2, off + 1] = (v & 0xFF)[::2], (v >> 8)[::2]
            raw, n = a.tobytes(), nb * t.block_size
            assert_bits_equal(b.dequantize(t, raw, n), oracle.to_float(t, raw, n),
                              f"{t.name} (x86_nan={b.arith.fix})")


# ------------------------------------------------------------------------------------------------
# the golden vectors, no oracle needed

VECTORS = vectors.load_all()


@pytest.mark.parametrize("name", sorted(VECTORS, key=lambda n: get_type(n).id))
def test_golden_vectors_dequantize(name):
    impl = adapters.AccelImpl("mlx")
    report = runner.run_file(impl, VECTORS[name], ops=("dequantize",))
    o = report.results[(name, "dequantize")]
    assert o.status == "pass", f"{name}: {o.status} {o.failure}"
    assert o.passed > 0


# ------------------------------------------------------------------------------------------------
# Metal kernels (Apple Silicon only)

@pytest.mark.skipif(not mlx_backend._metal_available(),
                    reason="Metal is not available here (MLX CPU build): the mx.fast.metal_kernel path is untested")
@pytest.mark.oracle
@pytest.mark.parametrize("name", HOT)
def test_metal_kernels_match_libggml(oracle, name):
    b = mlx_backend.Backend(metal=True)
    assert b._metal is not None and b._metal.supports(name)
    t = get_type(name)

    @given(block_bytes(t, max_blocks=64))
    def check(case):
        raw, n = case
        assert_bits_equal(b.dequantize(t, raw, n), oracle.to_float(t, raw, n), f"{name} metal dequantize")

    check()


_CXX_SHIM = r"""
#include <cstdint>
#include <cstring>
#define device
typedef unsigned int uint;
template <typename T, typename U> static inline T as_type(U u) {
    static_assert(sizeof(T) == sizeof(U), "as_type needs equal sizes");
    T t; std::memcpy(&t, &u, sizeof t); return t;
}
"""


@pytest.mark.oracle
def test_metal_kernel_sources_emulated_in_cxx(oracle, tmp_path):
    """Runs where Metal does not: the Metal kernel sources compiled as C++ (a shim for `device` and
    `as_type`, one loop over thread ids) match libggml. This checks their index arithmetic and their
    explicit NaN/Inf handling; it cannot check the Metal compiler or the GPU."""
    import ctypes
    import shutil
    import subprocess
    from ggspec.accel._mlx import metal as M
    from ggspec.conformance.strategies import F16_FIELDS
    from ggspec.reference import grids as G

    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to emulate the Metal kernels")
    src = _CXX_SHIM + M.HEADER.replace("#pragma clang fp contract(off)", "")
    for name in M.SOURCES:
        body = (M.kernel_body(name).replace("#pragma clang fp contract(off)", "")
                .replace("uint gid = thread_position_in_grid.x;", ""))
        src += (f'extern "C" void k_{name}(const uint8_t* blocks, const uint8_t* grid, const uint8_t* ksigns, '
                f'float* y, uint n) {{ for (uint gid = 0; gid < n; ++gid) {body} }}\n')
    (tmp_path / "k.cpp").write_text(src)
    so = tmp_path / "k.so"
    subprocess.run([cxx, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(so), str(tmp_path / "k.cpp")],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    grid = np.ascontiguousarray(np.asarray(G.iq2xxs_grid, dtype="<u8").view(np.uint8))
    ksigns = np.asarray(G.ksigns_iq2xs, np.uint8)
    special = np.array([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFD55, 0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF], np.uint16)
    rng = np.random.default_rng(4)
    for name, (bs, ts, _) in M.SOURCES.items():
        nb = 300
        a = rng.integers(0, 256, (nb, ts), dtype=np.uint8)
        for off in F16_FIELDS[name]:
            v = rng.choice(special, nb)
            a[::2, off], a[::2, off + 1] = (v & 0xFF)[::2], (v >> 8)[::2]
        y = np.empty(nb * bs, np.float32)
        fn = getattr(lib, f"k_{name}")
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_uint]
        fn(a.ctypes.data, grid.ctypes.data, ksigns.ctypes.data, y.ctypes.data, nb * bs)
        assert_bits_equal(y, oracle.to_float(name, a.tobytes(), nb * bs), f"{name} Metal kernel source (as C++)")


# ------------------------------------------------------------------------------------------------
# RoPE: the MLX ops against the reference (itself bit-exact against ggml, see
# tests/test_rope.py), and RoPE directly against ggml's rope op

def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    w = np.uint16 if a.dtype == np.float16 else np.uint32
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(w), b.view(w))


@st.composite
def rope_cases(draw):
    from ggspec.reference import rope as R
    mode = draw(st.sampled_from(["normal", "neox"]))
    n_dims = draw(st.sampled_from([2, 4, 6, 8, 12, 14, 16, 32, 64, 128]))
    extra = draw(st.sampled_from([0, 0, 2, 8]))
    kind = draw(st.sampled_from(["plain", "linear", "yarn", "ff"]))
    kw = {}
    if kind == "linear":
        kw = dict(freq_scale=0.25)
    elif kind == "yarn":
        kw = dict(freq_scale=0.125, ext_factor=draw(st.sampled_from([1.0, 0.5])), n_ctx_orig=4096,
                  attn_factor=draw(st.floats(0.5, 1.5, width=32)))
    elif kind == "ff":
        kw = dict(freq_factors=tuple(draw(st.lists(st.floats(1.0, 64.0, width=32), min_size=n_dims // 2,
                                                   max_size=n_dims // 2))))
    p = R.RopeParams(n_dims=n_dims, mode=mode, freq_base=draw(st.sampled_from([10000.0, 500000.0])), **kw)
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float16]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n_tok = draw(st.integers(1, 6))
    pos = np.sort(rng.integers(0, 40000, n_tok)).astype(np.int32)
    x = (rng.standard_normal((n_tok, 2, n_dims + extra)) * draw(st.sampled_from([1e-3, 1.0, 50.0]))).astype(dtype)
    if draw(st.booleans()):  # specials: NaN (with payload), +-Inf, -0
        flat = x.reshape(-1)
        specials = np.array([np.nan, np.inf, -np.inf, -0.0], dtype)
        idx = rng.integers(0, flat.size, 3)
        flat[idx] = specials[rng.integers(0, 4, 3)]
    return x, pos, p


@given(rope_cases(), st.sampled_from(["ggml-x86", "none"]))
def test_rope_matches_reference(mlx, case, contract):
    from ggspec.reference import rope as R
    x, pos, p = case
    want = R.apply_rope(x, pos, p, contract=contract)
    got = mlx.rope(x, pos, p, contract=contract)
    assert _same(got, want), f"{p} {x.dtype}: rope differs"


@pytest.mark.oracle
def test_rope_matches_ggml(portable, mlx):
    """Against ggml_rope_ext of llama.cpp's portable build (the definition; the same on every x86-64 CPU)."""
    from ggspec.reference import rope as R

    class graph:   # the portable oracle's ggml graph ops
        @staticmethod
        def rope_ext(*a, **k):
            return portable.call("ggspec.conformance.ggml_graph", "op", "rope_ext", *a, **k)

    @settings(max_examples=10)
    @given(rope_cases())
    def check(case):
        x, pos, p = case
        if not np.isfinite(x).all():
            x = np.nan_to_num(x)             # ggml's rope on NaN inputs is the reference's business
        assert _same(mlx.rope(x, pos, p), graph.rope_ext(x, pos, **p.ggml_kwargs())), f"{p} {x.dtype}"

    check()
    pos = np.arange(0, 4097, dtype=np.int32)
    x = np.random.default_rng(7).standard_normal((pos.size, 1, 128)).astype(np.float32)
    p = R.RopeParams(n_dims=128, mode="normal", freq_scale=0.125, ext_factor=1.0, n_ctx_orig=4096)
    assert _same(mlx.rope(x, pos, p), graph.rope_ext(x, pos, **p.ggml_kwargs()))


def test_mlx_fmaf_is_the_reference_fmaf():
    from ggspec.reference import rope as R
    rng = np.random.default_rng(5)
    a = (rng.standard_normal(200000) * 10.0 ** rng.uniform(-20, 20, 200000)).astype(np.float32)
    b = (rng.standard_normal(200000) * 10.0 ** rng.uniform(-20, 20, 200000)).astype(np.float32)
    with np.errstate(over="ignore"):
        c = (-(a.astype(np.float64) * b) * (1 + rng.uniform(-1e-6, 1e-6, 200000))).astype(np.float32)  # cancellation
    c[::3] = rng.standard_normal(c[::3].size).astype(np.float32)
    a[:6] = [np.inf, np.nan, 0.0, -0.0, 3.0, 1.0 + 2.0 ** -23]
    b[:6] = [0.0, 1.0, -1.0, 1.0, np.inf, 1.0 - 2.0 ** -24]
    with mx.stream(mx.cpu):
        got = np.array(memoryview(mlx_backend.fmaf(mx.array(a), mx.array(b), mx.array(c))))
    with np.errstate(all="ignore"):
        want = R.fmaf(a, b, c)
        unfused = (a * b + c).astype(np.float32)
    assert (want.view(np.uint32) != unfused.view(np.uint32)).sum() > 1000     # the test can tell fused from not
    assert_bits_equal(got, want, "fmaf")
