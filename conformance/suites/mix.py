"""The ``mix`` suite: the ggml type llama-quantize gives each tensor (``vectors/mix/mix.json``).

Each case is (model, ftype, imatrix, overrides) -> the type of every 2-D weight, as llama.cpp's
``llama_quant_compute_types`` computes it (vectors/generate_mix.py). Rows are the models, columns
``default`` (the ftype's rules) and ``overrides`` (llama-quantize's ``--token-embedding-type``,
``--output-tensor-type``, ``--pure``, ``--tensor-type PATTERN=TYPE``). An implementation answers
through

    tensor_types(model, ftype, imatrix, overrides) -> list of ggml type names, one per model["tensors"]

``model`` is the vector file's dict: ``architecture`` ("llama"), ``n_embd``, ``n_ff``, ``n_layer``,
``n_head``, ``n_head_kv``, ``n_embd_head``, ``n_vocab`` and ``tensors`` (``name``, ``ne``, in
GGUF order); ``ftype`` a llama.cpp ftype name (``Q4_K_M``); ``imatrix`` a bool (false in every
shipped case: the oracle's API cannot take one); ``overrides`` a dict with any of
``token_embedding_type``, ``output_tensor_type``, ``pure``, ``tensor_types`` (list of
``[pattern, type]``, the first regex that matches a tensor name wins).
"""

from __future__ import annotations

from pathlib import Path

from . import Case, Suite, Verdict, load_test_groups, register

OPS = ("default", "overrides")


def vector_path(root=None) -> Path:
    if root is None:
        from ..vectors import vectors_root
        root = vectors_root()
    return Path(root) / "mix" / "mix.json"


def load(root):
    return load_test_groups(vector_path(root), lambda g, t: (
        g["model"]["name"], "overrides" if t.get("overrides") else "default", {"model": g["model"], "test": t}))


def judge(case: Case, got) -> Verdict:
    m, t = case.data["model"], case.data["test"]
    names = [x["name"] for x in m["tensors"]]
    if isinstance(got, dict):
        got = [got.get(n) for n in names]
    got = [str(x) if x is not None else None for x in got]
    want = t["expected"]
    if len(got) != len(want):
        return Verdict.fail(f"{len(got)} types returned for {len(want)} tensors")
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    if not bad:
        return Verdict.ok()
    i = bad[0]
    return Verdict.fail(f"{t['ftype']}: {names[i]} {tuple(m['tensors'][i]['ne'])}: got {got[i]}, expected {want[i]} "
                        f"({len(bad)} of {len(want)} tensors differ)")


def check(impl, case: Case, ctx) -> Verdict:
    t = case.data["test"]
    return judge(case, impl.tensor_types(case.data["model"], t["ftype"], bool(t.get("imatrix")),
                                         dict(t.get("overrides") or {})))


def exec_request(case: Case) -> dict:
    t = case.data["test"]
    return {"suite": "mix", "op": "tensor_types", "model": case.data["model"], "ftype": t["ftype"],
            "imatrix": bool(t.get("imatrix")), "overrides": t.get("overrides") or {}}


def exec_reply(case: Case, reply: dict) -> Verdict:
    if "types" not in reply:
        return Verdict.fail(f"reply has no types: {str(reply)[:120]}")
    return judge(case, reply["types"])


SUITE = register(Suite(
    name="mix", ops=OPS, method="tensor_types", load=load, check=check, subject_title="model",
    missing="vectors/mix/mix.json is absent (python -m ggspec.vectors.generate_mix makes it)",
    exec_request=exec_request, exec_reply=exec_reply))
