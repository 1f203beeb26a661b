"""The readable reference: every ggml block layout, bit-exact against ggml.

Public interface (other code and third parties call exactly these):

    quantize(type, x, imatrix=None) -> bytes
        ``type`` a ggml name ("Q4_K") or id; ``x`` float32 of shape (rows, n_per_row) (a 1-D array
        is one row); ``imatrix`` float32 (n_per_row,) or None. Same semantics as
        ``ggml_quantize_chunk`` (for Q8_1 and Q8_K, which quantize_chunk does not take, the
        semantics of their reference row quantizers ``quantize_row_q8_1_ref``/``_q8_K_ref``).

    dequantize(type, raw, n) -> numpy.ndarray
        float32, n values; same semantics as ggml's ``to_float``.

Each family module (``fp``, ``legacy``, ``kquants``, ``iquants``, ``ternary``, ``fp4``, ``lowbit``)
exports two dicts keyed by type name:

    DEQUANTIZE[name](block: bytes) -> float32[block_size]   (for block size 1: any number of elements)
    QUANTIZE[name](row: float32[n_per_row], imatrix) -> bytes of one row

and this module does the bookkeeping: argument checks, splitting into rows and blocks.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import ImatrixRequiredError, ShapeError, UnsupportedTypeError
from .types import GGMLType, TYPES, FAMILY_MODULES, get_type, live_type  # noqa: F401

__all__ = ["quantize", "dequantize", "dequantizer", "quantizer", "supports", "TYPES", "get_type"]


def _family_module(t: GGMLType):
    mod = FAMILY_MODULES.get(t.family)
    if mod is None:
        raise UnsupportedTypeError(f"ggml type {t.name} (id {t.id}) was removed from ggml: {t.note}")
    try:
        return importlib.import_module(f"{__name__}.{mod}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{mod}":
            raise
        raise UnsupportedTypeError(f"the reference module for the {t.family} family ({mod}.py) is missing") from None


def dequantizer(type):
    """The block dequantizer of a type, or UnsupportedTypeError."""
    t = live_type(type)
    fn = getattr(_family_module(t), "DEQUANTIZE", {}).get(t.name)
    if fn is None:
        raise UnsupportedTypeError(f"the reference has no dequantizer for {t.name} yet")
    return fn


def quantizer(type):
    """The row quantizer of a type, or UnsupportedTypeError."""
    t = live_type(type)
    fn = getattr(_family_module(t), "QUANTIZE", {}).get(t.name)
    if fn is None:
        raise UnsupportedTypeError(f"the reference has no quantizer for {t.name}")
    return fn


def supports(op: str, type) -> bool:
    """True when the reference implements ``op`` ("quantize" or "dequantize") for ``type``."""
    try:
        (quantizer if op == "quantize" else dequantizer)(type)
        return True
    except UnsupportedTypeError:
        return False


def dequantize(type, raw, n: int) -> np.ndarray:
    """Decode ``n`` values of ``type`` from ``raw`` (bytes-like) into float32, like ggml's to_float."""
    t = live_type(type)
    fn = dequantizer(t)
    n = int(n)
    if n < 0 or n % t.block_size:
        raise ShapeError(f"{t.name}: n = {n} is not a non-negative multiple of the block size {t.block_size}")
    nb = n // t.block_size
    need = nb * t.type_size
    mv = memoryview(raw).cast("B")
    if len(mv) < need:
        raise ShapeError(f"{t.name}: {n} values need {need} bytes, got {len(mv)}")
    if t.block_size == 1:
        return np.asarray(fn(bytes(mv[:need])), dtype=np.float32).reshape(n)
    out = np.empty(n, dtype=np.float32)
    for i in range(nb):
        block = bytes(mv[i * t.type_size:(i + 1) * t.type_size])
        out[i * t.block_size:(i + 1) * t.block_size] = fn(block)
    return out


def quantize(type, x, imatrix=None) -> bytes:
    """Encode float32 rows ``x`` (rows, n_per_row) as ``type``, like ggml_quantize_chunk."""
    t = live_type(type)
    fn = quantizer(t)
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ShapeError(f"x must be float32, got {x.dtype}")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise ShapeError(f"x must have shape (rows, n_per_row), got {x.shape}")
    n_per_row = x.shape[1]
    if n_per_row % t.block_size:
        raise ShapeError(f"{t.name}: n_per_row = {n_per_row} is not a multiple of the block size {t.block_size}")
    if imatrix is not None:
        imatrix = np.asarray(imatrix)
        if imatrix.dtype != np.float32 or imatrix.shape != (n_per_row,):
            raise ShapeError(f"imatrix must be float32 of shape ({n_per_row},), got {imatrix.dtype} {imatrix.shape}")
    elif t.requires_imatrix:
        raise ImatrixRequiredError(f"{t.name} cannot be quantized without an importance matrix (ggml asserts imatrix != NULL)")
    parts = [fn(np.ascontiguousarray(row), imatrix) for row in x]
    out = b"".join(parts)
    expected = x.shape[0] * t.row_size(n_per_row)
    if len(out) != expected:  # a bug in a family module, never the caller's fault
        raise AssertionError(f"{t.name}: quantizer produced {len(out)} bytes, expected {expected}")
    return out
