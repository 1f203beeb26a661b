"""Generate the malformed-file corpus in tests/fuzz/corpus/ (deterministic; re-run after changes).

    python tests/fuzz/make_corpus.py

corpus/gguf/bad-*.gguf      malformed GGUF: every reader must raise FormatError
corpus/ggml/bad-*.bin       malformed legacy GGML/GGJT: FormatError
corpus/gptq/bad-*/          malformed GPTQ directories: a ggspec error
corpus/*/seed-*             valid files (fuzz seeds; they must parse)
corpus/*/fuzz-*             inputs kept by the atheris fuzzer (must not raise anything but a ggspec error)

Files are built here with struct, byte by byte, so that each shows one defect.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# --------------------------------------------------------------------------------------------------
# GGUF building blocks (little-endian unless order=">")
# --------------------------------------------------------------------------------------------------


def s(x: "str | bytes", order="<", v=3) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return struct.pack(order + ("I" if v == 1 else "Q"), len(b)) + b


def header(n_tensors, n_kv, version=3, order="<") -> bytes:
    c = "I" if version == 1 else "Q"
    return b"GGUF" + struct.pack(order + "I" + c + c, version, n_tensors, n_kv)


def kv(key, vtype, payload: bytes, order="<", v=3) -> bytes:
    return s(key, order, v) + struct.pack(order + "I", vtype) + payload


def kv_u32(key, val, order="<") -> bytes:
    return kv(key, 4, struct.pack(order + "I", val), order)


def kv_str(key, val, order="<", v=3) -> bytes:
    return kv(key, 8, s(val, order, v), order, v)


def ti(name, ne, gtype, offset, order="<", v=3) -> bytes:
    c = "I" if v == 1 else "Q"
    return (s(name, order, v) + struct.pack(order + "I", len(ne)) + b"".join(struct.pack(order + c, d) for d in ne)
            + struct.pack(order + "iQ", gtype, offset))


def pad(b: bytes, al=32) -> bytes:
    return b + b"\x00" * (-len(b) % al)


def gguf_file(kvs=(), tis=(), data=b"", version=3, order="<", al=32, n_tensors=None, n_kv=None) -> bytes:
    head = header(len(tis) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv, version, order)
    head += b"".join(kvs) + b"".join(tis)
    return pad(head, al) + data


ARCH = kv_str("general.architecture", "llama")


def valid_gguf(order="<", version=3) -> bytes:
    kvs = [kv_str("general.architecture", "llama", order, version),
           kv("a.list", 9, struct.pack(order + "I", 5) + struct.pack(order + ("I" if version == 1 else "Q"), 3)
              + struct.pack(order + "3i", 1, 2, 3), order, version),
           kv("a.f", 6, struct.pack(order + "f", 0.5), order, version)]
    tis = [ti("w", (4, 2), 0, 0, order, version), ti("q", (32,), 2, 32, order, version)]
    data = pad(struct.pack(order + "8f", *range(8))) + pad(b"\x00\x3c" + bytes(16))
    return gguf_file(kvs, tis, data, version, order)


def gguf_cases() -> dict[str, bytes]:
    c: dict[str, bytes] = {}
    F32 = struct.pack("<8f", *range(8))
    ok_ti = ti("w", (4, 2), 0, 0)
    c["empty"] = b""
    c["short-magic"] = b"GGU"
    c["bad-magic"] = b"GGUX" + valid_gguf()[4:]
    c["legacy-ggjt-magic"] = struct.pack("<II", 0x67676A74, 3) + bytes(64)
    c["no-version"] = b"GGUF\x03\x00"
    c["version-0"] = b"GGUF" + bytes(4) + valid_gguf()[8:]
    c["version-4"] = b"GGUF" + struct.pack("<I", 4) + valid_gguf()[8:]
    c["version-huge"] = b"GGUF" + struct.pack("<I", 0x12345678) + valid_gguf()[8:]
    c["be-version-5"] = b"GGUF" + struct.pack(">I", 5) + bytes(16)
    c["no-counts"] = b"GGUF" + struct.pack("<I", 3) + bytes(5)
    c["n-tensors-huge"] = header(2**63, 0) + bytes(64)
    c["n-tensors-max"] = header(2**64 - 1, 1) + ARCH
    c["n-kv-huge"] = header(0, 2**62) + ARCH
    c["n-kv-v1-huge"] = header(0, 2**32 - 1, version=1) + bytes(32)
    c["n-kv-too-many"] = gguf_file([ARCH], n_kv=2)
    c["key-len-huge"] = header(0, 1) + struct.pack("<Q", 2**63) + b"general"
    c["key-len-past-end"] = header(0, 1) + struct.pack("<Q", 100) + b"general.architecture"
    c["key-empty"] = gguf_file([kv("", 4, struct.pack("<I", 1))])
    c["key-bad-utf8"] = gguf_file([kv(b"gen\xff\xfe", 4, struct.pack("<I", 1))])
    c["key-overlong-utf8"] = gguf_file([kv(b"\xc0\xaf", 4, struct.pack("<I", 1))])
    c["key-surrogate-utf8"] = gguf_file([kv(b"\xed\xa0\x80", 4, struct.pack("<I", 1))])
    c["key-duplicate"] = gguf_file([ARCH, kv_u32("x", 1), kv_u32("x", 2)])
    c["value-type-13"] = gguf_file([kv("x", 13, bytes(8))])
    c["value-type-max"] = gguf_file([kv("x", 0xFFFFFFFF, bytes(8))])
    c["value-truncated-u64"] = gguf_file([kv("x", 10, bytes(3))])[:-29]
    c["value-string-len-huge"] = gguf_file([kv("x", 8, struct.pack("<Q", 2**64 - 1) + b"abc")])
    c["value-string-bad-utf8"] = gguf_file([kv("x", 8, s(b"ok\x80"))])
    c["value-string-truncated-utf8"] = gguf_file([kv("x", 8, s(b"\xe6\xbc"))])
    c["array-subtype-13"] = gguf_file([kv("x", 9, struct.pack("<IQ", 13, 1) + bytes(8))])
    c["array-count-huge"] = gguf_file([kv("x", 9, struct.pack("<IQ", 0, 2**62) + bytes(8))])
    c["array-count-max-u64"] = gguf_file([kv("x", 9, struct.pack("<IQ", 10, 2**64 - 1) + bytes(8))])
    c["array-strings-count-huge"] = gguf_file([kv("x", 9, struct.pack("<IQ", 8, 2**40) + s("a"))])
    c["array-string-len-huge"] = gguf_file([kv("x", 9, struct.pack("<IQ", 8, 2) + s("a") + struct.pack("<Q", 2**50))])
    c["array-string-bad-utf8"] = gguf_file([kv("x", 9, struct.pack("<IQ", 8, 2) + s("a") + s(b"\xff"))])
    nested = struct.pack("<IQ", 5, 1) + struct.pack("<i", 7)
    for _ in range(40):
        nested = struct.pack("<IQ", 9, 1) + nested
    c["array-nested-40-deep"] = gguf_file([kv("x", 9, nested)])
    c["array-nested-count-huge"] = gguf_file([kv("x", 9, struct.pack("<IQ", 9, 2**60) + struct.pack("<IQ", 5, 0))])
    c["array-of-empty-arrays-lies"] = gguf_file([kv("x", 9, struct.pack("<IQ", 9, 10**6) + struct.pack("<IQ", 5, 0) * 3)])
    c["alignment-not-u32"] = gguf_file([ARCH, kv("general.alignment", 5, struct.pack("<i", 32))])
    c["alignment-zero"] = gguf_file([ARCH, kv_u32("general.alignment", 0)], [ok_ti], pad(F32))
    c["alignment-3"] = gguf_file([ARCH, kv_u32("general.alignment", 3)], [ok_ti], pad(F32))
    c["alignment-2^31-past-end"] = gguf_file([ARCH, kv_u32("general.alignment", 2**31)], [ok_ti], pad(F32))
    c["tensor-name-64-bytes"] = gguf_file([ARCH], [ti("n" * 64, (4, 2), 0, 0)], pad(F32))
    c["tensor-name-bad-utf8"] = gguf_file([ARCH], [ti(b"w\xff", (4, 2), 0, 0)], pad(F32))
    c["tensor-name-len-huge"] = gguf_file([ARCH], [struct.pack("<Q", 2**63 + 5) + b"w"])
    c["tensor-name-duplicate"] = gguf_file([ARCH], [ti("w", (4, 2), 0, 0), ti("w", (4, 2), 0, 32)], pad(F32) * 2)
    c["tensor-n-dims-5"] = gguf_file([ARCH], [ti("w", (4, 2, 1, 1, 1), 0, 0)], pad(F32))
    c["tensor-n-dims-max"] = gguf_file([ARCH], [s("w") + struct.pack("<I", 2**32 - 1) + bytes(64)])
    c["tensor-ne-negative"] = gguf_file([ARCH], [ti("w", (4, 2**64 - 2), 0, 0)], pad(F32))
    c["tensor-ne-product-overflow"] = gguf_file([ARCH], [ti("w", (2**32, 2**32, 2**32), 0, 0)], pad(F32))
    c["tensor-ne-product-int64max"] = gguf_file([ARCH], [ti("w", (2**62, 2, 1, 1), 0, 0)], pad(F32))
    c["tensor-ne0-not-block-multiple"] = gguf_file([ARCH], [ti("q", (31,), 2, 0)], pad(bytes(18)))
    c["tensor-type-unknown-43"] = gguf_file([ARCH], [ti("w", (4, 2), 43, 0)], pad(F32))
    c["tensor-type-negative"] = gguf_file([ARCH], [ti("w", (4, 2), -7, 0)], pad(F32))
    c["tensor-type-removed-q4_2"] = gguf_file([ARCH], [ti("w", (32,), 4, 0)], pad(bytes(20)))
    c["tensor-type-removed-q4_0_4_4"] = gguf_file([ARCH], [ti("w", (32,), 31, 0)], pad(bytes(18)))
    c["tensor-type-removed-iq4_nl_4_4"] = gguf_file([ARCH], [ti("w", (32,), 36, 0)], pad(bytes(18)))
    c["tensor-offset-misaligned"] = gguf_file([ARCH], [ti("w", (4, 2), 0, 4)], pad(F32 + bytes(4)))
    c["tensor-offset-past-end"] = gguf_file([ARCH], [ti("w", (4, 2), 0, 4096)], pad(F32))
    c["tensor-offset-max"] = gguf_file([ARCH], [ti("w", (4, 2), 0, 2**64 - 32)], pad(F32))
    c["tensor-data-truncated"] = gguf_file([ARCH], [ti("w", (4, 2), 0, 0)], F32[:20])
    c["tensor-data-huge"] = gguf_file([ARCH], [ti("w", (2**40, 2**20), 0, 0)], pad(F32))
    c["tensors-overlap"] = gguf_file([ARCH], [ti("a", (8, 2), 0, 0), ti("b", (4, 2), 0, 32)], pad(F32 * 2))
    c["tensor-info-truncated"] = gguf_file([ARCH], [ti("w", (4, 2), 0, 0)[:-5]])
    c["tensors-without-data-section"] = header(1, 1) + ARCH + ti("w", (4, 2), 0, 0)
    c["v1-string-len-huge"] = header(0, 1, version=1) + struct.pack("<I", 2**32 - 1) + b"abc"
    c["v1-ne-not-block-multiple"] = (pad(header(1, 1, version=1) + kv_str("general.architecture", "x", v=1)
                                         + ti("q", (33,), 8, 0, v=1)) + bytes(64))
    be = valid_gguf(">")
    c["be-truncated-kv"] = be[:60]
    c["be-type-unknown"] = be.replace(struct.pack(">I", 2) + struct.pack(">Q", 32), struct.pack(">I", 99) + struct.pack(">Q", 32))
    return c


def write_gguf_corpus() -> int:
    out = CORPUS / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("bad-*.gguf"):
        f.unlink()
    for name, b in gguf_cases().items():
        (out / f"bad-{name}.gguf").write_bytes(b)
    (out / "seed-valid-le.gguf").write_bytes(valid_gguf())
    (out / "seed-valid-be.gguf").write_bytes(valid_gguf(">"))
    (out / "seed-valid-v1.gguf").write_bytes(valid_gguf(version=1))
    (out / "seed-valid-v2.gguf").write_bytes(valid_gguf(version=2))
    return len(gguf_cases())


def main() -> int:
    n = write_gguf_corpus()
    print(f"gguf: {n} malformed files")
    try:
        from ggml_corpus import write_ggml_corpus  # noqa: F401  (added with the legacy reader)
    except ImportError:
        pass
    else:
        print(f"ggml: {write_ggml_corpus(CORPUS / 'ggml')} malformed files")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
