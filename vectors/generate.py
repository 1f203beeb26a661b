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
from ggspec.reference.types import LIVE_TYPES, FAMILY_MODULES, GGMLType, get_type

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
# adversarial cases: exact rounding ties, special values, shapes (docs/vectors.md, "Adversarial
# cases"). Their inputs are constructed here (plain numpy) or, for a few, derived from an oracle
# output; every expected value still comes from the oracle. They use their own random stream, so
# the ordinary cases above are unchanged.

F32_SPECIALS = [  # (name, float32 bits) fed to quantizers
    ("quiet NaN", 0x7FC00000), ("negative quiet NaN", 0xFFC00000), ("signalling NaN", 0x7F800001),
    ("quiet NaN with payload", 0x7FC12345), ("negative signalling NaN with payload", 0xFFA5A5A5),
    ("+Inf", 0x7F800000), ("-Inf", 0xFF800000), ("-0", 0x80000000), ("smallest subnormal", 0x00000001),
    ("largest subnormal", 0x007FFFFF), ("smallest normal", 0x00800000), ("largest finite", 0x7F7FFFFF),
    ("most negative finite", 0xFF7FFFFF),
]
SPECIAL_POSITIONS = (5, 37, 200, 255)  # blocks 0 and 1 of 32-blocks, sub-block 12 of 256-blocks, the last value


def adv_rng(t: GGMLType, k: int) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(t.name.encode()), 15, k])


def f32_bits(*u) -> np.ndarray:
    return np.array(u, dtype="<u4").view("<f4").astype(np.float32)


def aborts(fn) -> bool:
    """Run ``fn`` (an oracle call) in a forked child: True when ggml aborts or crashes there."""
    import os
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: silence ggml's assertion message, run, report by exit status
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.environ["GGML_NO_BACKTRACE"] = "1"   # no gdb attach on GGML_ASSERT
            fn()
            code = 0
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status != 0


def _with(x: np.ndarray, pos, v) -> np.ndarray:
    x = x.copy()
    for p in pos:
        if p < x.shape[-1]:
            x[..., p] = v
    return x


def special_rows(t: GGMLType, rng) -> list:
    """One row per special value (injected into a standard normal row), plus whole rows of -0,
    largest finite values and values far outside fp16 range."""
    n = N_PER_ROW if t.block_size >= 256 else 2 * max(t.block_size, 32)   # 64 values for 32-blocks
    base = rng.standard_normal((1, n)).astype(np.float32)
    out = []
    pos = sorted({p for p in SPECIAL_POSITIONS if p < n} | {n - 1})
    for name, bits in F32_SPECIALS:
        v = f32_bits(bits)[0]
        out.append((f"normal row with {name} (0x{bits:08x}) at {pos}", ["SpecialInput"], _with(base, pos, v)))
    out += [
        ("all -0.0", ["SpecialInput", "Zeros"], np.full((1, n), -0.0, np.float32)),
        ("largest finite float32 magnitudes, alternating signs", ["SpecialInput"],
         (np.where(np.arange(n) % 2 == 0, 1, -1) * f32_bits(0x7F7FFFFF)[0]).astype(np.float32)[None]),
        ("normal row scaled by 1e30 (scales overflow fp16)", ["SpecialInput", "Scaled"], (base * np.float32(1e30))),
        ("normal row scaled by 1e-42 (float32 subnormals)", ["SpecialInput", "Subnormal"], (base * np.float32(1e-42))),
        ("normal row scaled by 1e-20 (group maxima between 1e-30 and GROUP_MAX_EPS = 1e-15)", ["Scaled"],
         (base * np.float32(1e-20))),
        ("normal row scaled by 5e-15 (group maxima above 1e-15, fitted scales below it)", ["Scaled"],
         (base * np.float32(5e-15))),
    ]
    return out


def special_imatrices(rng) -> list:
    n = N_PER_ROW
    ones = np.ones(n, np.float32)
    return [
        ("importance with NaN at 4 columns", ["SpecialImatrix"], _with(ones, SPECIAL_POSITIONS, np.nan)),
        ("importance with +Inf at 4 columns", ["SpecialImatrix"], _with(ones, SPECIAL_POSITIONS, np.inf)),
        ("negative importance at 4 columns", ["SpecialImatrix"], _with(ones, SPECIAL_POSITIONS, -2.0)),
        ("importance 1e30 at 4 columns", ["SpecialImatrix"], _with(ones, SPECIAL_POSITIONS, 1e30)),
        ("subnormal importance everywhere", ["SpecialImatrix"], np.full(n, 1e-40, np.float32)),
        ("all-zero importance", ["SpecialImatrix", "ImatrixZeros"], np.zeros(n, np.float32)),
    ]


def _blocks_row(blocks, n=N_PER_ROW) -> np.ndarray:
    row = np.concatenate([np.asarray(b, np.float32) for b in blocks])
    assert row.size == n, row.size
    return row[None]


def _halves(lo, hi, k, rng):
    """k values (j + 0.5) for integers j in [lo, hi), both signs of parity included."""
    return (rng.integers(lo, hi, k) + 0.5).astype(np.float64)


def tie_rows(t: GGMLType, rng) -> list:
    """Rows whose scaled values land exactly on .5 at the type's rounding sites (and a few that sit
    one float32 step off them), so that round-half-to-even, half-up, roundf, (int)(x+0.5f) and
    x/d versus x*(1/d) all give different levels somewhere."""
    name = t.name
    out = []
    qk = t.block_size

    def legacy_symmetric(nmax):       # Q4_0/Q5_0: d = max/-nmax, (int)(x*id + nmax + 0.5f)
        bl = []
        for d in (1.0, 0.25, 3.0, 5.0, 7.0, 0.1, 1.0 / 3, 6.0):
            h = _halves(-nmax, nmax, qk - 2, rng) * d
            bl.append(np.concatenate([[-nmax * d, nmax * d], h]))   # -max first: d > 0; +max hits the MIN(15/31)
        return bl

    def legacy_affine(nmax):          # Q4_1/Q5_1: d = (max-min)/nmax, (int)((x-min)*id + 0.5f)
        bl = []
        for d, m in ((1.0, 0.0), (1.0, -5.0), (0.25, 0.0), (3.0, 0.0), (5.0, -2.0), (7.0, 1.0), (0.1, 0.0), (6.0, -3.0)):
            body = _halves(0, nmax, qk - 4, rng) * d + m
            edge = [m, m + nmax * d, m + np.float32(0.49999997) * d, m + np.float32(0.50000006) * d]
            bl.append(np.concatenate([edge, body]))
        return bl

    def q8(nmax=127):                 # Q8_0/Q8_1: d = amax/127, roundf(x*id)
        bl = []
        for d in (1.0, 0.125, 3.0, 5.0, 7.0, 0.1, 11.0, 1.0 / 3):
            h = _halves(-nmax, nmax, qk - 2, rng) * d
            bl.append(np.concatenate([[nmax * d, -nmax * d], h]))
        return bl

    if name in ("Q4_0", "Q5_0"):
        bl = legacy_symmetric(8 if name == "Q4_0" else 16)
        out.append((f"{name}: -max, +max, then half-integer multiples of d for 8 scales d", ["RoundingTie", "ExactTie"],
                    _blocks_row(bl)))
    elif name in ("Q4_1", "Q5_1"):
        bl = legacy_affine(15 if name == "Q4_1" else 31)
        out.append((f"{name}: min, max, min + 0.49999997*d, then half-integer levels for 8 (d, min)",
                     ["RoundingTie", "ExactTie"], _blocks_row(bl)))
    elif name in ("Q8_0", "Q8_1"):
        out.append((f"{name}: +-127*d, then half-integer multiples of d for 8 scales d", ["RoundingTie", "ExactTie"],
                    _blocks_row(q8())))
    elif name == "Q8_K":
        bl = []
        for d in (1.0, 2.0**-5):
            h = _halves(-127, 127, 255, rng) * d
            bl.append(np.concatenate([[-127 * d], h]))            # iscale = -127/max = 1/d exactly
        out.append(("Q8_K: max = -127*d, then half-integer multiples of d (nearest_int ties)",
                    ["RoundingTie", "ExactTie"], np.stack([b for b in bl])))
    elif name in ("TQ1_0", "TQ2_0", "Q2_0"):
        rows = []
        for d in (1.0, 0.125, 3.0, 1e-3):
            v = np.resize(np.array([1.0, -0.5, 0.5, 0.49999997, -0.49999997, 0.50000006, -0.50000006, 0.0, -0.0]),
                          N_PER_ROW)
            v[0] = 1.0
            rows.append(v * d)
        out.append((f"{name}: amax d, values d*(+-0.5, +-0.5 -+ 1 ulp, 0, -0) (lroundf/roundf ties)",
                    ["RoundingTie", "ExactTie"], np.stack(rows)))
    elif name == "MXFP4":
        bl = []
        mids = np.array([0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 10.0, 0.25, 1.25, 1.75, 2.25, 4.5, 6.5])
        for e in (0, 3, -4, 10):       # block amax 8 * 2**e: d = 2**e, midpoints between e2m1 levels
            vals = np.resize(np.concatenate([mids, -mids]), qk) * 2.0**e
            vals[0] = 8.0 * 2.0**e
            bl.append(vals)
        for k in (8, 3, 20, -6):     # amax = the largest float below 2**k: floorf(log2f) rounds up to k
            below = np.nextafter(np.float32(2.0**k), np.float32(0))
            vals = rng.uniform(-1, 1, qk) * float(below) * 0.5
            vals[3] = below
            bl.append(vals)
        out.append(("MXFP4: midpoints between e2m1 levels; amax just below a power of two (log2f rounds up)",
                    ["RoundingTie", "ExactTie"], _blocks_row(bl)))
    elif name == "NVFP4":
        out += nvfp4_tie_rows(rng)
    elif name.startswith(("IQ2", "IQ3", "IQ1")):
        # grid searches: l = nearest_int(0.5*(id*|x| - 1)) with id = (2*kMaxQ-1)/vmax at the first trial:
        # integer multiples of vmax/(2*kMaxQ-1) put even values of id*|x| on exact .5 ties
        top = 15 if name.startswith("IQ3") else 5
        rows = []
        for u in (1.0, 0.25, 3.0):
            v = rng.integers(1, top + 1, N_PER_ROW).astype(np.float64)
            v[::8] = top
            rows.append(v * u * np.where(rng.uniform(size=N_PER_ROW) < 0.5, -1, 1))
        out.append((f"{name}: groups of integer multiples of vmax/{top} (even ones tie in the grid rounding)",
                    ["RoundingTie", "ExactTie"], np.stack(rows)))
    if name == "Q2_K":
        # groups of 16 exactly on the 2-bit grid (levels 0..3) at scales s_j and offsets -m_j with
        # max s = max m = 15: the 4-bit codes nearest_int(15/max*s) = nearest_int(s) tie at s = k + 0.5
        sc = np.array([15, 0.5, 2.5, 4.5, 6.5, 8.5, 10.5, 12.5, 1.5, 3.5, 14.5, 0.49999997, 5.5, 7.5, 9.5, 11.5])
        rows = []
        for with_min in (False, True):
            L = rng.integers(0, 4, (16, 16)).astype(np.float64)
            L[:, 0], L[:, 1] = 0, 3
            m = np.roll(sc, 5) if with_min else np.zeros(16)
            rows.append((L * sc[:, None] - m[:, None]).reshape(-1))
        out.append(("Q2_K: groups exactly on the level grid with scales and mins k + 0.5 (4-bit code ties)",
                    ["RoundingTie", "ExactTie", "GridExact"], np.stack(rows)))
    if name == "Q1_0":
        # d = (sequential float sum of |x|)/128: a large first value, then values below its half-ulp;
        # the sequential sum drops them, a pairwise sum would not, and d lands on either side of an
        # fp16 rounding mid-point
        x = np.full(N_PER_ROW, np.float32(7e-6), np.float32) * np.where(np.arange(N_PER_ROW) % 3, 1, -1)
        x[0], x[128] = np.float32(128.0625 - 0.0003), np.float32(-(128.0625 - 0.0003))
        out.append(("Q1_0: one large value then values below its half-ulp (sum order shows in fp16 d)",
                    ["SumOrder"], x[None]))
    if name in ("Q3_K", "Q6_K"):
        # a largest sub-block whose scale m makes fp16(1/(-k/m)) and fp16(m/-k) differ (ggml stores
        # d = 1/iscale with iscale = -32/m (Q3_K) or -128/m (Q6_K)); the others are it times 1/2
        g = f32_bits(*(D_DIRECT_Q3K if name == "Q3_K" else D_DIRECT_Q6K)).astype(np.float64)
        row = np.concatenate([g] + [g * 0.5 * (-1) ** j for j in range(1, 16)])
        out.append((f"{name}: the stored d is 1/iscale, not max_scale/-k (they differ in fp16 here)",
                    ["Searched", "ScaleRounding"], row[None]))
    if name == "Q3_K":
        # sub-blocks for which make_q3_quants changes a level in its 5th refinement pass, and the
        # resulting scale changes fp16(d) (found by searching random 16-vectors)
        subs = [f32_bits(*u).astype(np.float64) for u in Q3K_PASS5]
        rows = []
        for k in range(len(subs)):
            row = [subs[k]] + [subs[(k + j) % len(subs)] * 0.5 for j in range(1, 16)]
            rows.append(np.concatenate(row))
        out.append(("Q3_K: the largest sub-block needs make_q3_quants' 5th refinement pass",
                    ["SearchPasses"], np.stack(rows)))
    return [(c, fl, np.asarray(x, np.float32)) for c, fl, x in out]


# (scales, weight sums) for which make_qp_quants (the scales-of-scales fit of the K-quants with an
# importance matrix) changes a level in its 5th refinement pass and fp16(d) with it; found by
# searching random vectors. qp_pass5_cases realizes them as sub-blocks exactly on the level grid
# at those scales, with importances that make the sub-block weight sums equal the weights.
QP_PASS5 = {
    8: ((1038172435, 1024307484, 1058771809, 1015158601, 1052296593, 1063642131, 1048324080, 1052049412),
        (1086614485, 1144423832, 1092924301, 1048676738, 1037049552, 1107315249, 1032371222, 1025164578)),
    16: ((1048845149, 1057384216, 1058530606, 1026193042, 1025666753, 1056157993, 1050388124, 1059507270,
          1064846345, 1061785315, 1059997185, 1058337025, 1058085445, 1058428654, 1060605700, 1060433703),
         (1008008583, 1072344916, 1025023330, 1058115739, 1122878389, 1065675961, 1078048983, 1073595703,
          1037802419, 1062867056, 986510655, 1038120156, 1007815607, 1079444413, 1043134144, 1061399328)),
}


def qp_pass5_cases(t: GGMLType, rng) -> list:
    if t.name in ("Q4_K", "Q5_K"):
        n, sub, nmax, factor = 8, 32, 15 if t.name == "Q4_K" else 31, 2.0
    elif t.name == "Q2_K":
        n, sub, nmax, factor = 16, 16, 3, 1.0
    else:
        return []
    xs, ws = QP_PASS5[n]
    sc, w = f32_bits(*xs), f32_bits(*ws)
    L = rng.integers(0, nmax + 1, (n, sub))
    L[:, 0], L[:, 1] = 0, nmax
    x = (L.astype(np.float32) * sc[:, None]).astype(np.float32).reshape(-1)
    sumx2 = np.add.accumulate(np.concatenate([[np.float32(0)], x * x]), dtype=np.float32)[-1]
    sigma2 = np.float32(np.float32(factor) * sumx2) / np.float32(256)
    qw = (np.repeat(w / np.float32(sub), sub) / np.sqrt(sigma2 + x * x)).astype(np.float32)
    return [(f"{t.name}: sub-blocks on the level grid whose scales need make_qp_quants' 5th refinement pass",
             ["SearchPasses", "GridExact"], x[None], qw)]


# make_qp_quants' trial scales iscale_is = (0.1f*is + nmax)/max (nmax = 63 for Q4_K/Q5_K, 15 for
# Q2_K): rows where that level rounding sits on (or one float32 step from) a .5 tie, so that
# computing it as nmax/max + 0.1f*is/max (one ulp off for this max) changes a stored 6-/4-bit code.
# Each row is one block of sub-blocks holding a single non-zero value a_j (the rest 0):
#  * sub-block 0: a = 1, importance 0 -> make_qkx3_quants keeps its first guess, scale
#    m = 1/(nsub/1) (nsub = 15, 31, 3), the max of the scales;
#  * sub-block 1: a = QP_TRIAL[...] (float32 bits), importance 0 -> scale t = 1/(nsub/a), which the
#    trial scale is maps to k + 0.5 within an ulp (k = 31/34 for Q4_K, 36/32 Q5_K, 7/8 Q2_K);
#  * sub-blocks 2..: "selectors", scale exactly i*m/(nmax + 0.1*is) for a few i (importance 0 at the
#    value, 1 on the zeros, so the scale is again 1/(nsub/a) while the sub-block weight sum is > 0):
#    they make trial `is` the best one; the importance-0 scales do not enter any error or sum, so
#    make_qp_quants' refinement leaves their levels as the trial rounded them.
# Found with tests/mutation/search.py-style scanning of consecutive floats a (docs/vectors.md).
QP_TRIAL = {  # type -> ((is, float32 bits of a for sub-block 1), ...)
    "Q4_K": ((4, 0x3EFE6285), (-1, 0x3F0C69D2)),
    "Q5_K": ((4, 0x3F1361B8), (-3, 0x3F04B205)),
    "Q2_K": ((4, 0x3EF959C3), (-2, 0x3F1306EB)),
}


def qp_trial_cases(t: GGMLType) -> list:
    if t.name not in QP_TRIAL:
        return []
    nb, sub, nsub, nq = {"Q4_K": (8, 32, 15, 63), "Q5_K": (8, 32, 31, 63), "Q2_K": (16, 16, 3, 15)}[t.name]
    m = float(np.float32(1.0) / (np.float32(nsub) / np.float32(1.0)))
    its = [34, 22, 58, 17, 28, 54] if nq == 63 else [7, 11, 5, 9, 13, 6, 10, 3, 12, 4, 8, 14, 2, 9]
    rows, ims = [], []
    for is_, bits in QP_TRIAL[t.name]:
        x = np.zeros(N_PER_ROW, np.float32)
        qw = np.ones(N_PER_ROW, np.float32)
        x[0], x[sub] = 1.0, f32_bits(bits)[0]
        qw[:2 * sub] = 0.0
        for b in range(2, nb):
            x[b * sub + 3] = np.float32(its[(b - 2) % len(its)] * m / (nq + 0.1 * is_) * nsub)
            qw[b * sub + 3] = 0.0
        rows.append(x)
        ims.append(qw)
    return [(f"{t.name}: make_qp_quants' trial scale (0.1f*is + nmax)/max, is = {is_}, rounds a sub-block "
             f"scale on a .5 tie (importance-0 sub-blocks; one-value sub-blocks as selectors)",
             ["RoundingTie", "SearchTrials", "ImatrixZeros"], r[None], q)
            for (is_, _), r, q in zip(QP_TRIAL[t.name], rows, ims)]


D_DIRECT_Q6K = (3207699166, 1033164601, 1059204048, 1063251713, 3193465692, 1049768031, 1007452389, 1056690071,
                3203128185, 3176825254, 3196658003, 3198493459, 3203732774, 3193107795, 1045531156, 3175066647)
D_DIRECT_Q3K = (1039273180, 3209905508, 1051121375, 3197850377, 3165247570, 1054877943, 1053312883, 1052605067,
                1031031544, 1046156031, 3196307523, 1047921873, 1050312344, 3194677588, 1039807054, 1055719191)

Q3K_PASS5 = [
    (3208288379, 1070415812, 1058317908, 1066072813, 1060645639, 1073497155, 3209704585, 3182344688,
     3216602352, 3215372338, 3189386922, 3219361472, 1054198448, 3216135870, 3221090967, 1061766755),
    (1066823554, 3213144676, 1057380322, 1067404555, 3211315436, 3193650341, 1060438548, 3223197681,
     1075278857, 1066259478, 3207364691, 3214789594, 1058180164, 3218210938, 1063812811, 1070108573),
    (3199592594, 3203629557, 1061089884, 3215636691, 1067810743, 1067611478, 3213679305, 3212906059,
     1043989221, 3215248116, 1065829345, 1067985447, 1065712287, 1065319984, 3208386350, 3191867370),
    (1042822047, 1034776926, 3201623081, 1053401328, 1052463450, 1059249672, 3209881811, 3181129041,
     3205242954, 1051511375, 1062310029, 1060529333, 3195859869, 3204797123, 3208299425, 1029334822),
]


def _ue4m3_code(x: float) -> int:
    """ue4m3 rounding as ggml_fp32_to_ue4m3 documents it (half-up from bit 19; subnormals
    (int)(x*512 + 0.5f)); used only to pick NVFP4 inputs near its rounding boundaries."""
    x = np.float32(x)
    if not x > 0:
        return 0
    x = min(x, np.float32(448.0))
    bits = int(np.array([x], np.float32).view(np.uint32)[0])
    e = ((bits >> 23) & 0xFF) - 127 + 7
    if e <= 0:
        return min(7, int(np.float32(x * np.float32(512.0)) + np.float32(0.5)))
    man = ((bits >> 20) & 7) + ((bits >> 19) & 1)
    if man > 7:
        man, e = 0, e + 1
    return 0x7E if e >= 15 else (e << 3) | man


def nvfp4_tie_rows(rng) -> list:
    """NVFP4: sub-block amax/6 exactly on ue4m3 rounding ties (normal and subnormal), with a carry,
    and amax values where amax/6 and amax*(1/6) fall on different sides of a tie."""
    targets = []
    for j in (-3, 0, 2, 5):
        for m in (0, 2, 4, 6):                         # even mantissa: half-up and half-even differ
            targets.append((1 + m / 8 + 1 / 16) * 2.0**j)
        targets.append((1 + 7 / 8 + 1 / 16) * 2.0**j)  # man 111 + round bit: carry into the exponent
    for m in (0, 1, 2, 4, 6):                          # subnormal ue4m3: (int)(x*512 + 0.5f) ties
        targets.append((m + 0.5) / 512)
    amaxes = [np.float32(6.0 * t) for t in targets]
    # amax/6 vs amax*(1/6): scan float32 neighbours of 6*t for a pair that rounds differently
    sixth = np.float32(1.0) / np.float32(6.0)
    found = []
    for t in targets:
        a = np.float32(6.0 * t)
        for k in range(-40, 41):
            c = np.float32(a + np.float32(k) * np.spacing(a))
            if _ue4m3_code(np.float32(c / np.float32(6.0))) != _ue4m3_code(np.float32(c * sixth)):
                found.append(c)
                break
    amaxes += found
    subs = []
    for a in amaxes:
        v = rng.uniform(-1, 1, 16) * float(a)
        v[rng.integers(0, 16)] = a if rng.integers(0, 2) else -a
        subs.append(v)
    while len(subs) % 16:
        subs.append(subs[len(subs) % len(amaxes)])
    rows = np.concatenate(subs).reshape(-1, N_PER_ROW)
    return [("NVFP4: sub-block amax/6 on ue4m3 ties (half-up vs half-even, subnormal, carry) and where "
             "amax/6 and amax*(1/6) round to different scales", ["RoundingTie", "ExactTie"], rows)]


def sign_rows(t: GGMLType, rng) -> list:
    """Blocks whose extremes are +a and -a (which one is 'the' max decides a sign and a clamp):
    sub-block j+1 is the negation of sub-block j, and each sub-block holds +a and -a."""
    n = N_PER_ROW
    sub = 16
    x = rng.standard_normal(n)
    x = x.reshape(-1, 2, sub)
    x[:, 1] = -x[:, 0]
    row1 = x.reshape(1, n)
    y = rng.standard_normal((n // sub, sub))
    a = np.abs(y).max(axis=1) * 1.25
    y[:, 3] = a
    y[:, 9] = -a
    y[::2, [3, 9]] = y[::2, [9, 3]]
    row2 = y.reshape(1, n)
    z = rng.standard_normal((n // 32, 32))
    z[::2] = 0.0                                       # all-zero groups of 32 between ordinary ones
    row3 = z.reshape(1, n)
    return [("pairs of sub-blocks that are negations of each other", ["OppositeExtremes"], row1.astype(np.float32)),
            ("every other group of 32 all zero (the zero-group paths of the searches)", ["Zeros", "Sparse"],
             row3.astype(np.float32)),
            ("each group of 16 holds +a and -a as its extremes (alternating order)", ["OppositeExtremes"],
             row2.astype(np.float32))]


def grid_rows(t: GGMLType, rng) -> list:
    """Sub-blocks that lie exactly on a level grid, at scales that are powers of two apart (copies of
    one sub-block at 2**k scales) and at scales whose codes tie; plus a row where every sub-block
    repeats the first one scaled by 2**k."""
    n = N_PER_ROW
    base = rng.standard_normal(16)
    row = np.concatenate([base * 2.0 ** (k % 7 - 3) * (-1) ** k for k in range(n // 16)])
    lv = rng.integers(0, 16, (n // 16, 16)).astype(np.float64)
    lv[:, 0], lv[:, 1] = 0, 15
    scales = np.array([63, 62.5, 31.5, 2.5, 0.5, 7.5, 12.5, 1.5, 63, 0.25, 4.5, 9.5, 20.5, 33.5, 44.5, 52.5]) / 8
    row2 = (lv * scales[:, None]).reshape(-1)
    return [("every group of 16 is the first one times +-2**k", ["PowerOfTwoCopies"], row[None].astype(np.float32)),
            ("groups of 16 on an integer level grid (0..15) at scales whose 4/6-bit codes tie", ["GridExact", "RoundingTie"],
             row2[None].astype(np.float32))]


def f16_special_rows() -> list:
    """F16/BF16/F32 quantize: NaN payloads, signalling NaNs, infinities, signed zeros, subnormals,
    overflow thresholds and exact rounding ties of both conversions."""
    specials = [b for _, b in F32_SPECIALS]
    f16_ties = []
    for h in (0x3C00, 0x3C01, 0x0000, 0x0001, 0x03FF, 0x0400, 0x7BFE, 0x7BFF, 0x3555, 0x1000):
        lo = np.array([h], np.uint16).view(np.float16).astype(np.float32)[0]
        hi = np.array([h + 1], np.uint16).view(np.float16).astype(np.float32)[0]
        mid = np.float32((np.float64(lo) + np.float64(hi)) / 2)       # exact in float32
        for v in (mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf))):
            f16_ties += [int(np.array([v], np.float32).view(np.uint32)[0]), int(np.array([-v], np.float32).view(np.uint32)[0])]
    f16_ties += [0x477FF000, 0x477FEFFF, 0x477FF001, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33C00000, 0x387FE000]
    bf16_ties = [0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7F8000, 0x7F7F7FFF, 0xFF7F8000, 0x00008000,
                 0x00018000, 0x80008000, 0x7F800001, 0x7F80FFFF, 0xFF810000, 0x7FA12345, 0x7F8000FF, 0xFFFFFFFF]
    u = np.array(specials + f16_ties + bf16_ties, dtype=np.uint32)
    u = np.resize(u, ((u.size + 7) // 8) * 8)
    return [("NaN payloads, sNaNs, +-Inf, +-0, subnormals, overflow thresholds, fp16 and bf16 rounding ties",
             ["SpecialInput", "RoundingTie", "ExactTie"], u.view(np.float32).reshape(1, -1))]


def tie_imatrix_cases(t: GGMLType, rng) -> list:
    """Search-type quantizers with an importance matrix: sub-blocks exactly on the type's level grid
    (so the fitted scale is exact) plus elements of importance 0 placed exactly on the mid-point
    between two levels, where the final rounding ties."""
    out = []
    if t.name in ("IQ4_NL", "IQ4_XS"):
        kv = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float64)
        mids = (kv[:-1] + kv[1:]) / 2
        rows, ims = [], []
        for r in range(2):
            x = np.zeros(N_PER_ROW)
            im = np.ones(N_PER_ROW)
            ls = [-32, -16, 8, 4, -2, 1, 16, -4] if t.name == "IQ4_XS" else [1] * 8
            for ib in range(8):
                dl = (2.0 ** -(3 + r)) * ls[ib] if t.name == "IQ4_XS" else 2.0 ** -(ib % 4 + 2 * r)
                L = rng.integers(0, 16, 32)
                L[:2] = (0, 15)
                xb = kv[L] * dl
                tie = rng.choice(np.arange(2, 32), 10, replace=False)
                xb[tie] = rng.choice(mids, 10) * dl
                im_b = np.ones(32)
                im_b[tie] = 0.0
                x[32 * ib:32 * ib + 32] = xb
                im[32 * ib:32 * ib + 32] = im_b
            rows.append(x)
            ims.append(im)
        for x, im in zip(rows, ims):
            out.append((f"{t.name}: groups exactly on the level grid, importance-0 elements on level mid-points",
                        ["RoundingTie", "ExactTie", "ImatrixZeros"], x[None].astype(np.float32), im.astype(np.float32)))
    return out


def shape_cases(t: GGMLType, rng) -> list:
    """(comment, flags, x) with other row lengths and row counts: 1 and 2 blocks, many blocks, up to
    64 rows, and (for block sizes below 256) a row length that is not a multiple of 256."""
    qk = t.block_size
    out = []
    if qk == 1:
        return [("3 rows of 7 values", ["Shape"], rng.standard_normal((3, 7))),
                ("1 value", ["Shape"], rng.standard_normal((1, 1)))]
    nrows = 64 if qk < 256 else 8    # (64 rows of 256 would cost 300 KB per type)
    out.append((f"{nrows} rows of one block ({qk})", ["Shape", "ManyRows"], rng.standard_normal((nrows, qk))))
    out.append((f"one row of two blocks ({2 * qk})", ["Shape"], rng.standard_normal((1, 2 * qk))))
    many = 2048 if qk < 256 else 1024
    out.append((f"one row of {many // qk} blocks ({many}), each block at its own scale", ["Shape", "ManyBlocks"],
                rng.standard_normal((1, many)) * np.repeat(10.0 ** rng.uniform(-2, 2, many // qk), qk)))
    if qk < 256:
        k = 3 * qk if (3 * qk) % 256 else 5 * qk
        out.append((f"2 rows of {k} (not a multiple of 256)", ["Shape"], rng.standard_normal((2, k))))
    return [(c, fl, np.asarray(x, np.float32)) for c, fl, x in out]


# Inputs found by searching against the oracle (tests/mutation/search.py): recipe rows for which a
# plausible mistake in some quantizer gives different bytes than ggml. Each entry is
# (type, recipe, seed, imatrix recipe or None, the mistake it exposes); the rows are re-made here
# from the recipe and seed, and their expected bytes come from the oracle like every other case.
RECIPES = ("normal", "t3", "blocky", "spiky", "uniform", "tiny-groups", "one-big")
IMATRIX_RECIPES = ("lognormal", "ones", "sparse")
SEARCHED: list = [
    ("Q2_K", "one-big", 1, "sparse", "make_qkx3 trial scale in double"),
    ("IQ2_XXS", "blocky", 0, "lognormal", "IQ2_XXS needs its last trial scale"),
    ("IQ2_XXS", "spiky", 34, "sparse", "IQ2_XXS's make_qp_quants needs its 5th pass"),
]


def recipe_row(name: str, seed: int, n: int = N_PER_ROW) -> np.ndarray:
    """A (1, n) float32 row from a named random recipe (independent of the type)."""
    rng = np.random.default_rng([SEED, 15, 99, RECIPES.index(name), seed])
    if name == "normal":
        x = rng.standard_normal(n)
    elif name == "t3":
        x = rng.standard_t(3, n)
    elif name == "blocky":
        x = rng.standard_normal(n) * np.repeat(10.0 ** rng.uniform(-1, 1, n // 16), 16)
    elif name == "spiky":
        x = np.where(rng.uniform(size=n) < 0.05, rng.standard_normal(n) * 10, rng.standard_normal(n) * 0.1)
    elif name == "uniform":
        x = rng.uniform(-1, 1, n)
    elif name == "tiny-groups":     # each group of 16 at a random scale, some groups almost zero
        x = rng.standard_normal(n) * np.repeat(10.0 ** rng.uniform(-6, 0, n // 16), 16)
    elif name == "one-big":         # each group of 16: one dominant value, the rest small
        x = rng.standard_normal(n) * 0.05
        x[np.arange(0, n, 16) + rng.integers(0, 16, n // 16)] = rng.choice([-1.0, 1.0], n // 16) * rng.uniform(1, 3, n // 16)
    else:
        raise ValueError(name)
    return x.astype(np.float32)[None]


def recipe_imatrix(name: str, seed: int, n: int = N_PER_ROW) -> np.ndarray:
    rng = np.random.default_rng([SEED, 15, 98, IMATRIX_RECIPES.index(name), seed])
    if name == "lognormal":
        im = np.exp(rng.standard_normal(n) * 2)
    elif name == "ones":
        im = np.ones(n)
    elif name == "sparse":
        im = np.where(rng.uniform(size=n) < 0.3, 0.0, rng.uniform(0.1, 4, n))
    else:
        raise ValueError(name)
    return im.astype(np.float32)


# Third round (issue 15; docs/vectors.md "Third round: dot products and searches"): rows where a
# search's arithmetic sits on a rounding tie, so that a one-ulp variant of one of its expressions
# changes the stored bytes. Each was found by scanning consecutive float32 values around the tie
# against the mutated reference (tests/mutation/mutation_catalogue.py) and checked: oracle ==
# reference != variant; every expected value is the oracle's. Appended as the last groups of the
# type, so every earlier tcId stays.
# - Q3_K: a 16-value group whose make_q3_quants proposal x*sl2/slx (left to right) and x*(sl2/slx)
#   round to different levels; as in Q3K_PASS5 it is the largest sub-block (the others are it
#   times +-1/2), so the changed scale shows in fp16(d) (q3-proposal-reassoc).
# - Q4_1 with an importance matrix: one block in which a trial scale of make_qkx3_quants,
#   (rmin + rdelta*is) + nmax, puts a value on the other side of a level mid-point than
#   nmax + rmin + rdelta*is, and that trial is the best one (qkx-trial-order).
# - Q4_K with an importance matrix: sub-block 0 = [1, 0, ...] (importance 0, scale m = 1/(15/1)),
#   sub-block 1 = [a, 0, ...] (importance 0 at a, 1 on the zeros: scale t = 1/(15/a), weight > 0),
#   the rest 0: make_qp_quants' trials is = 4 and is = -4 give t errors equal to within an ulp, and
#   1/iscale_is vs max/(nmax + 0.1*is) decides which one wins (qp-trial-scale-direct).
#   Its last sub-block (THIRD_Q3K_LAST) is a group whose make_q3_quants scale depends on summing
#   (w*x)*l or w*(x*l), scaled until that scale's 6-bit code is on a .5 tie (q3-sums-reassoc).
# - Q2_K: sixteen copies of a group of values 1 - k/1024 (exact sums): some trial scales of
#   make_qkx2_quants give every value the same level, where D = sum_w*sum_l2 - sum_l^2 is exactly 0
#   and ggml skips the fit (`D > 0`); fitted anyway, the min comes out +Inf, is set to 0, and that
#   trial wins (qkx-D-nonneg).
# - IQ4_XS: sub-block 1 is the negated sub-block 0, so their scales are d and -d exactly; ggml's
#   super-block scale is the first of largest magnitude (`>`), and the sign of d shows which
#   (iq4xs-max-scale-last).
# - IQ2_XXS with an importance matrix: x[0] = 1, x[1] = THIRD_IQ2XXS_X1, 0 elsewhere, importance 1
#   at index 1 only: x[1] is the exact mid-point of s_-4*1 and s_4*2 of make_qp_quants' trials, so
#   trials is = -4 and 4 have the same error bit for bit; ggml keeps the first (`<`), a `<=` keeps
#   the later one and the seed scale changes (iq-qp-ties-later).
THIRD_Q3K = (
    0xBDB5EBB8, 0xBF98B600, 0xBF99B376, 0xBD23B983, 0xBF87175E, 0x3F3C5761, 0x3F71F241, 0x3F0DA2A6,
    0x3F3A2280, 0x3EF997CB, 0xBFC5A8B5, 0xBF91A2D2, 0xBF143479, 0xBF8ECD0F, 0xBF366D0B, 0xBD8B0602,
)
THIRD_Q41 = (  # (x, importance) float32 bits
    (
        0xBF573988, 0xBF018AE3, 0xBEB23C74, 0x3F08314A, 0xBECF83CB, 0x3E8E46A9, 0xBE34C522, 0xBF583C5E,
        0xBEA3C044, 0xBF734D64, 0x3BD57BAA, 0xBF8FDAD9, 0xBF8BE3F6, 0x3FBA7DBA, 0xBD59D7B2, 0xBD5CC85F,
        0x3F02F40D, 0xBED77A92, 0xBE6A052D, 0x3ED9AD18, 0x3E9098CF, 0xBF9463D6, 0x3F5555F1, 0xBF1726BF,
        0xBF872D98, 0xBF40AE6B, 0xBEC7F58F, 0x3FD04B60, 0xBF9677F6, 0x3E23EAEF, 0xC008D21D, 0xBACD618D,
    ),
    (
        0x3FB57D34, 0x3F8BA289, 0x3F2FE1D3, 0x3F59FFA7, 0x3FF1A29C, 0x3EF6EE34, 0x3FFD2285, 0x3FC53851,
        0x3F4899B1, 0x3FA8D0EC, 0x3F52E8D0, 0x3F53287D, 0x3F87532B, 0x3E06EF99, 0x3F84D62C, 0x3FF917BD,
        0x3F247346, 0x3FC2C440, 0x3F70F8F7, 0x3EFEC9E2, 0x3FE8E589, 0x3E0723A0, 0x3F2D3A0C, 0x3FFFC35A,
        0x3F191BB3, 0x3FDB49A2, 0x3FA01A26, 0x3FD0D3F0, 0x3FA617E1, 0x3F4A0408, 0x3FC5D2E7, 0x3E19EDA8,
    ),
)
THIRD_Q4K_A = 0x3F4102C2
THIRD_IQ2XXS_X1 = 0x3EBB7989   # 0.36616161
THIRD_Q3K_LAST = (
    0xBF2DBF76, 0xBE0581D0, 0x3EAD1465, 0x3E974EC0, 0xBF552085, 0x3DE7FE57, 0x3C2899F5, 0x3D56430D,
    0xBC6157E0, 0xBDF0038E, 0x3EB04CD6, 0x3D96CAE0, 0x3E05F7D2, 0xBECD4496, 0x3E6B38D4, 0xBD900219,
)
THIRD_Q2K_K = (18, 18, 22, 9, 3, 8, 12, 6, 17, 14, 6, 10, 6, 2, 8, 10)


def third_round_cases(t: GGMLType) -> list:
    """(comment, flags, x, imatrix) of the third-round rows of type t (appended after every other group)."""
    if t.name == "Q3_K":
        g = f32_bits(*THIRD_Q3K).astype(np.float64)
        row = np.concatenate([g] + [g * 0.5 * (-1) ** j for j in range(1, 15)]).astype(np.float32)
        row = np.concatenate([row, f32_bits(*THIRD_Q3K_LAST)])
        return [("Q3_K: make_q3_quants' proposal x*sl2/slx on a level tie (x*(sl2/slx) rounds the other way); "
                 "the largest sub-block, so fp16(d) shows it; the last sub-block's scale code is on a tie that the "
                 "order of w*x*l decides", ["RoundingTie", "SearchProposal", "SumOrder"], row[None], None)]
    if t.name == "Q2_K":
        g = (1.0 - np.array(THIRD_Q2K_K) / 1024.0).astype(np.float32)
        return [("Q2_K: trials of make_qkx2_quants that put every value of a group on one level "
                 "(D == 0 exactly: no fit)", ["SearchTrials", "Degenerate"], np.tile(g, 16)[None], None)]
    if t.name == "IQ4_XS":
        rng = np.random.default_rng([LATE_SEED, 15, 3])
        x = (rng.standard_normal(N_PER_ROW) * 0.25).astype(np.float32)
        x[:32] = rng.standard_normal(32).astype(np.float32)
        x[32:64] = -x[:32]
        return [("IQ4_XS: sub-blocks 0 and 1 with scales d and -d (the largest): the first one is the "
                 "super-block scale", ["RoundingTie", "SignRows"], x[None], None)]
    if t.name == "Q4_1":
        x, im = (f32_bits(*v)[None] for v in THIRD_Q41)
        return [("Q4_1: make_qkx3_quants' trial scale (rmin + rdelta*is) + nmax puts a value on the other side "
                 "of a level mid-point than nmax + rmin + rdelta*is", ["RoundingTie", "SearchTrials"], x, im[0])]
    if t.name == "Q4_K":
        x, qw = np.zeros(N_PER_ROW, np.float32), np.ones(N_PER_ROW, np.float32)
        x[0], x[32] = 1.0, f32_bits(THIRD_Q4K_A)[0]
        qw[:33] = 0.0
        return [("Q4_K: make_qp_quants' trials is = 4 and -4 give errors equal to within an ulp; 1/iscale_is "
                 "decides (importance-0 sub-blocks set the scales)", ["RoundingTie", "SearchTrials", "ImatrixZeros"],
                 x[None], qw)]
    if t.name == "IQ2_XXS":
        x, qw = np.zeros(N_PER_ROW, np.float32), np.zeros(N_PER_ROW, np.float32)
        x[0], x[1] = 1.0, f32_bits(THIRD_IQ2XXS_X1)[0]
        qw[1] = 1.0
        return [("IQ2_XXS: make_qp_quants' trials is = -4 and 4 with errors equal bit for bit (x[1] the mid-point "
                 "of their scaled levels): the first one is kept", ["RoundingTie", "SearchTrials", "ImatrixZeros"],
                 x[None], qw)]
    return []


def searched_cases(t: GGMLType) -> list:
    """(comment, flags, x, imatrix) for the SEARCHED entries of type t."""
    out = []
    for tname, rec, seed, imrec, why in SEARCHED:
        if tname != t.name:
            continue
        im = None if imrec is None else recipe_imatrix(imrec, seed)
        out.append((f"searched: {rec} row #{seed}" + (f", {imrec} importance" if imrec else "") + f" ({why})",
                    ["Searched"], recipe_row(rec, seed), im))
    return out


# Rows for decisions that random rows almost never reach, found by scanning seeds and scale factors
# against a float64 or reciprocal variant of the same C expression (the oracle decides; every row
# was checked to give ggml's bytes from the reference and different bytes from the variant):
# - Q5_1: blocks default_rng([LATE_SEED, 51, seed]).standard_normal(32) where (x-min)*(1/d) and
#   (x-min)*(31/(max-min)) truncate differently after + 0.5f (LATE_SEED = 20261207);
# - Q2_0: d = amax and x with x*(1/d) == 0.5 but x/d == 0.49999997, and the reverse (roundf ties);
# - IQ2_S / IQ3_XXS / IQ3_S: a random block default_rng([LATE_SEED, 3, seed]).standard_normal(256) scaled
#   (in float64, rounded once) so that the stored fp16 of d*0.9875f / d*1.0125f / d*1.033f and of the
#   same product with a double constant differ.
LATE_SEED = 20261207
LATE_Q51_SEEDS = (50682, 87711)
LATE_Q20_BLOCKS = ((0x3FD30398, 0x3F530397), (0x3F947253, 0x3F147253))     # (amax, x) float32 bits
LATE_SCALED = {"IQ2_S": ((0, 1.0004009063243726), (5, 1.0005820885866967)),
               "IQ3_XXS": ((0, 1.0003646003008366), (2, 1.0003401411251431)),
               "IQ3_S": ((23, 1.000255995110185),)}


def late_cases(t: GGMLType) -> list:
    """(comment, flags, x) appended as the last quantize group of the type (earlier tcIds stay)."""
    if t.name == "Q5_1":
        x = np.stack([np.random.default_rng([LATE_SEED, 51, s]).standard_normal(32) for s in LATE_Q51_SEEDS])
        return [("Q5_1: blocks where (x-min)*(1/d) and (x-min)*(31/(max-min)) truncate differently",
                 ["Searched", "ReciprocalVsQuotient"], x.astype(np.float32))]
    if t.name == "Q2_0":
        rows = []
        for amax, v in LATE_Q20_BLOCKS:
            row = np.zeros(t.block_size, np.float32)
            row[0], row[1] = f32_bits(amax)[0], f32_bits(v)[0]
            row[2] = -row[1]
            rows.append(row)
        return [("Q2_0: amax d and x where roundf(x*(1/d)) and roundf(x/d) differ (x*(1/d) on 0.5, x/d one "
                 "step off, and the reverse)", ["RoundingTie", "ReciprocalVsQuotient"], np.stack(rows))]
    if t.name in LATE_SCALED:
        rows = [(np.random.default_rng([LATE_SEED, 3, s]).standard_normal(N_PER_ROW).astype(np.float32)
                 .astype(np.float64) * f)
                .astype(np.float32) for s, f in LATE_SCALED[t.name]]
        return [(f"{t.name}: rows scaled so that the stored fp16 d*constant depends on the constant being float32",
                 ["Searched", "ScaleRounding"], np.stack(rows))]
    return []


# Late dequantize group (appended after every other group of the type, so earlier tcIds stay):
# blocks whose two fp16 fields (d and the min) hold *different* non-finite values, so that the
# NaN that survives d*q + m / d*q - m is pinned down: +Inf d (Inf*0 makes the default NaN) with a
# payload NaN min, and two NaNs of different payload and sign, both ways round. SpecialScale sets
# both fields to the same value, where the operand order cannot show.
LATE_DEQ_PAIRS = ((0x7C00, 0x7E55), (0x7C01, 0xFE5A), (0xFE5A, 0x7C01))
LATE_DEQ_FIELDS = {"Q4_1": (0, 2), "Q5_1": (0, 2), "Q2_K": (80, 82), "Q4_K": (0, 2), "Q5_K": (0, 2)}


def late_dequant_blocks(t: GGMLType) -> list:
    """(comment, flags, raw, n) dequantize cases appended last (see LATE_DEQ_PAIRS)."""
    if t.name not in LATE_DEQ_FIELDS:
        return []
    # the 256-value K-quant blocks are large: only the pair of two NaNs there (the size budget)
    pairs = LATE_DEQ_PAIRS if t.block_size == 32 else LATE_DEQ_PAIRS[1:2]
    rng = np.random.default_rng([LATE_SEED, 17, zlib.crc32(t.name.encode())])
    b = rng.integers(0, 256, (len(pairs), t.type_size), dtype=np.uint8)
    od, om = LATE_DEQ_FIELDS[t.name]
    for i, (d, m) in enumerate(pairs):
        b[i, od:od + 2] = [d & 0xFF, d >> 8]
        b[i, om:om + 2] = [m & 0xFF, m >> 8]
    what = ", ".join(f"({d:#06x}, {m:#06x})" for d, m in pairs)
    return [(f"random block(s) with (d, min) fp16 fields {what}: which NaN d*q +- m keeps", ["SpecialScale"],
             b.tobytes(), len(pairs) * t.block_size)]


# Late dequantize group "GridCoverage": blocks that use every i-quant grid entry that no other
# dequantization-checked block of the file uses (the oracle's quantizers never pick some entries, and
# random bytes reach only a few), so a mistyped grid entry shows. The iq1s grid is shared: IQ1_M's
# blocks carry the entries that neither IQ1_S's file nor IQ1_M's earlier groups use.
GRID_SIZES = {"IQ2_XXS": 256, "IQ2_XS": 512, "IQ2_S": 1024, "IQ3_S": 512, "IQ1_M": 2048}
_GRID_GROUPS = {"IQ2_XXS": 32, "IQ2_XS": 32, "IQ2_S": 32, "IQ3_S": 64, "IQ1_S": 32, "IQ1_M": 32}


def grid_indices(name: str, blk: bytes) -> np.ndarray:
    """The grid index of each group of 8 (4 for IQ3_S) weights of one block, in weight order
    (ggml-common.h layouts, as dequantize_row_iq* reads them)."""
    a = np.frombuffer(blk, np.uint8).astype(np.int64)
    if name == "IQ2_XXS":
        return a[2:66].reshape(8, 8)[:, :4].reshape(-1)             # bytes 0..3 of each 8-byte pair
    if name == "IQ2_XS":
        return np.frombuffer(blk, "<u2", 32, 2).astype(np.int64) & 511
    if name == "IQ2_S":
        qh = a[66:74]
        return (a[2:34].reshape(8, 4) | ((qh[:, None] << (8 - 2 * np.arange(4))) & 0x300)).reshape(-1)
    if name == "IQ3_S":
        qh = a[66:74]
        return (a[2:66].reshape(8, 8) | (((qh[:, None] >> np.arange(8)) & 1) << 8)).reshape(-1)
    if name == "IQ1_S":
        qh = np.frombuffer(blk, "<u2", 8, 34).astype(np.int64)
        return (a[2:34].reshape(8, 4) | (((qh[:, None] >> (3 * np.arange(4))) & 7) << 8)).reshape(-1)
    if name == "IQ1_M":
        qs, qh = a[0:32].reshape(8, 4), a[32:48].reshape(8, 2)
        return np.stack([qs[:, 0] | ((qh[:, 0] << 8) & 0x700), qs[:, 1] | ((qh[:, 0] << 4) & 0x700),
                         qs[:, 2] | ((qh[:, 1] << 8) & 0x700), qs[:, 3] | ((qh[:, 1] << 4) & 0x700)], 1).reshape(-1)
    raise ValueError(name)


def _set_grid_index(name: str, b: np.ndarray, g: int, idx: int) -> None:
    """Store grid index ``idx`` for group ``g`` of block ``b`` (uint8 array), leaving signs and scales."""
    if name == "IQ2_XXS":
        b[2 + 8 * (g // 4) + g % 4] = idx
    elif name == "IQ2_XS":
        v = int(b[2 + 2 * g]) | int(b[3 + 2 * g]) << 8
        v = (v & ~511) | idx
        b[2 + 2 * g], b[3 + 2 * g] = v & 0xFF, v >> 8
    elif name == "IQ2_S":
        ib, l = divmod(g, 4)
        b[2 + g] = idx & 0xFF
        b[66 + ib] = (int(b[66 + ib]) & ~(3 << (2 * l)) & 0xFF) | ((idx >> 8) << (2 * l))
    elif name == "IQ3_S":
        ib, k = divmod(g, 8)
        b[2 + g] = idx & 0xFF
        b[66 + ib] = (int(b[66 + ib]) & ~(1 << k) & 0xFF) | ((idx >> 8) << k)
    elif name == "IQ1_M":
        ib, l = divmod(g, 4)
        b[4 * ib + l] = idx & 0xFF
        q = 32 + 2 * ib + l // 2
        sh = 4 * (l % 2)
        b[q] = (int(b[q]) & ~(7 << sh) & 0xFF) | ((idx >> 8) << sh)


def grid_coverage_blocks(t: GGMLType, used: set) -> list:
    """(comment, flags, raw, n): random blocks (finite normal scale) whose grid indices are the entries
    of the type's grid missing from ``used``, in order (the last block padded with entry 0)."""
    if t.name not in GRID_SIZES:
        return []
    missing = [i for i in range(GRID_SIZES[t.name]) if i not in used]
    if not missing:
        return []
    per = _GRID_GROUPS[t.name]
    nb = -(-len(missing) // per)
    rng = np.random.default_rng([LATE_SEED, 18, zlib.crc32(t.name.encode())])
    blocks = rng.integers(0, 256, (nb, t.type_size), dtype=np.uint8)
    d16 = np.array([0x3C00, 0x2E66, 0x1400, 0x5640], "<u2")
    for k in range(nb):
        d = int(d16[k % 4])
        if t.name == "IQ1_M":   # the fp16 scale is the top nibble of the four uint16 scales
            sc = blocks[k, 48:56].view("<u2").copy()
            for j in range(4):
                sc[j] = (sc[j] & 0x0FFF) | (((d >> (4 * j)) & 0xF) << 12)
            blocks[k, 48:56] = sc.view(np.uint8)
        else:
            blocks[k, 0:2] = [d & 0xFF, d >> 8]
        for g in range(per):
            j = k * per + g
            _set_grid_index(t.name, blocks[k], g, missing[j] if j < len(missing) else 0)
    raw = blocks.tobytes()
    got = set(np.concatenate([grid_indices(t.name, raw[i:i + t.type_size])
                              for i in range(0, len(raw), t.type_size)]).tolist())
    assert set(missing) <= got <= set(missing) | {0}
    return [(f"{t.name}: {nb} random blocks using the {len(missing)} grid entries no earlier checked block uses",
             ["GridCoverage", "RandomBytes"], raw, nb * t.block_size)]


def checked_grid_indices(name: str, groups: list) -> set:
    """Grid entries used by the blocks of ``groups`` whose dequantization a case checks."""
    ts = {"IQ2_XXS": 66, "IQ2_XS": 74, "IQ2_S": 82, "IQ3_S": 110, "IQ1_S": 50, "IQ1_M": 56}[name]
    used: set = set()
    for g in groups:
        for c in g["tests"]:
            if g["op"] == "dequantize":
                raw = bytes.fromhex(c["input_hex"])
            elif "dequantized_f32_hex" in c:
                raw = bytes.fromhex(c["expected_hex"])
            else:
                continue
            for i in range(0, len(raw), ts):
                used.update(grid_indices(name, raw[i:i + ts]).tolist())
    return used


def _f16(raw, off) -> np.float32:
    return np.frombuffer(raw, "<u2", 1, off).view(np.float16).astype(np.float32)[0]


def _k_subblocks(name: str, blk: bytes):
    """(first index, length, d_j, m_j, nmin, nmax) of each sub-block of a Q2_K..Q6_K block as
    ggml's quantizer re-derives its final levels: L = nearest_int((x + m_j)/d_j) clamped (ggml-common.h
    layouts; m_j = 0 for Q6_K)."""
    out = []
    if name == "Q2_K":
        d, dm = _f16(blk, 80), _f16(blk, 82)
        for j in range(16):
            sc = blk[j]
            out.append((16 * j, 16, d * np.float32(sc & 0xF), dm * np.float32(sc >> 4), 0, 3))
    elif name in ("Q4_K", "Q5_K"):
        d, dm = _f16(blk, 0), _f16(blk, 2)
        q = blk[4:16]
        for j in range(8):
            if j < 4:
                sc, m = q[j] & 63, q[j + 4] & 63
            else:
                sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)
                m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
            out.append((32 * j, 32, d * np.float32(sc), dm * np.float32(m), 0, 15 if name == "Q4_K" else 31))
    elif name == "Q3_K":
        d = _f16(blk, 108)
        sc = blk[96:108]
        for j in range(16):
            low = sc[j] & 0xF if j < 8 else sc[j - 8] >> 4
            high = (sc[8 + j % 4] >> (2 * (j // 4))) & 3
            out.append((16 * j, 16, d * np.float32((low | (high << 4)) - 32), np.float32(0), -4, 3))
    elif name == "Q6_K":
        d = _f16(blk, 208)
        sc = np.frombuffer(blk, np.int8, 16, 192)
        for j in range(16):
            out.append((16 * j, 16, d * np.float32(sc[j]), np.float32(0), -32, 31))
    return out


def _nearest(v) -> int:
    return int(np.rint(np.float32(v)))  # round half to even, as ggml's nearest_int for small values


def level_tie_row(t: GGMLType, oracle: Oracle, x: np.ndarray, imatrix=None, per_sub: int = 2) -> np.ndarray:
    """Move a few elements of each sub-block onto the float32 neighbourhood of a level mid-point of
    the block the oracle made, choosing values where (x + m)/d and (x + m)*(1/d) round to different
    levels (so both the tie rule and the division are pinned down). Done twice, re-quantizing in
    between, because moving elements can move the scales."""
    x = np.array(x, np.float32).reshape(-1)
    with np.errstate(all="ignore"):
        for _round in range(2):
            blk = oracle.quantize(t, x[None], imatrix)
            for first, n, dj, mj, lo, hi in _k_subblocks(t.name, blk):
                if not (np.isfinite(dj) and dj != 0 and np.isfinite(mj)):
                    continue
                v = (x[first:first + n] + mj) / dj
                frac = np.abs(v - np.floor(v) - np.float32(0.5))
                ok = (np.floor(v) >= lo) & (np.floor(v) + 1 <= hi)
                order = [i for i in np.argsort(np.where(ok, frac, np.inf), kind="stable") if ok[i]][:per_sub]
                inv = np.float32(1) / dj
                for i in order:
                    target = np.float32((np.floor(v[i]) + 0.5) * dj) - mj
                    c = np.float32(target)
                    for k in range(0, 40):
                        cand = np.float32(c + np.float32((k + 1) // 2 * (1 if k % 2 else -1)) * np.spacing(c))
                        a = np.float32(np.float32(cand + mj) / dj)
                        b = np.float32(np.float32(cand + mj) * inv)
                        if _nearest(a) != _nearest(b):
                            x[first + i] = cand
                            break
    return x[None]


def level_tie_cases(t: GGMLType, oracle: Oracle, rng) -> list:
    """(comment, flags, x, imatrix) rows for the K-quants whose final levels are re-derived from the
    stored scales: ordinary rows with elements moved next to level mid-points of the oracle's own
    block (see level_tie_row)."""
    if t.name not in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"):
        return []
    out = []
    for k in range(4):
        x = rng.standard_normal((1, N_PER_ROW)).astype(np.float32) * np.float32(10.0 ** rng.uniform(-2, 2))
        out.append((f"{t.name}: elements on the float32 neighbourhood of level mid-points (x+m)/d = k+0.5, "
                    f"where /d and *(1/d) differ", ["RoundingTie", "LevelTie"], level_tie_row(t, oracle, x), None))
        im = np.exp(rng.standard_normal(N_PER_ROW) * 2).astype(np.float32)
        out.append((f"{t.name}: as above, with a skewed importance matrix", ["RoundingTie", "LevelTie"],
                    level_tie_row(t, oracle, x, im), im))
    return out


def exhaustive_blocks(t: GGMLType) -> list:
    """Dequantize inputs that enumerate a scalar format: the fp16 patterns of the edge exponents
    (F16), every e8m0 exponent (MXFP4) and every ue4m3 scale byte (NVFP4)."""
    if t.name == "F16":   # (BF16's widening is a 16-bit shift; its special values are above)
        # every pattern with exponent 0 (zeros, subnormals), 1, 30 and 31 (Inf, NaNs), both signs:
        # the paths where a conversion can go wrong; the normal exponents between follow one rule
        h = np.arange(1024, dtype=np.uint32)
        pats = np.concatenate([(e << 10) | h | sgn for sgn in (0, 0x8000) for e in (0, 1, 30, 31)]).astype("<u2")
        return [("every fp16 pattern with exponent 0, 1, 30 or 31 (zeros, subnormals, Inf, all NaNs), both signs",
                 ["Exhaustive", "SpecialValue"], pats.tobytes(), pats.size)]
    if t.name == "MXFP4":
        b = np.zeros((256, 17), np.uint8)
        b[:, 0] = np.arange(256)
        b[:, 1:] = np.arange(16, dtype=np.uint8) * 0x11            # every code in both nibbles
        b[:, 1:] = (np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4))
        return [("every e8m0 exponent 0..255, each with all 16 codes", ["Exhaustive", "SpecialScale"], b.tobytes(), 256 * 32)]
    if t.name == "NVFP4":
        b = np.zeros((64, 36), np.uint8)
        b[:, 0:4] = np.arange(256, dtype=np.uint8).reshape(64, 4)
        b[:, 4:] = np.resize(np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4), 32)
        return [("every ue4m3 scale byte 0..255, with all 16 codes", ["Exhaustive", "SpecialScale"], b.tobytes(), 64 * 64)]
    return []


# ------------------------------------------------------------------------------------------------

def build(t: GGMLType, oracle: Oracle) -> dict:
    rng = rng_for(t)
    groups = []
    tc = 0
    qsrc = oracle.quantize_source(t)
    deq_src = oracle.dequantize_source(t)
    can_deq = True

    def qtest(comment, flags, x, imatrix, with_deq=True):
        nonlocal tc
        tc += 1
        expected = oracle.quantize(t, x, imatrix)
        d = {"tcId": tc, "comment": comment, "flags": flags, "rows": int(x.shape[0]),
             "input_f32_hex": f32_to_hex(x)}
        if imatrix is not None:
            d["imatrix_f32_hex"] = f32_to_hex(imatrix)
        d["expected_hex"] = expected.hex()
        if can_deq and with_deq:
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

    # ---- adversarial groups (appended, so the tcIds above stay as they were)
    skipped: list = []

    def probed(cases, imatrix_of):
        """Keep the cases on which ggml does not abort (each special input is tried in a child first)."""
        kept = []
        for c in cases:
            comment, flags, x = c[0], c[1], c[2]
            im = imatrix_of(c)
            if t.requires_imatrix and im is None:
                continue
            if any(f.startswith("Special") for f in flags) and aborts(lambda: oracle.quantize(t, x, im)):
                skipped.append(f"quantize{'+imatrix' if im is not None else ''}: {comment}: ggml aborts")
                continue
            kept.append((comment, flags, x, im))
        return kept

    def add_groups(cases, imatrix: bool):
        by_len: dict = {}
        for comment, flags, x, im in cases:
            by_len.setdefault(int(x.shape[1]), []).append((comment, flags, x, im))
        for n_per_row, cs in by_len.items():
            # the oracle's dequantization is kept only where the blocks hold special values (NaN/Inf
            # scales); for the other adversarial cases the bytes are what is being pinned down
            tests = [qtest(c, fl, x, im, with_deq=any(f.startswith("Special") for f in fl)) for c, fl, x, im in cs]
            groups.append({"op": "quantize", "imatrix": imatrix, "n_per_row": n_per_row, "source": qsrc,
                           "tests": tests})

    if qsrc:
        arng = adv_rng(t, 1)
        plain = t.name in PLAIN
        if plain:
            adv = f16_special_rows() + shape_cases(t, arng)
        else:
            adv = (special_rows(t, arng) + tie_rows(t, arng) + sign_rows(t, arng) + grid_rows(t, arng)
                   + shape_cases(t, arng))
        found = (searched_cases(t) + level_tie_cases(t, oracle, adv_rng(t, 2)) + qp_pass5_cases(t, adv_rng(t, 3))
                 + qp_trial_cases(t))
        if not t.requires_imatrix:
            plain_cases = [(c, fl, x, None) for c, fl, x in adv] + [c for c in found if c[3] is None]
            add_groups(probed(plain_cases, lambda c: c[3]), imatrix=False)
        if qsrc == "ggml_quantize_chunk" and t.family != "float":
            ones = np.ones(N_PER_ROW, np.float32)
            cases = []
            if t.requires_imatrix:  # the special, tie, sign and shape rows with a plain importance matrix
                cases += [(c, fl + ["ImatrixUniform"], x, np.ones(x.shape[1], np.float32)) for c, fl, x in adv]
            base = arng.standard_normal((1, N_PER_ROW)).astype(np.float32)
            cases += [(f"standard normal row; {c}", fl, base, im) for c, fl, im in special_imatrices(arng)]
            cases += tie_imatrix_cases(t, arng)
            cases += [c for c in found if c[3] is not None]
            del ones
            add_groups(probed(cases, lambda c: c[3]), imatrix=True)
        late = late_cases(t)
        if late and not t.requires_imatrix:
            add_groups([(c, fl, x, None) for c, fl, x in late], imatrix=False)
    def add_dequant_group(blocks):
        """one dequantize group of (comment, flags, raw block bytes, n), the oracle's values expected"""
        nonlocal tc
        dt = []
        for c, fl, raw, n in blocks:
            tc += 1
            dt.append({"tcId": tc, "comment": c, "flags": fl, "n": int(n), "input_hex": raw.hex(),
                       "expected_f32_hex": f32_to_hex(oracle.dequantize(t, raw, n))})
        groups.append({"op": "dequantize", "source": deq_src, "tests": dt})

    extra = exhaustive_blocks(t)
    if extra:
        add_dequant_group(extra)
    late_deq = late_dequant_blocks(t)
    if t.name in GRID_SIZES:
        used = checked_grid_indices(t.name, groups)
        if t.name == "IQ1_M":   # the iq1s grid is shared with IQ1_S: its file's entries count too
            used |= checked_grid_indices("IQ1_S", build(get_type("IQ1_S"), oracle)["testGroups"])
        late_deq = late_deq + grid_coverage_blocks(t, used)
    if late_deq:
        add_dequant_group(late_deq)
    third = third_round_cases(t)   # last, so every earlier tcId stays
    add_groups([c for c in third if c[3] is None], imatrix=False)
    add_groups([c for c in third if c[3] is not None], imatrix=True)

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
            "rng": "numpy PCG64, seeded with [seed, crc32(type name)] (adversarial cases: [seed, crc32(type name), 15, k])",
            **({"ggml_aborts": skipped} if skipped else {}),
        },
        "testGroups": groups,
    }


def family_dir(t: GGMLType) -> str:
    return {"float": "float", "int": "int"}.get(t.family, FAMILY_MODULES[t.family])


def write(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")   # compact, like mix.json: the budget


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
