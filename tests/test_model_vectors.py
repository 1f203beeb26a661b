"""RoPE golden vectors (made by ggml's own ggml_rope_ext) against the reference, and regeneration."""

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
        for key in ("none", "linear", "ntk", "yarn", "llama3", "longrope"):
            assert f"{mode}-{key}" in names


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
        got = R.apply_rope(x, np.array(t["pos"], np.int32), params, math="libm", contract="ggml-x86")
        uint = np.uint16 if t["dtype"] == "float16" else np.uint32
        bad = np.flatnonzero(got.view(uint).ravel() != want.view(uint).ravel())
        assert bad.size == 0, f"tcId {t['tcId']}: {bad.size} values differ, first at flat index {bad[0]}"


@pytest.mark.oracle
def test_rope_vectors_regenerate_identically(oracle, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ggspec.vectors.generate_model", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "model" / "rope.json").read_bytes() == (vectors_root() / "model" / "rope.json").read_bytes()
