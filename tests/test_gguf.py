"""GGUF reader and writer: against gguf-py 0.19.0 (byte-identical writer, same parse) and against the
oracle's ggml gguf parser (libggml-base's gguf_init_from_file) and llama.cpp (loads a model we wrote)."""

from __future__ import annotations

import ctypes
import os
import resource
import struct
import time

import numpy as np
import pytest

from ggspec.conformance import oracle_setup
from ggspec.errors import FormatError, UnsupportedTypeError
from ggspec.reference import gguf as G
from ggspec.reference.types import get_type

try:
    import gguf  # gguf-py, the peer implementation
except ImportError:  # pragma: no cover
    gguf = None

needs_gguf_py = pytest.mark.skipif(gguf is None, reason="gguf-py (gguf==0.19.0) is not importable")

VT = G.ValueType


# --------------------------------------------------------------------------------------------------
# random content shared by the tests
# --------------------------------------------------------------------------------------------------

_RANGES = {
    VT.UINT8: (0, 255), VT.INT8: (-128, 127), VT.UINT16: (0, 65535), VT.INT16: (-32768, 32767),
    VT.UINT32: (0, 2**32 - 1), VT.INT32: (-2**31, 2**31 - 1), VT.UINT64: (0, 2**64 - 1),
    VT.INT64: (-2**63, 2**63 - 1),
}


def _scalar(rng, vt):
    if vt in _RANGES:
        lo, hi = _RANGES[vt]
        return int(rng.integers(lo, hi, endpoint=True, dtype=np.uint64 if lo == 0 else np.int64))
    if vt == VT.FLOAT32:
        return float(np.float32(rng.standard_normal() * 1e3))
    if vt == VT.FLOAT64:
        return float(rng.standard_normal() * 1e30)
    if vt == VT.BOOL:
        return bool(rng.integers(2))
    if vt == VT.STRING:
        alphabet = "abcxyz é漢字🦙\n\t\"\\"
        return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), int(rng.integers(1, 12))))
    raise AssertionError(vt)


SCALAR_TYPES = [t for t in VT if t != VT.ARRAY]


def random_metadata(rng, nested=True, n=24):
    """Ordered {key: Value} covering every value type (arrays of each, and arrays of arrays)."""
    md = {"general.architecture": G.Value("llama", VT.STRING)}
    for vt in SCALAR_TYPES:
        md[f"test.scalar.{vt.name.lower()}"] = G.Value(_scalar(rng, vt), vt)
        items = [_scalar(rng, vt) for _ in range(int(rng.integers(1, 6)))]
        md[f"test.array.{vt.name.lower()}"] = G.Value(items, VT.ARRAY, vt)
    if nested:
        inner = [G.Value([_scalar(rng, VT.INT32) for _ in range(k + 1)], VT.ARRAY, VT.INT32) for k in range(3)]
        inner.append(G.Value(["a", "bc"], VT.ARRAY, VT.STRING))
        md["test.nested"] = G.Value(inner, VT.ARRAY, VT.ARRAY)
        md["test.nested2"] = G.Value([G.Value([G.Value([1.5], VT.ARRAY, VT.FLOAT32)], VT.ARRAY, VT.ARRAY)],
                                     VT.ARRAY, VT.ARRAY)
    for i in range(n - len(md)):
        vt = SCALAR_TYPES[int(rng.integers(len(SCALAR_TYPES)))]
        md[f"test.extra.{i}"] = G.Value(_scalar(rng, vt), vt)
    return md


def random_tensors(rng, types=("F32", "F16", "Q4_0", "Q8_0", "Q4_K", "Q6_K", "I8", "I32", "BF16", "IQ4_XS")):
    """[(name, ggml type name, ne, raw bytes)] with random bytes of the right size."""
    out = []
    for i, tname in enumerate(types):
        t = get_type(tname)
        n_dims = int(rng.integers(1, 5))
        ne = [t.block_size * int(rng.integers(1, 3))] + [int(rng.integers(1, 4)) for _ in range(n_dims - 1)]
        n = int(np.prod(ne))
        raw = rng.integers(0, 256, n // t.block_size * t.type_size, dtype=np.uint8).tobytes()
        out.append((f"t{i}.{tname.lower()}", tname, tuple(ne), raw))
    return out


# --------------------------------------------------------------------------------------------------
# gguf-py as the peer
# --------------------------------------------------------------------------------------------------

def _gguf_py_write(path, md, tensors, big=False):
    """Write with gguf-py's GGUFWriter: typed KVs through add_key_value, tensors as raw uint8 + raw_dtype."""
    endian = gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE
    w = gguf.GGUFWriter(str(path), md["general.architecture"].value, endianess=endian)
    for k, v in md.items():
        if k == "general.architecture":
            continue
        if k == "general.alignment":
            w.add_custom_alignment(v.value)
            continue
        if v.type == VT.ARRAY and v.sub_type == VT.ARRAY:
            # gguf-py infers nested item types from Python values
            w.add_key_value(k, v.plain(), gguf.GGUFValueType.ARRAY)
        else:
            w.add_key_value(k, v.value, gguf.GGUFValueType(int(v.type)),
                            sub_type=gguf.GGUFValueType(int(v.sub_type)) if v.sub_type is not None else None)
    for name, tname, ne, raw in tensors:
        t = get_type(tname)
        arr = np.frombuffer(raw, dtype=np.uint8).reshape(tuple(reversed(ne[1:])) + (len(raw) // max(1, np.prod(ne[1:], dtype=np.int64)),))
        w.add_tensor(name, arr, raw_dtype=gguf.GGMLQuantizationType(t.id))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _gguf_py_nested_ok(md):
    """gguf-py infers the item types of nested arrays (int -> INT32, float -> FLOAT32, str -> STRING)."""
    def ok(v):
        if v.type != VT.ARRAY:
            return True
        if v.sub_type == VT.ARRAY:
            return all(ok(x) for x in v.value)
        return v.sub_type in (VT.INT32, VT.FLOAT32, VT.STRING)
    return all(ok(v) for v in md.values() if v.sub_type == VT.ARRAY)


@needs_gguf_py
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_writer_byte_identical_to_gguf_py(tmp_path, seed, big):
    rng = np.random.default_rng(seed)
    md = random_metadata(rng)
    assert _gguf_py_nested_ok(md)
    if seed % 3 == 1:
        # custom alignment (as gguf-py's add_custom_alignment: a UINT32 KV that moves every offset)
        md["general.alignment"] = G.Value(int(2 ** rng.integers(0, 8)), VT.UINT32)
    tensors = random_tensors(rng) if seed != 5 else []
    theirs = _gguf_py_write(tmp_path / "theirs.gguf", md, tensors, big).read_bytes()
    ours = G.to_bytes(md, [(n, (t, ne, raw)) for n, t, ne, raw in tensors], byte_order=">" if big else "<")
    assert ours == theirs
    path = tmp_path / "ours.gguf"
    G.write(path, md, [(n, (t, ne, raw)) for n, t, ne, raw in tensors], byte_order=">" if big else "<")
    assert path.read_bytes() == theirs


@needs_gguf_py
@pytest.mark.parametrize("big", [False, True])
def test_writer_numpy_arrays_like_gguf_py(tmp_path, big):
    """Element-type numpy arrays: gguf-py swaps them into the file's order; so do we."""
    rng = np.random.default_rng(7)
    arrays = {"a.f32": rng.standard_normal((3, 5)).astype(np.float32),
              "b.f16": rng.standard_normal((2, 2, 4)).astype(np.float16),
              "c.f64": rng.standard_normal(7),
              "d.i16": rng.integers(-999, 999, (2, 3)).astype(np.int16),
              "e.i64": rng.integers(-2**60, 2**60, (4,)),
              "f.i8": rng.integers(-128, 127, (1, 1, 1, 9)).astype(np.int8)}
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "x", endianess=gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE)
    w.add_uint32("x.n", 3)
    w.add_string("x.s", "plain")
    w.add_float32("x.f", 0.25)
    w.add_array("x.arr", [1, 2, 3])
    w.add_array("x.strs", ["a", "b"])
    w.add_bool("x.b", False)
    for k, a in arrays.items():
        w.add_tensor(k, a)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    theirs = (tmp_path / "t.gguf").read_bytes()
    # plain Python values: the same type inference as gguf-py (int -> INT32, float -> FLOAT32, ...)
    md = {"general.architecture": "x", "x.n": G.Value(3, VT.UINT32), "x.s": "plain", "x.f": 0.25,
          "x.arr": [1, 2, 3], "x.strs": ["a", "b"], "x.b": False}
    assert G.to_bytes(md, arrays, byte_order=">" if big else "<") == theirs
    g = G.read(tmp_path / "t.gguf")
    for k, a in arrays.items():
        t = g.tensors[k]
        assert t.shape == tuple(reversed(a.shape))
        np.testing.assert_array_equal(t.array(), a)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(t.dequantize(), a.astype(np.float32))


@needs_gguf_py
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_reader_agrees_with_gguf_py_reader(tmp_path, seed, big):
    rng = np.random.default_rng(100 + seed)
    md = random_metadata(rng, nested=False)
    tensors = random_tensors(rng)
    path = _gguf_py_write(tmp_path / "m.gguf", md, tensors, big)
    ours = G.read(path)
    theirs = gguf.GGUFReader(str(path))
    assert ours.version == 3 and ours.byte_order == (">" if big else "<")
    assert ours.data_offset == theirs.data_offset and ours.alignment == theirs.alignment
    assert list(ours.metadata) == [k for k in theirs.fields if not k.startswith("GGUF.")]
    for k, fld in theirs.fields.items():
        if k.startswith("GGUF."):
            continue
        assert ours.fields[k].offset == fld.offset
        assert int(ours.values[k].type) == int(fld.types[0])
        want = fld.contents()
        if ours.values[k].sub_type == VT.BOOL:
            want = [bool(x) for x in want]
        assert ours.metadata[k] == want, k
    assert list(ours.tensors) == [t.name for t in theirs.tensors]
    for t in theirs.tensors:
        o = ours.tensors[t.name]
        assert o.type.id == int(t.tensor_type)
        assert o.shape == tuple(int(v) for v in t.shape)
        assert o.offset == t.data_offset and o.nbytes == t.n_bytes
        assert bytes(o.raw) == np.asarray(t.data).tobytes()


@pytest.mark.parametrize("order", ["<", ">"])
def test_float32_signalling_nan_metadata_kept_bit_for_bit(order):
    """A FLOAT32 value or array item that is a signalling NaN: a Python float would set its quiet bit
    (float -> double); Value.bits keeps the stored bytes, the parse reports them, and writing the
    values back gives the same file."""
    snan, neg = np.uint32(0x7F800001), np.uint32(0xFFA00055)
    w = G.GGUFWriter(byte_order=order)
    w.add("general.architecture", "llama")
    w.add("f.snan", np.array([snan]).view(np.float32)[0], G.ValueType.FLOAT32)
    w.add("a.snan", [np.float32(0.5)] + list(np.array([snan, neg]).view(np.float32)), G.ValueType.ARRAY,
          G.ValueType.FLOAT32)
    raw = w.to_bytes()
    g = G.parse(raw)
    assert g.values["f.snan"].bits == struct.pack("<I", 0x7F800001)
    assert g.values["a.snan"].bits == struct.pack("<III", 0x3F000000, 0x7F800001, 0xFFA00055)
    assert struct.pack("<f", g.values["f.snan"].value) != g.values["f.snan"].bits   # the float is quieted
    assert G.to_bytes(g.values, (), order) == raw


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("order", ["<", ">"])
def test_round_trip_every_version_and_order(tmp_path, version, order):
    rng = np.random.default_rng(version)
    md = random_metadata(rng)
    md["general.alignment"] = G.Value(64, VT.UINT32)
    tensors = random_tensors(rng)
    path = G.write(tmp_path / "m.gguf", md, [(n, (t, ne, raw)) for n, t, ne, raw in tensors], order, version)
    g = G.read(path)
    assert (g.version, g.byte_order, g.alignment) == (version, order, 64)
    assert g.values == md
    assert list(g.tensors) == [n for n, *_ in tensors]
    for n, tname, ne, raw in tensors:
        t = g.tensors[n]
        assert (t.type.name, t.shape, bytes(t.raw)) == (tname, ne, raw)
        assert t.offset % 64 == 0 and t.offset >= g.data_offset
    # writing what we read gives the same bytes
    assert G.to_bytes(g.values, g.tensors, order, version) == path.read_bytes()


def test_version1_uses_32bit_counts(tmp_path):
    """v1 (August 2023): u32 tensor/KV counts, string lengths, array lengths and dimensions; u64 offsets."""
    md = {"general.architecture": "llama", "a": G.Value([7, 8], VT.ARRAY, VT.UINT16)}
    b = G.to_bytes(md, [("w", ("F32", (2, 3), bytes(24)))], version=1)
    # header: magic, version 1, n_tensors u32, n_kv u32
    assert b[:16] == b"GGUF" + struct.pack("<IIII", 1, 1, 2, len("general.architecture"))[:12]
    assert struct.unpack_from("<I", b, 8)[0] == 1 and struct.unpack_from("<I", b, 12)[0] == 2
    pos = 16
    (n,) = struct.unpack_from("<I", b, pos)
    assert b[pos + 4:pos + 4 + n] == b"general.architecture"
    g = G.parse(b)
    assert g.version == 1 and g.metadata["a"] == [7, 8] and g.tensors["w"].shape == (2, 3)


def test_shapes_are_ggml_order_and_dequantize_is_numpy_order(tmp_path):
    x = np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32)
    path = G.write(tmp_path / "m.gguf", {"general.architecture": "x"}, {"x": x})
    t = G.read(path).tensors["x"]
    assert t.shape == (32, 3, 2) and t.numpy_shape == (2, 3, 32) and t.n_elements == x.size
    np.testing.assert_array_equal(t.dequantize(), x)


def test_quantized_dequantize_matches_reference(tmp_path):
    from ggspec import reference
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    raw = reference.quantize("Q8_0", x)
    path = G.write(tmp_path / "m.gguf", {"general.architecture": "x"}, [("q", ("Q8_0", (64, 4), raw))])
    t = G.read(path).tensors["q"]
    np.testing.assert_array_equal(t.dequantize(), reference.dequantize("Q8_0", raw, 256).reshape(4, 64))


@needs_gguf_py
def test_big_endian_blocks_follow_gguf_convert_endian(tmp_path, monkeypatch):
    """gguf-py's convert script turns an LE file into BE; our le_bytes() gives back ggml's bytes."""
    import argparse
    try:
        from gguf.scripts import gguf_convert_endian as conv
    except Exception as e:  # pragma: no cover - needs tqdm
        pytest.skip(f"gguf_convert_endian is not importable: {e}")
    rng = np.random.default_rng(3)
    md = random_metadata(rng, nested=False)
    tensors = random_tensors(rng, types=("F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q6_K", "MXFP4"))
    path = _gguf_py_write(tmp_path / "m.gguf", md, tensors)
    monkeypatch.setattr("builtins.input", lambda *a: "YES")
    conv.convert_byteorder(gguf.GGUFReader(str(path), "r+"), argparse.Namespace(order="big", dry_run=False))
    g = G.read(path)
    assert g.byte_order == ">" and g.values == md
    for n, tname, ne, raw in tensors:
        t = g.tensors[n]
        assert bytes(t.le_bytes()) == raw, n
        assert bytes(t.raw) == G.swap_byte_order(tname, raw)
        if tname in ("F32", "F16", "BF16", "Q4_0", "Q8_0"):
            from ggspec import reference
            want = reference.dequantize(tname, raw, t.n_elements)
            assert np.array_equal(t.dequantize().reshape(-1).view(np.uint32), want.view(np.uint32))
    with pytest.raises(UnsupportedTypeError, match="Q5_K"):
        G.swap_byte_order("Q5_K", bytes(176))


def _rss() -> int:
    """Current resident set size in bytes (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_lazy_open_of_a_40gb_file(tmp_path):
    """A 40 GB (sparse) file opens in well under a second without reading tensor data."""
    big = 40 * 2**30
    head = G.GGUFWriter()
    head.add("general.architecture", "llama")
    # one huge F32 tensor: metadata only; the file is extended sparsely
    ne = (4096, big // (4 * 4096))
    head.tensors.append(G._PendingTensor("huge", get_type("F32"), ne, b""))
    hb = head.header_bytes()
    path = tmp_path / "huge.gguf"
    with open(path, "wb") as f:
        f.write(hb)
        f.truncate(len(hb) + big)
    rss0 = _rss()
    t0 = time.perf_counter()
    g = G.read(path)
    dt = time.perf_counter() - t0
    t = g.tensors["huge"]
    assert t.nbytes == big and g.file_size == len(hb) + big
    assert dt < 0.5, dt
    assert bytes(t.raw[:8]) == bytes(8) and len(t.raw) == big
    assert _rss() - rss0 < 64 * 2**20      # resident memory did not grow with the file


# --------------------------------------------------------------------------------------------------
# bad input: a few precise messages (the fuzz corpus test covers the rest)
# --------------------------------------------------------------------------------------------------

def _valid_bytes(**kw):
    md = {"general.architecture": "llama", "k": G.Value([1, 2], VT.ARRAY, VT.INT32)}
    return G.to_bytes(md, [("w", ("F32", (4, 2), bytes(32))), ("q", ("Q4_0", (32,), bytes(18)))], **kw)


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b"GGUX" + b[4:], "magic"),
    (lambda b: b[:4] + struct.pack("<I", 4) + b[8:], "version 4"),
    (lambda b: b[:8] + struct.pack("<Q", 2**62) + b[16:], "claims 4611686018427387904 tensors"),
    (lambda b: b[:16] + struct.pack("<Q", 2**40) + b[24:], "key-value pairs"),
    (lambda b: b[:-15], "run past the end"),   # the last tensor: 18 bytes + 14 padding
    (lambda b: b[:40], "ends inside|remain|follow"),
    (lambda b: b[:70], "ends inside|remain|follow"),
])
def test_bad_headers(mutate, match):
    with pytest.raises(FormatError, match=match) as e:
        G.parse(mutate(_valid_bytes()))
    assert e.value.offset is not None


def _patch_tensor_info(b: bytes, name: bytes, field: str, value: int) -> bytes:
    """Overwrite one field of tensor ``name``'s info in a v3 little-endian file."""
    i = b.index(struct.pack("<Q", len(name)) + name)
    pos = i + 8 + len(name)
    n_dims = struct.unpack_from("<I", b, pos)[0]
    where = {"n_dims": (pos, "<I"), "ne0": (pos + 4, "<Q"), "type": (pos + 4 + 8 * n_dims, "<i"),
             "offset": (pos + 8 + 8 * n_dims, "<Q")}[field]
    return b[:where[0]] + struct.pack(where[1], value) + b[where[0] + struct.calcsize(where[1]):]


@pytest.mark.parametrize("field,value,match", [
    ("type", 4, "Q4_2 .id 4., which was removed"),
    ("type", 99, "unknown ggml type id 99"),
    ("type", -1, "unknown ggml type id -1"),
    ("ne0", 2**63, "negative"),
    ("ne0", 31, "not a multiple of Q4_0's block size 32"),
    ("offset", 8, "not a multiple of the alignment"),
    ("offset", 0, "overlap"),
    ("n_dims", 5, "5 dimensions"),
])
def test_bad_tensor_infos(field, value, match):
    b = _patch_tensor_info(_valid_bytes(), b"q", field, value)
    with pytest.raises(FormatError, match=match):
        G.parse(b)


def test_duplicates_and_utf8():
    md = {"general.architecture": "llama", "aa": 1, "ab": 2}
    b = G.to_bytes(md)
    with pytest.raises(FormatError, match="duplicate key 'aa'"):
        G.parse(b.replace(b"ab", b"aa"))
    with pytest.raises(FormatError, match="not valid UTF-8"):
        G.parse(b.replace(b"ab", b"a\xff"))
    b = G.to_bytes(md, [("xa", ("F32", (1,), bytes(4))), ("xb", ("F32", (1,), bytes(4)))])
    with pytest.raises(FormatError, match="duplicate tensor name 'xa'"):
        G.parse(b.replace(b"xb", b"xa"))


def test_bad_alignment_key():
    b = G.to_bytes({"general.architecture": "x", "general.alignment": G.Value(32, VT.UINT32)})
    i = b.index(b"general.alignment") + len(b"general.alignment") + 4
    with pytest.raises(FormatError, match="not a power of two"):
        G.parse(b[:i] + struct.pack("<I", 24) + b[i + 4:])
    w = G.GGUFWriter()
    w.kv["general.alignment"] = G.Value(32, VT.INT32)     # the writer refuses this; bypass it
    with pytest.raises(FormatError, match="must be of type UINT32"):
        G.parse(w.header_bytes())


def test_legacy_magic_is_named():
    with pytest.raises(FormatError, match="legacy GGML"):
        G.parse(struct.pack("<I", 0x67676A74) + bytes(60))


def test_empty_and_missing_files(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        G.read(p)
    from ggspec.errors import GGSpecError
    with pytest.raises(GGSpecError, match="cannot open"):
        G.read(tmp_path / "missing.gguf")


# --------------------------------------------------------------------------------------------------
# the oracle: ggml's own gguf parser (libggml-base) and llama.cpp
# --------------------------------------------------------------------------------------------------

class _InitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


def _ggml_gguf(lib_path):
    lib = ctypes.CDLL(str(lib_path))
    V, I64, SZ, S = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t, ctypes.c_char_p
    sig = {
        "gguf_init_from_file": (V, [S, _InitParams]), "gguf_free": (None, [V]),
        "gguf_get_version": (ctypes.c_uint32, [V]), "gguf_get_alignment": (SZ, [V]),
        "gguf_get_data_offset": (SZ, [V]), "gguf_get_n_kv": (I64, [V]), "gguf_get_key": (S, [V, I64]),
        "gguf_get_kv_type": (ctypes.c_int, [V, I64]), "gguf_get_arr_type": (ctypes.c_int, [V, I64]),
        "gguf_get_arr_n": (SZ, [V, I64]), "gguf_get_arr_data": (V, [V, I64]),
        "gguf_get_arr_str": (S, [V, I64, SZ]), "gguf_get_val_data": (V, [V, I64]),
        "gguf_get_val_str": (S, [V, I64]), "gguf_get_n_tensors": (I64, [V]),
        "gguf_get_tensor_name": (S, [V, I64]), "gguf_get_tensor_offset": (SZ, [V, I64]),
        "gguf_get_tensor_type": (ctypes.c_int, [V, I64]), "gguf_get_tensor_size": (SZ, [V, I64]),
        "gguf_get_tensor_ne": (ctypes.POINTER(ctypes.c_int64), [V, I64]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_NP = {VT.UINT8: "<u1", VT.INT8: "<i1", VT.UINT16: "<u2", VT.INT16: "<i2", VT.UINT32: "<u4", VT.INT32: "<i4",
       VT.FLOAT32: "<f4", VT.BOOL: "<u1", VT.UINT64: "<u8", VT.INT64: "<i8", VT.FLOAT64: "<f8"}


def ggml_parse(lib, path):
    """(header dict, {key: Value}, [(name, type id, ne, offset, size)]) as libggml's gguf sees the file;
    None when ggml rejects it."""
    ctx = lib.gguf_init_from_file(str(path).encode(), _InitParams(True, None))
    if not ctx:
        return None
    try:
        hdr = dict(version=lib.gguf_get_version(ctx), alignment=lib.gguf_get_alignment(ctx),
                   data_offset=lib.gguf_get_data_offset(ctx))
        kv = {}
        for i in range(lib.gguf_get_n_kv(ctx)):
            key = lib.gguf_get_key(ctx, i).decode()
            vt = VT(lib.gguf_get_kv_type(ctx, i))
            if vt == VT.STRING:
                kv[key] = G.Value(lib.gguf_get_val_str(ctx, i).decode(), vt)
            elif vt == VT.ARRAY:
                st = VT(lib.gguf_get_arr_type(ctx, i))
                n = lib.gguf_get_arr_n(ctx, i)
                if st == VT.STRING:
                    items = [lib.gguf_get_arr_str(ctx, i, j).decode() for j in range(n)]
                else:
                    dt = np.dtype(_NP[st])
                    buf = ctypes.string_at(lib.gguf_get_arr_data(ctx, i), n * dt.itemsize)
                    items = np.frombuffer(buf, dt).tolist()
                    if st == VT.BOOL:
                        items = [bool(x) for x in items]
                kv[key] = G.Value(items, vt, st)
            else:
                dt = np.dtype(_NP[vt])
                v = np.frombuffer(ctypes.string_at(lib.gguf_get_val_data(ctx, i), dt.itemsize), dt)[0].item()
                kv[key] = G.Value(bool(v) if vt == VT.BOOL else v, vt)
        tensors = []
        for i in range(lib.gguf_get_n_tensors(ctx)):
            ne = lib.gguf_get_tensor_ne(ctx, i)
            tensors.append((lib.gguf_get_tensor_name(ctx, i).decode(), lib.gguf_get_tensor_type(ctx, i),
                            tuple(ne[j] for j in range(4)), lib.gguf_get_tensor_offset(ctx, i),
                            lib.gguf_get_tensor_size(ctx, i)))
        return hdr, kv, tensors
    finally:
        lib.gguf_free(ctx)


@pytest.fixture(scope="module")
def ggml_gguf(oracle):
    return _ggml_gguf(oracle.path)


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(5))
def test_ggml_parses_our_files_identically(tmp_path, ggml_gguf, seed):
    rng = np.random.default_rng(200 + seed)
    md = random_metadata(rng, nested=False)          # ggml rejects arrays of arrays
    if seed % 2:
        md["general.alignment"] = G.Value(int(2 ** rng.integers(0, 9)), VT.UINT32)
    tensors = random_tensors(rng, types=("F32", "F16", "Q4_0", "Q5_1", "Q8_0", "Q2_K", "Q4_K", "Q6_K",
                                         "IQ2_XXS", "IQ4_NL", "TQ2_0", "MXFP4", "I64", "BF16")[seed:])
    path = G.write(tmp_path / "m.gguf", md, [(n, (t, ne, raw)) for n, t, ne, raw in tensors])
    got = ggml_parse(ggml_gguf, path)
    assert got is not None, "ggml rejected a file we wrote"
    hdr, kv, ts = got
    ours = G.read(path)
    assert hdr == dict(version=3, alignment=ours.alignment, data_offset=ours.data_offset)
    assert kv == ours.values
    assert list(kv) == list(ours.values)
    assert len(ts) == len(ours.tensors)
    for (name, tid, ne, off, size), t in zip(ts, ours.tensors.values()):
        assert (name, tid, off, size) == (t.name, t.type.id, t.relative_offset, t.nbytes)
        assert ne == tuple(t.shape) + (1,) * (4 - len(t.shape))


@pytest.mark.oracle
def test_ggml_rejects_what_we_reject(tmp_path, ggml_gguf):
    """Malformed files of the kinds both parsers check give errors from both."""
    base = _valid_bytes()
    cases = [_patch_tensor_info(base, b"q", "type", 4), _patch_tensor_info(base, b"q", "type", 99),
             _patch_tensor_info(base, b"q", "ne0", 31), _patch_tensor_info(base, b"q", "n_dims", 5),
             base[:30], b"GGUX" + base[4:]]   # (no_alloc: ggml does not look at the data section)
    for i, b in enumerate(cases):
        p = tmp_path / f"bad{i}.gguf"
        p.write_bytes(b)
        assert ggml_parse(ggml_gguf, p) is None, i
        with pytest.raises(FormatError):
            G.read(p)
    p = tmp_path / "good.gguf"
    p.write_bytes(base)
    assert ggml_parse(ggml_gguf, p) is not None


def _tiny_llama_metadata(spec):
    from ggspec.conformance.tinymodels import vocabulary
    tokens, scores, types = vocabulary(spec.n_extra_tokens)
    U32 = VT.UINT32
    return {
        "general.architecture": "llama", "general.name": "ggspec-writer-test",
        "llama.context_length": G.Value(spec.n_ctx_train, U32), "llama.embedding_length": G.Value(spec.n_embd, U32),
        "llama.block_count": G.Value(spec.n_layer, U32), "llama.feed_forward_length": G.Value(spec.n_ff, U32),
        "llama.attention.head_count": G.Value(spec.n_head, U32),
        "llama.attention.head_count_kv": G.Value(spec.kv_heads, U32),
        "llama.attention.layer_norm_rms_epsilon": G.Value(spec.rms_eps, VT.FLOAT32),
        "llama.rope.dimension_count": G.Value(spec.head_dim, U32),
        "llama.rope.freq_base": G.Value(spec.rope_freq_base, VT.FLOAT32),
        "llama.vocab_size": G.Value(spec.n_vocab, U32),
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": G.Value(tokens, VT.ARRAY, VT.STRING),
        "tokenizer.ggml.scores": G.Value(scores, VT.ARRAY, VT.FLOAT32),
        "tokenizer.ggml.token_type": G.Value(types, VT.ARRAY, VT.INT32),
        "tokenizer.ggml.bos_token_id": G.Value(1, U32), "tokenizer.ggml.eos_token_id": G.Value(2, U32),
        "tokenizer.ggml.unknown_token_id": G.Value(0, U32), "tokenizer.ggml.add_bos_token": False,
    }


@pytest.mark.oracle
def test_llama_cpp_loads_a_model_we_wrote(tmp_path, oracle):
    llama_cpp = pytest.importorskip("llama_cpp")
    from ggspec import reference
    from ggspec.conformance.tinymodels import TinySpec, tiny_weights
    spec = TinySpec(n_embd=64, n_head=4, n_head_kv=2, n_layer=1, n_ff=128, seed=5)
    tensors = {}
    for name, w in tiny_weights(spec).items():
        if w.ndim == 2 and name != "token_embd.weight":
            tensors[name] = ("Q8_0", (w.shape[1], w.shape[0]), reference.quantize("Q8_0", w))
        else:
            tensors[name] = w
    path = G.write(tmp_path / "tiny.gguf", _tiny_llama_metadata(spec), tensors)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=16, n_threads=1, verbose=False, logits_all=True)
    try:
        assert llm.n_vocab() == spec.n_vocab and llm.n_embd() == spec.n_embd
        llm.eval([1, 300, 301])
        logits = np.array(llm.scores[:3])
        assert logits.shape == (3, spec.n_vocab) and np.isfinite(logits).all() and logits.std() > 0
    finally:
        llm.close()
    g = G.read(path)
    assert g.tensors["blk.0.attn_q.weight"].type.name == "Q8_0"
    assert g.metadata["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"]


# --------------------------------------------------------------------------------------------------
# differential: our validation vs ggml's gguf_init_from_buffer on corrupted files
# --------------------------------------------------------------------------------------------------

def _ggml_accepts(lib, data: bytes) -> bool:
    buf = ctypes.create_string_buffer(data, len(data))
    ctx = lib.gguf_init_from_buffer(buf, len(data), _InitParams(True, None))
    if ctx:
        lib.gguf_free(ctx)
    return bool(ctx)


def _explained_accept(g) -> "str | None":
    """Why ggml may reject a file we accept (documented differences), or None."""
    if g.version == 1:
        return "v1"
    if g.byte_order == ">":
        return "big-endian"
    if any(v.sub_type == VT.ARRAY for v in g.values.values()):
        return "nested array"
    expect = 0
    for t in g.tensors.values():
        if t.relative_offset != expect:
            return "offset gap"
        expect += -(-t.nbytes // g.alignment) * g.alignment
    return None


_OURS_ONLY = ("not valid UTF-8", "run past the end", "ends before the data section")


@pytest.mark.oracle
def test_validation_agrees_with_ggml_on_corruptions(ggml_gguf):
    lib = ggml_gguf
    lib.gguf_init_from_buffer.restype = ctypes.c_void_p
    lib.gguf_init_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_size_t, _InitParams]
    rng = np.random.default_rng(2024)
    md = random_metadata(rng, nested=False, n=20)
    base = G.to_bytes(md, [(n, (t, ne, raw)) for n, t, ne, raw in random_tensors(rng, ("F32", "Q4_0", "Q6_K"))])
    from pathlib import Path
    corpus = [p.read_bytes() for p in sorted((Path(__file__).parent / "fuzz" / "corpus" / "gguf").glob("*.gguf"))]
    cases = list(corpus)
    for _ in range(1500):
        b = bytearray(base)
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.integers(len(b)))
            b[i] = int(rng.integers(256))
        cases.append(bytes(b))
    stats = {"both accept": 0, "both reject": 0}
    for data in cases:
        theirs = _ggml_accepts(lib, data)
        try:
            g = G.parse(data)
            ours, why = True, None
        except FormatError as e:
            ours, why = False, e.message
        if ours and theirs:
            stats["both accept"] += 1
        elif not ours and not theirs:
            stats["both reject"] += 1
        elif ours:
            reason = _explained_accept(g)
            assert reason, f"ggml rejects a file we accept: {data[:64]!r}"
            stats[f"ours only: {reason}"] = stats.get(f"ours only: {reason}", 0) + 1
        else:
            assert any(s in why for s in _OURS_ONLY), f"we reject a file ggml accepts: {why}"
            key = next(s for s in _OURS_ONLY if s in why)
            stats[f"ggml only: {key}"] = stats.get(f"ggml only: {key}", 0) + 1
    print(stats)
    assert stats["both accept"] > 50 and stats["both reject"] > 500, stats


# --------------------------------------------------------------------------------------------------
# real files: llama.cpp's vocabulary GGUFs (vendored in llama-cpp-python 0.3.36's source tree)
# --------------------------------------------------------------------------------------------------

VOCAB_DIR = str(oracle_setup.source_root() / "vendor" / "llama.cpp" / "models")   # `ggspec oracle setup --source`


def _vocab_files():
    import glob
    # the five smallest (gguf-py's reader needs seconds for a 250k-token vocabulary)
    return sorted(glob.glob(f"{VOCAB_DIR}/ggml-vocab-*.gguf"), key=os.path.getsize)[:5]


@needs_gguf_py
@pytest.mark.skipif(not _vocab_files(), reason=f"no vocabulary GGUFs under {VOCAB_DIR}")
@pytest.mark.parametrize("path", _vocab_files(), ids=lambda p: p.rsplit("/", 1)[-1])
def test_real_vocab_files(path):
    """Same metadata as gguf-py; re-encoding gives the same bytes (these files predate the padding that
    gguf-py 0.19 and ggml's writer add after the last tensor info even when there are no tensors)."""
    g = G.read(path)
    r = gguf.GGUFReader(path)
    for k, f in r.fields.items():
        if not k.startswith("GGUF."):
            want = f.contents()
            if g.values[k].sub_type == VT.BOOL:
                want = [bool(x) for x in want]
            assert g.metadata[k] == want, k
    data = open(path, "rb").read()
    out = G.to_bytes(g.values, g.tensors, g.byte_order, g.version)
    assert out[:len(data)] == data and set(out[len(data):]) <= {0} and len(out) % g.alignment == 0


@pytest.mark.oracle
@pytest.mark.skipif(not _vocab_files(), reason=f"no vocabulary GGUFs under {VOCAB_DIR}")
def test_real_vocab_files_vs_ggml(ggml_gguf):
    for path in _vocab_files():
        hdr, kv, ts = ggml_parse(ggml_gguf, path)
        g = G.read(path)
        assert kv == g.values and hdr["data_offset"] == g.data_offset and not ts
