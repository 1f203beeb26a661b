"""Regenerate every golden vector file from the C oracle (ggml in llama-cpp-python==0.3.36).

    python -m ggspec.vectors.generate [--out DIR] [--types Q4_K,Q8_0]

Expected values come only from the oracle (``ggml_quantize_chunk``, ``from_float_ref``,
``to_float``, ``dequantize_row_q8_K``). Inputs come from numpy's PCG64 seeded per type, so a
regeneration is byte-identical. Three documented exceptions, where ggml has no function to ask:

* Q8_1 dequantize: ggml has no to_float for Q8_1; the expected floats are ggml's Q8_0 to_float of a
  Q8_0 block carrying the same ``d`` and ``qs`` (Q8_1's value is d*q, exactly Q8_0's formula).
* F32, F64, I8, I16, I32, I64 dequantize: ggml has no to_float; the expected floats are the C
  conversion to float (round to nearest even), computed with numpy's ``astype``, which is that cast.
* Plain types get no quantize group except F32, F16 and BF16 (which quantize_chunk takes).
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from ggspec.conformance import libggml
from ggspec.conformance.strategies import F16_FIELDS
from ggspec.conformance.vectors import SCHEMA, f32_to_hex
from ggspec.reference.types import LIVE_TYPES, FAMILY_MODULES, GGMLType

SEED = 1
N_PER_ROW = 256
GGML_VERSION = "0.25.3"

SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8200, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
               0x7E00, 0x7C01, 0xFE5A, 0x3C00]
SPECIAL_F32 = [0x00000000, 0x80000000, 0x00000001, 0x00400000, 0x7F7FFFFF, 0x7F800000, 0xFF800000,
               0x7FC00000, 0x7F800001, 0xFFC12345, 0x3F800000, 0x2F800000]
SPECIAL_E8M0 = [0, 1, 2, 126, 127, 128, 254, 255]
SPECIAL_UE4M3 = [0x00, 0x01, 0x07, 0x08, 0x37, 0x7E, 0x7F, 0x80, 0xFE, 0xFF]

PLAIN = {"F32": "<f4", "F16": "<u2", "BF16": "<u2", "F64": "<f8", "I8": "<i1", "I16": "<i2",
         "I32": "<i4", "I64": "<i8"}
C_CAST = ("F32", "F64", "I8", "I16", "I32", "I64")


def rng_for(t: GGMLType) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(t.name.encode())])


# ------------------------------------------------------------------------------------------------
# what the oracle says

class Oracle:
    def __init__(self, lib: libggml.LibGGML):
        self.lib = lib

    def quantize_source(self, t: GGMLType) -> str | None:
        if t.quantize_chunk:
            return "ggml_quantize_chunk"
        if t.name == "Q8_1":
            return "quantize_row_q8_1_ref"
        if t.name == "Q8_K":
            return "quantize_row_q8_K_ref"
        return None

    def dequantize_source(self, t: GGMLType) -> str:
        if t.name == "Q8_K":
            return "dequantize_row_q8_K"
        if t.name == "Q8_1":
            return "to_float of Q8_0 with the same d and qs (ggml has no Q8_1 to_float)"
        if t.name in C_CAST:
            return "C cast to float (ggml has no to_float for this type)"
        return "to_float"

    def quantize(self, t, x, imatrix):
        return self.lib.quantize(t, x, imatrix)

    def dequantize(self, t: GGMLType, raw: bytes, n: int) -> np.ndarray:
        if t.name == "Q8_1":
            blocks = np.frombuffer(raw, np.uint8).reshape(-1, 36)
            q8_0 = np.concatenate([blocks[:, 0:2], blocks[:, 4:36]], axis=1)
            return self.lib.to_float("Q8_0", q8_0.tobytes(), n)
        if t.name in C_CAST:
            with np.errstate(all="ignore"):
                return np.frombuffer(raw, dtype=PLAIN[t.name], count=n).astype(np.float32)
        return self.lib.to_float(t, raw, n)


# ------------------------------------------------------------------------------------------------
# inputs

def quantize_inputs(t: GGMLType, rng: np.random.Generator):
    """(comment, flags, x) cases for the quantize groups."""
    n = N_PER_ROW
    f = np.float32
    cases = [
        ("standard normal rows", ["Normal"], rng.standard_normal((2, n))),
        ("uniform in [-1, 1)", ["Uniform"], rng.uniform(-1, 1, (1, n))),
        ("heavy-tailed (Student t, 3 dof)", ["HeavyTail"], rng.standard_t(3, (1, n))),
    ]
    for s in (1e-8, 1e-5, 1e-2, 1e1, 1e4):
        cases.append((f"normal row scaled by {s:g}", ["Scaled"], rng.standard_normal((1, n)) * s))
    blockwise = rng.standard_normal((1, n)) * np.repeat(10.0 ** rng.uniform(-3, 3, n // 32), 32)
    cases += [
        ("each 32 values at a different scale (1e-3..1e3)", ["Scaled", "MixedScales"], blockwise),
        ("all zeros", ["Zeros"], np.zeros((1, n))),
        ("constant rows 0.5 and -3.25", ["Constant"], np.stack([np.full(n, 0.5), np.full(n, -3.25)])),
        ("small normal row with one outlier of 100", ["Outlier"],
         np.where(np.arange(n) == 77, 100.0, rng.standard_normal(n) * 0.01)[None]),
        ("one negative outlier of -50 at index 0", ["Outlier"],
         np.where(np.arange(n) == 0, -50.0, rng.standard_normal(n))[None]),
        ("alternating signs, random magnitudes", ["AlternatingSigns"],
         (np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * np.abs(rng.standard_normal(n)))[None]),
        ("half-integer grid -8..8 (rounding ties)", ["RoundingTie"], ((np.arange(n) % 33 - 16) * 0.5)[None]),
        ("half-integers -126.5..127.5 (rounding ties at 8 bits)", ["RoundingTie"],
         ((np.arange(n) % 255) - 127 + 0.5)[None]),
        ("ties relative to the block max: multiples of max/15", ["RoundingTie"],
         (np.round(rng.uniform(-15, 15, n)) / 15 * 3.0 + np.where(np.arange(n) % 32 == 0, 3.0, 0.0))[None]),
        ("all positive", ["OneSign"], np.abs(rng.standard_normal((1, n))) + 0.1),
        ("all negative", ["OneSign"], -np.abs(rng.standard_normal((1, n))) - 0.1),
        ("subnormal-sized values (1e-39)", ["Subnormal"], rng.standard_normal((1, n)) * 1e-39),
        ("sparse: 90% zeros", ["Sparse"], np.where(rng.uniform(size=n) < 0.9, 0.0, rng.standard_normal(n))[None]),
    ]
    return [(c, fl, np.asarray(x, dtype=f)) for c, fl, x in cases]


def imatrix_inputs(rng: np.random.Generator):
    n = N_PER_ROW
    return [
        ("uniform importance", ["ImatrixUniform"], np.ones(n)),
        ("skewed importance (log-normal)", ["ImatrixSkewed"], np.exp(rng.standard_normal(n) * 2)),
        ("importance zero in places (25%)", ["ImatrixZeros"], np.where(rng.uniform(size=n) < 0.25, 0.0, rng.uniform(0.1, 4, n))),
        ("one dominant column", ["ImatrixSkewed"], np.where(np.arange(n) == 5, 1e4, 1.0)),
        ("tiny importance (1e-6)", ["ImatrixScaled"], np.full(n, 1e-6)),
    ]


def imatrix_cases(t, rng):
    xs = quantize_inputs(t, rng)
    pick = {"standard normal rows", "normal row scaled by 1e-05", "normal row scaled by 10000",
            "small normal row with one outlier of 100", "half-integer grid -8..8 (rounding ties)",
            "each 32 values at a different scale (1e-3..1e3)", "all zeros", "all positive",
            "constant rows 0.5 and -3.25", "alternating signs, random magnitudes"}
    xs = [c for c in xs if c[0] in pick]
    ims = imatrix_inputs(rng)
    out = []
    for i, (c, fl, x) in enumerate(xs):
        for j in (i % len(ims), (i + 2) % len(ims)):
            ic, ifl, im = ims[j]
            out.append((f"{c}; {ic}", fl + ifl, x, np.asarray(im, np.float32)))
    return out


def random_blocks(t: GGMLType, rng: np.random.Generator):
    """(comment, flags, raw, n) cases for the dequantize group."""
    cases = []
    if t.name in PLAIN:
        n = 64
        raw = rng.integers(0, 256, n * t.type_size, dtype=np.uint8).tobytes()
        cases.append(("random bit patterns", ["RandomBytes"], raw, n))
        if t.name in ("F16", "BF16"):
            sp = np.array(SPECIAL_F16 if t.name == "F16" else
                          [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0x3F80],
                          dtype="<u2")
            cases.append(("special values: zeros, subnormals, max, Inf, NaN payloads", ["SpecialValue"], sp.tobytes(), sp.size))
        if t.name == "F32":
            sp = np.array(SPECIAL_F32, dtype="<u4")
            cases.append(("special values: zeros, subnormals, Inf, NaN payloads", ["SpecialValue"], sp.tobytes(), sp.size))
        if t.name == "F64":
            vals = np.concatenate([rng.standard_normal(30) * 10.0 ** rng.integers(-50, 50, 30),
                                   [0.0, -0.0, 1e-320, 3.5e38, 3.4028235677973366e38, 1e300, np.inf, -np.inf, np.nan,
                                    1.0000000596046448]])
            cases.append(("doubles across the float32 range and beyond (rounding, overflow, NaN)", ["SpecialValue"],
                           vals.astype("<f8").tobytes(), vals.size))
        if t.name in ("I32", "I64"):
            big = np.array([2**24 + 1, 2**24 + 3, -(2**31), 2**31 - 1, 16777217, 33554435], dtype=np.int64)
            if t.name == "I64":
                big = np.concatenate([big, [2**63 - 1, -(2**63), 2**53 + 1, 2**40 + 2**16 + 1]]).astype(np.int64)
            cases.append(("integers not representable in float32 (round to nearest even)", ["RoundingTie"],
                          big.astype(PLAIN[t.name]).tobytes(), big.size))
        return cases

    nb = 4
    raw = rng.integers(0, 256, nb * t.type_size, dtype=np.uint8)
    cases.append((f"{nb} blocks of random bytes", ["RandomBytes"], raw.tobytes(), nb * t.block_size))
    blocks = rng.integers(0, 256, (nb, t.type_size), dtype=np.uint8)
    for off in F16_FIELDS.get(t.name, []):
        blocks[:, off:off + 2] = np.frombuffer(np.array([0x3C00, 0x2E66, 0x1400, 0x5640][:nb], "<u2").tobytes(), np.uint8).reshape(nb, 2)
    if t.name == "Q8_K":
        blocks[:, 0:4] = np.frombuffer(np.array([1.0, 0.013, 1e-5, 70.0], "<f4").tobytes(), np.uint8).reshape(nb, 4)
    cases.append((f"{nb} blocks of random bytes with finite normal scales", ["RandomBytes"], blocks.tobytes(), nb * t.block_size))
    cases.append(("block of 0x00 bytes", ["AllZeroBytes"], bytes(t.type_size), t.block_size))
    cases.append(("block of 0xFF bytes", ["AllOnesBytes"], b"\xff" * t.type_size, t.block_size))

    def special_blocks(setter, values, what):
        for v in values:
            b = rng.integers(0, 256, t.type_size, dtype=np.uint8)
            setter(b, v)
            cases.append((f"random block with {what} = {v:#x}", ["SpecialScale"], b.tobytes(), t.block_size))

    if t.name in F16_FIELDS:
        def set_f16(b, v):
            for off in F16_FIELDS[t.name]:
                b[off:off + 2] = [v & 0xFF, v >> 8]
        special_blocks(set_f16, SPECIAL_F16, "fp16 scale field(s)")
    elif t.name == "IQ1_M":
        def set_iq1m(b, v):  # the fp16 scale lives in the top nibble of the four uint16 scales
            sc = b[48:56].view("<u2").copy()
            for k in range(4):
                sc[k] = (sc[k] & 0x0FFF) | (((v >> (4 * k)) & 0xF) << 12)
            b[48:56] = sc.view(np.uint8)
        special_blocks(set_iq1m, SPECIAL_F16, "fp16 scale (top nibbles of scales)")
    elif t.name == "Q8_K":
        def set_f32(b, v):
            b[0:4] = np.frombuffer(np.array([v], "<u4").tobytes(), np.uint8)
        special_blocks(set_f32, SPECIAL_F32, "float32 d")
    elif t.name == "MXFP4":
        def set_e(b, v):
            b[0] = v
        special_blocks(set_e, SPECIAL_E8M0, "e8m0 exponent e")
    elif t.name == "NVFP4":
        def set_d(b, v):
            b[0:4] = v
        special_blocks(set_d, SPECIAL_UE4M3, "ue4m3 scales d[0..3]")
    return cases


# ------------------------------------------------------------------------------------------------

def build(t: GGMLType, oracle: Oracle) -> dict:
    rng = rng_for(t)
    groups = []
    tc = 0
    qsrc = oracle.quantize_source(t)
    deq_src = oracle.dequantize_source(t)
    can_deq = True

    def qtest(comment, flags, x, imatrix):
        nonlocal tc
        tc += 1
        expected = oracle.quantize(t, x, imatrix)
        d = {"tcId": tc, "comment": comment, "flags": flags, "rows": int(x.shape[0]),
             "input_f32_hex": f32_to_hex(x)}
        if imatrix is not None:
            d["imatrix_f32_hex"] = f32_to_hex(imatrix)
        d["expected_hex"] = expected.hex()
        if can_deq:
            d["dequantized_f32_hex"] = f32_to_hex(oracle.dequantize(t, expected, x.size))
        return d

    if qsrc and not t.requires_imatrix:
        tests = [qtest(c, fl, x, None) for c, fl, x in quantize_inputs(t, rng)]
        groups.append({"op": "quantize", "imatrix": False, "n_per_row": N_PER_ROW, "source": qsrc, "tests": tests})
    if qsrc == "ggml_quantize_chunk" and t.family not in ("float",):
        tests = [qtest(c, fl, x, im) for c, fl, x, im in imatrix_cases(t, rng)]
        groups.append({"op": "quantize", "imatrix": True, "n_per_row": N_PER_ROW, "source": qsrc, "tests": tests})
    dtests = []
    for c, fl, raw, n in random_blocks(t, rng):
        tc += 1
        dtests.append({"tcId": tc, "comment": c, "flags": fl, "n": int(n), "input_hex": raw.hex(),
                       "expected_f32_hex": f32_to_hex(oracle.dequantize(t, raw, n))})
    groups.append({"op": "dequantize", "source": deq_src, "tests": dtests})

    return {
        "schema": SCHEMA,
        "type": t.name,
        "ggml_type_id": t.id,
        "block_size": t.block_size,
        "type_size": t.type_size,
        "family": t.family,
        "provenance": {
            "oracle": f"llama-cpp-python {libggml.ORACLE_VERSION}",
            "ggml": GGML_VERSION,
            "generator": "vectors/generate.py",
            "seed": SEED,
            "rng": "numpy PCG64, seeded with [seed, crc32(type name)]",
        },
        "testGroups": groups,
    }


def family_dir(t: GGMLType) -> str:
    return {"float": "float", "int": "int"}.get(t.family, FAMILY_MODULES[t.family])


def write(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output directory (default: vectors/)")
    ap.add_argument("--types", default="", help="comma-separated type names (default: all live types)")
    args = ap.parse_args(argv)
    lib = libggml.load()
    if lib.version != libggml.ORACLE_VERSION:
        print(f"refusing: the oracle is llama-cpp-python {lib.version}, vectors pin {libggml.ORACLE_VERSION}", file=sys.stderr)
        return 2
    oracle = Oracle(lib)
    wanted = {s.strip().upper() for s in args.types.split(",") if s.strip()}
    out = Path(args.out)
    for t in LIVE_TYPES:
        if wanted and t.name not in wanted:
            continue
        doc = build(t, oracle)
        path = out / family_dir(t) / f"{t.name}.json"
        write(doc, path)
        n = sum(len(g["tests"]) for g in doc["testGroups"])
        print(f"{t.name:8s} {n:3d} tests -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
