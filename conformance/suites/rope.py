"""The ``rope`` suite: ggml_rope_ext (``vectors/model/rope.json``, made by vectors/generate_model.py).

Rows are the parameter groups (mode x head_dim/n_dims x scaling), columns the input dtype
(``float32``, ``float16``). An implementation answers through

    rope(x, pos, params) -> array of x's shape and dtype

``x`` is float32 or float16 ``(n_tokens, n_head, head_dim)``, ``pos`` int32 ``(n_tokens,)`` and
``params`` the group's ``params`` dict exactly as in the vector file (``mode`` "normal"/"neox",
``mode_id``, ``n_dims``, ``freq_base``, ``freq_scale``, ``ext_factor``, ``attn_factor``,
``beta_fast``, ``beta_slow``, ``n_ctx_orig``) plus ``freq_factors``: a float32 array or None.
Results are compared bit for bit (uint32 / uint16 views); a difference only in NaN/zero-sign bits
is ``nan-bits``. ``rope`` raising ``ggspec.errors.UnsupportedTypeError`` marks that case unsupported
(a variant the implementation does not have, e.g. YaRN). An implementation whose ``simd`` attribute is true (a native build with FMA
contraction or vector math, e.g. llama.cpp's own native build; ``"simd": true`` in an exec hello)
is judged instead against the group's ``native_max_ulp`` (the distance of llama.cpp's native build,
measured when the vectors were made; at least 1) times ``SIMD_MARGIN``, in units in the last place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Case, Suite, Verdict, load_test_groups, register
from ...errors import UnsupportedTypeError
from ..compare import describe_bits, float_diff

OPS = ("float32", "float16")
SIMD_MARGIN = 4


def ulp_distance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|a - b| in units in the last place (float32 or float16), on the ordered-integer line."""
    it, bits = (np.int16, 16) if want.dtype == np.float16 else (np.int32, 32)
    a = np.ascontiguousarray(got, want.dtype).view(it).astype(np.int64).reshape(-1)
    b = np.ascontiguousarray(want).view(it).astype(np.int64).reshape(-1)
    lo = -(1 << (bits - 1))
    a = np.where(a < 0, lo - a, a)
    b = np.where(b < 0, lo - b, b)
    return np.abs(a - b)


def vector_path(root=None) -> Path:
    if root is None:
        from ..vectors import vectors_root
        root = vectors_root()
    return Path(root) / "model" / "rope.json"


def _decode(h: str, dtype: str, shape) -> np.ndarray:
    dt = "<f2" if dtype == "float16" else "<f4"
    return np.frombuffer(bytes.fromhex(h), dtype=dt).reshape(shape).astype(
        np.float16 if dtype == "float16" else np.float32)


def load(root):
    return load_test_groups(vector_path(root), lambda g, t: (g["name"], t["dtype"], {"group": g, "test": t}))


def params_of(group: dict) -> dict:
    p = dict(group["params"])
    ff = p.pop("freq_factors_f32_hex", None)
    p["freq_factors"] = np.frombuffer(bytes.fromhex(ff), "<f4").astype(np.float32) if ff else None
    return p


def judge(case: Case, got, simd: bool = False) -> Verdict:
    t = case.data["test"]
    want = _decode(t["expected_hex"], t["dtype"], t["shape"])
    width = 2 if t["dtype"] == "float16" else 4
    got = np.asarray(got)
    if got.dtype != want.dtype:
        try:
            got = got.astype(want.dtype)
        except Exception:
            return Verdict.fail(f"returned dtype {got.dtype}, expected {want.dtype}")
    if simd and "native_max_ulp" in case.data["group"] and got.size == want.size:
        bound = max(int(case.data["group"]["native_max_ulp"]), 1) * SIMD_MARGIN
        nan_g, nan_w = np.isnan(got.reshape(-1)), np.isnan(want.reshape(-1))
        dist = ulp_distance(got, want)
        dist[nan_g & nan_w] = 0
        worst = int(dist.max()) if dist.size else 0
        if (nan_g != nan_w).any() or worst > bound:
            i = int(np.argmax(dist))
            return Verdict.fail(f"{worst} ulp at flat index {i} > SIMD bound {bound} ulp "
                                f"(native_max_ulp {case.data['group']['native_max_ulp']} x {SIMD_MARGIN})")
        return Verdict.ok()
    d = float_diff(got, want, width)
    if d is None:
        return Verdict.ok()
    if d["got"] is None:
        return Verdict.fail(f"{d.get('got_size')} values returned, expected {d['size']}")
    idx = np.unravel_index(d["index"], want.shape)
    text = (f"index {tuple(int(i) for i in idx)} (token, head, dim): got {describe_bits(d['got'], width)}, "
            f"expected {describe_bits(d['expected'], width)} ({d['n']} of {d['size']} values differ)")
    return Verdict(d["kind"], text)


def check(impl, case: Case, ctx) -> Verdict:
    g, t = case.data["group"], case.data["test"]
    x = _decode(t["input_hex"], t["dtype"], t["shape"])
    try:
        got = impl.rope(x, np.array(t["pos"], np.int32), params_of(g))
    except UnsupportedTypeError as e:      # the implementation has no such RoPE variant
        return Verdict.unsupported(str(e))
    return judge(case, got, bool(getattr(impl, "simd", False)))


def exec_request(case: Case) -> dict:
    g, t = case.data["group"], case.data["test"]
    return {"suite": "rope", "op": "rope_ext", "dtype": t["dtype"], "shape": t["shape"], "pos": t["pos"],
            "params": g["params"], "input_hex": t["input_hex"]}


def exec_reply(case: Case, reply: dict) -> Verdict:
    if "hex" not in reply:
        return Verdict.fail(f"reply has no hex: {str(reply)[:120]}")
    t = case.data["test"]
    dt = "<f2" if t["dtype"] == "float16" else "<f4"
    return judge(case, np.frombuffer(bytes.fromhex(reply["hex"]), dt), bool(reply.get("simd", False)))


SUITE = register(Suite(
    name="rope", ops=OPS, method="rope", load=load, check=check, subject_title="group",
    missing="vectors/model/rope.json is absent (python -m ggspec.vectors.generate_model makes it)",
    exec_request=exec_request, exec_reply=exec_reply))
