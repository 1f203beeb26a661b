"""The ``codec`` suite: dequantize and quantize of every ggml type (``vectors/<family>/<TYPE>.json``).

Rows are ggml types, columns ``dequantize``, ``quantize``, ``quantize+imatrix``. A quantize case
also checks the dequantization of its expected blocks (a ``dequantize`` case with the same tcId).
Implementations answer through ``supports(op, GGMLType)``, ``dequantize(type, raw, n)`` and
``quantize(type, x, imatrix)`` (see ``conformance/adapters.py``).
"""

from __future__ import annotations

from ...reference.types import get_type
from .. import runner, vectors
from ..vectors import DequantizeCase, f32_to_hex, hex_to_f32
from . import Case, Suite, VectorSet, Verdict, register

OPS = runner.OPS
_DEQ_OF_Q = " (dequantize of the quantize case's blocks)"


def _cases(vf):
    def gen():
        for c in vf.cases():
            if isinstance(c, DequantizeCase):
                yield Case(c.tcId, c.comment, c.flags, vf.type, "dequantize", ("deq", c), vf.path)
                continue
            op = "quantize+imatrix" if c.imatrix is not None else "quantize"
            yield Case(c.tcId, c.comment, c.flags, vf.type, op, ("q", c), vf.path)
            if c.dequantized is not None:
                yield Case(c.tcId, c.comment, c.flags, vf.type, "dequantize", ("deq-of-q", c), vf.path)
    return gen


def load(root):
    vfs = vectors.load_all(root)
    out = []
    for vf in sorted(vfs.values(), key=lambda v: v.ggml_type_id):
        n = sum(len(g["tests"]) for g in vf.groups)
        out.append(VectorSet(vf.path, vf.provenance, _cases(vf), n))
    return out


def _verdict(kind_text) -> Verdict:
    kind, text = kind_text
    return Verdict(kind, text or "")


def check(impl, case: Case, ctx) -> Verdict:
    kind, c = case.data
    t = get_type(case.subject)
    if kind == "deq":
        return _verdict(runner.deq_verdict(impl, t, c, c.raw, c.n, c.expected, ""))
    if kind == "deq-of-q":
        return _verdict(runner.deq_verdict(impl, t, c, c.expected, c.x.size, c.dequantized, _DEQ_OF_Q))
    return _verdict(runner.q_verdict(impl, t, c))


# ------------------------------------------------------------------------------------------------
# --exec

def exec_request(case: Case) -> dict:
    kind, c = case.data
    if kind == "deq":
        return {"suite": "codec", "op": "dequantize", "type": case.subject, "n": c.n, "input_hex": c.raw.hex()}
    if kind == "deq-of-q":
        return {"suite": "codec", "op": "dequantize", "type": case.subject, "n": int(c.x.size),
                "input_hex": c.expected.hex()}
    req = {"suite": "codec", "op": case.op, "type": case.subject, "rows": int(c.x.shape[0]),
           "n_per_row": int(c.x.shape[1]), "input_f32_hex": f32_to_hex(c.x)}
    if c.imatrix is not None:
        req["imatrix_f32_hex"] = f32_to_hex(c.imatrix)
    return req


def exec_reply(case: Case, reply: dict) -> Verdict:
    kind, c = case.data
    t = get_type(case.subject)
    if kind in ("deq", "deq-of-q"):
        if "f32_hex" not in reply:
            return Verdict.fail(f"reply has no f32_hex: {str(reply)[:120]}")
        got = hex_to_f32(reply["f32_hex"])
        if kind == "deq":
            return _verdict(runner._float_verdict(c, got, c.expected, ""))
        return _verdict(runner._float_verdict(c, got, c.dequantized, _DEQ_OF_Q))
    if "hex" not in reply:
        return Verdict.fail(f"reply has no hex: {str(reply)[:120]}")
    err = runner._bytes_failure(c, bytes.fromhex(reply["hex"]), c.expected, t.type_size)
    return Verdict.ok() if err is None else Verdict.fail(err)


SUITE = register(Suite(
    name="codec", ops=OPS, method="dequantize", load=load, check=check, subject_title="type",
    missing="no vectors/<family>/<TYPE>.json files", order=lambda s: get_type(s).id,
    exec_request=exec_request, exec_reply=exec_reply))
