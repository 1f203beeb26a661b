"""Accelerated backends, selected by name or automatically.

    from ggspec import accel
    b = accel.backend("numpy")        # "reference", "numpy", "mlx", or None/"auto"
    raw = b.quantize("Q4_K", x, imatrix=None)   # bytes, identical to ggspec.reference.quantize
    y = b.dequantize("Q4_K", raw, n)            # float32 ndarray, identical bits to the reference

Every backend has the same semantics as ``ggspec.reference`` (which follows ggml): ``quantize(type,
x, imatrix=None) -> bytes`` and ``dequantize(type, raw, n) -> float32 ndarray``, plus
``supports(op, type) -> bool``, and, where implemented, ``rope(...)`` and ``attention(...)`` with
the signatures of ``ggspec.reference.rope`` / ``ggspec.reference.attention``.

"auto" picks MLX on Apple Silicon when it is installed, numpy elsewhere.
"""

from __future__ import annotations

import importlib
import platform
import threading

from ..errors import GGSpecError

BACKENDS = {
    "reference": "ggspec.accel._reference_backend",
    "numpy": "ggspec.accel.numpy_backend",
    "mlx": "ggspec.accel.mlx_backend",
}


# One instance per name: a backend is configuration plus warm state (lookup tables, MLX streams and
# buffer cache) that every caller can share. Make your own with e.g. numpy_backend.Backend(threads=1).
_INSTANCES: dict = {}
_LOCK = threading.Lock()


class BackendUnavailable(GGSpecError, ImportError):
    """The backend cannot run here (e.g. mlx is not installed)."""


def default_backend_name() -> str:
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        try:
            importlib.import_module("mlx.core")
            return "mlx"
        except ImportError:
            pass
    return "numpy"


def backend(name: "str | None" = None):
    """The backend object for ``name`` ("reference", "numpy", "mlx", or None / "auto"), shared."""
    if name in (None, "auto"):
        name = default_backend_name()
    if name not in BACKENDS:
        raise GGSpecError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)} or 'auto'")
    with _LOCK:
        b = _INSTANCES.get(name)
        if b is None:
            try:
                mod = importlib.import_module(BACKENDS[name])
            except ImportError as e:
                if e.name and e.name.startswith("ggspec."):
                    raise
                raise BackendUnavailable(f"backend {name!r} needs a package that is not installed: {e}") from e
            b = _INSTANCES[name] = mod.Backend()
    return b
