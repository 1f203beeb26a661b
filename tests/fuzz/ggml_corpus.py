"""Malformed legacy GGML/GGMF/GGJT files for the corpus (used by make_corpus.py)."""

from __future__ import annotations

import struct
from pathlib import Path

GGML, GGMF, GGJT = 0x67676D6C, 0x67676D66, 0x67676A74


def hp(n_vocab=3, ftype=2):
    return struct.pack("<7I", n_vocab, 32, 256, 1, 1, 32, ftype)


def vocab(n=3, scores=True):
    return b"".join(struct.pack("<I", 1) + bytes([97 + i]) + (struct.pack("<f", -i) if scores else b"") for i in range(n))


def tensor(name: bytes, tid, ne, data: bytes, pos: int, aligned=True) -> bytes:
    h = struct.pack(f"<3I{len(ne)}I", len(ne), len(name), tid, *ne) + name
    pad = (-(pos + len(h)) % 32) if aligned else 0
    return h + b"\x00" * pad + data


def ggjt(version=3, tensors=(), n_vocab=3, ftype=2, vocab_bytes=None) -> bytes:
    b = struct.pack("<II", GGJT, version) + hp(n_vocab, ftype) + (vocab(n_vocab) if vocab_bytes is None else vocab_bytes)
    for name, tid, ne, data in tensors:
        b += tensor(name, tid, ne, data, len(b))
    return b


Q40 = bytes(18)


def ggml_cases() -> dict[str, bytes]:
    c = {}
    c["empty"] = b""
    c["magic-only"] = struct.pack("<I", GGJT)
    c["bad-magic"] = b"xxxx" + bytes(40)
    c["gguf-magic"] = b"GGUF" + struct.pack("<I", 3) + bytes(16)
    c["ggjt-version-0"] = struct.pack("<II", GGJT, 0) + hp() + vocab()
    c["ggjt-version-4"] = struct.pack("<II", GGJT, 4) + hp() + vocab()
    c["ggmf-version-2"] = struct.pack("<II", GGMF, 2) + hp() + vocab()
    c["hparams-truncated"] = struct.pack("<II", GGJT, 3) + hp()[:10]
    c["n-vocab-huge"] = struct.pack("<II", GGJT, 3) + hp(n_vocab=2**32 - 1) + vocab()
    c["token-len-huge"] = ggjt(vocab_bytes=struct.pack("<I", 2**31) + b"a")
    c["token-score-truncated"] = ggjt(n_vocab=1, vocab_bytes=struct.pack("<I", 1) + b"a" + b"\x00\x00")
    c["ggml-vocab-truncated"] = struct.pack("<I", GGML) + hp() + struct.pack("<I", 5) + b"ab"
    c["tensor-header-truncated"] = ggjt() + struct.pack("<II", 2, 1)
    c["tensor-n-dims-0"] = ggjt(tensors=[(b"w", 0, (), b"")])
    c["tensor-n-dims-5"] = ggjt(tensors=[(b"w", 0, (1, 1, 1, 1, 1), bytes(4))])
    c["tensor-n-dims-huge"] = ggjt() + struct.pack("<3I", 2**31, 1, 0) + bytes(32)
    c["tensor-name-len-0"] = ggjt(tensors=[(b"", 0, (1,), bytes(4))])
    c["tensor-name-len-huge"] = ggjt() + struct.pack("<3I", 1, 2**32 - 1, 0) + struct.pack("<I", 1) + b"w"
    c["tensor-name-bad-utf8"] = ggjt(tensors=[(b"\xff\xfe", 0, (1,), bytes(4))])
    c["tensor-type-q4_2-in-v3"] = ggjt(tensors=[(b"w", 4, (16,), bytes(10))])
    c["tensor-type-q4_3-in-v2"] = ggjt(2, tensors=[(b"w", 5, (16,), bytes(12))])
    c["tensor-type-q8_1"] = ggjt(tensors=[(b"w", 9, (32,), bytes(36))])
    c["tensor-type-kquant-in-v2"] = ggjt(2, tensors=[(b"w", 12, (256,), bytes(144))])
    c["tensor-type-unknown"] = ggjt(tensors=[(b"w", 99, (32,), Q40)])
    c["tensor-ne0-not-block-multiple"] = ggjt(tensors=[(b"w", 2, (33,), Q40)])
    c["tensor-data-truncated"] = ggjt(tensors=[(b"w", 2, (32, 2), Q40)])
    c["tensor-data-huge"] = ggjt(tensors=[(b"w", 0, (2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1), bytes(8))])
    c["tensor-duplicate"] = ggjt(tensors=[(b"w", 2, (32,), Q40), (b"w", 2, (32,), Q40)])
    c["ggmf-unaligned-truncated"] = (struct.pack("<II", GGMF, 1) + hp() + vocab()
                                     + tensor(b"w", 0, (4,), bytes(10), 0, aligned=False))
    return c


def valid_files() -> dict[str, bytes]:
    out = {}
    out["ggjt-v3"] = ggjt(tensors=[(b"tok_embeddings.weight", 2, (32, 2), Q40 * 2), (b"norm.weight", 0, (4,), bytes(16))])
    out["ggjt-v1"] = ggjt(1, tensors=[(b"a", 4, (16, 2), bytes(20)), (b"b", 2, (32,), bytes(20))])
    b = struct.pack("<I", GGML) + hp() + vocab(scores=False)
    out["ggml"] = b + tensor(b"w", 3, (32,), bytes(24), len(b), aligned=False)
    return out


def write_ggml_corpus(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("bad-*.bin"):
        f.unlink()
    cases = ggml_cases()
    for name, b in cases.items():
        (out / f"bad-{name}.bin").write_bytes(b)
    for name, b in valid_files().items():
        (out / f"seed-{name}.bin").write_bytes(b)
    return len(cases)
