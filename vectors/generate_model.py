"""Golden vectors for model math, from the oracle's ggml ops: ``vectors/model/rope.json``.

    python -m ggspec.vectors.generate_model [--out DIR]

Each test group is one ``ggml_rope_ext`` parameter set (mode, scaling); each test an input
``x`` (n_tokens, n_head, head_dim; float32 or float16) and positions up to 32768, with the output
ggml computed (libggml-cpu of llama-cpp-python 0.3.36, one thread). Tolerance: exact (equal bits)
for an implementation of ggml's arithmetic on x86-64 with the same libm and FMA contraction as
the oracle build; see docs/rope.md for what changes on other platforms.
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


def rope_configs(head_dim: int):
    n_pairs = head_dim // 2
    ff_llama3 = np.where(np.arange(n_pairs) < n_pairs // 2, 1.0, 1.0 + np.arange(n_pairs) / 4.0).astype(np.float32)
    ff_long = (1.0 + np.linspace(0, 3, n_pairs)).astype(np.float32)
    yarn_attn = float(np.float32(1.0) / np.float32(1.0 + 0.1 * np.log(4.0)))  # llama.cpp cancels ggml's magnitude
    return [
        ("none", "no scaling", dict(freq_base=10000.0)),
        ("linear", "linear scaling, freq_scale 0.25 (compress_pos_emb 4, --rope-freq-scale 0.25)",
         dict(freq_base=10000.0, freq_scale=0.25)),
        ("ntk", "NTK-aware base change, alpha 4: freq_base = 10000 * 4^(d/(d-2))",
         dict(freq_base=float(np.float32(10000.0 * 4.0 ** (head_dim / (head_dim - 2)))))),
        ("yarn", "YaRN factor 4, n_ctx_orig 4096, ext_factor 1, beta_fast 32, beta_slow 1",
         dict(freq_base=10000.0, freq_scale=0.25, ext_factor=1.0, attn_factor=yarn_attn, n_ctx_orig=4096)),
        ("llama3", "frequency factors (a rope_freqs tensor, as Llama 3.x files carry)",
         dict(freq_base=500000.0, freq_factors=ff_llama3)),
        ("longrope", "LongRoPE long factors with attn_factor sqrt(1 + ln 32 / ln 4096)",
         dict(freq_base=10000.0, freq_factors=ff_long, attn_factor=float(np.float32(np.sqrt(1 + np.log(32) / np.log(4096)))))),
    ]


def build_rope(g) -> dict:
    groups = []
    tc = 0
    for mode_name, mode in (("normal", 0), ("neox", 2)):
        for head_dim, n_dims in ((64, 64), (128, 128), (96, 64)):
            for key, comment, kw in rope_configs(n_dims):
                rng = np.random.default_rng([SEED, zlib.crc32(f"{mode_name}{head_dim}{n_dims}{key}".encode())])
                params = {"mode": mode_name, "mode_id": mode, "n_dims": n_dims, "freq_base": kw.get("freq_base"),
                          "freq_scale": kw.get("freq_scale", 1.0), "ext_factor": kw.get("ext_factor", 0.0),
                          "attn_factor": kw.get("attn_factor", 1.0), "beta_fast": 32.0, "beta_slow": 1.0,
                          "n_ctx_orig": kw.get("n_ctx_orig", 0)}
                ff = kw.get("freq_factors")
                if ff is not None:
                    params["freq_factors_f32_hex"] = f32_to_hex(ff)
                tests = []
                for dtype in (np.float32, np.float16):
                    tc += 1
                    pos = np.array([0, 1, 2, 17, 511, 4095, 4096, 8191, 16384, 32767, 32768], np.int32)
                    x = rng.standard_normal((pos.size, 2, head_dim)).astype(dtype)
                    y = g.rope_ext(x, pos, n_dims=n_dims, mode=mode, freq_factors=ff,
                                   n_ctx_orig=params["n_ctx_orig"], freq_base=params["freq_base"],
                                   freq_scale=params["freq_scale"], ext_factor=params["ext_factor"],
                                   attn_factor=params["attn_factor"], beta_fast=32.0, beta_slow=1.0)
                    enc = (lambda a: a.astype("<f2").tobytes().hex()) if dtype == np.float16 else f32_to_hex
                    tests.append({"tcId": tc, "comment": f"{comment}; {np.dtype(dtype).name} input",
                                  "dtype": np.dtype(dtype).name, "shape": list(x.shape),
                                  "pos": pos.tolist(), "input_hex": enc(x), "expected_hex": enc(y)})
                groups.append({"op": "rope_ext", "name": f"{mode_name}-{key}-hd{head_dim}-nd{n_dims}",
                               "params": params, "tolerance": "exact", "tests": tests})
    return {"schema": SCHEMA, "op": "rope_ext",
            "provenance": {"oracle": f"llama-cpp-python {libggml.ORACLE_VERSION}", "ggml": "0.25.3",
                           "function": "ggml_rope_ext (libggml-cpu, 1 thread)",
                           "generator": "vectors/generate_model.py", "seed": SEED},
            "encoding": "float32 or float16 little-endian bit patterns in hex; x is (n_tokens, n_head, head_dim), row-major",
            "testGroups": groups}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args(argv)
    lib = libggml.load()
    if lib.version != libggml.ORACLE_VERSION:
        print(f"refusing: oracle is {lib.version}, vectors pin {libggml.ORACLE_VERSION}", file=sys.stderr)
        return 2
    doc = build_rope(ggml_graph.load())
    path = Path(args.out) / "model" / "rope.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"rope: {sum(len(g['tests']) for g in doc['testGroups'])} tests -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
