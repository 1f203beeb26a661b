"""Attention, bit-exact against llama.cpp's portable build (ggml's CPU ops run in a child process):
soft_max_ext, rms_norm, silu/swiglu, and both attention paths (mul_mat + soft_max + mul_mat, and
flash_attn_ext with its one-chunk, tiled and split-KV kernels), for F32/F16 KV caches, MHA/GQA/MQA,
causal masks, several ubatches and decode steps through the cache."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ggspec.reference import attention as A
from ggspec.reference import ops

f32 = np.float32
G = "ggspec.conformance.ggml_graph"


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, f32), np.asarray(b, f32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def first_diff(a, b) -> str:
    a, b = np.asarray(a, f32).ravel(), np.asarray(b, f32).ravel()
    i = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    return "equal" if i.size == 0 else f"{i.size} differ; first at {i[0]}: {a[i[0]]!r} vs {b[i[0]]!r}"


# ------------------------------------------------------------------------------------------------
# pure checks (no oracle)

def test_v_expf_close_to_exp():
    x = np.linspace(-100, 88, 100001).astype(f32)
    got = ops.v_expf(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    normal = want > 1.2e-38                       # subnormal results carry fewer bits
    rel = np.abs(got - want)[normal] / want[normal]
    assert rel.max() < 4e-7                       # ggml's comment: 1.45358 ulp + 0.5
    assert ops.v_expf(np.array([-np.inf], f32))[0] == 0
    assert np.isnan(ops.v_expf(np.array([np.nan], f32))[0])


def test_kv_window_and_mask():
    c = A.KVCache(1, 1024, 2, 8, "F16", "F16")
    c.allocate(range(10))
    assert c.n_kv() == 256
    m = c.mask([7, 8, 9], c.n_kv())
    assert m.shape == (3, 256)
    assert (m[0, :8] == 0).all() and (m[0, 8:] == -np.inf).all()
    c.allocate(range(10, 300))
    assert c.n_kv() == 512


def test_fa_kernel_choice():
    assert A.fa_kernel(1, 512, "F16", "F16", 2) == "split-kv"
    assert A.fa_kernel(1, 256, "F16", "F16", 2) == "one-chunk"
    assert A.fa_kernel(64, 256, "F16", "F16", 1) == "tiled"
    assert A.fa_kernel(63, 256, "F16", "F16", 1) == "one-chunk"
    assert A.fa_kernel(64, 256, "F16", "F32", 1) == "one-chunk"


# ------------------------------------------------------------------------------------------------
# against the portable oracle

@pytest.mark.oracle
@pytest.mark.parametrize("n", [1, 7, 37, 256, 512])
def test_soft_max_ext_bit_exact(portable, n):
    rng = np.random.default_rng(n)
    z = (rng.standard_normal((40, n)) * 5).astype(f32)
    m = np.where(rng.random((40, n)) < 0.3, f32(-np.inf), f32(0)).astype(f32)
    m[:, 0] = 0
    want = portable.call(G, "op", "soft_max_ext", z, m, scale=0.125)
    got = ops.soft_max_ext(z, m, 0.125)
    assert same_bits(want, got), first_diff(want, got)


@pytest.mark.oracle
@given(seed=st.integers(0, 2 ** 31), n=st.sampled_from([32, 576, 4096]),
       scale=st.sampled_from([1e-3, 1.0, 100.0]), eps=st.sampled_from([1e-5, 1e-6, 0.0]))
@settings(max_examples=8, deadline=None)
def test_rms_norm_bit_exact(portable, seed, n, scale, eps):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((5, n)) * scale).astype(f32)
    w = (1 + 0.1 * rng.standard_normal(n)).astype(f32)
    want = portable.call(G, "op", "rms_norm_mul", x, w, eps)
    assert same_bits(want, ops.rms_norm(x, eps, w))


def _cache_and_q(rng, n_head, n_head_kv, d, n_past, n_new, type_k, type_v, n_ctx=1024):
    c = A.KVCache(1, n_ctx, n_head_kv, d, type_k, type_v)
    kv_k, kv_v = [], []
    for start, n in ((0, n_past), (n_past, n_new)):
        if n == 0:
            continue
        cells = c.allocate(range(start, start + n))
        k = (rng.standard_normal((n, n_head_kv, d)) * 2).astype(f32)
        v = rng.standard_normal((n, n_head_kv, d)).astype(f32)
        c.store(0, k, v, cells)
        kv_k.append(k)
        kv_v.append(v)
    q = (rng.standard_normal((n_new, n_head, d)) * 2).astype(f32)
    pos = np.arange(n_past, n_past + n_new)
    n_kv = c.n_kv()
    mask = c.mask(pos, n_kv)
    k_all = np.zeros((n_kv, n_head_kv, d), f32)
    v_all = np.zeros((n_kv, n_head_kv, d), f32)
    k_all[:n_past + n_new] = np.concatenate(kv_k)
    v_all[:n_past + n_new] = np.concatenate(kv_v)
    return c, q, k_all, v_all, mask


CASES = [  # (n_head, n_head_kv, d, n_past, n_new)
    (4, 4, 64, 0, 9),       # MHA prompt
    (8, 2, 64, 5, 3),       # GQA, a second ubatch
    (6, 1, 32, 0, 1),       # MQA, first token
    (4, 2, 64, 40, 1),      # GQA decode step through the cache
    (4, 2, 64, 0, 70),      # >= 64 tokens: the tiled flash kernel
    (2, 1, 64, 300, 1),     # decode over 512 cells: split-KV
    (2, 2, 128, 260, 5),    # two KV windows of 256
]


PATHS = [(t, flash) for flash in (False, True)
         for t in [("F16", "F16"), ("F32", "F32"), ("F16", "F32"), ("Q8_0", "F16"), ("Q8_0", "Q8_0")]
         if flash or t[1] != "Q8_0"]     # llama.cpp refuses a quantized V cache without flash attention


@pytest.mark.oracle
@pytest.mark.parametrize("types,flash", PATHS, ids=lambda p: "-".join(p) if isinstance(p, tuple) else
                         ("flash" if p else "mul_mat"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "h{}kv{}d{}p{}n{}".format(*c))
def test_attention_bit_exact(portable, case, types, flash):
    n_head, n_head_kv, d, n_past, n_new = case
    rng = np.random.default_rng(zlib.crc32(repr((case, types, flash)).encode()))
    c, q, k_all, v_all, mask = _cache_and_q(rng, n_head, n_head_kv, d, n_past, n_new, *types)
    scale = A.kq_scale(d)
    for n_threads in (1, 2):
        want = portable.call(G, "op", "attention", q, k_all, v_all, mask, float(scale), type_k=types[0],
                             type_v=types[1], flash_attn=flash, n_threads=n_threads)
        if flash:
            got = A.flash_attn_ext(q, c, 0, mask, scale, n_threads=n_threads)
        else:
            got = A.attention_mul_mat(q, c, 0, mask, scale)
        assert same_bits(want, got), f"{n_threads} threads, kernel " \
            f"{A.fa_kernel(n_new, mask.shape[1], *types, n_threads) if flash else 'mul_mat'}: {first_diff(want, got)}"


@pytest.mark.oracle
def test_split_kv_depends_on_threads(portable):
    """The one place threads change bits: flash attention's split-KV kernel. The reference models the
    thread count, and the oracle shows the dependence is real (so the parameter is needed)."""
    rng = np.random.default_rng(5)
    c, q, k_all, v_all, mask = _cache_and_q(rng, 2, 1, 64, 700, 1, "F16", "F16")
    scale = A.kq_scale(64)
    outs = {}
    for nt in (1, 2, 3):
        want = portable.call(G, "op", "attention", q, k_all, v_all, mask, float(scale), flash_attn=True,
                             n_threads=nt)
        assert same_bits(want, A.flash_attn_ext(q, c, 0, mask, scale, n_threads=nt))
        outs[nt] = want
    assert not (same_bits(outs[1], outs[2]) and same_bits(outs[2], outs[3]))
