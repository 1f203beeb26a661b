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

import ctypes
import importlib
import struct
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
    # what it claims in the gguf suite (conformance/suites/gguf.py, claimed_extensions): it reads GGUF v1,
    # big-endian files and the acceptable forms below, and rejects strings that are not UTF-8
    gguf_extensions = ("version1", "big-endian", "nested-array", "offset-gap", "offset-order", "no-final-padding",
                       "bool", "strict-utf8")

    def __init__(self):
        from .. import reference
        self._ref = reference

    def supports(self, op, type):
        return self._ref.supports("quantize" if op == "quantize+imatrix" else op, type)

    def dequantize(self, type, raw, n):
        return self._ref.dequantize(type, raw, n)

    def quantize(self, type, x, imatrix):
        return self._ref.quantize(type, x, imatrix)

    def read_gguf(self, path):
        from ..reference import gguf as G
        g = G.read(path)
        try:
            return reference_parse(g)
        finally:
            g.close()

    def write_gguf(self, description):
        """The gguf suite's write op: reference/gguf.py's GGUFWriter."""
        from ..reference import gguf as G
        return reference_gguf_write(G, description)

    def supports_suite(self, suite, op, subject):
        if suite == "rope":
            from ..reference import rope as R
            return R.libm_available()      # bit-exact RoPE needs the C library's sinf/cosf
        return hasattr(self, {"gguf": "read_gguf", "mix": "tensor_types"}.get(suite, suite))

    def rope(self, x, pos, params):
        from ..reference import rope as R
        ff = params.get("freq_factors")
        p = R.RopeParams(n_dims=params["n_dims"], mode=params["mode"], freq_base=params["freq_base"],
                         freq_scale=params["freq_scale"], ext_factor=params["ext_factor"],
                         attn_factor=params["attn_factor"], beta_fast=params["beta_fast"],
                         beta_slow=params["beta_slow"], n_ctx_orig=params["n_ctx_orig"],
                         freq_factors=None if ff is None else tuple(np.asarray(ff, np.float32).tolist()))
        return R.apply_rope(x, pos, p, math="libm")

    def attention(self, q, k, v, params):
        from .suites.attention import reference_attention
        return reference_attention(q, k, v, params)

    def forward(self, model_path, tokens, context, n_predict):
        from .suites.forward import reference_forward
        return reference_forward(model_path, tokens, context, n_predict)

    def tensor_types(self, model, ftype, imatrix=False, overrides=None):
        """The mix suite: ggspec.conformance.sizes' prediction for the model's tensors."""
        from . import sizes
        if model.get("architecture") != "llama":
            raise UnsupportedTypeError(f"the size models know Llama-family models, not {model.get('architecture')}")
        tied = not any(t["name"] == "output.weight" for t in model["tensors"])  # token_embd doubles as output
        arch = sizes.llama_architecture(model["n_embd"], model["n_layer"], model["n_head"], model["n_head_kv"],
                                        model["n_ff"], model["n_vocab"], name=model.get("name", "model"),
                                        tied_embeddings=tied)
        ov = dict(overrides or {})
        if "tensor_types" in ov:
            ov["tensor_types"] = tuple(tuple(x) for x in ov["tensor_types"])
        by_name = {t.name("gguf"): ty for t, ty in
                   sizes.tensor_types(arch, ftype, "gguf", imatrix=bool(imatrix),
                                      overrides=sizes.QuantOverrides(**ov) if ov else None)}
        return [by_name[t["name"]] for t in model["tensors"]]


def reference_parse(g) -> dict:
    """ggspec's GGUFFile as the gguf suite's parse JSON."""
    from .suites.gguf import scalar_json

    def item(vt, sub, v, bits=None):
        # FLOAT32: the stored bits (Value.bits), not the Python float (which quiets a signalling NaN)
        if vt.name == "ARRAY":
            if sub.name == "ARRAY":
                return [{"item_type": x.sub_type.name, "value": item(x.type, x.sub_type, x.value, x.bits)}
                        for x in v]
            if bits is not None:
                return [bits[4 * i:4 * i + 4].hex() for i in range(len(v))]
            return [scalar_json(sub.name, x) for x in v]
        return bits.hex() if bits is not None else scalar_json(vt.name, v)
    kv = []
    for key, val in g.values.items():
        d = {"key": key, "type": val.type.name, "value": item(val.type, val.sub_type, val.value, val.bits)}
        if val.type.name == "ARRAY":
            d = {"key": key, "type": "ARRAY", "item_type": val.sub_type.name, "value": d["value"]}
        kv.append(d)
    tensors = [{"name": t.name, "type": t.type.id, "ne": list(t.shape), "offset": t.relative_offset,
                "data": bytes(t.le_bytes()).hex()} for t in g.tensors.values()]
    return {"version": g.version, "alignment": g.alignment, "data_offset": g.data_offset, "kv": kv,
            "tensors": tensors}


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
        self._graph = None

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

    # the oracle's native build (FMA contraction, SIMD): judged by the model suites within the vectors'
    # measured native tolerance, not bit for bit against the portable build that made them
    simd = True

    def rope(self, x, pos, params):
        """ggml_rope_ext of libggml-cpu (next to this libggml-base), one thread."""
        from . import ggml_graph
        if self._graph is None:
            self._graph = ggml_graph.GGMLGraph(self._lib.path)
        p = params
        return self._graph.rope_ext(x, pos, n_dims=p["n_dims"], mode=p["mode_id"], freq_factors=p.get("freq_factors"),
                                    n_ctx_orig=p["n_ctx_orig"], freq_base=p["freq_base"], freq_scale=p["freq_scale"],
                                    ext_factor=p["ext_factor"], attn_factor=p["attn_factor"],
                                    beta_fast=p["beta_fast"], beta_slow=p["beta_slow"])

    def attention(self, q, k, v, params):
        """llama.cpp's attention op on this (native) libggml-cpu, as one ggml graph."""
        from . import ggml_graph
        if self._graph is None:
            self._graph = ggml_graph.GGMLGraph(self._lib.path)
        n_kv = int(params["n_kv"])
        kk = np.zeros((n_kv,) + k.shape[1:], np.float32)
        vv = np.zeros((n_kv,) + v.shape[1:], np.float32)
        kk[:k.shape[0]], vv[:v.shape[0]] = k, v
        n_past, n_new = int(params["n_past"]), int(params["n_new"])
        cells = np.arange(n_kv)
        qpos = np.arange(n_past, n_past + n_new)
        used = n_past + n_new
        mask = np.where((cells[None, :] < used) & (cells[None, :] <= qpos[:, None]), 0, -np.inf).astype(np.float32)
        for row in params.get("fully_masked", ()):
            mask[int(row), :] = -np.inf
        return self._graph.attention(q, kk, vv, mask, float(params["scale"]), type_k=params["type_k"],
                                     type_v=params["type_v"], flash_attn=bool(params["flash_attn"]),
                                     n_threads=int(params["n_threads"]))

    def forward(self, model_path, tokens, context, n_predict):
        """llama.cpp itself (the installed llama-cpp-python build) on the model."""
        from . import llama_run
        logits, greedy = llama_run.run(str(model_path), tokens, context, n_predict=n_predict)
        return np.asarray(logits, np.float32), greedy

    def read_gguf(self, path):
        """ggml's gguf_init_from_file, reading the tensor data too (no_alloc = false, as
        gguf_init_from_file does for a caller that asks for a ggml context)."""
        return libggml_gguf_parse(self._lib.path, path)

    def write_gguf(self, description):
        """ggml's GGUF writer (gguf_init_empty, gguf_set_*, gguf_add_tensor, gguf_write_to_file)."""
        return libggml_gguf_write(self._lib.path, description)


class _GGUFInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


_GGUF_FNS = {}


def _gguf_lib(lib_path):
    key = str(lib_path)
    if key in _GGUF_FNS:
        return _GGUF_FNS[key]
    lib = ctypes.CDLL(key)
    V, I64, SZ, S = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t, ctypes.c_char_p
    sig = {
        "gguf_init_from_file": (V, [S, _GGUFInitParams]), "gguf_free": (None, [V]), "ggml_free": (None, [V]),
        "gguf_get_version": (ctypes.c_uint32, [V]), "gguf_get_alignment": (SZ, [V]),
        "gguf_get_data_offset": (SZ, [V]), "gguf_get_n_kv": (I64, [V]), "gguf_get_key": (S, [V, I64]),
        "gguf_get_kv_type": (ctypes.c_int, [V, I64]), "gguf_get_arr_type": (ctypes.c_int, [V, I64]),
        "gguf_get_arr_n": (SZ, [V, I64]), "gguf_get_arr_data": (V, [V, I64]),
        "gguf_get_arr_str": (V, [V, I64, SZ]), "gguf_get_val_data": (V, [V, I64]),
        "gguf_get_val_str": (V, [V, I64]), "gguf_get_n_tensors": (I64, [V]),
        "gguf_get_tensor_name": (S, [V, I64]), "gguf_get_tensor_offset": (SZ, [V, I64]),
        "gguf_get_tensor_type": (ctypes.c_int, [V, I64]), "ggml_get_tensor": (V, [V, S]),
        "ggml_nbytes": (SZ, [V]), "ggml_get_data": (V, [V]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    _GGUF_FNS[key] = lib
    return lib


class _GGMLTensorHead(ctypes.Structure):
    # struct ggml_tensor: type, buffer, ne[4], ... (ggml.h)
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4)]


_SCALAR_SIZE = {"UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "UINT32": 4, "INT32": 4, "FLOAT32": 4, "BOOL": 1,
                "UINT64": 8, "INT64": 8, "FLOAT64": 8}
_SCALAR_FMT = {"UINT8": "<B", "INT8": "<b", "UINT16": "<H", "INT16": "<h", "UINT32": "<I", "INT32": "<i",
               "BOOL": "<B", "UINT64": "<Q", "INT64": "<q"}


def _c_str(ptr) -> str:
    """A NUL-terminated C string. ggml does not check UTF-8; bytes that are not UTF-8 become U+FFFD
    (the parse JSON holds text; no vector compares such a string)."""
    return ctypes.string_at(ptr).decode("utf-8", errors="replace")


def _scalar_from(raw: bytes, vt: str):
    from .suites.gguf import scalar_json
    if vt in ("FLOAT32", "FLOAT64"):
        return raw.hex()
    return scalar_json(vt, struct.unpack(_SCALAR_FMT[vt], raw)[0])


def libggml_gguf_parse(lib_path, path) -> dict:
    """The parse JSON of ``path`` as libggml's gguf_init_from_file sees it; raises GGSpecError when
    ggml rejects the file."""
    from .suites.gguf import VALUE_TYPES
    lib = _gguf_lib(lib_path)
    gctx = ctypes.c_void_p()
    ctx = lib.gguf_init_from_file(str(path).encode(), _GGUFInitParams(False, ctypes.pointer(gctx)))
    if not ctx:
        raise GGSpecError("ggml's gguf_init_from_file rejected the file")
    try:
        kv = []
        for i in range(lib.gguf_get_n_kv(ctx)):
            key = lib.gguf_get_key(ctx, i).decode("utf-8", errors="replace")
            vt = VALUE_TYPES[lib.gguf_get_kv_type(ctx, i)]
            if vt == "STRING":
                kv.append({"key": key, "type": vt, "value": _c_str(lib.gguf_get_val_str(ctx, i))})
            elif vt == "ARRAY":
                st = VALUE_TYPES[lib.gguf_get_arr_type(ctx, i)]
                n = lib.gguf_get_arr_n(ctx, i)
                if st == "STRING":
                    items = [_c_str(lib.gguf_get_arr_str(ctx, i, j)) for j in range(n)]
                else:
                    size = _SCALAR_SIZE[st]
                    buf = ctypes.string_at(lib.gguf_get_arr_data(ctx, i), n * size) if n else b""
                    items = [_scalar_from(buf[j * size:(j + 1) * size], st) for j in range(n)]
                kv.append({"key": key, "type": "ARRAY", "item_type": st, "value": items})
            else:
                raw = ctypes.string_at(lib.gguf_get_val_data(ctx, i), _SCALAR_SIZE[vt])
                kv.append({"key": key, "type": vt, "value": _scalar_from(raw, vt)})
        tensors = []
        for i in range(lib.gguf_get_n_tensors(ctx)):
            name = lib.gguf_get_tensor_name(ctx, i)
            t = lib.ggml_get_tensor(gctx, name)
            ne = list(ctypes.cast(t, ctypes.POINTER(_GGMLTensorHead)).contents.ne)
            nb = lib.ggml_nbytes(t)
            data = ctypes.string_at(lib.ggml_get_data(t), nb) if nb else b""   # read by gguf_init_from_file
            tensors.append({"name": name.decode("utf-8", errors="replace"), "type": lib.gguf_get_tensor_type(ctx, i), "ne": ne,
                            "offset": lib.gguf_get_tensor_offset(ctx, i), "data": data.hex()})
        return {"version": lib.gguf_get_version(ctx), "alignment": lib.gguf_get_alignment(ctx),
                "data_offset": lib.gguf_get_data_offset(ctx), "kv": kv, "tensors": tensors}
    finally:
        lib.gguf_free(ctx)
        if gctx:
            lib.ggml_free(gctx)


# ------------------------------------------------------------------------------------------------
# the gguf suite's write op: ggml's own GGUF writer (gguf.h), and the reference's

class _GGMLInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


_GGUF_W_FNS = {}
_ARR_ITEM = {"UINT8": ("<B", 1), "INT8": ("<b", 1), "UINT16": ("<H", 2), "INT16": ("<h", 2), "UINT32": ("<I", 4),
             "INT32": ("<i", 4), "FLOAT32": (None, 4), "BOOL": ("<B", 1), "UINT64": ("<Q", 8), "INT64": ("<q", 8),
             "FLOAT64": (None, 8)}


def _gguf_write_lib(lib_path):
    key = str(lib_path)
    if key in _GGUF_W_FNS:
        return _GGUF_W_FNS[key]
    lib = ctypes.CDLL(key)
    V, S, SZ, I64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int64
    sig = {
        "gguf_init_empty": (V, []), "gguf_init_from_file": (V, [S, _GGUFInitParams]), "gguf_free": (None, [V]),
        "gguf_remove_key": (I64, [V, S]), "gguf_get_n_kv": (I64, [V]), "gguf_get_alignment": (SZ, [V]),
        "gguf_set_val_u8": (None, [V, S, ctypes.c_uint8]), "gguf_set_val_i8": (None, [V, S, ctypes.c_int8]),
        "gguf_set_val_u16": (None, [V, S, ctypes.c_uint16]), "gguf_set_val_i16": (None, [V, S, ctypes.c_int16]),
        "gguf_set_val_u32": (None, [V, S, ctypes.c_uint32]), "gguf_set_val_i32": (None, [V, S, ctypes.c_int32]),
        "gguf_set_val_f32": (None, [V, S, ctypes.c_float]), "gguf_set_val_u64": (None, [V, S, ctypes.c_uint64]),
        "gguf_set_val_i64": (None, [V, S, ctypes.c_int64]), "gguf_set_val_f64": (None, [V, S, ctypes.c_double]),
        "gguf_set_val_bool": (None, [V, S, ctypes.c_bool]), "gguf_set_val_str": (None, [V, S, S]),
        "gguf_set_arr_data": (None, [V, S, ctypes.c_int, V, SZ]),
        "gguf_set_arr_str": (None, [V, S, ctypes.POINTER(ctypes.c_char_p), SZ]),
        "gguf_add_tensor": (None, [V, V]), "gguf_set_tensor_data": (None, [V, S, V]),
        "gguf_write_to_file": (ctypes.c_bool, [V, S, ctypes.c_bool]), "gguf_get_meta_size": (SZ, [V]),
        "gguf_get_meta_data": (None, [V, V]),
        "ggml_init": (V, [_GGMLInitParams]), "ggml_free": (None, [V]),
        "ggml_new_tensor": (V, [V, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]),
        "ggml_set_name": (V, [V, S]), "ggml_nbytes": (SZ, [V]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    _GGUF_W_FNS[key] = lib
    return lib


def _alignment_of(description) -> int:
    for kv in description.get("kv", []):
        if kv["key"] == "general.alignment":
            return int(kv["value"])
    return 32


def _bootstrap_alignment(al: int) -> bytes:
    """A GGUF v3 file holding only ``general.alignment = al`` (read by gguf_init_from_file to get a
    context whose writer pads to ``al``; the key is then removed, see libggml_gguf_write)."""
    key = b"general.alignment"
    return (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<II", 4, al))


def libggml_gguf_write(lib_path, description, tmpdir=None) -> bytes:
    """The file ggml's GGUF writer makes of a write description (conformance/suites/gguf.py):
    ``gguf_init_empty``, ``gguf_set_val_*`` / ``gguf_set_arr_data`` / ``gguf_set_arr_str`` for each
    key in order, ``ggml_new_tensor`` + ``ggml_set_name`` + ``gguf_add_tensor`` +
    ``gguf_set_tensor_data`` for each tensor in order, then ``gguf_write_to_file``.

    ggml's writer pads to the context's alignment, which ``gguf_set_val_u32("general.alignment")``
    does not change (it stays 32 in a ``gguf_init_empty`` context). When the description sets
    another alignment, the context comes from ``gguf_init_from_file`` of a file holding only that key
    (so ggml's alignment is the key's), and the key is removed before the description's keys are set."""
    import os
    import tempfile
    lib = _gguf_write_lib(lib_path)
    kvs, tensors = description.get("kv", []), description.get("tensors", [])
    al = _alignment_of(description)
    keep = []                                    # every buffer ggml points into, alive until the write
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        if al == 32:
            ctx = lib.gguf_init_empty()
        else:
            boot = os.path.join(d, "alignment.gguf")
            with open(boot, "wb") as f:
                f.write(_bootstrap_alignment(al))
            ctx = lib.gguf_init_from_file(boot.encode(), _GGUFInitParams(True, None))
            if not ctx:
                raise GGSpecError(f"ggml rejected a file holding only general.alignment = {al}")
            lib.gguf_remove_key(ctx, b"general.alignment")
        if not ctx:
            raise GGSpecError("gguf_init_empty failed")
        gctx = None
        try:
            if lib.gguf_get_alignment(ctx) != al or lib.gguf_get_n_kv(ctx) != 0:
                raise GGSpecError(f"ggml's context has alignment {lib.gguf_get_alignment(ctx)}, expected {al}")
            from .suites.gguf import VALUE_TYPES
            for kv in kvs:
                k, vt, v = kv["key"].encode("utf-8"), kv["type"], kv["value"]
                if b"\0" in k:
                    raise GGSpecError(f"key {kv['key']!r}: ggml's keys are C strings (no NUL)")
                if vt == "STRING":
                    lib.gguf_set_val_str(ctx, k, v.encode("utf-8"))
                elif vt == "ARRAY":
                    it = kv["item_type"]
                    if it == "STRING":
                        items = [x.encode("utf-8") for x in v]
                        arr = (ctypes.c_char_p * max(1, len(items)))(*items)
                        keep.append(arr)
                        lib.gguf_set_arr_str(ctx, k, arr, len(items))
                    elif it in _ARR_ITEM:
                        fmt, size = _ARR_ITEM[it]
                        raw = b"".join(bytes.fromhex(x) if fmt is None else struct.pack(fmt, int(x)) for x in v)
                        buf = ctypes.create_string_buffer(raw, max(1, len(raw)))
                        keep.append(buf)
                        lib.gguf_set_arr_data(ctx, k, VALUE_TYPES.index(it), buf, len(v))
                    else:
                        raise GGSpecError(f"key {kv['key']!r}: ggml cannot write arrays of {it}")
                elif vt in ("FLOAT32", "FLOAT64"):     # the bits as given: a ctypes float, not a Python one
                    x = (ctypes.c_float if vt == "FLOAT32" else ctypes.c_double).from_buffer_copy(bytes.fromhex(v))
                    (lib.gguf_set_val_f32 if vt == "FLOAT32" else lib.gguf_set_val_f64)(ctx, k, x)
                elif vt == "BOOL":
                    lib.gguf_set_val_bool(ctx, k, bool(v))
                else:
                    fn = {"UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32",
                          "INT32": "i32", "UINT64": "u64", "INT64": "i64"}[vt]
                    getattr(lib, f"gguf_set_val_{fn}")(ctx, k, int(v))
            if tensors:
                gctx = lib.ggml_init(_GGMLInitParams(1 << 20, None, True))
            for t in tensors:
                ne = [int(x) for x in t["ne"]]
                ne4 = (ctypes.c_int64 * 4)(*(ne + [1] * (4 - len(ne))))
                tp = lib.ggml_new_tensor(gctx, int(t["type"]), max(1, len(ne)), ne4)
                name = t["name"].encode("utf-8")
                if len(name) >= 64:
                    raise GGSpecError(f"tensor name {t['name']!r}: ggml's names have at most 63 bytes")
                lib.ggml_set_name(tp, name)
                data = bytes.fromhex(t["data"])
                if len(data) != lib.ggml_nbytes(tp):
                    raise GGSpecError(f"tensor {t['name']!r}: {len(data)} bytes of data, ggml wants {lib.ggml_nbytes(tp)}")
                buf = ctypes.create_string_buffer(data, max(1, len(data)))
                keep.append(buf)
                lib.gguf_add_tensor(ctx, tp)
                lib.gguf_set_tensor_data(ctx, name, buf)
            out = os.path.join(d, "out.gguf")
            if not lib.gguf_write_to_file(ctx, out.encode(), False):
                raise GGSpecError("gguf_write_to_file failed")
            with open(out, "rb") as f:
                data = f.read()
            meta = ctypes.create_string_buffer(lib.gguf_get_meta_size(ctx))
            lib.gguf_get_meta_data(ctx, meta)
            if data[:len(meta.raw)] != meta.raw:
                raise GGSpecError("gguf_get_meta_data differs from the start of gguf_write_to_file's file")
            return data
        finally:
            lib.gguf_free(ctx)
            if gctx:
                lib.ggml_free(gctx)


def reference_gguf_write(G, description) -> bytes:
    """A write description (conformance/suites/gguf.py) through ``G`` (ggspec.reference.gguf)'s
    ``writer_from`` (GGUFWriter). ``ne`` is given as ggml's (missing dimensions are 1): the writer gets
    the dimensions up to the last one that is not 1 (at least one), which is how ggml writes a tensor's
    shape (``ggml_n_dims``; ggml also drops trailing zeros, a quirk the vectors avoid: docs/gguf.md)."""
    VT = G.ValueType
    meta = {}
    for kv in description.get("kv", []):
        vt = VT[kv["type"]]
        if vt == VT.ARRAY:
            it = VT[kv["item_type"]]
            meta[kv["key"]] = G.Value([_ref_scalar(it, x) for x in kv["value"]], vt, it)
        else:
            meta[kv["key"]] = G.Value(_ref_scalar(vt, kv["value"]), vt)
    tensors = []
    for t in description.get("tensors", []):
        tensors.append((t["name"], (int(t["type"]), ggml_ne(t["ne"]), bytes.fromhex(t["data"]))))
    return G.writer_from(meta, tensors).to_bytes()


def ggml_ne(ne) -> list:
    """A description's ``ne`` as ggml writes it: up to the last dimension that is not 1, at least one."""
    ne = [int(x) for x in ne]
    n = max([i + 1 for i, x in enumerate(ne) if x != 1] + [1])
    return (ne + [1] * n)[:n]


def _py_scalar(vt: str, v):
    """A description value as a plain Python value (floats from their bits)."""
    if vt in ("FLOAT32", "FLOAT64"):
        return struct.unpack("<f" if vt == "FLOAT32" else "<d", bytes.fromhex(v))[0]
    if vt == "BOOL":
        return bool(v)
    return v if vt == "STRING" else int(v)


def get_type_of(type_id: int):
    from ..reference.types import get_type
    return get_type(type_id)


def _ref_scalar(vt, v):
    if vt.name in ("FLOAT32", "FLOAT64"):       # a numpy scalar: the bits as given (a Python float would
        return np.frombuffer(bytes.fromhex(v), "<f4" if vt.name == "FLOAT32" else "<f8")[0]  # quiet an sNaN)
    if vt.name == "BOOL":
        return bool(v)
    if vt.name == "STRING":
        return v
    return int(v)


class GGUFPyImpl:
    """gguf-py's numpy quantizers (``gguf.quants``); it takes no importance matrix."""

    name = "gguf-py"
    gguf_extensions = ("big-endian",)    # GGUFReader reads big-endian files, not version 1

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

    def read_gguf(self, path):
        """gguf-py's GGUFReader, its fields and tensors as the parse JSON."""
        r = self._gguf.GGUFReader(path)
        return ggufpy_parse(r)

    def write_gguf(self, description):
        """gguf-py's GGUFWriter: ``add_key_value`` per key (``add_custom_alignment`` for
        general.alignment, which is how gguf-py sets the alignment it pads to), ``add_tensor`` with the
        raw bytes as uint8 and ``raw_dtype``, then header, KV data and tensors to a file. GGUFWriter
        adds general.architecture by itself; the adapter removes it so the keys are the description's.
        gguf-py writes n_dims = the length of the shape it is given: the adapter gives ggml's
        (``ggml_ne``), as for the reference."""
        import logging
        import os
        import tempfile
        g = self._gguf
        VT = g.GGUFValueType
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "w.gguf")
            w = g.GGUFWriter(path, "x")
            w.kv_data[0].clear()
            for kv in description.get("kv", []):
                vt = kv["type"]
                if kv["key"] == "general.alignment" and vt == "UINT32":
                    w.add_custom_alignment(int(kv["value"]))
                elif vt == "ARRAY":
                    it = kv["item_type"]
                    w.add_key_value(kv["key"], [_py_scalar(it, x) for x in kv["value"]], VT.ARRAY, VT[it])
                else:
                    w.add_key_value(kv["key"], _py_scalar(vt, kv["value"]), VT[vt])
            for t in description.get("tensors", []):
                tt = get_type_of(int(t["type"]))
                raw = np.frombuffer(bytes.fromhex(t["data"]), np.uint8)
                byte_shape = list(reversed(ggml_ne(t["ne"])))
                byte_shape[-1] = byte_shape[-1] // tt.block_size * tt.type_size
                w.add_tensor(t["name"], raw.reshape(byte_shape), raw_shape=byte_shape,
                             raw_dtype=g.GGMLQuantizationType(tt.id))
            log = logging.getLogger("gguf.gguf_writer")
            level, log.level = log.level, logging.ERROR
            try:
                w.write_header_to_file()
                w.write_kv_data_to_file()
                w.write_tensors_to_file()
                w.close()
            finally:
                log.level = level
            with open(path, "rb") as f:
                return f.read()


def _np_le(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder("<"))


def ggufpy_parse(r) -> dict:
    from .suites.gguf import scalar_json

    def scalar(vt: str, part):
        a = _np_le(part).reshape(-1)
        if vt in ("FLOAT32", "FLOAT64"):
            return a[:1].tobytes().hex()
        if vt == "STRING":
            return bytes(part).decode("utf-8")
        return scalar_json(vt, a[0].item())
    kv, version = [], None
    for name, f in r.fields.items():
        if name == "GGUF.version":
            version = int(f.parts[-1][0])
            continue
        if name.startswith("GGUF."):
            continue
        vt = f.types[0].name
        if vt == "ARRAY":
            st = f.types[-1].name if len(f.types) > 1 else "UINT8"
            if len(f.types) > 1 and f.types[1].name == "ARRAY":
                st = "ARRAY"       # gguf-py flattens nested arrays: no structure to return
                items = [scalar(f.types[-1].name, f.parts[i]) for i in f.data]
            elif len(f.types) == 1:  # an empty array: gguf-py keeps no item type
                st = VALUE_TYPES_BY_ID[int(f.parts[3][0])]
                items = []
            else:
                items = [scalar(st, f.parts[i]) for i in f.data]
            kv.append({"key": name, "type": "ARRAY", "item_type": st, "value": items})
        else:
            kv.append({"key": name, "type": vt, "value": scalar(vt, f.parts[f.data[0]])})
    tensors = [{"name": t.name, "type": int(t.tensor_type), "ne": [int(x) for x in t.shape],
                "offset": int(t.data_offset) - int(r.data_offset)} for t in r.tensors]
    # without tensors gguf-py's data_offset is the end of the header padded to the alignment, a position
    # nothing is read from (ggml's is the end of the header): report "no data section"
    return {"version": version, "alignment": int(r.alignment),
            "data_offset": int(r.data_offset) if tensors else None, "kv": kv, "tensors": tensors}


VALUE_TYPES_BY_ID = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
                     "UINT64", "INT64", "FLOAT64")


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


class MLXFastImpl:
    """MLX's fused kernels as mlx-lm uses them: ``mx.fast.rope`` (the rope suite). It has no ggml codec.
    RoPE: ``traditional=True`` is ggml's normal mode (adjacent pairs), ``False`` NEOX; positions go in
    as a per-batch ``offset`` vector; frequency factors as mlx-lm's llama3 RoPE passes them
    (``freqs = base ** (2i / n_dims) * factor_i``, ``base=None``). YaRN (``ext_factor`` != 0) and an
    ``attn_factor`` != 1 (mlx-lm scales the input itself there) are not in ``mx.fast.rope``: those
    cases are unsupported. A GPU/SIMD implementation with its own sin/cos: judged within the vectors'
    native tolerance (``simd``)."""

    name = "mlx-fast"
    simd = True

    def __init__(self):
        try:
            import mlx.core as mx
        except ImportError as e:
            raise ImplementationUnavailable(f"mlx is not installed (pip install 'mlx[cpu]==0.32.4'): {e}") from e
        self._mx = mx

    def supports(self, op, type):
        return False

    def dequantize(self, type, raw, n):
        raise UnsupportedTypeError("mx.fast has no ggml dequantizer")

    def quantize(self, type, x, imatrix):
        raise UnsupportedTypeError("mx.fast has no ggml quantizer")

    def rope(self, x, pos, params):
        mx = self._mx
        p = params
        if p["ext_factor"] != 0.0 or p["attn_factor"] != 1.0:
            raise UnsupportedTypeError("mx.fast.rope has no YaRN ramp / attention factor")
        x = np.asarray(x)
        n_tok, n_head, hd = x.shape
        a = mx.array(x.reshape(n_tok, n_head, 1, hd))
        off = mx.array(np.asarray(pos, np.int32))
        ff = p.get("freq_factors")
        kw = dict(traditional=(p["mode"] == "normal"), scale=float(p["freq_scale"]), offset=off)
        if ff is not None:
            n2 = p["n_dims"] // 2
            base = np.float32(p["freq_base"]) ** (np.arange(0, p["n_dims"], 2, dtype=np.float32) / np.float32(p["n_dims"]))
            y = mx.fast.rope(a, p["n_dims"], base=None, freqs=mx.array((base * np.asarray(ff[:n2], np.float32))
                                                                         .astype(np.float32)), **kw)
        else:
            y = mx.fast.rope(a, p["n_dims"], base=float(p["freq_base"]), **kw)
        return np.array(y).reshape(x.shape).astype(x.dtype)


# ------------------------------------------------------------------------------------------------

BUILTIN: dict[str, Callable[[], object]] = {
    "reference": ReferenceImpl,
    "numpy": lambda: AccelImpl("numpy"),
    "mlx": lambda: AccelImpl("mlx"),
    "libggml": LibGGMLImpl,
    "gguf-py": GGUFPyImpl,
    "mlx-gguf": MLXGGUFImpl,
    "mlx-fast": MLXFastImpl,
}
DEFAULT_ORDER = ("reference", "numpy", "mlx", "libggml", "gguf-py", "mlx-gguf")
# not in a plain `ggspec conform` (ask with --impl): mlx-fast computes RoPE angles its own way, a known
# and acceptable float32 difference in every case (docs/peers.md), which would only flood the report


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
