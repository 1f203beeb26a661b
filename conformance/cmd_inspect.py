"""``ggspec inspect FILE [--json]``: header, metadata, tensor table and totals of a GGUF file, a legacy
GGML/GGMF/GGJT file or a GPTQ checkpoint directory. See ``ggspec.conformance.inspect`` for the JSON."""

from __future__ import annotations

import json
import sys

from . import inspect as I


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="show what is in a model file (GGUF, legacy GGML, GPTQ)",
                              description=__doc__)
    p.add_argument("file", help="a .gguf file, a legacy ggml/ggmf/ggjt .bin, or a GPTQ directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--full-arrays", action="store_true", help="do not summarise long metadata arrays")
    p.add_argument("--max-array", type=int, default=I.MAX_ARRAY,
                   help=f"arrays longer than this are summarised (default {I.MAX_ARRAY})")
    p.add_argument("--all", action="store_true", help="list every tensor in the text table (default: first 200)")
    p.set_defaults(func=run)


def run(args) -> int:
    r = I.report(args.file, None if args.full_arrays else args.max_array)
    if args.json:
        json.dump(r, sys.stdout, ensure_ascii=False, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(I.render_text(r, None if args.all else 200))
    return 0
