"""Generate ``vectors/gguf/gguf.json``: the gguf suite's valid / invalid / acceptable GGUF files.

    python -m ggspec.vectors.generate_gguf [--out DIR]      # needs the oracle (llama-cpp-python 0.3.36)

Every file is built here byte by byte (a small writer of its own, not ggspec's reader or writer).
Each case is designed as valid, invalid or acceptable, then given to libggml's
``gguf_init_from_file`` (the oracle, reading the tensor data too) in a child process:

* valid: ggml must accept it; ``expected`` is ggml's parse, and the generator checks that it equals
  what was written (the construction);
* invalid: ggml must reject it;
* acceptable: where ggml and other readers legitimately differ. ``oracle`` records what ggml did;
  ``expected`` is ggml's parse when ggml accepts, else the construction, checked against gguf-py's
  GGUFReader where gguf-py reads the file (``expected_source`` says which);
* extension: version 1 and big-endian files, which ggml 0.3.36 rejects (it must). Each is the twin
  of a little-endian version 3 file written with the same keys, values and tensors, which ggml must
  accept; ``expected`` is ggml's parse of that twin (for version 1, ``version`` and ``data_offset``
  come from the version 1 layout, which is shorter), checked against the construction and, for
  big-endian files, against gguf-py's GGUFReader.

A case whose designed verdict the oracle contradicts stops the generator. The output is
deterministic (no randomness).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

VT = {n: i for i, n in enumerate(("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL",
                                    "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"))}
FMT = {"UINT8": "B", "INT8": "b", "UINT16": "H", "INT16": "h", "UINT32": "I", "INT32": "i", "FLOAT32": "f",
       "BOOL": "B", "UINT64": "Q", "INT64": "q", "FLOAT64": "d"}
# (block size, type size) of the ggml types used here (ggml-common.h)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144),
         14: ("Q6_K", 256, 210), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 26: ("I32", 1, 4), 28: ("F64", 1, 8),
         30: ("BF16", 1, 2), 39: ("MXFP4", 32, 17)}


# fp16 fields of a block that a big-endian file stores byte-swapped: gguf-py's
# scripts/gguf_convert_endian.py (byteswap_q4_0, _q8_0, _q4_k, _q6_k; MXFP4 has none)
BE_BLOCK_FP16 = {2: (0,), 8: (0,), 12: (0, 2), 14: (208,), 39: ()}


def swap_data(tid, raw: bytes) -> bytes:
    """A tensor's little-endian bytes as a big-endian file stores them."""
    bs, ts = TYPES[tid][1:]
    out = bytearray(raw)
    if bs == 1:
        for i in range(0, len(out), ts):
            out[i:i + ts] = out[i:i + ts][::-1]
        return bytes(out)
    for blk in range(0, len(out), ts):
        for f in BE_BLOCK_FP16[tid]:
            out[blk + f:blk + f + 2] = out[blk + f:blk + f + 2][::-1]
    return bytes(out)


def _j(vt, v):
    """A written value as the parse JSON holds it."""
    if vt in ("FLOAT32", "FLOAT64"):
        return struct.pack("<" + FMT[vt], v).hex() if not isinstance(v, bytes) else v.hex()
    if vt in ("UINT64", "INT64"):
        return str(v)
    if vt == "BOOL":
        return bool(v)
    return v


class Builder:
    """A GGUF file, field by field, in either byte order; ``construction()`` is what was written."""

    def __init__(self, version=3, order="<", alignment=32):
        self.version, self.o, self.alignment = version, order, alignment
        self.kvs = []          # (key bytes, vt, value, item_type)
        self.tensors = []      # (name bytes, n_dims, ne list, type id, data bytes, offset or None)

    # -- pieces
    def p(self, fmt, v) -> bytes:
        return struct.pack(self.o + fmt, v)

    def cnt(self, n) -> bytes:
        return self.p("I" if self.version == 1 else "Q", n)

    def s(self, b) -> bytes:
        b = b.encode() if isinstance(b, str) else b
        return self.cnt(len(b)) + b

    def scalar(self, vt, v) -> bytes:
        if vt == "STRING":
            return self.s(v)
        if isinstance(v, bytes):                # raw bits (NaN payloads), given little-endian
            return v if self.o == "<" else v[::-1]
        return self.p(FMT[vt], v)

    def value(self, vt, v, it=None) -> bytes:
        if vt != "ARRAY":
            return self.scalar(vt, v)
        out = self.p("I", VT[it]) + self.cnt(len(v))
        for x in v:
            out += self.value(x[0], x[1], x[2]) if it == "ARRAY" else self.scalar(it, x)
        return out

    # -- content
    def kv(self, key, vt, v, it=None):
        self.kvs.append((key.encode() if isinstance(key, str) else key, vt, v, it))
        return self

    def tensor(self, name, type_id, ne, data=None, offset=None, n_dims=None):
        bs, ts = TYPES[type_id][1:]
        n = 1
        for x in ne:
            n *= x
        if data is None:
            data = bytes((i * 7 + 3) & 0xFF for i in range(n // bs * ts))
        self.tensors.append((name.encode() if isinstance(name, str) else name,
                             len(ne) if n_dims is None else n_dims, list(ne), type_id, data, offset))
        return self

    def header(self, n_tensors=None, n_kv=None) -> bytes:
        b = b"GGUF" + self.p("I", self.version)
        b += self.cnt(len(self.tensors) if n_tensors is None else n_tensors)
        b += self.cnt(len(self.kvs) if n_kv is None else n_kv)
        return b

    def kv_bytes(self) -> bytes:
        return b"".join(self.s(k) + self.p("I", VT[vt]) + self.value(vt, v, it) for k, vt, v, it in self.kvs)

    def layout(self):
        offs, pos = [], 0
        for name, nd, ne, tid, data, off in self.tensors:
            if off is None:
                off = pos
            offs.append(off)
            pos = max(pos, off + len(data))
            pos = -(-pos // self.alignment) * self.alignment
        return offs

    def info_bytes(self) -> bytes:
        out = b""
        for (name, nd, ne, tid, data, off), o in zip(self.tensors, self.layout()):
            out += self.s(name) + self.p("I", nd) + b"".join(self.cnt(x) for x in ne) + self.p("i", tid)
            out += self.p("Q", o)
        return out

    def build(self, pad_last=True) -> bytes:
        head = self.header() + self.kv_bytes() + self.info_bytes()
        if not self.tensors:
            return head
        data_off = -(-len(head) // self.alignment) * self.alignment
        body = bytearray(data_off - len(head))
        data = bytearray()
        for (name, nd, ne, tid, raw, off), o in zip(self.tensors, self.layout()):
            if self.o == ">":
                raw = swap_data(tid, raw)
            if len(data) < o + len(raw):
                data.extend(bytes(o + len(raw) - len(data)))
            data[o:o + len(raw)] = raw
        if pad_last:
            data.extend(bytes(-len(data) % self.alignment))
        return head + bytes(body) + bytes(data)

    def construction(self) -> dict:
        head = self.header() + self.kv_bytes() + self.info_bytes()
        data_off = -(-len(head) // self.alignment) * self.alignment if self.tensors else len(head)
        kv = []
        for k, vt, v, it in self.kvs:
            if vt == "ARRAY":
                if it == "ARRAY":
                    val = [{"item_type": x[2], "value": [_j(x[2], y) for y in x[1]]} for x in v]
                else:
                    val = [_j(it, x) for x in v]
                kv.append({"key": k.decode(), "type": "ARRAY", "item_type": it, "value": val})
            else:
                kv.append({"key": k.decode(), "type": vt, "value": _j(vt, v)})
        ts = [{"name": n.decode(), "type": tid, "ne": ne + [1] * (4 - len(ne)), "offset": o, "data": d.hex()}
              for (n, nd, ne, tid, d, off), o in zip(self.tensors, self.layout())]
        return {"version": self.version, "alignment": self.alignment, "data_offset": data_off, "kv": kv,
                "tensors": ts}


def base(**kw) -> Builder:
    return Builder(**kw).kv("general.architecture", "STRING", "llama")


def two_tensors(**kw) -> Builder:
    b = base(**kw)
    b.tensor("w", 0, [4, 2]).tensor("q", 2, [32])
    return b


NAN_PAYLOAD = bytes.fromhex("0100c07f")       # float32 quiet NaN with payload 1 (little-endian)
NEG_NAN = bytes.fromhex("0000c0ff")
NEG_ZERO = bytes.fromhex("00000080")


# ------------------------------------------------------------------------------------------------
# the cases: (result, category or reason, comment, flags, bytes, construction or None)

CORPUS = [Path(__file__).resolve().parent.parent / "tests" / "fuzz" / "corpus" / "gguf",
          Path.cwd() / "tests" / "fuzz" / "corpus" / "gguf"]


def cases(corpus: "Path | None" = None):
    out = []

    def add(result, cat, comment, flags, b: "Builder | bytes", construction=None, twin=None, **kw):
        if isinstance(b, Builder):
            data = b.build(**kw)
            construction = b.construction() if construction is None else construction
        else:
            data = b
        out.append((result, cat, comment, flags, data, construction, twin.build(**kw) if twin else None))

    def ext(cat, comment, flags, make):
        """An extension case: ``make(version, order)`` builds the file; its twin is the same content
        as a little-endian version 3 file."""
        v, o = (1, "<") if cat == "version1" else (3, ">")
        add("extension", cat, comment, flags, make(v, o), twin=make(3, "<"))

    # ---------------- valid
    add("valid", "minimal", "no key-value pairs, no tensors", ["Empty"], Builder())
    add("valid", "minimal", "one string key, no tensors (no padding after the header)", ["NoTensors"], base())
    b = base()
    scalars = [("UINT8", 255), ("INT8", -128), ("UINT16", 65535), ("INT16", -32768), ("UINT32", 4294967295),
               ("INT32", -2147483648), ("FLOAT32", 1.5), ("BOOL", 1), ("BOOL", 0), ("STRING", "hello"),
               ("UINT64", 2**64 - 1), ("INT64", -2**63), ("FLOAT64", -2.25)]
    for i, (vt, v) in enumerate(scalars):
        b.kv(f"v.{vt.lower()}.{i}", vt, v)
    add("valid", "values", "one key of every scalar value type, extreme values", ["ValueTypes"], b)
    b = base()
    for vt, v in [("FLOAT32", NAN_PAYLOAD), ("FLOAT32", NEG_NAN), ("FLOAT32", NEG_ZERO),
                  ("FLOAT32", bytes.fromhex("0000807f")), ("FLOAT32", bytes.fromhex("01000000")),
                  ("FLOAT64", bytes.fromhex("010000000000f87f")), ("FLOAT64", bytes.fromhex("0000000000000080"))]:
        b.kv(f"f.{len(b.kvs)}", vt, v)
    add("valid", "values", "special floats kept bit for bit: NaN payload, -NaN, -0, Inf, subnormal",
        ["SpecialFloat"], b)
    b = base()
    for vt, v in [("UINT8", [0, 1, 255]), ("INT8", [-1, 2]), ("UINT16", [1, 65535]), ("INT16", [-2, 3]),
                  ("UINT32", [7]), ("INT32", [-7, 0, 7]), ("FLOAT32", [0.5, -1.0]), ("BOOL", [1, 0, 1]),
                  ("STRING", ["a", "", "ü€𝄞"]), ("UINT64", [2**63]), ("INT64", [-1]), ("FLOAT64", [1e300])]:
        b.kv(f"a.{vt.lower()}", "ARRAY", v, vt)
    b.kv("a.empty", "ARRAY", [], "INT32")
    add("valid", "arrays", "an array of every item type, and an empty array", ["Arrays"], b)
    b = base()
    b.kv("ключ.ü", "STRING", "値 ✓ 𝄞").kv("s.empty", "STRING", "").kv("s.long", "STRING", "x" * 3000)
    add("valid", "values", "UTF-8 keys and values, an empty string, a 3000-byte string", ["Utf8", "LongString"], b)
    b = two_tensors(version=2)
    b.kv("k", "ARRAY", [1, 2], "INT32")
    add("valid", "versions", "version 2 (64-bit counts, like version 3)", ["Version2"], b)
    add("valid", "versions", "version 3, two tensors", ["Version3"], two_tensors())
    for al in (1, 8, 64, 256):
        b = Builder(alignment=al).kv("general.alignment", "UINT32", al).kv("general.architecture", "STRING", "x")
        b.tensor("a", 0, [3]).tensor("b", 1, [5]).tensor("c", 8, [32, 2])
        add("valid", "alignment", f"general.alignment = {al}", ["Alignment"], b)
    b = base()
    b.tensor("scalar", 0, [])
    b.tensor("after", 0, [2])
    add("valid", "tensors", "a 0-d tensor (n_dims = 0, one element)", ["ZeroDims"], b)
    b = base()
    b.tensor("empty", 0, [4, 0]).tensor("next", 0, [1])
    add("valid", "tensors", "a tensor with a zero dimension (no bytes) before another", ["ZeroElements"], b)
    b = base()
    for tid, ne in [(0, [3, 1, 2, 2]), (1, [7]), (2, [64, 2]), (8, [32, 3]), (12, [256]), (14, [256, 2]),
                    (23, [256]), (24, [5]), (26, [3, 3]), (28, [2]), (30, [4]), (39, [32, 2])]:
        b.tensor(f"t.{TYPES[tid][0].lower()}", tid, ne)
    add("valid", "tensors", "tensors of 12 types, 1 to 4 dimensions", ["TensorTypes"], b)
    b = base()
    b.tensor("n" * 63, 0, [1]).tensor("ü.weight", 0, [1])
    add("valid", "tensors", "a 63-byte tensor name (the longest ggml allows), a UTF-8 name", ["LongName"], b)

    # ---------------- extension (version 1, big-endian), each the twin of a file ggml parses
    ext("version1", "version 1 (32-bit counts): ggml no longer reads it, gguf-py neither",
        ["Version1"], lambda v, o: two_tensors(version=v, order=o))
    ext("big-endian", "a big-endian version 3 file: ggml on a little-endian host refuses it, gguf-py reads it",
        ["BigEndian"], lambda v, o: two_tensors(version=v, order=o).kv("k", "ARRAY", [1, 2], "INT32")
        .kv("f", "FLOAT32", 0.25))

    # ---------------- acceptable
    b = base()
    b.kv("nested", "ARRAY", [("ARRAY", [1, 2], "UINT8"), ("ARRAY", [3], "UINT8")], "ARRAY")
    add("acceptable", "nested-array", "an array of arrays: ggml rejects it, the format allows it",
        ["NestedArray"], b)
    b = base()
    b.tensor("a", 0, [8], offset=0).tensor("b", 0, [8], offset=64)
    add("acceptable", "offset-gap", "a gap between two tensors' data: ggml wants them packed in order",
        ["OffsetGap"], b)
    b = base()
    b.tensor("a", 0, [8], offset=32).tensor("b", 0, [8], offset=0)
    add("acceptable", "offset-order", "tensor data stored in another order than the tensor infos",
        ["OffsetOrder"], b)
    b = base()
    b.tensor("a", 0, [8]).tensor("b", 0, [3])
    add("acceptable", "no-final-padding", "no padding after the last tensor's data: ggml reading the data "
        "wants it, llama.cpp (mmap) does not", ["NoFinalPadding"], b, pad_last=False)
    b = base()
    b.kv("bad", "STRING", b"a\xffb")
    add("acceptable", "utf8", "a string value that is not UTF-8: ggml does not check, ggspec and gguf-py "
        "reject", ["InvalidUtf8"], b, construction=False)
    b = base()
    b.kv(b"k\xc3", "UINT8", 1)
    add("acceptable", "utf8", "a key that is not UTF-8", ["InvalidUtf8"], b, construction=False)
    b = base()
    b.kv("flag", "BOOL", 2)
    add("acceptable", "bool", "a BOOL byte of 2: ggml reads true (any non-zero byte)", ["BoolByte"], b,
        construction=False)

    # ---------------- invalid
    good = two_tensors()
    good.kv("k", "ARRAY", [1, 2, 3], "INT32")
    g = good.build()
    head = good.header() + good.kv_bytes()
    info_start = len(head)
    data_start = len(g) - 64   # w: 32 bytes, q: 18 bytes padded to 32
    info_end = len(head + good.info_bytes())
    for cut, what in [(0, "an empty file"), (2, "inside the magic"), (6, "inside the version"),
                      (12, "inside the tensor count"), (20, "inside the key-value count"),
                      (30, "inside the first key"), (info_start - 3, "inside the last value"),
                      (info_start + 5, "inside the first tensor info"), (info_end - 3, "inside the last tensor "
                      "info"), (data_start - 1 if data_start > info_end else info_end, "before the data section"),
                      (data_start + 10, "inside the first tensor's data"),
                      (len(g) - 20, "inside the last tensor's data")]:
        add("invalid", "truncation", f"truncated {what} ({cut} of {len(g)} bytes)", ["Truncated"], g[:cut])
    for magic, what in [(b"GGUX", "GGUX"), (b"gguf", "lower-case gguf"), (b"tjgg", "a legacy GGJT magic"),
                        (b"\0\0\0\0", "zeros")]:
        add("invalid", "magic", f"bad magic: {what}", ["BadMagic"], magic + g[4:])
    for v in (0, 4, 0xFFFF):
        add("invalid", "version", f"version {v}", ["BadVersion"], g[:4] + struct.pack("<I", v) + g[8:])
    add("invalid", "overflow", "tensor count 2^63 (negative as int64)", ["HugeCount"],
        g[:8] + struct.pack("<Q", 2**63) + g[16:])
    add("invalid", "overflow", "tensor count 2^40 with a few bytes following", ["HugeCount"],
        g[:8] + struct.pack("<Q", 2**40) + g[16:])
    add("invalid", "overflow", "key-value count 2^62", ["HugeCount"], g[:16] + struct.pack("<Q", 2**62) + g[24:])
    k = g.index(b"general.architecture") - 8
    add("invalid", "overflow", "a key length of 2^63", ["HugeCount"], g[:k] + struct.pack("<Q", 2**63) + g[k + 8:])
    s = g.index(b"llama") - 8
    add("invalid", "overflow", "a string value length of 2^40", ["HugeCount"],
        g[:s] + struct.pack("<Q", 2**40) + g[s + 8:])
    a = g.index(b"\x05\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00") + 4
    for n in (2**62, 2**30 + 1):
        add("invalid", "overflow", f"an INT32 array count of {n} with 3 items present", ["HugeCount", "HugeArray"],
            g[:a] + struct.pack("<Q", n) + g[a + 8:])
    b = base()
    b.kv("strs", "ARRAY", ["a", "b"], "STRING")
    sb = b.build()
    i = sb.index(b"\x08\x00\x00\x00\x02\x00\x00\x00") + 4
    add("invalid", "overflow", "a STRING array count of 2^59", ["HugeCount", "HugeArray"],
        sb[:i] + struct.pack("<Q", 2**59) + sb[i + 8:])

    def patch_info(name, field, fmt, value, src=None):
        b0 = src or g
        i = b0.index(struct.pack("<Q", len(name)) + name, info_start - 1) + 8 + len(name)
        nd = struct.unpack_from("<I", b0, i)[0]
        pos = {"n_dims": i, "ne0": i + 4, "ne1": i + 12, "type": i + 4 + 8 * nd, "offset": i + 8 + 8 * nd}[field]
        return b0[:pos] + struct.pack(fmt, value) + b0[pos + struct.calcsize(fmt):]

    add("invalid", "overflow", "a dimension of 2^63 (negative as int64)", ["NegativeDim"],
        patch_info(b"w", "ne0", "<Q", 2**63))
    add("invalid", "overflow", "dimensions whose product overflows int64 (2^32 x 2^32)", ["DimOverflow"],
        patch_info(b"w", "ne1", "<Q", 2**32, patch_info(b"w", "ne0", "<Q", 2**32)))
    add("invalid", "n_dims", "n_dims = 5", ["TooManyDims"], patch_info(b"q", "n_dims", "<I", 5))
    for tid, what in [(4, "removed type Q4_2 (id 4)"), (36, "removed type IQ4_NL_4_4 (id 36)"),
                      (43, "type id 43 (GGML_TYPE_COUNT)"), (99, "unknown type id 99"), (-1, "type id -1")]:
        add("invalid", "type", f"tensor of {what}", ["UnknownTensorType"], patch_info(b"q", "type", "<i", tid))
    t = g.index(b"general.architecture") + len(b"general.architecture")
    add("invalid", "type", "key-value of unknown value type 13", ["UnknownValueType"],
        g[:t] + struct.pack("<I", 13) + g[t + 4:])
    add("invalid", "type", "array of unknown item type 99", ["UnknownValueType"],
        g[:a - 4] + struct.pack("<I", 99) + g[a:])
    add("invalid", "shape", "Q4_0 row of 31 values (not a multiple of the block size 32)", ["BadRowLength"],
        patch_info(b"q", "ne0", "<Q", 31))
    add("invalid", "alignment", "a tensor offset that is not a multiple of the alignment", ["Misaligned"],
        patch_info(b"q", "offset", "<Q", 8))
    add("invalid", "alignment", "a tensor offset of 40 with alignment 32: inside the file, overlapping nothing",
        ["Misaligned"], patch_info(b"q", "offset", "<Q", 40))
    add("invalid", "overlap", "two tensors at the same offset", ["Overlap"], patch_info(b"q", "offset", "<Q", 0))
    add("invalid", "alignment", "a tensor offset past the end of the file", ["OffsetPastEnd"],
        patch_info(b"q", "offset", "<Q", 2**40))
    for al, vt in [(0, "UINT32"), (24, "UINT32"), (32, "INT32"), (32, "UINT64")]:
        b = Builder().kv("general.alignment", vt, al).kv("general.architecture", "STRING", "x")
        b.tensor("a", 0, [8])
        add("invalid", "alignment", f"general.alignment = {al} of type {vt}", ["BadAlignmentKey"], b.build())
    b = base().kv("dup", "UINT8", 1).kv("dup", "UINT8", 2)
    add("invalid", "duplicate", "a duplicate key", ["DuplicateKey"], b.build())
    b = base().tensor("same", 0, [1]).tensor("same", 0, [1])
    add("invalid", "duplicate", "a duplicate tensor name", ["DuplicateTensor"], b.build())
    b = base().tensor("n" * 64, 0, [1])
    add("invalid", "name", "a 64-byte tensor name (ggml allows 63)", ["LongName"], b.build())
    b = base().kv("", "UINT8", 1)
    add("invalid", "name", "an empty key", ["EmptyKey"], b.build())

    # from the project's fuzz corpus: arrays whose claimed counts (or nesting) run far past the end,
    # files on which a reader that loops over the claimed count never returns
    corpus = corpus or next((c for c in CORPUS if c.is_dir()), None)
    if corpus is None:
        raise SystemExit(f"the fuzz corpus is not at {CORPUS[0]} or {CORPUS[1]}: pass --corpus DIR")
    for name, what in FUZZ_FILES:
        data = (corpus / name).read_bytes()
        add("invalid", "fuzz", f"fuzz corpus {name}: {what}", ["FuzzCorpus", "HugeCount"], data)
    adversarial(add, ext)
    return out


def rich(version=3, order="<") -> Builder:
    """Every scalar type, arrays of every item type, special floats, and tensors of 1 to 4
    dimensions (one of them empty) with general.alignment 64: a file that exercises every
    count, length, dimension and offset field, and (big-endian) every type whose data gguf-py's
    gguf_convert_endian.py can swap: F32, F16, BF16, Q8_0, Q4_K, Q6_K, MXFP4."""
    b = Builder(version=version, order=order, alignment=64).kv("general.alignment", "UINT32", 64)
    b.kv("general.architecture", "STRING", "llama")
    for vt, v in [("UINT8", 0xA5), ("INT8", -2), ("UINT16", 0xBEEF), ("INT16", -300), ("UINT32", 0xDEADBEEF),
                  ("INT32", -70000), ("FLOAT32", NAN_PAYLOAD), ("BOOL", 1), ("UINT64", 0x0102030405060708),
                  ("INT64", -0x0102030405060708), ("FLOAT64", -2.5e-300), ("FLOAT32", 0.1)]:
        b.kv(f"s.{len(b.kvs)}", vt, v)
    for vt, v in [("UINT8", [1, 254]), ("INT8", [-3, 4]), ("UINT16", [0x1234, 0xFFFE]), ("INT16", [-2, 0x7FFE]),
                  ("UINT32", [0x01020304]), ("INT32", [-5, 6, 7]), ("FLOAT32", [1.0, -0.0]), ("BOOL", [0, 1]),
                  ("STRING", ["tok", "", "ü"]), ("UINT64", [2**40 + 3]), ("INT64", [-2**40]), ("FLOAT64", [0.5])]:
        b.kv(f"a.{vt.lower()}", "ARRAY", v, vt)
    b.kv("a.empty", "ARRAY", [], "STRING").kv("name", "STRING", "ein Name")
    b.tensor("token_embd.weight", 0, [4, 3]).tensor("blk.0.q", 8, [32, 2, 1, 2]).tensor("e", 0, [2, 0, 3])
    b.tensor("blk.0.k", 1, [6, 1, 2]).tensor("out", 12, [256]).tensor("q6", 14, [256]).tensor("bf", 30, [4])
    b.tensor("mx", 39, [32])
    return b


def _aligned_head(al=32) -> Builder:
    """One F32 tensor whose tensor infos end exactly on a multiple of ``al`` (no padding)."""
    for n in range(1, 64):
        b = base().tensor("t" * n, 0, [2])
        if len(b.header() + b.kv_bytes() + b.info_bytes()) % al == 0:
            return b
    raise AssertionError("no name length puts the data section on the alignment")


def adversarial(add, ext):
    """Cases that separate a plausible mistake from ggml (tests/mutation/mutation_catalogue.py, gguf)."""
    ext("version1", "version 1, every value type, arrays of every item type, tensors of 1-4 dimensions, "
        "alignment 64: 32-bit counts, lengths and dimensions, 64-bit offsets", ["Version1"], rich)
    ext("big-endian", "big-endian, every value type, arrays of every item type, tensors of 1-4 dimensions, "
        "alignment 64", ["BigEndian"], rich)
    add("valid", "alignment", "tensor infos end exactly on the alignment: no padding before the data",
        ["NoPadding"], _aligned_head())
    b = base().tensor("empty", 0, [0])
    add("valid", "tensors", "the only tensor has no elements: the file ends at the (padded) data section",
        ["ZeroElements"], b)
    head = b.header() + b.kv_bytes() + b.info_bytes()
    assert len(head) % 32, "the header must not be aligned"
    add("invalid", "truncation", "the only tensor has no elements and the file ends before the padding "
        "of the data section", ["Truncated", "ZeroElements"], head)
    b = base().tensor("x", 0, [32, 1, 1, 1, 1])
    add("invalid", "n_dims", "n_dims = 5 with the fifth dimension 1, everything else consistent",
        ["TooManyDims"], b.build())
    b = base().tensor("x", 0, [2**32, 2**32, 0])
    add("invalid", "overflow", "ne = (2^32, 2^32, 0): ne0*ne1 overflows int64 before the zero dimension",
        ["DimOverflow", "ZeroElements"], b.build())
    for v in (2**63, 2**64 - 1):
        b = base().tensor("x", 0, [0, v])
        add("invalid", "overflow", f"ne = (0, {v}): a negative dimension (as int64) after a zero one",
            ["NegativeDim", "ZeroElements"], b.build())
    b = base().tensor("ü" * 32, 0, [1])
    add("invalid", "name", "a tensor name of 32 characters but 64 bytes of UTF-8 (ggml counts bytes)",
        ["LongName", "Utf8"], b.build())
    b = base().tensor("x", 2, [16, 2])
    add("invalid", "shape", "Q4_0 of 16 x 2: 32 values, but a row of 16 is not a multiple of the block "
        "size 32", ["BadRowLength"], b.build())
    b = base().tensor("a", 0, [16], offset=0).tensor("b", 0, [8], offset=32)
    add("invalid", "overlap", "the second tensor starts inside the first (bytes 32..64 of 0..64)", ["Overlap"],
        b.build())
    b = base().kv("k", "ARRAY", [1, 2, 3], "UINT8")
    u = b.build()
    i = u.index(struct.pack("<IQ", 0, 3)) + 4
    add("invalid", "overflow", "a UINT8 array count of 2^64 - 1 (-1 as int64) with 3 items present",
        ["HugeCount", "HugeArray"], u[:i] + struct.pack("<Q", 2**64 - 1) + u[i + 8:])
    b = Builder().kv("general.alignment", "UINT32", 0).kv("general.architecture", "STRING", "x")
    add("invalid", "alignment", "general.alignment = 0 in a file without tensors (nothing is aligned, "
        "ggml checks it anyway)", ["BadAlignmentKey", "NoTensors"], b.build())
    u = base().kv("s", "STRING", "a string value at the end").build()
    add("invalid", "truncation", "a file without tensors truncated inside its last string value",
        ["Truncated", "NoTensors"], u[:-5])
    b = base().kv("flags", "ARRAY", [1, 2, 0, 255], "BOOL")
    add("acceptable", "bool", "a BOOL array with bytes 2 and 255: ggml reads true (any non-zero byte)",
        ["BoolByte"], b, construction=False)
    b = base().tensor("scalar", 0, [])
    add("invalid", "truncation", "a 0-d F32 tensor (one element, 4 bytes) whose data is missing: the file "
        "ends at the data section", ["Truncated", "ZeroDims"], b.build()[:-32])
    b = base().tensor("", 0, [2]).tensor("x", 0, [1])
    add("valid", "tensors", "a tensor with an empty name (ggml allows it; keys must not be empty)",
        ["EmptyName"], b)
    b = Builder()
    for i in range(16):
        b.kv(chr(ord("a") + i), "UINT8", i)
    add("valid", "minimal", "16 pairs of the smallest size (1-byte key, UINT8 value) and nothing else",
        ["SmallestPairs", "NoTensors"], b)
    u = base().tensor("a", 0, [8]).tensor("b", 0, [8]).build()
    i = u.index(struct.pack("<Q", 1) + b"b") + 9 + 4 + 8 + 4      # tensor b: name, n_dims, ne0, type
    assert struct.unpack_from("<Q", u, i)[0] == 32
    add("invalid", "alignment", "a tensor offset of 2^64 - 32 (-32 as int64: inside the file, before the data)",
        ["OffsetPastEnd"], u[:i] + struct.pack("<Q", 2**64 - 32) + u[i + 8:])
    u = base().kv("toks", "ARRAY", ["first", "a last string"], "STRING").build()
    add("invalid", "truncation", "a file without tensors truncated inside the last string of a STRING array",
        ["Truncated", "NoTensors"], u[:-4])
    b = base().kv("toks", "ARRAY", ["ok", b"x\xc3(y"], "STRING")
    add("acceptable", "utf8", "a STRING array item that is not UTF-8", ["InvalidUtf8"], b, construction=False)
    b = base().kv("k.case", "UINT8", 1).kv("K.CASE", "UINT8", 2).kv("k" * 300, "UINT8", 3)
    b.tensor("w", 0, [1]).tensor("W", 0, [1])
    add("valid", "values", "keys and tensor names that differ only in case (both kept), a 300-byte key",
        ["CaseSensitive", "LongKey"], b)
    snan, neg_snan = bytes.fromhex("0100807f"), bytes.fromhex("5500a0ff")   # quiet bit clear, payloads 1 / 0x200055
    b = base().kv("f.snan", "FLOAT32", snan).kv("a.snan", "ARRAY", [0.5, snan, neg_snan], "FLOAT32")
    add("valid", "values", "signalling NaNs (quiet bit clear, with payloads) as a FLOAT32 value and in a "
        "FLOAT32 array: ggml keeps the bits (a conversion through double would set the quiet bit)",
        ["SpecialFloat", "SignallingNaN"], b)
    # issue 15, second round (docs/vectors.md): an array count that fits the bytes left as items but
    # not as bytes
    u = base().kv("k", "ARRAY", [1, 2, 3], "INT32").build()
    i = u.index(struct.pack("<IQ", 5, 3)) + 4
    assert len(u) - (i + 8) < 4 * 10
    add("invalid", "truncation", "an INT32 array count of 10 with 3 items (12 bytes) left: fewer bytes than "
        "10 items take, more than 10 bytes", ["Truncated", "HugeArray"], u[:i] + struct.pack("<Q", 10) + u[i + 8:])
    b = base().kv("a.u32", "ARRAY", [0, 2**31, 2**32 - 1], "UINT32").kv("a.u16", "ARRAY", [2**15, 2**16 - 1], "UINT16")
    add("valid", "values", "UINT32 and UINT16 arrays with the top bit set (2^31, 2^32 - 1, 2^15, 2^16 - 1)",
        ["ValueTypes", "TopBit"], b)


# ------------------------------------------------------------------------------------------------
# the write op (vectors/gguf/gguf_write.json): a typed description -> the bytes ggml's writer makes

def wkv(key, vt, v, it=None) -> dict:
    """One key of a write description, its value as the parse JSON holds it."""
    if vt == "ARRAY":
        return {"key": key, "type": "ARRAY", "item_type": it, "value": [_j(it, x) for x in v]}
    return {"key": key, "type": vt, "value": _j(vt, v)}


def wtensor(name, tid, ne, data=None) -> dict:
    bs, ts = TYPES[tid][1:]
    n = 1
    for x in ne:
        n *= x
    if data is None:
        data = bytes((i * 13 + len(name) * 5 + tid + 1) & 0xFF for i in range(n // bs * ts))
    return {"name": name, "type": tid, "ne": list(ne), "data": data.hex()}


def _desc(kv=(), tensors=()) -> dict:
    return {"kv": list(kv), "tensors": list(tensors)}


ARCH = wkv("general.architecture", "STRING", "llama")


def write_cases():
    """(category, comment, flags, description) of every write case: each separates a plausible
    writer mistake from ggml (tests/mutation/mutation_catalogue.py, gguf, the gguf-w-* entries)."""
    out = []

    def add(cat, comment, flags, d):
        out.append((cat, comment, flags, d))

    add("header", "nothing: the 24-byte header, then padding to 32 (ggml pads even without tensors)",
        ["Empty", "NoTensors"], _desc())
    add("header", "one string key, no tensors", ["NoTensors"], _desc([ARCH]))
    scalars = [("UINT8", 255), ("INT8", -128), ("UINT16", 65535), ("INT16", -32768), ("UINT32", 4294967295),
               ("INT32", -2147483648), ("FLOAT32", 1.5), ("BOOL", 1), ("BOOL", 0), ("STRING", "hello"),
               ("UINT64", 2**64 - 1), ("INT64", -2**63), ("FLOAT64", -2.25), ("UINT8", 7), ("INT16", 0x1234),
               ("FLOAT32", NAN_PAYLOAD), ("FLOAT32", NEG_ZERO), ("FLOAT32", bytes.fromhex("0000807f")),
               ("FLOAT32", bytes.fromhex("01000000")), ("FLOAT64", bytes.fromhex("010000000000f87f")),
               ("FLOAT64", bytes.fromhex("0000000000000080")), ("UINT64", 0x0102030405060708),
               ("INT64", -0x0102030405060708), ("UINT32", 0xDEADBEEF)]
    add("values", "every scalar type, extreme values, special floats bit for bit (quiet NaN with payload, -0, "
        "Inf, subnormal), BOOL true and false", ["ValueTypes", "SpecialFloat"],
        _desc([ARCH] + [wkv(f"v.{vt.lower()}.{i}", vt, v) for i, (vt, v) in enumerate(scalars)]))
    arrays = [("UINT8", [0, 1, 255]), ("INT8", [-1, 2, -128]), ("UINT16", [1, 65535]), ("INT16", [-2, 3]),
              ("UINT32", [7, 0xFFFFFFFF]), ("INT32", [-7, 0, 7]), ("FLOAT32", [0.5, -1.0, NAN_PAYLOAD]),
              ("BOOL", [1, 0, 1, 1]), ("STRING", ["a", "", "ü€𝄞", "x" * 70]), ("UINT64", [2**63, 1]),
              ("INT64", [-1, 2**62]), ("FLOAT64", [1e300, bytes.fromhex("0000000000000080")])]
    snan = [("FLOAT32", bytes.fromhex("0100807f")), ("FLOAT32", bytes.fromhex("0500a0ff")),
            ("FLOAT64", bytes.fromhex("010000000000f07f"))]
    add("values", "signalling NaNs kept bit for bit (FLOAT32 0x7F800001 and 0xFFA00005, FLOAT64 "
        "0x7FF0000000000001), as values and as FLOAT32 array items: a writer that goes through a double quiets "
        "them", ["SpecialFloat", "SignallingNaN"],
        _desc([wkv(f"snan.{i}", vt, v) for i, (vt, v) in enumerate(snan)]
              + [wkv("snan.arr", "ARRAY", [1.0, bytes.fromhex("0100807f"), bytes.fromhex("0000807f")], "FLOAT32")]))
    add("arrays", "an array of every item type (STRING items with UTF-8 and an empty one), and empty arrays "
        "of INT32 and STRING", ["Arrays"],
        _desc([ARCH] + [wkv(f"a.{vt.lower()}", "ARRAY", v, vt) for vt, v in arrays]
              + [wkv("a.empty", "ARRAY", [], "INT32"), wkv("a.empty_str", "ARRAY", [], "STRING")]))
    add("arrays", "a BOOL array of 9 items and a UINT8 array of 300 (counts are u64 item counts, not bytes)",
        ["Arrays"], _desc([wkv("flags", "ARRAY", [1, 0, 0, 1, 1, 0, 1, 0, 1], "BOOL"),
                           wkv("bytes", "ARRAY", [i & 0xFF for i in range(300)], "UINT8"),
                           wkv("i16", "ARRAY", [-i for i in range(5)], "INT16")]))
    add("strings", "UTF-8 keys and values (lengths in bytes, not characters), an empty string, a 300-byte "
        "string and a 300-byte key", ["Utf8", "LongString"],
        _desc([wkv("ключ.ü", "STRING", "値 ✓ 𝄞"), wkv("s.empty", "STRING", ""),
               wkv("s.long", "STRING", "y" * 300), wkv("k" * 300, "UINT8", 3)]))
    add("order", "keys and tensors in neither alphabetical nor size order: ggml writes them in the order "
        "they were set", ["Order"],
        _desc([wkv("z.last", "UINT8", 1), wkv("a.first", "UINT8", 2), wkv("m.mid", "INT32", 3), ARCH],
              [wtensor("b", 0, [8]), wtensor("a", 0, [2]), wtensor("c", 8, [32])]))
    add("tensors", "two tensors, default alignment: F32 4x2 (32 bytes) then Q4_0 32 (18 bytes, padded)",
        ["Tensors"], _desc([ARCH], [wtensor("w", 0, [4, 2]), wtensor("q", 2, [32])]))
    tys = [(0, [3, 1, 2, 2]), (1, [7]), (2, [64, 2]), (8, [32, 3]), (12, [256]), (14, [256]), (23, [256]),
           (24, [5]), (26, [3, 3]), (28, [2]), (30, [4]), (39, [32, 2])]
    add("tensors", "tensors of 12 types whose sizes are not multiples of 32, 1 to 4 dimensions", ["TensorTypes"],
        _desc([ARCH], [wtensor(f"t.{TYPES[tid][0].lower()}", tid, ne) for tid, ne in tys]))
    for al, pos in ((1, "first"), (8, "last"), (16, "middle"), (64, "first"), (128, "middle"), (32, "first")):
        kv = [ARCH, wkv("x.n", "UINT16", al)]
        akv = wkv("general.alignment", "UINT32", al)
        kv.insert({"first": 0, "middle": 1, "last": 2}[pos], akv)
        ts = [wtensor("a", 0, [3]), wtensor("b", 1, [5]), wtensor("c", 8, [32, 2]), wtensor("d", 0, [8])]
        add("alignment", f"general.alignment = {al} ({pos} key): the padding after the tensor infos and after "
            f"each tensor, and the offsets, follow it", ["Alignment"], _desc(kv, ts))
    add("alignment", "general.alignment = 64 and no tensors: the header is padded to 64", ["Alignment", "NoTensors"],
        _desc([wkv("general.alignment", "UINT32", 64), ARCH]))
    for n in range(1, 64):
        d = _desc([ARCH], [wtensor("t" * n, 0, [2])])
        if _meta_len(d) % 32 == 0:
            add("alignment", "the tensor infos end exactly on the alignment: no padding before the data",
                ["NoPadding"], d)
            break
    else:
        raise AssertionError("no name length puts the data section on the alignment")
    add("shapes", "a 0-d tensor, ne (8, 1) and (4, 1, 2, 1): ggml writes the dimensions up to the last one "
        "that is not 1 (ggml_n_dims: n_dims 1 for a 0-d tensor)", ["TrailingOnes", "ZeroDims"],
        _desc([ARCH], [wtensor("scalar", 0, []), wtensor("col", 0, [8, 1]), wtensor("m", 0, [4, 1, 2, 1]),
                       wtensor("full", 0, [2, 3, 2, 2])]))
    add("shapes", "a tensor without elements (ne 0 x 2) between two others: no bytes, the next offset "
        "does not move", ["ZeroElements"],
        _desc([ARCH], [wtensor("a", 0, [3]), wtensor("empty", 0, [0, 2]), wtensor("b", 0, [1])]))
    add("names", "a 63-byte tensor name (the longest ggml allows), a UTF-8 name, an empty name", ["LongName", "Utf8"],
        _desc([ARCH], [wtensor("n" * 63, 0, [1]), wtensor("ü.weight", 0, [1]), wtensor("", 0, [2])]))
    return out


def _builder_of(d) -> Builder:
    """The generator's own byte-by-byte construction of a write description (n_dims as ggml's)."""
    al = next((int(kv["value"]) for kv in d["kv"] if kv["key"] == "general.alignment"), 32)
    b = Builder(alignment=al)

    def val(vt, x):
        if vt in ("FLOAT32", "FLOAT64"):
            return bytes.fromhex(x)
        if vt == "BOOL":
            return int(x)
        return x if vt == "STRING" else int(x)
    for kv in d["kv"]:
        if kv["type"] == "ARRAY":
            b.kv(kv["key"], "ARRAY", [val(kv["item_type"], x) for x in kv["value"]], kv["item_type"])
        else:
            b.kv(kv["key"], kv["type"], val(kv["type"], kv["value"]))
    for t in d["tensors"]:
        ne = list(t["ne"])
        n = max([i + 1 for i, x in enumerate(ne) if x != 1] + [1])
        b.tensor(t["name"], t["type"], (ne + [1] * n)[:n], bytes.fromhex(t["data"]))
    return b


def _meta_len(d) -> int:
    b = _builder_of(d)
    return len(b.header() + b.kv_bytes() + b.info_bytes())


def _expected_parse(d, data_offset) -> dict:
    """A write description as the parse of the file ggml must write (for the read-back check)."""
    al = next((int(kv["value"]) for kv in d["kv"] if kv["key"] == "general.alignment"), 32)
    ts, off = [], 0
    for t in d["tensors"]:
        ne = list(t["ne"]) + [1] * (4 - len(t["ne"]))
        ts.append({"name": t["name"], "type": t["type"], "ne": ne, "offset": off, "data": t["data"]})
        off += -(-(len(t["data"]) // 2) // al) * al
    return {"version": 3, "alignment": al, "data_offset": data_offset, "kv": d["kv"], "tensors": ts}


def write_vectors(out_dir) -> Path:
    """vectors/gguf/gguf_write.json: each description given to ggml's writer (libggml_gguf_write), the
    file read back by ggml (it must give the description) and compared with the generator's own
    construction."""
    import tempfile
    from ggspec.conformance import adapters, libggml
    from ggspec.conformance.sandbox import Sandbox
    from ggspec.conformance.suites.gguf import WRITE_SCHEMA, diff
    lib = libggml.LibGGML()

    class Oracle:
        def write(self, d):
            return adapters.libggml_gguf_write(lib.path, d)
    box = Sandbox(Oracle(), timeout=30)
    tests, files = [], []
    try:
        for tc, (cat, comment, flags, d) in enumerate(write_cases(), 1):
            r = box.call("write", d)
            if r.kind != "ok":
                raise SystemExit(f"write tc {tc}: ggml's writer failed: {r.kind} {r.error}")
            data = r.value
            b = _builder_of(d)
            own = b.build()
            if not d["tensors"]:
                own += bytes(-len(own) % b.alignment)        # ggml pads the header without tensors too
            if own != data:
                i = next((k for k in range(min(len(own), len(data))) if own[k] != data[k]), None)
                raise SystemExit(f"write tc {tc}: ggml's file differs from the construction at byte {i} "
                                 f"({len(data)} vs {len(own)} bytes): {comment}")
            files.append(data)
            tests.append({"tcId": tc, "comment": comment, "flags": flags, "category": cat, "description": d,
                          "file_hex": data.hex()})
    finally:
        box.close()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for t, data in zip(tests, files):
            paths.append(f"{tmp}/w{t['tcId']}.gguf")
            Path(paths[-1]).write_bytes(data)
        parses, _ = _oracle_parse(paths)
    for t, parse in zip(tests, parses):
        tc, d = t["tcId"], t["description"]
        if parse is None:
            raise SystemExit(f"write tc {tc}: ggml rejects the file its writer made: {t['comment']}")
        d_ = diff(parse, _expected_parse(d, parse["data_offset"]))
        if d_:
            raise SystemExit(f"write tc {tc}: ggml reads back something else than the description: {d_}")
        if d["tensors"] and parse["data_offset"] % parse["alignment"]:
            raise SystemExit(f"write tc {tc}: the data section is not aligned")
    doc = {"schema": WRITE_SCHEMA,
           "provenance": {"oracle": f"{libggml.ORACLE_PACKAGE} {libggml.ORACLE_VERSION}",
                          "function": "gguf_init_empty (gguf_init_from_file of a file holding only "
                                      "general.alignment, the key then removed, when the alignment is not 32), "
                                      "gguf_set_val_* / gguf_set_arr_data / gguf_set_arr_str, ggml_new_tensor + "
                                      "gguf_add_tensor + gguf_set_tensor_data, gguf_write_to_file "
                                      "(conformance/adapters.py, libggml_gguf_write)",
                          "checks": "ggml's gguf_init_from_file reads each file back as its description; each "
                                    "file equals the generator's own byte-by-byte construction",
                          "generator": "vectors/generate_gguf.py"},
           "format": "see docs/conformance.md (the gguf suite, write) and conformance/suites/gguf.py",
           "testGroups": [{"op": "write", "tests": tests}]}
    out = Path(out_dir) / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    p = out / "gguf_write.json"
    p.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {p}: {len(tests)} write cases", file=sys.stderr)
    return p


FUZZ_FILES = (
    ("bad-array-count-huge.gguf", "a UINT8 array claiming 2^62 items in a 64-byte file"),
    ("fuzz-024e089de44625de.gguf", "arrays of arrays 16 deep, each claiming more items than the file holds"),
    ("fuzz-241e23049b02ed65.gguf", "a big-endian file whose array claims more items than the file holds"),
)


# ------------------------------------------------------------------------------------------------

def _oracle_parse(paths):
    """ggml's parse of each file (None when rejected), each call in a child process."""
    from ggspec.conformance import adapters, libggml
    from ggspec.conformance.sandbox import Sandbox
    lib = libggml.LibGGML()

    class Oracle:
        def read(self, path):
            return adapters.libggml_gguf_parse(lib.path, path)
    box = Sandbox(Oracle(), timeout=30)
    out = []
    for p in paths:
        r = box.call("read", p)
        if r.kind == "ok":
            out.append(r.value)
        elif r.kind == "raised" and "rejected" in r.error:
            out.append(None)
        else:
            raise SystemExit(f"the oracle's parser failed on {p}: {r.kind} {r.error}")
    box.close()
    return out, lib


def _ggufpy_parse(path):
    try:
        import gguf
        from ggspec.conformance.adapters import ggufpy_parse
        return ggufpy_parse(gguf.GGUFReader(path)), f"gguf-py GGUFReader {_version('gguf')}"
    except ImportError:
        raise SystemExit("gguf-py is needed to cross-check the acceptable cases (pip install gguf==0.19.0)")
    except Exception:
        return None, None


def _ggufpy_big_endian(le: bytes) -> bytes:
    """gguf-py's scripts/gguf_convert_endian.py applied to a little-endian file."""
    import argparse
    import builtins
    import contextlib
    import io
    import os
    import tempfile
    try:
        import gguf
        from gguf.scripts.gguf_convert_endian import convert_byteorder
    except ImportError as e:
        raise SystemExit(f"gguf-py is needed to check the big-endian twins (pip install gguf==0.19.0): {e}")
    fd, path = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    Path(path).write_bytes(le)
    ask = builtins.input
    try:
        builtins.input = lambda *a: "YES"       # the script asks before it rewrites the file
        with contextlib.redirect_stderr(io.StringIO()):
            r = gguf.GGUFReader(path, "r+")
            convert_byteorder(r, argparse.Namespace(order="big", dry_run=False))
            r.data.flush()
            del r
        return Path(path).read_bytes()
    finally:
        builtins.input = ask
        os.unlink(path)


def _version(pkg):
    from importlib.metadata import version
    return version(pkg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent), help="vectors directory (default: in place)")
    ap.add_argument("--corpus", default=None, help="the repository's tests/fuzz/corpus/gguf (default: found "
                                                   "next to the package or under the current directory)")
    ap.add_argument("--write-only", action="store_true", help="only vectors/gguf/gguf_write.json (the write op)")
    args = ap.parse_args(argv)
    import tempfile
    from ggspec.conformance import libggml
    from ggspec.conformance.suites.gguf import SCHEMA, diff
    if libggml.installed_version() != libggml.ORACLE_VERSION:
        raise SystemExit(f"needs {libggml.ORACLE_PACKAGE}=={libggml.ORACLE_VERSION} (found {libggml.installed_version()})")
    write_vectors(args.out)
    if args.write_only:
        return 0
    cs = cases(Path(args.corpus) if args.corpus else None)
    with tempfile.TemporaryDirectory() as d:
        paths, twins = [], []
        for i, c in enumerate(cs):
            p = f"{d}/c{i}.gguf"
            Path(p).write_bytes(c[4])
            paths.append(p)
            if c[6] is not None:
                Path(f"{d}/c{i}-twin.gguf").write_bytes(c[6])
                twins.append(f"{d}/c{i}-twin.gguf")
        parses, lib = _oracle_parse(paths + twins)
        parses, twin_parses = parses[:len(paths)], iter(parses[len(paths):])
        groups = {"valid": [], "invalid": [], "acceptable": [], "extension": []}
        tc = 0
        for (result, cat, comment, flags, data, construction, twin), parse, path in zip(cs, parses, paths):
            tc += 1
            t = {"tcId": tc, "comment": comment, "flags": flags}
            if result == "extension":
                tp = next(twin_parses)
                if parse is not None:
                    raise SystemExit(f"tc {tc}: ggml accepts an extension file (it rejects v1 and big-endian): {comment}")
                if tp is None:
                    raise SystemExit(f"tc {tc}: ggml rejects the little-endian version 3 twin: {comment}")
                expected = dict(tp)
                source = "libggml gguf_init_from_file on the little-endian version 3 twin (the same keys, values " \
                         "and tensors"
                if cat == "version1":
                    expected["version"], expected["data_offset"] = 1, construction["data_offset"]
                    source += "); version and data_offset from the version 1 layout"
                else:
                    source += ", every number byte-swapped)"
                    if _ggufpy_big_endian(twin) != data:
                        raise SystemExit(f"tc {tc}: gguf-py's gguf_convert_endian.py turns the twin into another file")
                    source += "; the file is gguf-py's gguf_convert_endian.py output on the twin, byte for byte"
                d_ = diff(expected, construction)
                if d_:
                    raise SystemExit(f"tc {tc}: the twin's parse differs from the construction: {d_}")
                theirs, src = _ggufpy_parse(path)
                if theirs is not None:
                    d_ = diff(theirs, expected)
                    if d_:
                        raise SystemExit(f"tc {tc}: gguf-py's parse differs from the twin's: {d_}")
                    source += f"; equal to {src} on this file"
                t.update(category=cat, oracle="reject", gguf_py="accept" if theirs is not None else "reject",
                         file_hex=data.hex(), expected=expected, expected_source=source)
                groups[result].append(t)
                continue
            if result == "valid":
                if parse is None:
                    raise SystemExit(f"tc {tc} designed valid, but ggml rejects it: {comment}")
                d_ = diff(parse, construction)
                if d_:
                    raise SystemExit(f"tc {tc}: ggml's parse differs from what was written: {d_}")
                t.update(category=cat, file_hex=data.hex(), expected=parse)
            elif result == "invalid":
                if parse is not None:
                    raise SystemExit(f"tc {tc} designed invalid, but ggml accepts it: {comment}")
                t.update(reason=cat, file_hex=data.hex())
            else:
                t.update(category=cat, oracle="accept" if parse is not None else "reject", file_hex=data.hex())
                theirs, src = _ggufpy_parse(path)
                if "InvalidUtf8" in flags:
                    t["expected"] = None          # no text to compare: accepting or rejecting are both fine
                elif parse is not None:
                    t["expected"], t["expected_source"] = parse, "libggml gguf_init_from_file"
                    if construction and diff(parse, construction):
                        raise SystemExit(f"tc {tc}: ggml's parse differs from the construction: "
                                         f"{diff(parse, construction)}")
                elif construction:
                    if theirs is not None and "NestedArray" not in flags:
                        d_ = diff(theirs, construction)
                        if d_:
                            raise SystemExit(f"tc {tc}: gguf-py's parse differs from the construction: {d_}")
                        t["expected_source"] = f"construction, equal to {src}"
                    else:
                        t["expected_source"] = "construction (no oracle reads this file)"
                    t["expected"] = construction
                else:
                    t["expected"] = None
                t["gguf_py"] = "accept" if theirs is not None else "reject"
            groups[result].append(t)
    doc = {"schema": SCHEMA,
           "provenance": {"oracle": f"{libggml.ORACLE_PACKAGE} {libggml.ORACLE_VERSION}",
                          "function": "gguf_init_from_file (no_alloc = false: the tensor data is read too)",
                          "generator": "vectors/generate_gguf.py"},
           "format": "see docs/conformance.md (the gguf suite) and conformance/suites/gguf.py",
           "testGroups": [{"result": r, "tests": ts} for r, ts in groups.items()]}
    out = Path(args.out) / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gguf.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    n = {r: len(ts) for r, ts in groups.items()}
    print(f"wrote {out / 'gguf.json'}: {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
