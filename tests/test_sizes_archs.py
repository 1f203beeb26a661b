"""Per-tensor prediction for every modelled architecture, against llama.cpp itself.

* ``llama_quant_compute_types`` (llama-ext.h): llama.cpp's own type choice for a mock model of each
  architecture, every mix, against ``predict_tensor_types``;
* ``llama_model_quantize`` on synthetic F16 GGUFs of each architecture (written with gguf-py): the
  file's size equals the prediction from its own inventory byte for byte, and no tensor deviates --
  with and without llama-quantize's overrides;
* ``--check-mix`` on a file whose one tensor was quantized to another type names exactly that tensor.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest

from ggspec.conformance import sizes as S
from ggspec.conformance.sizes.synth import SYNTH_SHAPES
from ggspec.errors import GGSpecError
from ggspec.reference.types import get_type


def _libs():
    try:
        import llama_cpp
        from llama_cpp import llama_cpp as lc
    except Exception as e:  # pragma: no cover
        pytest.skip(f"llama_cpp (oracle) unavailable: {e}")
    libdir = Path(llama_cpp.__file__).parent / "lib"
    return ctypes.CDLL(str(libdir / "libggml-base.so")), ctypes.CDLL(str(libdir / "libllama.so")), lc


class _Init(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class _Desc(ctypes.Structure):
    _fields_ = [("architecture", ctypes.c_char_p)] + [(n, ctypes.c_uint32) for n in (
        "n_embd", "n_ff", "n_layer", "n_head", "n_head_kv", "n_expert", "n_embd_head_k", "n_embd_head_v")]


def oracle_types(shape: S.ModelShape, ftype: int) -> "dict[str, str]":
    """llama_quant_compute_types for the quantizable tensors of ``shape`` (mock model from metadata)."""
    ggml, llama, lc = _libs()
    sym = {"model": "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc",
           "init": "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params",
           "types": "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem",
           "allows": "_Z38llama_quant_tensor_allows_quantizationPK19quantize_state_implPK11ggml_tensor",
           "free": "_Z16llama_quant_freeP19quantize_state_impl"}
    try:
        f = {k: getattr(llama, v) for k, v in sym.items()}
    except AttributeError as e:
        pytest.skip(f"libllama lacks the llama-ext.h helpers: {e}")
    f["model"].restype, f["model"].argtypes = ctypes.c_void_p, [ctypes.POINTER(_Desc)]
    f["init"].restype = ctypes.c_void_p
    f["init"].argtypes = [ctypes.c_void_p, ctypes.POINTER(lc.llama_model_quantize_params)]
    f["types"].restype = None
    f["types"].argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                           ctypes.POINTER(ctypes.c_int), ctypes.c_size_t]
    f["allows"].restype, f["allows"].argtypes = ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p]
    f["free"].argtypes = [ctypes.c_void_p]
    llama.llama_model_free.argtypes = [ctypes.c_void_p]
    llama.llama_model_quantize_default_params.restype = lc.llama_model_quantize_params
    ggml.ggml_init.restype, ggml.ggml_init.argtypes = ctypes.c_void_p, [_Init]
    ggml.ggml_new_tensor.restype = ctypes.c_void_p
    ggml.ggml_new_tensor.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    ggml.ggml_set_name.restype, ggml.ggml_set_name.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
    ggml.ggml_free.argtypes = [ctypes.c_void_p]
    d = _Desc(shape.arch.encode(), shape.n_embd, shape.n_ff, shape.n_layer, shape.n_head, shape.n_head_kv,
              shape.n_expert, shape.n_embd_head, shape.n_embd_head)
    model = f["model"](ctypes.byref(d))
    params = llama.llama_model_quantize_default_params()
    qs = f["init"](model, ctypes.byref(params))
    ctx = ggml.ggml_init(_Init(1 << 24, None, True))
    try:
        names, ptrs = [], []
        for name, ne, src in S.weights_order_tensors(shape.tensors()):
            arr = (ctypes.c_int64 * len(ne))(*ne)
            p = ggml.ggml_new_tensor(ctx, 1 if src == "F16" else 0, len(ne), arr)
            ggml.ggml_set_name(p, name.encode())
            if f["allows"](qs, p):
                names.append(name)
                ptrs.append(p)
        out = (ctypes.c_int * len(ptrs))()
        f["types"](qs, ftype, (ctypes.c_void_p * len(ptrs))(*ptrs), out, len(ptrs))
        return {n: get_type(int(x)).name for n, x in zip(names, out)}
    finally:
        ggml.ggml_free(ctx)
        f["free"](qs)
        llama.llama_model_free(model)


MIXES = [m for m in S.FTYPES if m not in ("F32", "F16", "BF16", "Q1_0")]


def _ours(shape, mix, imatrix=False, type_70b=None, **ov):
    hp = {"n_layer": shape.n_layer, "n_head": shape.n_head, "n_head_kv": shape.n_head_kv, "n_expert": shape.n_expert}
    model = S.quant_model(shape.arch, shape.tensors(), hp)
    if type_70b is not None:
        from dataclasses import replace
        model = replace(model, type_70b=type_70b)
    return S.today_tensor_types(model, shape.tensors(), mix, S.QuantOverrides(imatrix=imatrix, **ov))


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(SYNTH_SHAPES))
def test_every_mix_matches_llama_quant_compute_types(oracle, name):
    shape = SYNTH_SHAPES[name]
    bad = []
    for mix in MIXES:
        try:
            # the mock model of llama_quant_model_from_metadata sets LLM_TYPE_70B for llama only
            ours = _ours(shape, mix, type_70b=(shape.arch == "llama" and S.quant_model(
                shape.arch, shape.tensors(), {"n_layer": shape.n_layer, "n_head": shape.n_head,
                                              "n_head_kv": shape.n_head_kv, "n_expert": shape.n_expert}).type_70b))
        except GGSpecError as e:  # llama.cpp throws too (no fallback for Q2_0 rows of 64 ...): cannot call it
            assert "no tensor type fallback" in str(e), (mix, e)
            continue
        theirs = oracle_types(shape, S.FTYPES[mix])
        assert set(theirs) <= set(ours)
        for n, t in theirs.items():
            if ours[n] != t:
                bad.append((mix, n, ours[n], t))
    assert not bad, bad[:10]


# ---------------------------------------------------------------------------------------------------
# llama_model_quantize on synthetic files
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def f16_files(tmp_path_factory):
    pytest.importorskip("gguf")
    from ggspec.conformance.sizes.synth import write_f16
    d = tmp_path_factory.mktemp("synth")
    return {n: write_f16(s, d / f"{n}.f16.gguf") for n, s in SYNTH_SHAPES.items()}


def quantize(src: Path, dst: Path, mix: str, *, imatrix: bool = False, token_embedding_type=None,
             output_tensor_type=None, tensor_types=(), pure=False, leave_output_tensor=False) -> None:
    """llama_model_quantize (the oracle) with llama-quantize's options."""
    _, _, lc = _libs()
    params = lc.llama_model_quantize_default_params()
    params.ftype = S.FTYPES[mix]
    params.nthread = 2
    if token_embedding_type:
        params.token_embedding_type = get_type(token_embedding_type).id
    if output_tensor_type:
        params.output_tensor_type = get_type(output_tensor_type).id
    params.pure = pure
    params.quantize_output_tensor = not leave_output_tensor
    keep = []
    if tensor_types:
        arr = (lc.llama_model_tensor_override * (len(tensor_types) + 1))()
        for i, (pat, ty) in enumerate(tensor_types):
            b = pat.encode()
            keep.append(b)
            arr[i].pattern = b
            arr[i].type = get_type(ty).id
        arr[len(tensor_types)].pattern = None
        params.tt_overrides = arr
        keep.append(arr)
    if imatrix:
        inv = S.read_inventory(src)
        ents = (lc.llama_model_imatrix_data * (len(inv.tensors) + 1))()
        import numpy as np
        for i, t in enumerate(inv.tensors):
            n = t.ne[0] * (t.ne[2] if len(t.ne) > 2 else 1)
            data = np.ones(n, np.float32)
            keep += [data, t.name.encode()]
            ents[i].name = keep[-1]
            ents[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            ents[i].size = n
        ents[len(inv.tensors)].name = None
        params.imatrix = ents
        keep.append(ents)
    rc = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, (src, mix)


FILE_MIXES = ["Q4_K_M", "Q2_K", "Q3_K_M", "Q4_0", "Q5_K_S", "IQ4_XS", "Q8_0"]


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(SYNTH_SHAPES))
def test_llama_model_quantize_files_are_predicted_byte_for_byte(oracle, f16_files, tmp_path, name):
    src = f16_files[name]
    inv = S.read_inventory(src)
    r = S.predict_inventory(inv)
    assert r["mix"] == "F16" and r["predicted_file_size"] == src.stat().st_size and not r["deviations"]
    for mix in FILE_MIXES + (["IQ2_XS"] if name in ("qwen2", "mixtral-8x", "gemma3-270m-like") else []):
        out = tmp_path / f"{mix}.gguf"
        im = mix.startswith("IQ2")
        quantize(src, out, mix, imatrix=im)
        r = S.predict_file(out, imatrix=im)
        assert r["mix"] == mix
        assert not r["deviations"], (mix, [(d["name"], d["actual"], d["predicted"]) for d in r["deviations"]])
        assert r["predicted_file_size"] == out.stat().st_size, mix
        out.unlink()


OVERRIDES = [
    dict(token_embedding_type="Q8_0", output_tensor_type="Q8_0"),     # the published "_L" / "_XL" quants
    dict(tensor_types=(("ffn_down", "Q8_0"), (r"blk\.0\.attn_v", "F16"))),
    dict(pure=True),
    dict(leave_output_tensor=True),
]


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["llama3-ropefreqs", "llama-576-tied", "qwen2", "mixtral-8x"])
@pytest.mark.parametrize("ov", range(len(OVERRIDES)))
def test_overrides_match_llama_model_quantize(oracle, f16_files, tmp_path, name, ov):
    opts = OVERRIDES[ov]
    out = tmp_path / "q.gguf"
    quantize(f16_files[name], out, "Q4_K_M", **opts)
    r = S.predict_file(out, overrides=S.QuantOverrides(**opts))
    assert not r["deviations"], [(d["name"], d["actual"], d["predicted"]) for d in r["deviations"]]
    assert r["predicted_file_size"] == out.stat().st_size
    if opts.get("pure") or opts.get("tensor_types"):  # without the options, the file deviates
        assert S.check_mix(out)


@pytest.mark.oracle
def test_check_mix_names_exactly_the_requantized_tensor(oracle, f16_files, tmp_path, capsys):
    from ggspec.cli import main
    out = tmp_path / "one.gguf"
    quantize(f16_files["qwen2"], out, "Q4_K_M", tensor_types=((r"^blk\.2\.ffn_up\.weight$", "Q8_0"),))
    dev = S.check_mix(out)
    assert [(d["name"], d["actual"], d["predicted"]) for d in dev] == [("blk.2.ffn_up.weight", "Q8_0", "Q4_K")]
    assert main(["sizes", "--gguf", str(out), "--check-mix", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in rep["deviations"]] == ["blk.2.ffn_up.weight"]
    assert main(["sizes", "--gguf", str(out), "--check-mix", "--tensor-type", r"^blk\.2\.ffn_up\.weight$=Q8_0"]) == 0


def test_80_layer_qwen2_is_llama_cpp_70b_type():
    # models/qwen2.cpp: 80 layers -> LLM_TYPE_70B, whatever the heads; llama: only with GQA
    s = SYNTH_SHAPES["qwen2-80-layers"]
    assert S.quant_model("qwen2", s.tensors(), {"n_layer": 80, "n_head": 4, "n_head_kv": 4}).type_70b
    assert not S.quant_model("llama", [("blk.0.attn_q.weight", (8, 8))], {"n_layer": 80, "n_head": 4,
                                                                         "n_head_kv": 4}).type_70b


def test_not_modelled_architecture_and_tensor(tmp_path, capsys):
    from ggspec.cli import main
    from ggspec.reference import gguf as G
    import numpy as np
    p = G.write(tmp_path / "f.gguf", {"general.architecture": "falcon", "general.file_type": G.Value(15, G.ValueType.UINT32)},
                {"token_embd.weight": np.zeros((8, 32), np.float32)})
    assert main(["sizes", "--gguf", str(p)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("not modelled: architecture 'falcon'")
    p = G.write(tmp_path / "g.gguf", {"general.architecture": "llama", "general.file_type": G.Value(15, G.ValueType.UINT32),
                                      "llama.block_count": G.Value(1, G.ValueType.UINT32)},
                {"blk.0.attn_q.weight": np.zeros((8, 32), np.float32), "blk.0.mystery.weight": np.zeros((8, 32), np.float32)})
    assert main(["sizes", "--gguf", str(p), "--json"]) == 2
    assert "blk.0.mystery.weight" in json.loads(capsys.readouterr().out)["not_modelled"]
    # no file type, no --mix
    p = G.write(tmp_path / "h.gguf", {"general.architecture": "llama"}, {"blk.0.attn_q.weight": np.zeros((8, 32), np.float32)})
    assert main(["sizes", "--gguf", str(p)]) == 2
    assert "general.file_type" in capsys.readouterr().out


def test_hf_config_of_an_unknown_architecture_is_not_modelled(tmp_path, capsys):
    from ggspec.cli import main
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FalconForCausalLM"], "hidden_size": 64,
                                                      "num_hidden_layers": 2, "num_attention_heads": 4,
                                                      "vocab_size": 100}))
    assert main(["sizes", "--hf-config", str(tmp_path), "--mix", "Q4_K_M"]) == 2
    assert "not modelled" in capsys.readouterr().out


def test_header_bytes_recomputed_from_the_values(tmp_path):
    # the key/value and tensor-info bytes read back from a file equal its data offset (gguf-py's layout,
    # strings, arrays of strings and scalars)
    pytest.importorskip("gguf")
    from ggspec.conformance.sizes.synth import write_f16
    for name in ("qwen2", "gemma3-270m-like", "mixtral-8x"):
        inv = S.read_inventory(write_f16(SYNTH_SHAPES[name], tmp_path / f"{name}.gguf"))
        assert inv.header_bytes_recomputed == inv.data_offset == inv.header_bytes_v3


def test_published_L_and_XL_names():
    q8 = S.QuantOverrides(token_embedding_type="Q8_0", output_tensor_type="Q8_0")
    assert S.published_mix("Q4_K_M") == ("Q4_K_M", None)
    assert S.published_mix("Q4_K_L") == ("Q4_K_M", q8)
    assert S.published_mix("q5_k_l") == ("Q5_K_M", q8)
    assert S.published_mix("Q6_K_L") == ("Q6_K", q8)
    assert S.published_mix("Q3_K_XL") == ("Q3_K_L", q8)
    assert S.published_mix("Q3_K_L") == ("Q3_K_L", None)  # a llama.cpp mix of its own
    with pytest.raises(GGSpecError):
        S.published_mix("Q9_K_L")
    a = S.ARCHITECTURES["llama-2-70b"]
    # the _L file differs from its base mix in token_embd and output only, both Q8_0
    base = dict((t.name(), ty) for t, ty in S.tensor_types(a, "Q4_K_M"))
    big = dict((t.name(), ty) for t, ty in S.tensor_types(a, "Q4_K_L"))
    assert {n for n in base if base[n] != big[n]} == {"token_embd.weight", "output.weight"}
    assert big["token_embd.weight"] == big["output.weight"] == "Q8_0"
    # on top of a day's rules: only token_embd and output change (their types are used as given)
    dated = dict((t.name(), ty) for t, ty in S.tensor_types(a, "Q4_K_M", "gguf@2024-08-01"))
    dated_l = dict((t.name(), ty) for t, ty in S.tensor_types(a, "Q4_K_L", "gguf@2024-08-01"))
    assert {n for n in dated if dated[n] != dated_l[n]} == {"token_embd.weight", "output.weight"}
    assert dated_l == big  # no dense-Llama rule changed between August 2024 and today for these shapes
    with pytest.raises(S.NotModelled):
        S.tensor_types(a, "Q4_K_M", "gguf@2024-01-01", overrides=S.QuantOverrides(pure=True))


def test_table_rows_with_L_suffix_and_imatrix_header(tmp_path):
    p = tmp_path / "t.psv"
    p.write_text("# Llama-2-70B, GGUF files, today's imatrix quants\n"
                 "# Architecture: dim 8192, 80 layers, 64 heads, 8 KV heads, ffn 28672, vocab 32000\n"
                 "name|quant_method|size_gb\nm-Q4_K_L.gguf|Q4_K_L|0\nm-Q4_0.gguf|Q4_0|0\n")
    t = S.read_table(p)
    r = S.evaluate_table(t, era="gguf")
    a = S.ARCHITECTURES["llama-2-70b"]
    q8 = S.QuantOverrides(token_embedding_type="Q8_0", output_tensor_type="Q8_0")
    assert r[0]["predicted_bytes"] == S.ggml_file_size(a, "Q4_K_M", imatrix=True, overrides=q8)
    # "imatrix" in the header: Q4_0's first eighth of ffn_down is Q4_1 (only with an importance matrix)
    assert r[1]["predicted_bytes"] == S.ggml_file_size(a, "Q4_0", imatrix=True) > S.ggml_file_size(a, "Q4_0")


@pytest.mark.oracle
def test_check_mix_with_the_rules_of_another_day(oracle, f16_files, tmp_path):
    # a Q2_K file made today: ffn_gate/ffn_up are Q2_K; under the rules of 2023-09 (bac66994c .. 147b17ac9)
    # they were Q3_K, and attn_v was Q3_K without the n_gqa >= 4 rule -- the era check lists exactly those
    out = tmp_path / "q2k.gguf"
    quantize(f16_files["llama3-ropefreqs"], out, "Q2_K")
    assert S.check_mix(out) == []
    dev = S.check_mix(out, era="gguf@2023-09-30")
    assert {(d["name"].split(".")[-2], d["actual"], d["predicted"]) for d in dev} == {
        ("ffn_gate", "Q2_K", "Q3_K"), ("ffn_up", "Q2_K", "Q3_K")}
    with pytest.raises(S.NotModelled):
        S.check_mix(tmp_path / "q2k.gguf", era="gguf@2023-09-30", overrides=S.QuantOverrides(pure=True))


def test_a_shard_of_a_split_file_is_not_modelled(tmp_path):
    import numpy as np
    from ggspec.reference import gguf as G
    p = G.write(tmp_path / "s.gguf", {"general.architecture": "llama", "general.file_type": G.Value(15, G.ValueType.UINT32),
                                      "split.no": G.Value(0, G.ValueType.UINT16), "split.count": G.Value(3, G.ValueType.UINT16)},
                {"blk.0.attn_q.weight": np.zeros((8, 32), np.float32)})
    with pytest.raises(S.NotModelled, match="split GGUF"):
        S.predict_file(p)


def test_cli_gptq_and_bad_config(tmp_path, capsys):
    from ggspec.cli import main
    assert main(["sizes", "--arch", "llama-2-70b", "--gptq", "--bits", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["bytes"] == S.gptq_file_size(S.ARCHITECTURES["llama-2-70b"], 4, 128, True)
    assert sum(e["count"] for e in r["breakdown"].values()) == len(S.gptq_tensors(S.ARCHITECTURES["llama-2-70b"], 4, 128))
    assert main(["sizes", "--hf-config", str(tmp_path / "nope")]) == 2
    (tmp_path / "config.json").write_text("{not json")
    assert main(["sizes", "--hf-config", str(tmp_path)]) == 2
    assert "not a JSON config" in capsys.readouterr().err


def test_mix_from_published_file_names():
    from ggspec.conformance.sizes.tables import _mix_from_name
    assert _mix_from_name("llama-2-70b.Q4_K_M.gguf") == "Q4_K_M"
    assert _mix_from_name("Meta-Llama-3.1-70B-Instruct-Q4_K_L.gguf") == "Q4_K_L"
    assert _mix_from_name("Meta-Llama-3.1-70B-Instruct-Q8_0-00001-of-00002.gguf") == "Q8_0"
    assert _mix_from_name("llama-2-70b.ggmlv3.q4_0.bin") == "q4_0"
