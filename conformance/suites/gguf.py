"""The ``gguf`` suite: GGUF parsing, Wycheproof-style (``vectors/gguf/gguf.json``).

Every case is a small GGUF file (``file_hex``) with a ``result``:

* ``valid``: the implementation must accept it and return ``expected``, the parse libggml's
  ``gguf_init_from_file`` gives;
* ``invalid``: it must reject it (``reason`` names the class: truncation, magic, version, overflow,
  alignment, overlap, duplicate, type, shape, name, ...). Accepting it is a FAIL naming the case;
* ``acceptable``: ggml and other readers legitimately differ (``flags`` say how: nested arrays,
  offset gaps, ...). Rejecting is fine; accepting must give ``expected`` when the case has one. An
  implementation that claims to read a class (``claimed_extensions``) must accept its cases; one that
  claims ``strict-utf8`` must reject the strings that are not UTF-8;
* ``extension``: a file in a form of GGUF that ggml no longer reads but other readers do: version 1
  (``extension/version1``) and big-endian files (``extension/big-endian``). Each is the *twin* of a
  file the oracle parses (the same content written as version 1, or byte-swapped), and ``expected``
  is the oracle's parse of that twin (``expected_source`` says what, if anything, comes from the
  construction). An implementation that claims the extension (``claimed_extensions``) must accept it
  and return ``expected``, as for ``valid``; one that does not claim it may reject it (the case is
  then ``unsupported``, not a FAIL), and if it accepts it the parse must be right.

The write op (``vectors/gguf/gguf_write.json``, column ``write``, rows ``write/header``,
``write/values``, ...): each case is a typed description (ordered keys with their types, ordered
tensors with name, ggml type, ``ne`` and data hex, the JSON below) and ``file_hex``, the file ggml's
own writer makes of it (``gguf_init_empty``, ``gguf_set_*``, ``gguf_add_tensor``,
``gguf_write_to_file``: ``adapters.libggml_gguf_write``). An implementation answers
``write_gguf(description) -> bytes`` (an ``--exec`` program: request ``{"op": "write",
"description": ...}``, reply ``file_hex``, claimed by name with ``["gguf", "write", "*"]``); the bytes
must be equal, and a difference is a FAIL naming the first differing byte and the field of ggml's
file it falls in (``file_regions``). Without ``write_gguf`` the cells are ``unsupported``. A tensor's
``ne`` is ggml's: ggml writes the dimensions up to the last one that is not 1 (``ggml_n_dims``)::

    {"kv": [{"key": "general.alignment", "type": "UINT32", "value": 64},
            {"key": "t", "type": "ARRAY", "item_type": "STRING", "value": ["a", "ü"]}],
     "tensors": [{"name": "w", "type": 2, "ne": [32, 4], "data": "00bc8899..."}]}

Rows are the case classes (``valid/values``, ``invalid/truncation``, ...), the columns ``valid``,
``invalid``, ``acceptable``, ``extension`` and ``write``. Every parser call runs in a child process with a time and a memory limit
(``runner.Context.isolate``): a hang, a crash or a blow-up is a verdict of its own (``timeout``,
``crash``, ``memory``) and the run goes on.

The parse, as JSON (what ``read_gguf(path)`` returns; an implementation rejects a file by raising)::

    {"version": 3, "alignment": 32, "data_offset": 160,
     "kv": [{"key": "general.architecture", "type": "STRING", "value": "llama"},
            {"key": "x", "type": "FLOAT32", "value": "0000803f"},          # float bits, little-endian hex
            {"key": "n", "type": "UINT64", "value": "18446744073709551615"},   # 64-bit ints as decimal text
            {"key": "a", "type": "ARRAY", "item_type": "INT32", "value": [1, 2, 3]},
            {"key": "aa", "type": "ARRAY", "item_type": "ARRAY",
             "value": [{"item_type": "UINT8", "value": [1]}]}],
     "tensors": [{"name": "w", "type": 2, "ne": [32, 4, 1, 1], "offset": 0, "data": "00bc8899..."}]}

``data_offset`` is where the data section starts (ggml's ``gguf_get_data_offset``: the end of the
tensor infos padded to the alignment when there are tensors, not padded when there are none). A parse
of a file without tensors may give ``null`` instead (no data section); a number must be ggml's.
A tensor's ``data`` (optional in an implementation's parse, compared when given) is the hex of its
bytes as ggml holds them on a little-endian machine: the bytes in the file for a little-endian file;
for a big-endian file, each element byte-swapped, and in Q4_0/Q8_0/Q4_K/Q6_K blocks the fp16 fields
(gguf-py's ``gguf_convert_endian.py`` convention). ``ne`` is padded with 1 to four
dimensions (ggml's ``ne``); ``offset`` is relative to the data
section; ``type`` is the ggml type id. BOOL values are JSON booleans, integers up to 32 bits JSON
numbers, strings JSON strings.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

from . import Case, Suite, VectorSet, Verdict, register

SCHEMA = "ggspec-gguf-vectors/1"
WRITE_SCHEMA = "ggspec-gguf-write-vectors/1"
OPS = ("valid", "invalid", "acceptable", "extension", "write")
EXTENSIONS = ("version1", "big-endian")
# what an implementation may claim about the acceptable cases: that it reads a class (its name), or
# that it rejects strings that are not UTF-8
ACCEPTABLE_CLAIMS = ("nested-array", "offset-gap", "offset-order", "no-final-padding", "bool")
STRICT_UTF8 = "strict-utf8"
VALUE_TYPES = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
               "UINT64", "INT64", "FLOAT64")
_FLOAT_FMT = {"FLOAT32": "<f", "FLOAT64": "<d"}
WRITE_ROWS = ("header", "values", "arrays", "strings", "order", "tensors", "alignment", "shapes", "names")


# ------------------------------------------------------------------------------------------------
# the canonical parse

def scalar_json(vtype: str, value):
    """A scalar as the parse JSON holds it (``value`` a Python value; floats as their bits in hex)."""
    if vtype in _FLOAT_FMT:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).hex()
        return struct.pack(_FLOAT_FMT[vtype], value).hex()
    if vtype in ("UINT64", "INT64"):
        return str(int(value))
    if vtype == "BOOL":
        return bool(value)
    if vtype == "STRING":
        return value
    return int(value)


def canonical(parse: dict) -> dict:
    """Normalise an implementation's parse (ne padded to 4, ints as ints) for comparison.

    ``data_offset`` may be ``None`` only when the file has no tensors (no data section)."""
    do = parse["data_offset"]
    out = {"version": int(parse["version"]), "alignment": int(parse["alignment"]),
           "data_offset": None if do is None and not parse.get("tensors") else int(do),
           "kv": list(parse.get("kv", [])), "tensors": []}
    for t in parse.get("tensors", []):
        ne = [int(x) for x in t["ne"]]
        ct = {"name": t["name"], "type": int(t["type"]), "ne": ne + [1] * (4 - len(ne)), "offset": int(t["offset"])}
        if t.get("data") is not None:
            ct["data"] = str(t["data"]).lower()
        out["tensors"].append(ct)
    return out


def diff(got: dict, expected: dict) -> "str | None":
    """The first difference between two parses, as a path and both values, or None."""
    try:
        g = canonical(got)
    except Exception as e:
        return f"the parse is malformed ({type(e).__name__}: {e})"
    e = canonical(expected)
    if g["data_offset"] is None and not e["tensors"]:
        g["data_offset"] = e["data_offset"]      # "no data section": a file without tensors has none
    for gt, et in zip(g["tensors"], e["tensors"]):
        if "data" not in gt or "data" not in et:   # the data are compared when the parse gives them
            gt.pop("data", None)
            et.pop("data", None)
    return _diff(g, e, "")


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _diff(g, e, path) -> "str | None":
    if isinstance(e, dict) and isinstance(g, dict):
        for k in e:
            if k not in g:
                return f"{path}.{k} missing"
            d = _diff(g[k], e[k], f"{path}.{k}")
            if d:
                return d
        extra = [k for k in g if k not in e]
        return f"{path}: unexpected keys {extra}" if extra else None
    if isinstance(e, list) and isinstance(g, list):
        for i, (a, b) in enumerate(zip(g, e)):
            d = _diff(a, b, f"{path}[{i}]")
            if d:
                return d
        if len(g) != len(e):
            return f"{path}: {len(g)} items, expected {len(e)}"
        return None
    if path.endswith(".data") and isinstance(g, str) and isinstance(e, str) and g != e:
        i = next((k for k in range(0, min(len(g), len(e)), 2) if g[k:k + 2] != e[k:k + 2]), None)
        if i is None:
            return f"{path.lstrip('.')}: {len(g) // 2} bytes, expected {len(e) // 2}"
        return f"{path.lstrip('.')}: byte {i // 2}: got {g[i:i + 2]}, expected {e[i:i + 2]}"
    if g != e or type(g) is not type(e):
        return f"{path.lstrip('.')}: got {_short(g)}, expected {_short(e)}"
    return None


# ------------------------------------------------------------------------------------------------
# vectors

_TMP: "list[str]" = []


def _tmpdir() -> str:
    if not _TMP:
        d = tempfile.mkdtemp(prefix="ggspec-gguf-")
        _TMP.append(d)
        atexit.register(shutil.rmtree, d, True)
    return _TMP[0]


def vector_path(root=None) -> Path:
    if root is None:
        from ..vectors import vectors_root
        root = vectors_root()
    return Path(root) / "gguf" / "gguf.json"


def write_vector_path(root=None) -> Path:
    return vector_path(root).parent / "gguf_write.json"


def load(root):
    out = _load_write(root)
    p = vector_path(root)
    if not p.is_file():
        return out
    doc = json.loads(p.read_text())
    if doc.get("schema") != SCHEMA:
        from ...errors import FormatError
        raise FormatError(f"{p}: schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    n = sum(len(g["tests"]) for g in doc["testGroups"])

    def cases():
        for g in doc["testGroups"]:
            for t in g["tests"]:
                result = g["result"]
                subject = f"{result}/{t.get('reason') or t.get('category') or 'other'}"
                yield Case(int(t["tcId"]), t.get("comment", ""), list(t.get("flags", [])), subject, result,
                           {"test": t, "result": result}, str(p))
    return [VectorSet(str(p), doc.get("provenance", {}), cases, n)] + out


def _load_write(root):
    p = write_vector_path(root)
    if not p.is_file():
        return []
    doc = json.loads(p.read_text())
    if doc.get("schema") != WRITE_SCHEMA:
        from ...errors import FormatError
        raise FormatError(f"{p}: schema is {doc.get('schema')!r}, expected {WRITE_SCHEMA!r}")
    n = sum(len(g["tests"]) for g in doc["testGroups"])

    def cases():
        for g in doc["testGroups"]:
            for t in g["tests"]:
                yield Case(int(t["tcId"]), t.get("comment", ""), list(t.get("flags", [])),
                           f"write/{t.get('category', 'other')}", "write", {"test": t, "result": "write"}, str(p))
    return [VectorSet(str(p), doc.get("provenance", {}), cases, n)]


def case_file(case: Case) -> str:
    """The case's bytes written to a temporary file (once per process)."""
    d = case.data
    if "path" not in d:
        path = os.path.join(_tmpdir(), f"tc{case.tcId}.gguf")
        with open(path, "wb") as f:
            f.write(bytes.fromhex(d["test"]["file_hex"]))
        d["path"] = path
    return d["path"]


def claimed_extensions(impl) -> set:
    """What an implementation claims about the forms of GGUF where readers may differ.

    ``EXTENSIONS`` (``version1``, ``big-endian``): it reads them; their cases are then judged as valid
    (unclaimed, a rejection is ``unsupported``). ``ACCEPTABLE_CLAIMS`` (``nested-array``,
    ``offset-gap``, ``offset-order``, ``no-final-padding``, ``bool``): it reads those acceptable cases
    (rejecting one is then a FAIL). ``strict-utf8``: it rejects strings that are not UTF-8 (accepting
    the ``acceptable/utf8`` cases is then a FAIL). A Python adapter claims with an attribute
    ``gguf_extensions = ("version1", "big-endian", ...)``; an ``--exec`` program with hello
    ``supports`` triples ``["gguf", "extension", "version1"]`` (the row named explicitly: ``"*"``
    claims nothing). Nothing claimed: none."""
    ext = getattr(impl, "gguf_extensions", None)
    if ext is not None:
        return {str(e) for e in ext}
    out = set()
    for s, col, row in getattr(impl, "supports_list", ()) or ():
        if s == "gguf" and col in ("extension", "acceptable") and row != "*":
            out.add(row.split("/", 1)[-1])
    return out


def judge(case: Case, accepted: bool, parse, why: str = "", claims: "set | None" = None) -> Verdict:
    t, result = case.data["test"], case.data["result"]
    expected = t.get("expected")
    cat = case.subject.partition("/")[2]
    if result == "acceptable" and cat == "utf8" and STRICT_UTF8 in (claims or ()):
        if accepted:
            return Verdict.fail(f"accepted a string that is not UTF-8 (the implementation claims {STRICT_UTF8!r})")
        return Verdict.ok()
    if result in ("extension", "acceptable") and cat in (claims or ()):
        if not accepted:
            return Verdict.fail(f"rejected a {cat} file (a form it claims to read): {why[:200]}")
    elif result == "extension" and not accepted:
        return Verdict.unsupported(f"rejected; the implementation does not claim the GGUF extension {cat!r}")
    if not accepted:
        if result == "valid":
            return Verdict.fail(f"rejected a valid file: {why[:200]}")
        return Verdict.ok()
    if result == "invalid":
        return Verdict.fail(f"accepted an invalid file (must be rejected: {t.get('reason')})")
    if expected is None:
        return Verdict.ok()
    if not isinstance(parse, dict):
        return Verdict.fail(f"read_gguf returned {type(parse).__name__}, not a parse")
    d = diff(parse, expected)
    return Verdict.ok() if d is None else Verdict.fail(f"wrong parse: {d}")


# ------------------------------------------------------------------------------------------------
# the write op: a description -> the bytes of ggml's writer

def file_regions(b: bytes, description=None) -> list:
    """``(start, end, label)`` of every field of a little-endian version 3 GGUF file as ggml writes it
    (the expected file of a write case), in file order: header, kv, tensor info, padding, data."""
    regions, pos = [], 0

    def add(n, label):
        nonlocal pos
        regions.append((pos, pos + n, label))
        pos += n

    def u(fmt):
        return struct.unpack_from("<" + fmt, b, pos)[0]
    add(4, "header: magic")
    add(4, "header: version")
    n_t = u("Q")
    add(8, "header: n_tensors")
    n_kv = u("Q")
    add(8, "header: n_kv")
    sizes = {"UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "UINT32": 4, "INT32": 4, "FLOAT32": 4, "BOOL": 1,
             "UINT64": 8, "INT64": 8, "FLOAT64": 8}

    def string(label):
        n = u("Q")
        add(8, f"{label} length")
        add(n, label)
    alignment = 32
    for i in range(n_kv):
        n = u("Q")
        key = b[pos + 8:pos + 8 + n].decode("utf-8", errors="replace")
        kl = f"kv {i} {_short(key)}"
        string(f"{kl}: key")
        vt = VALUE_TYPES[u("I")]
        add(4, f"{kl}: value type")
        if vt == "STRING":
            string(f"{kl}: string value")
        elif vt == "ARRAY":
            it = VALUE_TYPES[u("I")]
            add(4, f"{kl}: array item type")
            cnt = u("Q")
            add(8, f"{kl}: array count")
            for j in range(cnt):
                if it == "STRING":
                    string(f"{kl}: item {j}")
                else:
                    add(sizes[it], f"{kl}: item {j}")
        else:
            if key == "general.alignment" and vt == "UINT32":
                alignment = u("I")
            add(sizes[vt], f"{kl}: value")
    infos = []
    for i in range(n_t):
        n = u("Q")
        name = b[pos + 8:pos + 8 + n].decode("utf-8", errors="replace")
        tl = f"tensor info {i} {_short(name)}"
        string(f"{tl}: name")
        nd = u("I")
        add(4, f"{tl}: n_dims")
        for j in range(nd):
            add(8, f"{tl}: ne[{j}]")
        add(4, f"{tl}: type")
        infos.append((name, u("Q")))
        add(8, f"{tl}: offset")
    pad = -pos % alignment
    add(pad, "padding before the data section")
    start = pos
    datas = [len(t["data"]) // 2 for t in (description or {}).get("tensors", [])]
    for i, (name, off) in enumerate(infos):
        if i >= len(datas):
            break
        if start + off > pos:
            add(start + off - pos, "padding")
        add(datas[i], f"data of tensor {i} {_short(name)}")
        add(-(pos - start) % alignment, f"padding after tensor {i} {_short(name)}")
    if pos < len(b):
        add(len(b) - pos, "data section")
    return [r for r in regions if r[1] > r[0]]


def where(b: bytes, i: int, description=None) -> str:
    """What byte ``i`` of the expected file ``b`` is (header, kv, tensor info, padding, data)."""
    try:
        regions = file_regions(b, description)
    except Exception:                 # the expected file is ggml's: this is for the message only
        return "?"
    for a, e, label in regions:
        if a <= i < e:
            return label if e - a == 1 else f"{label}, byte {i - a} of {e - a}"
    return "after the end of the expected file"


def write_diff(got: bytes, expected: bytes, description=None) -> "str | None":
    """The first difference between a written file and ggml's: its offset, what is there, both bytes."""
    if got == expected:
        return None
    n = min(len(got), len(expected))
    i = next((k for k in range(n) if got[k] != expected[k]), n)
    size = "" if len(got) == len(expected) else f"; the file has {len(got)} bytes, expected {len(expected)}"
    if i == n:
        if len(got) < len(expected):
            return f"the file ends at byte {i}, inside or before {where(expected, i, description)}{size}"
        return f"{len(got) - len(expected)} bytes after the end of ggml's file (byte {i} on: {got[i:i + 8].hex()}){size}"
    return (f"byte {i} ({where(expected, i, description)}): got {got[i:i + 8].hex()}, expected "
            f"{expected[i:i + 8].hex()}{size}")


def has_write(impl) -> bool:
    return callable(getattr(impl, "write_gguf", None))


def check_write(impl, case: Case, ctx) -> Verdict:
    if not has_write(impl):
        return Verdict.unsupported(f"{getattr(impl, 'name', impl)} has no write_gguf(description)")
    t = case.data["test"]
    r = ctx.isolate(impl, "write_gguf", t["description"])
    if r.kind != "ok":
        return Verdict(r.kind, f"{r.kind}: {r.error}")
    v = judge_write(case, r.value)
    v.warnings = r.warnings
    return v


def judge_write(case: Case, got) -> Verdict:
    t = case.data["test"]
    if not isinstance(got, (bytes, bytearray, memoryview)):
        return Verdict.fail(f"write_gguf returned {type(got).__name__}, not bytes")
    d = write_diff(bytes(got), bytes.fromhex(t["file_hex"]), t["description"])
    return Verdict.ok() if d is None else Verdict.fail(f"wrong file: {d}")


def check(impl, case: Case, ctx) -> Verdict:
    if case.op == "write":
        return check_write(impl, case, ctx)
    path = case_file(case)
    r = ctx.isolate(impl, "read_gguf", path)
    v = _from_call(case, r, claimed_extensions(impl))
    v.warnings = r.warnings
    return v


def _from_call(case, r, claims=None) -> Verdict:
    if r.kind == "ok":
        return judge(case, True, r.value, claims=claims)
    if r.kind == "raised":
        # an exception is how a reader rejects a file; on a valid file it is a FAIL with its type
        return judge(case, False, None, f"raised {r.error}", claims)
    return Verdict(r.kind, f"{r.kind}: {r.error}")


def exec_request(case: Case) -> dict:
    if case.op == "write":
        return {"suite": "gguf", "op": "write", "description": case.data["test"]["description"]}
    return {"suite": "gguf", "op": "parse", "path": case_file(case)}


def exec_reply(case: Case, reply: dict) -> Verdict:
    if "unsupported" in reply:
        return Verdict.unsupported(f"the program says: {str(reply['unsupported'])[:200]}")
    if case.op == "write":
        if "file_hex" in reply:
            try:
                got = bytes.fromhex(reply["file_hex"])
            except (TypeError, ValueError):
                return Verdict.fail("file_hex is not hex")
            return judge_write(case, got)
        if "error" in reply:
            return Verdict("raised", f"error reply: {str(reply['error'])[:200]}")
        return Verdict.fail(f"reply has no file_hex: {str(reply)[:120]}")
    claims = set(reply.get("_claims") or ())     # added by the exec adapter from the hello
    if "result" in reply:
        return judge(case, True, reply["result"], claims=claims)
    if "reject" in reply or "error" in reply:
        return judge(case, False, None, str(reply.get("reject") or reply.get("error")), claims)
    return Verdict.fail(f"reply has neither result nor reject: {str(reply)[:120]}")


def _order(subject: str):
    result, _, what = subject.partition("/")
    if result == "write":
        return (OPS.index(result), WRITE_ROWS.index(what) if what in WRITE_ROWS else 99, what)
    return (OPS.index(result) if result in OPS else 9, 0, what)


SUITE = register(Suite(
    name="gguf", ops=OPS, method="read_gguf", load=load, check=check, subject_title="case class",
    missing="vectors/gguf/gguf.json and gguf_write.json are absent (python -m ggspec.vectors.generate_gguf makes them)",
    order=_order, exec_request=exec_request, exec_reply=exec_reply))
