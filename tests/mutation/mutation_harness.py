"""Mutation harness: apply one catalogued mistake to a COPY of the reference and run ``ggspec conform``.

The real reference is never edited. For each mutant a throw-away package ``ggspec_mutant`` is laid
out in a temporary directory: every file of the installed ``ggspec`` package is a symlink to the
original, except the one file the mutant changes, which is a copy with one line replaced. Then

    python -m ggspec conform --impl ggspec_mutant_impl:make --json --strict ...

runs with that directory on ``PYTHONPATH``: the conformance runner, the CLI and the shipped vectors
are the real ones; only the implementation under test (the copy's ``reference``) is mutated. The
mutant is *killed* when the run reports a FAIL cell, *killed (nan-bits)* when the only differences
are NaN bit patterns (cells that ``ggspec conform`` fails only with ``--strict``), and *survives*
when every vector passes.

    python tests/mutation/run.py                     # every mutant, a table, the score per family
    python tests/mutation/run.py --ids q8_0-half-even,fp16-nan-payload --json
    python tests/mutation/run.py --family kquants --hint-only

Codec mutants run first on the types named in the catalogue (``types``), which is enough to kill
them in most cases; a survivor there is run again on every type before it is called a survivor
(``--hint-only`` skips that). RoPE, GGUF and model-layer mutants run through ``ggspec conform
--suite rope`` / ``gguf`` / ``attention`` / ``forward`` / ``mix`` (the mutant's ``suite``) when the
CLI has that suite; otherwise they are reported as ``no-suite``. A mutant whose copy raises on a
vector (an exception, not a wrong answer) counts as killed too: ``ggspec conform`` reports the cell
as FAIL (``raised <Type>``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SHADOW = "ggspec_mutant"
IMPL_SPEC = "ggspec_mutant_impl:make"
# the factory ``--impl`` calls: the copy's own ReferenceImpl, whose relative imports reach the copy's
# (mutated) reference -- for the codec, rope and gguf suites alike
_FACTORY = f"""from {SHADOW}.conformance.adapters import ReferenceImpl


def _name(t):  # the runner passes the real package's GGMLType; the copy knows its own, so pass names
    return getattr(t, "name", t)


class MutantImpl(ReferenceImpl):
    def supports(self, op, type):
        return super().supports(op, _name(type))

    def dequantize(self, type, raw, n):
        return super().dequantize(_name(type), raw, n)

    def quantize(self, type, x, imatrix):
        return super().quantize(_name(type), x, imatrix)


def make():
    return MutantImpl()
"""


@dataclass(frozen=True)
class Mutant:
    """One plausible one-line mistake in the reference.

    ``old`` must occur in ``path`` (relative to the package root) at or after the first occurrence
    of ``anchor``; its first such occurrence is replaced by ``new``. Neither may span lines.
    """

    id: str
    family: str          # fp, helpers, legacy, kquants, iquants, ternary, fp4, lowbit, rope, gguf,
                         # attention, forward, mix
    path: str
    old: str
    new: str
    why: str
    anchor: str = ""
    types: tuple = ()    # codec types where the mistake shows (the quick first run)
    suite: str = "codec"  # codec, rope, gguf, attention, forward, mix


@dataclass
class Result:
    id: str
    family: str
    suite: str
    status: str                      # killed | nan-bits | survived | no-suite | error
    seconds: float = 0.0
    stage: str = ""                  # "hint" (killed on the hinted types) or "all"
    failed_cells: list = field(default_factory=list)   # "TYPE op" cells that FAILed
    first_failure: str = ""
    detail: str = ""


def package_root() -> Path:
    """Directory of the ggspec package being tested (editable checkout or installed wheel)."""
    import ggspec
    return Path(ggspec.__file__).resolve().parent


def mutated_text(m: Mutant, root: "Path | None" = None) -> str:
    """The mutated source of ``m.path`` (raises ValueError when the catalogue entry does not apply)."""
    if "\n" in m.old or "\n" in m.new:
        raise ValueError(f"{m.id}: old/new must be one line")
    src = ((root or package_root()) / m.path).read_text()
    start = 0
    if m.anchor:
        start = src.find(m.anchor)
        if start < 0:
            raise ValueError(f"{m.id}: anchor {m.anchor!r} not found in {m.path}")
    i = src.find(m.old, start)
    if i < 0:
        raise ValueError(f"{m.id}: {m.old!r} not found in {m.path} after the anchor")
    out = src[:i] + m.new + src[i + len(m.old):]
    if out == src:
        raise ValueError(f"{m.id}: the replacement changes nothing")
    return out


def build_shadow(m: Mutant, dest: Path, name: str = SHADOW, root: "Path | None" = None) -> Path:
    """Lay out ``dest/name`` as the ggspec package with ``m`` applied; returns ``dest``."""
    root = root or package_root()
    text = mutated_text(m, root)
    pkg = dest / name
    target = Path(m.path)
    keep_real = {target.parts[:k] for k in range(1, len(target.parts))}  # dirs on the way to the file

    def lay(src_dir: Path, out_dir: Path, rel: tuple):
        out_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(src_dir.iterdir()):
            if entry.name in ("__pycache__", ".git"):
                continue
            r = rel + (entry.name,)
            if r == target.parts:
                (out_dir / entry.name).write_text(text)
            elif entry.is_dir() and r in keep_real:
                lay(entry, out_dir / entry.name, r)
            else:
                (out_dir / entry.name).symlink_to(entry)

    lay(root, pkg, ())
    if name == SHADOW:
        (dest / "ggspec_mutant_impl.py").write_text(_FACTORY)
    return dest


def load_in_process(m: Mutant, tmp: Path):
    """Import the mutated reference in this process, as ``ggspec_mut_<id>.reference`` (for the
    adversarial-input searches: compare it with the oracle on candidate inputs)."""
    name = "ggspec_mut_" + re.sub(r"\W", "_", m.id)
    build_shadow(m, tmp, name)
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{name}.reference")


def _suites_available() -> set:
    """{"codec"} plus the suites ``ggspec conform --suite`` offers ("--suite" is in the set when the
    option exists at all)."""
    out = subprocess.run([sys.executable, "-m", "ggspec", "conform", "--help"], capture_output=True, text=True)
    suites = {"codec"}
    if "--suite" in out.stdout:
        suites.add("--suite")
        for s in ("rope", "gguf", "attention", "forward", "mix"):
            if re.search(rf"\b{s}\b", out.stdout):
                suites.add(s)
    return suites


_SUITES: "set | None" = None


def suites_available() -> set:
    global _SUITES
    if _SUITES is None:
        _SUITES = _suites_available()
    return _SUITES


VECTORS_DIR: "str | None" = None   # None: the shipped vectors; run.py --vectors sets another directory


def _conform(shadow_dir: Path, suite: str, types=(), timeout=900):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(shadow_dir) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "ggspec", "conform", "--impl", IMPL_SPEC, "--json", "--quiet", "--strict"]
    if "--suite" in suites_available():
        cmd += ["--suite", suite]
    if types:
        cmd += ["--types", ",".join(types)]
    if VECTORS_DIR and suite == "codec":
        cmd += ["--vectors", VECTORS_DIR]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    try:
        doc = json.loads(p.stdout)
    except json.JSONDecodeError:
        return None, f"exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}"
    return (p.returncode, doc), ""


def _cells(doc, status) -> "tuple[list, str]":
    """Cells ("TYPE op") of the report with the given status, and the first one's failure text."""
    cells, first = [], ""
    for impl in doc.get("implementations", []):
        for t, ops in impl.get("results", {}).items():
            for op, o in ops.items():
                if isinstance(o, dict) and o.get("status") == status:
                    cells.append(f"{t} {op}")
                    first = first or f"{t} {op}: {o.get('failure') or o.get('nan_failure')}"
    return cells, first


def run_mutant(m: Mutant, hint_only: bool = False, keep: bool = False) -> Result:
    t0 = time.perf_counter()
    res = Result(m.id, m.family, m.suite, "error")
    if m.suite != "codec" and m.suite not in suites_available():
        res.status = "no-suite"
        res.detail = f"`ggspec conform --suite {m.suite}` does not exist yet"
        return res
    tmp = Path(tempfile.mkdtemp(prefix="ggspec-mut-"))
    try:
        build_shadow(m, tmp)
        stages = [("hint", tuple(m.types))] if m.types else []
        if not (hint_only and m.types):
            stages.append(("all", ()))
        for stage, types in stages:
            out, err = _conform(tmp, m.suite, types)
            if out is None:
                res.status, res.detail = "error", err
                break
            rc, doc = out
            cells, first = _cells(doc, "FAIL")
            if cells:
                res.status, res.stage, res.failed_cells, res.first_failure = "killed", stage, cells, first
                break
            broken, why = _cells(doc, "broken")
            if broken:
                res.status, res.detail = "error", f"broken cells: {why}"
                break
            if not (_cells(doc, "pass")[0] or _cells(doc, "nan-bits")[0]):
                res.status, res.detail = "error", "no vector ran (every cell unsupported or without vectors)"
                break
            nan_cells, first = _cells(doc, "nan-bits")
            if nan_cells:
                res.status, res.stage, res.failed_cells, res.first_failure = "nan-bits", stage, nan_cells, first
                if stage == "all":
                    break
                continue   # a FAIL elsewhere would be a proper kill: look at every type
            if rc != 0:
                res.status, res.detail = "error", f"exit {rc}: {json.dumps(doc)[:300]}"
                break
            res.status, res.stage = "survived", stage
    except ValueError as e:
        res.status, res.detail = "error", str(e)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res.seconds = round(time.perf_counter() - t0, 2)
    return res


def score_table(results: "list[Result]") -> "list[tuple]":
    """(family, killed, killed only as nan-bits, counted, survivors) per family; no-suite and
    error rows are not counted."""
    fams: dict = {}
    for r in results:
        k, nb, n, surv = fams.get(r.family, (0, 0, 0, []))
        if r.status in ("killed", "nan-bits", "survived"):
            n += 1
            k += r.status == "killed"
            nb += r.status == "nan-bits"
            if r.status == "survived":
                surv = surv + [r.id]
        fams[r.family] = (k, nb, n, surv)
    return [(f,) + v for f, v in fams.items()]
