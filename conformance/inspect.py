"""``ggspec inspect``: what is in a model file (GGUF, legacy GGML/GGMF/GGJT, GPTQ checkpoint).

``report(path)`` returns one JSON-safe dict; ``render_text(report)`` formats it for people.

JSON report (``ggspec inspect FILE --json``)

    format        "gguf" | "ggml" | "ggmf" | "ggjt" | "gptq"
    version       int (GGUF 1-3, ggjt 1-3, ggmf 1, ggml 0; GPTQ: null)
    path, file_size
    header        format-specific header fields (GGUF: byte_order, alignment, data_offset, n_tensors, n_kv;
                  legacy: the hyperparameters; GPTQ: quantize_config)
    metadata      {key: value}: GGUF key-value pairs as JSON values. Arrays longer than ``max_array``
                  (default 16; --full-arrays: no limit) are summarised as
                  {"type": "array", "item_type": "STRING", "length": N, "head": [first 8 items]}.
                  bytes (legacy vocabulary) become {"hex": ...}; NaN/Inf floats become strings.
                  Legacy files: {"vocab": summary}. GPTQ: quantize_config.
    value_types   {key: "UINT32" | "ARRAY[STRING]" | ...}  (GGUF only)
    tensors       [{name, type, shape, offset, nbytes, bpw}] -- shape is ggml's ne (ne0 first) for
                  GGUF/legacy, torch's for GPTQ; offset is the absolute file offset (GPTQ: null)
    totals        {by_type: {type: {count, elements, bytes}}, elements, bytes, bpw}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import FormatError, GGSpecError

MAX_ARRAY = 16
HEAD = 8


def detect(path) -> str:
    """'gguf', 'ggml' (any legacy magic), 'gptq', or FormatError."""
    p = Path(path)
    if p.is_dir():
        if any(p.glob("*.safetensors")):
            return "gptq"
        raise FormatError(f"{p} is a directory without .safetensors files (not a GPTQ checkpoint)")
    if not p.exists():
        raise GGSpecError(f"cannot open {p}: no such file or directory")
    if p.suffix == ".safetensors":
        return "gptq"
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise GGSpecError(f"cannot open {p}: {e.strerror or e}") from None
    if magic == b"GGUF":
        return "gguf"
    if magic in (b"lmgg", b"fmgg", b"tjgg"):
        return "ggml"
    raise FormatError(f"{p.name}: unknown format (magic {magic!r}); expected GGUF, ggml/ggmf/ggjt, or a GPTQ "
                      f"directory", 0)


def json_value(v: Any, max_array: "int | None" = MAX_ARRAY, item_type: str = "") -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, (bytes, bytearray)):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        if max_array is not None and len(v) > max_array:
            return {"type": "array", "item_type": item_type or _kind(v[0]), "length": len(v),
                    "head": [json_value(x, max_array) for x in v[:HEAD]]}
        return [json_value(x, max_array) for x in v]
    if hasattr(v, "tolist"):
        return json_value(v.tolist(), max_array)
    return v


def _kind(x) -> str:
    return type(x).__name__


def _type_label(value) -> str:
    from ..reference.gguf import ValueType
    if value.type == ValueType.ARRAY:
        return f"ARRAY[{value.sub_type.name}]"
    return value.type.name


def _totals(tensors: list) -> dict:
    by: dict = {}
    el = by_bytes = 0
    for t in tensors:
        d = by.setdefault(t["type"], {"count": 0, "elements": 0, "bytes": 0})
        d["count"] += 1
        d["elements"] += t["elements"]
        d["bytes"] += t["nbytes"]
        el += t["elements"]
        by_bytes += t["nbytes"]
    for d in by.values():
        d["bpw"] = round(8 * d["bytes"] / d["elements"], 4) if d["elements"] else None
    return {"by_type": by, "elements": el, "bytes": by_bytes, "bpw": round(8 * by_bytes / el, 4) if el else None}


def _tensor_row(name, type_name, shape, offset, nbytes) -> dict:
    n = 1
    for v in shape:
        n *= int(v)
    return {"name": name, "type": type_name, "shape": [int(v) for v in shape], "offset": offset,
            "nbytes": int(nbytes), "elements": n, "bpw": round(8 * nbytes / n, 4) if n else None}


def report_gguf(path, max_array) -> dict:
    from ..reference import gguf as G
    g = G.read(path)
    md = {}
    for k, v in g.values.items():
        sub = v.sub_type.name if v.sub_type is not None else ""
        md[k] = json_value(v.plain(), max_array, sub)
    return {
        "format": "gguf", "version": g.version, "path": str(path), "file_size": g.file_size,
        "header": {"byte_order": "big" if g.byte_order == ">" else "little", "alignment": g.alignment,
                   "data_offset": g.data_offset, "n_tensors": g.n_tensors, "n_kv": g.n_kv},
        "metadata": md, "value_types": {k: _type_label(v) for k, v in g.values.items()},
        "tensors": [_tensor_row(t.name, t.type.name, t.shape, t.offset, t.nbytes) for t in g.tensors.values()],
    }


def report_legacy(path, max_array) -> dict:
    from ..reference import ggml_legacy as L
    m = L.read(path)
    hp = m.hparams
    vocab = [t for t, _ in m.vocab]
    tensors = []
    for t in m.tensors.values():
        name = t.layout.name if t.layout.today else f"{t.layout.name} ({t.layout.generation} layout)"
        tensors.append(_tensor_row(t.name, name, t.shape, t.offset, t.nbytes))
    return {
        "format": m.format, "version": m.version, "path": str(path), "file_size": m.file_size,
        "header": {**hp.__dict__, "ftype_name": hp.ftype_name, "block_layouts": f"generation {m.generation}",
                   "has_scores": m.has_scores, "aligned": m.aligned},
        "metadata": {"vocab": json_value(vocab, max_array, "bytes"),
                     "scores": json_value([s for _, s in m.vocab], max_array, "float")},
        "tensors": tensors,
    }


def report_gptq(path, max_array) -> dict:
    from ..reference import gptq as Q
    m = Q.read(path)
    rows = []
    for p, lin in m.layers.items():
        n_in, n_out = lin.in_features, lin.out_features
        nbytes = sum(int(a.nbytes) for a in (lin.qweight, lin.qzeros, lin.scales, lin.g_idx, lin.bias) if a is not None)
        rows.append(_tensor_row(p, f"GPTQ{m.config.bits}", (n_out, n_in), None, nbytes))
    for k, a in m.tensors.items():
        rows.append(_tensor_row(k, str(a.dtype).upper(), a.shape, None, a.nbytes))
    p = Path(path)
    size = sum(f.stat().st_size for f in (p.glob("*.safetensors") if p.is_dir() else [p]))
    return {"format": "gptq", "version": None, "path": str(path), "file_size": size,
            "header": {"quantize_config": json_value(m.config.to_dict(), None)},
            "metadata": json_value(m.config.raw, max_array), "tensors": rows}


def predict_gguf(path, file_size: int, n_ctx: "int | None" = None) -> dict:
    """The size model's view of a GGUF, from the file's own inventory (``conformance.sizes.inventory``):
    the type today's llama-quantize gives each tensor, the predicted file size against the actual one,
    the tensors that deviate, and a CPU RAM estimate built on the file's *actual* tensor bytes.
    A file the size model does not cover gives ``{"not_modelled": what is missing}``; other failures
    ``{"error": reason}``."""
    from ..errors import GGSpecError
    from . import sizes
    try:
        inv = sizes.read_inventory(path)
        pr = sizes.predict_inventory(inv)
        ctx = int(n_ctx or 4096)
        ram = sizes.ram_from_inventory(inv, ctx, n_prompt=512)
    except sizes.NotModelled as e:
        return {"not_modelled": e.missing}
    except (GGSpecError, KeyError, ValueError, TypeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"mix": pr["mix"], "imatrix": pr["imatrix"], "predicted_file_size": pr["predicted_file_size"],
            "actual_file_size": file_size, "difference": file_size - pr["predicted_file_size"],
            "deviations": [{k: d[k] for k in ("name", "actual", "predicted")} for d in pr["deviations"]],
            "ram_n_ctx": ctx, "ram_n_prompt": 512, "ram_estimate": ram}


def report(path, max_array: "int | None" = MAX_ARRAY) -> dict:
    kind = detect(path)
    r = {"gguf": report_gguf, "ggml": report_legacy, "gptq": report_gptq}[kind](Path(path), max_array)
    r["totals"] = _totals(r["tensors"])
    r["totals"]["file_bpw"] = round(8 * r["file_size"] / r["totals"]["elements"], 4) if r["totals"]["elements"] else None
    if kind == "gguf":
        r["prediction"] = predict_gguf(Path(path), r["file_size"])
    return r


def _short(v, width=100) -> str:
    if isinstance(v, dict) and v.get("type") == "array":
        s = f"[{v['item_type']} x {v['length']}] {v['head']!r}..."
    else:
        s = repr(v) if not isinstance(v, str) else v
    s = s.replace("\n", "\\n")
    return s if len(s) <= width else s[:width - 3] + "..."


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def render_text(r: dict, max_tensors: "int | None" = None) -> str:
    from tabulate import tabulate
    out = [f"{r['path']}: {r['format']}" + (f" v{r['version']}" if r["version"] is not None else "")
           + f", {_human(r['file_size'])} ({r['file_size']} bytes)", ""]
    out.append("header:")
    for k, v in r["header"].items():
        out.append(f"  {k} = {_short(v)}")
    if r["metadata"]:
        out += ["", "metadata:"]
        types = r.get("value_types", {})
        for k, v in r["metadata"].items():
            t = f" ({types[k]})" if k in types else ""
            out.append(f"  {k}{t} = {_short(v)}")
    rows = r["tensors"] if max_tensors is None else r["tensors"][:max_tensors]
    out += ["", f"tensors ({len(r['tensors'])}):"]
    out.append(tabulate([[t["name"], t["type"], " x ".join(map(str, t["shape"])), t["nbytes"],
                          f"{t['bpw']:.4g}" if t["bpw"] is not None else "-"] for t in rows],
                        headers=["name", "type", "shape", "bytes", "bpw"], tablefmt="simple"))
    if max_tensors is not None and len(r["tensors"]) > max_tensors:
        out.append(f"... {len(r['tensors']) - max_tensors} more (use --all)")
    tot = r["totals"]
    out += ["", "totals by type:"]
    out.append(tabulate([[k, d["count"], d["elements"], d["bytes"], f"{d['bpw']:.4g}" if d["bpw"] else "-"]
                         for k, d in sorted(tot["by_type"].items(), key=lambda kv: -kv[1]["bytes"])],
                        headers=["type", "tensors", "elements", "bytes", "bpw"], tablefmt="simple"))
    out += ["", f"total: {tot['elements']} weights in {tot['bytes']} bytes of tensor data = "
                f"{tot['bpw'] if tot['bpw'] is not None else '-'} bits per weight; file: {r['file_size']} bytes = "
                f"{tot['file_bpw'] if tot['file_bpw'] is not None else '-'} bits per weight"]
    pr = r.get("prediction")
    if pr:
        if "not_modelled" in pr:
            out += ["", f"size model: not modelled: {pr['not_modelled']}"]
        elif "error" in pr:
            out += ["", f"size model: not applicable ({pr['error']})"]
        else:
            ram = pr["ram_estimate"]
            dev = pr["deviations"]
            out += ["", f"size model ({pr['mix']}, today's llama-quantize rules): predicted {pr['predicted_file_size']} bytes, "
                        f"actual {pr['actual_file_size']} ({pr['difference']:+d}); "
                        + (f"{len(dev)} tensor(s) deviate from the mix: " + ", ".join(
                            f"{d['name']} {d['actual']} (mix: {d['predicted']})" for d in dev[:5])
                           + (" ..." if len(dev) > 5 else "") + " (ggspec sizes --gguf FILE --check-mix)"
                           if dev else "every tensor has the mix's type"),
                    f"RAM estimate (CPU, mmap, n_ctx {pr['ram_n_ctx']}, {pr['ram_n_prompt']}-token prompt, from the "
                    f"file's tensor bytes): "
                    f"{ram['total'] / 1e9:.2f} GB = " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in ram.items()
                                                        if k not in ("total", "reclaimable"))
                    + (f" (of which {ram['reclaimable'] / 1e6:.0f} MB clean file pages)" if "reclaimable" in ram else "")]
    return "\n".join(out)


__all__ = ["detect", "report", "render_text", "json_value"]
