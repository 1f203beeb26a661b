"""Model-math golden vectors (RoPE, attention; made by llama.cpp's portable build) against the reference,
and regeneration."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ggspec.conformance.vectors import vectors_root
from ggspec.reference import rope as R

ROPE = json.loads((vectors_root() / "model" / "rope.json").read_text())


def _decode(h: str, dtype: str, shape):
    dt = "<f2" if dtype == "float16" else "<f4"
    return np.frombuffer(bytes.fromhex(h), dtype=dt).reshape(shape).astype(np.float16 if dtype == "float16" else np.float32)


def test_rope_vectors_cover_every_scaling_and_both_modes():
    names = {g["name"].split("-")[0] + "-" + g["name"].split("-")[1] for g in ROPE["testGroups"]}
    for mode in ("normal", "neox"):
        for key in ("none", "linear4", "linear3", "linear8", "linear32", "ntk", "yarn4", "yarn40", "yarn7.3", "llama3",
                    "longrope", "base5e5", "base1e6"):
            assert f"{mode}-{key}" in names, f"{mode}-{key}"
    widths = {g["params"]["n_dims"] for g in ROPE["testGroups"]}
    assert {4, 20, 24, 32, 36, 40, 44, 60, 64, 128, 256} <= widths


@pytest.mark.skipif(not R.libm_available(), reason="bit-exact RoPE needs the C library's sinf/cosf (ctypes)")
@pytest.mark.parametrize("group", ROPE["testGroups"], ids=lambda g: g["name"])
def test_reference_rope_matches_ggml_vectors(group):
    p = group["params"]
    ff = None
    if "freq_factors_f32_hex" in p:
        ff = tuple(np.frombuffer(bytes.fromhex(p["freq_factors_f32_hex"]), "<f4").tolist())
    params = R.RopeParams(n_dims=p["n_dims"], mode=p["mode"], freq_base=p["freq_base"], freq_scale=p["freq_scale"],
                          ext_factor=p["ext_factor"], attn_factor=p["attn_factor"], beta_fast=p["beta_fast"],
                          beta_slow=p["beta_slow"], n_ctx_orig=p["n_ctx_orig"], freq_factors=ff)
    for t in group["tests"]:
        x = _decode(t["input_hex"], t["dtype"], t["shape"])
        want = _decode(t["expected_hex"], t["dtype"], t["shape"])
        got = R.apply_rope(x, np.array(t["pos"], np.int32), params, math="libm")
        uint = np.uint16 if t["dtype"] == "float16" else np.uint32
        bad = np.flatnonzero(got.view(uint).ravel() != want.view(uint).ravel())
        assert bad.size == 0, f"tcId {t['tcId']}: {bad.size} values differ, first at flat index {bad[0]}"


ATTN = json.loads((vectors_root() / "model" / "attention.json").read_text())


def _f32(h, shape):
    return np.frombuffer(bytes.fromhex(h), "<f4").reshape(shape).astype(np.float32)


@pytest.mark.parametrize("group", ATTN["testGroups"], ids=lambda g: g["name"])
def test_reference_attention_matches_vectors(group):
    from ggspec.reference import attention as A

    p = group["params"]
    for t in group["tests"]:
        nh, nkv, d, n_past, n_new = t["n_head"], t["n_head_kv"], t["head_dim"], t["n_past"], t["n_new"]
        cache = A.KVCache(1, max(t["n_kv"], 256), nkv, d, p["type_k"], p["type_v"])
        cells = cache.allocate(range(n_past + n_new))
        cache.store(0, _f32(t["k_f32_hex"], (n_past + n_new, nkv, d)), _f32(t["v_f32_hex"], (n_past + n_new, nkv, d)), cells)
        q = _f32(t["q_f32_hex"], (n_new, nh, d))
        mask = cache.mask(range(n_past, n_past + n_new), cache.n_kv())
        for row in t.get("fully_masked", []):
            mask[row, :] = -np.inf
        scale = _f32(t["scale_f32_hex"], (1,))[0]
        if p["flash_attn"]:
            got = A.flash_attn_ext(q, cache, 0, mask, scale, n_threads=p["n_threads"])
        else:
            got = A.attention_mul_mat(q, cache, 0, mask, scale)
        want = _f32(t["expected_f32_hex"], got.shape)
        bad = np.flatnonzero(got.view(np.uint32).ravel() != want.view(np.uint32).ravel())
        assert bad.size == 0, f"tcId {t['tcId']} ({t['comment']}): {bad.size} values differ"


def _strip_native(obj):
    """The native-build tolerances depend on the generating CPU; everything else must regenerate exactly."""
    if isinstance(obj, dict):
        return {k: _strip_native(v) for k, v in obj.items() if not k.startswith("native_")}
    if isinstance(obj, list):
        return [_strip_native(v) for v in obj]
    return obj


@pytest.mark.oracle
def test_model_vectors_regenerate_identically(oracle, portable, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ggspec.vectors.generate_model", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    for name in ("rope.json", "attention.json"):
        new = json.loads((tmp_path / "model" / name).read_text())
        old = json.loads((vectors_root() / "model" / name).read_text())
        assert _strip_native(new) == _strip_native(old), name


FORWARD_DIR = vectors_root() / "model" / "forward"
FORWARD = json.loads((FORWARD_DIR / "manifest.json").read_text())["cases"] if (FORWARD_DIR / "manifest.json").exists() else []


def test_forward_vectors_present_and_small():
    assert FORWARD, "vectors/model/forward/manifest.json is missing"
    total = sum(p.stat().st_size for p in FORWARD_DIR.iterdir())
    assert total < 15 * 2 ** 20, f"forward vectors are {total} bytes (budget 15 MB)"
    archs = {c["architecture"] for c in FORWARD}
    assert {"llama", "llama-tied", "qwen2", "moe"} <= archs


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: c["name"])
def test_reference_forward_matches_vectors(case):
    import hashlib

    from ggspec.reference.llama import ContextParams, LlamaModel

    path = FORWARD_DIR / case["model"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == case["model_sha256"]
    doc = json.loads((FORWARD_DIR / case["vectors"]).read_text())
    m = LlamaModel.from_gguf(path)
    for run in doc["runs"]:
        got, gen = m.run(run["tokens"], ContextParams(**run["context"]), run["n_predict"])
        got = got[int(run.get("logits_from", 0)):]           # a long run keeps only its last rows
        want = _f32(run["expected_logits_f32_hex"], run["logits_shape"])
        bad = np.argwhere(got.view(np.uint32) != want.view(np.uint32))
        assert bad.size == 0, f"{run['name']}: {len(bad)} logits differ, first at {tuple(bad[0])}"
        assert gen == run["greedy"], run["name"]


@pytest.mark.oracle
def test_forward_vectors_regenerate_identically(oracle, portable, tmp_path):
    """A sample of the forward cases (one per architecture, with its extra contexts) regenerates
    byte for byte: the GGUF and the expected logits (the native tolerance excepted)."""
    names = ["llama-f16-gqa-ntk", "llama-tied-q8_0-gqa", "qwen2-q4_k_m-gqa", "moe-q6_k-gqa", "moe-f32-hd24-x6"]
    out = subprocess.run([sys.executable, "-m", "ggspec.vectors.generate_forward", "--out", str(tmp_path),
                          "--only", ",".join(names)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    for name in names:
        assert (tmp_path / "model" / "forward" / f"{name}.gguf").read_bytes() == (FORWARD_DIR / f"{name}.gguf").read_bytes()
        new = json.loads((tmp_path / "model" / "forward" / f"{name}.json").read_text())
        old = json.loads((FORWARD_DIR / f"{name}.json").read_text())
        assert _strip_native(new) == _strip_native(old), name
