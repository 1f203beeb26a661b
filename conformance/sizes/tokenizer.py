"""What a file stores about the vocabulary, reduced to the numbers its size depends on."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from ...errors import GGSpecError

# ---------------------------------------------------------------------------------------------------
# Tokenizer statistics (the vocabulary bytes inside a file)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerStats:
    """What a file stores about the vocabulary, reduced to the numbers its size depends on.

    ``gguf_text_bytes``: total UTF-8 bytes of all token texts as GGUF stores them (the sentencepiece
    pieces verbatim: ``▁`` is U+2581, 3 bytes; byte tokens as ``<0x0A>``; ``<unk>``, ``<s>``, ``</s>``).
    ``ggmlv3_text_bytes``: the same as the 2023 ``convert.py`` wrote them into ggml files
    (``SentencePieceVocab.sentencepiece_tokens`` at 097e121e2): ``▁`` replaced by a space (1 byte),
    byte tokens as the single raw byte, control tokens (``<s>``, ``</s>``) as the empty string, the
    unknown token as ``" \\u2047 "`` (5 bytes).
    """

    name: str
    n_tokens: int
    gguf_text_bytes: int
    ggmlv3_text_bytes: int
    bos_token_id: int = 1
    eos_token_id: int = 2
    unknown_token_id: int = 0
    gguf_kv_bytes: "int | None" = None  # a known vocabulary: every tokenizer.* key/value byte (GGUF v3)

    def resized(self, n_vocab: int) -> "TokenizerStats":
        """The statistics for a vocabulary of ``n_vocab`` entries built on this one.

        Extra entries (CodeLlama's 32016, added tokens) are not in our data: each is counted as the
        mean token length of this vocabulary, rounded down -- an approximation of a few dozen bytes
        at most for the vocabularies we know (documented in docs/sizes.md).
        """
        if n_vocab == self.n_tokens:
            return self
        extra = n_vocab - self.n_tokens
        return replace(
            self,
            name=f"{self.name}+{extra}" if extra > 0 else f"{self.name}[:{n_vocab}]",
            n_tokens=n_vocab,
            gguf_text_bytes=self.gguf_text_bytes + extra * (self.gguf_text_bytes // self.n_tokens),
            ggmlv3_text_bytes=self.ggmlv3_text_bytes + extra * (self.ggmlv3_text_bytes // self.n_tokens),
        )


# Derived from llama.cpp's models/ggml-vocab-llama-spm.gguf (vendored in llama-cpp-python 0.3.36), the
# 32000-token LLaMA / Llama 2 sentencepiece vocabulary: 31741 normal, 256 byte, 2 control, 1 unknown.
# gguf: sum of len(token) over tokenizer.ggml.tokens = 210919.
# ggmlv3: the same tokens re-encoded with the 2023 convert.py rules (see TokenizerStats) = 176574.
# Only these two numbers are kept; the vocabulary file is not part of this repository.
LLAMA_SPM = TokenizerStats("llama-spm", 32000, gguf_text_bytes=210919, ggmlv3_text_bytes=176574)

# The tokenizer.* key/value bytes (GGUF v3, chat template excluded) of the vocabularies llama.cpp ships
# as vendor/llama.cpp/models/ggml-vocab-<name>.gguf (llama-cpp-python 0.3.36), by token count; a GGUF of a
# model with that vocabulary made by today's converter carries these plus its chat template.
# tests/test_sizes_collection.py recomputes every number from the files when they are present.
KNOWN_VOCAB_KV_BYTES: dict[int, tuple[str, int]] = {
    128256: ("llama-bpe", 7_817_598),      # Llama 3 / 3.1: 280147 merges
    102400: ("deepseek-llm", 3_969_622),   # DeepSeek LLM 7B/67B: 99757 merges
    151936: ("qwen2", 5_927_847),          # Qwen2 / Qwen1.5 tokens (151387 merges), without the chat template
    50257: ("gpt-2", 1_766_435),
    32064: ("phi-3", 725_111),             # SentencePiece, without the chat template
}


# their BPE merges (tokenizer.ggml.merges counts of the same files): what the vocabulary costs in RAM
KNOWN_VOCAB_MERGES: dict[int, int] = {128256: 280147, 102400: 99757, 151936: 151387, 50257: 50000, 32064: 0}


def known_vocab(n_vocab: int) -> "TokenizerStats | None":
    """The statistics of a vocabulary llama.cpp ships with exactly ``n_vocab`` tokens (None if none)."""
    if n_vocab not in KNOWN_VOCAB_KV_BYTES:
        return None
    name, kv = KNOWN_VOCAB_KV_BYTES[n_vocab]
    spm = LLAMA_SPM.resized(n_vocab)
    return replace(spm, name=name, gguf_kv_bytes=kv)




# ---------------------------------------------------------------------------------------------------
# Metadata bytes of a GGUF written by today's convert_hf_to_gguf (+ llama-quantize), for any shape
# ---------------------------------------------------------------------------------------------------

# what we cannot know without the model's files: general.* extras the converter writes from the model
# card (name, basename, size label, license, tags, languages, base models ...): at most this many bytes
GENERAL_KEYS_UNCERTAINTY = 2048
# a chat template absent from the inputs: up to this many bytes (most are 0.5-6 KB)
CHAT_TEMPLATE_UNCERTAINTY = 8192


def _kv(key: str, nbytes_value: int) -> int:
    return 8 + len(key.encode()) + 4 + nbytes_value


def _str_arr(key: str, strings) -> int:
    return _kv(key, 4 + 8 + sum(8 + len(s.encode() if isinstance(s, str) else bytes(s)) for s in strings))


def tokenizer_kv_bytes(path: "str | Path") -> "tuple[int, str]":
    """(bytes of the tokenizer.* key/values, description) from tokenizer.json, tokenizer.model or a GGUF.

    GGUF: every ``tokenizer.*`` key/value as stored (exact).  tokenizer.json: the tokens (vocab and added
    tokens, by id), token types, merges (as "a b" strings), the special token ids and add_bos/add_eos
    flags convert_hf_to_gguf writes for a BPE vocabulary; the chat template from tokenizer_config.json
    beside it when present.  tokenizer.model (SentencePiece): pieces, scores, token types."""
    p = Path(path)
    if p.is_dir():
        for cand in ("tokenizer.json", "tokenizer.model"):
            if (p / cand).exists():
                p = p / cand
                break
    data = p.read_bytes()[:4] if p.exists() else b""
    if not p.exists():
        raise GGSpecError(f"cannot open {p}: no such file")
    if data == b"GGUF":
        from ...reference import gguf as G
        from .inventory import _value_bytes
        g = G.read(p)
        n = sum(8 + len(k.encode()) + 4 + _value_bytes(v, 8) for k, v in g.values.items() if k.startswith("tokenizer."))
        g.close()
        return n, f"tokenizer.* of {p.name}"
    if p.suffix == ".json":
        tj = json.loads(p.read_text())
        model = tj.get("model", {})
        vocab = dict(model.get("vocab") or {})
        for t in tj.get("added_tokens", []):
            vocab[t["content"]] = t["id"]
        if isinstance(model.get("vocab"), list):  # unigram: [[piece, score], ...]
            toks = [x[0] for x in model["vocab"]]
            n = _str_arr("tokenizer.ggml.tokens", toks) + _kv("tokenizer.ggml.scores", 12 + 4 * len(toks))
            n += _kv("tokenizer.ggml.token_type", 12 + 4 * len(toks)) + _kv("tokenizer.ggml.model", 8 + 5)
            return n, f"{p.name} (unigram)"
        n_tok = max(vocab.values()) + 1 if vocab else 0
        by_id = {i: t for t, i in vocab.items()}
        toks = [by_id.get(i, f"[PAD{i}]") for i in range(n_tok)]
        merges = model.get("merges") or []
        merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
        n = _kv("tokenizer.ggml.model", 8 + len("gpt2")) + _str_arr("tokenizer.ggml.tokens", toks)
        n += _kv("tokenizer.ggml.token_type", 12 + 4 * n_tok)
        if merges:
            n += _str_arr("tokenizer.ggml.merges", merges)
        n += _kv("tokenizer.ggml.bos_token_id", 4) + _kv("tokenizer.ggml.eos_token_id", 4)
        n += _kv("tokenizer.ggml.pre", 8 + 8)
        cfg = p.parent / "tokenizer_config.json"
        if cfg.exists():
            ct = json.loads(cfg.read_text()).get("chat_template")
            if isinstance(ct, str):
                n += _kv("tokenizer.chat_template", 8 + len(ct.encode()))
        return n, f"{p.name} (BPE, {n_tok} tokens, {len(merges)} merges)"
    if p.suffix == ".model":
        # SentencePiece protobuf: count pieces by parsing the repeated field 1 (ModelProto.pieces)
        buf = p.read_bytes()
        pieces, i = [], 0

        def varint(j):
            v = s = 0
            while True:
                b = buf[j]
                v |= (b & 0x7F) << s
                j += 1
                s += 7
                if b < 0x80:
                    return v, j
        while i < len(buf):
            key, i = varint(i)
            wt = key & 7
            if wt == 2:
                ln, i = varint(i)
                if key >> 3 == 1:
                    sub, j = buf[i:i + ln], 0
                    while j < len(sub):
                        k2 = sub[j]
                        j += 1
                        if k2 & 7 == 2:
                            l2 = 0
                            s2 = 0
                            while True:
                                b = sub[j]
                                j += 1
                                l2 |= (b & 0x7F) << s2
                                s2 += 7
                                if b < 0x80:
                                    break
                            if k2 >> 3 == 1:
                                pieces.append(sub[j:j + l2])
                            j += l2
                        elif k2 & 7 == 5:
                            j += 4
                        elif k2 & 7 == 0:
                            while sub[j] >= 0x80:
                                j += 1
                            j += 1
                        else:
                            break
                i += ln
            elif wt == 0:
                _, i = varint(i)
            elif wt == 5:
                i += 4
            elif wt == 1:
                i += 8
            else:
                break
        n = len(pieces)
        b = _kv("tokenizer.ggml.model", 8 + 5) + _str_arr("tokenizer.ggml.tokens", pieces)
        b += _kv("tokenizer.ggml.scores", 12 + 4 * n) + _kv("tokenizer.ggml.token_type", 12 + 4 * n)
        b += 3 * _kv("tokenizer.ggml.bos_token_id", 4)
        return b, f"{p.name} (SentencePiece, {n} pieces)"
    raise GGSpecError(f"{p}: expected tokenizer.json, tokenizer.model or a GGUF")


def estimate_metadata(shape, tokenizer: "str | Path | None" = None) -> dict:
    """{kv_bytes, exact, uncertainty, source}: the key/value bytes of a GGUF of ``shape`` as today's
    convert_hf_to_gguf + llama-quantize write them.

    The architecture keys are counted exactly; general.* extras from the model card are unknown
    (``GENERAL_KEYS_UNCERTAINTY``).  The vocabulary: from ``tokenizer`` when given (exact, see
    ``tokenizer_kv_bytes``); otherwise estimated -- a SentencePiece vocabulary of <= 32256 tokens as
    LLaMA's (``LLAMA_SPM``, resized), any larger one as byte-level BPE (7 bytes of text per token and
    n_vocab merges of 11 bytes) -- with an uncertainty of a third of the vocabulary bytes plus a chat
    template."""
    a = shape.arch
    n = _kv("general.architecture", 8 + len(a)) + _kv("general.type", 8 + 5)
    n += _kv("general.name", 8 + len(shape.name or a)) + _kv("general.file_type", 4)
    n += _kv("general.quantization_version", 4)
    for k in ("context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
              "attention.head_count_kv", "rope.dimension_count", "vocab_size"):
        n += _kv(f"{a}.{k}", 4)
    n += _kv(f"{a}.rope.freq_base", 4) + _kv(f"{a}.attention.layer_norm_rms_epsilon", 4)
    if shape.n_expert:
        n += _kv(f"{a}.expert_count", 4) + _kv(f"{a}.expert_used_count", 4)
    if shape.head_dim:
        n += _kv(f"{a}.attention.key_length", 4) + _kv(f"{a}.attention.value_length", 4)
    if shape.n_swa:
        n += _kv(f"{a}.attention.sliding_window", 4)
    unc = GENERAL_KEYS_UNCERTAINTY
    if tokenizer is not None:
        tb, src = tokenizer_kv_bytes(tokenizer)
        if Path(tokenizer).suffix != ".json" or not (Path(tokenizer).parent / "tokenizer_config.json").exists():
            unc += CHAT_TEMPLATE_UNCERTAINTY if Path(tokenizer).read_bytes()[:4] != b"GGUF" else 0
        return {"kv_bytes": n + tb, "exact": False, "uncertainty": unc, "source": src}
    v = shape.n_vocab
    kv_known = KNOWN_VOCAB_KV_BYTES.get(v) or ((("llama-spm", 723_363)) if v == 32000 else None)
    if kv_known is not None:
        # a vocabulary llama.cpp ships with exactly this many tokens (the 32000 one: LLaMA's, 723363 bytes
        # in ggml-vocab-llama-spm.gguf): assumed to be the model's; a fine-tune with other tokens is off
        unc += CHAT_TEMPLATE_UNCERTAINTY
        return {"kv_bytes": n + kv_known[1], "exact": False, "uncertainty": unc,
                "source": f"llama.cpp's {kv_known[0]} vocabulary ({v} tokens), assumed to be the model's"}
    if v <= 32256:
        st = LLAMA_SPM.resized(v)
        tb = (_kv("tokenizer.ggml.tokens", 12) + 8 * v + st.gguf_text_bytes + _kv("tokenizer.ggml.scores", 12 + 4 * v)
              + _kv("tokenizer.ggml.token_type", 12 + 4 * v))
        src = f"estimated: SentencePiece, LLaMA's {LLAMA_SPM.n_tokens}-token statistics resized to {v}"
    else:
        tb = (_kv("tokenizer.ggml.tokens", 12) + v * (8 + 7) + _kv("tokenizer.ggml.token_type", 12 + 4 * v)
              + _kv("tokenizer.ggml.merges", 12) + v * (8 + 11))
        src = f"estimated: byte-level BPE with {v} tokens and about as many merges"
    tb += 4 * _kv("tokenizer.ggml.bos_token_id", 4) + _kv("tokenizer.ggml.model", 12) + _kv("tokenizer.ggml.pre", 16)
    unc += tb // 3 + CHAT_TEMPLATE_UNCERTAINTY
    return {"kv_bytes": n + tb, "exact": False, "uncertainty": unc, "source": src}
