"""Bits per weight and tensor bytes: the ggml block layouts, exact."""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

from ...errors import GGSpecError
from ...reference.types import GGMLType, get_type

# ---------------------------------------------------------------------------------------------------
# Bits per weight
# ---------------------------------------------------------------------------------------------------


def bits_per_weight(type_name: "str | GGMLType") -> Fraction:
    """Exact bits per weight of a ggml type's block layout: ``8 * type_size / block_size``."""
    t = get_type(type_name)
    if t.removed:
        raise GGSpecError(f"{t.name} was removed from ggml and has no layout")
    return t.bpw


def tensor_nbytes(type_name: "str | GGMLType", ne: Sequence[int]) -> int:
    """Bytes of a tensor of shape ``ne`` (ggml order, ``ne[0]`` = row length): ``ggml_nbytes``."""
    t = get_type(type_name)
    if ne[0] % t.block_size:
        raise GGSpecError(f"row length {ne[0]} is not a multiple of the {t.name} block size {t.block_size}")
    rows = 1
    for n in ne[1:]:
        rows *= n
    return t.row_size(ne[0]) * rows


def round_gb(n_bytes: int) -> str:
    """A byte count as published: 10^9 bytes, two decimals, round half up (exact, no float)."""
    hundredths = (2 * n_bytes + 10**7) // (2 * 10**7)  # round(n / 1e7), halves up
    return f"{hundredths // 100}.{hundredths % 100:02d}"


