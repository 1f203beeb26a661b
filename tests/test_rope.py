"""RoPE: the reference (ggspec.reference.rope) against ggml's own rope op, bit for bit.

The oracle runs ggml_rope_ext in a one-node graph (conformance/ggml_graph.py). Bit-exact means the
uint32 (float32) / uint16 (float16) views of the outputs are equal.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec.reference import rope as R

f32 = np.float32


class _Portable:
    """ggml_graph's ops, run by the portable oracle (the ground truth for RoPE)."""

    def __init__(self, oracle):
        self._o = oracle

    def __getattr__(self, name):
        return lambda *a, **k: self._o.call("ggspec.conformance.ggml_graph", "op", name, *a, **k)


@pytest.fixture(scope="module")
def graph(portable):
    return _Portable(portable)


@pytest.fixture(scope="module")
def native_graph(oracle):
    from ggspec.conformance import ggml_graph
    return ggml_graph.load()


def _has_avx512() -> bool:
    try:
        return " avx512f " in open("/proc/cpuinfo").read().replace("\n", " ")
    except OSError:
        return False


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    w = np.uint16 if a.dtype == np.float16 else np.uint32
    return a.shape == b.shape and np.array_equal(a.view(w), b.view(w))


def _n_bad(a, b) -> int:
    w = np.uint16 if a.dtype == np.float16 else np.uint32
    return int((a.view(w) != b.view(w)).sum())


# ---------------------------------------------------------------------------------------------
# pure-Python checks (no oracle)
# ---------------------------------------------------------------------------------------------

def _exact_fma(a, b, c):
    """Correctly rounded float32 a*b+c via exact rationals."""
    v = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    lo = f32(float(v))                       # float(v) is RN to double; fix double rounding below
    cands = {lo, np.nextafter(lo, f32(np.inf)), np.nextafter(lo, f32(-np.inf))}
    best = min(cands, key=lambda x: (abs(Fraction(float(x)) - v), int(np.array(x).view(np.uint32)) & 1))
    return best


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-2.0 ** 60, max_value=2.0 ** 60),
                min_size=3, max_size=3))
def test_fmaf_is_correctly_rounded(abc):
    a, b, c = (f32(v) for v in abc)
    got = R.fmaf(a, b, c)
    assert got == _exact_fma(a, b, c)


def test_fmaf_double_rounding_case():
    # a*b = 1 + 2^-11 + 2^-24 is exactly a float32 midpoint; adding c = 2^-80 puts the exact result
    # just above it. float64 rounding alone drops c, and the tie then goes to even (1 + 2^-11);
    # the correctly rounded fmaf is 1 + 2^-11 + 2^-23.
    a = b = f32(1 + 2.0 ** -12)
    c = f32(2.0 ** -80)
    assert f32(np.float64(a) * np.float64(b) + np.float64(c)) == f32(1 + 2.0 ** -11)   # the naive way
    assert R.fmaf(a, b, c) == f32(1 + 2.0 ** -11 + 2.0 ** -23)
    assert R.fmaf(a, b, -c) == f32(1 + 2.0 ** -11)
    assert R.fmaf(a, b, c) == _exact_fma(a, b, c)


def test_fused_pairs_rule():
    """The native AVX-512 model (contract="ggml-x86"); the default (the portable build) fuses nothing."""
    assert R.fused_pairs(3, "normal", "ggml-x86").tolist() == [False] * 3
    assert R.fused_pairs(6, "normal", "ggml-x86").tolist() == [True] * 4 + [False] * 2
    assert R.fused_pairs(64, "normal", "ggml-x86").all()
    assert R.fused_pairs(7, "neox", "ggml-x86").all()
    assert not R.fused_pairs(64, "normal").any()
    assert not R.fused_pairs(7, "neox").any()


def test_llama3_factors_match_hf_inv_freq():
    dim, base = 128, 500000.0
    ff = R.llama3_rope_freqs(dim, base, 8.0, 1.0, 4.0, 8192)
    inv = R.hf_default_inv_freq(dim, base)
    hf = R.hf_llama3_inv_freq(dim, base, 8.0, 1.0, 4.0, 8192)
    ggml_style = (inv / ff).astype(f32)
    rel = np.abs(ggml_style.astype(np.float64) / hf.astype(np.float64) - 1)
    assert rel.max() < 4e-7, rel.max()          # a few float32 ulps: two different float32 routes
    assert ff[0] == 1.0 and ff[-1] == 8.0


def test_theta_routes_differ_by_bounded_amount():
    """ggml's repeated float32 multiplication vs HF's float32 pos*inv_freq vs float64: documented numbers."""
    pos = np.array([1, 100, 4095, 32767, 32768])
    p = R.RopeParams(n_dims=128, freq_base=10000.0)
    c_g, s_g = R.rope_cache(pos, p, math="numpy")
    c_e, s_e = R.rope_cache(pos, p, math="numpy", theta="exact")
    ang_err = np.abs(np.arctan2(s_g, c_g).astype(np.float64) - np.arctan2(s_e, c_e).astype(np.float64))
    ang_err = np.minimum(ang_err, 2 * np.pi - ang_err)
    # theta drifts by ~i ulps of theta after i multiplications: at pos 32768 about 1e-3 rad at most
    assert ang_err.max() < 5e-3
    assert ang_err.max() > 1e-6                   # the routes really differ


def test_ntk_alpha_base():
    b = R.ntk_alpha_base(10000.0, 2.0, 128)
    assert abs(float(b) - 10000.0 * 2.0 ** (128 / 126)) / float(b) < 2e-7


def test_hf_dynamic_base():
    assert R.hf_dynamic_base(10000.0, 128, 2.0, 4096, 100) == 10000.0
    want = 10000.0 * (2.0 * 8192 / 4096 - 1) ** (128 / 126)
    assert R.hf_dynamic_base(10000.0, 128, 2.0, 4096, 8192) == pytest.approx(want, rel=1e-15)


def test_hf_yarn_equals_ggml_mix_formula():
    """transformers' YaRN inv_freq and ggml's theta mixing are the same formula (ext_factor = 1)."""
    dim, base, factor, orig = 64, 10000.0, 4.0, 2048
    inv, att = R.hf_yarn(dim, base, factor, orig)
    p = R.RopeParams(n_dims=dim, mode="neox", freq_base=base, freq_scale=1 / factor, ext_factor=1.0,
                     n_ctx_orig=orig)
    c, s = R.rope_cache(np.array([1]), p, math="numpy", contract="none", theta="exact")
    mag = np.hypot(c[0].astype(np.float64), s[0].astype(np.float64))
    theta = np.arctan2(s[0], c[0]).astype(np.float64)
    assert np.allclose(theta, inv.astype(np.float64), rtol=2e-6, atol=0)
    assert np.allclose(mag, att, rtol=1e-6)       # ggml: attn_factor(1) * (1 + 0.1 ln 4) == HF get_mscale(4)


# ---------------------------------------------------------------------------------------------
# against ggml's rope op
# ---------------------------------------------------------------------------------------------

def _positions(rng, n):
    fixed = np.array([0, 1, 2, 4095, 4096, 8191, 16384, 32767, 32768], dtype=np.int32)
    return np.concatenate([fixed, rng.integers(0, 32769, n).astype(np.int32)])


SCALINGS = ["none", "linear", "ntk", "yarn", "llama3", "longrope"]


def _params(kind, mode, n_dims, data):
    if kind == "none":
        return R.RopeParams(n_dims=n_dims, mode=mode)
    if kind == "linear":
        return R.RopeParams(n_dims=n_dims, mode=mode, freq_scale=float(f32(1 / data.draw(st.sampled_from([2, 4, 8, 16, 3])))))
    if kind == "ntk":
        base = float(R.ntk_alpha_base(10000.0, data.draw(st.floats(1.0, 8.0)), n_dims))
        return R.RopeParams(n_dims=n_dims, mode=mode, freq_base=base)
    if kind == "yarn":
        s = data.draw(st.sampled_from([2, 4, 8, 16, 32]))
        return R.RopeParams(n_dims=n_dims, mode=mode, freq_base=data.draw(st.sampled_from([10000.0, 1e6, 500000.0])),
                            freq_scale=float(f32(1 / s)), ext_factor=data.draw(st.sampled_from([1.0, 0.5, 0.25])),
                            attn_factor=data.draw(st.floats(0.5, 1.5, width=32)),
                            beta_fast=data.draw(st.sampled_from([32.0, 16.0, 8.0])),
                            beta_slow=data.draw(st.sampled_from([1.0, 2.0])),
                            n_ctx_orig=data.draw(st.sampled_from([2048, 4096, 8192])))
    if kind == "llama3":
        return R.RopeParams(n_dims=n_dims, mode=mode, freq_base=500000.0,
                            freq_factors=tuple(R.llama3_rope_freqs(n_dims, 500000.0, 8.0, 1.0, 4.0, 8192)))
    if kind == "longrope":
        ff = data.draw(st.lists(st.floats(1.0, 64.0, width=32), min_size=n_dims // 2, max_size=n_dims // 2))
        return R.RopeParams(n_dims=n_dims, mode=mode, freq_factors=tuple(ff), attn_factor=1.19)
    raise AssertionError(kind)


@pytest.mark.oracle
@given(data=st.data())
def test_rope_bit_exact_against_ggml(graph, data):
    kind = data.draw(st.sampled_from(SCALINGS))
    mode = data.draw(st.sampled_from(["normal", "neox"]))
    n_dims = data.draw(st.sampled_from([2, 4, 6, 8, 10, 14, 16, 18, 24, 30, 32, 64, 128]))
    extra = data.draw(st.sampled_from([0, 0, 2, 8]))
    dtype = data.draw(st.sampled_from([np.float32, np.float32, np.float16]))
    p = _params(kind, mode, n_dims, data)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    pos = _positions(rng, 24)
    scale = data.draw(st.sampled_from([1e-3, 1.0, 50.0]))
    x = (rng.standard_normal((pos.size, 3, n_dims + extra)) * scale).astype(dtype)
    want = graph.rope_ext(x, pos, **p.ggml_kwargs())
    got = R.apply_rope(x, pos, p)
    assert _same(got, want), f"{kind} {mode} n_dims={n_dims} {dtype.__name__}: {_n_bad(got, want)} values differ"


@pytest.mark.oracle
def test_rope_every_position_to_32768(graph):
    """All positions 0..32768, head_dim 128, YaRN x8 (the worst case for theta drift): bit-exact."""
    pos = np.arange(0, 32769, dtype=np.int32)
    x = np.random.default_rng(7).standard_normal((pos.size, 1, 128)).astype(f32)
    p = R.RopeParams(n_dims=128, mode="normal", freq_scale=0.125, ext_factor=1.0, n_ctx_orig=4096)
    assert _same(R.apply_rope(x, pos, p), graph.rope_ext(x, pos, **p.ggml_kwargs()))


@pytest.mark.oracle
def test_contraction_and_libm_matter(graph):
    """Contracting multiply-adds (the native-build model) or numpy's sin/cos changes the bits: the
    portable build is matched only by the plain float32 order with the C library's functions."""
    rng = np.random.default_rng(3)
    pos = _positions(rng, 40)
    x = rng.standard_normal((pos.size, 2, 64)).astype(f32)
    p = R.RopeParams(n_dims=64, mode="neox", freq_scale=0.25, ext_factor=1.0, n_ctx_orig=4096)
    want = graph.rope_ext(x, pos, **p.ggml_kwargs())
    assert _same(R.apply_rope(x, pos, p), want)
    assert not _same(R.apply_rope(x, pos, p, contract="ggml-x86"), want)
    assert not _same(R.apply_rope(x, pos, p, math="numpy"), want)


@pytest.mark.oracle
@pytest.mark.skipif(not _has_avx512(), reason="the ggml-x86 contraction model describes a native build on an "
                    "AVX-512 CPU; native builds elsewhere contract differently (not part of the definition)")
def test_native_avx512_contraction_model(native_graph):
    rng = np.random.default_rng(3)
    pos = _positions(rng, 40)
    x = rng.standard_normal((pos.size, 2, 64)).astype(f32)
    p = R.RopeParams(n_dims=64, mode="neox", freq_scale=0.25, ext_factor=1.0, n_ctx_orig=4096)
    assert _same(R.apply_rope(x, pos, p, contract="ggml-x86"), native_graph.rope_ext(x, pos, **p.ggml_kwargs()))
    p6 = R.RopeParams(n_dims=12, mode="normal")
    x6 = rng.standard_normal((pos.size, 4, 12)).astype(f32)
    assert _same(R.apply_rope(x6, pos, p6, contract="ggml-x86"), native_graph.rope_ext(x6, pos, **p6.ggml_kwargs()))


@pytest.mark.oracle
@given(n_dims=st.sampled_from([16, 64, 80, 128, 256]), n_ctx_orig=st.sampled_from([512, 2048, 4096, 8192, 131072]),
       base=st.sampled_from([10000.0, 500000.0, 1e6, 5e6]), beta_fast=st.floats(1.0, 64.0, width=32),
       beta_slow=st.floats(0.25, 4.0, width=32))
def test_yarn_corr_dims(graph, n_dims, n_ctx_orig, base, beta_fast, beta_slow):
    got = R.yarn_corr_dims(n_dims, n_ctx_orig, base, beta_fast, beta_slow)
    want = graph.rope_yarn_corr_dims(n_dims, n_ctx_orig, base, beta_fast, beta_slow)
    assert (float(got[0]), float(got[1])) == want


@pytest.mark.oracle
def test_thread_count_does_not_change_bits(graph):
    rng = np.random.default_rng(5)
    pos = _positions(rng, 30)
    x = rng.standard_normal((pos.size, 4, 64)).astype(f32)
    p = R.RopeParams(n_dims=64, freq_scale=0.5, ext_factor=1.0, n_ctx_orig=2048)
    assert _same(graph.rope_ext(x, pos, n_threads=2, **p.ggml_kwargs()), graph.rope_ext(x, pos, **p.ggml_kwargs()))


# ---------------------------------------------------------------------------------------------
# ggspec rope --explain
# ---------------------------------------------------------------------------------------------

def test_explain_llama_cpp_yarn_flags():
    from ggspec.conformance import cmd_rope
    r = cmd_rope.explain(["--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "4096", "-c", "32768"])
    assert (r["freq_scale"], r["ext_factor"], r["n_ctx_orig"], r["beta_fast"], r["beta_slow"]) == (0.25, 1.0, 4096, 32.0, 1.0)
    # llama_context: attn_factor = get_mscale(4) / (1 + 0.1 ln 4), ggml multiplies by 1 + 0.1 ln 4 again
    assert abs(r["attn_factor"] - 1.0) < 1e-6
    assert r["yarn_corr_dims"] == [20.0, 46.0]
    r = cmd_rope.explain("--rope-freq-base 500000 --rope-freq-scale 0.5")
    assert (r["freq_base"], r["freq_scale"], r["ext_factor"]) == (500000.0, 0.5, 0.0)
    r = cmd_rope.explain(["--rope-scaling", "none", "--rope-freq-scale", "0.5"])
    assert r["freq_scale"] == 1.0                      # "never scale if scaling type is none"


def test_explain_hf_dicts():
    from ggspec.conformance import cmd_rope
    r = cmd_rope.explain('{"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, '
                         '"original_max_position_embeddings": 8192}', head_dim=128, freq_base=500000.0)
    assert r["freq_factors"] == R.llama3_rope_freqs(128, 500000.0).tolist()
    r = cmd_rope.explain({"type": "linear", "factor": 2})
    assert r["freq_scale"] == 0.5
    r = cmd_rope.explain({"compress_pos_emb": 4})
    assert r["freq_scale"] == 0.25
    r = cmd_rope.explain({"type": "dynamic", "factor": 2}, n_ctx=8192, head_dim=128)
    assert r["freq_base"] == float(f32(10000.0 * 3.0 ** (128 / 126)))
    r = cmd_rope.explain({"type": "yarn", "factor": 4, "original_max_position_embeddings": 2048})
    assert (r["freq_scale"], r["ext_factor"], r["n_ctx_orig"]) == (0.25, 1.0, 2048)
    lr = {"type": "longrope", "short_factor": [1, 1], "long_factor": [2, 3],
          "original_max_position_embeddings": 4096, "max_position_embeddings": 131072}
    assert cmd_rope.explain(lr, head_dim=4, n_ctx=4096)["freq_factors"] == [1.0, 1.0]
    r = cmd_rope.explain(lr, head_dim=4, n_ctx=8192)
    assert r["freq_factors"] == [2.0, 3.0]
    assert r["attn_factor"] == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)), rel=1e-7)


def test_cli_rope_json(capsys):
    import json
    from ggspec.cli import main
    assert main(["rope", "--explain", "--json", "--", "--rope-scaling", "yarn", "--rope-scale", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["freq_scale"] == 0.125 and out["ext_factor"] == 1.0
    assert main(["rope", "--explain", '{"type": "linear", "factor": 4}', "--head-dim", "64"]) == 0
    assert "freq_scale     0.25" in capsys.readouterr().out
