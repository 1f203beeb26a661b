"""Typed errors raised by ggspec.

Every error a user can provoke with bad input is one of these; nothing else escapes the readers.
"""

from __future__ import annotations


class GGSpecError(Exception):
    """Base class of every ggspec error."""


class FormatError(GGSpecError, ValueError):
    """A file or byte string does not follow the format. ``offset`` is the byte offset of the problem."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        self.message = message
        super().__init__(message if offset is None else f"at byte {offset}: {message}")


class UnsupportedTypeError(GGSpecError, ValueError):
    """A ggml type that does not exist, was removed, or that an operation does not support."""


class ShapeError(GGSpecError, ValueError):
    """An array or byte string has the wrong shape or length for the requested type."""


class ImatrixRequiredError(GGSpecError, ValueError):
    """The type's quantizer needs an importance matrix (as ggml_quantize_requires_imatrix says)."""


class OracleUnavailable(GGSpecError, RuntimeError):
    """The C oracle (libggml-base of llama-cpp-python==0.3.36) cannot be loaded."""


class UnsupportedArchitectureError(GGSpecError, ValueError):
    """A model architecture (``general.architecture``) that the forward pass does not model."""
