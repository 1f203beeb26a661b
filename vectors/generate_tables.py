"""Generate ``vectors/tables/*.json``: the i-quant grids and value tables as language-neutral data.

    python -m ggspec.vectors.generate_tables [--out DIR] [--source LLAMA_CPP_PYTHON_SRC]

The source is the one ``reference/grids.py`` was written from: ``ggml/src/ggml-common.h`` of ggml
0.25.3 as vendored by llama-cpp-python 0.3.36 (``ggspec oracle setup --source`` fetches it). The
tables are parsed from the C text (``GGML_TABLE_BEGIN(type, name, size) ... GGML_TABLE_END()``), and
the generator stops if they differ from ``reference/grids.py``. ggml's behaviour is checked
separately (tests/test_conform_tables.py dequantizes blocks that select every grid entry with
libggml's to_float).

Each file: ``{"schema": "ggspec-table/1", "name", "c_type", "entries", "bytes_per_entry", "values",
"bytes_hex", "sha256", "used_by", "source"}``. ``values`` are integers (64-bit entries as 16-digit
hex strings, so a JSON parser with doubles keeps them); ``bytes_hex`` is the whole table as ggml holds
it in memory (little-endian entries); ``sha256`` is of those bytes. A grid entry's byte ``j`` is the
value of weight ``j`` of its group.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
import sys
from pathlib import Path

TABLES = {  # name -> used by
    "kmask_iq2xs": ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"],
    "ksigns_iq2xs": ["IQ2_XXS", "IQ2_XS", "IQ3_XXS"],
    "iq2xxs_grid": ["IQ2_XXS"],
    "iq2xs_grid": ["IQ2_XS"],
    "iq2s_grid": ["IQ2_S"],
    "iq3xxs_grid": ["IQ3_XXS"],
    "iq3s_grid": ["IQ3_S"],
    "iq1s_grid": ["IQ1_S", "IQ1_M"],
    "kvalues_iq4nl": ["IQ4_NL", "IQ4_XS"],
}
CTYPES = {"uint8_t": ("B", 1), "int8_t": ("b", 1), "uint32_t": ("I", 4), "uint64_t": ("Q", 8)}


def parse_common_h(text: str) -> dict:
    text = text.replace("NGRID_IQ1S", "2048")
    out = {}
    for m in re.finditer(r"GGML_TABLE_BEGIN\((\w+),\s*(\w+),\s*(\d+)\)(.*?)GGML_TABLE_END\(\)", text, re.S):
        ctype, name, size, body = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        if name not in TABLES:
            continue
        body = re.sub(r"//[^\n]*", "", body)
        vals = [int(v, 0) for v in re.findall(r"-?(?:0x[0-9a-fA-F]+|\d+)", body)]
        if len(vals) != size:
            raise SystemExit(f"{name}: {len(vals)} values parsed, {size} declared")
        if name in out:
            continue  # the same table under another #if branch
        out[name] = (ctype, vals)
    missing = set(TABLES) - set(out)
    if missing:
        raise SystemExit(f"tables not found in ggml-common.h: {sorted(missing)}")
    return out


def table_doc(name: str, ctype: str, vals: list, source: str) -> dict:
    fmt, size = CTYPES[ctype]
    raw = struct.pack("<" + fmt * len(vals), *vals)
    values = [f"{v:016x}" for v in vals] if size == 8 else vals
    return {"schema": "ggspec-table/1", "name": name, "c_type": ctype, "entries": len(vals),
            "bytes_per_entry": size, "used_by": TABLES[name], "source": source,
            "sha256": hashlib.sha256(raw).hexdigest(), "values": values, "bytes_hex": raw.hex()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent), help="vectors directory (default: in place)")
    ap.add_argument("--source", default=None, help="llama-cpp-python 0.3.36 source tree (default: oracle_setup's)")
    args = ap.parse_args(argv)
    from ggspec.conformance import oracle_setup
    from ggspec.reference import grids
    src = Path(args.source) if args.source else oracle_setup.source_root()
    h = src / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-common.h"
    if not h.is_file():
        raise SystemExit(f"{h} not found: run `ggspec oracle setup --source` or pass --source")
    tables = parse_common_h(h.read_text())
    out = Path(args.out) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    source = "ggml/src/ggml-common.h of ggml 0.25.3 (llama-cpp-python 0.3.36)"
    for name, (ctype, vals) in tables.items():
        ref = tuple(getattr(grids, name))
        if tuple(vals) != ref:
            raise SystemExit(f"{name}: ggml-common.h and reference/grids.py differ")
        (out / f"{name}.json").write_text(json.dumps(table_doc(name, ctype, vals, source), indent=1) + "\n")
    print(f"wrote {len(tables)} tables to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
