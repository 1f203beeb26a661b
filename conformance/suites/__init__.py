"""Conformance suites: one module per suite, each registering itself.

``ggspec conform --suite NAME`` runs the suites named in ``SUITE_NAMES`` (default: all of them). A
suite is a family of golden vectors plus the code that asks an implementation about each case and
judges the answer. The runner (``conformance/runner.py``) is the same for every suite: it loads the
vectors, asks whether the implementation supports each (op, subject), calls the suite's ``check``,
counts the verdicts per cell and prints one table per suite.

Adding a suite
==============

Create ``conformance/suites/<name>.py`` (``<name>`` in ``SUITE_NAMES``, or add it there) that, at
import time, calls ``register(Suite(...))`` with:

``name``        the suite's name, e.g. ``"attention"`` (the same as the module name).
``ops``         the columns of its table, e.g. ``("f32", "f16")``; each case belongs to one op.
``method``      the name of the implementation method the suite calls, e.g. ``"attention"``.
                An implementation without that method is ``unsupported`` for the whole suite.
``load(root)``  -> list of ``VectorSet`` (the vector files of the suite under ``root``, the vectors
                directory; ``root`` is the embedded ``ggspec/vectors`` unless ``--vectors`` says
                otherwise). Return ``[]`` when there are none: the suite is then reported as
                ``no vectors`` with ``missing`` (below) as the reason, never as a crash.
``check(impl, case, ctx)`` -> ``Verdict``: call the implementation (``getattr(impl, method)(...)``)
                on one ``Case`` and judge its answer. Return ``Verdict.ok()``,
                ``Verdict.fail(text)``, ``Verdict.nan_bits(text)`` (bits differ, every value compares
                equal: use ``compare.float_diff``) or ``Verdict.unsupported()``. Exceptions raised
                by the implementation are caught by the runner and reported as ``raised <Type>`` with
                the tcId; ``ctx.isolate(impl, method, *args)`` runs the call in a child process with
                ``ctx.timeout`` and ``ctx.memory`` limits instead (``crash`` / ``timeout`` /
                ``memory`` verdicts), for operations that parse untrusted input.
``subject_title`` the header of the row column (e.g. ``"type"``, ``"group"``).
``missing``     (optional) what to say when there are no vectors, e.g. which generator makes them.
``order(subject)`` (optional) sort key of the rows.
``exec_request(case)`` (optional) the JSON request (without ``id``) for ``--exec`` programs and
                ``exec_reply(case, reply)`` -> ``Verdict`` judging the JSON reply; without them the
                suite cannot be run through ``--exec`` (reported as unsupported). See
                ``conformance/exec_protocol.py`` and docs/conformance.md.

A ``Case`` has ``tcId``, ``comment``, ``flags``, ``subject`` (the row: a ggml type, a group name,
...), ``op`` (the column), ``file`` (the vector file it came from) and ``data`` (anything the suite's
``check`` needs). A ``VectorSet`` has ``path``, ``provenance`` and ``cases()`` (an iterator of
``Case``).

Support. For the ``codec`` suite the runner calls ``impl.supports(op, GGMLType)`` as it always did.
For every other suite it calls ``impl.supports_suite(suite, op, subject)`` when the implementation
has it, else it asks only whether the implementation has ``method``. A ``supports`` that raises marks
the implementation ``broken`` for that cell (a FAIL), not ``unsupported``.

Suites whose module is absent (e.g. ``attention`` before its vectors land) are reported as
``no vectors``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

SUITE_NAMES = ("codec", "gguf", "rope", "attention", "forward", "mix")

_REGISTRY: "dict[str, Suite]" = {}


@dataclass
class Case:
    tcId: int
    comment: str
    flags: list
    subject: str
    op: str
    data: Any = None
    file: str = ""


@dataclass
class VectorSet:
    path: str
    provenance: dict
    _cases: "Callable[[], Iterator[Case]]"
    n_cases: int = 0

    def cases(self) -> Iterator[Case]:
        return self._cases()


@dataclass
class Verdict:
    kind: str                       # pass | fail | nan-bits | unsupported | raised | crash | timeout | memory
    text: str = ""
    warnings: int = 0               # warning lines the call produced (counted per cell)

    @staticmethod
    def ok() -> "Verdict":
        return Verdict("pass")

    @staticmethod
    def fail(text: str) -> "Verdict":
        return Verdict("fail", text)

    @staticmethod
    def nan_bits(text: str) -> "Verdict":
        return Verdict("nan-bits", text)

    @staticmethod
    def unsupported(text: str = "") -> "Verdict":
        return Verdict("unsupported", text)


@dataclass
class Suite:
    name: str
    ops: tuple
    method: str
    load: Callable[[Any], list]
    check: Callable[..., Verdict]
    subject_title: str = "case"
    missing: str = ""
    order: Optional[Callable[[str], Any]] = None
    exec_request: Optional[Callable[[Case], dict]] = None
    exec_reply: Optional[Callable[[Case, dict], Verdict]] = None
    placeholder: bool = False
    extra: dict = field(default_factory=dict)


def load_test_groups(path, case_of: "Callable[[dict, dict], tuple]") -> "list[VectorSet]":
    """A Wycheproof-style file (``testGroups`` of ``tests``) as one VectorSet, or ``[]`` when absent.
    ``case_of(group, test)`` -> ``(subject, op, data)`` of each case."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        return []
    doc = json.loads(p.read_text())
    n = sum(len(g["tests"]) for g in doc["testGroups"])

    def cases():
        for g in doc["testGroups"]:
            for t in g["tests"]:
                subject, op, data = case_of(g, t)
                yield Case(int(t["tcId"]), t.get("comment", ""), list(t.get("flags", [])), subject, op, data, str(p))
    return [VectorSet(str(p), doc.get("provenance", {}), cases, n)]


def register(suite: Suite) -> Suite:
    _REGISTRY[suite.name] = suite
    return suite


def get(name: str) -> Suite:
    """The suite ``name``: its module is imported on first use; an absent module gives a placeholder
    suite with no vectors."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name not in SUITE_NAMES:
        from ...errors import GGSpecError
        raise GGSpecError(f"unknown suite {name!r}; choose from {', '.join(SUITE_NAMES)}")
    try:
        importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    if name not in _REGISTRY:
        return Suite(name=name, ops=(), method=name, load=lambda root: [], check=lambda *a: Verdict.unsupported(),
                     missing=f"the {name} suite has no vectors in this version of ggspec", placeholder=True)
    return _REGISTRY[name]


def all_suites() -> "list[Suite]":
    return [get(n) for n in SUITE_NAMES]
