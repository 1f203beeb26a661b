"""``ggspec vectors export DIR``: the whole golden-vector set, for projects that vendor it.

Writes every vector file (every suite, the JSON schemas, the i-quant tables) under ``DIR`` with the
same relative paths as in the package, and ``DIR/MANIFEST.json``: the sha256 and size of each file,
the suite it belongs to, the ggspec version and the oracle (ggml) version the vectors come from.
Re-run it and diff the manifest to see what changed between two ggspec versions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from ..errors import GGSpecError

MANIFEST = "MANIFEST.json"


def register(sub) -> None:
    p = sub.add_parser("vectors", help="the golden vectors: export them for vendoring",
                       description=__doc__.splitlines()[0])
    vs = p.add_subparsers(dest="vectors_command", metavar="ACTION")
    e = vs.add_parser("export", help="copy every vector file to DIR with a MANIFEST.json (sha256 per file)")
    e.add_argument("dir", help="output directory (created; existing vector files are overwritten)")
    e.add_argument("--json", action="store_true", help="print the manifest")
    e.set_defaults(func=run_export)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _suite_of(rel: Path) -> str:
    top = rel.parts[0]
    if top in ("schema", "tables"):
        return top
    if top == "model":
        return next((s for s in ("rope", "attention") if rel.stem.startswith(s)), "forward")
    if top in ("gguf", "mix"):
        return top
    return "codec"


def files(root: "Path | None" = None) -> "list[Path]":
    from .vectors import vectors_root
    root = Path(root) if root else vectors_root()
    return sorted(p for p in root.rglob("*.json") if p.is_file() and p.name != MANIFEST)


def export(out, root=None) -> dict:
    from .. import __version__
    from . import libggml
    from .vectors import vectors_root
    root = Path(root) if root else vectors_root()
    out = Path(out)
    if out.resolve() == root.resolve():
        raise GGSpecError("the export directory is the vector directory itself")
    entries = []
    ggml = set()
    for p in files(root):
        rel = p.relative_to(root)
        data = p.read_bytes()
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        entries.append({"path": rel.as_posix(), "suite": _suite_of(rel), "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
        if rel.parts[0] != "schema":
            try:
                prov = json.loads(data).get("provenance", {})
            except (ValueError, AttributeError):
                prov = {}
            if isinstance(prov, dict) and prov.get("ggml"):
                ggml.add(str(prov["ggml"]))
    if not entries:
        raise GGSpecError(f"no vector files under {root}")
    manifest = {"ggspec": __version__, "oracle": f"{libggml.ORACLE_PACKAGE} {libggml.ORACLE_VERSION}",
                "ggml": sorted(ggml), "files": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def run_export(args) -> int:
    m = export(args.dir)
    if args.json:
        print(json.dumps(m, indent=1))
    else:
        by: dict = {}
        for e in m["files"]:
            by[e["suite"]] = by.get(e["suite"], 0) + 1
        total = sum(e["bytes"] for e in m["files"])
        print(f"wrote {len(m['files'])} files ({total / 1e6:.1f} MB) and {MANIFEST} to {args.dir}: "
              + ", ".join(f"{k} {v}" for k, v in sorted(by.items())), file=sys.stdout)
    return 0
