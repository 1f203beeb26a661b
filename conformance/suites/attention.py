"""The ``attention`` suite: one attention op of llama.cpp over a KV cache
(``vectors/model/attention.json``, made by vectors/generate_model.py from the portable build).

Rows are the groups (path x K/V cache types x threads), columns the path (``mul_mat_softmax``,
``flash_attn_ext``). An implementation answers through

    attention(q, k, v, params) -> float32 (n_new, n_head * head_dim)

``q`` float32 (n_new, n_head, head_dim); ``k``, ``v`` float32 (n_past + n_new, n_head_kv,
head_dim): the values stored into the KV cache in cell order (the cache converts them to
``type_k`` / ``type_v``); query i sits at position n_past + i and sees cells 0 .. n_past + i.
``params``: ``flash_attn``, ``type_k``, ``type_v``, ``n_threads``, ``n_past``, ``n_new``,
``n_kv`` (cells attended over, the rest empty), ``scale`` (float32), ``fully_masked`` (query rows
whose every cell is masked, -inf: ggml's kernels on a row llama.cpp only meets as padding; usually
empty). docs/attention.md defines the arithmetic.

Verdict: bit for bit; an implementation whose ``simd`` attribute is true is judged instead against
the group's ``native_max_abs`` (llama.cpp's native SIMD build's measured distance) times
``SIMD_MARGIN``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Case, Suite, Verdict, load_test_groups, register
from ..compare import describe_bits, float_diff

OPS = ("mul_mat_softmax", "flash_attn_ext")
SIMD_MARGIN = 4.0   # other SIMD widths reorder the sums differently from the measuring build


def vector_path(root=None) -> Path:
    if root is None:
        from ..vectors import vectors_root
        root = vectors_root()
    return Path(root) / "model" / "attention.json"


def _f32(h: str, shape) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(h), "<f4").reshape(shape).astype(np.float32)


def load(root):
    return load_test_groups(vector_path(root), lambda g, t: (g["name"], g["op"], {"group": g, "test": t}))


def inputs(case: Case):
    """(q, k, v, params) of a case, as ``attention`` receives them."""
    g, t = case.data["group"], case.data["test"]
    nh, nkv, d, n_past, n_new = t["n_head"], t["n_head_kv"], t["head_dim"], t["n_past"], t["n_new"]
    q = _f32(t["q_f32_hex"], (n_new, nh, d))
    k = _f32(t["k_f32_hex"], (n_past + n_new, nkv, d))
    v = _f32(t["v_f32_hex"], (n_past + n_new, nkv, d))
    params = dict(g["params"], n_past=n_past, n_new=n_new, n_kv=t["n_kv"],
                  scale=_f32(t["scale_f32_hex"], (1,))[0], fully_masked=list(t.get("fully_masked", [])))
    return q, k, v, params


def judge(case: Case, got, simd: bool = False) -> Verdict:
    t = case.data["test"]
    want = _f32(t["expected_f32_hex"], (t["n_new"], t["n_head"] * t["head_dim"]))
    got = np.asarray(got)
    if got.size != want.size:
        return Verdict.fail(f"{got.size} values returned, expected {want.size}")
    got = got.astype(np.float32).reshape(want.shape)
    if simd:
        bound = float(case.data["group"].get("native_max_abs", 0.0)) * SIMD_MARGIN
        with np.errstate(invalid="ignore"):
            err = float(np.nanmax(np.abs(got.astype(np.float64) - want)))
        if np.isnan(got).any() != np.isnan(want).any() or err > bound:
            return Verdict.fail(f"max |diff| {err:.3g} > SIMD bound {bound:.3g}")
        return Verdict.ok()
    d = float_diff(got, want, 4)
    if d is None:
        return Verdict.ok()
    idx = np.unravel_index(d["index"], want.shape)
    text = (f"index {tuple(int(i) for i in idx)} (token, head*dim): got {describe_bits(d['got'], 4)}, "
            f"expected {describe_bits(d['expected'], 4)} ({d['n']} of {d['size']} values differ)")
    return Verdict(d["kind"], text)


def check(impl, case: Case, ctx) -> Verdict:
    q, k, v, params = inputs(case)
    return judge(case, impl.attention(q, k, v, params), bool(getattr(impl, "simd", False)))


def exec_request(case: Case) -> dict:
    g, t = case.data["group"], case.data["test"]
    keys = ("n_head", "n_head_kv", "head_dim", "n_past", "n_new", "n_kv", "scale_f32_hex", "q_f32_hex",
            "k_f32_hex", "v_f32_hex")
    req = {"suite": "attention", "op": g["op"], "params": g["params"], **{k: t[k] for k in keys}}
    if t.get("fully_masked"):
        req["fully_masked"] = list(t["fully_masked"])
    return req


def exec_reply(case: Case, reply: dict) -> Verdict:
    if "hex" not in reply:
        return Verdict.fail(f"reply has no hex: {str(reply)[:120]}")
    return judge(case, np.frombuffer(bytes.fromhex(reply["hex"]), "<f4"), bool(reply.get("simd", False)))


SUITE = register(Suite(
    name="attention", ops=OPS, method="attention", load=load, check=check, subject_title="group",
    missing="vectors/model/attention.json is absent (python -m ggspec.vectors.generate_model makes it)",
    exec_request=exec_request, exec_reply=exec_reply))


def reference_attention(q, k, v, params):
    """ggspec's reference answering the suite (used by the reference adapter)."""
    from ...reference import attention as A

    n_past, n_new = int(params["n_past"]), int(params["n_new"])
    nkv, d = k.shape[1], k.shape[2]
    cache = A.KVCache(1, max(int(params["n_kv"]), 256), nkv, d, params["type_k"], params["type_v"])
    cells = cache.allocate(range(n_past + n_new))
    cache.store(0, k, v, cells)
    mask = cache.mask(range(n_past, n_past + n_new), cache.n_kv())
    for row in params.get("fully_masked", ()):
        mask[int(row), :] = -np.inf
    if params["flash_attn"]:
        return A.flash_attn_ext(q, cache, 0, mask, params["scale"], n_threads=int(params["n_threads"]))
    return A.attention_mul_mat(q, cache, 0, mask, params["scale"])
