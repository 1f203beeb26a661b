"""Golden vectors for model math, made only from llama.cpp's **portable build** (the ground truth for
model math; it runs in a child process, see ggspec.conformance.portable):

    vectors/model/rope.json        ggml_rope_ext: every scaling, both modes, float32/float16, n_dims
                                   4..256, bases, scales, YaRN factors and betas, positions to 2^31-1
    vectors/model/attention.json   one attention op of llama.cpp (both paths) over a KV cache
    vectors/model/forward/         tiny GGUF models and their logits (generate_forward.py)

    python -m ggspec.vectors.generate_model [--out DIR] [--only rope,attention]

Each group also carries the largest difference of llama.cpp's *native* SIMD build (the
``llama-cpp-python`` installed in this environment, compiled for this CPU) against the portable
result, measured when the file was made: a justified bound for SIMD implementations
(``native_max_ulp`` / ``native_max_abs``); scalar implementations must match exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from ggspec.conformance import ggml_graph, libggml
from ggspec.conformance.vectors import f32_to_hex

SEED = 1
SCHEMA = "ggspec-model-vectors/1"
G = "ggspec.conformance.ggml_graph"
F32 = np.float32


class Ops:
    """ggml graph ops on the portable oracle (truth) and, in-process, the native build (tolerance)."""

    def __init__(self):
        from ggspec.conformance import portable
        self.P = portable.shared()
        self.native = ggml_graph.load()

    def portable(self, name, *a, **k):
        return self.P.call(G, "op", name, *a, **k)


def ulps(a, b) -> int:
    """Largest distance in units in the last place between two float arrays (float32 or float16);
    -0 and +0 are the same point, NaN against NaN counts 0."""
    a, b = np.asarray(a), np.asarray(b)
    ut, top = (np.uint32, 1 << 31) if a.dtype == np.float32 else (np.uint16, 1 << 15)

    def ordered(x):
        u = x.view(ut).astype(np.int64)
        return np.where(u >= top, top - u, u)

    both_nan = np.isnan(a) & np.isnan(b)
    d = np.where(both_nan, 0, np.abs(ordered(a) - ordered(b)))
    return int(d.max()) if d.size else 0


# ------------------------------------------------------------------------------------------------
# RoPE
# ------------------------------------------------------------------------------------------------

POSITIONS = np.array([0, 1, 2, 3, 17, 511, 4095, 4096, 8191, 16384, 32767, 32768, 65535, 131071,
                      1_000_000, 2 ** 24 - 1, 2 ** 24 + 1, 2 ** 31 - 1, -1, -4096], np.int32)


def rope_configs(n_dims: int):
    """(key, comment, ggml_rope_ext kwargs) for one rotary width."""
    n_pairs = n_dims // 2
    ff_llama3 = np.where(np.arange(n_pairs) < n_pairs // 2, 1.0, 1.0 + np.arange(n_pairs) / 4.0).astype(F32)
    ff_long = (1.0 + np.linspace(0, 3, n_pairs)).astype(F32)

    def yarn_attn(factor):   # llama.cpp: get_mscale(factor) / (1 + 0.1 ln factor) cancels ggml's own magnitude
        return float(F32(1.0) / F32(1.0 + 0.1 * np.log(factor)))

    out = [
        ("none", "no scaling", dict(freq_base=10000.0)),
        ("base5e5", "freq_base 5e5 (Llama 3)", dict(freq_base=500000.0)),
        ("base1e6", "freq_base 1e6 (Qwen, Mistral, CodeLlama)", dict(freq_base=1000000.0)),
        ("linear4", "linear, freq_scale 0.25 (compress_pos_emb 4)", dict(freq_base=10000.0, freq_scale=0.25)),
        ("linear3", "linear, freq_scale 1/3", dict(freq_base=10000.0, freq_scale=float(F32(1 / 3)))),
        ("linear8", "linear, freq_scale 1/8 (compress_pos_emb 8)", dict(freq_base=10000.0, freq_scale=0.125)),
        ("linear32", "linear, freq_scale 1/32", dict(freq_base=10000.0, freq_scale=float(F32(1 / 32)))),
        ("ntk", "NTK-aware base change, alpha 4", dict(freq_base=float(F32(10000.0 * 4.0 ** (n_dims / max(n_dims - 2, 1)))))),
        ("llama3", "frequency factors (rope_freqs)", dict(freq_base=500000.0, freq_factors=ff_llama3)),
        ("longrope", "LongRoPE long factors, attn_factor sqrt(1 + ln 32 / ln 4096)",
         dict(freq_base=10000.0, freq_factors=ff_long, attn_factor=float(F32(np.sqrt(1 + np.log(32) / np.log(4096)))))),
    ]
    for factor, bf, bs, base, orig in ((2.0, 32.0, 1.0, 10000.0, 4096), (4.0, 32.0, 1.0, 10000.0, 4096),
                                       (2.5, 32.0, 1.0, 1000000.0, 32768), (8.0, 16.0, 2.0, 10000.0, 2048),
                                       (16.0, 64.0, 0.5, 500000.0, 8192), (40.0, 32.0, 1.0, 10000.0, 4096),
                                       (7.3, 24.0, 1.5, 10000.0, 4096)):
        out.append((f"yarn{factor:g}-bf{bf:g}-bs{bs:g}",
                    f"YaRN factor {factor:g}, beta_fast {bf:g}, beta_slow {bs:g}, base {base:g}, n_ctx_orig {orig}",
                    dict(freq_base=base, freq_scale=float(F32(1.0 / factor)), ext_factor=1.0,
                         attn_factor=yarn_attn(factor), beta_fast=bf, beta_slow=bs, n_ctx_orig=orig)))
    out.append(("yarn4-ext0.5", "YaRN factor 4 with ext_factor 0.5", dict(
        freq_base=10000.0, freq_scale=0.25, ext_factor=0.5, attn_factor=yarn_attn(4.0), n_ctx_orig=4096)))
    return out


# Parameters where float32 and float64 evaluation of a YaRN quantity part ways (found by scanning
# the parameter with ggspec.reference.rope against a float64 evaluation; the oracle decides):
# - beta_fast 274.90338134765625: the low correction dim is 2.9999998 in float32 (floor 2) and
#   2.99999998 in float64 (3.0 once rounded: floor 3);
# - beta_slow 27.490333557128906: the high correction dim is 11.0 in float32 (ceil 11) and
#   11.00000056 in float64 (11.000001: ceil 12);
# - freq_scale 0.08121858537197113 (factor 12.31): the magnitude 1 + 0.1f*logf(1/s) is one float32
#   step away from 1 + 0.1*log(1/s) evaluated in double.
ROPE_ADVERSARIAL = [
    ("normal", 0, "yarn4-low-corr-on-3", "YaRN factor 4, beta_fast 274.90338 (low correction dim on 3: "
     "float32 2.9999998, float64 3.0)", dict(freq_base=10000.0, freq_scale=0.25, ext_factor=1.0,
                                             attn_factor=1.0, beta_fast=274.90338134765625, beta_slow=1.0,
                                             n_ctx_orig=4096)),
    ("normal", 0, "yarn4-high-corr-on-11", "YaRN factor 4, beta_slow 27.490334 (high correction dim on 11: "
     "float32 11.0, float64 11.000001)", dict(freq_base=10000.0, freq_scale=0.25, ext_factor=1.0,
                                              attn_factor=1.0, beta_fast=32.0, beta_slow=27.490333557128906,
                                              n_ctx_orig=4096)),
    ("neox", 2, "yarn12.31-magnitude", "YaRN freq_scale 0.081218585 (the magnitude 1 + 0.1 ln(1/s) differs "
     "in float32 and float64)", dict(freq_base=10000.0, freq_scale=0.08121858537197113, ext_factor=1.0,
                                     attn_factor=1.0, beta_fast=32.0, beta_slow=1.0, n_ctx_orig=4096)),
    # issue 15, second round (each kills a catalogued mutant the sweep let through, docs/vectors.md):
    # - frequency factors with a scale that is not a power of two: freq_scale*(theta/ff) and
    #   (freq_scale*theta)/ff round differently (the sweep had ff only with freq_scale 1);
    # - the same under YaRN (ff on theta_extrap too);
    # - correction dims outside [0, n_dims-1]: beta_fast 1e6 with n_ctx_orig 1e6 puts the low one at
    #   floor(-8.5) (clamped to 0) and beta_slow 0.1 with base 1000 the high one at ceil(66.2) (clamped to 63);
    #   n_ctx_orig 128 with beta_fast 32 a realistic negative low one (small training context);
    # - YaRN with n_ctx_orig 0: logf(0) = -Inf, so high = MIN(n_dims-1, -Inf) = -Inf and
    #   MAX(0.001f, high - low) = 0.001f (the ramp is 1 on pair 0 and 0 elsewhere).
    ("normal", 0, "llama3-linear3", "frequency factors (rope_freqs) with linear freq_scale 1/3",
     dict(freq_base=500000.0, freq_scale=float(F32(1 / 3)), ext_factor=0.0, attn_factor=1.0, beta_fast=32.0,
          beta_slow=1.0, n_ctx_orig=0, freq_factors="llama3")),
    ("neox", 2, "yarn2.5-ff", "YaRN factor 2.5 with frequency factors (LongRoPE-style)",
     dict(freq_base=10000.0, freq_scale=float(F32(1 / 2.5)), ext_factor=1.0, attn_factor=1.0, beta_fast=32.0,
          beta_slow=1.0, n_ctx_orig=4096, freq_factors="longrope")),
    ("normal", 0, "yarn4-corr-outside", "YaRN factor 4, base 1000, beta_fast 1e6, beta_slow 0.1, n_ctx_orig 1e6 "
     "(correction dims -9 and 67, clamped to 0 and 63)",
     dict(freq_base=1000.0, freq_scale=0.25, ext_factor=1.0, attn_factor=1.0, beta_fast=1000000.0,
          beta_slow=0.1, n_ctx_orig=1000000)),
    ("neox", 2, "yarn4-ctx128", "YaRN factor 4, n_ctx_orig 128 (low correction dim -1, clamped to 0)",
     dict(freq_base=10000.0, freq_scale=0.25, ext_factor=1.0, attn_factor=1.0, beta_fast=32.0, beta_slow=1.0,
          n_ctx_orig=128)),
    ("normal", 0, "yarn4-ctx0", "YaRN factor 4 with n_ctx_orig 0 (high correction dim -Inf)",
     dict(freq_base=10000.0, freq_scale=0.25, ext_factor=1.0, attn_factor=1.0, beta_fast=32.0, beta_slow=1.0,
          n_ctx_orig=0)),
    # freq_scale > 1 under YaRN: ggml's magnitude 1 + 0.1f*logf(1/s) is below 1 (HF's get_mscale gives 1)
    ("neox", 2, "yarn0.5-scale2", "YaRN with freq_scale 2 (factor 0.5: the magnitude 1 + 0.1 ln 0.5 < 1)",
     dict(freq_base=10000.0, freq_scale=2.0, ext_factor=1.0, attn_factor=1.0, beta_fast=32.0, beta_slow=1.0,
          n_ctx_orig=4096)),
]
ROPE_ADVERSARIAL_POSITIONS = np.array([0, 1, 17, 511, 4096, 32767, 1_000_000, 2 ** 31 - 1], np.int32)


WIDTHS = [(64, 64), (128, 128), (96, 64), (4, 4), (20, 20), (24, 24), (36, 36), (40, 40), (44, 44), (60, 60),
          (80, 80), (256, 256), (128, 32)]   # (head_dim, n_dims)


def build_rope(ops: Ops) -> dict:
    groups = []
    tc = 0
    for mode_name, mode in (("normal", 0), ("neox", 2)):
        for head_dim, n_dims in WIDTHS:
            configs = rope_configs(n_dims)
            if (head_dim, n_dims) != (64, 64):                     # every config on the common width,
                configs = [c for c in configs if c[0] in ("none", "linear3", "yarn2.5-bf32-bs1", "llama3",
                                                          "yarn7.3-bf24-bs1.5")]   # a spread on the rest
            for key, comment, kw in configs:
                rng = np.random.default_rng([SEED, zlib.crc32(f"{mode_name}{head_dim}{n_dims}{key}".encode())])
                params = {"mode": mode_name, "mode_id": mode, "n_dims": n_dims, "freq_base": kw.get("freq_base"),
                          "freq_scale": kw.get("freq_scale", 1.0), "ext_factor": kw.get("ext_factor", 0.0),
                          "attn_factor": kw.get("attn_factor", 1.0), "beta_fast": kw.get("beta_fast", 32.0),
                          "beta_slow": kw.get("beta_slow", 1.0), "n_ctx_orig": kw.get("n_ctx_orig", 0)}
                ff = kw.get("freq_factors")
                if ff is not None:
                    params["freq_factors_f32_hex"] = f32_to_hex(ff)
                tests = []
                worst = 0
                for dtype in (np.float32, np.float16):
                    tc += 1
                    pos = POSITIONS
                    x = rng.standard_normal((pos.size, 1, head_dim)).astype(dtype)
                    kwargs = dict(n_dims=n_dims, mode=mode, freq_factors=ff, n_ctx_orig=params["n_ctx_orig"],
                                  freq_base=params["freq_base"], freq_scale=params["freq_scale"],
                                  ext_factor=params["ext_factor"], attn_factor=params["attn_factor"],
                                  beta_fast=params["beta_fast"], beta_slow=params["beta_slow"])
                    y = ops.portable("rope_ext", x, pos, **kwargs)
                    worst = max(worst, ulps(y, ops.native.rope_ext(x, pos, **kwargs)))
                    enc = (lambda a: a.astype("<f2").tobytes().hex()) if dtype == np.float16 else f32_to_hex
                    tests.append({"tcId": tc, "comment": f"{comment}; {np.dtype(dtype).name} input",
                                  "flags": ["EdgePositions"], "dtype": np.dtype(dtype).name, "shape": list(x.shape),
                                  "pos": pos.tolist(), "input_hex": enc(x), "expected_hex": enc(y)})
                groups.append({"op": "rope_ext", "name": f"{mode_name}-{key}-hd{head_dim}-nd{n_dims}",
                               "params": params, "tolerance": "exact", "native_max_ulp": worst, "tests": tests})
    for mode_name, mode, key, comment, kw in ROPE_ADVERSARIAL:    # after the sweep: earlier tcIds stay
        tc += 1
        rng = np.random.default_rng([SEED, zlib.crc32(f"adversarial{key}".encode())])
        params = {"mode": mode_name, "mode_id": mode, "n_dims": 64, "freq_base": kw["freq_base"],
                  "freq_scale": kw["freq_scale"], "ext_factor": kw["ext_factor"], "attn_factor": kw["attn_factor"],
                  "beta_fast": kw["beta_fast"], "beta_slow": kw["beta_slow"], "n_ctx_orig": kw["n_ctx_orig"]}
        ff = None
        if kw.get("freq_factors"):     # named like the sweep's factor sets (rope_configs)
            ff = {key: c.get("freq_factors") for key, _, c in rope_configs(64)}[kw["freq_factors"]]
            params["freq_factors_f32_hex"] = f32_to_hex(ff)
        pos = ROPE_ADVERSARIAL_POSITIONS
        x = rng.standard_normal((pos.size, 1, 64)).astype(np.float32)
        kwargs = {k: v for k, v in params.items() if k != "freq_factors_f32_hex"}
        kwargs["freq_factors"] = ff
        del kwargs["mode_id"]
        kwargs["mode"] = mode
        y = ops.portable("rope_ext", x, pos, **kwargs)
        worst = ulps(y, ops.native.rope_ext(x, pos, **kwargs))
        groups.append({"op": "rope_ext", "name": f"{mode_name}-{key}-hd64-nd64", "params": params,
                       "tolerance": "exact", "native_max_ulp": worst,
                       "tests": [{"tcId": tc, "comment": f"{comment}; float32 input", "flags": ["Adversarial"],
                                  "dtype": "float32", "shape": list(x.shape), "pos": pos.tolist(),
                                  "input_hex": f32_to_hex(x), "expected_hex": f32_to_hex(y)}]})
    return {"schema": SCHEMA, "op": "rope_ext",
            "provenance": _provenance("ggml_rope_ext (libggml-cpu of the portable build, 1 thread)"),
            "encoding": "float32 or float16 little-endian bit patterns in hex; x is (n_tokens, n_head, head_dim), "
                        "row-major; pos int32",
            "testGroups": groups}


# ------------------------------------------------------------------------------------------------
# attention
# ------------------------------------------------------------------------------------------------

ATTENTION_CASES = [  # (name, n_head, n_head_kv, head_dim, n_past, n_new, flags)
    ("mha-prompt", 4, 4, 32, 0, 9, ["MHA", "Prompt"]),
    ("gqa-second-ubatch", 8, 2, 32, 5, 3, ["GQA", "SecondUbatch"]),
    ("mqa-first-token", 6, 1, 32, 0, 1, ["MQA"]),
    ("gqa-decode", 4, 2, 128, 40, 1, ["GQA", "Decode", "HeadDim128"]),
    ("gqa-prompt-65", 2, 1, 32, 0, 65, ["GQA", "FlashTiled"]),
    ("mqa-decode-512", 2, 1, 32, 257, 1, ["MQA", "Decode", "FlashSplitKV"]),
    ("mha-two-windows", 1, 1, 32, 257, 3, ["MHA", "KVWindow512"]),
    # adversarial magnitudes: scores of hundreds (exp underflows; ggml_v_expf's |n| > 126 and > 192
    # branches, subnormal and zero probabilities) and scores near zero (a flat softmax)
    ("gqa-saturated", 4, 2, 32, 20, 4, ["GQA", "ExpUnderflow", "LargeScores"]),
    ("mqa-flat", 2, 1, 32, 30, 2, ["MQA", "TinyScores"]),
]
Q_GAIN = {"gqa-saturated": 40.0, "mqa-flat": 1e-20,
          "mqa-decode-512-full": 0.05}   # close chunk maxima: the split-KV merge's exp factors near 1 matter
THREAD_CASES = {"mqa-decode-512"}   # the only kernel whose bits depend on the thread count

# discriminating cases (each found by a mutant of the reference that every other case let through;
# docs/vectors.md) and special values. (name, n_head, n_head_kv, head_dim, n_past, n_new, flags)
EXTRA_CASES = [
    # the tiled kernel from exactly 64 tokens, with a GQA head mapping (h // 2 != h % 2), after 64
    # cached tokens: every row spans two tiles (the second tile's softmax sum is added to S in double)
    ("gqa-ubatch-64", 4, 2, 8, 64, 64, ["GQA", "FlashTiled", "TileBoundary", "SecondUbatch"]),
    # split-KV with 3 threads over 512 used cells: 3 live chunks of 171/171/170 (merge order, ceil)
    ("mqa-decode-512-full", 2, 1, 8, 511, 1, ["MQA", "Decode", "FlashSplitKV", "ThreeThreads"]),
    # special values (see _specials)
    ("special-q", 2, 1, 32, 2, 2, ["SpecialValues", "NaN", "Inf", "SignedZero", "Subnormal"]),
    ("special-kv-f16-range", 2, 1, 32, 2, 2, ["SpecialValues", "F16Overflow", "Subnormal", "SignedZero"]),
    ("special-masked-inf-v", 2, 1, 32, 2, 2, ["SpecialValues", "Inf", "NaN", "MaskedCell"]),
    ("special-nan-kv", 2, 1, 32, 2, 2, ["SpecialValues", "NaN", "NaNPayload"]),
    ("special-k-inf", 2, 1, 32, 2, 2, ["SpecialValues", "Inf", "F16Overflow"]),
    ("fully-masked-row", 2, 1, 32, 2, 2, ["FullyMaskedRow"]),
    # scale 4 (> 1) and a finite score of 1e38 in a masked cell: ggml computes score*scale (Inf) + mask
    # (-Inf) = NaN; adding the mask before scaling would give -Inf (the only inputs that tell apart)
    ("scale-4-overflow", 2, 1, 32, 2, 2, ["ScaleAboveOne", "Overflow", "MaskedCell"]),
]
SCALE = {"scale-4-overflow": 4.0}
FULLY_MASKED = {"fully-masked-row": [0]}   # query rows whose every cell is -inf


def _extra_in_group(name, flash, type_k, type_v, n_threads) -> bool:
    # head_dim 8 keeps these small; the oracle stores an F16/Q8_0 cache in rows of 32, so F32 only
    if name == "gqa-ubatch-64":
        return flash and (type_k, type_v) == ("F32", "F32") and n_threads == 1   # the tiled kernel
    if name == "mqa-decode-512-full":
        return flash and (type_k, type_v) == ("F32", "F32") and n_threads == 3   # split-KV
    if name == "scale-4-overflow":
        return not flash and type_k == "F32"                # needs a score of 1e38: an F32 K cache
    return n_threads == 1


def _bits(u: int) -> np.float32:
    return np.array([u], np.uint32).view(F32)[0]


def _specials(name, q, k, v):
    """Write the special values of case ``name`` into q, k, v (float32 arrays, modified in place).
    Cells 0..3 are used; query 0 sits at position 2 (cell 3 is its future), query 1 at 3."""
    if name == "special-q":
        q[0, 0, 3] = _bits(0x7FC01234)                 # quiet NaN with a payload
        q[0, 1, :] = F32(-0.0)                         # all -0: every score 0, a flat softmax
        q[0, 1, 5] = F32(0.0)
        q[1, 0, 1] = F32(np.inf)
        q[1, 0, 2] = F32(-np.inf)                      # + and - Inf in one row: NaN scores
        q[1, 1, :4] = np.array([1e-40, -1e-45, 1.2e-38, -3e-39], F32)   # float subnormals (fp16: 0)
        q[1, 1, 4] = F32(70000.0)                      # overflows when q is rounded to fp16
    elif name == "special-kv-f16-range":
        k[0, 0, 0] = F32(65519.0)                      # rounds to 65504 in fp16
        k[1, 0, 1] = F32(-65504.0)
        k[2, 0, 2] = F32(3e-6)                         # an fp16 subnormal
        k[2, 0, 3] = F32(1e-9)                         # below fp16's range: 0
        v[1, 0, 0] = F32(100000.0)                     # overflows fp16: Inf
        v[1, 0, 1] = F32(-65520.0)                     # the first value that rounds to -Inf in fp16
        v[1, 0, 2] = F32(65519.996)                    # still 65504
        v[2, 0, 3] = F32(6e-8)                         # the smallest fp16 subnormal, about
        v[2, 0, 4] = F32(-0.0)
        v[0, 0, 5] = F32(1e-40)                        # float subnormal
        v[3, 0, 6] = F32(7e4)                          # overflow in the future cell of query 0
    elif name == "special-masked-inf-v":
        v[3, 0, 0] = F32(np.inf)                       # cell 3 is masked for query 0, visible to query 1
        v[3, 0, 1] = _bits(0xFFC00000)                 # -NaN (x86's default NaN)
        v[3, 0, 2] = F32(-np.inf)
        k[3, 0, 7] = F32(1e4)                          # a large score for query 1 only
    elif name == "special-nan-kv":
        v[1, 0, 0] = _bits(0x7FC12345)                 # quiet NaN with a payload (fp16: 0x7E00)
        v[0, 0, 9] = _bits(0x7F812345)                 # signalling NaN with a payload
        v[2, 0, 10] = _bits(0xFFA00001)                # negative signalling NaN
        k[3, 0, 4] = _bits(0x7FC0BEEF)                 # NaN key in query 0's future cell
    elif name == "special-k-inf":
        k[1, 0, 2] = F32(np.inf)                       # a key with +Inf, seen by both queries
        k[3, 0, 3] = F32(-7e4)                         # -Inf in an F16 cache; query 0's future cell
    elif name == "scale-4-overflow":
        q[:, :, 0] = F32(1e19)
        k[3, 0, :] = F32(0.0)
        k[3, 0, 0] = F32(1e19)                         # score 1e38 in cell 3 (query 0's future)


def _attention_inputs(rng, n_head, n_head_kv, d, n_past, n_new):
    n_used = n_past + n_new
    n_kv = max(256, -(-n_used // 256) * 256)
    k = np.zeros((n_kv, n_head_kv, d), F32)
    v = np.zeros((n_kv, n_head_kv, d), F32)
    k[:n_used] = (rng.standard_normal((n_used, n_head_kv, d)) * 2).astype(F32)
    v[:n_used] = rng.standard_normal((n_used, n_head_kv, d)).astype(F32)
    q = (rng.standard_normal((n_new, n_head, d)) * 2).astype(F32)
    qpos = np.arange(n_past, n_used)
    cells = np.arange(n_kv)
    mask = np.where((cells[None, :] < n_used) & (cells[None, :] <= qpos[:, None]), F32(0), F32(-np.inf)).astype(F32)
    return q, k, v, mask, n_kv


def build_attention(ops: Ops) -> dict:
    from ggspec.reference.attention import kq_scale

    groups = []
    tc = 0
    for flash in (False, True):
        for type_k, type_v in (("F16", "F16"), ("F32", "F32"), ("F16", "F32"), ("Q8_0", "F16"), ("Q8_0", "Q8_0")):
            if type_v == "Q8_0" and not flash:
                continue          # llama.cpp refuses a quantized V cache without flash attention
            for n_threads in ((1, 2, 3) if flash else (1,)):
                tests = []
                worst = 0.0
                for name, nh, nkv, d, n_past, n_new, flags in ATTENTION_CASES + EXTRA_CASES:
                    if any(name == e[0] for e in EXTRA_CASES):
                        if not _extra_in_group(name, flash, type_k, type_v, n_threads):
                            continue
                    elif n_threads != 1 and (n_threads != 2 or name not in THREAD_CASES):
                        continue
                    rng = np.random.default_rng([SEED, zlib.crc32(f"attn{name}{type_k}{type_v}".encode())])
                    q, k, v, mask, n_kv = _attention_inputs(rng, nh, nkv, d, n_past, n_new)
                    q = (q * F32(Q_GAIN.get(name, 1.0))).astype(F32)
                    _specials(name, q, k, v)
                    for row in FULLY_MASKED.get(name, []):
                        mask[row, :] = F32(-np.inf)
                    scale = SCALE.get(name, float(kq_scale(d)))
                    kw = dict(type_k=type_k, type_v=type_v, flash_attn=flash, n_threads=n_threads)
                    y = ops.portable("attention", q, k, v, mask, scale, **kw)
                    yn = ops.native.attention(q, k, v, mask, scale, **kw)
                    fin = np.isfinite(y) & np.isfinite(yn)     # special values: NaN/Inf outputs carry no distance
                    if fin.any():
                        worst = max(worst, float(np.max(np.abs(y[fin].astype(np.float64) - yn[fin]))))
                    tc += 1
                    n_used = n_past + n_new
                    test = {
                        "tcId": tc, "comment": f"{name}: {n_head_desc(nh, nkv)}, {n_past} cached + {n_new} new tokens, "
                                               f"n_kv {n_kv}", "flags": flags,
                        "n_head": nh, "n_head_kv": nkv, "head_dim": d, "n_past": n_past, "n_new": n_new,
                        "n_kv": n_kv, "scale_f32_hex": f32_to_hex(np.array([scale], F32)),
                        "q_f32_hex": f32_to_hex(q), "k_f32_hex": f32_to_hex(k[:n_used]),
                        "v_f32_hex": f32_to_hex(v[:n_used]), "expected_f32_hex": f32_to_hex(y)}
                    if name in FULLY_MASKED:
                        test["fully_masked"] = FULLY_MASKED[name]
                    tests.append(test)
                if not tests:
                    continue
                groups.append({"op": "flash_attn_ext" if flash else "mul_mat_softmax",
                               "name": f"{'flash' if flash else 'mul_mat'}-k{type_k}-v{type_v}-t{n_threads}",
                               "params": {"flash_attn": flash, "type_k": type_k, "type_v": type_v,
                                          "n_threads": n_threads},
                               "tolerance": "exact", "native_max_abs": worst, "tests": tests})
    groups.append(_fourth_round_group(ops, tc))
    return {"schema": SCHEMA, "op": "attention",
            "provenance": _provenance("llama.cpp's build_attn_mha as one ggml graph (libggml-cpu of the portable build)"),
            "encoding": ("float32 little-endian hex. q (n_new, n_head, head_dim); k, v (n_past + n_new, n_head_kv, "
                         "head_dim): the float32 values stored into the KV cache (converted by the cache to type_k / "
                         "type_v: F16 round-to-nearest-even, Q8_0 quantize_row_q8_0; no Hadamard rotation here -- "
                         "that is llama.cpp's graph, covered by the forward vectors); cells n_past+n_new .. n_kv-1 are empty (zero); query i sits at position n_past+i and "
                         "sees cells 0..n_past+i (causal mask 0 / -inf), except the query rows listed in a test's "
                         "optional fully_masked, whose every cell is -inf; output (n_new, n_head*head_dim)."),
            "testGroups": groups}


def _fourth_round_group(ops: Ops, tc: int) -> dict:
    """The last group (after every earlier tcId): the tiled flash kernel on an F32 cache with a NaN key.

    * ``special-nan-k-tiled`` (65 tokens, NaN key at cell 64): rows 0..63 see none of the second tile
      and row 64 only that cell. ggml's ggml_vec_max_f32 (sequential MAX from -INFINITY) forgets the
      NaN at the next cell, the tile max is -INFINITY and ggml skips the tile: no row is NaN. A tile
      max that keeps the NaN (np.max) poisons all 65 rows.
    * ``special-nan-k-tiled-last`` (64 tokens, a payload NaN key at cell 63, the tile's last): the tile
      max is NaN for every row; ggml's ``fmaxf(-INFINITY, NaN)`` keeps -INFINITY, the row's
      ``expf(s + INFINITY)`` terms give x86's default NaN 0xFFC00000; a NaN-propagating max makes the
      running max the key's NaN and every output that NaN's payload instead (NaN bits only)."""
    cases = [("special-nan-k-tiled", 4, 2, 8, 0, 65, 64, 0x7FC01234),
             ("special-nan-k-tiled-last", 2, 1, 8, 0, 64, 63, 0x7FC01234)]
    tests, worst = [], 0.0
    for name, nh, nkv, d, n_past, n_new, cell, nan in cases:
        flags = ["FlashTiled", "SpecialValues", "NaN", "NaNPayload", "MaskedCell"]
        rng = np.random.default_rng([SEED, zlib.crc32(f"attn{name}F32F32".encode())])
        q, k, v, mask, n_kv = _attention_inputs(rng, nh, nkv, d, n_past, n_new)
        k[cell, 0, 3] = _bits(nan)
        scale = float(kq_scale_f32(d))
        kw = dict(type_k="F32", type_v="F32", flash_attn=True, n_threads=1)
        y = ops.portable("attention", q, k, v, mask, scale, **kw)
        yn = ops.native.attention(q, k, v, mask, scale, **kw)
        fin = np.isfinite(y) & np.isfinite(yn)
        if fin.any():
            worst = max(worst, float(np.max(np.abs(y[fin].astype(np.float64) - yn[fin]))))
        tc += 1
        tests.append({"tcId": tc, "comment": f"{name}: {n_head_desc(nh, nkv)}, {n_past} cached + {n_new} new tokens, "
                                             f"n_kv {n_kv}, a NaN key at cell {cell}", "flags": flags,
                      "n_head": nh, "n_head_kv": nkv, "head_dim": d, "n_past": n_past, "n_new": n_new,
                      "n_kv": n_kv, "scale_f32_hex": f32_to_hex(np.array([scale], F32)),
                      "q_f32_hex": f32_to_hex(q), "k_f32_hex": f32_to_hex(k[:n_past + n_new]),
                      "v_f32_hex": f32_to_hex(v[:n_past + n_new]), "expected_f32_hex": f32_to_hex(y)})
    return {"op": "flash_attn_ext", "name": "flash-kF32-vF32-t1-tiled-nan",
            "params": {"flash_attn": True, "type_k": "F32", "type_v": "F32", "n_threads": 1},
            "tolerance": "exact", "native_max_abs": worst, "tests": tests}


def kq_scale_f32(d):
    from ggspec.reference.attention import kq_scale
    return kq_scale(d)


def n_head_desc(nh, nkv) -> str:
    kind = "MHA" if nh == nkv else ("MQA" if nkv == 1 else "GQA")
    return f"{kind} {nh}/{nkv} heads"


def _provenance(function: str) -> dict:
    return {"oracle": f"llama-cpp-python {libggml.ORACLE_VERSION}, portable build (no SIMD, no llamafile, no repack, "
                      "-ffp-contract=off)", "ggml": "0.25.3", "function": function,
            "native_tolerance": "measured against llama-cpp-python's native build on the generating machine",
            "generator": "vectors/generate_model.py", "seed": SEED}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--only", default="rope,attention")
    args = ap.parse_args(argv)
    lib = libggml.load()
    if lib.version != libggml.ORACLE_VERSION:
        print(f"refusing: oracle is {lib.version}, vectors pin {libggml.ORACLE_VERSION}", file=sys.stderr)
        return 2
    ops = Ops()
    only = set(args.only.split(","))
    out = Path(args.out) / "model"
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("rope", build_rope), ("attention", build_attention)):
        if name in only:
            doc = fn(ops)
            path = out / f"{name}.json"
            path.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{name}: {sum(len(g['tests']) for g in doc['testGroups'])} tests -> {path}", file=sys.stderr)
    ops.P.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
