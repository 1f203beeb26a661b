"""Run golden vectors against implementations, suite by suite, and count the verdicts.

A report is one (implementation, suite); its cells are (subject, op): for the codec suite a ggml
type and one of ``dequantize`` (random block bytes, special scales, and the oracle-made blocks of
every quantize case), ``quantize`` and ``quantize+imatrix``. Each case gets a verdict:

* ``pass``: the expected answer, bit for bit;
* ``nan-bits``: float outputs whose bits differ while every value compares equal (only a NaN's
  sign or payload, or a zero's sign, differs). It does not fail a run unless ``strict``;
* ``fail``: a wrong answer; ``raised``: the implementation raised on a case it claims to support;
  ``crash``, ``timeout``, ``memory``: a child process died, hung or ran out of its memory limit
  (suites that isolate their calls). All of these make the cell ``FAIL``.

A cell is ``FAIL k/N``, ``nan-bits k/N``, ``pass N``, ``unsupported``, ``broken`` (the
implementation's ``supports`` raised) or ``no vectors``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..reference.types import get_type
from .compare import describe_bits, first_byte_mismatch, float_diff
from .vectors import DequantizeCase, QuantizeCase, VectorFile

OPS = ("dequantize", "quantize", "quantize+imatrix")
FAILING = ("fail", "raised", "crash", "timeout", "memory")


@dataclass
class Outcome:
    status: str = "unsupported"      # pass | FAIL | nan-bits | unsupported | broken | no vectors
    passed: int = 0
    total: int = 0
    failure: "str | None" = None     # the first failing case, in words (with its comment and flags)
    failures: int = 0
    nan_bits: int = 0
    nan_failure: "str | None" = None  # the first nan-bits case
    kinds: dict = field(default_factory=dict)   # verdict kind -> count (raised, crash, timeout, memory, ...)
    failed_cases: list = field(default_factory=list)   # every failing case (text), for --all-failures
    warnings: int = 0
    seconds: float = 0.0

    def record_pass(self):
        self.total += 1
        self.passed += 1
        if self.status in ("unsupported",):
            self.status = "pass"

    def record_fail(self, what: str, kind: str = "fail"):
        self.total += 1
        self.failures += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if self.failure is None:
            self.failure = what
        self.failed_cases.append(what)
        self.status = "FAIL"

    def record_nan_bits(self, what: str):
        self.total += 1
        self.nan_bits += 1
        if self.nan_failure is None:
            self.nan_failure = what
        if self.status in ("unsupported", "pass"):
            self.status = "nan-bits"

    def record(self, kind: str, what: str = ""):
        if kind == "pass":
            self.record_pass()
        elif kind == "nan-bits":
            self.record_nan_bits(what)
        elif kind == "unsupported":
            return
        else:
            self.record_fail(what, kind)

    def failed(self, strict: bool = False) -> bool:
        return self.status in ("FAIL", "broken") or (strict and self.status == "nan-bits")

    def cell(self) -> str:
        if self.status == "pass":
            return f"pass {self.passed}"
        if self.status == "FAIL":
            extra = [f"{n} {k}" for k, n in sorted(self.kinds.items()) if k != "fail"]
            s = f"FAIL {self.failures}/{self.total}"
            return s + (f" ({', '.join(extra)})" if extra else "")
        if self.status == "nan-bits":
            return f"nan-bits {self.nan_bits}/{self.total}"
        return self.status

    def to_json(self) -> dict:
        return {"status": self.status, "passed": self.passed, "total": self.total, "failures": self.failures,
                "nan_bits": self.nan_bits, "kinds": dict(self.kinds), "failure": self.failure,
                "nan_failure": self.nan_failure, "failed_cases": list(self.failed_cases),
                "warnings": self.warnings, "seconds": round(self.seconds, 4)}


@dataclass
class Report:
    impl: str
    results: dict = field(default_factory=dict)  # (subject, op) -> Outcome
    suite: str = "codec"
    files_run: int = 0
    files_total: int = 0
    note: str = ""                               # e.g. "no vectors: ..." or "unsupported: no read_gguf"
    own: bool = False                            # one of ggspec's own implementations

    @property
    def failed(self) -> bool:
        return any(o.status in ("FAIL", "broken") for o in self.results.values())

    def failed_strict(self, strict: bool) -> bool:
        return any(o.failed(strict) for o in self.results.values())

    def summary(self) -> str:
        """One short cell for the implementation x suite table."""
        if self.note and not self.results:
            return self.note.split(":")[0]
        cells = list(self.results.values())
        fail = [o for o in cells if o.status in ("FAIL", "broken")]
        nan = [o for o in cells if o.status == "nan-bits"]
        run = [o for o in cells if o.status not in ("unsupported", "no vectors")]
        cases = sum(o.total for o in cells)
        if not run:
            return "unsupported"
        if fail:
            return f"FAIL {len(fail)}/{len(run)}"
        if nan:
            return f"nan-bits {len(nan)}/{len(run)}"
        return f"pass {cases}"

    def to_json(self) -> dict:
        out: dict = {}
        for (t, op), o in self.results.items():
            out.setdefault(t, {})[op] = o.to_json()
        return {"impl": self.impl, "suite": self.suite, "failed": self.failed, "files_run": self.files_run,
                "files_total": self.files_total, "note": self.note, "own": self.own, "results": out}


# ------------------------------------------------------------------------------------------------
# codec checks (also used by the pytest plugin)

def _hexf(b: int) -> str:
    return describe_bits(b)


def case_label(case) -> str:
    flags = ",".join(case.flags) if getattr(case, "flags", None) else ""
    comment = getattr(case, "comment", "")
    return f"{comment} [{flags}]" if flags else comment


def _float_verdict(case, got, expected, what="", width: int = 4) -> "tuple[str, str | None]":
    d = float_diff(got, expected, width)
    if d is None:
        return "pass", None
    if d["got"] is None:
        return "fail", (f"tcId {case.tcId}{what}: {d.get('got_size')} values returned, expected {d['size']}")
    text = (f"tcId {case.tcId}{what}: index {d['index']}: got {describe_bits(d['got'], width)}, expected "
            f"{describe_bits(d['expected'], width)} ({d['n']} values differ")
    if d["kind"] == "nan-bits":
        return "nan-bits", text + ", all of them NaN payload/sign or zero sign)"
    if d["k_nan"]:
        text += f", {d['k_nan']} of them only in NaN/zero-sign bits"
    return "fail", text + ")"


def _float_failure(case, got, expected, what="") -> "str | None":
    kind, text = _float_verdict(case, got, expected, what)
    return text


def _bytes_failure(case, got, expected, type_size) -> "str | None":
    m = first_byte_mismatch(got, expected)
    if m is None:
        return None
    i, g, e, n = m
    if g is None:
        return f"tcId {case.tcId}: {len(got)} bytes returned, expected {len(expected)}"
    return (f"tcId {case.tcId}: byte {i} (block {i // type_size}, offset {i % type_size}): "
            f"got {g:#04x}, expected {e:#04x} ({n} bytes differ)")


def deq_verdict(impl, t, case, raw, n, expected, what) -> "tuple[str, str | None]":
    got = impl.dequantize(t, raw, n)
    return _float_verdict(case, np.asarray(got, dtype=np.float32).reshape(-1), expected, what)


def _element_floats(name: str, raw: bytes):
    """The values of a plain float tensor's bytes (F32, F16, BF16) and their compare width, else None."""
    if name == "F32" and len(raw) % 4 == 0:
        return np.frombuffer(raw, "<f4"), 4
    if name == "F16" and len(raw) % 2 == 0:
        return np.frombuffer(raw, "<f2"), 2
    if name == "BF16" and len(raw) % 2 == 0:
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32), 4
    return None


def q_verdict(impl, t, case) -> "tuple[str, str | None]":
    got = bytes(impl.quantize(t, case.x, case.imatrix))
    err = _bytes_failure(case, got, case.expected, t.type_size)
    if err is None:
        return "pass", None
    # plain float types: bytes that differ only in NaN payload/sign or zero sign are the nan-bits class
    g, e = _element_floats(t.name, got), _element_floats(t.name, case.expected)
    if g is not None and e is not None and g[0].size == e[0].size:
        d = float_diff(g[0], e[0], g[1])
        if d is not None and d["kind"] == "nan-bits":
            return "nan-bits", err + f" (values: {d['n']} differ, all of them NaN payload/sign or zero sign)"
        if d is not None and d["k_nan"]:
            err += f" ({d['k_nan']} of the {d['n']} differing values only in NaN/zero-sign bits)"
        return "fail", err
    # block types: decode both with the reference; blocks whose values differ only in NaN/zero-sign
    # bits (e.g. a NaN scale with another payload) are nan-bits too, and the text says when the
    # differing bytes decode to the same values
    if len(got) == len(case.expected):
        try:
            from .. import reference
            n = case.x.size
            d = float_diff(reference.dequantize(t, got, n), reference.dequantize(t, case.expected, n), 4)
        except Exception:
            d = False
        if d is None:
            err += " (the differing bytes decode to the same values)"
        elif d and d["kind"] == "nan-bits":
            return "nan-bits", err + " (decoded: the values differ only in NaN payload/sign or zero sign)"
    return "fail", err


def _check_deq(impl, t, case, raw, n, expected, what):
    """The failure text, or None (a nan-bits difference is a failure here: bits are compared)."""
    return deq_verdict(impl, t, case, raw, n, expected, what)[1]


def _check_q(impl, t, case):
    return q_verdict(impl, t, case)[1]


def _supports(impl, op, t) -> bool:
    try:
        return bool(impl.supports(op, t))
    except Exception:
        return False


def _timed(outcome: Outcome, fn, label: str = ""):
    t0 = time.perf_counter()
    try:
        kind, text = fn()
    except Exception as e:  # an implementation that raises on a valid vector fails it
        kind, text = "raised", f"raised {type(e).__name__}: {e}"
    outcome.seconds += time.perf_counter() - t0
    if text and label:
        text = f"{text} -- {label}"
    outcome.record(kind, text or "")


def run_file(impl, vf: VectorFile, ops=OPS, report: "Report | None" = None) -> Report:
    """The codec vectors of one type against ``impl`` (kept for callers of the 1.x runner)."""
    report = report or Report(getattr(impl, "name", str(impl)))
    t = get_type(vf.type)
    res = {op: report.results.setdefault((t.name, op), Outcome()) for op in OPS}
    can = {op: _supports(impl, op, t) for op in OPS}
    for case in vf.cases():
        label = case_label(case)
        if isinstance(case, DequantizeCase):
            if "dequantize" in ops and can["dequantize"]:
                _timed(res["dequantize"], lambda: deq_verdict(impl, t, case, case.raw, case.n, case.expected, ""), label)
            continue
        assert isinstance(case, QuantizeCase)
        op = "quantize+imatrix" if case.imatrix is not None else "quantize"
        if op in ops and can[op]:
            _timed(res[op], lambda: q_verdict(impl, t, case), label)
        if "dequantize" in ops and can["dequantize"] and case.dequantized is not None:
            _timed(res["dequantize"], lambda: deq_verdict(impl, t, case, case.expected, case.x.size, case.dequantized,
                                                          " (dequantize of the quantize case's blocks)"), label)
    return report


def run(impl, vectors: "dict[str, VectorFile]", types=None, ops=OPS, progress=None) -> Report:
    report = Report(getattr(impl, "name", str(impl)))
    order = sorted(vectors.values(), key=lambda v: v.ggml_type_id)
    for vf in order:
        if types and vf.type not in types:
            continue
        if progress:
            progress(vf.type)
        run_file(impl, vf, ops, report)
        report.files_total += 1
        if any(report.results[(vf.type, op)].total for op in OPS):
            report.files_run += 1
    return report


# ------------------------------------------------------------------------------------------------
# the generic engine: any registered suite

@dataclass
class Context:
    """Options every suite's ``check`` may use."""
    timeout: float = 10.0
    memory: "int | None" = 1 << 30
    strict: bool = False
    quiet: bool = False
    tmpdir: str = ""
    _sandboxes: dict = field(default_factory=dict)
    _warned: set = field(default_factory=set)

    def isolate(self, impl, method: str, *args):
        """Call ``impl.method(*args)`` in a child process with the time and memory limits
        (``sandbox.CallResult``). Implementations that are already out of process (``--exec``) are
        called directly, with their own per-request timeout."""
        from .sandbox import CallResult, Sandbox
        if getattr(impl, "out_of_process", False):
            try:
                return CallResult("ok", value=getattr(impl, method)(*args))
            except Exception as e:  # the exec adapter raises typed errors for crash/timeout
                kind = getattr(e, "verdict", "raised")
                return CallResult(kind, error=f"{type(e).__name__}: {e}" if kind == "raised" else str(e))
        key = id(impl)
        if key not in self._sandboxes:
            self._sandboxes[key] = Sandbox(impl, self.timeout, self.memory)
        return self._sandboxes[key].call(method, *args)

    def close(self):
        for s in self._sandboxes.values():
            s.close()
        self._sandboxes.clear()


def suite_supports(impl, suite, op: str, subject: str) -> bool:
    """Raises whatever the implementation's supports raises (the caller reports it as broken)."""
    if suite.name == "codec":
        return bool(impl.supports(op, get_type(subject)))
    fn = getattr(impl, "supports_suite", None)
    if fn is not None:
        return bool(fn(suite.name, op, subject))
    return hasattr(impl, suite.method)


def run_suite(impl, suite, vsets: list, ctx: "Context | None" = None, select=None, progress=None,
              own: bool = False) -> Report:
    """Every case of ``vsets`` (the suite's vector sets) against ``impl``. ``select(case) -> bool``
    narrows the run (e.g. ``--types``)."""
    ctx = ctx or Context()
    report = Report(getattr(impl, "name", str(impl)), suite=suite.name, own=own)
    if not vsets:
        report.note = f"no vectors: {suite.missing or 'none found'}"
        return report
    if suite.name != "codec" and not hasattr(impl, suite.method) and not hasattr(impl, "supports_suite"):
        report.note = f"unsupported: {report.impl} has no {suite.method}()"
    can: dict = {}
    for vs in vsets:
        ran = False
        report.files_total += 1
        if progress:
            progress(vs.path)
        for case in vs.cases():
            if select is not None and not select(case):
                continue
            key = (case.subject, case.op)
            o = report.results.setdefault(key, Outcome())
            if key not in can:
                try:
                    can[key] = suite_supports(impl, suite, case.op, case.subject)
                except Exception as e:
                    can[key] = False
                    o.status = "broken"
                    o.failure = f"supports({case.op!r}, {case.subject!r}) raised {type(e).__name__}: {e}"
            if not can[key]:
                continue
            ran = True
            _run_case(impl, suite, case, o, ctx)
        if ran:
            report.files_run += 1
    return report


def _run_case(impl, suite, case, o: Outcome, ctx: Context):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if getattr(impl, "exec_protocol", False):
                v = impl.run_case(suite, case)
            else:
                v = suite.check(impl, case, ctx)
        except Exception as e:
            from .suites import Verdict
            v = Verdict("raised", f"raised {type(e).__name__}: {e}")
    o.seconds += time.perf_counter() - t0
    o.warnings += len(caught) + getattr(v, "warnings", 0)
    if caught and not ctx.quiet:
        for w in caught:               # each distinct warning once per run
            k = (str(w.message), w.category, w.filename, w.lineno)
            if k not in ctx._warned:
                ctx._warned.add(k)
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    text = v.text or ""
    if v.kind != "pass" and not text.startswith("tcId"):
        text = f"tcId {case.tcId}: {text}"
    label = case_label(case)
    if label and v.kind not in ("pass", "unsupported"):
        text = f"{text} -- {label}"
    o.record(v.kind, text)


# ------------------------------------------------------------------------------------------------
# output

def table(reports: "list[Report]", ops=OPS) -> "tuple[list[str], list[list[str]]]":
    """Header and rows: one row per subject, one column per implementation x operation."""
    order = None
    if reports and reports[0].suite != "codec":
        from . import suites
        order = suites.get(reports[0].suite).order
    subjects = []
    for r in reports:
        for (t, _op) in r.results:
            if t not in subjects:
                subjects.append(t)
    if reports and reports[0].suite == "codec":
        subjects.sort(key=lambda n: get_type(n).id)
    elif order:
        subjects.sort(key=order)
    header = ["type" if not reports or reports[0].suite == "codec" else "case"]
    header += [f"{r.impl}\n{op}" if len(reports) > 1 else op for r in reports for op in ops]
    rows = []
    for t in subjects:
        row = [t]
        for r in reports:
            for op in ops:
                o = r.results.get((t, op))
                row.append(o.cell() if o else "-")
        rows.append(row)
    return header, rows


def failures(reports: "list[Report]", all_failures: bool = False, nan_bits: bool = True) -> "list[str]":
    out = []
    for r in reports:
        for (t, op), o in r.results.items():
            where = f"{r.impl} {r.suite} {t} {op}" if r.suite != "codec" else f"{r.impl} {t} {op}"
            if o.status == "broken":
                out.append(f"{where}: broken adapter: {o.failure}")
            elif o.status == "FAIL":
                for f in (o.failed_cases if all_failures else [o.failure]):
                    out.append(f"{where}: {f}")
            elif o.status == "nan-bits" and nan_bits:
                out.append(f"{where}: nan-bits: {o.nan_failure}")
    return out


def dumps(reports: "list[Report]", missing: "dict[str, str] | None" = None, strict: bool = False,
          exit_status: "int | None" = None) -> str:
    return json.dumps({"implementations": [r.to_json() for r in reports], "unavailable": missing or {},
                       "failed": any(r.failed_strict(strict) for r in reports), "strict": strict,
                       "exit_status": exit_status}, indent=1)
