"""The ``forward`` suite: whole forward passes of tiny GGUF models (``vectors/model/forward/``, made by
vectors/generate_forward.py from llama.cpp's portable build).

Rows are the models (architecture x weights x head layout x RoPE), columns the attention path
(``default``: llama-cpp-python's defaults, flash attention off; ``flash``). An implementation
answers through

    forward(model_path, tokens, context, n_predict) -> (logits, greedy)

``context`` holds ``ggspec.reference.llama.ContextParams``'s fields (``n_ctx``, ``type_k``,
``type_v``, ``flash_attn``, ``n_batch``, ``n_ubatch``, ``n_threads``, ``n_threads_batch``, RoPE
overrides). ``logits`` float32 (len(tokens) + n_predict - 1, n_vocab): every prompt position, then
one row per greedy decode step; ``greedy`` the ``n_predict`` argmax tokens (each fed back).

Verdict: the logits bit for bit and the same greedy tokens; an implementation whose ``simd``
attribute is true is judged instead against the case's ``native_max_abs`` times ``SIMD_MARGIN``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import Case, Suite, VectorSet, Verdict, register
from ..compare import describe_bits, float_diff

OPS = ("default", "flash")
SIMD_MARGIN = 4.0


def forward_dir(root=None) -> Path:
    if root is None:
        from ..vectors import vectors_root
        root = vectors_root()
    return Path(root) / "model" / "forward"


def load(root):
    d = forward_dir(root)
    man = d / "manifest.json"
    if not man.is_file():
        return []
    manifest = json.loads(man.read_text())
    sets = []
    tc = 0
    for c in manifest["cases"]:
        doc = json.loads((d / c["vectors"]).read_text())
        items = []
        for r in doc["runs"]:
            tc += 1
            op = "flash" if r["context"].get("flash_attn") else "default"
            items.append(Case(tc, f"{r['name']}: {doc['architecture']}, {doc['weights']}, heads {doc['head_layout']}, "
                                  f"rope {doc['rope']}", list(doc.get("flags", [])), c["name"], op,
                              {"run": r, "model": str(d / doc["model"])}, str(d / c["vectors"])))
        sets.append(VectorSet(str(d / c["vectors"]), doc.get("provenance", {}), (lambda it=items: iter(it)),
                              len(items)))
    return sets


def judge(case: Case, logits, greedy, simd: bool = False) -> Verdict:
    r = case.data["run"]
    want = np.frombuffer(bytes.fromhex(r["expected_logits_f32_hex"]), "<f4").reshape(r["logits_shape"])
    got = np.asarray(logits)
    # a long run may keep only its last rows: logits_from = the first kept row (docs/vectors.md, forward/)
    first = int(r.get("logits_from", 0))
    n_vocab = want.shape[1]
    if got.size != (first + want.shape[0]) * n_vocab:
        return Verdict.fail(f"logits of shape {got.shape}, expected {first + want.shape[0]} rows of {n_vocab}")
    got = got.astype(np.float32).reshape(-1, n_vocab)[first:]
    if simd:
        bound = float(r.get("native_max_abs", 0.0)) * SIMD_MARGIN
        with np.errstate(invalid="ignore"):
            err = float(np.nanmax(np.abs(got.astype(np.float64) - want)))
        if err > bound:
            return Verdict.fail(f"max |logit diff| {err:.3g} > SIMD bound {bound:.3g}")
        return Verdict.ok()
    d = float_diff(got, want, 4)
    if d is not None:
        pos, tok = np.unravel_index(d["index"], want.shape)
        pos += first
        return Verdict(d["kind"], f"position {int(pos)}, token {int(tok)}: got {describe_bits(d['got'], 4)}, expected "
                                  f"{describe_bits(d['expected'], 4)} ({d['n']} of {d['size']} logits differ)")
    if list(greedy) != list(r["greedy"]):
        return Verdict.fail(f"greedy continuation {list(greedy)} != {r['greedy']}")
    return Verdict.ok()


def check(impl, case: Case, ctx) -> Verdict:
    r = case.data["run"]
    logits, greedy = impl.forward(case.data["model"], list(r["tokens"]), dict(r["context"]), int(r["n_predict"]))
    return judge(case, logits, greedy, bool(getattr(impl, "simd", False)))


def exec_request(case: Case) -> dict:
    r = case.data["run"]
    return {"suite": "forward", "op": case.op, "model_path": case.data["model"], "tokens": r["tokens"],
            "context": r["context"], "n_predict": r["n_predict"]}


def exec_reply(case: Case, reply: dict) -> Verdict:
    if "hex" not in reply:
        return Verdict.fail(f"reply has no hex: {str(reply)[:120]}")
    return judge(case, np.frombuffer(bytes.fromhex(reply["hex"]), "<f4"), reply.get("greedy", []),
                 bool(reply.get("simd", False)))


SUITE = register(Suite(
    name="forward", ops=OPS, method="forward", load=load, check=check, subject_title="model",
    missing="vectors/model/forward/ is absent (python -m ggspec.vectors.generate_forward makes it)",
    exec_request=exec_request, exec_reply=exec_reply))


def reference_forward(model_path, tokens, context, n_predict):
    """ggspec's reference answering the suite (used by the reference adapter)."""
    from ...reference.llama import ContextParams, LlamaModel

    return LlamaModel.from_gguf(model_path).run(tokens, ContextParams(**context), n_predict)
