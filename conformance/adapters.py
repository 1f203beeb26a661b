"""Implementation adapters for the conformance runner.

An implementation is any object with

    name: str
    supports(op, type) -> bool         op in {"dequantize", "quantize", "quantize+imatrix"}; type a GGMLType
    dequantize(type, raw: bytes, n: int) -> float32 ndarray (n,)
    quantize(type, x: float32 (rows, n_per_row), imatrix: float32 (n_per_row,) | None) -> bytes

Shipped adapters: ``reference``, ``numpy`` and ``mlx`` (ggspec.accel backends, once present),
``libggml`` (ctypes into a libggml-base; default the oracle's), ``gguf-py`` (gguf.quants),
``mlx-gguf`` (MLX's own GGUF loader, ``mx.load``).
Third parties register a factory in the entry-point group ``ggspec.implementations`` or pass
``--impl module:factory``; the factory is called with no arguments and returns an implementation.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import GGSpecError, UnsupportedTypeError
from ..reference.types import GGMLType


@runtime_checkable
class Implementation(Protocol):
    name: str

    def supports(self, op: str, type: GGMLType) -> bool: ...

    def dequantize(self, type: GGMLType, raw: bytes, n: int) -> np.ndarray: ...

    def quantize(self, type: GGMLType, x: np.ndarray, imatrix: "np.ndarray | None") -> bytes: ...


class ImplementationUnavailable(GGSpecError):
    """The implementation cannot run here (a package or library is missing)."""


# ------------------------------------------------------------------------------------------------

class ReferenceImpl:
    name = "reference"

    def __init__(self):
        from .. import reference
        self._ref = reference

    def supports(self, op, type):
        return self._ref.supports("quantize" if op == "quantize+imatrix" else op, type)

    def dequantize(self, type, raw, n):
        return self._ref.dequantize(type, raw, n)

    def quantize(self, type, x, imatrix):
        return self._ref.quantize(type, x, imatrix)


class AccelImpl:
    """A ggspec.accel backend (``numpy`` or ``mlx``)."""

    def __init__(self, name: str):
        self.name = name
        try:
            from .. import accel
            self._b = accel.backend(name)
        except ImportError as e:
            raise ImplementationUnavailable(f"ggspec.accel backend {name!r} is not available: {e}") from e

    def supports(self, op, type):
        fn = getattr(self._b, "supports", None)
        return bool(fn(op, type)) if fn else True

    def dequantize(self, type, raw, n):
        return np.asarray(self._b.dequantize(type, raw, n), dtype=np.float32)

    def quantize(self, type, x, imatrix):
        return bytes(self._b.quantize(type, x, imatrix))


class LibGGMLImpl:
    """ggml's C functions through ctypes: to_float (dequantize_row_q8_K for Q8_K) and
    ggml_quantize_chunk (from_float_ref for Q8_1 / Q8_K)."""

    name = "libggml"

    def __init__(self, path: "str | None" = None):
        from . import libggml
        try:
            self._lib = libggml.LibGGML(path) if path else libggml.load()
        except GGSpecError as e:
            raise ImplementationUnavailable(str(e)) from e

    def supports(self, op, type):
        if op == "dequantize":
            return self._lib.has_to_float(type)
        if op == "quantize+imatrix":
            return type.quantize_chunk
        return type.quantize_chunk or type.ref_quantizer or type.name == "Q8_K"

    def dequantize(self, type, raw, n):
        return self._lib.to_float(type, raw, n)

    def quantize(self, type, x, imatrix):
        if not type.quantize_chunk and imatrix is not None:
            raise UnsupportedTypeError(f"{type.name}: ggml's reference row quantizer takes no imatrix")
        return self._lib.quantize(type, x, imatrix)


class GGUFPyImpl:
    """gguf-py's numpy quantizers (``gguf.quants``); it takes no importance matrix."""

    name = "gguf-py"

    def __init__(self):
        try:
            import gguf
            from gguf import quants
        except ImportError as e:
            raise ImplementationUnavailable(f"gguf-py is not installed (pip install gguf==0.19.0): {e}") from e
        self._gguf = gguf
        self._q = quants
        self.version = getattr(gguf, "__version__", None)
        try:
            from importlib.metadata import version
            self.version = version("gguf")
        except Exception:
            pass
        self._cache: dict = {}

    def _qtype(self, type):
        try:
            return self._gguf.GGMLQuantizationType(type.id)
        except ValueError:
            return None

    def supports(self, op, type):
        if op == "quantize+imatrix":
            return False
        key = (op, type.id)
        if key in self._cache:
            return self._cache[key]
        qt = self._qtype(type)
        ok = False
        if qt is not None:
            try:
                if op == "dequantize":
                    self._q.dequantize(np.zeros((1, type.type_size), np.uint8), qt)
                else:
                    self._q.quantize(np.zeros((1, max(type.block_size, 256)), np.float32), qt)
                ok = True
            except NotImplementedError:
                ok = False
            except Exception:
                ok = True  # implemented, even if it fails on this input: let the vectors judge
        self._cache[key] = ok
        return ok

    def dequantize(self, type, raw, n):
        qt = self._qtype(type)
        data = np.frombuffer(bytes(raw), np.uint8)[: n // type.block_size * type.type_size]
        data = data.reshape(-1, type.type_size) if type.block_size > 1 else data.reshape(1, -1)
        return np.asarray(self._q.dequantize(data, qt), dtype=np.float32).reshape(-1)[:n]

    def quantize(self, type, x, imatrix):
        if imatrix is not None:
            raise UnsupportedTypeError("gguf-py quantizers take no importance matrix")
        out = self._q.quantize(np.asarray(x, np.float32), self._qtype(type))
        return np.ascontiguousarray(out).tobytes()


class MLXGGUFImpl:
    """MLX's GGUF loader (``mx.load`` on a one-tensor GGUF file we write): what an MLX user gets
    from a GGUF file. Q4_0/Q4_1/Q8_0 come back as MLX affine-quantized arrays (dequantized here
    with ``mx.dequantize``); other types come back as plain arrays. It has no ggml quantizer."""

    name = "mlx-gguf"

    def __init__(self):
        try:
            import mlx.core as mx
        except ImportError as e:
            raise ImplementationUnavailable(f"mlx is not installed (pip install 'mlx[cpu]==0.32.4'): {e}") from e
        try:
            import gguf  # the file is written with gguf-py's GGUFWriter
        except ImportError as e:
            raise ImplementationUnavailable(f"mlx-gguf writes its files with gguf-py (pip install gguf==0.19.0): {e}") from e
        import tempfile
        self._mx, self._gguf = mx, gguf
        self._dir = tempfile.TemporaryDirectory(prefix="ggspec-mlx-gguf-")
        self._cache: dict = {}

    def _write(self, type, raw, n) -> str:
        import os
        gguf = self._gguf
        path = os.path.join(self._dir.name, "t.gguf")
        w = gguf.GGUFWriter(path, "llama")
        data = np.frombuffer(bytes(raw), np.uint8)[: n // type.block_size * type.type_size]
        qt = gguf.GGMLQuantizationType(type.id)
        if type.name == "F32":
            w.add_tensor("t", data.view(np.float32).reshape(1, n))
        elif type.name == "F16":
            w.add_tensor("t", data.view(np.float16).reshape(1, n))
        else:
            w.add_tensor("t", data.reshape(1, -1), raw_dtype=qt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    def supports(self, op, type):
        if op != "dequantize":
            return False
        if type.id not in self._cache:
            try:
                self.dequantize(type, bytes(type.type_size * (256 // type.block_size if type.block_size <= 256 else 1)),
                                max(type.block_size, 256) if type.block_size <= 256 else type.block_size)
                self._cache[type.id] = True
            except Exception:
                self._cache[type.id] = False
        return self._cache[type.id]

    def dequantize(self, type, raw, n):
        mx = self._mx
        arrays = mx.load(self._write(type, raw, n))
        w = arrays["t"]
        if "t.scales" in arrays:
            bits = 32 * w.shape[-1] // n
            y = mx.dequantize(w, arrays["t.scales"], arrays["t.biases"], group_size=32, bits=bits)
        else:
            y = w
        return np.array(y.astype(mx.float32)).reshape(-1)

    def quantize(self, type, x, imatrix):
        raise UnsupportedTypeError("MLX's GGUF loader does not write ggml blocks")


# ------------------------------------------------------------------------------------------------

BUILTIN: dict[str, Callable[[], object]] = {
    "reference": ReferenceImpl,
    "numpy": lambda: AccelImpl("numpy"),
    "mlx": lambda: AccelImpl("mlx"),
    "libggml": LibGGMLImpl,
    "gguf-py": GGUFPyImpl,
    "mlx-gguf": MLXGGUFImpl,
}
DEFAULT_ORDER = ("reference", "numpy", "mlx", "libggml", "gguf-py", "mlx-gguf")


def _plugin_factories() -> dict[str, Callable[[], object]]:
    try:
        eps = entry_points(group="ggspec.implementations")
    except TypeError:  # Python < 3.10 API
        eps = entry_points().get("ggspec.implementations", [])
    return {ep.name: ep.load for ep in eps}


def _check(impl) -> object:
    missing = [a for a in ("name", "supports", "dequantize", "quantize") if not hasattr(impl, a)]
    if missing:
        raise GGSpecError(f"{impl!r} is not an implementation: missing {', '.join(missing)}")
    return impl


def get_implementation(spec: str, libggml_path: "str | None" = None):
    """Instantiate an implementation by builtin name, entry-point name, or ``module:factory``."""
    if spec == "libggml" and libggml_path:
        return LibGGMLImpl(libggml_path)
    if spec in BUILTIN:
        return _check(BUILTIN[spec]())
    plugins = _plugin_factories()
    if spec in plugins:
        return _check(plugins[spec]()())
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise GGSpecError(f"cannot import {mod_name!r} for --impl {spec}: {e}") from e
        factory = mod
        for part in attr.split("."):
            factory = getattr(factory, part, None)
            if factory is None:
                raise GGSpecError(f"{mod_name!r} has no attribute {attr!r}")
        impl = factory() if callable(factory) and not hasattr(factory, "dequantize") else factory
        return _check(impl)
    known = ", ".join(list(BUILTIN) + sorted(plugins))
    raise GGSpecError(f"unknown implementation {spec!r}; known: {known}, or module:factory")


def available_implementations() -> "tuple[list, dict[str, str]]":
    """(implementations that load here, {name: why not} for the ones that do not)."""
    impls, missing = [], {}
    for name in DEFAULT_ORDER:
        try:
            impls.append(get_implementation(name))
        except GGSpecError as e:
            missing[name] = str(e)
    for name, loader in _plugin_factories().items():
        try:
            impls.append(_check(loader()()))
        except Exception as e:  # a broken plug-in must not stop the run
            missing[name] = f"plug-in failed to load: {e}"
    return impls, missing
