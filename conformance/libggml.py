"""ctypes access to the C oracle: ``libggml-base`` as shipped in ``llama-cpp-python==0.3.36``.

Only the quantization entry points of the base library are used:

    ggml_get_type_traits(type)            -> struct ggml_type_traits* (to_float, from_float_ref, sizes)
    ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)
    ggml_quantize_requires_imatrix(type)
    quantize_row_q8_K_ref / dequantize_row_q8_K (exported, not reachable through type_traits)

``load()`` finds the library next to the installed ``llama_cpp`` package (without importing it) or
at ``$GGSPEC_LIBGGML``; it raises ``OracleUnavailable`` with the reason when it cannot.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
from pathlib import Path

import numpy as np

from ..errors import OracleUnavailable, ShapeError, UnsupportedTypeError, ImatrixRequiredError
from ..reference.types import get_type, live_type

ORACLE_PACKAGE = "llama-cpp-python"
ORACLE_VERSION = "0.3.36"


class _TypeTraits(ctypes.Structure):
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def find_library() -> Path:
    """Path of the oracle's libggml-base shared library, or OracleUnavailable."""
    env = os.environ.get("GGSPEC_LIBGGML")
    if env:
        p = Path(env)
        if not p.is_file():
            raise OracleUnavailable(f"GGSPEC_LIBGGML={env} is not a file")
        return p
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise OracleUnavailable(
            f"the oracle is not installed: pip install '{ORACLE_PACKAGE}=={ORACLE_VERSION}' (or the [oracle] extra)")
    for loc in spec.submodule_search_locations:
        for pattern in ("lib/libggml-base.so*", "lib/libggml-base.dylib", "lib/ggml-base.dll", "libggml-base.so*"):
            hits = sorted(glob.glob(os.path.join(loc, pattern)))
            if hits:
                return Path(hits[0])
    raise OracleUnavailable(f"llama_cpp is installed but no libggml-base was found under {spec.submodule_search_locations}")


def installed_version() -> str | None:
    try:
        from importlib.metadata import version
        return version(ORACLE_PACKAGE)
    except Exception:
        return None


class LibGGML:
    """A loaded libggml-base. Every call is single-threaded C."""

    def __init__(self, path: "str | os.PathLike | None" = None):
        self.path = Path(path) if path else find_library()
        try:
            self.lib = ctypes.CDLL(str(self.path))
        except OSError as e:
            raise OracleUnavailable(f"cannot load {self.path}: {e}") from e
        lib = self.lib
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        self.version = installed_version()

    # ---------------------------------------------------------------------------------------------
    def traits(self, type_id: int) -> dict:
        t = self.lib.ggml_get_type_traits(int(type_id)).contents
        return {
            "type_name": t.type_name.decode() if t.type_name else None,
            "blck_size": int(t.blck_size),
            "type_size": int(t.type_size),
            "is_quantized": bool(t.is_quantized),
            "to_float": bool(t.to_float),
            "from_float_ref": bool(t.from_float_ref),
        }

    def requires_imatrix(self, type_id: int) -> bool:
        return bool(self.lib.ggml_quantize_requires_imatrix(int(type_id)))

    @functools.lru_cache(maxsize=None)
    def _to_float_fn(self, type_id: int):
        t = get_type(type_id)
        if t.name == "Q8_K":
            fn = self.lib.dequantize_row_q8_K
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            return fn
        ptr = self.lib.ggml_get_type_traits(int(type_id)).contents.to_float
        if not ptr:
            return None
        return _TO_FLOAT(ptr)

    @functools.lru_cache(maxsize=None)
    def _from_float_fn(self, type_id: int):
        t = get_type(type_id)
        if t.name == "Q8_K":
            fn = self.lib.quantize_row_q8_K_ref
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            return fn
        ptr = self.lib.ggml_get_type_traits(int(type_id)).contents.from_float_ref
        if not ptr:
            return None
        return _FROM_FLOAT(ptr)

    def has_to_float(self, type) -> bool:
        return self._to_float_fn(live_type(type).id) is not None

    def to_float(self, type, raw, n: int) -> np.ndarray:
        """ggml's to_float (dequantize_row_q8_K for Q8_K): ``n`` float32 values from ``raw``."""
        t = live_type(type)
        fn = self._to_float_fn(t.id)
        if fn is None:
            raise UnsupportedTypeError(f"ggml has no to_float for {t.name}")
        if n % t.block_size:
            raise ShapeError(f"n = {n} is not a multiple of {t.block_size}")
        need = n // t.block_size * t.type_size
        src = np.frombuffer(bytes(raw), dtype=np.uint8)
        if src.size < need:
            raise ShapeError(f"{t.name}: {n} values need {need} bytes, got {src.size}")
        src = np.ascontiguousarray(src[:need])
        out = np.empty(n, dtype=np.float32)
        fn(src.ctypes.data, out.ctypes.data, n)
        return out

    def from_float_ref(self, type, x) -> bytes:
        """ggml's reference row quantizer (``from_float_ref``; quantize_row_q8_K_ref for Q8_K)."""
        t = live_type(type)
        fn = self._from_float_fn(t.id)
        if fn is None:
            raise UnsupportedTypeError(f"ggml has no reference quantizer for {t.name}")
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        if x.size % t.block_size:
            raise ShapeError(f"{x.size} values is not a multiple of {t.block_size}")
        out = np.zeros(x.size // t.block_size * t.type_size, dtype=np.uint8)
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out.tobytes()

    def quantize_chunk(self, type, x, imatrix=None) -> bytes:
        """ggml_quantize_chunk over all rows of ``x`` (rows, n_per_row), start 0.

        Arguments ggml would abort on (unsupported type, missing imatrix, bad shapes) raise here
        instead, so a bad call cannot kill the Python process.
        """
        t = live_type(type)
        if not t.quantize_chunk:
            raise UnsupportedTypeError(f"ggml_quantize_chunk does not take {t.name}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        nrows, n_per_row = x.shape
        if n_per_row % t.block_size:
            raise ShapeError(f"n_per_row {n_per_row} is not a multiple of {t.block_size}")
        imp = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
            if imatrix.size != n_per_row:
                raise ShapeError(f"imatrix has {imatrix.size} values, expected {n_per_row}")
            imp = imatrix.ctypes.data
        elif self.requires_imatrix(t.id):
            raise ImatrixRequiredError(f"{t.name} requires an importance matrix")
        out = np.zeros(nrows * t.row_size(n_per_row), dtype=np.uint8)
        got = self.lib.ggml_quantize_chunk(t.id, x.ctypes.data, out.ctypes.data, 0, nrows, n_per_row, imp)
        assert got == out.size, (got, out.size)
        return out.tobytes()

    def quantize(self, type, x, imatrix=None) -> bytes:
        """quantize_chunk where ggml takes the type, else the reference row quantizer (Q8_1, Q8_K)."""
        t = live_type(type)
        if t.quantize_chunk:
            return self.quantize_chunk(t, x, imatrix)
        return self.from_float_ref(t, x)


@functools.lru_cache(maxsize=1)
def load(path: "str | None" = None) -> LibGGML:
    """The oracle, loaded once; OracleUnavailable with the reason if it cannot be."""
    return LibGGML(path)


def available() -> "tuple[bool, str]":
    try:
        load()
        return True, ""
    except OracleUnavailable as e:
        return False, str(e)
