"""GGUF: the container of llama.cpp models (versions 1, 2 and 3; little- and big-endian).

    g = read("model.gguf")            # memory-mapped; no tensor data is read here
    g.version, g.byte_order, g.alignment, g.data_offset
    g.metadata["llama.block_count"]   # plain Python values (str, int, float, bool, list)
    g.values["llama.block_count"]     # the same as Value(value, type, sub_type): what the file stores
    t = g.tensors["blk.0.attn_q.weight"]
    t.type, t.shape, t.offset, t.nbytes, t.raw, t.dequantize()

    write("out.gguf", metadata, tensors)          # byte-identical to gguf-py's GGUFWriter

Layout (every number in the file's byte order; ``u64`` is ``u32`` in version 1 where marked *)

| part          | field        | type               | notes                                              |
|---------------|--------------|--------------------|----------------------------------------------------|
| header        | magic        | 4 bytes "GGUF"     | the same four bytes in both byte orders             |
|               | version      | u32                | 1, 2 or 3                                          |
|               | n_tensors    | u64 *              |                                                    |
|               | n_kv         | u64 *              |                                                    |
| n_kv times    | key          | string             | non-empty, unique                                  |
|               | value_type   | u32 (ValueType)    |                                                    |
|               | value        | per type           | see below                                          |
| n_tensors x   | name         | string             | unique, shorter than 64 bytes (GGML_MAX_NAME)      |
|               | n_dims       | u32                | 0..4 (GGML_MAX_DIMS)                               |
|               | ne[n_dims]   | u64 * each         | ne0 first: ne0 is the row length (contiguous)      |
|               | type         | u32 (ggml_type)    |                                                    |
|               | offset       | u64                | relative to the data section; multiple of alignment|
| padding       |              | zeros              | to a multiple of ``alignment``, from file start     |
| data section  |              | tensor data        | each tensor padded to ``alignment``                |

A string is ``u64 * length`` then that many UTF-8 bytes (no terminator). A value is a scalar
(u8 i8 u16 i16 u32 i32 f32 bool u64 i64 f64; bool is one byte), a string, or an array: ``u32
item_type``, ``u64 * count``, then ``count`` items (arrays of arrays nest: each inner array carries its
own item_type and count). ``general.alignment`` (u32, a power of two) overrides the default 32.

Byte order. Version 3 introduced big-endian files; the magic is the same four bytes either way, so the
order is detected as llama.cpp and gguf-py do: the version read little-endian has its low 16 bits zero
(0x03000000) -> the file is big-endian. Every header, KV and tensor-info number is then big-endian.

Shapes. ``GGUFTensor.shape`` is ggml's ``ne`` as stored: ``(ne0, ne1, ...)``, ne0 the fastest-varying
dimension (the row length). numpy's shape of the same tensor is ``shape[::-1]``.
``dequantize()`` returns float32 with the numpy shape.

Raw bytes. ``GGUFTensor.raw`` is a zero-copy view (``numpy.memmap`` slice, bytes-like) of the bytes exactly
as stored. In a little-endian file those are ggml's in-memory bytes. In a big-endian file the data are
in the order a big-endian machine's ggml reads them natively: element types (F16, BF16, F32, F64,
I16, I32, I64) have each element byte-swapped; in block types the multi-byte fields are byte-swapped as
gguf-py's ``gguf_convert_endian.py`` does, which defines this only for Q4_0, Q8_0 (``d``), Q4_K (``d``,
``dmin``), Q6_K (``d``), and MXFP4/NVFP4 (nothing to swap). ``GGUFTensor.le_bytes()`` (and
``to_little_endian``) returns ggml's little-endian bytes; other block types in a big-endian file raise
``UnsupportedTypeError``. Note that gguf-py's ``GGUFWriter(endianess=BIG)`` does NOT swap quantized data
given as uint8 arrays (numpy's byteswap of uint8 is a no-op): such files hold little-endian blocks.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np

from ..errors import FormatError, GGSpecError, ShapeError, UnsupportedTypeError
from .types import GGMLType, get_type

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64          # llama.cpp rejects tensor names of 64 bytes or more
MAX_ARRAY_NESTING = 32      # our limit on arrays of arrays (the format sets none; llama.cpp allows none)
INT64_MAX = 2**63 - 1
SUPPORTED_VERSIONS = (1, 2, 3)


class ValueType(enum.IntEnum):
    """``enum gguf_type``: the 13 metadata value types."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# struct format and size of each scalar type
_SCALAR = {
    ValueType.UINT8: "B", ValueType.INT8: "b", ValueType.UINT16: "H", ValueType.INT16: "h",
    ValueType.UINT32: "I", ValueType.INT32: "i", ValueType.FLOAT32: "f", ValueType.BOOL: "B",
    ValueType.UINT64: "Q", ValueType.INT64: "q", ValueType.FLOAT64: "d",
}
_NP_SCALAR = {
    ValueType.UINT8: "u1", ValueType.INT8: "i1", ValueType.UINT16: "u2", ValueType.INT16: "i2",
    ValueType.UINT32: "u4", ValueType.INT32: "i4", ValueType.FLOAT32: "f4", ValueType.BOOL: "u1",
    ValueType.UINT64: "u8", ValueType.INT64: "i8", ValueType.FLOAT64: "f8",
}
_SCALAR_SIZE = {t: struct.calcsize("<" + f) for t, f in _SCALAR.items()}


@dataclass(frozen=True)
class Value:
    """A typed metadata value. For ``ARRAY``, ``sub_type`` is the item type and ``value`` a list (of
    plain Python values, or of ``Value`` for arrays of arrays).

    ``bits``: for a FLOAT32 value or a FLOAT32 array, the stored bytes (little-endian, 4 per item).
    The Python float in ``value`` goes through a double, which sets a signalling NaN's quiet bit;
    ``bits`` is exactly what the file holds (what ggml returns)."""
    value: Any
    type: ValueType
    sub_type: Optional[ValueType] = None
    bits: Optional[bytes] = field(default=None, compare=False)

    def exact(self) -> Any:
        """``value`` with FLOAT32 items as numpy float32 scalars made from ``bits`` (bit for bit),
        for writing back; other values unchanged."""
        if self.bits is None:
            return self.value
        f = np.frombuffer(self.bits, dtype="<f4")
        return f[0] if self.type == ValueType.FLOAT32 else list(f)

    def plain(self) -> Any:
        """The value without type information (nested arrays become nested lists)."""
        if self.type == ValueType.ARRAY and self.sub_type == ValueType.ARRAY:
            return [v.plain() if isinstance(v, Value) else v for v in self.value]
        return self.value


@dataclass(frozen=True)
class Field:
    """One key-value pair as read: where it starts in the file and its typed value."""
    key: str
    offset: int
    value: Value


# --------------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------------

# Multi-byte fields inside a block, (offset, size), that a big-endian file stores byte-swapped.
# The set is gguf-py's scripts/gguf_convert_endian.py (gguf 0.19.0) -- the only convention there is.
BE_BLOCK_FIELDS: dict[str, tuple[tuple[int, int], ...]] = {
    "Q4_0": ((0, 2),),
    "Q8_0": ((0, 2),),
    "Q4_K": ((0, 2), (2, 2)),
    "Q6_K": ((208, 2),),
    "MXFP4": (),
    "NVFP4": (),
}


def swap_byte_order(type, raw) -> bytes:
    """Convert tensor bytes of ``type`` between the two byte orders (the operation is its own inverse).

    Element types swap every element; block types swap the fields listed in ``BE_BLOCK_FIELDS``.
    """
    t = get_type(type)
    mv = memoryview(raw).cast("B")
    if t.block_size == 1:
        if t.type_size == 1:
            return bytes(mv)
        if len(mv) % t.type_size:
            raise FormatError(f"{t.name} data of {len(mv)} bytes is not a whole number of elements")
        a = np.frombuffer(mv, dtype=f"u{t.type_size}")
        return a.byteswap().tobytes()
    fields = BE_BLOCK_FIELDS.get(t.name)
    if fields is None:
        raise UnsupportedTypeError(
            f"no byte-order convention exists for {t.name} blocks in big-endian GGUF files (gguf-py's "
            f"gguf_convert_endian.py defines one only for {', '.join(BE_BLOCK_FIELDS)})")
    if len(mv) % t.type_size:
        raise FormatError(f"{t.name} data of {len(mv)} bytes is not a whole number of {t.type_size}-byte blocks")
    blocks = np.frombuffer(mv, dtype=np.uint8).reshape(-1, t.type_size).copy()
    for off, size in fields:
        blocks[:, off:off + size] = blocks[:, off:off + size][:, ::-1]
    return blocks.tobytes()


to_little_endian = swap_byte_order  # from a big-endian file's bytes to ggml's (little-endian) bytes


def _reshape(a: np.ndarray, shape: tuple, name: str) -> np.ndarray:
    try:
        return a.reshape(shape or ())
    except ValueError:  # e.g. an empty tensor (0, 2**62): ggml accepts it, numpy cannot represent it
        raise ShapeError(f"tensor {name!r}: numpy cannot represent the shape {shape}") from None


class GGUFTensor:
    """A tensor of a GGUF file: its info and a lazy view of its bytes."""

    __slots__ = ("name", "type", "shape", "offset", "relative_offset", "nbytes", "info_offset",
                 "_file")

    def __init__(self, file: "GGUFFile", name: str, type: GGMLType, shape: tuple, offset: int,
                 relative_offset: int, nbytes: int, info_offset: int):
        self._file = file
        self.name = name
        self.type = type
        self.shape = shape                  # ggml order: (ne0, ne1, ...), ne0 = row length
        self.offset = offset                # absolute file offset of the data
        self.relative_offset = relative_offset  # as stored (relative to data_offset)
        self.nbytes = nbytes
        self.info_offset = info_offset      # where the tensor info starts in the file

    @property
    def n_dims(self) -> int:
        return len(self.shape)

    @property
    def ne(self) -> tuple:
        return self.shape

    @property
    def n_elements(self) -> int:
        n = 1
        for v in self.shape:
            n *= v
        return n

    @property
    def numpy_shape(self) -> tuple:
        return tuple(reversed(self.shape))

    @property
    def raw(self):
        """The stored bytes (a zero-copy numpy.memmap / ndarray slice of uint8; bytes-like)."""
        return self._file._buf[self.offset:self.offset + self.nbytes]

    @property
    def data(self):
        return self.raw

    def le_bytes(self):
        """ggml's little-endian bytes of this tensor (the raw view itself for little-endian files)."""
        if self._file.byte_order == "<":
            return self.raw
        return to_little_endian(self.type, self.raw)

    def array(self) -> np.ndarray:
        """Element types only: a numpy array view in numpy's shape, with the file's byte order."""
        if self.type.block_size != 1:
            raise UnsupportedTypeError(f"{self.name}: {self.type.name} is a block type; use dequantize()")
        if self.type.name == "BF16":
            raise UnsupportedTypeError(f"{self.name}: numpy has no bfloat16; use dequantize()")
        kind = {"F16": "f2", "F32": "f4", "F64": "f8", "I8": "i1", "I16": "i2", "I32": "i4", "I64": "i8"}
        dt = np.dtype(self._file.byte_order + kind[self.type.name])
        return _reshape(np.frombuffer(self.raw, dtype=dt), self.numpy_shape, self.name)

    def dequantize(self) -> np.ndarray:
        """float32 values in numpy's shape (``shape[::-1]``), via ggspec.reference.dequantize."""
        from . import dequantize
        out = dequantize(self.type, self.le_bytes(), self.n_elements)
        return _reshape(out, self.numpy_shape, self.name)

    def __repr__(self) -> str:
        return (f"GGUFTensor({self.name!r}, {self.type.name}, shape={self.shape}, offset={self.offset}, "
                f"nbytes={self.nbytes})")


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------

class GGUFFile:
    """A parsed GGUF file. ``tensors`` and ``metadata`` keep the file's order."""

    def __init__(self):
        self.path: Optional[Path] = None
        self.version = 0
        self.byte_order = "<"               # "<" little-endian, ">" big-endian
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        self.data_offset = 0
        self.file_size = 0
        self.n_tensors = 0
        self.n_kv = 0
        self.fields: dict[str, Field] = {}
        self.values: dict[str, Value] = {}
        self.metadata: dict[str, Any] = {}
        self.tensors: dict[str, GGUFTensor] = {}
        self.tensor_info_offset = 0
        self._buf = None

    @property
    def kv(self) -> dict:
        return self.metadata

    def tensor_bytes(self, t) -> Any:
        if isinstance(t, str):
            t = self.tensors[t]
        return t.raw

    def close(self) -> None:
        self.tensors = {}
        self._buf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFFile(version={self.version}, byte_order={self.byte_order!r}, kv={len(self.metadata)}, "
                f"tensors={len(self.tensors)}, alignment={self.alignment}, data_offset={self.data_offset})")


class _Cursor:
    """Reads numbers of one byte order from a buffer, checking every length against the bytes left."""

    def __init__(self, buf, size: int, order: str, version: int):
        self.buf = buf
        self.mv = memoryview(buf).cast("B") if not isinstance(buf, np.ndarray) else memoryview(buf.reshape(-1))
        self.size = size
        self.pos = 0
        self.order = order
        self.version = version

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise FormatError(f"the file ends inside {what}: {n} bytes needed, {self.size - self.pos} left "
                              f"(truncated or corrupt file)", self.pos)

    def unpack(self, fmt: str, what: str):
        n = struct.calcsize("<" + fmt)
        self.need(n, what)
        v = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.unpack("I", what)

    def count(self, what: str) -> int:
        """A count or length: u32 in version 1, u64 after."""
        return self.unpack("I" if self.version == 1 else "Q", what)

    def string(self, what: str) -> str:
        start = self.pos
        n = self.count(f"the length of {what}")
        if n > self.size - self.pos:
            raise FormatError(f"{what} claims a length of {n} bytes but only {self.size - self.pos} bytes remain "
                              f"in the file", start)
        b = bytes(self.buf[self.pos:self.pos + n])
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"{what} is not valid UTF-8 (byte {e.start} of the string: {b[e.start:e.start + 1]!r})",
                              self.pos + e.start) from None
        self.pos += n
        return s


def _value_type(c: _Cursor, what: str) -> ValueType:
    off = c.pos
    raw = c.u32(f"the value type of {what}")
    try:
        vt = ValueType(raw)
    except ValueError:
        raise FormatError(f"{what}: unknown value type {raw} (GGUF value types are 0..12)", off) from None
    return vt


def _min_size(vt: ValueType, version: int) -> int:
    """The fewest bytes one item of type ``vt`` can take (to check counts before reading)."""
    cnt = 4 if version == 1 else 8
    if vt == ValueType.STRING:
        return cnt
    if vt == ValueType.ARRAY:
        return 4 + cnt
    return _SCALAR_SIZE[vt]


def _read_strings(c: _Cursor, n: int, what: str) -> list:
    """n strings (the hot path: vocabularies of 150k tokens); same checks as _Cursor.string."""
    mv, pos, size = c.mv, c.pos, c.size
    st = struct.Struct(c.order + ("I" if c.version == 1 else "Q"))
    unpack, w = st.unpack_from, st.size
    out = []
    append = out.append
    for i in range(n):
        if w > size - pos:
            c.pos = pos
            c.need(w, f"the length of string {i} of {what}")
        (ln,) = unpack(mv, pos)
        pos += w
        if ln > size - pos:
            raise FormatError(f"string {i} of {what} claims a length of {ln} bytes but only {size - pos} bytes "
                              f"remain in the file", pos - w)
        try:
            append(str(mv[pos:pos + ln], "utf-8"))
        except UnicodeDecodeError as e:
            raise FormatError(f"string {i} of {what} is not valid UTF-8 (byte {e.start} of the string)",
                              pos + e.start) from None
        pos += ln
    c.pos = pos
    return out


def _read_value(c: _Cursor, vt: ValueType, what: str, depth: int = 0) -> Value:
    if vt in _SCALAR:
        raw = bytes(c.buf[c.pos:c.pos + 4]) if vt == ValueType.FLOAT32 else None
        v = c.unpack(_SCALAR[vt], what)
        if vt == ValueType.BOOL:
            v = v != 0      # llama.cpp: any non-zero byte is true
        if raw is not None:
            return Value(v, vt, bits=raw if c.order == "<" else raw[::-1])
        return Value(v, vt)
    if vt == ValueType.STRING:
        return Value(c.string(what), vt)
    # array
    if depth >= MAX_ARRAY_NESTING:
        raise FormatError(f"{what} nests arrays more than {MAX_ARRAY_NESTING} deep", c.pos)
    sub = _value_type(c, f"the item type of {what}")
    start = c.pos
    n = c.count(f"the length of {what}")
    per = _min_size(sub, c.version)
    if n * per > c.remaining():
        raise FormatError(f"{what} claims {n} items of type {sub.name} (at least {n * per} bytes) but only "
                          f"{c.remaining()} bytes remain in the file", start)
    if sub in _SCALAR:
        dt = np.dtype(c.order + _NP_SCALAR[sub])
        a = np.frombuffer(c.buf, dtype=dt, count=n, offset=c.pos)
        c.pos += n * per
        if sub == ValueType.BOOL:
            items = [bool(x) for x in a.tolist()]
        else:
            items = a.tolist()
        if sub == ValueType.FLOAT32:
            return Value(items, vt, sub, bits=a.view(c.order + "u4").astype("<u4").tobytes())
        return Value(items, vt, sub)
    if sub == ValueType.STRING:
        return Value(_read_strings(c, n, what), vt, sub)
    inner = f"an array nested {depth + 1} deep in {what}" if depth else None
    return Value([_read_value(c, ValueType.ARRAY, inner or f"array {i} of {what}", depth + 1) for i in range(n)],
                 vt, sub)


def parse(buf, *, path=None) -> GGUFFile:
    """Parse GGUF from a bytes-like object (bytes, mmap, numpy uint8 array). Raises FormatError."""
    g = GGUFFile()
    g.path = Path(path) if path is not None else None
    size = len(buf) if not isinstance(buf, np.ndarray) else int(buf.nbytes)
    g.file_size = size
    g._buf = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    if size < 4:
        raise FormatError(f"not a GGUF file: {size} bytes is shorter than the 4-byte magic", 0)
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        if magic in (b"lmgg", b"fmgg", b"tjgg", b"ggml", b"ggmf", b"ggjt"):
            raise FormatError(f"this is a legacy GGML file (magic {magic!r}), not GGUF: use "
                              f"ggspec.reference.ggml_legacy", 0)
        raise FormatError(f"not a GGUF file: the magic is {magic!r}, expected b'GGUF'", 0)
    if size < 8:
        raise FormatError("the file ends inside the version field (truncated file)", size)
    v_le = struct.unpack_from("<I", buf, 4)[0]
    if v_le != 0 and (v_le & 0xFFFF) == 0:
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    else:
        order, version = "<", v_le
    if version not in SUPPORTED_VERSIONS:
        raise FormatError(f"unsupported GGUF version {version} (this reader knows versions 1, 2 and 3)", 4)
    g.version, g.byte_order = version, order
    c = _Cursor(buf, size, order, version)
    c.pos = 8
    g.n_tensors = c.count("the tensor count")
    g.n_kv = c.count("the key-value count")
    cnt = 4 if version == 1 else 8
    min_kv = cnt + 1 + 4 + 1            # key length, 1-byte key, type, smallest value
    min_ti = cnt + 1 + 4 + 4 + 8        # name length, 1-byte name, n_dims, type, offset
    if g.n_kv * min_kv > c.remaining():
        raise FormatError(f"the header claims {g.n_kv} key-value pairs but only {c.remaining()} bytes follow "
                          f"(each pair takes at least {min_kv})", 16 if version > 1 else 12)
    if g.n_tensors * min_ti > c.remaining():
        raise FormatError(f"the header claims {g.n_tensors} tensors but only {c.remaining()} bytes follow "
                          f"(each tensor info takes at least {min_ti})", 8)

    # key-value pairs
    for i in range(g.n_kv):
        start = c.pos
        key = c.string(f"the key of key-value pair {i}")
        if not key:
            raise FormatError(f"key-value pair {i} has an empty key", start)
        if key in g.values:
            raise FormatError(f"duplicate key {key!r} (key-value pair {i})", start)
        vt = _value_type(c, f"the value of {key!r}")
        val = _read_value(c, vt, f"the value of {key!r}")
        g.fields[key] = Field(key, start, val)
        g.values[key] = val
        g.metadata[key] = val.plain()

    if "general.alignment" in g.values:
        a = g.values["general.alignment"]
        off = g.fields["general.alignment"].offset
        if a.type != ValueType.UINT32:
            raise FormatError(f"general.alignment must be of type UINT32, not {a.type.name}", off)
        if a.value == 0 or a.value & (a.value - 1):
            raise FormatError(f"general.alignment = {a.value} is not a power of two", off)
        g.alignment = a.value

    # tensor infos
    g.tensor_info_offset = c.pos
    infos = []
    seen: set = set()
    for i in range(g.n_tensors):
        start = c.pos
        name = c.string(f"the name of tensor {i}")
        if len(name.encode("utf-8")) >= GGML_MAX_NAME:
            raise FormatError(f"tensor {i} name {name[:80]!r} is {len(name.encode())} bytes long; ggml allows at "
                              f"most {GGML_MAX_NAME - 1}", start)
        if name in seen:
            raise FormatError(f"duplicate tensor name {name!r} (tensor {i})", start)
        seen.add(name)
        dims_off = c.pos
        n_dims = c.u32(f"n_dims of tensor {name!r}")
        if n_dims > GGML_MAX_DIMS:
            raise FormatError(f"tensor {name!r} has {n_dims} dimensions; ggml allows at most {GGML_MAX_DIMS}", dims_off)
        ne = []
        for j in range(n_dims):
            doff = c.pos
            v = c.count(f"dimension {j} of tensor {name!r}")
            if v > INT64_MAX:
                raise FormatError(f"dimension {j} of tensor {name!r} is negative ({v - 2**64} as int64)", doff)
            ne.append(v)
        # ggml's overflow check: every running product ne0*ne1*..*nei must fit in int64 (a later 0
        # does not excuse an earlier overflow)
        n_el = ne[0] if ne else 1
        for v in ne[1:]:
            if v > 1 and n_el * v > INT64_MAX:
                raise FormatError(f"tensor {name!r} has shape {tuple(ne)}: the element count overflows int64",
                                  dims_off)
            n_el *= v
        toff = c.pos
        tid = c.unpack("i", f"the type of tensor {name!r}")
        try:
            t = get_type(tid)
        except UnsupportedTypeError:
            raise FormatError(f"tensor {name!r} has unknown ggml type id {tid}", toff) from None
        if t.removed:
            raise FormatError(f"tensor {name!r} has ggml type {t.name} (id {t.id}), which was removed from ggml: "
                              f"{t.note}", toff)
        ne0 = ne[0] if ne else 1
        if ne0 % t.block_size:
            raise FormatError(f"tensor {name!r}: row length ne0 = {ne0} is not a multiple of {t.name}'s block size "
                              f"{t.block_size}", dims_off)
        nbytes = n_el // t.block_size * t.type_size
        ooff = c.pos
        rel = c.unpack("Q", f"the data offset of tensor {name!r}")
        infos.append((name, t, tuple(ne), rel, nbytes, start, ooff))

    al = g.alignment
    # llama.cpp pads to the alignment only when there is at least one tensor (gguf_get_data_offset)
    g.data_offset = -(-c.pos // al) * al if infos else c.pos
    if infos and g.data_offset > size:
        raise FormatError(f"the file ends before the data section, which starts at byte {g.data_offset}", size)
    for name, t, ne, rel, nbytes, start, ooff in infos:
        if rel % al:
            raise FormatError(f"tensor {name!r}: data offset {rel} is not a multiple of the alignment {al}", ooff)
        absolute = g.data_offset + rel
        if absolute + nbytes > size:
            raise FormatError(f"tensor {name!r}: its {nbytes} bytes at file offset {absolute} run past the end of "
                              f"the file ({size} bytes)", ooff)
        g.tensors[name] = GGUFTensor(g, name, t, ne, absolute, rel, nbytes, start)
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in g.tensors.values() if t.nbytes)
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise FormatError(f"tensors {an!r} and {bn!r} overlap (bytes {a0}..{a1} and {b0}..{b1})",
                              g.tensors[bn].info_offset)
    return g


def read(path) -> GGUFFile:
    """Open a GGUF file memory-mapped. Only the header, metadata and tensor infos are parsed."""
    path = Path(path)
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise FormatError("not a GGUF file: the file is empty", 0)
        buf = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as e:
        raise GGSpecError(f"cannot open {path}: {e.strerror or e}") from None
    return parse(buf, path=path)


open_gguf = read


# --------------------------------------------------------------------------------------------------
# Writer (byte-identical to gguf-py's GGUFWriter for the same keys, values and tensors)
# --------------------------------------------------------------------------------------------------

def infer_type(v: Any) -> ValueType:
    """The value type gguf-py's GGUFValueType.get_type picks for a plain Python value."""
    if isinstance(v, Value):
        return v.type
    if isinstance(v, (str, bytes, bytearray)):
        return ValueType.STRING
    if isinstance(v, (list, tuple)):
        return ValueType.ARRAY
    if isinstance(v, float):
        return ValueType.FLOAT32
    if isinstance(v, bool):
        return ValueType.BOOL
    if isinstance(v, int):
        return ValueType.INT32
    raise GGSpecError(f"cannot store a {type(v).__name__} in GGUF metadata: {v!r}")


_NP_TO_GGML = {np.dtype("float16"): "F16", np.dtype("float32"): "F32", np.dtype("float64"): "F64",
               np.dtype("int8"): "I8", np.dtype("int16"): "I16", np.dtype("int32"): "I32",
               np.dtype("int64"): "I64"}


@dataclass
class _PendingTensor:
    name: str
    type: GGMLType
    ne: tuple
    data: bytes


class GGUFWriter:
    """Builds a GGUF file in memory order: header, KV pairs, tensor infos, padding, data.

    Same layout decisions as gguf-py 0.19.0: KV pairs and tensors in insertion order; tensor offsets
    relative to the data section, each tensor padded with zeros to ``alignment`` (the last one too);
    the tensor infos padded to ``alignment`` from the start of the file; bool is one byte (0/1).
    ``version`` 1 writes 32-bit counts, lengths and dimensions (for tests of old readers).
    """

    def __init__(self, byte_order: str = "<", version: int = 3):
        if byte_order not in ("<", ">"):
            raise GGSpecError("byte_order must be '<' (little-endian) or '>' (big-endian)")
        if version not in SUPPORTED_VERSIONS:
            raise GGSpecError(f"cannot write GGUF version {version}")
        self.byte_order = byte_order
        self.version = version
        self.kv: dict[str, Value] = {}
        self.tensors: list[_PendingTensor] = []
        self._names: set[str] = set()

    @property
    def alignment(self) -> int:
        a = self.kv.get("general.alignment")
        return int(a.value) if a is not None else GGUF_DEFAULT_ALIGNMENT

    def add(self, key: str, value: Any, type: Optional[ValueType] = None, sub_type: Optional[ValueType] = None):
        """Add (or replace, keeping its position, as gguf-py does) one KV pair."""
        if isinstance(value, Value):
            v = value
        else:
            vt = ValueType(type) if type is not None else infer_type(value)
            if key == "general.alignment" and type is None:
                vt = ValueType.UINT32
            v = Value(value, vt, ValueType(sub_type) if sub_type is not None else None)
        if key == "general.alignment":
            if v.type != ValueType.UINT32 or not isinstance(v.value, int) or v.value <= 0 or v.value & (v.value - 1):
                raise GGSpecError("general.alignment must be a UINT32 power of two")
        self.kv[key] = v

    def add_tensor(self, name: str, array: np.ndarray) -> None:
        """An element-type numpy array (F16/F32/F64/I8..I64 by dtype), numpy shape; written in the
        file's byte order (swapped when the array's order differs, as gguf-py does)."""
        a = np.asarray(array)
        tname = _NP_TO_GGML.get(a.dtype.newbyteorder("="))
        if tname is None:
            raise GGSpecError(f"tensor {name!r}: numpy dtype {a.dtype} has no ggml element type; use add_tensor_raw")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder(self.byte_order))
        ne = tuple(int(v) for v in reversed(a.shape))
        self._add(name, get_type(tname), ne, a.tobytes())

    def add_tensor_raw(self, name: str, type, ne: Iterable[int], raw) -> None:
        """Bytes written verbatim (they must already be in the file's byte order); ``ne`` in ggml order."""
        t = get_type(type)
        if t.removed:
            raise UnsupportedTypeError(f"{t.name} was removed from ggml: {t.note}")
        ne = tuple(int(v) for v in ne)
        self._add(name, t, ne, bytes(memoryview(raw).cast("B")))

    def _add(self, name: str, t: GGMLType, ne: tuple, data: bytes) -> None:
        if name in self._names:
            raise GGSpecError(f"duplicate tensor name {name!r}")
        if len(ne) > GGML_MAX_DIMS:
            raise GGSpecError(f"tensor {name!r}: {len(ne)} dimensions, ggml allows {GGML_MAX_DIMS}")
        n = 1
        for v in ne:
            n *= v
        if (ne[0] if ne else 1) % t.block_size:
            raise GGSpecError(f"tensor {name!r}: ne0 = {ne[0]} is not a multiple of {t.name}'s block size")
        if n // t.block_size * t.type_size != len(data):
            raise GGSpecError(f"tensor {name!r}: {t.name} {ne} needs {n // t.block_size * t.type_size} bytes, "
                              f"got {len(data)}")
        self._names.add(name)
        self.tensors.append(_PendingTensor(name, t, ne, data))

    # -- encoding --
    def _p(self, fmt: str, v) -> bytes:
        return struct.pack(self.byte_order + fmt, v)

    def _count(self, n: int) -> bytes:
        return self._p("I" if self.version == 1 else "Q", n)

    def _string(self, s) -> bytes:
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        return self._count(len(b)) + b

    def _value(self, v: Any, vt: ValueType, sub: Optional[ValueType]) -> bytes:
        if vt in _SCALAR:
            if vt == ValueType.BOOL:
                return b"\x01" if v else b"\x00"
            if isinstance(v, np.generic):       # numpy scalars bit for bit (a float32 sNaN stays signalling)
                return np.asarray(v, dtype=self.byte_order + _NP_SCALAR[vt]).tobytes()
            return self._p(_SCALAR[vt], v)
        if vt == ValueType.STRING:
            return self._string(v)
        if vt != ValueType.ARRAY:
            raise GGSpecError(f"invalid value type {vt}")
        items = list(v.value if isinstance(v, Value) else v)
        if sub is None:
            if isinstance(v, (bytes, bytearray)):
                sub = ValueType.UINT8
            elif not items:
                raise GGSpecError("an empty array needs an explicit sub_type")
            else:
                sub = infer_type(items[0])
                if any(infer_type(x) is not sub for x in items[1:]):
                    raise GGSpecError("all items of a GGUF array must have the same type")
        out = [self._p("I", int(sub)), self._count(len(items))]
        for x in items:
            if isinstance(x, Value):
                out.append(self._value(x.exact(), x.type, x.sub_type))
            else:
                out.append(self._value(x, sub, None))
        return b"".join(out)

    def header_bytes(self) -> bytes:
        """Everything up to the data section (header, KV, tensor infos, padding)."""
        al = self.alignment
        out = [GGUF_MAGIC, self._p("I", self.version), self._count(len(self.tensors)), self._count(len(self.kv))]
        for key, v in self.kv.items():
            out.append(self._string(key))
            out.append(self._p("I", int(v.type)))
            out.append(self._value(v.exact(), v.type, v.sub_type))
        rel = 0
        for t in self.tensors:
            out.append(self._string(t.name))
            out.append(self._p("I", len(t.ne)))
            for d in t.ne:
                out.append(self._count(d))
            out.append(self._p("I", t.type.id))
            out.append(self._p("Q", rel))
            rel += -(-len(t.data) // al) * al
        head = b"".join(out)
        return head + b"\x00" * (-len(head) % al)

    def data_chunks(self):
        """The data section, piece by piece: each tensor's bytes, then zeros to the alignment."""
        al = self.alignment
        for t in self.tensors:
            yield t.data
            yield b"\x00" * (-len(t.data) % al)

    def write(self, path) -> Path:
        """Write the file; returns its path."""
        path = Path(path)
        with open(path, "wb") as f:
            f.write(self.header_bytes())
            for chunk in self.data_chunks():
                f.write(chunk)
        return path

    def to_bytes(self) -> bytes:
        """The whole file in memory (the same bytes ``write`` writes)."""
        return self.header_bytes() + b"".join(self.data_chunks())


TensorLike = Union[np.ndarray, "tuple[Any, Iterable[int], Any]", GGUFTensor]


def writer_from(metadata: Mapping[str, Any], tensors: "Mapping[str, TensorLike] | Iterable" = (),
                byte_order: str = "<", version: int = 3) -> GGUFWriter:
    """A GGUFWriter filled from ``metadata`` (key -> plain value or Value, in order) and ``tensors``
    (name -> numpy element array | (type, ne, raw bytes in file order) | GGUFTensor)."""
    w = GGUFWriter(byte_order, version)
    for k, v in metadata.items():
        w.add(k, v)
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    for name, t in items:
        if isinstance(t, GGUFTensor):
            raw = t.raw if t._file.byte_order == byte_order else swap_byte_order(t.type, t.raw)
            w.add_tensor_raw(name, t.type, t.shape, raw)
        elif isinstance(t, np.ndarray):
            w.add_tensor(name, t)
        else:
            tt, ne, raw = t
            w.add_tensor_raw(name, tt, ne, raw)
    return w


def write(path, metadata: Mapping[str, Any], tensors: "Mapping[str, TensorLike] | Iterable" = (),
          byte_order: str = "<", version: int = 3) -> Path:
    """Write a GGUF file. See ``writer_from`` for the arguments."""
    return writer_from(metadata, tensors, byte_order, version).write(path)


def to_bytes(metadata: Mapping[str, Any], tensors=(), byte_order: str = "<", version: int = 3) -> bytes:
    return writer_from(metadata, tensors, byte_order, version).to_bytes()


__all__ = ["read", "parse", "write", "to_bytes", "GGUFFile", "GGUFTensor", "GGUFWriter", "Value", "ValueType",
           "Field", "swap_byte_order", "to_little_endian", "GGUF_DEFAULT_ALIGNMENT", "GGML_MAX_DIMS"]
