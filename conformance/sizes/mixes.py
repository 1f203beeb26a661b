"""The quantizer's mix rules: which ggml type each tensor gets, per era."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from ...errors import GGSpecError
from ...reference.types import QK_K, get_type
from .archs import LlamaArchitecture, Tensor
from .common import tensor_nbytes

# ---------------------------------------------------------------------------------------------------
# Quant mixes
# ---------------------------------------------------------------------------------------------------

# llama.h's enum llama_ftype (the value stored as general.file_type / the ggmlv3 header's ftype)
FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21,
    "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27,
    "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36, "TQ2_0": 37,
    "MXFP4_MOE": 38, "Q1_0": 40, "Q2_0": 41,
}

# llama_ftype_get_default_type (vendored llama-quant.cpp)
DEFAULT_TYPE: dict[str, str] = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
    "Q5_1": "Q5_1", "Q8_0": "Q8_0", "Q1_0": "Q1_0", "Q2_0": "Q2_0", "MXFP4_MOE": "MXFP4",
    "Q2_K_S": "Q2_K", "Q2_K": "Q2_K", "IQ3_XS": "IQ3_S", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K", "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS",
    "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S", "IQ3_XXS": "IQ3_XXS", "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M",
    "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S",
}

# mixes of the ggml era (llama.cpp 2023-07/08, built with k-quants)
GGMLV3_MIXES = ("F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M",
                "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K")
GGUF_MIXES = tuple(m for m in FTYPES)

# ftypes whose low-bit tensors llama-quantize refuses to make without an importance matrix
# (tensor_requires_imatrix): the default for ``imatrix=None``.
IMATRIX_MIXES = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "Q2_K_S")


def normalize_mix(mix: str) -> str:
    """``q4_K_M`` / ``Q4_K_M`` / ``LLAMA_FTYPE_MOSTLY_Q4_K_M`` / ``mostly q4_k_m`` -> ``Q4_K_M``."""
    m = mix.strip().upper()
    for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_", "LLAMA_FTYPE_", "MOSTLY_", "MOSTLY "):
        if m.startswith(prefix):
            m = m[len(prefix):]
    if m not in FTYPES:
        raise GGSpecError(f"unknown quant mix {mix!r}; known: {', '.join(FTYPES)}")
    return m


# The dates at which llama.cpp changed the mix of a dense Llama model (git history of llama.cpp;
# commit, date, what changed).  ``gguf@DATE`` selects the rules in force at the end of that day.
GGUF_RULE_CHANGES: tuple[tuple[str, str, str], ...] = (
    ("6381d4e11", "2023-08-21", "GGUF; quantization rules unchanged from the ggml era (097e121e2)"),
    ("bac66994c", "2023-08-22", "Q2_K: attn_v/attn_output/ffn_down/gate/up -> Q3_K; Q3_K_M first 2 attn_v and "
                                "ffn_down Q5_K; Q4_K_S first 4 attn_v and ffn_down Q5_K"),
    ("759237540", "2023-08-26", "70B: attn_v Q3_K/Q4_K -> Q5_K"),
    ("04f4b1eb1", "2023-08-26", "k-quants only need ne[0] % 256 == 0 (ne[1] no longer checked)"),
    ("a6d1189fd", "2023-08-27", "output: Q8_0 when ne[0] % 256 != 0 or mix is Q8_0, else Q6_K"),
    ("bd6d9e205", "2023-10-28", "incompatible rows fall back per type (Q2_K->Q4_0, Q3_K->Q4_1, Q4_K->Q5_0, "
                                "Q5_K->Q5_1, Q6_K->Q8_0) instead of output F16 / token_embd Q4_0 / error"),
    ("147b17ac9", "2024-01-14", "Q2_K: ffn_gate/up back to Q2_K; Q3_K_M ffn_down first n/16 Q5_K; Q4_K_S "
                                "ffn_down first n/8 Q5_K; Q2_K_S added"),
    ("2b3a665d3", "2024-01-17", "Q2_K attn_v Q4_K when n_gqa >= 4; Q4_0/Q5_0 with imatrix: first n/8 ffn_down "
                                "Q4_1/Q5_1"),
    ("vendored", "today", "llama-cpp-python 0.3.36's llama-quant.cpp: same for dense Llama K/legacy mixes, "
                          "plus IQ/TQ/MXFP4 mixes and the current fallback table"),
)


# when llama.cpp added the mixes that the ggml era did not have (git history); for dated rules after
# these days the i-quant / ternary choices follow today's code (their early variants are not modelled)
MIX_INTRODUCED = {
    "Q2_K_S": "2024-01-14", "IQ2_XXS": "2024-01-14", "IQ2_XS": "2024-01-14", "IQ3_XS": "2024-01-22",
    "IQ3_XXS": "2024-01-30", "IQ1_S": "2024-02-18", "IQ4_NL": "2024-02-21", "IQ3_S": "2024-02-24",
    "IQ3_M": "2024-02-24", "IQ2_S": "2024-02-26", "IQ2_M": "2024-02-26", "IQ4_XS": "2024-02-27",
    "IQ1_M": "2024-03-26", "BF16": "2024-03-11", "TQ1_0": "2024-09-05", "TQ2_0": "2024-09-05",
}
# the last llama.cpp commit whose rules were transcribed date by date; later dates use today's rules
LAST_DATED_RULES = "2025-02-20"


def _rules_date(era: str) -> "tuple[str, str]":
    """('ggmlv3'|'gguf', 'YYYY-MM-DD' or 'today') from an era string such as 'gguf@2023-09-15'."""
    base, _, date = era.partition("@")
    base = base.strip().lower()
    if base not in ("ggmlv3", "gguf"):
        raise GGSpecError(f"unknown era {era!r}: use 'ggmlv3', 'gguf' or 'gguf@YYYY-MM-DD'")
    if base == "ggmlv3":
        if date:
            raise GGSpecError("the ggmlv3 era has one rule set (llama.cpp 097e121e2); drop the @date")
        return base, "2023-08-18"
    if not date or date == "today":
        return base, "today"
    try:
        d = datetime.strptime(date.strip(), "%Y-%m-%d" if len(date.strip()) > 7 else "%Y-%m")
    except ValueError as e:
        raise GGSpecError(f"bad date in era {era!r}: use YYYY-MM-DD") from e
    if len(date.strip()) <= 7:  # a month: its last day
        nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1)
        d = datetime.fromordinal(nxt.toordinal() - 1)
    if d.strftime("%Y-%m-%d") < "2023-08-21":
        raise GGSpecError(f"GGUF did not exist before 2023-08-21 (era {era!r})")
    if d.strftime("%Y-%m-%d") > LAST_DATED_RULES:
        return base, "today"
    return base, d.strftime("%Y-%m-%d")


def _since(date: str, change: str) -> bool:
    return date == "today" or date >= change


@dataclass
class _QuantState:
    """The counters of llama.cpp's quantize_state (the i-th attn_v / ffn_down ... seen so far)."""

    n_attention_wv: int
    n_ffn_down: int
    n_ffn_gate: int
    n_ffn_up: int
    has_imatrix: bool
    has_output: bool
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: the first and last eighth of the layers, and every third between.

    C integer division; ``(i - n/8) % 3 == 2`` with C's remainder (the operand is never negative here
    because the first branch already covers i < n/8).
    """
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _ggmlv3_mix(arch: LlamaArchitecture, mix: str) -> list[tuple[Tensor, str]]:
    """Tensor types of a ggmlv3 file: llama.cpp ``llama_model_quantize_internal`` at 097e121e2.

    * Only 2-D tensors whose name ends in ``weight`` are quantized; 1-D norms stay F32 (as the
      converter wrote them).
    * ``output.weight`` gets Q6_K when both its dimensions are multiples of QK_K -- for *every*
      quantized mix, the legacy ones (q4_0 ... q8_0) included, since k-quants were compiled in.
    * ``attention.wv``: q2_K and q3_K_M -> Q4_K, q3_K_L -> Q5_K, q4_K_M / q5_K_M -> Q6_K where
      ``use_more_bits(i, n)``.  ``feed_forward.w2``: the same.  ``attention.wo``: q2_K and q3_K_M ->
      Q4_K, q3_K_L -> Q5_K.  Nothing else changes (no GQA / 70B special case existed yet).
    * A k-quant target needs ne[0] and ne[1] to be multiples of 256: otherwise ``output.weight``
      falls back to F16, ``tok_embeddings.weight`` to Q4_0, any other tensor is an error.
    """
    if mix not in GGMLV3_MIXES:
        raise GGSpecError(f"mix {mix} did not exist in the ggml era; ggmlv3 mixes: {', '.join(GGMLV3_MIXES)}")
    tensors = arch.tensors("ggmlv3")
    if mix in ("F32", "F16"):  # convert.py output: 2-D weights in the chosen float type, 1-D F32
        return [(t, mix if t.n_dims == 2 else "F32") for t in tensors]
    base = DEFAULT_TYPE[mix]
    n_wv = sum(1 for t in tensors if t.role == "attn_v")
    n_w2 = sum(1 for t in tensors if t.role == "ffn_down")
    i_wv = i_w2 = 0
    out = []
    for t in tensors:
        if t.n_dims != 2:
            out.append((t, "F32"))
            continue
        new = base
        nx, ny = t.ne[0], t.ne[1]
        if t.role == "output":
            if nx % QK_K == 0 and ny % QK_K == 0:
                new = "Q6_K"
        elif t.role == "attn_v":
            if mix in ("Q3_K_M", "Q2_K"):
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
            elif mix in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_wv, n_wv):
                new = "Q6_K"
            i_wv += 1
        elif t.role == "ffn_down":
            if mix in ("Q3_K_M", "Q2_K"):
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
            elif mix in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_w2, n_w2):
                new = "Q6_K"
            i_w2 += 1
        elif t.role == "attn_output":
            if mix in ("Q3_K_M", "Q2_K"):
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
        if new in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K") and (nx % QK_K or ny % QK_K):
            if t.role == "output":
                new = "F16"
            elif t.role == "token_embd":
                new = "Q4_0"
            else:
                raise GGSpecError(f"{t.name('ggmlv3')} {t.ne}: unsupported tensor size for k-quants (ggml era)")
        out.append((t, new))
    return out


_IQ2_FAMILY = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def _gguf_impl_type(arch: LlamaArchitecture, t: Tensor, mix: str, new: str, qs: _QuantState, date: str) -> str:
    """``llama_tensor_get_type_impl`` for LLM_ARCH_LLAMA (dense: n_expert 0), at a rules date."""
    role = t.role
    n_gqa = arch.n_gqa
    q = mix
    if role == "output" or (not qs.has_output and role == "token_embd"):
        nx = t.ne[0]
        if not _since(date, "2023-08-27"):
            # ggml-era rule: Q6_K when the tensor fits k-quants (ne[1] dropped on 2023-08-26)
            fits = nx % QK_K == 0 and (t.ne[1] % QK_K == 0 or _since(date, "2023-08-26"))
            return "Q6_K" if fits else new
        qk = get_type(new).block_size if date == "today" else QK_K
        if q == "MXFP4_MOE" or nx % qk:
            return "Q8_0"
        if q in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return "Q5_K"
        if new != "Q8_0":
            return "Q6_K"
        return new
    if q == "MXFP4_MOE":
        return "Q8_0"  # dense tensors (ne[2] == 1)
    if role == "token_embd":
        if q in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if q in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if q in ("TQ1_0", "TQ2_0", "Q2_0"):
            return "Q4_K"
        return new
    if q in _IQ2_FAMILY:
        if role == "attn_v":
            new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if q in ("IQ2_S", "IQ2_M") else "Q2_K")
            qs.i_attention_wv += 1
        elif role == "ffn_down":
            if qs.i_ffn_down < qs.n_ffn_down // 8:
                new = "IQ3_S" if q in ("IQ2_S", "IQ2_M") else "Q2_K"
            qs.i_ffn_down += 1
        elif role == "attn_output":
            if q in ("IQ1_S", "IQ1_M"):
                new = "IQ2_XXS"
            elif q in ("IQ2_S", "IQ2_M"):
                new = "IQ3_S"
        return new
    if role == "attn_v":
        if q == "Q2_K":
            if _since(date, "2024-01-17"):
                new = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif _since(date, "2023-08-22"):
                new = "Q3_K"
            else:
                new = "Q4_K"
        elif q == "Q2_K_S" and n_gqa >= 4 and _since(date, "2024-01-17"):
            new = "Q4_K"
        elif q == "IQ3_XXS":
            new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if not qs.has_imatrix else "IQ3_XXS")
        elif q in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
            new = "Q4_K"
        elif q == "IQ3_M":
            new = "Q4_K"
        elif q == "Q3_K_M":
            if _since(date, "2023-08-22"):
                new = "Q5_K" if qs.i_attention_wv < 2 else "Q4_K"
            else:
                new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
            new = "Q5_K"
        elif q in ("Q4_K_M", "Q5_K_M") and use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new = "Q6_K"
        elif q == "Q4_K_S" and qs.i_attention_wv < 4 and _since(date, "2023-08-22"):
            new = "Q5_K"
        if arch.is_70b and _since(date, "2023-08-26"):
            # 8 heads share attn_v in the 70B model: more bits for a nearly free size increase
            if new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
        qs.i_attention_wv += 1
        return new
    if role == "attn_k":
        if q == "IQ3_XS":
            return "IQ3_XXS"
        if q == "IQ3_XXS":
            return "IQ2_S"
        return new
    if role == "attn_q":
        if q == "IQ3_XS":
            return "IQ3_XXS"
        if q == "IQ3_XXS":
            return "IQ2_S"
        return new
    if role == "ffn_down":
        i, n = qs.i_ffn_down, qs.n_ffn_down
        first_q3km = (n // 16) if _since(date, "2024-01-14") else 2
        first_q4ks = (n // 8) if _since(date, "2024-01-14") else 4
        if q == "Q2_K":
            new = "Q3_K" if _since(date, "2023-08-22") else "Q4_K"
        elif q == "Q2_K_S":
            if i < n // 8:
                new = "Q4_K"
        elif q == "IQ3_XXS" and not qs.has_imatrix:
            new = "Q4_K" if i < n // 8 else "Q3_K"
        elif q == "Q3_K_M":
            if _since(date, "2023-08-22"):
                new = "Q5_K" if i < first_q3km else "Q4_K"  # (Q3_K only for Falcon)
            else:
                new = "Q4_K"
        elif q == "IQ3_M" and i < n // 8:
            new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q == "Q4_K_M":
            if use_more_bits(i, n):
                new = "Q6_K"
        elif i < n // 8 and q in ("IQ4_NL", "IQ4_XS") and not qs.has_imatrix:
            new = "Q5_K"
        elif q == "Q5_K_M" and use_more_bits(i, n):
            new = "Q6_K"
        elif q == "Q4_K_S" and i < first_q4ks and _since(date, "2023-08-22"):
            new = "Q5_K"
        elif q in ("Q4_0", "Q5_0") and qs.has_imatrix and i < n // 8 and _since(date, "2024-01-17"):
            new = "Q4_1" if q == "Q4_0" else "Q5_1"
        qs.i_ffn_down += 1
        return new
    if role == "attn_output":
        if q == "Q2_K":
            new = "Q3_K" if _since(date, "2023-08-22") else "Q4_K"
        elif q == "IQ3_XXS":
            new = "IQ3_S"
        elif q == "Q3_K_M":
            new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q == "IQ3_M":
            new = "Q4_K"
        return new
    if role in ("ffn_gate", "ffn_up"):
        i = qs.i_ffn_gate if role == "ffn_gate" else qs.i_ffn_up
        n = qs.n_ffn_gate if role == "ffn_gate" else qs.n_ffn_up
        if q == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "IQ3_XXS"
        elif q == "Q2_K" and _since(date, "2023-08-22") and not _since(date, "2024-01-14"):
            new = "Q3_K"
        if role == "ffn_gate":
            qs.i_ffn_gate += 1
        else:
            qs.i_ffn_up += 1
        return new
    return new


# today's tensor_type_fallback: rows not a multiple of the target's block size
_FALLBACK_TODAY = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_0": "Q4_0", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
# 2023-10-28 .. 2024-02-20: the first per-type fallback table (bd6d9e205)
_FALLBACK_2023_10 = {"Q2_K": "Q4_0", "Q3_K": "Q4_1", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
# 2024-02-21 (a14679cc3) .. at least 2025-02-20: Q2_K, Q3_K and the i-quants fall back to IQ4_NL
_FALLBACK_2024_02 = {"IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL",
                     "IQ3_S": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL",
                     "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
                     "TQ1_0": "Q4_0", "TQ2_0": "Q4_0"}


def _gguf_fallback(t: Tensor, new: str, date: str) -> str:
    ncols = t.ne[0]
    kquants = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
    if date != "today":
        if _since(date, "2024-02-21"):
            if get_type(new).block_size != QK_K or ncols % QK_K == 0:
                return new
            return _FALLBACK_2024_02[new]
        if new not in kquants:
            return new
        bad = ncols % QK_K != 0 or (not _since(date, "2023-08-26") and t.ne[1] % QK_K != 0)
        if not bad:
            return new
        if _since(date, "2023-10-28"):
            return _FALLBACK_2023_10[new]
        if t.role == "output":
            return "F16"
        if t.role == "token_embd":
            return "Q4_0"
        raise GGSpecError(f"{t.name()} {t.ne}: unsupported tensor size for k-quants (rules of {date})")
    bs = get_type(new).block_size
    if ncols % bs == 0:
        return new
    if new in _FALLBACK_TODAY:
        ret = _FALLBACK_TODAY[new]
    elif bs <= 32:
        ret = new
    else:
        raise GGSpecError(f"no tensor type fallback is defined for type {new}")
    if ncols % get_type(ret).block_size:
        ret = "F16"  # "must use F16 due to unusual shape"
    return ret


def _gguf_mix(arch: LlamaArchitecture, mix: str, date: str, imatrix: "bool | None",
              overrides: "QuantOverrides | None" = None) -> list[tuple[Tensor, str]]:
    """Tensor types of a GGUF file made by llama-quantize from an F16/F32 conversion (rules at ``date``)."""
    tensors = arch.tensors("gguf")
    if overrides is not None and not overrides.is_default and date != "today":
        # --token-embedding-type / --output-tensor-type replace the type of token_embd / output.weight as
        # given (no fallback, no counter involved), so they apply on top of any day's rules; the other
        # options interact with the counters and fallbacks of the day: not modelled
        rest = replace(overrides, token_embedding_type=None, output_tensor_type=None)
        if not rest.is_default:
            raise NotModelled(f"--tensor-type / --pure / --leave-output-tensor with the rules of {date} "
                              f"(only --token-embedding-type and --output-tensor-type are modelled there)")
        if arch.tied_embeddings and overrides.output_tensor_type and not overrides.token_embedding_type:
            raise NotModelled(f"--output-tensor-type on tied embeddings with the rules of {date}")
        dated = _gguf_mix(arch, mix, date, imatrix, None)
        out = []
        for t, ty in dated:
            if t.role == "token_embd" and overrides.token_embedding_type:
                ty = overrides.token_embedding_type
            elif t.role == "output" and overrides.output_tensor_type:
                ty = overrides.output_tensor_type
            out.append((t, ty))
        return out
    if mix in ("F32", "F16", "BF16") and (overrides is None or overrides.is_default):  # the converter's output (convert.py: 1-D tensors stay F32)
        return [(t, mix if t.n_dims == 2 else "F32") for t in tensors]
    if date != "today" and mix not in GGMLV3_MIXES:
        since = MIX_INTRODUCED.get(mix, "today")
        if since == "today" or date < since:
            raise GGSpecError(f"mix {mix} did not exist on {date} (llama.cpp added it on {since}); "
                              f"pass era='gguf' for today's rules")
    if date == "today":  # today's rules: the name-based transcription every architecture uses
        model = QuantModel("llama", arch.n_layers, arch.n_heads, arch.n_kv_heads, 0, arch.is_70b)
        by_name = today_tensor_types(model, [(t.name("gguf"), t.ne, "F32" if t.n_dims < 2 else "F16")
                                             for t in tensors], mix,
                                     replace(overrides, imatrix=imatrix) if overrides is not None
                                     else QuantOverrides(imatrix=imatrix))
        return [(t, by_name[t.name("gguf")]) for t in tensors]
    base = DEFAULT_TYPE[mix]
    has_imatrix = (mix in IMATRIX_MIXES) if imatrix is None else bool(imatrix)
    qs = _QuantState(
        n_attention_wv=sum(1 for t in tensors if t.role == "attn_v"),
        n_ffn_down=arch.n_layers, n_ffn_gate=arch.n_layers, n_ffn_up=arch.n_layers,
        has_imatrix=has_imatrix, has_output=not arch.tied_embeddings,
    )
    out = []
    for t in tensors:
        # tensor_allows_quantization: 2-D, name ends in "weight", not a norm
        if t.n_dims < 2 or t.role in ("attn_norm", "ffn_norm", "output_norm"):
            out.append((t, "F32"))
            continue
        new = _gguf_impl_type(arch, t, mix, base, qs, date)
        new = _gguf_fallback(t, new, date)
        out.append((t, new))
    return out


def tensor_types(arch: LlamaArchitecture, mix: str, era: str = "gguf", imatrix: "bool | None" = None,
                 overrides: "QuantOverrides | None" = None) -> list[tuple[Tensor, str]]:
    """[(tensor, ggml type name)] in file order: the quant mix of ``mix`` for ``arch`` in ``era``.

    ``era``: ``"ggmlv3"``, ``"gguf"`` (today's rules) or ``"gguf@YYYY-MM-DD"`` (rules of that day).
    ``imatrix``: whether an importance matrix was used (changes a few GGUF-era choices); None means
    "only where llama-quantize requires one".  ``overrides``: llama-quantize's options (today's rules only).
    A published name with the "_L" / "_XL" suffix: see ``published_mix``.
    """
    mix, extra = published_mix(mix)
    if extra is not None:
        overrides = extra if overrides is None else replace(overrides, token_embedding_type="Q8_0",
                                                            output_tensor_type="Q8_0")
    base, date = _rules_date(era)
    if base == "ggmlv3":
        if overrides is not None and not overrides.is_default:
            raise NotModelled("llama-quantize's overrides in the ggml era")
        return _ggmlv3_mix(arch, mix)
    return _gguf_mix(arch, mix, date, imatrix, overrides)


def published_mix(name: str) -> "tuple[str, QuantOverrides | None]":
    """A mix name as published: a llama.cpp mix, or a "_L" / "_XL" quant -- a standard mix made with
    ``--token-embedding-type Q8_0 --output-tensor-type Q8_0`` (Q4_K_L = Q4_K_M, Q5_K_L = Q5_K_M,
    Q6_K_L = Q6_K, Q2_K_L = Q2_K, Q3_K_XL = Q3_K_L, each with Q8_0 embeddings and output)."""
    try:
        return normalize_mix(name), None
    except GGSpecError:
        pass
    m = name.strip().upper()
    for suffix, repl in (("_XL", ("_L",)), ("_L", ("_M", ""))):
        if m.endswith(suffix):
            stem = m[: -len(suffix)]
            for r in repl:
                if stem + r in FTYPES:
                    return stem + r, QuantOverrides(token_embedding_type="Q8_0", output_tensor_type="Q8_0")
    return normalize_mix(name), None  # raises with the list of known mixes


def mix_breakdown(types: Iterable[tuple[Tensor, str]]) -> dict[str, dict]:
    """{type: {"count", "bytes", "roles": {role: count}}} of a tensor-type list."""
    out: dict[str, dict] = {}
    for t, ty in types:
        e = out.setdefault(ty, {"count": 0, "elements": 0, "bytes": 0, "roles": {}})
        e["count"] += 1
        e["elements"] += t.n_elements
        e["bytes"] += tensor_nbytes(ty, t.ne)
        e["roles"][t.role] = e["roles"].get(t.role, 0) + 1
    return out




# ---------------------------------------------------------------------------------------------------
# Today's rules by tensor name (llama-quant.cpp of llama-cpp-python 0.3.36), for any inventory
# ---------------------------------------------------------------------------------------------------


class NotModelled(GGSpecError):
    """The size model does not know this architecture / tensor / ftype: ``missing`` names what is missing.

    Commands print "not modelled: ..." and exit with status 2; no number is given."""

    def __init__(self, missing: str):
        super().__init__(f"not modelled: {missing}")
        self.missing = missing


@dataclass(frozen=True)
class QuantModel:
    """What ``llama_tensor_get_type`` reads from the model: ``hparams`` at layer 0 and ``model.type``.

    ``type_70b``: llama.cpp's ``model.type == LLM_TYPE_70B`` (set per architecture by its
    ``load_arch_hparams``; see ``archs.ARCH_SPECS``)."""

    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0
    type_70b: bool = False

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0


@dataclass(frozen=True)
class QuantOverrides:
    """llama-quantize's options, same names and semantics (tools/quantize/quantize.cpp).

    ``imatrix``: whether an importance matrix was used (None: only where the mix needs one);
    ``token_embedding_type`` / ``output_tensor_type``: ``--token-embedding-type`` / ``--output-tensor-type``
    (returned as given: no fallback is applied, as in llama.cpp); ``tensor_types``: ``--tensor-type
    PATTERN=TYPE`` in order (the first regex that ``regex_search``-matches a name wins; the fallback
    still applies); ``pure``: ``--pure`` (the default type everywhere, no mix rules); ``leave_output_tensor``:
    ``--leave-output-tensor`` (``output.weight`` keeps its source type)."""

    imatrix: "bool | None" = None
    token_embedding_type: "str | None" = None
    output_tensor_type: "str | None" = None
    tensor_types: "tuple[tuple[str, str], ...]" = ()
    pure: bool = False
    leave_output_tensor: bool = False

    def __post_init__(self):
        for k in ("token_embedding_type", "output_tensor_type"):
            v = getattr(self, k)
            if v is not None:
                object.__setattr__(self, k, get_type(v).name)
        tt = []
        for item in self.tensor_types:
            if isinstance(item, str):
                if "=" not in item:
                    raise GGSpecError(f"--tensor-type {item!r}: expected PATTERN=TYPE")
                item = tuple(item.rsplit("=", 1))
            pat, ty = item
            try:
                re.compile(pat)
            except re.error as e:
                raise GGSpecError(f"--tensor-type {pat!r}: bad regular expression ({e})") from None
            tt.append((pat, get_type(ty).name))
        object.__setattr__(self, "tensor_types", tuple(tt))

    @property
    def is_default(self) -> bool:
        return self == QuantOverrides(imatrix=self.imatrix)


_UNQUANTIZED = ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")


def is_quantized(type_name: str) -> bool:
    """``ggml_is_quantized``: every block type (F32/F16/BF16 and the integer types are not)."""
    return get_type(type_name).name not in _UNQUANTIZED


def n_dims_of(ne: Sequence[int]) -> int:
    """``ggml_n_dims``: trailing dimensions of 1 do not count (at least 1)."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return n


def tensor_category(name: str) -> str:
    """``tensor_get_category`` (substring tests in this order)."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for sub, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"), ("attn_v.weight", "attn_v"),
                     ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if sub in name:
            return cat
    return "other"


def _is_attn_v(cat: str) -> bool:
    return cat in ("attn_v", "attn_qkv", "attn_kv_b")


_NO_QUANT_SUBSTRINGS = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
    "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
    "mm.a.code_embd",
)


def tensor_allows_quantization(name: str, ne: Sequence[int], ov: "QuantOverrides | None" = None) -> bool:
    """``tensor_allows_quantization``: 2-D/3-D tensors whose name ends in ``weight``, except norms, MoE
    routers, positional embeddings and the other small tensors llama.cpp lists."""
    if n_dims_of(ne) < 2 or not name.endswith("weight"):
        return False
    if ov is not None and ov.leave_output_tensor and name == "output.weight":
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(s in name for s in _NO_QUANT_SUBSTRINGS)


_IQ2_FTYPES = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


class _State:
    def __init__(self, n_attention_wv: int, n_layer: int, has_imatrix: bool, tied: bool):
        self.n_attention_wv = n_attention_wv
        self.n_ffn_down = self.n_ffn_gate = self.n_ffn_up = n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.has_imatrix = has_imatrix
        self.tied = tied


_BLK = re.compile(r"^blk\.(-?\d+)\.")


def _layer_info(m: QuantModel, i_counter: int, n: int, name: str) -> "tuple[int, int]":
    if max(1, m.n_expert) > 1:  # MoE: the layer from the name (experts are not consecutive)
        mm = _BLK.match(name)
        if not mm:
            raise GGSpecError(f"Failed to determine layer for tensor {name}")
        i = int(mm.group(1))
        if i < 0 or i >= n:
            raise GGSpecError(f"Bad layer {i} for tensor {name}. Must be in [0, {n})")
        return i, n
    return i_counter, n


def _impl_today(m: QuantModel, qs: _State, new: str, name: str, ne: Sequence[int], q: str, cat: str,
                ov: QuantOverrides) -> str:
    """``llama_tensor_get_type_impl`` of the vendored llama-quant.cpp, transcribed branch by branch."""
    arch = m.arch
    if arch == "glm5-next":
        raise NotModelled("architecture glm5-next (its Q8_0 floor for attn_q_a/attn_q_b/nextn)")
    n_gqa, n_exp = m.n_gqa, m.n_expert
    if cat == "output" or (qs.tied and cat == "token_embd"):
        if ov.output_tensor_type is not None:
            return ov.output_tensor_type
        nx = ne[0]
        qk = get_type(new).block_size
        if q == "MXFP4_MOE":
            return "Q8_0"
        if arch == "falcon" or nx % qk:
            return "Q8_0"
        if q in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return "Q5_K"
        return "Q6_K" if new != "Q8_0" else new
    if q == "MXFP4_MOE":
        if arch == "bailingmoe3":
            raise NotModelled("architecture bailingmoe3 with MXFP4_MOE")
        return "MXFP4" if len(ne) > 2 and ne[2] > 1 else "Q8_0"
    if cat == "token_embd":
        if ov.token_embedding_type is not None:
            return ov.token_embedding_type
        if q in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if q in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if q in ("TQ1_0", "TQ2_0", "Q2_0"):
            return "Q4_K"
        return new
    if q in _IQ2_FTYPES:
        if _is_attn_v(cat):
            new = "Q4_K" if (n_gqa >= 4 or n_exp >= 4) else ("IQ3_S" if q in ("IQ2_S", "IQ2_M") else "Q2_K")
            qs.i_attention_wv += 1
        elif n_exp == 8 and cat == "attn_k":
            new = "Q4_K"
        elif cat == "ffn_down":
            if qs.i_ffn_down < qs.n_ffn_down // 8:
                new = "IQ3_S" if q in ("IQ2_S", "IQ2_M") else "Q2_K"
            qs.i_ffn_down += 1
        elif cat == "attn_output":
            if n_exp == 8:
                new = "Q5_K"
            elif q in ("IQ1_S", "IQ1_M"):
                new = "IQ2_XXS"
            elif q in ("IQ2_S", "IQ2_M"):
                new = "IQ3_S"
        return new
    if _is_attn_v(cat):
        if q == "Q2_K":
            new = "Q4_K" if n_gqa >= 4 else "Q3_K"
        elif q == "Q2_K_S" and n_gqa >= 4:
            new = "Q4_K"
        elif q == "IQ3_XXS":
            new = "Q4_K" if n_gqa >= 4 else ("IQ3_S" if not qs.has_imatrix else "IQ3_XXS")
        elif q in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
            new = "Q4_K"
        elif q == "IQ3_M":
            new = "Q4_K"
        elif q == "Q3_K_M":
            new = "Q5_K" if qs.i_attention_wv < 2 else "Q4_K"
        elif q == "Q3_K_L":
            new = "Q5_K"
        elif q in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
            new = "Q5_K"
        elif q in ("Q4_K_M", "Q5_K_M") and use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new = "Q6_K"
        elif q == "Q4_K_S" and qs.i_attention_wv < 4:
            new = "Q5_K"
        if m.type_70b and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        if n_exp == 8:
            new = "Q8_0"
        qs.i_attention_wv += 1
        return new
    if cat == "attn_k":
        if n_exp == 8:
            return "Q8_0"
        if q == "IQ3_XS":
            return "IQ3_XXS"
        if q == "IQ3_XXS":
            return "IQ2_S"
        return new
    if cat == "attn_q":
        if q == "IQ3_XS":
            return "IQ3_XXS"
        if q == "IQ3_XXS":
            return "IQ2_S"
        return new
    if cat == "ffn_down":
        i, n = _layer_info(m, qs.i_ffn_down, qs.n_ffn_down, name)
        falcon = arch == "falcon"
        if q == "Q2_K":
            new = "Q3_K"
        elif q == "Q2_K_S":
            if i < n // 8:
                new = "Q4_K"
        elif q == "IQ3_XXS" and not qs.has_imatrix:
            new = "Q4_K" if i < n // 8 else "Q3_K"
        elif q == "Q3_K_M":
            new = "Q5_K" if i < n // 16 else ("Q4_K" if not falcon or use_more_bits(i, n) else "Q3_K")
        elif q == "IQ3_M" and (i < n // 8 or (n_exp == 8 and use_more_bits(i, n))):
            new = "Q4_K"
        elif q == "Q3_K_L":
            new = "Q4_K" if falcon else "Q5_K"
        elif q == "Q4_K_M":
            if falcon:
                new = "Q6_K" if i < n // 16 else ("Q5_K" if use_more_bits(i, n) else "Q4_K")
            elif use_more_bits(i, n):
                new = "Q6_K"
        elif i < n // 8 and q in ("IQ4_NL", "IQ4_XS") and not qs.has_imatrix:
            new = "Q5_K"
        elif q == "Q5_K_M" and use_more_bits(i, n):
            new = "Q6_K"
        elif q == "Q4_K_S" and not falcon and i < n // 8:
            new = "Q5_K"
        elif q in ("Q4_0", "Q5_0") and qs.has_imatrix and i < n // 8:
            new = "Q4_1" if q == "Q4_0" else "Q5_1"
        qs.i_ffn_down += 1
        return new
    if cat == "attn_output":
        if arch != "falcon":
            if n_exp == 8:
                if q in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S",
                         "IQ3_M", "IQ4_XS"):
                    new = "Q5_K"
            else:
                new = {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                       "IQ3_M": "Q4_K"}.get(q, new)
        elif q == "Q3_K_L":
            new = "Q4_K"
        return new
    if cat == "attn_qkv":
        if q in ("Q3_K_M", "Q3_K_L", "IQ3_M"):
            return "Q4_K"
        if q == "Q4_K_M":
            return "Q5_K"
        if q == "Q5_K_M":
            return "Q6_K"
        return new
    if cat in ("ffn_gate", "ffn_up"):
        cnt = qs.i_ffn_gate if cat == "ffn_gate" else qs.i_ffn_up
        i, n = _layer_info(m, cnt, qs.n_ffn_gate, name)
        if q == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "IQ3_XXS"
        if cat == "ffn_gate":
            qs.i_ffn_gate += 1
        else:
            qs.i_ffn_up += 1
        return new
    return new


def _fallback_today(name: str, ne: Sequence[int], new: str) -> str:
    ncols = ne[0]
    bs = get_type(new).block_size
    if ncols % bs == 0:
        return new
    if new in _FALLBACK_TODAY:
        ret = _FALLBACK_TODAY[new]
    elif bs <= 32:
        ret = new
    else:
        raise GGSpecError(f"{name}: no tensor type fallback is defined for type {new}")
    if ncols % get_type(ret).block_size:
        ret = "F16"  # "must use F16 due to unusual shape"
    return ret


def weights_order(names: Iterable[str]) -> list[str]:
    """llama_model_loader's ``weights_map`` order (``weight_name_comparer``): tensors without a
    ``blk.N.`` prefix first, then by layer number; by name within."""
    def key(n: str):
        mm = _BLK.match(n)
        return (int(mm.group(1)) if mm else -1, n.encode())
    return sorted(names, key=key)


def today_tensor_types(model: QuantModel, tensors: "Sequence[tuple]", mix: str,
                       overrides: "QuantOverrides | None" = None) -> dict[str, str]:
    """{name: type} that today's llama-quantize gives each tensor of ``tensors`` -- [(name, ne) or (name,
    ne, source type)], every tensor of the file (the counters and the tied-embedding test look at all
    of them).  Tensors the quantizer does not touch keep their source type (default F16 for >= 2-D,
    F32 for 1-D)."""
    mix = normalize_mix(mix)
    ov = overrides or QuantOverrides()
    default = DEFAULT_TYPE[mix]
    has_imatrix = (mix in IMATRIX_MIXES) if ov.imatrix is None else bool(ov.imatrix)
    info = {}
    for t in tensors:
        name, ne = t[0], tuple(int(x) for x in t[1])
        src = t[2] if len(t) > 2 and t[2] else ("F32" if n_dims_of(ne) < 2 else "F16")
        info[name] = (ne, get_type(src).name)
    order = weights_order(info)
    cats = {n: tensor_category(n) for n in order}
    qs = _State(sum(1 for c in cats.values() if _is_attn_v(c)), model.n_layer, has_imatrix,
                tied="output.weight" not in info)
    patterns = [(re.compile(p), ty) for p, ty in ov.tensor_types]
    out: dict[str, str] = {}
    for name in order:
        ne, src = info[name]
        cat = cats[name]
        if not tensor_allows_quantization(name, ne, ov):
            out[name] = src
            continue
        if ov.token_embedding_type is not None and cat == "token_embd":
            named = name == "per_layer_token_embd.weight" and any(p.search(name) for p, _ in patterns)
            if not named:
                out[name] = ov.token_embedding_type
                continue
        if ov.output_tensor_type is not None and cat == "output":
            out[name] = ov.output_tensor_type
            continue
        new = default
        if is_quantized(default):
            manual = False
            for p, ty in patterns:
                if p.search(name):
                    new, manual = ty, True
                    break
            if not manual and not ov.pure:
                new = _impl_today(model, qs, new, name, ne, mix, cat, ov)
            new = _fallback_today(name, ne, new)
        out[name] = new
    return out


def predict_tensor_types(arch_name: str, tensors: "Sequence[tuple]", ftype: "str | int",
                         imatrix: "bool | None" = None, overrides: "QuantOverrides | Mapping | None" = None, *,
                         hparams: "Mapping | None" = None) -> dict[str, str]:
    """The type today's llama-quantize (llama-cpp-python 0.3.36) gives every tensor: {name: type name}.

    ``arch_name``: ``general.architecture`` (``archs.ARCH_SPECS`` lists the modelled ones; any other
    raises ``NotModelled``).  ``tensors``: [(name, ne)] or [(name, ne, source type)] -- every tensor of
    the model, ne in ggml order.  ``ftype``: a mix name (``Q4_K_M``) or its ``llama_ftype`` number.
    ``imatrix``: True/False, or None (only for the mixes that require one).  ``overrides``: a
    ``QuantOverrides`` or a dict of its fields (``token_embedding_type``, ``output_tensor_type``,
    ``tensor_types`` [(pattern, type)], ``pure``, ``leave_output_tensor``).  ``hparams``:
    ``n_layer``, ``n_head``, ``n_head_kv``, ``n_expert`` as llama.cpp reads them from the GGUF; what is
    not given is inferred from the shapes (layers from the ``blk.N`` names, experts from the 3-D
    expert tensors, the GQA factor from attn_q/attn_k rows); ``NotModelled`` when that is not possible.
    """
    from .archs import quant_model
    if isinstance(ftype, int):
        inv = {v: k for k, v in FTYPES.items()}
        if ftype & ~1024 not in inv:
            raise NotModelled(f"llama_ftype {ftype}")
        ftype = inv[ftype & ~1024]
    if overrides is None:
        ov = QuantOverrides(imatrix=imatrix)
    elif isinstance(overrides, QuantOverrides):
        ov = replace(overrides, imatrix=imatrix if imatrix is not None else overrides.imatrix)
    else:
        d = dict(overrides)
        d.setdefault("imatrix", imatrix)
        d["tensor_types"] = tuple(tuple(x) if not isinstance(x, str) else x for x in d.get("tensor_types", ()))
        ov = QuantOverrides(**d)
    model = quant_model(arch_name, tensors, hparams or {})
    return today_tensor_types(model, tensors, ftype, ov)


def weights_order_tensors(tensors: "Sequence[tuple]") -> list:
    """``tensors`` [(name, ...)] in llama_model_loader's ``weights_map`` order (see ``weights_order``)."""
    by = {t[0]: t for t in tensors}
    return [by[n] for n in weights_order(by)]
