"""Legacy GGML/GGMF/GGJT files: container round trips, the historical block layouts (checked against
today's layouts by exact re-packing and against independent float arithmetic), the converter against
llama.cpp's convert_llama_ggml_to_gguf.py (vendored), and llama.cpp loading a converted file."""

from __future__ import annotations

import argparse
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from ggspec.conformance import oracle_setup
from ggspec import reference
from ggspec.errors import FormatError, UnsupportedTypeError
from ggspec.reference import ggml_legacy as L
from ggspec.reference import gguf as G

VENDOR = oracle_setup.source_root() / "vendor" / "llama.cpp"   # `ggspec oracle setup --source`
f32 = np.float32


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


# --------------------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------------------

def legacy_vocab(n_extra=20, scores=True):
    toks = [b"", b"", b""] + [bytes([i]) for i in range(256)]
    toks += [(" " + "".join(chr(97 + (i * 5 + j) % 26) for j in range(1 + i % 3))).encode() + bytes([i])
             for i in range(n_extra)]
    return [(t, -float(i) if scores else 0.0) for i, t in enumerate(toks)]


GEN_TYPES = {1: (0, 1, 2, 3, 4, 5, 6, 7, 8), 2: (0, 1, 2, 3, 6, 7, 8), 3: (0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14)}
FORMATS = [("ggml", 0), ("ggmf", 1), ("ggjt", 1), ("ggjt", 2), ("ggjt", 3)]


def random_raw(rng, layout, n):
    """Random block bytes with finite, modest scales (fp16/f32 scale fields overwritten)."""
    nb = n // layout.block_size
    b = rng.integers(0, 256, (nb, layout.type_size), dtype=np.uint8)
    return b.tobytes()


def synthetic(fmt, version, rng, types=None):
    gen = L.generation(fmt, version)
    types = types or GEN_TYPES[gen]
    hp = L.Hyperparameters(len(legacy_vocab()), 256, 256, 4, 1, 64, 0)
    tensors = []
    for i, tid in enumerate(types):
        lay = L.LAYOUTS[gen][tid]
        ne = (lay.block_size * int(rng.integers(1, 3)) * (256 // lay.block_size if tid >= 10 else 1),
              int(rng.integers(1, 4)))
        tensors.append((f"t{i}.type{tid}.weight", tid, ne, random_raw(rng, lay, ne[0] * ne[1])))
    return hp, legacy_vocab(scores=fmt != "ggml"), tensors


@pytest.mark.parametrize("fmt,version", FORMATS)
def test_container_round_trip(fmt, version):
    rng = np.random.default_rng(version + len(fmt))
    hp, vocab, tensors = synthetic(fmt, version, rng)
    data = L.to_bytes(fmt, version, hp, vocab, tensors)
    m = L.parse(data)
    assert (m.format, m.version, m.hparams) == (fmt, version, hp)
    assert m.vocab == [(t, float(f32(s))) for t, s in vocab]
    assert list(m.tensors) == [t[0] for t in tensors]
    for name, tid, ne, raw in tensors:
        t = m.tensors[name]
        assert (t.type_id, t.shape, bytes(t.raw)) == (tid, ne, raw)
        if fmt == "ggjt":
            assert t.offset % 32 == 0
    # the unaligned formats pack data right after the name
    if fmt != "ggjt":
        first = next(iter(m.tensors.values()))
        assert first.offset == first.header_offset + 12 + 4 * len(first.shape) + len(first.name)


def _load_script():
    path = VENDOR / "convert_llama_ggml_to_gguf.py"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    pytest.importorskip("gguf")
    os.environ["NO_LOCAL_GGUF"] = "1"
    spec = importlib.util.spec_from_file_location("convert_llama_ggml_to_gguf", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("fmt,version", FORMATS)
def test_parser_agrees_with_the_converter_script(fmt, version):
    """The vendored script's GGMLModel.load finds the same tensors, dims, types and data offsets."""
    script = _load_script()
    rng = np.random.default_rng(11)
    hp, vocab, tensors = synthetic(fmt, version, rng, types=(0, 1))
    data = L.to_bytes(fmt, version, hp, vocab, tensors)
    theirs = script.GGMLModel()
    theirs.validate_conversion = lambda ftype: None
    arr = np.frombuffer(data, dtype=np.uint8)
    try:
        theirs.load(arr, 0)
    except AssertionError:
        pass  # set_n_ff wants a LLaMA layer-0 tensor; everything before it has been parsed
    ours = L.parse(data)
    assert [t.name.decode() for t in theirs.tensors] == list(ours.tensors)
    for tt, t in zip(theirs.tensors, ours.tensors.values()):
        assert (tuple(tt.dims), int(tt.dtype), tt.start_offset, int(tt.len_bytes)) == \
               (t.shape, t.type_id, t.offset, t.nbytes)


# --------------------------------------------------------------------------------------------------
# historical block layouts
# --------------------------------------------------------------------------------------------------

def _today_blocks(tname, rng, nb=64):
    x = (rng.standard_normal((1, 32 * nb)) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    return np.frombuffer(reference.quantize(tname, x), dtype=np.uint8).reshape(nb, -1)


def _split_to_interleaved(qs):
    """Today's nibble order (byte j: elements j, j+16) -> generation 1's (byte j: elements 2j, 2j+1)."""
    q = np.concatenate([qs & 15, qs >> 4], axis=1)         # element order
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


def _f16_to_f32_bytes(b2):
    return np.ascontiguousarray(b2).view("<f2").astype("<f4").view(np.uint8)


@pytest.mark.parametrize("seed", range(3))
def test_generation_2_equals_today_with_f32_scales(seed):
    """ggjt v2 Q4_0/Q4_1/Q8_0 = today's blocks with the f16 scales widened to f32 (exactly)."""
    rng = np.random.default_rng(seed)
    for tname, tid in (("Q4_0", 2), ("Q4_1", 3), ("Q8_0", 8)):
        b = _today_blocks(tname, rng)
        nf = 2 if tname == "Q4_1" else 1
        scales = np.concatenate([_f16_to_f32_bytes(b[:, 2 * i:2 * i + 2]) for i in range(nf)], axis=1)
        old = np.concatenate([scales, b[:, 2 * nf:]], axis=1)
        n = b.shape[0] * 32
        want = reference.dequantize(tname, b.tobytes(), n)
        got = L.LAYOUTS[2][tid].dequantize(old.tobytes(), n)
        assert np.array_equal(bits(got), bits(want)), tname


@pytest.mark.parametrize("seed", range(3))
def test_generation_1_equals_today_after_unshuffling(seed):
    """ggjt v1 and older: interleaved nibbles (f32 scales for Q4_0/Q4_1/Q8_0; qh bits unchanged for Q5)."""
    rng = np.random.default_rng(10 + seed)
    for tname, tid, nf, f16 in (("Q4_0", 2, 1, False), ("Q4_1", 3, 2, False), ("Q5_0", 6, 1, True),
                                ("Q5_1", 7, 2, True), ("Q8_0", 8, 1, False)):
        b = _today_blocks(tname, rng)
        head = b[:, :2 * nf] if f16 else np.concatenate(
            [_f16_to_f32_bytes(b[:, 2 * i:2 * i + 2]) for i in range(nf)], axis=1)
        rest = b[:, 2 * nf:]
        if tname.startswith("Q5"):
            rest = np.concatenate([rest[:, :4], _split_to_interleaved(rest[:, 4:])], axis=1)
        elif tname != "Q8_0":
            rest = _split_to_interleaved(rest)
        old = np.concatenate([head, rest], axis=1)
        n = b.shape[0] * 32
        want = reference.dequantize(tname, b.tobytes(), n)
        got = L.LAYOUTS[1][tid].dequantize(old.tobytes(), n)
        assert np.array_equal(bits(got), bits(want)), tname


def test_q4_2_and_q4_3_formulas():
    """April 2023's 16-weight blocks, from independent float64 arithmetic (each product is exact)."""
    rng = np.random.default_rng(5)
    nb = 50
    d = rng.standard_normal(nb).astype(np.float16)
    m = rng.standard_normal(nb).astype(np.float16)
    q = rng.integers(0, 16, (nb, 16))
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    raw2 = np.concatenate([d.view(np.uint8).reshape(nb, 2), qs], axis=1).tobytes()
    want2 = ((q - 8) * d.astype(np.float64)[:, None]).astype(np.float32).reshape(-1)
    assert np.array_equal(bits(L.LAYOUTS[1][4].dequantize(raw2, nb * 16)), bits(want2))
    raw3 = np.concatenate([d.view(np.uint8).reshape(nb, 2), m.view(np.uint8).reshape(nb, 2), qs], axis=1).tobytes()
    prod = (q * d.astype(np.float64)[:, None]).astype(np.float32)
    want3 = (prod + m.astype(np.float32)[:, None]).astype(np.float32).reshape(-1)
    assert np.array_equal(bits(L.LAYOUTS[1][5].dequantize(raw3, nb * 16)), bits(want3))


def test_nan_and_inf_scales_propagate():
    raw = struct.pack("<f", float("inf")) + bytes([0x88] * 16)     # q = 8 -> (8-8)*inf = NaN
    y = L.LAYOUTS[1][2].dequantize(raw, 32)
    assert np.isnan(y).all()


@pytest.mark.parametrize("fmt,version", FORMATS)
def test_tensor_dequantize_uses_the_generation(fmt, version):
    rng = np.random.default_rng(21)
    hp, vocab, tensors = synthetic(fmt, version, rng)
    m = L.parse(L.to_bytes(fmt, version, hp, vocab, tensors))
    gen = L.generation(fmt, version)
    for name, tid, ne, raw in tensors:
        y = m.tensors[name].dequantize()
        assert y.shape == (ne[1], ne[0])
        want = L.LAYOUTS[gen][tid].dequantize(raw, ne[0] * ne[1])
        assert np.array_equal(bits(y.reshape(-1)), bits(want))


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

def _small(fmt="ggjt", version=3, tid=2, ne=(32, 2)):
    hp = L.Hyperparameters(4, 32, 256, 1, 1, 32, 2)
    lay = L.LAYOUTS[L.generation(fmt, version)].get(tid) or L.LAYOUTS[1].get(tid) or L.LAYOUTS[1][2]
    raw = bytes(ne[0] * ne[1] // lay.block_size * lay.type_size)
    return L.to_bytes(fmt, version, hp, [(b"a", 0.0)] * 4, [("w.weight", tid, ne, raw)])


@pytest.mark.parametrize("data,match", [
    (b"", "ends inside the magic"),
    (b"GGUF" + bytes(20), "GGUF file"),
    (struct.pack("<I", 0x12345678), "not a legacy GGML file"),
    (struct.pack("<II", L.MAGIC_GGJT, 4), "unknown ggjt version 4"),
    (struct.pack("<II", L.MAGIC_GGMF, 2), "unknown ggmf version 2"),
    (struct.pack("<II7I", L.MAGIC_GGJT, 3, 2**31, 1, 1, 1, 1, 1, 0), "n_vocab = 2147483648"),
    (_small()[:-1], "run past the end"),
    (_small()[:70], "ends inside|claims|remain"),
    (_small(version=2, tid=4), r"type id 4 \(Q4_2\) does not exist in ggjt v2"),
    (_small(version=3, tid=9), r"type id 9 \(Q8_1\)"),
    (_small(ne=(31, 1)), "not a multiple"),
])
def test_bad_files(data, match):
    with pytest.raises(FormatError, match=match):
        L.parse(data)


def test_duplicate_and_bad_dims():
    d = _small()
    with pytest.raises(FormatError, match="duplicate tensor"):
        L.parse(d + d[d.index(struct.pack("<3I", 2, 8, 2)):])
    i = d.index(struct.pack("<3I", 2, 8, 2))
    with pytest.raises(FormatError, match="n_dims = 5"):
        L.parse(d[:i] + struct.pack("<I", 5) + d[i + 4:])


# --------------------------------------------------------------------------------------------------
# conversion to GGUF
# --------------------------------------------------------------------------------------------------

_LEGACY_NAMES = {v: k for k, v in L._LAYER_NAMES.items()}


def tiny_legacy_llama(fmt="ggjt", version=3, wtype="Q4_0", n_head=4, n_head_kv=None, seed=0, n_layer=1):
    """A tiny LLaMA as a legacy file: weights from tinymodels (GGUF names mapped back)."""
    from ggspec.conformance.tinymodels import TinySpec, tiny_weights
    big = wtype.endswith("_K")       # k-quant rows are multiples of 256
    spec = TinySpec(n_embd=256 if big else 64, n_head=n_head, n_head_kv=n_head_kv, n_layer=n_layer,
                    n_ff=256 if big else 128, seed=seed)
    inv = {"token_embd": "tok_embeddings", "output_norm": "norm", "output": "output"}
    tensors = []
    tid_of = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8, "Q5_1": 7, "Q4_K": 12}
    for name, w in tiny_weights(spec).items():
        base = name[:-len(".weight")]
        if base.startswith("blk."):
            _, il, rest = base.split(".", 2)
            legacy = f"layers.{il}.{_LEGACY_NAMES[rest]}.weight"
        else:
            legacy = inv[base] + ".weight"
        ne = tuple(reversed(w.shape))
        if w.ndim == 2 and wtype not in ("F32",):
            if wtype == "F16":
                raw = w.astype(np.float16).tobytes()
            else:
                raw = reference.quantize(wtype, w)
            tensors.append((legacy, tid_of[wtype], ne, raw))
        else:
            tensors.append((legacy, 0, ne, w.astype(np.float32).tobytes()))
    vocab = legacy_vocab(spec.n_vocab - 259, scores=fmt != "ggml")
    ftype = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q5_1": 9, "Q4_K": 15}[wtype]
    hp = L.Hyperparameters(len(vocab), spec.n_embd, 256, spec.n_head, spec.n_layer, spec.head_dim, ftype)
    return L.to_bytes(fmt, version, hp, vocab, tensors), spec


@pytest.mark.parametrize("fmt,version,wtype", [("ggjt", 3, "Q4_0"), ("ggjt", 3, "Q4_K"), ("ggjt", 2, "Q5_1"),
                                               ("ggjt", 1, "F16"), ("ggmf", 1, "F32"), ("ggml", 0, "F16")])
def test_converter_matches_the_script(tmp_path, monkeypatch, fmt, version, wtype):
    """Byte-identical GGUF to convert_llama_ggml_to_gguf.py run with gguf-py's August-2023 raw_shape
    semantics (gguf 0.19's add_tensor reinterprets raw_shape of uint8 data as a byte shape -- see docs)."""
    script = _load_script()
    import gguf
    monkeypatch.setattr(gguf.gguf_writer, "quant_shape_from_byte_shape", lambda shape, qt: tuple(shape))
    data, spec = tiny_legacy_llama(fmt, version, wtype)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    cfg = argparse.Namespace(output=tmp_path / "theirs.gguf", name="tiny", desc=None, gqa=1, eps="5.0e-06",
                             context_length=2048, input=src)
    arr = np.memmap(src, mode="r")
    model = script.GGMLModel()
    model.load(arr, 0)
    script.GGMLToGGUF(model, arr, cfg).save()
    m = L.read(src)
    ours = L.convert_to_gguf(m, tmp_path / "ours.gguf", name="tiny", gqa=1, eps=5e-6, context_length=2048)
    assert ours.read_bytes() == (tmp_path / "theirs.gguf").read_bytes()


def test_converter_refuses_what_the_script_refuses():
    for fmt, version, wtype in (("ggjt", 1, "Q4_0"), ("ggjt", 2, "Q4_0"), ("ggjt", 2, "Q8_0"), ("ggmf", 1, "Q4_0")):
        data, _ = tiny_legacy_llama(fmt, version, wtype if version == 3 else "F16")
        m = L.parse(data)
        m.hparams.ftype = {"Q4_0": 2, "Q8_0": 7}[wtype]
        assert L.convertible(m)
        with pytest.raises(UnsupportedTypeError, match="not eligible"):
            L.convert_to_gguf(m, "/nonexistent/x.gguf")


def test_n_head_kv_for_gqa_models():
    """The header has no n_head_kv: explicit > --gqa (the script's search) > wk's shape > n_head."""
    data, spec = tiny_legacy_llama(n_head=8, n_head_kv=2, wtype="F16")
    m = L.parse(data)
    assert L.infer_n_head_kv(m) == 2
    md = L.gguf_metadata(m)
    assert md["llama.attention.head_count_kv"].value == 2
    assert L.gguf_metadata(m, gqa=4)["llama.attention.head_count_kv"].value == 2
    assert L.gguf_metadata(m, gqa=1)["llama.attention.head_count_kv"].value == 8
    assert L.gguf_metadata(m, n_head_kv=1)["llama.attention.head_count_kv"].value == 1
    # LLaMA-2 70B: 64 heads, --gqa 8 -> 8 KV heads (the script's loop)
    m.hparams.n_head = 64
    assert L.gguf_metadata(m, gqa=8)["llama.attention.head_count_kv"].value == 8


@pytest.mark.oracle
@pytest.mark.parametrize("wtype,n_head_kv", [("Q4_0", None), ("F16", 2)])
def test_llama_cpp_loads_converted_file(tmp_path, oracle, wtype, n_head_kv):
    llama_cpp = pytest.importorskip("llama_cpp")
    data, spec = tiny_legacy_llama("ggjt", 3, wtype, n_head_kv=n_head_kv)
    m = L.parse(data)
    path = L.convert_to_gguf(m, tmp_path / "conv.gguf", name="tiny")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=16, n_threads=1, verbose=False, logits_all=True)
    try:
        assert llm.n_vocab() == spec.n_vocab
        llm.eval([1, 300, 280])
        assert np.isfinite(np.array(llm.scores[:3])).all()
    finally:
        llm.close()
    g = G.read(path)
    assert g.metadata["llama.attention.head_count_kv"] == spec.kv_heads
    assert g.tensors["blk.0.attn_k.weight"].shape == m.tensors["layers.0.attention.wk.weight"].shape
