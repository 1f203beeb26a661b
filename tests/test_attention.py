"""Attention reference: GQA/MQA semantics, causality, KV cache, and ggml's softmax / rms_norm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec.reference import attention as A
from ggspec.reference import llama as L

f32 = np.float32


def _naive(q, k, v, q_pos, k_pos):
    """Independent float64 attention (no float32 rounding at all)."""
    n_q, nh, d = q.shape
    g = nh // k.shape[1]
    out = np.zeros((n_q, nh, v.shape[2]))
    for h in range(nh):
        s = q[:, h, :].astype(np.float64) @ k[:, h // g, :].astype(np.float64).T / np.sqrt(d)
        s[np.asarray(k_pos)[None, :] > np.asarray(q_pos)[:, None]] = -np.inf
        s -= s.max(1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(1, keepdims=True)
        out[:, h, :] = p @ v[:, h // g, :].astype(np.float64)
    return out


@given(n_head=st.sampled_from([1, 2, 4, 8]), kv_div=st.sampled_from([1, 2, 4, 8]), n=st.integers(1, 12),
       d=st.sampled_from([4, 16, 64]), seed=st.integers(0, 2 ** 31))
def test_attention_close_to_float64(n_head, kv_div, n, d, seed):
    if n_head % kv_div:
        kv_div = 1
    nkv = n_head // kv_div
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n_head, d)).astype(f32)
    k = rng.standard_normal((n, nkv, d)).astype(f32)
    v = rng.standard_normal((n, nkv, d)).astype(f32)
    pos = np.arange(n)
    got = A.attention(q, k, v, pos, pos)
    want = _naive(q, k, v, pos, pos)
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gqa_equals_mha_with_repeated_kv():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((7, 8, 16)).astype(f32)
    k = rng.standard_normal((7, 2, 16)).astype(f32)
    v = rng.standard_normal((7, 2, 16)).astype(f32)
    pos = np.arange(7)
    gqa = A.attention(q, k, v, pos, pos)
    mha = A.attention(q, np.repeat(k, 4, axis=1), np.repeat(v, 4, axis=1), pos, pos)
    assert np.array_equal(gqa.view(np.uint32), mha.view(np.uint32))
    # MQA: one KV head shared by all
    mqa = A.attention(q, k[:, :1], v[:, :1], pos, pos)
    assert np.array_equal(mqa.view(np.uint32), A.attention(q, np.repeat(k[:, :1], 8, 1), np.repeat(v[:, :1], 8, 1), pos, pos).view(np.uint32))


def test_causal_future_does_not_leak():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((6, 2, 8)).astype(f32) for _ in range(3))
    pos = np.arange(6)
    a = A.attention(q, k, v, pos, pos)
    k2, v2 = k.copy(), v.copy()
    k2[4:] += 3
    v2[4:] -= 5
    b = A.attention(q, k2, v2, pos, pos)
    assert np.array_equal(a[:4], b[:4]) and not np.array_equal(a[4:], b[4:])


def test_kv_cache_incremental_matches_batch():
    rng = np.random.default_rng(3)
    n, nh, nkv, d = 9, 4, 2, 16
    q, = (rng.standard_normal((n, nh, d)).astype(f32),)
    k = rng.standard_normal((n, nkv, d)).astype(f32)
    v = rng.standard_normal((n, nkv, d)).astype(f32)
    pos = np.arange(n)
    full = A.attention(q, k, v, pos, pos)
    cache = A.KVCache(1)
    kk, vv, pp = cache.append(0, k[:5], v[:5], pos[:5])
    parts = [A.attention(q[:5], kk, vv, pos[:5], pp)]
    for i in range(5, n):
        kk, vv, pp = cache.append(0, k[i:i + 1], v[i:i + 1], pos[i:i + 1])
        parts.append(A.attention(q[i:i + 1], kk, vv, pos[i:i + 1], pp))
    inc = np.concatenate(parts)
    assert np.allclose(inc, full, rtol=2e-7, atol=0)
    assert cache.n_tokens == n


def test_kv_cache_f16_rounds():
    c = A.KVCache(1, kv_dtype="f16")
    k, v, _ = c.append(0, np.full((1, 1, 2), 1 + 2 ** -13, f32), np.ones((1, 1, 2), f32), [0])
    assert k[0, 0, 0] == 1.0


def test_kq_scale():
    assert A.kq_scale(64) == f32(0.125)
    assert A.kq_scale(80) == f32(1) / np.sqrt(f32(80))


@pytest.fixture(scope="module")
def graph(oracle):
    from ggspec.conformance import ggml_graph
    return ggml_graph.load()


@pytest.mark.oracle
def test_softmax_against_ggml(graph):
    """ggml_soft_max_ext uses a polynomial expf (ggml_v_expf); the reference exp is float64.
    Bound: 8 ulp per probability (observed max 4 ulp, on ~27% of values)."""
    rng = np.random.default_rng(0)
    for n in (1, 7, 37, 128):
        z = (rng.standard_normal((40, n)) * 5).astype(f32)
        m = A.causal_mask(np.arange(40) % n, np.arange(n))
        want = graph.soft_max_ext(z, m, scale=0.125)
        got = A.softmax_rows(((z * f32(0.125)).astype(f32) + m).astype(f32))
        ulp = np.abs(want.view(np.int32).astype(np.int64) - got.view(np.int32).astype(np.int64))
        assert ulp.max() <= 8
        assert np.array_equal(want == 0, got == 0)


@pytest.mark.oracle
@given(seed=st.integers(0, 2 ** 31), n=st.sampled_from([32, 64, 256, 4096]),
       scale=st.sampled_from([1e-3, 1.0, 100.0]), eps=st.sampled_from([1e-5, 1e-6, 0.0]))
def test_rms_norm_bit_exact(graph, seed, n, scale, eps):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((5, n)) * scale).astype(f32)
    w = (1 + 0.1 * rng.standard_normal(n)).astype(f32)
    want = graph.rms_norm_mul(x, w, eps)
    got = L.rms_norm(x, w, eps)
    assert np.array_equal(want.view(np.uint32), got.view(np.uint32))
