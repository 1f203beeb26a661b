"""GPTQ (AutoGPTQ / GPTQ-for-LLaMa) checkpoints: bit packing (2/3/4/8 bits, 3-bit words straddling
int32 boundaries), the zero-point +1 convention, act-order g_idx, reading real safetensors files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ggspec.errors import FormatError
from ggspec.reference import gptq as Q


def autogptq_pack_3bit(intweight: np.ndarray) -> np.ndarray:
    """AutoGPTQ's QuantLinear.pack loop for bits == 3, written out independently (rows of 32 values ->
    3 uint32 words): 10 values, 2 bits of the 11th, its top bit, 10 values, 1 bit, 2 bits, 10 values."""
    n, m = intweight.shape
    iw = intweight.astype(np.uint64)
    out = np.zeros((n // 32 * 3, m), dtype=np.uint64)
    i = row = 0
    while row < out.shape[0]:
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint64(3 * (j - i))
        i += 10
        out[row] |= iw[i] << np.uint64(30)
        row += 1
        out[row] |= (iw[i] >> np.uint64(2)) & np.uint64(1)
        i += 1
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint64(3 * (j - i) + 1)
        i += 10
        out[row] |= iw[i] << np.uint64(31)
        row += 1
        out[row] |= (iw[i] >> np.uint64(1)) & np.uint64(3)
        i += 1
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint64(3 * (j - i) + 2)
        i += 10
        row += 1
    return (out & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)


def autogptq_pack(intweight, bits):
    if bits == 3:
        return autogptq_pack_3bit(intweight)
    per = 32 // bits
    n, m = intweight.shape
    out = np.zeros((n // per, m), dtype=np.uint32)
    for r in range(out.shape[0]):
        for j in range(per):
            out[r] |= intweight[r * per + j].astype(np.uint32) << np.uint32(bits * j)
    return out.view(np.int32)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_packing_matches_autogptq_and_round_trips(bits):
    rng = np.random.default_rng(bits)
    v = rng.integers(0, 1 << bits, (96, 40))
    packed = Q.pack_rows(v, bits)
    assert packed.dtype == np.int32 and packed.shape == (96 * bits // 32, 40)
    assert np.array_equal(packed, autogptq_pack(v, bits))
    assert np.array_equal(Q.unpack_rows(packed, bits), v)
    z = rng.integers(0, 1 << bits, (5, 64))
    assert np.array_equal(Q.unpack_cols(Q.pack_cols(z, bits), bits), z)
    assert Q.pack_cols(z, bits).shape == (5, 64 * bits // 32)


def test_3bit_straddling_values():
    v = np.zeros((32, 1), dtype=np.int64)
    v[10], v[21] = 0b101, 0b011
    w = Q.pack_rows(v, 3).view(np.uint32)[:, 0]
    assert w[0] >> 30 == 0b01 and w[1] & 1 == 0b1          # value 10: bits 30,31 of w0 and bit 0 of w1
    assert w[1] >> 31 == 1 and w[2] & 3 == 0b01            # value 21: bit 31 of w1 and bits 0,1 of w2


@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dequantize_formula_exact(bits, fmt):
    """W[o, i] = scale * (q - (z_stored + 1)) for v1, scale * (q - z_stored) for v2 (one f32 rounding)."""
    rng = np.random.default_rng(100 + bits)
    n_in, n_out, gs = 128, 64, 32
    q = rng.integers(0, 1 << bits, (n_in, n_out))
    zs = rng.integers(0, (1 << bits) - 1, (n_in // gs, n_out))
    scales = (rng.standard_normal((n_in // gs, n_out)) * 0.01).astype(np.float16)
    cfg = Q.GPTQConfig(bits=bits, group_size=gs, checkpoint_format=fmt)
    lin = Q.GPTQLinear("l", Q.pack_rows(q, bits), Q.pack_cols(zs, bits), scales, None, None, cfg)
    lin.validate()
    z = zs + (1 if fmt == "gptq" else 0)
    g = np.arange(n_in) // gs
    want = (scales.astype(np.float64)[g] * (q - z[g])).astype(np.float32).T
    assert np.array_equal(lin.dequantize().view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("bits,group_size,desc_act,fmt", [
    (4, 128, False, "gptq"), (4, 32, True, "gptq"), (3, 64, False, "gptq"), (3, 128, True, "gptq_v2"),
    (2, -1, False, "gptq"), (8, 64, True, "gptq"), (2, 32, False, "gptq_v2"), (8, -1, False, "gptq_v2"),
])
def test_checkpoint_round_trip(tmp_path, bits, group_size, desc_act, fmt):
    rng = np.random.default_rng(bits * 7 + (group_size % 97))
    n_out, n_in = 96, 256
    W = rng.standard_normal((n_out, n_in)).astype(np.float32)
    g_idx = None
    if desc_act:   # act-order: groups assigned in a permuted order of the input rows
        perm = rng.permutation(n_in)
        g_idx = np.empty(n_in, dtype=np.int32)
        g_idx[perm] = np.arange(n_in) // (n_in if group_size == -1 else group_size)
    bias = rng.standard_normal(n_out).astype(np.float16)
    parts = Q.quantize_linear(W, bits, group_size, g_idx=g_idx, checkpoint_format=fmt, bias=bias)
    cfg = Q.GPTQConfig(bits=bits, group_size=group_size, desc_act=desc_act, sym=False, checkpoint_format=fmt)
    Q.save(tmp_path, {"model.layers.0.mlp.up_proj": parts}, cfg,
           extra={"model.embed_tokens.weight": np.ones((4, 8), np.float16)})
    m = Q.read(tmp_path)
    assert (m.config.bits, m.config.group_size, m.config.desc_act, m.config.checkpoint_format) == \
           (bits, group_size, desc_act, fmt)
    lin = m.layers["model.layers.0.mlp.up_proj"]
    assert (lin.in_features, lin.out_features) == (n_in, n_out)
    assert np.array_equal(lin.bias, bias) and "model.embed_tokens.weight" in m.tensors
    Wd = lin.dequantize()
    g = lin.group_index()
    step = lin.scales.astype(np.float32)[g].T          # (out, in)
    err = np.abs(Wd - W) / step
    # RTN: half a step, plus clipping at the ends of the range (the fp16 scale is rounded); a wrong
    # zero convention would be off by one whole step everywhere
    assert err.max() <= 1.0 + 1e-3 and err.mean() < 0.3


def test_config_sources(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {
        "bits": 3, "group_size": 64, "desc_act": True, "quant_method": "gptq"}}))
    cfg = Q.read_config(tmp_path)
    assert (cfg.bits, cfg.group_size, cfg.desc_act, cfg.zero_offset) == (3, 64, True, 1)
    (tmp_path / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": -1,
                                                                "checkpoint_format": "gptq_v2"}))
    cfg = Q.read_config(tmp_path)
    assert (cfg.bits, cfg.group_size, cfg.zero_offset) == (4, -1, 0)


@pytest.mark.parametrize("cfg,match", [({"bits": 5}, "bits = 5"), ({"group_size": 0}, "group_size = 0"),
                                       ({"checkpoint_format": "awq"}, "checkpoint_format"), ([1], "JSON object")])
def test_bad_configs(tmp_path, cfg, match):
    (tmp_path / "quantize_config.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match=match):
        Q.read_config(tmp_path)


def _good_parts():
    rng = np.random.default_rng(0)
    return Q.quantize_linear(rng.standard_normal((64, 128)).astype(np.float32), 4, 32)


@pytest.mark.parametrize("mutate,match", [
    (lambda p: p.pop("qzeros"), "no l.qzeros"),
    (lambda p: p.__setitem__("scales", p["scales"][:, :32]), "scales has 32 columns"),
    (lambda p: p.__setitem__("qzeros", p["qzeros"][:2]), "qzeros has shape"),
    (lambda p: p.__setitem__("g_idx", p["g_idx"] + 10), "g_idx refers to groups"),
    (lambda p: p.__setitem__("g_idx", p["g_idx"][:5]), "g_idx has shape"),
    (lambda p: p.__setitem__("qweight", p["qweight"].astype(np.float32)), "must be a 2-D int32"),
    (lambda p: p.__setitem__("bias", np.zeros(3, np.float16)), "bias has shape"),
])
def test_bad_layers(mutate, match):
    p = _good_parts()
    mutate(p)
    with pytest.raises(FormatError, match=match):
        Q.from_tensors({f"l.{k}": v for k, v in p.items()}, Q.GPTQConfig(bits=4, group_size=32))


def test_bad_files(tmp_path):
    (tmp_path / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 32}))
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 40)
    with pytest.raises(FormatError, match="not a readable safetensors"):
        Q.read(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FormatError, match="no .safetensors"):
        Q.read(tmp_path)
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(FormatError, match="no GPTQ layers"):
        Q.read(tmp_path)
