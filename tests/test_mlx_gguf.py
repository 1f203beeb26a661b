"""ggspec.accel.mlx_gguf.load: a GGUF into MLX arrays, every tensor bit-exact to libggml's to_float,
metadata as mx.load gives it, float16/bfloat16 rounded once (ggml's own conversions) with the
over/underflows counted, and bad files rejected with the reader's FormatError."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="mlx is not installed (pip install 'mlx[cpu]')")

from ggspec.accel import mlx_gguf  # noqa: E402
from ggspec.errors import FormatError  # noqa: E402
from ggspec.reference import gguf as G  # noqa: E402
from ggspec.reference.types import LIVE_TYPES, get_type  # noqa: E402

TO_FLOAT = [t for t in LIVE_TYPES if t.to_float or t.name == "Q8_K"]


def _bits(a) -> np.ndarray:
    return np.array(a.astype(mx.float32) if a.dtype != mx.float32 else a).view(np.uint32)


def _random_blocks(t, nb, rng):
    return rng.integers(0, 256, nb * t.type_size, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def every_type_file(tmp_path_factory, oracle):
    """One GGUF with three tensors of every type ggml can dequantize: ggml-quantized rows (1-D, 2-D
    and 3-D shapes) and random block bytes (NaN/Inf/subnormal scales included)."""
    rng = np.random.default_rng(0)
    w = G.GGUFWriter()
    w.add("general.architecture", "test")
    expect = {}
    for t in TO_FLOAT:
        bs = t.block_size
        nb = 6 if bs == 256 else 24
        # random bytes, 2-D
        raw = _random_blocks(t, nb, rng)
        ne = (bs * 2, nb // 2)
        w.add_tensor_raw(f"{t.name}.random", t, ne, raw)
        expect[f"{t.name}.random"] = (oracle.to_float(t, raw, bs * nb), ne)
        # quantized real data, 3-D and 1-D
        # (ggml's IQ1_S/IQ1_M/IQ2_S quantizers spend 10-20 s building their grid tables; random bytes
        # cover those types' dequantizers)
        if (t.quantize_chunk or t.name in ("Q8_K",)) and t.name not in ("IQ1_S", "IQ1_M", "IQ2_S"):
            x = rng.standard_normal((nb, bs)).astype(np.float32)
            im = np.exp(rng.standard_normal(bs)).astype(np.float32) if oracle.requires_imatrix(t.id) else None
            try:
                q = oracle.quantize(t, x, im)
            except Exception:
                q = None
            if q is not None:
                ne3 = (bs, 2, nb // 2)
                w.add_tensor_raw(f"{t.name}.q3d", t, ne3, q)
                expect[f"{t.name}.q3d"] = (oracle.to_float(t, q, bs * nb), ne3)
                ne1 = (bs,)
                w.add_tensor_raw(f"{t.name}.q1d", t, ne1, q[: t.type_size])
                expect[f"{t.name}.q1d"] = (oracle.to_float(t, q[: t.type_size], bs), ne1)
    # element types ggml has no to_float for: the C cast (float)x, which numpy's astype is
    for name, dt in (("F32", "<f4"), ("F64", "<f8"), ("I8", "<i1"), ("I16", "<i2"), ("I32", "<i4"), ("I64", "<i8")):
        raw = rng.integers(0, 256, 64 * np.dtype(dt).itemsize, dtype=np.uint8).tobytes()
        with np.errstate(over="ignore", invalid="ignore"):
            ref = np.frombuffer(raw, dtype=dt).astype(np.float32)
        w.add_tensor_raw(f"{name}.plain", name, (16, 4), raw)
        expect[f"{name}.plain"] = (ref, (16, 4))
    # Q8_1 (no ggml to_float): its value is d * qs, as the same blocks read as Q8_0 (d, qs)
    q81 = _random_blocks(get_type("Q8_1"), 8, rng)
    a = np.frombuffer(q81, np.uint8).reshape(-1, 36)
    w.add_tensor_raw("Q8_1.random", "Q8_1", (256,), q81)
    expect["Q8_1.random"] = (oracle.to_float("Q8_0", np.concatenate([a[:, 0:2], a[:, 4:36]], 1).tobytes(), 256), (256,))
    path = tmp_path_factory.mktemp("mg") / "all.gguf"
    w.write(path)
    return path, expect


@pytest.mark.oracle
def test_every_type_bit_exact(every_type_file):
    path, expect = every_type_file
    arrays = mlx_gguf.load(path)
    assert set(arrays) == set(expect)
    assert {n.split(".")[0] for n in expect} == {t.name for t in LIVE_TYPES}     # every live type
    for name, (ref, ne) in expect.items():
        a = arrays[name]
        assert a.dtype == mx.float32, name
        assert tuple(a.shape) == tuple(reversed(ne)), (name, a.shape, ne)
        got = np.array(a).reshape(-1).view(np.uint32)
        bad = np.flatnonzero(got != ref.view(np.uint32))
        assert bad.size == 0, f"{name}: {bad.size} values differ, first at {bad[0]}: " \
                              f"{got[bad[0]]:#010x} vs {ref.view(np.uint32)[bad[0]]:#010x}"


@pytest.mark.oracle
def test_pieces_cover_large_tensors(tmp_path, oracle, monkeypatch):
    """A tensor larger than one backend chunk (float32: written by the backend's threads into the MLX
    buffer) and than one piece (float16: rounded piece by piece) -- sizes forced small."""
    from ggspec.accel import mlx_backend
    monkeypatch.setattr(mlx_gguf, "PIECE_ELEMENTS", 1024)
    monkeypatch.setattr(mlx_backend, "CHUNK_ELEMENTS", 2048)
    monkeypatch.setattr(mlx_backend, "SEGMENT_BYTES", 4096)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 256)).astype(np.float32)
    q = oracle.quantize("Q6_K", x)
    w = G.GGUFWriter()
    w.add_tensor_raw("w", "Q6_K", (256, 40), q)
    w.write(tmp_path / "p.gguf")
    exact = oracle.to_float("Q6_K", q, x.size)
    a = mlx_gguf.load(tmp_path / "p.gguf")["w"]
    assert np.array_equal(np.array(a).reshape(-1).view(np.uint32), exact.view(np.uint32))
    h = mlx_gguf.load(tmp_path / "p.gguf", dtype=mx.float16)["w"]
    assert np.array_equal(np.array(h.view(mx.uint16)).reshape(-1),
                          np.frombuffer(oracle.from_float_ref("F16", exact), np.uint16))


def _md_equal(a, b) -> bool:
    if isinstance(a, mx.array) or isinstance(b, mx.array):
        if not (isinstance(a, mx.array) and isinstance(b, mx.array)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(np.array(a), np.array(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_md_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_metadata_as_mx_load(tmp_path):
    """return_metadata gives what mx.load gives for the same file (mx.load reads F32 files)."""
    w = G.GGUFWriter()
    w.add("general.architecture", "llama")
    w.add("general.name", "tiny")
    w.add("llama.block_count", 2, G.ValueType.UINT32)
    w.add("llama.context_length", 4096, G.ValueType.UINT64)
    w.add("llama.rope.freq_base", 10000.0, G.ValueType.FLOAT32)
    w.add("some.int8", -3, G.ValueType.INT8)
    w.add("tokenizer.ggml.tokens", ["a", "b", "\u2581c"])
    w.add("tokenizer.ggml.scores", [0.0, -1.0, -2.5], G.ValueType.ARRAY, G.ValueType.FLOAT32)
    w.add("tokenizer.ggml.token_type", [1, 2, 3], G.ValueType.ARRAY, G.ValueType.INT32)
    w.add_tensor("x", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.write(tmp_path / "m.gguf")
    arrays, md = mlx_gguf.load(tmp_path / "m.gguf", return_metadata=True)
    theirs_a, theirs = mx.load(str(tmp_path / "m.gguf"), return_metadata=True)
    assert np.array_equal(np.array(arrays["x"]), np.array(theirs_a["x"]))
    assert set(md) == set(theirs), (set(md) ^ set(theirs))
    for k in theirs:
        assert _md_equal(md[k], theirs[k]), (k, md[k], theirs[k])


def test_metadata_float64(tmp_path):
    """A FLOAT64 value (mx.load 0.32.4 crashes the process on one: see docs/peers.md) is an mx.float64 scalar."""
    w = G.GGUFWriter()
    w.add("some.f64", 0.1, G.ValueType.FLOAT64)
    w.add("some.f64s", [0.1, -2.0], G.ValueType.ARRAY, G.ValueType.FLOAT64)
    w.add_tensor("x", np.ones(32, np.float32))
    w.write(tmp_path / "f.gguf")
    _, md = mlx_gguf.load(tmp_path / "f.gguf", return_metadata=True)
    assert md["some.f64"].dtype == mx.float64 and md["some.f64"].shape == ()
    assert np.array(md["some.f64"], copy=False).item() == 0.1
    assert md["some.f64s"].dtype == mx.float64 and md["some.f64s"].shape == (2,)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_rounded_once_and_counted(tmp_path, oracle, dtype):
    """F32 values spanning float16's and bfloat16's ranges: the loaded bits equal ggml's own
    fp32 -> fp16 / bf16 conversion of the exact value, and the overflows/underflows are counted."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(4096) * np.exp2(rng.integers(-150, 128, 4096))).astype(np.float32)
    x[:4] = [np.nan, np.inf, -0.0, 1e-45]
    w = G.GGUFWriter()
    w.add_tensor("x", x.reshape(16, 256))
    w.add_tensor("small", np.ones(256, np.float32))
    w.write(tmp_path / "r.gguf")
    mxd = {"float16": mx.float16, "bfloat16": mx.bfloat16}[dtype]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a = mlx_gguf.load(tmp_path / "r.gguf", dtype=mxd)
    assert a["x"].dtype == mxd and a["x"].shape == (16, 256)
    got = np.array(a["x"].view(mx.uint16)).reshape(-1)
    ref = np.frombuffer(oracle.from_float_ref("F16" if dtype == "float16" else "BF16", x), np.uint16)
    assert np.array_equal(got, ref)
    if dtype == "float16":
        exp = np.frombuffer(ref.tobytes(), np.float16)
        over = np.isfinite(x) & np.isinf(exp)
        under = (x != 0) & (exp == 0)
    else:
        e = ref & 0x7FFF
        over = np.isfinite(x) & (e == 0x7F80)
        under = (x != 0) & (e == 0)
    rep = mlx_gguf.last_report
    assert rep.per_tensor["x"] == (int(over.sum()), int(under.sum()))
    assert "small" not in rep.per_tensor
    assert over.sum() + under.sum() > 0
    w_ = [r for r in rec if issubclass(r.category, mlx_gguf.PrecisionLossWarning)]
    assert w_ and w_[0].message.counts["x"] == rep.per_tensor["x"]


def test_no_warning_when_exact(tmp_path):
    w = G.GGUFWriter()
    w.add_tensor("x", np.linspace(-2, 2, 512, dtype=np.float32))
    w.write(tmp_path / "ok.gguf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = mlx_gguf.load(tmp_path / "ok.gguf", dtype=mx.bfloat16)
    assert mlx_gguf.last_report.overflow == mlx_gguf.last_report.underflow == 0
    assert a["x"].dtype == mx.bfloat16


def test_truncated_file_format_error(tmp_path):
    w = G.GGUFWriter()
    w.add("general.architecture", "llama")
    w.add_tensor("x", np.ones((8, 32), np.float32))
    data = w.to_bytes()
    for cut in (10, 40, len(data) - 7):
        p = tmp_path / f"t{cut}.gguf"
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError) as ei:
            mlx_gguf.load(p)
        assert ei.value.offset is not None


def test_bad_dtype(tmp_path):
    w = G.GGUFWriter()
    w.add_tensor("x", np.ones(32, np.float32))
    w.write(tmp_path / "d.gguf")
    with pytest.raises(ValueError):
        mlx_gguf.load(tmp_path / "d.gguf", dtype=mx.int32)
