"""``ggspec conform``: run the golden vectors of every suite against implementations.

Default report (fits 100 columns): one summary line per implementation with a cell per suite, then the
first failure of each failing cell. ``--detail`` (implied by ``--impl`` / ``--exec``) adds one table
per implementation and suite. Exit status: with ``--impl`` / ``--exec``, 1 on any FAIL (or broken
adapter; nan-bits too with ``--strict``, and always for ggspec's own implementations -- reference,
numpy, mlx -- which define the format, NaN bits included); without them, peers' failures are findings
and the status reflects ggspec's own implementations.
"""

from __future__ import annotations

import os
import sys
import textwrap

from tabulate import tabulate

from ..errors import GGSpecError
from ..reference.types import get_type
from . import adapters, runner, suites

OWN = ("reference", "numpy", "mlx")
WIDTH = 100
PEER_LINES = 6


def register(sub) -> None:
    p = sub.add_parser("conform", help="check implementations against the golden vectors",
                       description="Run the golden vectors of each suite (codec, gguf, rope, attention, forward, "
                                   "mix; default: all) against implementations and print a summary per "
                                   "implementation and suite. Exit status 1 on a FAIL of the implementations "
                                   "named with --impl/--exec, or (without them) of ggspec's own.")
    p.add_argument("--impl", action="append", default=[],
                   help="implementation: reference, numpy, mlx, libggml, gguf-py, mlx-gguf, an entry-point name of "
                        "the 'ggspec.implementations' group, or module:factory (repeatable; default: every "
                        "available one)")
    p.add_argument("--exec", dest="exec_cmds", action="append", default=[], metavar="CMD",
                   help="a program speaking the exec protocol on stdin/stdout (docs/conformance.md); repeatable")
    p.add_argument("--suite", action="append", default=[],
                   help="suite(s) to run, comma-separated or repeated: " + ", ".join(suites.SUITE_NAMES) +
                        " (default: all)")
    p.add_argument("--libggml", default=None, help="path of a libggml-base shared library for --impl libggml")
    p.add_argument("--vectors", default=None, help="vector directory (default: the embedded vectors)")
    p.add_argument("--types", default="", help="codec suite: comma-separated type names (default: all)")
    p.add_argument("--ops", default=",".join(runner.OPS),
                   help="codec suite: comma-separated operations: " + ",".join(runner.OPS))
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--detail", action="store_true", help="one table per implementation and suite")
    p.add_argument("--all-failures", action="store_true", help="list every failing tcId, not the first per cell")
    p.add_argument("--strict", action="store_true",
                   help="nan-bits cells fail the run too (always so for ggspec's own reference/numpy/mlx)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress, and the implementations' warnings are counted per cell, not printed")
    p.add_argument("--junit-xml", default=None, metavar="PATH",
                   help="also write a JUnit XML report: one testcase per (implementation, suite, subject, op)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds per exec request (default 30; a first request may build tables: ggml's IQ1_S "
                        "grid takes seconds)")
    p.add_argument("--parse-timeout", type=float, default=3.0,
                   help="seconds per isolated parser call of a Python adapter (gguf suite; default 3: the files "
                        "are a few hundred bytes)")
    p.add_argument("--jobs", type=int, default=None,
                   help="implementations run in parallel worker processes (default: up to 4, the CPU count; "
                        "1: one after the other in this process)")
    p.add_argument("--memory-limit", type=int, default=1024,
                   help="MiB of address space above its start for the isolated parser (default 1024)")
    p.set_defaults(func=run)


def _suites(args) -> "list[suites.Suite]":
    names = [s.strip() for arg in args.suite for s in arg.split(",") if s.strip()]
    return [suites.get(n) for n in (names or suites.SUITE_NAMES)]


def _implementations(args):
    impls, missing = [], {}
    if args.impl or args.exec_cmds:
        impls = [adapters.get_implementation(s, args.libggml) for s in args.impl]
        if args.exec_cmds:
            from .exec_protocol import ExecImpl
            for cmd in args.exec_cmds:
                impls.append(ExecImpl(cmd, timeout=args.timeout))
    else:
        impls, missing = adapters.available_implementations()
    return impls, missing


def run(args) -> int:
    sel_suites = _suites(args)
    types = [get_type(s).name for s in args.types.split(",") if s.strip()] or None
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    bad = [o for o in ops if o not in runner.OPS]
    if bad:
        raise GGSpecError(f"unknown operation(s) {bad}; choose from {runner.OPS}")
    named = bool(args.impl or args.exec_cmds)
    impls, missing = _implementations(args)
    opts = dict(timeout=args.parse_timeout, memory=args.memory_limit << 20, strict=args.strict, quiet=args.quiet)
    ctx = runner.Context(**opts)
    tty = not args.quiet and sys.stderr.isatty()
    reports: "list[runner.Report]" = []
    files_run: dict = {}
    # implementations a worker process can rebuild run in parallel; the rest here, one after the other
    specs = _rebuild_specs(impls, args)
    jobs = args.jobs if args.jobs is not None else min(os.cpu_count() or 1, 4)
    parallel = {}
    if jobs > 1 and sum(1 for sp in specs if sp) > 1:
        parallel = _run_parallel(impls, specs, jobs, args, [s.name for s in sel_suites], types, ops, opts, tty)
    try:
        for suite in sel_suites:
            vsets = suite.load(args.vectors) if len(parallel) < len(impls) else []
            select = _select(suite.name, types, ops)
            for i, impl in enumerate(impls):
                if i in parallel:
                    reports.append(parallel[i][suite.name])
                    continue
                def progress(what, name=impl.name, s=suite.name):
                    if tty:
                        print(f"\r{name} {s}: {str(what)[-50:]:<50}", end="", file=sys.stderr, flush=True)
                r = runner.run_suite(impl, suite, vsets, ctx, select, progress, own=impl.name in OWN)
                reports.append(r)
                files_run.setdefault(suite.name, set())
                if r.files_run:
                    files_run[suite.name].add(r.files_run)
            if tty:
                print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    finally:
        ctx.close()
        for impl in impls:
            close = getattr(impl, "close", None)
            if close and getattr(impl, "out_of_process", False):
                close()
    status = exit_status(reports, named, args.strict)
    if args.junit_xml:
        from .junit import write_junit
        write_junit(args.junit_xml, reports, args.strict)
    if args.json:
        print(runner.dumps(reports, missing, args.strict, status))
        return status
    print_report(reports, sel_suites, missing, named, args, ops)
    return status


def _select(suite_name, types, ops):
    if suite_name != "codec":
        return None
    return lambda c: (types is None or c.subject in types) and c.op in ops


def _rebuild_specs(impls, args) -> list:
    """For each implementation, the --impl spec a worker process rebuilds it from, or None."""
    if args.exec_cmds:
        return [None] * len(impls)
    if args.impl:
        return list(args.impl) + [None] * (len(impls) - len(args.impl))
    out = []
    for impl in impls:
        ok = impl.name in adapters.BUILTIN and type(impl).__module__ == adapters.__name__
        out.append(impl.name if ok else None)
    return out


def _worker(spec, libggml, suite_names, vectors, types, ops, opts):
    """One implementation, every selected suite, in a worker process: {suite name: Report}."""
    impl = adapters.get_implementation(spec, libggml)
    ctx = runner.Context(**opts)
    out = {}
    try:
        for name in suite_names:
            suite = suites.get(name)
            out[name] = runner.run_suite(impl, suite, suite.load(vectors), ctx, _select(name, types, ops), None,
                                         own=impl.name in OWN)
    finally:
        ctx.close()
    return out


def _run_parallel(impls, specs, jobs, args, suite_names, types, ops, opts, tty) -> dict:
    """{index: {suite: Report}} for the implementations run in worker processes: each a fresh
    ``python`` running ``_worker_main`` (no fork of this process's library state, no re-import of the
    caller's main script), job and result as pickles over its stdin/stdout. An implementation whose
    worker fails runs here instead."""
    import concurrent.futures as cf
    import pickle
    import subprocess
    todo = [i for i, sp in enumerate(specs) if sp]
    if tty:
        print(f"\rrunning {len(todo)} implementations in {min(jobs, len(todo))} worker processes...",
              end="", file=sys.stderr, flush=True)

    def one(i):
        job = pickle.dumps((list(sys.path), specs[i], args.libggml, suite_names, args.vectors, types, ops, opts))
        p = subprocess.run([sys.executable, "-c", "from ggspec.conformance.cmd_conform import _worker_main; "
                            "_worker_main()"], input=job, stdout=subprocess.PIPE, stderr=None)
        if p.returncode != 0:
            raise RuntimeError(f"worker exit status {p.returncode}")
        return pickle.loads(p.stdout)
    out = {}
    with cf.ThreadPoolExecutor(max_workers=min(jobs, len(todo))) as ex:
        futs = {ex.submit(one, i): i for i in todo}
        for f in cf.as_completed(futs):
            try:
                out[futs[f]] = f.result()
            except Exception as e:  # noqa: BLE001 - run it here instead
                print(f"ggspec: worker for {impls[futs[f]].name} failed ({type(e).__name__}: {e}); "
                      f"running it in this process", file=sys.stderr)
    if tty:
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    return out


def _worker_main():
    """A worker process: the job from stdin, the reports to stdout (anything else written to stdout
    by a library goes to stderr)."""
    import pickle
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    path, spec, libggml, suite_names, vectors, types, ops, opts = pickle.loads(sys.stdin.buffer.read())
    sys.path[:] = path
    out = _worker(spec, libggml, suite_names, vectors, types, ops, opts)
    result.write(pickle.dumps(out))
    result.flush()


def exit_status(reports, named: bool, strict: bool) -> int:
    """1 when a report in the pool fails. ggspec's own implementations (reference, numpy, mlx) are
    always judged strictly: they define the format, so a NaN payload or zero sign that differs from
    ggml's is a failure for them (a mistake such as keeping an f32 NaN payload in f16 must fail
    ``ggspec conform --impl reference``); other implementations get the ``nan-bits`` class, which
    fails only with ``--strict``."""
    pool = reports if named else [r for r in reports if r.own]
    return 1 if any(r.failed_strict(strict or r.own) for r in pool) else 0


def _fit(line: str, width: int = WIDTH, indent: str = "    ") -> str:
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=True,
                                   break_on_hyphens=False)) or line


def print_report(reports, sel_suites, missing, named, args, ops=runner.OPS) -> None:
    impl_names = []
    for r in reports:
        if r.impl not in impl_names:
            impl_names.append(r.impl)
    by = {(r.impl, r.suite): r for r in reports}
    names = [s.name for s in sel_suites]
    rows = [[name] + [by[(name, s)].summary() if (name, s) in by else "-" for s in names] for name in impl_names]
    print(tabulate(rows, headers=["implementation"] + names, tablefmt="simple"))
    n_files = {s: max((r.files_run for r in reports if r.suite == s), default=0) for s in names}
    print(_fit("pass N: N cases passed; FAIL k/N and nan-bits k/N: k of the N cells run (a cell is a type x "
               "operation, a case class, a parameter group...); nan-bits: only NaN payload/sign or zero-sign "
               "bits differ (fails only with --strict)"))
    for s in sel_suites:
        if s.placeholder or not any(r.files_total for r in reports if r.suite == s.name):
            rs = [r for r in reports if r.suite == s.name]
            why = rs[0].note if rs and rs[0].note else f"no vectors: {s.missing}"
            print(_fit(f"{s.name}: {why}"))
    for name, why in missing.items():
        print(_fit(f"not run: {name}: {why}"))

    if args.detail or named:
        for name in impl_names:
            for s in sel_suites:
                r = by.get((name, s.name))
                if r is None or not r.results:
                    continue
                sops = tuple(o for o in s.ops if o in ops) if s.name == "codec" else s.ops
                header, body = runner.table([r], sops)
                header[0] = s.subject_title
                print(f"\n{name} / {s.name} ({r.files_run} of {r.files_total} vector files run)")
                print(tabulate(body, headers=header, tablefmt="simple"))

    own_fail = [r for r in reports if r.own or named]
    peers = [r for r in reports if not (r.own or named)]
    lines_own = runner.failures(own_fail, args.all_failures)
    lines_peer = []
    for r in peers:                       # the plain report: at most PEER_LINES cells per peer and suite
        ls = runner.failures([r], args.all_failures)
        if not (args.detail or args.all_failures) and len(ls) > PEER_LINES:
            more = len(ls) - PEER_LINES
            ls = ls[:PEER_LINES] + [f"{r.impl} {r.suite}: ... {more} more (--impl {r.impl} --suite {r.suite})"]
        lines_peer += ls
    what = "every failing case" if args.all_failures else "first failure of each cell"
    if lines_own:
        print(f"\n{'failures' if named else 'failures in ggspec' + chr(39) + 's own implementations'} ({what}):")
        for line in lines_own:
            print(_fit("  " + line))
    if lines_peer:
        print(f"\nfindings in peers ({what}; they do not change the exit status):")
        for line in lines_peer:
            print(_fit("  " + line))
    warn = sum(o.warnings for r in reports for o in r.results.values())
    n_fail = sum(1 for r in reports for o in r.results.values() if o.status in ("FAIL", "broken"))
    n_nan = sum(1 for r in reports for o in r.results.values() if o.status == "nan-bits")
    files = ", ".join(f"{s} {n}" for s, n in n_files.items() if n)
    print()
    print(_fit(f"{len(impl_names)} implementation(s); vector files run: {files or 'none'}; "
               f"{n_fail} FAIL cell(s), {n_nan} nan-bits cell(s)" + (f"; {warn} warning(s) counted" if warn else "")))
