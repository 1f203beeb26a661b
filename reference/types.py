"""The ggml type registry, as of the pinned oracle (ggml 0.25.3 inside llama-cpp-python 0.3.36).

Every ``enum ggml_type`` value 0..42 has a row. Ids whose support ggml removed are kept, marked
``removed=True`` with block and type size 0 (as ggml's own type_traits table does), so that an id read
from an old file gives a precise error instead of a wrong layout.

Columns
-------
id, name          the enum value and the enum name without ``GGML_TYPE_`` (ggml's ``type_name`` is
                  the lower-case spelling, e.g. ``q4_K``; see ``ggml_name``)
block_size        weights per block (``blck_size``)
type_size         bytes per block (``type_size`` = ``sizeof(block_xxx)``)
bpw               exact bits per weight, ``Fraction(8 * type_size, block_size)``
family            which reference module implements it (see ``FAMILY_MODULES``)
quantize_chunk    ``ggml_quantize_chunk`` accepts the type
ref_quantizer     ggml has a reference quantizer (``type_traits.from_float_ref`` is not NULL)
requires_imatrix  ``ggml_quantize_requires_imatrix`` is true
to_float          ggml's base library has a ``to_float`` for the type
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

from ..errors import UnsupportedTypeError

QK_K = 256

# family -> module of ggspec.reference that implements it
FAMILY_MODULES = {
    "float": "fp",
    "int": "fp",
    "legacy": "legacy",
    "kquant": "kquants",
    "iquant": "iquants",
    "ternary": "ternary",
    "fp4": "fp4",
    "lowbit": "lowbit",
    "removed": None,
}


@dataclass(frozen=True)
class GGMLType:
    id: int
    name: str
    block_size: int
    type_size: int
    family: str
    quantize_chunk: bool = False
    ref_quantizer: bool = False
    requires_imatrix: bool = False
    to_float: bool = False
    removed: bool = False
    note: str = ""

    @property
    def bpw(self) -> Fraction:
        """Exact bits per weight of the block layout (0 for removed types)."""
        if self.removed:
            return Fraction(0)
        return Fraction(8 * self.type_size, self.block_size)

    @property
    def ggml_name(self) -> str:
        """ggml's ``type_name`` (lower case except the K of k-quants)."""
        return self.name.lower().replace("_k", "_K")

    def row_size(self, n_per_row: int) -> int:
        """Bytes of one row of ``n_per_row`` weights (``ggml_row_size``)."""
        return self.type_size * n_per_row // self.block_size

    def __str__(self) -> str:
        return self.name


def _t(id, name, bs, ts, family, qc=False, ref=False, imat=False, tf=True, note=""):
    return GGMLType(id, name, bs, ts, family, qc, ref, imat, tf, False, note)


def _removed(id, name, note):
    return GGMLType(id, name, 0, 0, "removed", removed=True, note=note)


# fmt: off
TYPES: tuple[GGMLType, ...] = (
    #   id  name       block  bytes family     chunk  ref    imatrix to_float
    _t(0,  "F32",      1,     4,    "float",   True,  False, False, False, "IEEE binary32; ggml has no to_float (identity)"),
    _t(1,  "F16",      1,     2,    "float",   True,  True),
    _t(2,  "Q4_0",     32,    18,   "legacy",  True,  True),
    _t(3,  "Q4_1",     32,    20,   "legacy",  True,  True),
    _removed(4, "Q4_2", "removed from ggml in May 2023 (ggjt era); see ggml_legacy"),
    _removed(5, "Q4_3", "removed from ggml in May 2023 (ggjt era); see ggml_legacy"),
    _t(6,  "Q5_0",     32,    22,   "legacy",  True,  True),
    _t(7,  "Q5_1",     32,    24,   "legacy",  True,  True),
    _t(8,  "Q8_0",     32,    34,   "legacy",  True,  True),
    _t(9,  "Q8_1",     32,    36,   "legacy",  False, True,  False, False, "activation type: from_float_ref only, no to_float"),
    _t(10, "Q2_K",     QK_K,  84,   "kquant",  True,  True),
    _t(11, "Q3_K",     QK_K,  110,  "kquant",  True,  True),
    _t(12, "Q4_K",     QK_K,  144,  "kquant",  True,  True),
    _t(13, "Q5_K",     QK_K,  176,  "kquant",  True,  True),
    _t(14, "Q6_K",     QK_K,  210,  "kquant",  True,  True),
    _t(15, "Q8_K",     QK_K,  292,  "kquant",  False, False, False, False, "activation type: quantize_row_q8_K_ref / dequantize_row_q8_K are exported, not in type_traits"),
    _t(16, "IQ2_XXS",  QK_K,  66,   "iquant",  True,  False, True),
    _t(17, "IQ2_XS",   QK_K,  74,   "iquant",  True,  False, True),
    _t(18, "IQ3_XXS",  QK_K,  98,   "iquant",  True,  True),
    _t(19, "IQ1_S",    QK_K,  50,   "iquant",  True,  False, True),
    _t(20, "IQ4_NL",   32,    18,   "iquant",  True,  True),
    _t(21, "IQ3_S",    QK_K,  110,  "iquant",  True,  True),
    _t(22, "IQ2_S",    QK_K,  82,   "iquant",  True,  True),
    _t(23, "IQ4_XS",   QK_K,  136,  "iquant",  True,  True),
    _t(24, "I8",       1,     1,    "int",     False, False, False, False),
    _t(25, "I16",      1,     2,    "int",     False, False, False, False),
    _t(26, "I32",      1,     4,    "int",     False, False, False, False),
    _t(27, "I64",      1,     8,    "int",     False, False, False, False),
    _t(28, "F64",      1,     8,    "float",   False, False, False, False),
    _t(29, "IQ1_M",    QK_K,  56,   "iquant",  True,  False),
    _t(30, "BF16",     1,     2,    "float",   True,  True),
    _removed(31, "Q4_0_4_4", "removed from GGUF files: use Q4_0 with runtime repacking"),
    _removed(32, "Q4_0_4_8", "removed from GGUF files: use Q4_0 with runtime repacking"),
    _removed(33, "Q4_0_8_8", "removed from GGUF files: use Q4_0 with runtime repacking"),
    _t(34, "TQ1_0",    QK_K,  54,   "ternary", True,  True),
    _t(35, "TQ2_0",    QK_K,  66,   "ternary", True,  True),
    _removed(36, "IQ4_NL_4_4", "removed: use IQ4_NL with runtime repacking"),
    _removed(37, "IQ4_NL_4_8", "removed: use IQ4_NL with runtime repacking"),
    _removed(38, "IQ4_NL_8_8", "removed: use IQ4_NL with runtime repacking"),
    _t(39, "MXFP4",    32,    17,   "fp4",     True,  True),
    _t(40, "NVFP4",    64,    36,   "fp4",     True,  True),
    _t(41, "Q1_0",     128,   18,   "lowbit",  True,  True),
    _t(42, "Q2_0",     64,    18,   "lowbit",  True,  True),
)
# fmt: on

GGML_TYPE_COUNT = 43

_BY_ID = {t.id: t for t in TYPES}
_BY_NAME = {t.name: t for t in TYPES}
_BY_NAME_LOWER = {t.name.lower(): t for t in TYPES}

LIVE_TYPES: tuple[GGMLType, ...] = tuple(t for t in TYPES if not t.removed)


def get_type(key: "str | int | GGMLType") -> GGMLType:
    """Look a type up by ggml name ("Q4_K", "q4_k", "GGML_TYPE_Q4_K") or id (12).

    Raises UnsupportedTypeError for unknown ids and names. Removed types are returned (with
    ``removed=True``); callers that need a layout check that flag.
    """
    if isinstance(key, GGMLType):
        return key
    if isinstance(key, bool):
        raise UnsupportedTypeError(f"not a ggml type: {key!r}")
    if isinstance(key, int):
        try:
            return _BY_ID[key]
        except KeyError:
            raise UnsupportedTypeError(f"unknown ggml type id {key} (valid ids: 0..{GGML_TYPE_COUNT - 1})") from None
    if isinstance(key, str):
        name = key.strip()
        if name.upper().startswith("GGML_TYPE_"):
            name = name[len("GGML_TYPE_"):]
        t = _BY_NAME.get(name) or _BY_NAME_LOWER.get(name.lower())
        if t is None:
            raise UnsupportedTypeError(f"unknown ggml type name {key!r}")
        return t
    raise UnsupportedTypeError(f"not a ggml type: {key!r}")


def live_type(key: "str | int | GGMLType") -> GGMLType:
    """Like get_type, but a removed type is an UnsupportedTypeError."""
    t = get_type(key)
    if t.removed:
        raise UnsupportedTypeError(f"ggml type {t.name} (id {t.id}) was removed from ggml: {t.note}")
    return t


