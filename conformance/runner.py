"""Run golden vectors against an implementation and tabulate the outcome.

Operations reported per type: ``dequantize`` (random block bytes, special scales, and the
oracle-made blocks of every quantize case), ``quantize`` and ``quantize+imatrix``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, asdict

import numpy as np

from ..reference.types import get_type
from .compare import first_byte_mismatch, first_float_mismatch
from .vectors import DequantizeCase, QuantizeCase, VectorFile

OPS = ("dequantize", "quantize", "quantize+imatrix")


@dataclass
class Outcome:
    status: str = "unsupported"      # pass | FAIL | unsupported | no vectors
    passed: int = 0
    total: int = 0
    failure: "str | None" = None     # the first failing case, in words
    failures: int = 0
    seconds: float = 0.0

    def record_pass(self):
        self.total += 1
        self.passed += 1
        if self.status == "unsupported":
            self.status = "pass"

    def record_fail(self, what: str):
        self.total += 1
        self.failures += 1
        if self.failure is None:
            self.failure = what
        self.status = "FAIL"

    def cell(self) -> str:
        if self.status == "pass":
            return f"pass {self.passed}"
        if self.status == "FAIL":
            return f"FAIL {self.failures}/{self.total}"
        return self.status


@dataclass
class Report:
    impl: str
    results: dict = field(default_factory=dict)  # (type, op) -> Outcome

    @property
    def failed(self) -> bool:
        return any(o.status == "FAIL" for o in self.results.values())

    def to_json(self) -> dict:
        out: dict = {}
        for (t, op), o in self.results.items():
            out.setdefault(t, {})[op] = asdict(o)
        return {"impl": self.impl, "failed": self.failed, "results": out}


def _hexf(b: int) -> str:
    return f"{b:#010x} ({np.array([b], np.uint32).view(np.float32)[0]!r})"


def _float_failure(case, got, expected, what="") -> "str | None":
    m = first_float_mismatch(got, expected)
    if m is None:
        return None
    i, g, e, n = m
    if g is None:
        return f"tcId {case.tcId}{what}: {np.size(got)} values returned, expected {np.size(expected)}"
    return f"tcId {case.tcId}{what}: index {i}: got {_hexf(g)}, expected {_hexf(e)} ({n} values differ)"


def _bytes_failure(case, got, expected, type_size) -> "str | None":
    m = first_byte_mismatch(got, expected)
    if m is None:
        return None
    i, g, e, n = m
    if g is None:
        return f"tcId {case.tcId}: {len(got)} bytes returned, expected {len(expected)}"
    return (f"tcId {case.tcId}: byte {i} (block {i // type_size}, offset {i % type_size}): "
            f"got {g:#04x}, expected {e:#04x} ({n} bytes differ)")


def run_file(impl, vf: VectorFile, ops=OPS, report: "Report | None" = None) -> Report:
    report = report or Report(getattr(impl, "name", str(impl)))
    t = get_type(vf.type)
    res = {op: report.results.setdefault((t.name, op), Outcome()) for op in OPS}
    can = {op: _supports(impl, op, t) for op in OPS}
    for case in vf.cases():
        if isinstance(case, DequantizeCase):
            if "dequantize" in ops and can["dequantize"]:
                _timed(res["dequantize"], lambda: _check_deq(impl, t, case, case.raw, case.n, case.expected, ""))
            continue
        assert isinstance(case, QuantizeCase)
        op = "quantize+imatrix" if case.imatrix is not None else "quantize"
        if op in ops and can[op]:
            _timed(res[op], lambda: _check_q(impl, t, case))
        if "dequantize" in ops and can["dequantize"] and case.dequantized is not None:
            _timed(res["dequantize"], lambda: _check_deq(impl, t, case, case.expected, case.x.size,
                                                         case.dequantized, " (dequantize of the quantize case's blocks)"))
    return report


def _supports(impl, op, t) -> bool:
    try:
        return bool(impl.supports(op, t))
    except Exception:
        return False


def _timed(outcome: Outcome, fn):
    t0 = time.perf_counter()
    try:
        err = fn()
    except Exception as e:  # an implementation that raises on a valid vector fails it
        err = f"raised {type(e).__name__}: {e}"
    outcome.seconds += time.perf_counter() - t0
    if err is None:
        outcome.record_pass()
    else:
        outcome.record_fail(err)


def _check_deq(impl, t, case, raw, n, expected, what):
    got = impl.dequantize(t, raw, n)
    return _float_failure(case, np.asarray(got, dtype=np.float32).reshape(-1), expected, what)


def _check_q(impl, t, case):
    got = impl.quantize(t, case.x, case.imatrix)
    return _bytes_failure(case, bytes(got), case.expected, t.type_size)


def run(impl, vectors: "dict[str, VectorFile]", types=None, ops=OPS, progress=None) -> Report:
    report = Report(getattr(impl, "name", str(impl)))
    order = sorted(vectors.values(), key=lambda v: v.ggml_type_id)
    for vf in order:
        if types and vf.type not in types:
            continue
        if progress:
            progress(vf.type)
        run_file(impl, vf, ops, report)
    return report


def table(reports: "list[Report]", ops=OPS) -> "tuple[list[str], list[list[str]]]":
    """Header and rows: one row per type, one column per implementation x operation."""
    types = []
    for r in reports:
        for (t, _op) in r.results:
            if t not in types:
                types.append(t)
    types.sort(key=lambda n: get_type(n).id)
    header = ["type"] + [f"{r.impl}\n{op}" if len(reports) > 1 else op for r in reports for op in ops]
    rows = []
    for t in types:
        row = [t]
        for r in reports:
            for op in ops:
                o = r.results.get((t, op))
                row.append(o.cell() if o else "-")
        rows.append(row)
    return header, rows


def failures(reports: "list[Report]") -> "list[str]":
    out = []
    for r in reports:
        for (t, op), o in r.results.items():
            if o.status == "FAIL":
                out.append(f"{r.impl} {t} {op}: {o.failure}")
    return out


def dumps(reports: "list[Report]", missing: "dict[str, str] | None" = None) -> str:
    return json.dumps({"implementations": [r.to_json() for r in reports], "unavailable": missing or {},
                       "failed": any(r.failed for r in reports)}, indent=1)
