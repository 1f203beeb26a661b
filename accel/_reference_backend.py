"""The reference, seen through the backend interface (for uniform benchmarking and testing)."""

from __future__ import annotations

from .. import reference


class Backend:
    name = "reference"

    def supports(self, op: str, type) -> bool:
        return reference.supports("quantize" if op.startswith("quantize") else op, type)

    def quantize(self, type, x, imatrix=None) -> bytes:
        return reference.quantize(type, x, imatrix)

    def dequantize(self, type, raw, n):
        return reference.dequantize(type, raw, n)
