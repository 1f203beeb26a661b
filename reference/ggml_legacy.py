"""Legacy llama.cpp model files (March-August 2023): ``ggml``, ``ggmf`` v1 and ``ggjt`` v1/v2/v3.

    m = read("llama-7b.ggmlv3.q4_0.bin")       # memory-mapped, lazy
    m.format, m.version, m.hparams, m.vocab, m.tensors["layers.0.attention.wq.weight"].dequantize()
    convert_to_gguf(m, "out.gguf", n_head_kv=None, eps=5e-6, context_length=2048)

Container (every number little-endian u32 unless said otherwise)

| part              | field                                           | notes                                  |
|-------------------|-------------------------------------------------|----------------------------------------|
| magic             | u32: 0x67676d6c 'ggml', 0x67676d66 'ggmf', 0x67676a74 'ggjt' | bytes on disk: lmgg / fmgg / tjgg |
| version           | u32 (not in 'ggml')                             | ggmf: 1; ggjt: 1, 2, 3                 |
| hyperparameters   | n_vocab, n_embd, n_mult, n_head, n_layer, n_rot, ftype | ftype: llama_ftype of the file  |
| vocabulary        | n_vocab x (u32 len, len bytes[, f32 score])     | no score in 'ggml'                     |
| tensors, to EOF   | u32 n_dims, u32 name_len, u32 type, u32 ne[n_dims], name | then the data               |
|                   | ggjt: zero padding to a multiple of 32 bytes (from file start) before the data |          |

``type`` is the ggml_type id of the day. Ids 0..3 (F32, F16, Q4_0, Q4_1) never moved; 4 Q4_2 and 5 Q4_3
existed in April 2023; 6 Q5_0, 7 Q5_1, 8 Q8_0 from late April; 10..14 Q2_K..Q6_K from June 2023 (ggjt
v3 files). ``shape`` is ``ne`` as stored (ne0 = row length), like GGUF.

Block layouts by generation (``LAYOUTS``; commits are llama.cpp's, see docs/formats/ggml-legacy.md)

generation 1 -- ggml, ggmf v1, ggjt v1 (before #1405, 2023-05-12): nibbles *interleaved*: byte j holds
elements 2j (low nibble) and 2j+1 (high nibble)

| type | bytes/block | fields                                   | y                         |
|------|-------------|------------------------------------------|---------------------------|
| Q4_0 | 20 / 32     | f32 d, u8 qs[16]                         | (q - 8) * d               |
| Q4_1 | 24 / 32     | f32 d, f32 m, u8 qs[16]                  | q * d + m                 |
| Q4_2 | 10 / 16     | f16 d, u8 qs[8]                          | (q - 8) * d               |
| Q4_3 | 12 / 16     | f16 d, f16 m, u8 qs[8]                   | q * d + m                 |
| Q5_0 | 22 / 32     | f16 d, u8 qh[4], u8 qs[16]               | (q - 16) * d, bit l of qh (LE u32) is bit 4 of element l |
| Q5_1 | 24 / 32     | f16 d, f16 m, u8 qh[4], u8 qs[16]        | q * d + m                 |
| Q8_0 | 36 / 32     | f32 d, i8 qs[32]                         | q * d                     |

generation 2 -- ggjt v2 (#1405 "remove bit shuffling"): nibbles *split* like today: byte j holds
elements j (low) and j+16 (high); Q4_2/Q4_3 gone. Q4_0 20 B (f32 d), Q4_1 24 B (f32 d, m), Q8_0 36 B
(f32 d); Q5_0/Q5_1 are today's layouts.

generation 3 -- ggjt v3 (#1508 "use F16 instead of F32 in Q4_0, Q4_1, Q8_0", 2023-05-19): every block
is today's (Q4_0 18 B, Q4_1 20 B, Q8_0 34 B); k-quants (#1684, 2023-06-05) with today's structs.

All products are float32 (``q`` converted exactly, one rounding); ``q*d + m`` rounds the product, then
the sum (as the scalar C code compiled without FMA contraction; see the doc for this caveat).

Not supported: the 2023-03-10 initial release's Q4_0 rows ([all d][all qs] per row; changed the next
day by 007a8f6 -- unversioned 'ggml' files cannot tell the two apart), and multi-part files (13B+ split
into model.bin, model.bin.1, ...): each part parses, but holds slices of tensors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import FormatError, GGSpecError, ShapeError, UnsupportedTypeError
from .fp import f16_to_f32

MAGIC_GGML = 0x67676D6C
MAGIC_GGMF = 0x67676D66
MAGIC_GGJT = 0x67676A74
MAGICS = {MAGIC_GGML: "ggml", MAGIC_GGMF: "ggmf", MAGIC_GGJT: "ggjt"}
MAX_DIMS = 4
ALIGNMENT = 32                    # ggjt: tensor data starts at a multiple of 32 bytes from the file start
f32 = np.float32

# llama.h's enum llama_ftype as of ggjt v3 (the hyperparameter ``ftype``)
FTYPES = {0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 4: "MOSTLY_Q4_1_SOME_F16",
          5: "MOSTLY_Q4_2", 6: "MOSTLY_Q4_3", 7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1",
          10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L",
          14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K"}


# --------------------------------------------------------------------------------------------------
# Historical block layouts (vectorised over blocks: every operation is element-wise float32)
# --------------------------------------------------------------------------------------------------

def _blocks(raw, type_size: int) -> np.ndarray:
    b = np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)
    return b.reshape(-1, type_size)


def _nibbles_interleaved(qs: np.ndarray) -> np.ndarray:
    """Generation 1: byte j -> elements 2j (low nibble), 2j+1 (high nibble)."""
    out = np.empty((qs.shape[0], qs.shape[1] * 2), dtype=np.int32)
    out[:, 0::2] = qs & 0x0F
    out[:, 1::2] = qs >> 4
    return out


def _nibbles_split(qs: np.ndarray) -> np.ndarray:
    """Generation 2 and today: byte j -> elements j (low nibble), j + n/2 (high nibble)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _f32_field(b: np.ndarray, off: int) -> np.ndarray:
    return np.ascontiguousarray(b[:, off:off + 4]).view("<f4").reshape(-1, 1).astype(f32)


def _f16_field(b: np.ndarray, off: int) -> np.ndarray:
    return f16_to_f32(np.ascontiguousarray(b[:, off:off + 2]).view("<u2").reshape(-1)).reshape(-1, 1).astype(f32)


def _qh_bits(b: np.ndarray, off: int) -> np.ndarray:
    """qh read with memcpy into a (little-endian) uint32: bit l -> element l."""
    qh = np.ascontiguousarray(b[:, off:off + 4]).view("<u4").reshape(-1, 1)
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)


def deq_q4_0_g1(raw) -> np.ndarray:
    b = _blocks(raw, 20)
    d = _f32_field(b, 0)
    q = _nibbles_interleaved(b[:, 4:20]) - 8
    return (q.astype(f32) * d).reshape(-1)


def deq_q4_0_g2(raw) -> np.ndarray:
    b = _blocks(raw, 20)
    d = _f32_field(b, 0)
    q = _nibbles_split(b[:, 4:20]) - 8
    return (q.astype(f32) * d).reshape(-1)


def deq_q4_1_g1(raw) -> np.ndarray:
    b = _blocks(raw, 24)
    d, m = _f32_field(b, 0), _f32_field(b, 4)
    q = _nibbles_interleaved(b[:, 8:24])
    return (q.astype(f32) * d + m).reshape(-1)     # two roundings: product, then sum


def deq_q4_1_g2(raw) -> np.ndarray:
    b = _blocks(raw, 24)
    d, m = _f32_field(b, 0), _f32_field(b, 4)
    q = _nibbles_split(b[:, 8:24])
    return (q.astype(f32) * d + m).reshape(-1)


def deq_q4_2_g1(raw) -> np.ndarray:
    b = _blocks(raw, 10)
    d = _f16_field(b, 0)
    q = _nibbles_interleaved(b[:, 2:10]) - 8
    return (q.astype(f32) * d).reshape(-1)


def deq_q4_3_g1(raw) -> np.ndarray:
    b = _blocks(raw, 12)
    d, m = _f16_field(b, 0), _f16_field(b, 2)
    q = _nibbles_interleaved(b[:, 4:12])
    return (q.astype(f32) * d + m).reshape(-1)


def deq_q5_0_g1(raw) -> np.ndarray:
    b = _blocks(raw, 22)
    d = _f16_field(b, 0)
    q = (_nibbles_interleaved(b[:, 6:22]) | (_qh_bits(b, 2) << 4)) - 16
    return (q.astype(f32) * d).reshape(-1)


def deq_q5_1_g1(raw) -> np.ndarray:
    b = _blocks(raw, 24)
    d, m = _f16_field(b, 0), _f16_field(b, 2)
    q = _nibbles_interleaved(b[:, 8:24]) | (_qh_bits(b, 4) << 4)
    return (q.astype(f32) * d + m).reshape(-1)


def deq_q8_0_f32(raw) -> np.ndarray:
    b = _blocks(raw, 36)
    d = _f32_field(b, 0)
    q = b[:, 4:36].view(np.int8).astype(f32)
    return (q * d).reshape(-1)


@dataclass(frozen=True)
class Layout:
    """One historical block layout: ``today`` names the current ggml type when the bytes are identical."""
    type_id: int
    name: str
    block_size: int
    type_size: int
    generation: str
    dequantize_fn: Optional[Callable] = None
    today: Optional[str] = None
    note: str = ""

    def dequantize(self, raw, n: int) -> np.ndarray:
        if self.today is not None:
            from . import dequantize
            return dequantize(self.today, raw, n)
        need = n // self.block_size * self.type_size
        with np.errstate(all="ignore"):      # NaN/Inf scales are valid input: C gives NaN/Inf silently
            return self.dequantize_fn(memoryview(raw).cast("B")[:need])


def _today(type_id: int, gen: str) -> Layout:
    from .types import get_type
    t = get_type(type_id)
    return Layout(type_id, t.name, t.block_size, t.type_size, gen, today=t.name)


_G1 = "ggml/ggmf/ggjt v1"
_G2 = "ggjt v2"
_G3 = "ggjt v3"

LAYOUTS: dict[int, dict[int, Layout]] = {
    1: {0: _today(0, _G1), 1: _today(1, _G1),
        2: Layout(2, "Q4_0", 32, 20, _G1, deq_q4_0_g1, note="f32 d, interleaved nibbles"),
        3: Layout(3, "Q4_1", 32, 24, _G1, deq_q4_1_g1, note="f32 d and m, interleaved nibbles"),
        4: Layout(4, "Q4_2", 16, 10, _G1, deq_q4_2_g1, note="f16 d, 16 weights, interleaved (April 2023)"),
        5: Layout(5, "Q4_3", 16, 12, _G1, deq_q4_3_g1, note="f16 d and m, 16 weights, interleaved (April 2023)"),
        6: Layout(6, "Q5_0", 32, 22, _G1, deq_q5_0_g1, note="interleaved nibbles"),
        7: Layout(7, "Q5_1", 32, 24, _G1, deq_q5_1_g1, note="interleaved nibbles"),
        8: Layout(8, "Q8_0", 32, 36, _G1, deq_q8_0_f32, note="f32 d")},
    2: {0: _today(0, _G2), 1: _today(1, _G2),
        2: Layout(2, "Q4_0", 32, 20, _G2, deq_q4_0_g2, note="f32 d, split nibbles"),
        3: Layout(3, "Q4_1", 32, 24, _G2, deq_q4_1_g2, note="f32 d and m, split nibbles"),
        6: _today(6, _G2), 7: _today(7, _G2),
        8: Layout(8, "Q8_0", 32, 36, _G2, deq_q8_0_f32, note="f32 d")},
    3: {i: _today(i, _G3) for i in (0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14)},
}


def generation(fmt: str, version: int) -> int:
    """Which block-layout generation a (format, version) uses."""
    if fmt == "ggjt" and version >= 2:
        return version
    return 1


# --------------------------------------------------------------------------------------------------
# The model file
# --------------------------------------------------------------------------------------------------

@dataclass
class Hyperparameters:
    n_vocab: int
    n_embd: int
    n_mult: int
    n_head: int
    n_layer: int
    n_rot: int
    ftype: int

    @property
    def ftype_name(self) -> str:
        return FTYPES.get(self.ftype, f"unknown ({self.ftype})")

    def n_ff(self) -> int:
        """LLaMA's feed-forward size from n_mult, as llama.cpp computed it (before GQA/ffn_dim_multiplier)."""
        return ((2 * (4 * self.n_embd) // 3 + self.n_mult - 1) // self.n_mult) * self.n_mult


class LegacyTensor:
    __slots__ = ("name", "layout", "shape", "offset", "nbytes", "header_offset", "_model")

    def __init__(self, model, name, layout, shape, offset, nbytes, header_offset):
        self._model = model
        self.name = name
        self.layout = layout
        self.shape = shape
        self.offset = offset
        self.nbytes = nbytes
        self.header_offset = header_offset

    @property
    def type_id(self) -> int:
        return self.layout.type_id

    @property
    def type(self):
        """Today's GGMLType when the bytes are today's layout, else the historical Layout."""
        if self.layout.today is not None:
            from .types import get_type
            return get_type(self.layout.today)
        return self.layout

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
        return self._model._buf[self.offset:self.offset + self.nbytes]

    def dequantize(self) -> np.ndarray:
        out = self.layout.dequantize(self.raw, self.n_elements)
        try:
            return out.reshape(self.numpy_shape)
        except ValueError:
            raise ShapeError(f"tensor {self.name!r}: numpy cannot represent the shape {self.shape}") from None

    def __repr__(self) -> str:
        return (f"LegacyTensor({self.name!r}, {self.layout.name}[{self.layout.generation}], shape={self.shape}, "
                f"offset={self.offset}, nbytes={self.nbytes})")


class LegacyModel:
    def __init__(self):
        self.path: Optional[Path] = None
        self.format = ""
        self.version = 0
        self.hparams: Optional[Hyperparameters] = None
        self.vocab: list[tuple[bytes, float]] = []
        self.vocab_offset = 0
        self.tensors: dict[str, LegacyTensor] = {}
        self.file_size = 0
        self._buf = None

    @property
    def generation(self) -> int:
        return generation(self.format, self.version)

    @property
    def has_scores(self) -> bool:
        return self.format != "ggml"

    @property
    def aligned(self) -> bool:
        return self.format == "ggjt"

    @property
    def metadata(self) -> dict:
        hp = self.hparams
        return {"format": self.format, "version": self.version, **hp.__dict__, "ftype_name": hp.ftype_name}

    @property
    def n_ff(self) -> int:
        """From the first layer's w1 (ne1), as the GGUF converter does; else from n_mult."""
        t = self.tensors.get("layers.0.feed_forward.w1.weight")
        return t.shape[1] if t is not None and len(t.shape) > 1 else self.hparams.n_ff()

    def __repr__(self) -> str:
        return (f"LegacyModel({self.format} v{self.version}, {self.hparams.ftype_name}, n_vocab={self.hparams.n_vocab}, "
                f"tensors={len(self.tensors)})")


def parse(buf, *, path=None) -> LegacyModel:
    """Parse a legacy model from bytes-like ``buf``. Raises FormatError."""
    m = LegacyModel()
    m.path = Path(path) if path is not None else None
    m._buf = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    size = int(m._buf.nbytes)
    m.file_size = size
    pos = 0

    def u32(what: str) -> int:
        nonlocal pos
        if size - pos < 4:
            raise FormatError(f"the file ends inside {what} (truncated file)", pos)
        v = struct.unpack_from("<I", buf, pos)[0]
        pos += 4
        return v

    magic = u32("the magic")
    if magic not in MAGICS:
        if bytes(buf[0:4]) == b"GGUF":
            raise FormatError("this is a GGUF file, not a legacy GGML file: use ggspec.reference.gguf", 0)
        raise FormatError(f"not a legacy GGML file: magic 0x{magic:08x} (expected 'ggml' 0x67676d6c, 'ggmf' "
                          f"0x67676d66 or 'ggjt' 0x67676a74)", 0)
    m.format = MAGICS[magic]
    if m.format != "ggml":
        m.version = u32("the version")
        ok = (m.format == "ggmf" and m.version == 1) or (m.format == "ggjt" and m.version in (1, 2, 3))
        if not ok:
            raise FormatError(f"unknown {m.format} version {m.version} (known: ggmf 1, ggjt 1-3)", 4)
    hp_off = pos
    m.hparams = Hyperparameters(*(u32(f"hyperparameter {n}") for n in
                                  ("n_vocab", "n_embd", "n_mult", "n_head", "n_layer", "n_rot", "ftype")))
    gen = m.generation
    per_token = 8 if m.has_scores else 4
    if m.hparams.n_vocab * per_token > size - pos:
        raise FormatError(f"n_vocab = {m.hparams.n_vocab} tokens need at least {m.hparams.n_vocab * per_token} "
                          f"bytes but only {size - pos} remain", hp_off)
    m.vocab_offset = pos
    vocab = []
    for i in range(m.hparams.n_vocab):
        start = pos
        n = u32(f"the length of token {i}")
        if n > size - pos:
            raise FormatError(f"token {i} claims {n} bytes but only {size - pos} remain", start)
        text = bytes(buf[pos:pos + n])
        pos += n
        score = 0.0
        if m.has_scores:
            if size - pos < 4:
                raise FormatError(f"the file ends inside the score of token {i}", pos)
            score = struct.unpack_from("<f", buf, pos)[0]
            pos += 4
        vocab.append((text, score))
    m.vocab = vocab

    layouts = LAYOUTS[gen]
    while pos < size:
        start = pos
        n_dims = u32("a tensor header")
        name_len = u32("a tensor header")
        tid = u32("a tensor header")
        if n_dims < 1 or n_dims > MAX_DIMS:
            raise FormatError(f"tensor header: n_dims = {n_dims} (1..{MAX_DIMS} allowed)", start)
        if name_len == 0 or name_len > size - pos:
            raise FormatError(f"tensor header: name length {name_len} is "
                              f"{'zero' if name_len == 0 else 'past the end of the file'}", start + 4)
        ne = tuple(u32(f"dimension {j} of a tensor header") for j in range(n_dims))
        if name_len > size - pos:
            raise FormatError(f"the file ends inside a tensor name ({name_len} bytes)", pos)
        raw_name = bytes(buf[pos:pos + name_len])
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"tensor name {raw_name[:40]!r} is not valid UTF-8", pos) from None
        pos += name_len
        layout = layouts.get(tid)
        if layout is None:
            why = {4: "Q4_2", 5: "Q4_3", 9: "Q8_1"}.get(tid)
            raise FormatError(f"tensor {name!r}: type id {tid}"
                              + (f" ({why})" if why else "")
                              + f" does not exist in {m.format} v{m.version} files (block layouts of that era: "
                              f"{', '.join(f'{k}={v.name}' for k, v in layouts.items())})", start + 8)
        if ne[0] % layout.block_size:
            raise FormatError(f"tensor {name!r}: ne0 = {ne[0]} is not a multiple of {layout.name}'s block size "
                              f"{layout.block_size}", start + 12)
        n_el = 1
        for v in ne:
            n_el *= v
        nbytes = n_el // layout.block_size * layout.type_size
        if m.aligned:
            pos += -pos % ALIGNMENT
        if nbytes > size - pos:
            raise FormatError(f"tensor {name!r}: {nbytes} bytes of data at byte {pos} run past the end of the file "
                              f"({size} bytes)", start)
        if name in m.tensors:
            raise FormatError(f"duplicate tensor name {name!r} (a multi-part file? those are not supported)", start)
        m.tensors[name] = LegacyTensor(m, name, layout, ne, pos, nbytes, start)
        pos += nbytes
    return m


def read(path) -> LegacyModel:
    """Open a legacy GGML/GGMF/GGJT file memory-mapped (tensor data is not read)."""
    import os
    path = Path(path)
    try:
        if os.path.getsize(path) == 0:
            raise FormatError("not a legacy GGML file: the file is empty", 0)
        buf = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as e:
        raise GGSpecError(f"cannot open {path}: {e.strerror or e}") from None
    return parse(buf, path=path)


# --------------------------------------------------------------------------------------------------
# Writer (for tests and corpora: the exact byte layout above)
# --------------------------------------------------------------------------------------------------

def to_bytes(fmt: str, version: int, hparams: Hyperparameters, vocab, tensors) -> bytes:
    """A legacy file. ``vocab``: [(bytes, score)]; ``tensors``: [(name, type_id, ne, raw)] with raw in the
    layout of the format's generation."""
    magic = {v: k for k, v in MAGICS.items()}[fmt]
    out = bytearray(struct.pack("<I", magic))
    if fmt != "ggml":
        out += struct.pack("<I", version)
    hp = hparams
    out += struct.pack("<7I", hp.n_vocab, hp.n_embd, hp.n_mult, hp.n_head, hp.n_layer, hp.n_rot, hp.ftype)
    for text, score in vocab:
        out += struct.pack("<I", len(text)) + bytes(text)
        if fmt != "ggml":
            out += struct.pack("<f", score)
    for name, tid, ne, raw in tensors:
        nb = name.encode()
        out += struct.pack(f"<3I{len(ne)}I", len(ne), len(nb), tid, *ne) + nb
        if fmt == "ggjt":
            out += b"\x00" * (-len(out) % ALIGNMENT)
        out += bytes(raw)
    return bytes(out)


def write(path, fmt: str, version: int, hparams: Hyperparameters, vocab, tensors) -> Path:
    path = Path(path)
    path.write_bytes(to_bytes(fmt, version, hparams, vocab, tensors))
    return path


# --------------------------------------------------------------------------------------------------
# Conversion to GGUF, as llama.cpp's convert_llama_ggml_to_gguf.py (August 2023) did
# --------------------------------------------------------------------------------------------------

# legacy LLaMA tensor names -> GGUF (gguf-py's TensorNameMap for MODEL_ARCH.LLAMA)
_GLOBAL_NAMES = {"tok_embeddings": "token_embd", "norm": "output_norm", "output": "output"}
_LAYER_NAMES = {"attention.wq": "attn_q", "attention.wk": "attn_k", "attention.wv": "attn_v",
                "attention.wo": "attn_output", "attention_norm": "attn_norm", "feed_forward.w1": "ffn_gate",
                "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up", "ffn_norm": "ffn_norm"}


def gguf_tensor_name(name: str) -> str:
    for suffix in (".weight", ".bias"):
        if name.endswith(suffix):
            base = name[:-len(suffix)]
            break
    else:
        raise FormatError(f"cannot map tensor name {name!r} to GGUF")
    if base in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[base] + suffix
    parts = base.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
        return f"blk.{int(parts[1])}.{_LAYER_NAMES[parts[2]]}{suffix}"
    raise FormatError(f"cannot map tensor name {name!r} to GGUF")


def convertible(m: LegacyModel) -> Optional[str]:
    """None when the script converts the file, else its reason for refusing (validate_conversion)."""
    ft = m.hparams.ftype
    if m.format != "ggjt" or m.version < 2:
        if ft not in (0, 1):
            return "Quantizations changed in GGJTv2. Can only convert unquantized GGML files older than GGJTv2."
    elif m.version == 2 and ft in (2, 3, 4, 7):
        return "Q4 and Q8 quantizations changed in GGJTv3."
    return None


def infer_n_head_kv(m: LegacyModel) -> Optional[int]:
    """n_head_kv from the shape of layers.0.attention.wk.weight (ne1 = n_head_kv * head_dim)."""
    t = m.tensors.get("layers.0.attention.wk.weight")
    hp = m.hparams
    if t is None or len(t.shape) < 2 or hp.n_head == 0 or hp.n_embd % hp.n_head:
        return None
    head_dim = hp.n_embd // hp.n_head
    return t.shape[1] // head_dim if t.shape[1] % head_dim == 0 else None


def gguf_metadata(m: LegacyModel, *, n_head_kv: Optional[int] = None, gqa: Optional[int] = None,
                  eps: float = 5e-6, context_length: int = 2048, name: Optional[str] = None,
                  desc: Optional[str] = None) -> dict:
    """The GGUF key-value pairs the converter writes, in its order and with its types.

    n_head_kv: the legacy header has no such field. The script took ``--gqa`` (default 1: n_head_kv =
    n_head; LLaMA-2 70B needs ``--gqa 8``: 64 heads / 8 = 8 KV heads). Here: an explicit ``n_head_kv``
    wins; else ``gqa`` as the script computed it; else the value implied by the shape of
    layers.0.attention.wk.weight (8 for LLaMA-2 70B); else n_head.
    """
    from .gguf import Value, ValueType as VT
    hp = m.hparams
    if n_head_kv is None and gqa is not None:
        if gqa == 1:
            n_head_kv = hp.n_head
        else:
            for x in range(1, 256):        # the script keeps the last x with n_head / x == gqa
                if hp.n_head / x == float(gqa):
                    n_head_kv = x
            if n_head_kv is None:
                raise GGSpecError(f"no n_head_kv gives n_head / n_head_kv = {gqa} for n_head = {hp.n_head}")
    if n_head_kv is None:
        n_head_kv = infer_n_head_kv(m) or hp.n_head
    U32 = VT.UINT32
    md = {"general.architecture": "llama"}
    if name:
        md["general.name"] = name
    desc = desc if desc is not None else (f"converted from legacy {m.format.upper()}v{max(m.version, 1)} "
                                          f"{hp.ftype_name} format")
    if desc:
        md["general.description"] = desc
    md["general.file_type"] = Value(hp.ftype, U32)
    md["llama.context_length"] = Value(context_length, U32)
    md["llama.embedding_length"] = Value(hp.n_embd, U32)
    md["llama.block_count"] = Value(hp.n_layer, U32)
    md["llama.feed_forward_length"] = Value(m.n_ff, U32)
    md["llama.rope.dimension_count"] = Value(hp.n_embd // hp.n_head if hp.n_head else 0, U32)
    md["llama.attention.head_count"] = Value(hp.n_head, U32)
    md["llama.attention.head_count_kv"] = Value(n_head_kv, U32)
    md["llama.attention.layer_norm_rms_epsilon"] = Value(float(f32(eps)), VT.FLOAT32)
    md["tokenizer.ggml.model"] = "llama"
    md["tokenizer.ggml.pre"] = "default"
    tokens, scores, types = [], [], []
    if len(m.vocab) < 3:
        raise GGSpecError("cannot convert a vocabulary of fewer than 3 tokens")
    for i, (text, score) in enumerate(m.vocab):
        tt = 1                                          # normal
        if i <= 2:
            text, tt = ((b"<unk>", 2), (b"<s>", 3), (b"</s>", 3))[i]
        elif len(text) == 0:
            tt = 3                                      # control
        elif 3 <= i <= 258 and len(text) == 1:
            text, tt = f"<0x{text[0]:02X}>".encode(), 6   # byte token
        else:
            text = text.replace(b" ", "\u2581".encode())
        tokens.append(text)
        scores.append(float(score))
        types.append(tt)
    md["tokenizer.ggml.tokens"] = Value(tokens, VT.ARRAY, VT.STRING)
    md["tokenizer.ggml.scores"] = Value(scores, VT.ARRAY, VT.FLOAT32)
    md["tokenizer.ggml.token_type"] = Value(types, VT.ARRAY, VT.INT32)
    md["tokenizer.ggml.unknown_token_id"] = Value(0, U32)
    md["tokenizer.ggml.bos_token_id"] = Value(1, U32)
    md["tokenizer.ggml.eos_token_id"] = Value(2, U32)
    return md


def convert_to_gguf(m: LegacyModel, path, **kw) -> Path:
    """Write ``m`` as GGUF v3 the way convert_llama_ggml_to_gguf.py did: metadata from ``gguf_metadata``
    (same keyword arguments), tensors renamed, same ``ne`` and bytes (copied, never requantized).

    Raises UnsupportedTypeError for the files the script refused (quantized pre-ggjt-v2 files; ggjt v2
    Q4_0/Q4_1/Q8_0 files): their block layouts are not today's.
    """
    from .gguf import GGUFWriter
    why = convertible(m)
    if why:
        raise UnsupportedTypeError(f"{why} This {m.format}v{max(m.version, 1)} file of type "
                                   f"{m.hparams.ftype_name} is not eligible for conversion.")
    w = GGUFWriter()
    for k, v in gguf_metadata(m, **kw).items():
        w.add(k, v)
    for t in m.tensors.values():
        if t.layout.today is None:
            raise UnsupportedTypeError(f"tensor {t.name!r} uses the historical {t.layout.name} layout "
                                       f"({t.layout.generation}), which GGUF cannot hold")
        w.add_tensor_raw(gguf_tensor_name(t.name), t.layout.today, t.shape, t.raw)
    return w.write(path)


__all__ = ["read", "parse", "write", "to_bytes", "LegacyModel", "LegacyTensor", "Hyperparameters", "Layout",
           "LAYOUTS", "convert_to_gguf", "gguf_metadata", "gguf_tensor_name", "infer_n_head_kv", "convertible"]
