"""Prediction from a GGUF's own inventory: the type today's llama-quantize gives each tensor, beside
the type the file has, the predicted and the actual size, and the RAM llama.cpp needs to run the file.

Everything is taken from the file: ``general.architecture``, ``general.file_type`` (the ftype), the
hyper-parameters llama.cpp's quantizer reads (block count, head counts at layer 0, expert count),
every tensor's name and shape, whether an importance matrix was used (``quantize.imatrix.*`` keys,
which llama-quantize writes), and the metadata bytes (the file's own header, re-laid-out as the
GGUF v3 llama-quantize writes).  A file made by llama-quantize with that ftype is predicted byte for
byte; any other file gets the list of tensors that deviate (``check_mix``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import GGSpecError
from .common import tensor_nbytes
from .layout import _pad
from .mixes import FTYPES, NotModelled, QuantOverrides, normalize_mix, predict_tensor_types


@dataclass
class FileTensor:
    name: str
    ne: tuple
    type: str
    offset: int
    nbytes: int


@dataclass
class GGUFInventory:
    """What a GGUF says about itself, as the size model needs it."""

    path: str
    version: int
    alignment: int
    data_offset: int
    header_bytes_v3: int       # the header as GGUF v3 (what llama-quantize writes), padded to alignment
    file_size: int
    arch: "str | None"
    ftype: "int | None"
    imatrix: bool
    metadata: dict
    tensors: list = field(default_factory=list)
    header_bytes_recomputed: int = 0  # from the key/values and tensor infos (a check of the reading)

    def key(self, k: str, default=None):
        return self.metadata.get(f"{self.arch}.{k}", default)

    def hparams(self) -> dict:
        """n_layer, n_head, n_head_kv (at layer 0, as ``hparams.n_head()`` reads them), n_expert."""
        def first(v):
            if isinstance(v, (list, tuple)):
                return int(v[0]) if v else None
            return int(v) if v is not None else None
        hp = {}
        if self.key("block_count") is not None:
            hp["n_layer"] = int(self.key("block_count"))
        n_head = first(self.key("attention.head_count"))
        if n_head:
            hp["n_head"] = n_head
            hp["n_head_kv"] = first(self.key("attention.head_count_kv")) or n_head
        hp["n_expert"] = int(self.key("expert_count") or 0)
        return hp

    @property
    def mix(self) -> "str | None":
        if self.ftype is None:
            return None
        inv = {v: k for k, v in FTYPES.items()}
        return inv.get(self.ftype & ~1024)


def _value_bytes(v, n: int) -> int:
    from ...reference.gguf import ValueType
    sizes = {ValueType.UINT8: 1, ValueType.INT8: 1, ValueType.UINT16: 2, ValueType.INT16: 2, ValueType.UINT32: 4,
             ValueType.INT32: 4, ValueType.FLOAT32: 4, ValueType.BOOL: 1, ValueType.UINT64: 8, ValueType.INT64: 8,
             ValueType.FLOAT64: 8}

    def one(vt, x, sub=None) -> int:
        if vt == ValueType.STRING:
            return n + len(x.encode() if isinstance(x, str) else bytes(x))
        if vt == ValueType.ARRAY:
            items = x.value if hasattr(x, "value") else x
            st = x.sub_type if hasattr(x, "sub_type") else sub
            return 4 + n + sum(one(st, (it.value if hasattr(it, "value") and st != ValueType.ARRAY else it),
                                   getattr(it, "sub_type", None)) for it in items)
        return sizes[vt]

    if v.type == ValueType.ARRAY:
        return one(ValueType.ARRAY, v)
    return one(v.type, v.value)


def read_inventory(path: "str | Path") -> GGUFInventory:
    """Read a GGUF's inventory (header, metadata, tensor infos; no tensor data)."""
    from ...reference import gguf as G
    g = G.read(path)
    md = dict(g.metadata)
    n = 8
    hdr = 4 + 4 + 2 * n
    for k, v in g.values.items():
        hdr += n + len(k.encode()) + 4 + _value_bytes(v, n)
    tensors = []
    for t in g.tensors.values():
        hdr += n + len(t.name.encode()) + 4 + n * len(t.shape) + 4 + 8
        tensors.append(FileTensor(t.name, tuple(int(x) for x in t.shape), t.type.name, t.offset, t.nbytes))
    arch = md.get("general.architecture")
    ft = md.get("general.file_type")
    inv = GGUFInventory(
        path=str(path), version=g.version, alignment=g.alignment, data_offset=g.data_offset,
        # v2/v3: the file's own header is what llama-quantize writes back (its key/values, plus
        # general.quantization_version and general.file_type, which a quantized file already has);
        # v1 (32-bit counts): recomputed with the 64-bit counts of v3
        header_bytes_v3=g.data_offset if g.version >= 2 else _pad(hdr, g.alignment), file_size=g.file_size,
        arch=str(arch) if arch is not None else None, ftype=int(ft) if ft is not None else None,
        imatrix=any(k.startswith("quantize.imatrix") for k in md), metadata=md, tensors=tensors,
        header_bytes_recomputed=_pad(hdr, g.alignment))
    g.close()
    return inv


def _dated_types(inv: GGUFInventory, mix: str, era: str, im, ov) -> "dict[str, str]":
    """The types of the dated rules (``gguf@YYYY-MM-DD``), transcribed for dense Llama only."""
    from .archs import from_gguf
    from .mixes import tensor_allows_quantization, tensor_types
    if inv.arch != "llama" or inv.hparams().get("n_expert"):
        raise NotModelled(f"the rules of {era} for architecture {inv.arch!r}"
                          f"{' with experts' if inv.arch == 'llama' else ''} (dated rules: dense Llama only)")
    arch = from_gguf(inv.path)
    arch = type(arch)(**{**arch.__dict__, "tied_embeddings": not any(t.name == "output.weight" for t in inv.tensors)})
    by = {t.name(): (tuple(t.ne), ty) for t, ty in tensor_types(arch, mix, era, im, None if ov.is_default else ov)}
    out = {}
    for t in inv.tensors:
        if t.name in by and by[t.name][0] == tuple(t.ne):
            out[t.name] = by[t.name][1]
        elif not tensor_allows_quantization(t.name, t.ne):
            out[t.name] = t.type
        else:
            raise NotModelled(f"tensor {t.name} {t.ne} under the rules of {era} (not in the Llama-2-shaped inventory)")
    return out


def predict_inventory(inv: GGUFInventory, mix: "str | None" = None, overrides: "QuantOverrides | None" = None,
                      imatrix: "bool | None" = None, era: str = "gguf") -> dict:
    """Per-tensor prediction for a file: {arch, mix, imatrix, rows: [{name, shape, actual, predicted,
    actual_bytes, predicted_bytes, deviates}], predicted_file_size, actual_file_size, deviations}.

    Raises ``NotModelled`` (architecture, tensor, ftype or hyper-parameter unknown)."""
    if inv.arch is None:
        raise NotModelled("the architecture: the file has no general.architecture")
    n_split = inv.metadata.get("split.count")
    if n_split is not None and int(n_split) > 1:
        raise NotModelled(f"a split GGUF (shard {int(inv.metadata.get('split.no', 0)) + 1} of {int(n_split)}): the "
                          f"quantizer's counters and the tied-embedding test need every shard's tensors")
    if mix is None:
        mix = inv.mix
        if mix is None:
            raise NotModelled(f"the quant mix: general.file_type is {inv.ftype!r}" +
                              (" (absent)" if inv.ftype is None else " (not a llama_ftype this version knows)") +
                              "; pass --mix")
    mix = normalize_mix(mix)
    ov = overrides or QuantOverrides()
    im = imatrix if imatrix is not None else (ov.imatrix if ov.imatrix is not None else inv.imatrix)
    from .mixes import _rules_date
    base, date = _rules_date(era)
    if base != "gguf":
        raise NotModelled(f"era {era} for a GGUF file")
    if date == "today":
        types = predict_tensor_types(inv.arch, [(t.name, t.ne, t.type) for t in inv.tensors], mix, im, ov,
                                     hparams=inv.hparams())
    else:
        types = _dated_types(inv, mix, era, im, ov)
    rows = []
    data = 0
    for t in inv.tensors:
        p = types[t.name]
        try:
            pb = tensor_nbytes(p, t.ne)
        except GGSpecError as e:
            raise NotModelled(f"{t.name}: {e}") from None
        data += _pad(pb, inv.alignment)
        rows.append({"name": t.name, "shape": list(t.ne), "actual": t.type, "predicted": p, "actual_bytes": t.nbytes,
                     "predicted_bytes": pb, "deviates": p != t.type})
    predicted = inv.header_bytes_v3 + data
    return {"path": inv.path, "arch": inv.arch, "mix": mix, "era": era, "imatrix": bool(im), "overrides": _ov_json(ov),
            "hparams": inv.hparams(), "gguf_version": inv.version, "header_bytes": inv.header_bytes_v3,
            "rows": rows, "predicted_file_size": predicted, "actual_file_size": inv.file_size,
            "difference": inv.file_size - predicted, "deviations": [r for r in rows if r["deviates"]]}


def _ov_json(ov: QuantOverrides) -> dict:
    d = {k: v for k, v in ov.__dict__.items() if v not in (None, False, ())}
    if "tensor_types" in d:
        d["tensor_types"] = [f"{p}={t}" for p, t in d["tensor_types"]]
    return d


def predict_file(path, mix=None, overrides=None, imatrix=None, era: str = "gguf") -> dict:
    return predict_inventory(read_inventory(path), mix, overrides, imatrix, era)


def check_mix(path, mix=None, overrides=None, imatrix=None, era: str = "gguf") -> "list[dict]":
    """The tensors whose type differs from what llama-quantize would give them (empty: the file
    follows llama.cpp's mix; ``era``: the rules of another day, dense Llama only)."""
    return predict_file(path, mix, overrides, imatrix, era)["deviations"]


__all__ = ["FileTensor", "GGUFInventory", "read_inventory", "predict_inventory", "predict_file", "check_mix"]
