"""Published tables: read a pipe-separated table and predict every row."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Mapping

from ...errors import GGSpecError
from .archs import ARCHITECTURES, LlamaArchitecture, llama_architecture
from .common import round_gb
from .layout import SAFETENSORS_DTYPE_BYTES, default_inv_freq, ggml_file_size, gptq_file_size, gptq_tensors
from .mixes import mix_breakdown, published_mix, tensor_types
from .ram import card_max_ram

# ---------------------------------------------------------------------------------------------------
# Published tables (pipe-separated, '#' comment header)
# ---------------------------------------------------------------------------------------------------


@dataclass
class Table:
    path: Path
    comments: list[str]
    columns: list[str]
    rows: list[dict[str, str]]

    @property
    def header_text(self) -> str:
        return "\n".join(self.comments)


def read_table(path: "str | Path") -> Table:
    """A published table: ``#`` comment lines, then a ``|``-separated header and rows."""
    path = Path(path)
    comments, lines = [], []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            comments.append(line[1:].strip())
        elif line.strip():
            lines.append(line)
    if not lines:
        raise GGSpecError(f"{path}: no table rows")
    columns = [c.strip() for c in lines[0].split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > len(columns):  # a '|' inside the last (free text) column
            cells = cells[:len(columns) - 1] + ["|".join(cells[len(columns) - 1:])]
        rows.append(dict(zip(columns, cells)))
    return Table(path, comments, columns, rows)


_MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august",
                                       "september", "october", "november", "december"], 1)}


def table_architecture(table: Table) -> LlamaArchitecture:
    """The architecture a table's header describes ("Architecture: dim 8192, 80 layers, ...") or names."""
    text = table.header_text
    m = re.search(r"architecture:\s*(.*)", text, re.IGNORECASE)
    if m:
        spec = m.group(1)
        nums = {}
        for key, pat in (("dim", r"dim(?:ension)?\s*(\d+)"), ("n_layers", r"(\d+)\s*layers"),
                         ("n_heads", r"(\d+)\s*heads"), ("n_kv_heads", r"(\d+)\s*kv\s*heads"),
                         ("ffn_dim", r"ffn(?:_dim)?\s*(\d+)"), ("n_vocab", r"vocab(?:ulary)?\s*(\d+)")):
            mm = re.search(pat, spec, re.IGNORECASE)
            if mm:
                nums[key] = int(mm.group(1))
        # "64 heads" must not pick up "8 KV heads"
        mm = re.search(r"(\d+)\s*heads", re.sub(r"\d+\s*kv\s*heads", "", spec, flags=re.IGNORECASE), re.IGNORECASE)
        if mm:
            nums["n_heads"] = int(mm.group(1))
        if {"dim", "n_layers", "n_heads", "ffn_dim"} <= set(nums):
            nums.setdefault("n_kv_heads", nums["n_heads"])
            nums.setdefault("n_vocab", 32000)
            preset = _preset_for(nums, text + " " + table.path.name)
            if preset is not None:
                return preset
            # Llama 3.1 and later carry a rope_freqs tensor (llama3 rope scaling); say so with "rope_freqs"
            # or name the model
            rf = bool(re.search(r"rope_freqs|llama[- _]?3\.[1-9]", text + " " + table.path.name, re.IGNORECASE))
            theta = re.search(r"rope[_ ]theta\s*([0-9.e+]+)", spec, re.IGNORECASE)
            return llama_architecture(**nums, name="table", rope_freqs=rf,
                                      rope_theta=float(theta.group(1)) if theta else None)
        name = spec.strip().split()[0].rstrip(".,") if spec.strip() else ""
        if name.lower() in ARCHITECTURES:
            return ARCHITECTURES[name.lower()]
    # fall back on a preset name in the header or file name
    hay = (text + " " + table.path.name).lower().replace("_", "-").replace(" ", "-")
    for key in sorted(ARCHITECTURES, key=len, reverse=True):
        if key in hay:
            return ARCHITECTURES[key]
    raise GGSpecError(f"{table.path}: cannot tell the architecture; add 'Architecture: dim D, L layers, ...' "
                      f"to the header or pass --arch")


def _preset_for(nums: Mapping[str, int], hay: str = "") -> "LlamaArchitecture | None":
    """The preset with these shape numbers; among equal shapes (llama-7b / llama-2-7b) the one named in
    ``hay`` (header text and file name), else the first."""
    same = [a for a in ARCHITECTURES.values()
            if (a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.ffn_dim, a.n_vocab) == (
                nums["dim"], nums["n_layers"], nums["n_heads"], nums["n_kv_heads"], nums["ffn_dim"], nums["n_vocab"])]
    hay = hay.lower().replace("_", "-").replace(" ", "-")
    for a in sorted(same, key=lambda a: -len(a.name)):
        if a.name in hay:
            return a
    return same[0] if same else None


def table_kind(table: Table) -> str:
    """'gptq', 'ggmlv3' or 'gguf@<date>' from the columns and header words."""
    text = table.header_text.lower()
    if "group_size" in table.columns or "gptq" in text.split("architecture")[0]:
        if "bits" in table.columns and "group_size" in table.columns:
            return "gptq"
    names = " ".join(r.get("name", "") for r in table.rows).lower()
    if "ggmlv3" in text or "ggml" in text.split("\n")[0] and "gguf" not in text or ".bin" in names:
        return "ggmlv3"
    if "gguf" in text or ".gguf" in names:
        date = _published(text)
        if date and len(date) == 4:
            date += "-12"  # a year only: the rules at its end
        return f"gguf@{date}" if date and date >= "2023-08" else "gguf"
    raise GGSpecError(f"{table.path}: cannot tell whether the table is GGML, GGUF or GPTQ")


def _published(text: str) -> "str | None":
    """'published September 2023' -> '2023-09' (the rules at the end of that month); 'published 2023'
    -> '2023-12'; None when the header gives no date."""
    m = re.search(r"published\s+(?:in\s+)?(?:([a-z]+)\s+)?(\d{4})", text, re.IGNORECASE)
    if not m:
        return None
    if (m.group(1) or "").lower() not in _MONTHS:
        return f"{int(m.group(2)):04d}"  # a year only
    return f"{int(m.group(2)):04d}-{_MONTHS[m.group(1).lower()]:02d}"


def _yes(s: str) -> bool:
    return s.strip().lower() in ("yes", "true", "y", "1")


def evaluate_table(table: Table, arch: "LlamaArchitecture | None" = None, era: "str | None" = None
                   ) -> list[dict]:
    """Predict every row: [{label, mix/bits..., predicted_bytes, predicted_gb, published_gb, ok, ...}]."""
    arch = arch or table_architecture(table)
    kind = era or table_kind(table)
    results = []
    for row in table.rows:
        r: dict = {"label": row.get("name") or row.get("branch") or "?"}
        if kind == "gptq":
            bits = int(row["bits"])
            gs_text = row.get("group_size", "None").strip()
            gs = None if gs_text.lower() in ("none", "-1", "", "0") else int(gs_text)
            act = _yes(row.get("act_order", "no"))
            # transformers dropped the persistent inv_freq buffers on 2023-08-22 (v4.32)
            published = _published(table.header_text)
            inv = default_inv_freq(arch) and (published is None or len(published) == 4 or published <= "2023-08")
            n = gptq_file_size(arch, bits, gs, act, inv_freq=inv)
            r.update(kind="gptq", bits=bits, group_size=gs, act_order=act, predicted_bytes=n,
                     breakdown=_gptq_breakdown(arch, bits, gs, act))
        else:
            try:
                label = row.get("quant_method") or row.get("mix") or _mix_from_name(row["name"])
                mix, ov = published_mix(label)
                im = _yes(row["imatrix"]) if row.get("imatrix") else _header_imatrix(table)
                types = tensor_types(arch, mix, kind, im, ov)
                n = ggml_file_size(arch, mix, kind, imatrix=im, overrides=ov)
                if ov is not None:
                    mix = f"{mix} + Q8_0 embeddings/output"
            except (GGSpecError, KeyError, IndexError) as e:  # a row we cannot predict is a failing row
                r.update(kind=kind, mix=row.get("quant_method", "?"), predicted_bytes=0, predicted_gb="",
                         published_gb=row.get("size_gb", ""), ok=False, error=str(e), breakdown={})
                results.append(r)
                continue
            r.update(kind=kind, mix=mix, predicted_bytes=n, breakdown=mix_breakdown(types))
            if row.get("max_ram_gb"):
                r["published_ram_gb"] = row["max_ram_gb"]
                r["predicted_ram_gb"] = round_gb(card_max_ram(n))
        r["predicted_gb"] = round_gb(n)
        r["published_gb"] = row.get("size_gb", "")
        r["ok"] = _same_gb(r["predicted_gb"], r["published_gb"])
        if "published_ram_gb" in r:
            r["ram_ok"] = _same_gb(r["predicted_ram_gb"], r["published_ram_gb"])
        results.append(r)
    return results


def _mix_from_name(name: str) -> str:
    """The mix in a published file name: ``llama-2-70b.Q4_K_M.gguf``, ``Meta-Llama-3.1-70B-Instruct-Q4_K_L.gguf``,
    ``...-Q8_0-00001-of-00002.gguf`` (a split) -> the last '-'/'.'-separated part before the extension."""
    stem = re.sub(r"\.(gguf|bin)$", "", name.strip(), flags=re.IGNORECASE)
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    return re.split(r"[-.]", stem)[-1]


def _header_imatrix(table: Table) -> "bool | None":
    """True when the header says the quants were made with an importance matrix ("imatrix quants"),
    False when it says without; None (only the mixes that need one) otherwise."""
    text = table.header_text.lower()
    if re.search(r"\b(no|without( an)?) imatrix", text):
        return False
    if re.search(r"\bimatrix\b", text):
        return True
    return None


def _same_gb(a: str, b: str) -> bool:
    try:
        return Fraction(a) == Fraction(b)
    except (ValueError, ZeroDivisionError):
        return False


def _gptq_breakdown(arch: LlamaArchitecture, bits: int, gs: "int | None", act: bool) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, dtype, shape in gptq_tensors(arch, bits, gs, act):
        kind = name.rsplit(".", 1)[-1] if ".layers." in name and "layernorm" not in name else name.split(".")[-2]
        key = f"{kind} ({dtype})"
        e = out.setdefault(key, {"count": 0, "bytes": 0})
        e["count"] += 1
        e["bytes"] += math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]
    return out
