"""Load a GGUF file into MLX arrays exactly: a drop-in for ``mx.load`` on GGUF files.

    from ggspec.accel import mlx_gguf
    w = mlx_gguf.load("model.gguf")                          # {name: mx.array float32}
    w, md = mlx_gguf.load("model.gguf", return_metadata=True)
    w16 = mlx_gguf.load("model.gguf", dtype=mx.bfloat16)     # rounded once from the exact value
    mlx_gguf.last_report                                     # over/underflow counts of the last load

What it returns
---------------
* Every tensor of every live ggml type (F32, F16, BF16, F64, I8..I64, all legacy, K-, i-, ternary,
  FP4 and low-bit quants), dequantized by ``ggspec.accel.mlx_backend`` -- the same float32 bits as
  ggml's ``to_float`` (NaN payloads and signed zeros included) -- in numpy's shape order (ggml's
  ``ne`` reversed, as ``mx.load`` does).
* ``dtype=mx.float16`` / ``mx.bfloat16``: each exact float32 value rounded once, to nearest even
  (ggml's ``GGML_FP32_TO_FP16`` / ``ggml_fp32_to_bf16``; NaN stays NaN). Values that overflow
  (finite -> inf) or underflow (non-zero -> zero) are counted per tensor; when any do, a
  :class:`PrecisionLossWarning` names them and ``last_report`` holds the counts. ``mx.load`` turns
  them into inf/0 silently.
* ``return_metadata=True``: ``(arrays, metadata)`` with metadata as ``mx.load`` gives it: strings as
  ``str``, arrays of strings as ``list[str]``, numbers and numeric arrays as ``mx.array`` (MLX's
  dtype of the stored type: uint8..int64, float32, float64; bools as ``mx.bool_``).

Memory
------
The file is memory-mapped. Tensors are dequantized one at a time, straight into the tensor's MLX
buffer (the backend's chunks are written there; float16/bfloat16 go through float32 pieces of
``PIECE_ELEMENTS`` values, each rounded into the buffer); after each tensor its
mapped pages are released (``madvise(MADV_DONTNEED)``), so the peak is the arrays returned plus one
piece's temporaries plus one tensor's mapped bytes (measured in ``benchmarks/test_mlx_gguf_memory.py``).

Errors: a truncated or malformed file raises ``ggspec.errors.FormatError`` with the byte offset
(the reader's); a type the backend cannot dequantize raises ``UnsupportedTypeError`` naming it.
"""

from __future__ import annotations

import mmap as _mmap
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np

try:
    import mlx.core as mx
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"ggspec.accel.mlx_gguf needs the mlx package (pip install 'mlx[cpu]'): {e}",
                      name="mlx.core") from e

from ..errors import UnsupportedTypeError
from ..reference import gguf as _gguf
from ..reference.gguf import ValueType

# values dequantized per piece (a multiple of every block size, 256): 4 M values = 16 MB float32
PIECE_ELEMENTS = 1 << 22


class PrecisionLossWarning(UserWarning):
    """Some values over- or underflowed when rounded to the requested dtype."""

    def __init__(self, message: str, counts: "dict[str, tuple[int, int]]"):
        super().__init__(message)
        self.counts = counts


@dataclass
class LoadReport:
    """What the last ``load`` did: the dtype and, per tensor, (overflow, underflow) counts (only
    tensors where either is non-zero), plus totals."""
    path: str = ""
    dtype: str = "float32"
    n_tensors: int = 0
    n_values: int = 0
    overflow: int = 0
    underflow: int = 0
    per_tensor: Dict[str, tuple] = field(default_factory=dict)


last_report = LoadReport()

_BACKEND = None


def _backend():
    global _BACKEND
    if _BACKEND is None:
        from . import backend
        _BACKEND = backend("mlx")
    return _BACKEND


# --------------------------------------------------------------------------------------------------
# rounding (ggml's own conversions, in numpy bit arithmetic)

def round_to_f16_bits(x: np.ndarray) -> "tuple[np.ndarray, int, int]":
    """float32 -> fp16 bits (round to nearest even; numpy's cast, which is GGML_FP32_TO_FP16 on
    finite values and inf), with (overflow, underflow) counts. NaN -> quiet NaN with the sign."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        h = x.astype(np.float16)
    hb = h.view(np.uint16)
    fin = np.isfinite(x)
    over = int(np.count_nonzero(fin & np.isinf(h)))
    under = int(np.count_nonzero((x != 0) & (h == 0)))
    nan = np.isnan(x)
    if nan.any():      # ggml: 0x7E00 with the sign (numpy keeps payload bits; make it ggml's)
        hb = hb.copy()
        hb[nan] = (0x7E00 | ((x.view(np.uint32)[nan] >> 16) & 0x8000)).astype(np.uint16)
    return hb, over, under


def round_to_bf16_bits(x: np.ndarray) -> "tuple[np.ndarray, int, int]":
    """float32 -> bf16 bits as ggml_compute_fp32_to_bf16: NaN -> (u >> 16) | 64, else
    (u + 0x7FFF + ((u >> 16) & 1)) >> 16 (round to nearest even), with (overflow, underflow) counts."""
    u = x.view(np.uint32)
    r = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 64).astype(np.uint16)
    exp_all = (r & 0x7F80) == 0x7F80
    over = int(np.count_nonzero(np.isfinite(x) & exp_all))
    under = int(np.count_nonzero((x != 0) & ((r & 0x7FFF) == 0)))
    return r, over, under


_DTYPES = {}


def _dtype_name(dtype) -> str:
    if dtype is None or dtype == mx.float32:
        return "float32"
    if dtype == mx.float16:
        return "float16"
    if dtype == mx.bfloat16:
        return "bfloat16"
    raise ValueError(f"dtype must be None, mx.float32, mx.float16 or mx.bfloat16, got {dtype!r}")


# --------------------------------------------------------------------------------------------------
# metadata as mx.load gives it

_MX_OF = {
    ValueType.UINT8: mx.uint8, ValueType.INT8: mx.int8, ValueType.UINT16: mx.uint16,
    ValueType.INT16: mx.int16, ValueType.UINT32: mx.uint32, ValueType.INT32: mx.int32,
    ValueType.FLOAT32: mx.float32, ValueType.BOOL: mx.bool_, ValueType.UINT64: mx.uint64,
    ValueType.INT64: mx.int64, ValueType.FLOAT64: mx.float64,
}


def _md_value(v: "_gguf.Value") -> Any:
    if v.type == ValueType.STRING:
        return v.value
    if v.type == ValueType.ARRAY:
        if v.sub_type == ValueType.STRING:
            return list(v.value)
        if v.sub_type == ValueType.ARRAY:
            return [_md_value(x) for x in v.value]
        return mx.array(np.asarray(v.value, dtype=_np_dtype(v.sub_type)), dtype=_MX_OF[v.sub_type])
    return mx.array(np.asarray(v.value, dtype=_np_dtype(v.type)), dtype=_MX_OF[v.type])


def _np_dtype(vt: ValueType):
    return {ValueType.UINT8: np.uint8, ValueType.INT8: np.int8, ValueType.UINT16: np.uint16,
            ValueType.INT16: np.int16, ValueType.UINT32: np.uint32, ValueType.INT32: np.int32,
            ValueType.FLOAT32: np.float32, ValueType.BOOL: np.bool_, ValueType.UINT64: np.uint64,
            ValueType.INT64: np.int64, ValueType.FLOAT64: np.float64}[vt]


def metadata(g: "_gguf.GGUFFile") -> dict:
    """The metadata of a parsed GGUF file in ``mx.load``'s form (see the module docstring)."""
    return {k: _md_value(v) for k, v in g.values.items()}


# --------------------------------------------------------------------------------------------------
# the loader

def _release(g, t) -> None:
    """Drop the mapped pages of tensor ``t`` from the resident set (they are clean file pages)."""
    mm = getattr(g._buf, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise"):
        return
    ps = _mmap.PAGESIZE
    lo = (t.offset // ps) * ps
    hi = min(len(mm), t.offset + t.nbytes)
    if hi > lo:
        try:
            mm.madvise(_mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError, AttributeError):
            pass


def _empty(n: int, dt) -> "tuple[mx.array, np.ndarray]":
    """A fresh evaluated MLX array of n elements and a writable numpy view of its buffer."""
    a = mx.zeros((n,), dtype=dt)
    mx.eval(a)
    view = np.array(a, copy=False)
    if not view.flags.writeable:  # pragma: no cover - an MLX whose buffer view is read-only
        raise RuntimeError("this MLX version does not expose writable array buffers")
    return a, view


def load_tensor(t: "_gguf.GGUFTensor", dtype=None) -> "tuple[mx.array, int, int]":
    """One tensor of a parsed GGUF file -> (mx.array in numpy's shape, overflow, underflow)."""
    name = _dtype_name(dtype)
    b = _backend()
    tt = t.type
    if not b.supports("dequantize", tt):
        raise UnsupportedTypeError(f"tensor {t.name!r}: no MLX dequantizer for type {tt.name}")
    n = t.n_elements
    raw = t.le_bytes()
    shape = t.numpy_shape
    out_dt = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.uint16}[name]
    arr, view = _empty(n, out_dt)
    if name == "bfloat16":
        view = view.view(np.uint16)
    elif name == "float16":
        view = view.view(np.uint16)
    # float32: the whole tensor in one call, written by the backend's threads straight into the MLX
    # buffer; float16/bfloat16: pieces of PIECE_ELEMENTS float32 values, each rounded into the buffer
    step = max(tt.block_size, PIECE_ELEMENTS // tt.block_size * tt.block_size)
    if name == "float32" and n:
        step = n
    over = under = 0
    for j in range(0, n, step):
        m = min(step, n - j)
        lo = j // tt.block_size * tt.type_size
        hi = lo + m // tt.block_size * tt.type_size
        if name == "float32":
            b.dequantize(tt, raw[lo:hi], m, out=view[j:j + m])      # straight into the MLX buffer
        else:
            y = b.dequantize(tt, raw[lo:hi], m)
            bits, o, u = (round_to_f16_bits if name == "float16" else round_to_bf16_bits)(y)
            view[j:j + m] = bits
            over += o
            under += u
            del y
    if name == "bfloat16":
        arr = arr.view(mx.bfloat16)
    if len(shape) != 1:
        arr = arr.reshape(shape)
    return arr, over, under


def load(path, dtype=None, return_metadata: bool = False):
    """Every tensor of the GGUF file at ``path`` as MLX arrays (see the module docstring).

    ``dtype``: None / ``mx.float32`` (exact), ``mx.float16`` or ``mx.bfloat16`` (rounded once).
    Returns ``{name: mx.array}``, or ``(arrays, metadata)`` with ``return_metadata=True``.
    """
    global last_report
    name = _dtype_name(dtype)
    g = _gguf.read(path)
    report = LoadReport(path=str(path), dtype=name)
    out = {}
    try:
        for tname, t in g.tensors.items():
            arr, o, u = load_tensor(t, dtype)
            out[tname] = arr
            report.n_tensors += 1
            report.n_values += t.n_elements
            if o or u:
                report.per_tensor[tname] = (o, u)
                report.overflow += o
                report.underflow += u
            _release(g, t)
        md = metadata(g) if return_metadata else None
    finally:
        g.close()
    last_report = report
    if report.overflow or report.underflow:
        worst = sorted(report.per_tensor.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:5]
        detail = ", ".join(f"{k}: {o} over, {u} under" for k, (o, u) in worst)
        warnings.warn(PrecisionLossWarning(
            f"{path}: rounding to {name}: {report.overflow} values overflowed to inf and "
            f"{report.underflow} non-zero values underflowed to zero ({detail}"
            f"{', ...' if len(report.per_tensor) > 5 else ''}); see mlx_gguf.last_report",
            dict(report.per_tensor)), stacklevel=2)
    return (out, md) if return_metadata else out
