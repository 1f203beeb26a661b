"""``ggspec conform``: run the golden vectors against implementations and print a table."""

from __future__ import annotations

import sys

from tabulate import tabulate

from ..errors import GGSpecError
from ..reference.types import get_type
from . import adapters, runner, vectors


def register(sub) -> None:
    p = sub.add_parser("conform", help="check implementations against the golden vectors",
                       description="Run the golden vectors (default: the embedded set) against one or more "
                                   "implementations and print type x operation -> pass / FAIL / unsupported. "
                                   "Exit status 1 on any FAIL.")
    p.add_argument("--impl", action="append", default=[],
                   help="implementation: reference, numpy, mlx, libggml, gguf-py, an entry-point name of the "
                        "'ggspec.implementations' group, or module:factory (repeatable; default: every available one)")
    p.add_argument("--libggml", default=None, help="path of a libggml-base shared library for --impl libggml")
    p.add_argument("--vectors", default=None, help="vector directory (default: the embedded vectors)")
    p.add_argument("--types", default="", help="comma-separated type names (default: all)")
    p.add_argument("--ops", default=",".join(runner.OPS), help="comma-separated operations: " + ",".join(runner.OPS))
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    vfs = vectors.load_all(args.vectors)
    if not vfs:
        raise GGSpecError(f"no vector files found in {args.vectors or vectors.vectors_root()}")
    types = [get_type(s).name for s in args.types.split(",") if s.strip()] or None
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    bad = [o for o in ops if o not in runner.OPS]
    if bad:
        raise GGSpecError(f"unknown operation(s) {bad}; choose from {runner.OPS}")
    if args.impl:
        impls = [adapters.get_implementation(s, args.libggml) for s in args.impl]
        missing = {}
    else:
        impls, missing = adapters.available_implementations()
    reports = []
    for impl in impls:
        def progress(t, name=impl.name):
            if not args.quiet and sys.stderr.isatty():
                print(f"\r{name}: {t:<8}", end="", file=sys.stderr, flush=True)
        reports.append(runner.run(impl, vfs, types, ops, progress))
        if not args.quiet and sys.stderr.isatty():
            print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    if args.json:
        print(runner.dumps(reports, missing))
    else:
        header, rows = runner.table(reports, ops)
        print(tabulate(rows, headers=header, tablefmt="simple"))
        for name, why in missing.items():
            print(f"not run: {name}: {why}")
        fails = runner.failures(reports)
        if fails:
            print("\nfirst failure of each FAIL cell:")
            for f in fails:
                print("  " + f)
        n_fail = sum(1 for r in reports for o in r.results.values() if o.status == "FAIL")
        print(f"\n{len(reports)} implementation(s), {len(vfs)} vector files: {n_fail} FAIL cell(s)")
    return 1 if any(r.failed for r in reports) else 0
