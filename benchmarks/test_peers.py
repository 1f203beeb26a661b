"""Every peer on the same bytes in one run: dequantize and quantize of a 4096x4096 tensor, every type.

    python -m pytest benchmarks/test_peers.py --benchmark-only --benchmark-json=/tmp/peers.json
    python benchmarks/report.py /tmp/peers.json            # -> docs/performance.md

Implementations: ``gguf-py`` (gguf==0.19.0, ``gguf.quants.dequantize`` / ``quantize``), ``libggml``
(the oracle's to_float / ggml_quantize_chunk, one thread: a plain C loop), ``reference``, and the
``numpy`` and ``mlx`` backends of ggspec.accel. Each benchmark checks its output against libggml
(bit-equal floats, equal bytes) after timing: a fast wrong answer is reported as a failure, not a
speed. ``extra_info`` records the type, implementation, operation and number of weights; throughput
is weights / median seconds.

The reference is written for reading (one block at a time in Python): it runs on a slice of the
tensor (``REFERENCE_ROWS`` rows) and its rate is reported as such. Nothing here asserts a time.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from ggspec import accel
from ggspec.reference import dequantize as ref_dequantize, quantize as ref_quantize
from ggspec.reference.types import LIVE_TYPES

ROWS = int(os.environ.get("GGSPEC_BENCH_ROWS", 4096))
N_PER_ROW = 4096
REFERENCE_ROWS = 4                # 16 k weights: enough for a stable rate of a Python per-block loop
QUANT_ROWS_SLOW = 256             # quantize of the grid i-quants by the numpy backend: 1 M weights

# every live block type ggml can dequantize (to_float, or dequantize_row_q8_K for Q8_K), and F16/BF16:
# Q8_1 is left out, ggml has no dequantizer for it to check against
DEQ_TYPES = [t for t in LIVE_TYPES if (t.block_size > 1 and t.name != "Q8_1") or t.name in ("F16", "BF16")]
DEQ_TYPES = [t for t in DEQ_TYPES if t.name not in ("Q8_K",)] + [t for t in DEQ_TYPES if t.name == "Q8_K"]
QUANT_TYPES = [t for t in DEQ_TYPES if t.quantize_chunk]
GRID_IQ = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"}


@pytest.fixture(scope="session")
def gguf_quants():
    try:
        from gguf import quants
        from gguf.constants import GGMLQuantizationType
    except ImportError as e:
        pytest.skip(f"gguf-py not installed: {e}")
    return quants, GGMLQuantizationType


@pytest.fixture(scope="session")
def x():
    return np.random.default_rng(0).standard_normal((ROWS, N_PER_ROW)).astype(np.float32)


@pytest.fixture(scope="session")
def imatrix():
    return np.exp(np.random.default_rng(1).standard_normal(N_PER_ROW)).astype(np.float32)


_RAW: dict = {}


def raw_of(lib, t, x, imatrix) -> bytes:
    """The tensor quantized by libggml (with the imatrix where ggml needs one): the bytes every
    dequantizer reads."""
    if t.name not in _RAW:
        _RAW[t.name] = lib.quantize(t, x, imatrix if t.requires_imatrix else None)
    return _RAW[t.name]


def _gguf_type(gguf_quants, t):
    quants, GQT = gguf_quants
    try:
        return GQT[t.name]
    except KeyError:
        return None


def _gguf_supports(gguf_quants, t, op) -> bool:
    """gguf-py has the operation when the type's class overrides the base class's method (which
    raises NotImplementedError); F16/BF16 and F32 are handled by quants.quantize/dequantize directly."""
    quants, _ = gguf_quants
    qt = _gguf_type(gguf_quants, t)
    if qt is None:
        return False
    if t.name == "F16":
        return True
    cls = quants._type_traits.get(qt)
    return cls is not None and ("dequantize_blocks" if op == "dequantize" else "quantize_blocks") in vars(cls)


def _record(benchmark, t, impl, op, n):
    benchmark.group = f"{op} {t.name}"
    benchmark.extra_info.update(type=t.name, impl=impl, op=op, n_weights=int(n))


IMPLS = ["gguf-py", "libggml", "numpy", "mlx", "reference"]
OURS = ("numpy", "mlx", "reference")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("t", DEQ_TYPES, ids=lambda t: t.name)
def test_dequantize(benchmark, lib, gguf_quants, x, imatrix, t, impl):
    raw = raw_of(lib, t, x, imatrix)
    n = x.size
    if t.name == "Q8_K":
        want = lib.to_float(t, raw, n) if lib.has_to_float(t) else None
    else:
        want = lib.to_float(t, raw, n)
    rows = ROWS
    if impl == "gguf-py":
        if not _gguf_supports(gguf_quants, t, "dequantize"):
            pytest.skip(f"gguf-py has no dequantizer for {t.name}")
        quants, _ = gguf_quants
        qt = _gguf_type(gguf_quants, t)
        arr = np.frombuffer(raw, np.uint8).reshape(ROWS, -1)
        fn = lambda: quants.dequantize(arr, qt)  # noqa: E731
    elif impl == "libggml":
        fn = lambda: lib.to_float(t, raw, n)  # noqa: E731
    elif impl == "reference":
        rows = REFERENCE_ROWS
        part = raw[: len(raw) * rows // ROWS]
        fn = lambda: ref_dequantize(t, part, rows * N_PER_ROW)  # noqa: E731
    else:
        try:
            b = accel.backend(impl)
        except ImportError as e:
            pytest.skip(str(e))
        if not b.supports("dequantize", t):
            pytest.skip(f"{impl} has no dequantizer for {t.name}")
        fn = lambda: b.dequantize(t, raw, n)  # noqa: E731
    _record(benchmark, t, impl, "dequantize", rows * N_PER_ROW)
    heavy = impl in ("reference",)
    if heavy:
        ref_dequantize(t, part[: t.type_size], t.block_size)       # one-time tables, untimed
    got = benchmark.pedantic(fn, rounds=1 if heavy else 3, iterations=1, warmup_rounds=0 if heavy else 1)
    if want is not None:
        got = np.asarray(got, np.float32).reshape(-1)
        _check(benchmark, impl, np.array_equal(got.view(np.uint32), want[: got.size].view(np.uint32)),
               f"{impl} {t.name}: dequantize not bit-exact")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_quantize(benchmark, lib, gguf_quants, x, imatrix, t, impl):
    im = imatrix if t.requires_imatrix else None
    rows = ROWS
    if impl == "reference":
        rows = REFERENCE_ROWS
    elif impl in ("numpy", "mlx") and t.name in GRID_IQ:
        rows = QUANT_ROWS_SLOW
    xs = x[:rows]
    if impl == "gguf-py":
        if not _gguf_supports(gguf_quants, t, "quantize"):
            pytest.skip(f"gguf-py has no quantizer for {t.name}")
        quants, _ = gguf_quants
        qt = _gguf_type(gguf_quants, t)
        fn = lambda: quants.quantize(xs, qt).tobytes()  # noqa: E731
    elif impl == "libggml":
        fn = lambda: lib.quantize(t, xs, im)  # noqa: E731
    elif impl == "reference":
        fn = lambda: ref_quantize(t, xs, im)  # noqa: E731
    else:
        try:
            b = accel.backend(impl)
        except ImportError as e:
            pytest.skip(str(e))
        fn = lambda: b.quantize(t, xs, im)  # noqa: E731
    _record(benchmark, t, impl, "quantize", xs.size)
    benchmark.extra_info["imatrix"] = im is not None
    heavy = impl == "reference" or rows != ROWS
    _warm_up(impl, t, x[:1], im)
    got = benchmark.pedantic(fn, rounds=1 if heavy else 3, iterations=1, warmup_rounds=0)
    want = raw_of(lib, t, x, imatrix)[: t.row_size(N_PER_ROW) * rows]
    _check(benchmark, impl, bytes(got) == want, f"{impl} {t.name}: bytes differ from ggml_quantize_chunk")


def _warm_up(impl, t, x1, im) -> None:
    """Quantize one row first: one-time work (the i-quants' search tables, thread pools) is not
    part of the timed rounds, for any implementation."""
    if impl == "reference":
        ref_quantize(t, x1, im)
    elif impl in ("numpy", "mlx"):
        accel.backend(impl).quantize(t, x1, im)


def _check(benchmark, impl, exact: bool, msg: str) -> None:
    """Ours must be exact (a failure otherwise); a peer's inexactness is recorded and reported."""
    benchmark.extra_info["exact"] = bool(exact)
    if impl in OURS:
        assert exact, msg
