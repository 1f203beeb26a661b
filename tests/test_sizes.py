"""The size model: bits per weight, quant mixes, file sizes (GGML v3, GGUF, GPTQ) and the published tables.

Independent checks:
* bits per weight from the block structs of ggml-common.h -- transcribed field by field here, and
  (when the vendored header is present) parsed from the header itself;
* the published tables in ../shared/tables (each row's bytes must round to the published GB);
* oracle: today's quant mix against llama.cpp's own ``llama_quant_compute_types``; GGUF file sizes
  against files written by ``llama_model_quantize``; safetensors sizes against the safetensors library.
"""

from __future__ import annotations

import ctypes
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ggspec.conformance import oracle_setup
from ggspec.conformance import sizes as S
from ggspec.errors import GGSpecError
from ggspec.reference.types import LIVE_TYPES, get_type

REPO = Path(__file__).resolve().parent.parent
SHARED_TABLES = REPO.parent / "shared" / "tables"
VENDOR = oracle_setup.source_root() / "vendor" / "llama.cpp"   # `ggspec oracle setup --source`
GGML_COMMON_H = VENDOR / "ggml/src/ggml-common.h"
VOCAB_GGUF = VENDOR / "models/ggml-vocab-llama-spm.gguf"

# ---------------------------------------------------------------------------------------------------
# bits per weight, from the block structs
# ---------------------------------------------------------------------------------------------------

# (weights per block, [(field, bytes per element, count)]) transcribed from ggml-common.h
QK_K = 256
BLOCK_STRUCTS = {
    "Q1_0": (128, [("d", 2, 1), ("qs", 1, 128 // 8)]),
    "Q2_0": (64, [("d", 2, 1), ("qs", 1, 64 // 4)]),
    "Q4_0": (32, [("d", 2, 1), ("qs", 1, 16)]),
    "Q4_1": (32, [("d", 2, 1), ("m", 2, 1), ("qs", 1, 16)]),
    "Q5_0": (32, [("d", 2, 1), ("qh", 1, 4), ("qs", 1, 16)]),
    "Q5_1": (32, [("d", 2, 1), ("m", 2, 1), ("qh", 1, 4), ("qs", 1, 16)]),
    "Q8_0": (32, [("d", 2, 1), ("qs", 1, 32)]),
    "Q8_1": (32, [("d", 2, 1), ("s", 2, 1), ("qs", 1, 32)]),
    "MXFP4": (32, [("e", 1, 1), ("qs", 1, 16)]),
    "NVFP4": (64, [("d", 1, 64 // 16), ("qs", 1, 32)]),
    "TQ1_0": (QK_K, [("qs", 1, (QK_K - 4 * QK_K // 64) // 5), ("qh", 1, QK_K // 64), ("d", 2, 1)]),
    "TQ2_0": (QK_K, [("qs", 1, QK_K // 4), ("d", 2, 1)]),
    "Q2_K": (QK_K, [("scales", 1, QK_K // 16), ("qs", 1, QK_K // 4), ("d", 2, 1), ("dmin", 2, 1)]),
    "Q3_K": (QK_K, [("hmask", 1, QK_K // 8), ("qs", 1, QK_K // 4), ("scales", 1, 12), ("d", 2, 1)]),
    "Q4_K": (QK_K, [("d", 2, 1), ("dmin", 2, 1), ("scales", 1, 12), ("qs", 1, QK_K // 2)]),
    "Q5_K": (QK_K, [("d", 2, 1), ("dmin", 2, 1), ("scales", 1, 12), ("qh", 1, QK_K // 8), ("qs", 1, QK_K // 2)]),
    "Q6_K": (QK_K, [("ql", 1, QK_K // 2), ("qh", 1, QK_K // 4), ("scales", 1, QK_K // 16), ("d", 2, 1)]),
    "Q8_K": (QK_K, [("d", 4, 1), ("qs", 1, QK_K), ("bsums", 2, QK_K // 16)]),
    "IQ2_XXS": (QK_K, [("d", 2, 1), ("qs", 2, QK_K // 8)]),
    "IQ2_XS": (QK_K, [("d", 2, 1), ("qs", 2, QK_K // 8), ("scales", 1, QK_K // 32)]),
    "IQ2_S": (QK_K, [("d", 2, 1), ("qs", 1, QK_K // 4), ("qh", 1, QK_K // 32), ("scales", 1, QK_K // 32)]),
    "IQ3_XXS": (QK_K, [("d", 2, 1), ("qs", 1, 3 * QK_K // 8)]),
    "IQ3_S": (QK_K, [("d", 2, 1), ("qs", 1, QK_K // 4), ("qh", 1, QK_K // 32), ("signs", 1, QK_K // 8),
                     ("scales", 1, QK_K // 64)]),
    "IQ1_S": (QK_K, [("d", 2, 1), ("qs", 1, QK_K // 8), ("qh", 2, QK_K // 32)]),
    "IQ1_M": (QK_K, [("qs", 1, QK_K // 8), ("qh", 1, QK_K // 16), ("scales", 1, QK_K // 32)]),
    "IQ4_NL": (32, [("d", 2, 1), ("qs", 1, 16)]),
    "IQ4_XS": (QK_K, [("d", 2, 1), ("scales_h", 2, 1), ("scales_l", 1, QK_K // 64), ("qs", 1, QK_K // 2)]),
    "F32": (1, [("x", 4, 1)]), "F16": (1, [("x", 2, 1)]), "BF16": (1, [("x", 2, 1)]), "F64": (1, [("x", 8, 1)]),
    "I8": (1, [("x", 1, 1)]), "I16": (1, [("x", 2, 1)]), "I32": (1, [("x", 4, 1)]), "I64": (1, [("x", 8, 1)]),
}


def test_every_live_type_has_a_transcribed_struct():
    assert {t.name for t in LIVE_TYPES} == set(BLOCK_STRUCTS)


@pytest.mark.parametrize("name", sorted(BLOCK_STRUCTS))
def test_bpw_from_block_struct(name):
    block, fields = BLOCK_STRUCTS[name]
    nbytes = sum(size * count for _, size, count in fields)
    t = get_type(name)
    assert (t.block_size, t.type_size) == (block, nbytes)
    assert S.bits_per_weight(name) == Fraction(8 * nbytes, block)


def test_bpw_of_the_k_quants():
    # the numbers the model cards quote, against the layouts (only Q2_K disagrees: see docs/errata.md)
    assert S.bits_per_weight("Q2_K") == Fraction(21, 8)  # 2.625, not 2.5625
    assert S.bits_per_weight("Q3_K") == Fraction(55, 16)  # 3.4375
    assert S.bits_per_weight("Q4_K") == Fraction(9, 2)
    assert S.bits_per_weight("Q5_K") == Fraction(11, 2)
    assert S.bits_per_weight("Q6_K") == Fraction(105, 16)  # 6.5625
    assert S.bits_per_weight("Q8_K") == Fraction(73, 8)  # 9.125


_CTYPE_BYTES = {"ggml_half": 2, "ggml_half2": 4, "uint8_t": 1, "int8_t": 1, "uint16_t": 2, "int16_t": 2,
                "uint32_t": 4, "int32_t": 4, "float": 4}


def _parse_block_structs(text: str) -> dict[str, tuple[int, int]]:
    """{block_xxx: (sizeof, weights)} by summing the fields of each struct of ggml-common.h."""
    consts = {"QK_K": 256, "K_SCALE_SIZE": 12}
    for m in re.finditer(r"#define\s+(QK\w+|IQ3S_N_SCALE)\s+(.+)", text):
        expr = m.group(2).split("//")[0].strip()
        try:
            consts[m.group(1)] = _eval(expr, consts)
        except Exception:
            pass

    def size_of(body: str) -> int:
        total = 0
        pos = 0
        while pos < len(body):
            m = re.compile(r"\s*(?:GGML_EXTENSION\s+)?(union|struct)\s*\{").match(body, pos)
            if m:  # nested aggregate: find its matching brace
                depth, i = 1, m.end()
                while depth:
                    depth += {"{": 1, "}": -1}.get(body[i], 0)
                    i += 1
                inner = body[m.end():i - 1]
                end = body.index(";", i)
                if m.group(1) == "union":
                    total += max(size_of(part + ";") for part in _split_members(inner))
                else:
                    total += size_of(inner)
                pos = end + 1
                continue
            m = re.compile(r"\s*(\w+)\s+(\w+)\s*(?:\[([^\]]+)\])?\s*;").match(body, pos)
            if not m:
                rest = body[pos:].strip()
                if not rest:
                    break
                pos = body.index(";", pos) + 1 if ";" in body[pos:] else len(body)
                continue
            count = _eval(m.group(3), consts) if m.group(3) else 1
            total += _CTYPE_BYTES[m.group(1)] * count
            pos = m.end()
        return total

    structs = {}
    for m in re.finditer(r"typedef struct \{(.*?)\n\} (block_\w+);", text, re.S):
        body = re.sub(r"//[^\n]*", "", m.group(1))
        structs[m.group(2)] = size_of(body)
    return structs


def _split_members(inner: str) -> list[str]:
    """Top-level members of a union body (a nested struct counts as one member)."""
    parts, depth, cur = [], 0, ""
    for ch in inner:
        cur += ch
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == ";" and depth == 0:
            parts.append(cur[:-1])
            cur = ""
    return [p for p in parts if p.strip()]


def _eval(expr: str, consts: dict) -> int:
    e = expr
    for k in sorted(consts, key=len, reverse=True):
        e = re.sub(rf"\b{k}\b", str(consts[k]), e)
    e = re.sub(r"sizeof\((\w+)\)", lambda m: str(_CTYPE_BYTES[m.group(1)]), e)
    if not re.fullmatch(r"[0-9+\-*/() ]+", e):
        raise ValueError(expr)
    return int(eval(e.replace("/", "//")))  # noqa: S307 - digits and operators only


def test_bpw_against_the_vendored_header():
    if not GGML_COMMON_H.exists():
        pytest.skip(f"{GGML_COMMON_H} not present (needs the llama-cpp-python 0.3.36 source tree)")
    structs = _parse_block_structs(GGML_COMMON_H.read_text())
    checked = 0
    for t in LIVE_TYPES:
        if t.block_size == 1:
            continue
        key = "block_" + t.name.lower().replace("_k", "_K")
        assert key in structs, key
        assert structs[key] == t.type_size, (t.name, structs[key], t.type_size)
        assert structs[key] == sum(s * c for _, s, c in BLOCK_STRUCTS[t.name][1])
        checked += 1
    assert checked >= 27


# ---------------------------------------------------------------------------------------------------
# architectures
# ---------------------------------------------------------------------------------------------------


def test_parameter_counts_of_the_presets():
    # the published parameter counts of these checkpoints
    assert S.ARCHITECTURES["llama-2-7b"].n_params == 6_738_415_616
    assert S.ARCHITECTURES["llama-2-13b"].n_params == 13_015_864_320
    assert S.ARCHITECTURES["llama-2-70b"].n_params == 68_976_648_192
    assert S.ARCHITECTURES["mistral-7b"].n_params == 7_241_732_096
    assert S.ARCHITECTURES["llama-33b"].n_params == 32_528_943_616


def test_tensor_names_in_both_eras():
    a = S.ARCHITECTURES["llama-2-70b"]
    g = [t.name("ggmlv3") for t in a.tensors("ggmlv3")]
    assert g[:4] == ["tok_embeddings.weight", "norm.weight", "output.weight", "layers.0.attention.wq.weight"]
    assert "layers.79.feed_forward.w2.weight" in g and "layers.0.ffn_norm.weight" in g
    u = {t.name("gguf"): t.ne for t in a.tensors("gguf")}
    assert u["blk.0.attn_k.weight"] == (8192, 1024) and u["blk.3.ffn_down.weight"] == (28672, 8192)
    assert u["token_embd.weight"] == (8192, 32000) and u["output_norm.weight"] == (8192,)
    assert len(u) == 3 + 80 * 9


def test_from_hf_config(tmp_path):
    cfg = {"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
           "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000,
           "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "model_type": "mistral"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    a = S.from_hf_config(tmp_path)
    m = S.ARCHITECTURES["mistral-7b"]
    assert (a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.ffn_dim, a.n_vocab) == (4096, 32, 32, 8, 14336, 32000)
    assert a.n_params == m.n_params and a.n_gqa == 4
    old = {"hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40, "num_hidden_layers": 40,
           "vocab_size": 32000, "max_position_embeddings": 4096}
    b = S.from_hf_config(old)
    assert b.n_kv_heads == 40 and b.rope_theta is None


def test_use_more_bits():
    assert [i for i in range(32) if S.use_more_bits(i, 32)] == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29,
                                                                30, 31]
    assert sum(S.use_more_bits(i, 80) for i in range(80)) == 40
    assert sum(S.use_more_bits(i, 60) for i in range(60)) == 30


# ---------------------------------------------------------------------------------------------------
# ggmlv3 mixes (llama.cpp 097e121e2)
# ---------------------------------------------------------------------------------------------------


def _types_by_role(arch, mix, era):
    out: dict[str, dict[str, int]] = {}
    for t, ty in S.tensor_types(arch, mix, era):
        out.setdefault(t.role, {}).setdefault(ty, 0)
        out[t.role][ty] += 1
    return out


def test_ggmlv3_q2_K_mix_of_70b():
    r = _types_by_role(S.ARCHITECTURES["llama-2-70b"], "q2_K", "ggmlv3")
    assert r["attn_v"] == {"Q4_K": 80} and r["attn_output"] == {"Q4_K": 80} and r["ffn_down"] == {"Q4_K": 80}
    assert r["attn_q"] == {"Q2_K": 80} and r["ffn_up"] == {"Q2_K": 80} and r["token_embd"] == {"Q2_K": 1}
    assert r["output"] == {"Q6_K": 1} and r["attn_norm"] == {"F32": 80}


def test_ggmlv3_legacy_mixes_have_a_q6_K_output():
    r = _types_by_role(S.ARCHITECTURES["llama-2-7b"], "q4_0", "ggmlv3")
    assert r["output"] == {"Q6_K": 1} and r["token_embd"] == {"Q4_0": 1}


def test_ggmlv3_vocab_fallbacks():
    # Code Llama's 32016 rows are not a multiple of 256: the ggml era needed both dims to be
    r = _types_by_role(S.ARCHITECTURES["codellama-7b"], "q4_K_M", "ggmlv3")
    assert r["output"] == {"F16": 1} and r["token_embd"] == {"Q4_0": 1}
    # GGUF from 2023-08-26 only looks at ne[0]
    r = _types_by_role(S.ARCHITECTURES["codellama-7b"], "q4_K_M", "gguf@2023-09-01")
    assert r["output"] == {"Q6_K": 1} and r["token_embd"] == {"Q4_K": 1}


def test_ggmlv3_layout_by_hand():
    # 1 layer, dim 256, vocab 256: every byte counted by hand
    a = S.llama_architecture(256, 1, 2, 2, 512, 256, tokenizer=S.TokenizerStats("t", 256, 1000, 900))
    header = 36 + 256 * 8 + 900
    pos = header
    expect = []
    for name, ne, ty in [("tok_embeddings.weight", (256, 256), "Q4_0"), ("norm.weight", (256,), "F32"),
                         ("output.weight", (256, 256), "Q6_K"),
                         ("layers.0.attention.wq.weight", (256, 256), "Q4_0"),
                         ("layers.0.attention.wk.weight", (256, 256), "Q4_0"),
                         ("layers.0.attention.wv.weight", (256, 256), "Q4_0"),
                         ("layers.0.attention.wo.weight", (256, 256), "Q4_0"),
                         ("layers.0.feed_forward.w1.weight", (256, 512), "Q4_0"),
                         ("layers.0.feed_forward.w2.weight", (512, 256), "Q4_0"),
                         ("layers.0.feed_forward.w3.weight", (256, 512), "Q4_0"),
                         ("layers.0.attention_norm.weight", (256,), "F32"),
                         ("layers.0.ffn_norm.weight", (256,), "F32")]:
        pos += 12 + 4 * len(ne) + len(name)
        pos += -pos % 32
        n = int(np.prod(ne))
        pos += {"Q4_0": n // 32 * 18, "Q6_K": n // 256 * 210, "F32": 4 * n}[ty]
        expect.append(ty)
    assert [ty for _, ty in S.tensor_types(a, "q4_0", "ggmlv3")] == expect
    assert S.ggml_file_size(a, "q4_0", "ggmlv3") == pos


# ---------------------------------------------------------------------------------------------------
# the published tables
# ---------------------------------------------------------------------------------------------------


def _table(name):
    p = SHARED_TABLES / name
    if not p.exists():
        pytest.skip(f"published table {p} not present (the shared/ folder beside the repository)")
    return S.read_table(p)


@pytest.mark.parametrize("name", ["llama2-70b-ggml.psv", "llama2-70b-gptq.psv"])
def test_published_table_reproduces_every_row(name):
    table = _table(name)
    results = S.evaluate_table(table)
    assert len(results) == len(table.rows) >= 8
    bad = [(r["label"], r["predicted_bytes"], r["predicted_gb"], r["published_gb"]) for r in results if not r["ok"]]
    assert not bad
    bad_ram = [(r["label"], r["predicted_ram_gb"], r["published_ram_gb"]) for r in results if r.get("ram_ok") is False]
    assert not bad_ram


def test_ggml_table_header_is_read():
    table = _table("llama2-70b-ggml.psv")
    assert S.table_kind(table) == "ggmlv3"
    assert S.table_architecture(table) == S.ARCHITECTURES["llama-2-70b"]


def test_card_ram_rule_is_a_flat_2_5_GB():
    table = _table("llama2-70b-ggml.psv")
    diffs = {Fraction(r["max_ram_gb"]) - Fraction(r["size_gb"]) for r in table.rows}
    assert diffs == {Fraction(5, 2)}


def test_cli_table_exit_status(capsys):
    from ggspec.cli import main

    _table("llama2-70b-ggml.psv")
    assert main(["sizes", "--table", str(SHARED_TABLES / "llama2-70b-ggml.psv"), "--breakdown", "no"]) == 0
    out = capsys.readouterr().out
    assert "11 pass, 0 FAIL" in out and " FAIL " not in out
    # the same table read as if it were GGUF (today's rules) must not reproduce
    assert main(["sizes", "--table", str(SHARED_TABLES / "llama2-70b-ggml.psv"), "--era", "gguf",
                 "--breakdown", "no"]) == 1


def test_cli_single_prediction_json(capsys):
    from ggspec.cli import main

    assert main(["sizes", "--arch", "llama-2-70b", "--mix", "q4_K_M", "--era", "ggmlv3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    r = d["results"][0]
    assert r["bytes"] == S.ggml_file_size(S.ARCHITECTURES["llama-2-70b"], "Q4_K_M", "ggmlv3")
    assert r["breakdown"]["Q6_K"]["count"] == 81


# ---------------------------------------------------------------------------------------------------
# GGUF: rule history and today's rules
# ---------------------------------------------------------------------------------------------------


def test_gguf_rule_history_on_70b():
    a = S.ARCHITECTURES["llama-2-70b"]
    # 2023-08-21: same as the ggml era
    assert _types_by_role(a, "Q2_K", "gguf@2023-08-21")["attn_v"] == {"Q4_K": 80}
    # 2023-08-22: Q2_K attn_v Q3_K, then 2023-08-26: the 70B rule lifts it to Q5_K
    assert _types_by_role(a, "Q2_K", "gguf@2023-08-22")["attn_v"] == {"Q3_K": 80}
    assert _types_by_role(a, "Q2_K", "gguf@2023-08-26")["attn_v"] == {"Q5_K": 80}
    # Q2_K ffn_gate/up: Q3_K from 2023-08-22 to 2024-01-13
    assert _types_by_role(a, "Q2_K", "gguf@2023-12-01")["ffn_up"] == {"Q3_K": 80}
    assert _types_by_role(a, "Q2_K", "gguf")["ffn_up"] == {"Q2_K": 80}
    # Q3_K_M ffn_down: first 2 layers Q5_K (2023), first n/16 = 5 (2024-01-14 on)
    assert _types_by_role(a, "Q3_K_M", "gguf@2023-09")["ffn_down"] == {"Q5_K": 2, "Q4_K": 78}
    assert _types_by_role(a, "Q3_K_M", "gguf")["ffn_down"] == {"Q5_K": 5, "Q4_K": 75}
    # Q8_0: the output became Q8_0 on 2023-08-27 (Q6_K before)
    assert _types_by_role(a, "Q8_0", "gguf@2023-08-26")["output"] == {"Q6_K": 1}
    assert _types_by_role(a, "Q8_0", "gguf@2023-08-27")["output"] == {"Q8_0": 1}


def test_gguf_mistral_q2_K_attn_v_follows_gqa():
    m = S.ARCHITECTURES["mistral-7b"]
    assert _types_by_role(m, "Q2_K", "gguf")["attn_v"] == {"Q4_K": 32}
    assert _types_by_role(m, "Q2_K", "gguf@2023-10")["attn_v"] == {"Q3_K": 32}


def test_mix_errors():
    a = S.ARCHITECTURES["llama-2-7b"]
    with pytest.raises(GGSpecError):
        S.tensor_types(a, "IQ2_XXS", "ggmlv3")
    with pytest.raises(GGSpecError):
        S.tensor_types(a, "Q4_K_M", "gguf@2023-07-01")
    with pytest.raises(GGSpecError):
        S.tensor_types(a, "Q9_K", "gguf")


def test_round_gb_is_exact():
    assert S.round_gb(26_775_000_000) == "26.78"
    assert S.round_gb(26_774_999_999) == "26.77"
    assert S.round_gb(5) == "0.00"


# ---------------------------------------------------------------------------------------------------
# vocabulary aggregates
# ---------------------------------------------------------------------------------------------------


def test_vocab_aggregates_from_the_vendored_vocab():
    gguf = pytest.importorskip("gguf")
    if not VOCAB_GGUF.exists():
        pytest.skip(f"{VOCAB_GGUF} not present")
    r = gguf.GGUFReader(str(VOCAB_GGUF))
    f = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(f.parts[i]) for i in f.data]
    tt = r.fields["tokenizer.ggml.token_type"]
    types = [int(tt.parts[i][0]) for i in tt.data]
    assert len(toks) == S.LLAMA_SPM.n_tokens
    assert sum(map(len, toks)) == S.LLAMA_SPM.gguf_text_bytes
    # convert.py (2023) for ggml files: unknown " \u2047 ", control "", byte tokens one raw byte, "▁" -> " "
    total = 0
    for tok, ty in zip(toks, types):
        if ty == 2:
            total += len(" \u2047 ".encode())
        elif ty == 3:
            total += 0
        elif ty == 6:
            assert re.fullmatch(rb"<0x[0-9A-F]{2}>", tok)
            total += 1
        else:
            total += len(tok.decode().replace("\u2581", " ").encode())
    assert total == S.LLAMA_SPM.ggmlv3_text_bytes


# ---------------------------------------------------------------------------------------------------
# GPTQ / safetensors
# ---------------------------------------------------------------------------------------------------


def test_safetensors_size_against_the_library(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    a = S.llama_architecture(256, 2, 4, 2, 512, 1000)
    for bits, gs in ((4, 128), (3, None), (8, 32)):
        tensors = S.gptq_tensors(a, bits, gs, True, inv_freq=True)
        dt = {"I32": np.int32, "F16": np.float16, "F32": np.float32}
        arrays = {name: np.zeros(shape, dtype=dt[d]) for name, d, shape in tensors}
        meta = S.autogptq_metadata(bits, gs, True)
        path = tmp_path / f"m{bits}.safetensors"
        st.save_file(arrays, str(path), metadata=meta)
        assert path.stat().st_size == S.gptq_file_size(a, bits, gs, True, inv_freq=True)


def test_gptq_shapes():
    a = S.ARCHITECTURES["llama-2-70b"]
    t = {n: (d, s) for n, d, s in S.gptq_tensors(a, 3, None, True)}
    assert t["model.layers.0.self_attn.k_proj.qweight"] == ("I32", (768, 1024))
    assert t["model.layers.0.self_attn.k_proj.qzeros"] == ("I32", (1, 96))
    assert t["model.layers.0.mlp.down_proj.g_idx"] == ("I32", (28672,))
    assert t["model.layers.0.mlp.down_proj.scales"] == ("F16", (1, 8192))
    assert t["model.layers.5.self_attn.rotary_emb.inv_freq"] == ("F32", (64,))
    t = {n: s for n, _, s in S.gptq_tensors(a, 4, 128, False)}
    assert t["model.layers.0.mlp.down_proj.qzeros"] == (224, 1024)


# ---------------------------------------------------------------------------------------------------
# RAM
# ---------------------------------------------------------------------------------------------------


def test_kv_cache_formula():
    a = S.ARCHITECTURES["llama-2-70b"]
    assert S.kv_cache_bytes(a, 4096) == 4096 * 80 * 2 * 8 * 128 * 2  # 1.25 GiB
    assert S.kv_cache_bytes(S.ARCHITECTURES["llama-2-7b"], 4096, "q8_0") == 4096 * 32 * 2 * 4096 * 34 // 32
    est = S.ram_estimate(a, "Q4_K_M", "gguf", 4096, repack=())
    assert est["total"] == est["weights"] + est["kv_cache"] + est["compute"] + est["overhead"]
    types = S.tensor_types(a, "Q4_K_M", "gguf")
    data = sum(S.tensor_nbytes(ty, t.ne) for t, ty in types)
    header = S.ggml_file_size(a, "Q4_K_M", "gguf") - sum(-(-S.tensor_nbytes(ty, t.ne) // 32) * 32 for t, ty in types)
    # mmap: the span of the tensor data (the header is unmapped again); padding between tensors counts
    assert data <= est["weights"] == S.ggml_file_size(a, "Q4_K_M", "gguf") - header and est["repack"] == 0
    # the worst-case attention buffer at n_ctx 4096: KQ + mask for a 512-token ubatch over 4096 cells
    assert est["compute"] >= 4096 * 512 * 65 * 4
    no_mmap = S.ram_estimate(a, "Q4_K_M", "gguf", 4096, mmap=False, repack=())
    assert no_mmap["weights"] == sum(S.tensor_nbytes(ty, t.ne) for t, ty in S.tensor_types(a, "Q4_K_M", "gguf"))
    half = S.ram_estimate(a, "Q4_K_M", "gguf", 4096, n_gpu_layers=40, repack=())
    assert half["kv_cache"] == est["kv_cache"] // 2 and half["weights"] < est["weights"] * 0.55
    rp = S.ram_estimate(a, "Q4_K_M", "gguf", 4096, repack=S.REPACK_AVX2)
    q4k = sum(S.tensor_nbytes(ty, t.ne) for t, ty in S.tensor_types(a, "Q4_K_M", "gguf")
              if ty == "Q4_K" and t.role != "token_embd")
    assert rp["repack"] == q4k


# ---------------------------------------------------------------------------------------------------
# oracle: llama.cpp's own mix and files
# ---------------------------------------------------------------------------------------------------


def _llama_lib():
    try:
        import llama_cpp
        from llama_cpp import llama_cpp as lc
    except Exception as e:  # pragma: no cover
        pytest.skip(f"llama_cpp (oracle) unavailable: {e}")
    libdir = Path(llama_cpp.__file__).parent / "lib"
    return ctypes.CDLL(str(libdir / "libggml-base.so")), ctypes.CDLL(str(libdir / "libllama.so")), lc


class _GGMLInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class _QuantModelDesc(ctypes.Structure):
    _fields_ = [("architecture", ctypes.c_char_p)] + [(n, ctypes.c_uint32) for n in (
        "n_embd", "n_ff", "n_layer", "n_head", "n_head_kv", "n_expert", "n_embd_head_k", "n_embd_head_v")]


def _oracle_types(arch: S.LlamaArchitecture, ftype: int) -> list[str]:
    """llama.cpp's llama_quant_compute_types (llama-ext.h) for our GGUF tensor list, in order."""
    ggml, llama, lc = _llama_lib()
    sym = {
        "model": "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc",
        "init": "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params",
        "types": "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem",
        "free": "_Z16llama_quant_freeP19quantize_state_impl",
    }
    try:
        f = {k: getattr(llama, v) for k, v in sym.items()}
    except AttributeError as e:
        pytest.skip(f"libllama lacks the llama-ext.h quantization helpers: {e}")
    f["model"].restype, f["model"].argtypes = ctypes.c_void_p, [ctypes.POINTER(_QuantModelDesc)]
    f["init"].restype = ctypes.c_void_p
    f["init"].argtypes = [ctypes.c_void_p, ctypes.POINTER(lc.llama_model_quantize_params)]
    f["types"].restype = None
    f["types"].argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                           ctypes.POINTER(ctypes.c_int), ctypes.c_size_t]
    f["free"].argtypes = [ctypes.c_void_p]
    llama.llama_model_free.argtypes = [ctypes.c_void_p]
    llama.llama_model_quantize_default_params.restype = lc.llama_model_quantize_params
    ggml.ggml_init.restype, ggml.ggml_init.argtypes = ctypes.c_void_p, [_GGMLInitParams]
    ggml.ggml_new_tensor.restype = ctypes.c_void_p
    ggml.ggml_new_tensor.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    ggml.ggml_set_name.restype, ggml.ggml_set_name.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
    ggml.ggml_free.argtypes = [ctypes.c_void_p]

    d = _QuantModelDesc(b"llama", arch.dim, arch.ffn_dim, arch.n_layers, arch.n_heads, arch.n_kv_heads, 0,
                        arch.n_embd_head, arch.n_embd_head)
    model = f["model"](ctypes.byref(d))
    params = llama.llama_model_quantize_default_params()
    qs = f["init"](model, ctypes.byref(params))
    ctx = ggml.ggml_init(_GGMLInitParams(1 << 22, None, True))
    try:
        tensors = [t for t in arch.tensors("gguf") if t.n_dims == 2]
        ptrs = []
        for t in tensors:
            ne = (ctypes.c_int64 * 2)(*t.ne)
            p = ggml.ggml_new_tensor(ctx, 1, 2, ne)  # F16 source
            ggml.ggml_set_name(p, t.name("gguf").encode())
            ptrs.append(p)
        arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
        out = (ctypes.c_int * len(ptrs))()
        f["types"](qs, ftype, arr, out, len(ptrs))
        return [get_type(int(x)).name for x in out]
    finally:
        ggml.ggml_free(ctx)
        f["free"](qs)
        llama.llama_model_free(model)


ORACLE_ARCHS = ["llama-2-7b", "llama-2-70b", "mistral-7b", "codellama-7b", "llama-33b"]
ORACLE_MIXES = [m for m in S.FTYPES if m not in ("F32", "F16", "BF16")]


@pytest.mark.oracle
@pytest.mark.parametrize("arch_name", ORACLE_ARCHS + ["odd"])
def test_gguf_mix_matches_llama_quant_compute_types(oracle, arch_name):
    arch = (S.llama_architecture(320, 16, 5, 1, 960, 1000, name="odd") if arch_name == "odd"
            else S.ARCHITECTURES[arch_name])
    for mix in ORACLE_MIXES:
        try:
            ours = [ty for t, ty in S.tensor_types(arch, mix, "gguf", imatrix=False) if t.n_dims == 2]
        except GGSpecError as e:
            # llama.cpp throws here too ("no tensor type fallback is defined"), which ctypes cannot
            # survive: only Q1_0 (block 128) on rows that are not a multiple of 128
            assert mix == "Q1_0" and "no tensor type fallback" in str(e)
            continue
        try:
            theirs = _oracle_types(arch, S.FTYPES[mix])
        except Exception as e:  # pragma: no cover
            pytest.fail(f"{mix}: {e}")
        assert ours == theirs, (mix, [(t.name(), a, b) for t, a, b in zip(
            [t for t in arch.tensors("gguf") if t.n_dims == 2], ours, theirs) if a != b][:5])


def _write_f16_gguf(path: Path, arch: S.LlamaArchitecture, tokens: list[bytes], scores, token_types) -> None:
    """A converter-like F16 GGUF with exactly the key/values of S.gguf_metadata(arch, "F16")."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")  # writes general.architecture
    for kv in S.gguf_metadata(arch, "F16"):
        k, kind, v = kv.key, kv.kind, kv.value
        if k == "general.architecture":
            continue
        if k == "tokenizer.ggml.tokens":
            w.add_array(k, tokens)
        elif k == "tokenizer.ggml.scores":
            w.add_array(k, [float(s) for s in scores])
        elif k == "tokenizer.ggml.token_type":
            w.add_array(k, [int(t) for t in token_types])
        elif kind == "str":
            w.add_string(k, v)
        elif kind == "u32":
            w.add_uint32(k, int(v))
        elif kind == "f32":
            w.add_float32(k, float(v))
        else:  # pragma: no cover
            raise AssertionError(kind)
    rng = np.random.default_rng(0)
    for t in arch.tensors("gguf"):
        shape = tuple(reversed(t.ne))
        if t.n_dims == 1:
            w.add_tensor(t.name("gguf"), np.ones(shape, np.float32))
        else:
            w.add_tensor(t.name("gguf"), (rng.standard_normal(shape) * 0.02).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.oracle
@pytest.mark.parametrize("shape", ["gqa", "odd"])
def test_gguf_file_size_matches_llama_model_quantize(oracle, tmp_path, shape):
    gguf = pytest.importorskip("gguf")
    if not VOCAB_GGUF.exists():
        pytest.skip(f"{VOCAB_GGUF} not present")
    _, llama, lc = _llama_lib()
    r = gguf.GGUFReader(str(VOCAB_GGUF))
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]) for i in f.data]
    scores = [float(r.fields["tokenizer.ggml.scores"].parts[i][0]) for i in r.fields["tokenizer.ggml.scores"].data]
    ttypes = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0])
              for i in r.fields["tokenizer.ggml.token_type"].data]
    if shape == "gqa":
        arch = S.llama_architecture(256, 2, 4, 2, 512, 32000, name="tiny")
        mixes = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                 "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ2_0"]
    else:  # rows not a multiple of 256: the fallback table
        arch = S.llama_architecture(320, 2, 5, 5, 640, 32000, name="odd")
        mixes = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_XS"]
    src = tmp_path / "f16.gguf"
    _write_f16_gguf(src, arch, tokens, scores, ttypes)
    assert src.stat().st_size == S.ggml_file_size(arch, "F16", "gguf")
    for mix in mixes:
        out = tmp_path / f"{mix}.gguf"
        params = lc.llama_model_quantize_default_params()
        params.ftype = S.FTYPES[mix]
        params.nthread = 2
        rc = lc.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
        assert rc == 0, mix
        got = out.stat().st_size
        assert got == S.ggml_file_size(arch, mix, "gguf", imatrix=False), (mix, got)
        out.unlink()


def test_gguf_fallback_history():
    # rows of 320 are not a multiple of 256: what a Q3_K_M attn_q became over time
    a = S.llama_architecture(320, 2, 5, 5, 640, 32000)

    def q(era):
        return {S.Tensor("attn_q", 0, (320, 320)).name(): ty for t, ty in S.tensor_types(a, "Q3_K_M", era)
                if t.role == "attn_q" and t.layer == 0}[S.Tensor("attn_q", 0, (320, 320)).name()]

    with pytest.raises(GGSpecError):
        q("gguf@2023-09-30")  # an error before 2023-10-28
    assert q("gguf@2023-11-01") == "Q4_1"
    assert q("gguf@2024-03-01") == "IQ4_NL"
    assert q("gguf") == "Q4_0"
    with pytest.raises(GGSpecError):
        S.tensor_types(a, "IQ4_XS", "gguf@2024-01-01")


_RSS_CHILD = r"""
import json, sys, llama_cpp
path, n_ctx, n_prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=2, verbose=False)
if n_prompt:
    m.eval([1] + [3 + (i * 7919) % 31000 for i in range(n_prompt - 1)])
"""
_RSS_WRAPPER = r"""
import resource, subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1]] + sys.argv[2:], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def peak_rss_of_llama_cpp(path: Path, n_ctx: int, n_prompt: int) -> int:
    """Peak RSS (bytes) of a fresh process that loads ``path`` with llama_cpp and evaluates a prompt,
    read with getrusage(RUSAGE_CHILDREN) in a wrapper process that runs only that child."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, _RSS_CHILD, str(path), str(n_ctx), str(n_prompt)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.oracle
@pytest.mark.slow
def test_ram_estimate_within_10_percent_of_peak_rss(oracle, tmp_path):
    gguf = pytest.importorskip("gguf")
    if not VOCAB_GGUF.exists():
        pytest.skip(f"{VOCAB_GGUF} not present")
    _, llama, lc = _llama_lib()
    r = gguf.GGUFReader(str(VOCAB_GGUF))
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]) for i in f.data]
    scores = [float(r.fields["tokenizer.ggml.scores"].parts[i][0]) for i in r.fields["tokenizer.ggml.scores"].data]
    ttypes = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0])
              for i in r.fields["tokenizer.ggml.token_type"].data]
    arch = S.llama_architecture(512, 4, 8, 2, 1408, 32000, name="rss")
    src = tmp_path / "f16.gguf"
    _write_f16_gguf(src, arch, tokens, scores, ttypes)
    results = []
    for mix, n_ctx, n_prompt in (("Q4_K_M", 512, 0), ("Q4_K_M", 4096, 512), ("Q8_0", 2048, 1024)):
        path = tmp_path / f"{mix}.gguf"
        if not path.exists():
            params = lc.llama_model_quantize_default_params()
            params.ftype = S.FTYPES[mix]
            params.nthread = 2
            assert lc.llama_model_quantize(str(src).encode(), str(path).encode(), ctypes.byref(params)) == 0
        measured = peak_rss_of_llama_cpp(path, n_ctx, n_prompt)
        est = S.ram_estimate(arch, mix, "gguf", n_ctx, n_prompt=n_prompt)["total"]
        results.append((mix, n_ctx, n_prompt, measured, est, est / measured - 1))
    print(results)
    bad = [r for r in results if abs(r[5]) > 0.10]
    assert not bad, results


def test_table_header_parsing(tmp_path):
    p = tmp_path / "t.psv"
    p.write_text("# Llama-2-7B (Meta), GGUF files, published September 2023\n"
                 "# Architecture: dim 4096, 32 layers, 32 heads, ffn 11008, vocab 32000.\n"
                 "name|quant_method|bits|size_gb|max_ram_gb|use_case\n"
                 "llama-2-7b.Q4_K_M.gguf|Q4_K_M|4|0.00|0.00|x\n")
    t = S.read_table(p)
    assert S.table_architecture(t).name == "llama-2-7b"  # not llama-7b, which has the same shapes
    assert S.table_kind(t) == "gguf@2023-09"
    r = S.evaluate_table(t)[0]
    assert not r["ok"] and r["predicted_bytes"] == S.ggml_file_size(S.ARCHITECTURES["llama-2-7b"], "Q4_K_M",
                                                                     "gguf@2023-09")
    p.write_text("# LLaMA 30B, GGML ggmlv3 files, published June 2023\n"
                 "name|quant_method|bits|size_gb|max_ram_gb|use_case\n"
                 "llama-30b.ggmlv3.q4_0.bin|q4_0|4|0.00|0.00|x\n")
    t = S.read_table(p)
    assert S.table_architecture(t).name == "llama-30b" and S.table_kind(t) == "ggmlv3"
