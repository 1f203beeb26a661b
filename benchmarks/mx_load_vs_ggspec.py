"""``mx.load`` (MLX's own GGUF loader) vs ``ggspec.accel.mlx_gguf.load`` on the same files.

    python benchmarks/mx_load_vs_ggspec.py [FILE.gguf ...] [--json]

Without arguments: one small GGUF per live ggml type (ggml-quantized rows where ggml quantizes the type
without an importance matrix, else random block bytes), a BF16 file holding values outside float16's
range, and a tiny qwen2 model quantized by llama.cpp to Q4_K_M (needs the oracle and gguf-py).

``mx.load`` runs in a child process (it crashes the process on some files, e.g. a FLOAT64 metadata
value); its quantized triples (``w``, ``w.scales``, ``w.biases``) are dequantized with
``mx.dequantize`` -- what an MLX model computes with. Each tensor is compared with ggspec's result
(bit-exact to libggml's to_float): values that differ, the max absolute and relative difference,
finite values that became inf and non-zero values that became 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import sys, mlx.core as mx
a = mx.load(sys.argv[1])
out = {}
for k, v in a.items():
    if k.endswith(".scales") or k.endswith(".biases"):
        continue
    if k + ".scales" in a:
        bits = 32 * v.shape[-1] // (a[k + ".scales"].shape[-1] * 32)
        gs = v.shape[-1] * 32 // bits // a[k + ".scales"].shape[-1]
        v = mx.dequantize(v, a[k + ".scales"], a[k + ".biases"], group_size=gs, bits=bits)
        out[k + "|quantized%d" % bits] = v.astype(mx.float32)
    else:
        out[k + "|" + str(v.dtype).replace("mlx.core.", "")] = v.astype(mx.float32)
mx.save_safetensors(sys.argv[2], out)
"""


def mx_load_arrays(path):
    """(arrays {name: (float32 ndarray, how)}, error or None) of mx.load in a child process."""
    with tempfile.TemporaryDirectory() as d:
        dst = os.path.join(d, "o.safetensors")
        p = subprocess.run([sys.executable, "-c", _CHILD, str(path), dst], capture_output=True, text=True)
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
            if p.returncode < 0:
                err = f"the process crashed (signal {-p.returncode})"
            return {}, err
        import mlx.core as mx
        loaded = mx.load(dst)
        return {k.split("|")[0]: (np.array(v), k.split("|")[1]) for k, v in loaded.items()}, None


def compare(path) -> "list[dict]":
    from ggspec.accel import mlx_gguf
    from ggspec.reference import gguf as G
    g = G.read(path)
    types = {n: t.type.name for n, t in g.tensors.items()}
    g.close()
    ours = {k: np.array(v).astype(np.float32) for k, v in mlx_gguf.load(path).items()}
    theirs, err = mx_load_arrays(path)
    rows = []
    for name, y in ours.items():
        r = {"file": Path(path).name, "tensor": name, "type": types[name], "n": int(y.size)}
        if err is not None:
            r.update(mx_load="error", note=err)
        elif name not in theirs:
            r.update(mx_load="missing", note="silently dropped")
        else:
            x, how = theirs[name]
            x = x.reshape(y.shape)
            same = (x.view(np.uint32) == y.view(np.uint32)) | (np.isnan(x) & np.isnan(y))
            fin = np.isfinite(y)
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            d = np.where(fin & np.isfinite(x), d, 0)
            rel = d / np.maximum(np.abs(y.astype(np.float64)), 1e-300)
            r.update(mx_load=how, differ=int((~same).sum()), max_abs=float(d.max()) if d.size else 0.0,
                     max_rel=float(rel[fin & (y != 0)].max()) if (fin & (y != 0)).any() else 0.0,
                     to_inf=int((fin & np.isinf(x)).sum()), to_zero=int(((y != 0) & (x == 0)).sum()))
        rows.append(r)
    return rows


def default_files(d: Path) -> "list[Path]":
    from ggspec.conformance import libggml
    from ggspec.reference import gguf as G
    from ggspec.reference.types import LIVE_TYPES
    o = libggml.load()
    rng = np.random.default_rng(0)
    files = []
    for t in LIVE_TYPES:
        w = G.GGUFWriter()
        x = rng.standard_normal((8, 256)).astype(np.float32)
        if t.name == "BF16":
            continue                                      # below, with out-of-range values
        if t.name == "F32":
            w.add_tensor("w", x)
        elif t.name == "F16":
            w.add_tensor("w", x.astype(np.float16))
        elif t.name in ("F64", "I8", "I16", "I32", "I64"):
            w.add_tensor("w", (x * 100).astype({"F64": np.float64, "I8": np.int8, "I16": np.int16,
                                                 "I32": np.int32, "I64": np.int64}[t.name]))
        elif t.quantize_chunk and not o.requires_imatrix(t.id) and t.name not in ("IQ2_S",):
            w.add_tensor_raw("w", t, (256, 8), o.quantize(t, x))
        else:
            w.add_tensor_raw("w", t, (256, 8), rng.integers(0, 256, 8 * 256 // t.block_size * t.type_size,
                                                            dtype=np.uint8).tobytes())
        files.append(w.write(d / f"{t.name}.gguf"))
    # BF16: normal values plus values outside float16's range (both directions)
    x = np.concatenate([rng.standard_normal(1024), [8.67e-9, 1.7e38, -3e-10, 7e4, 1e-7, 6e-8]]).astype(np.float32)
    x = np.concatenate([x, np.zeros(-x.size % 256, np.float32)])
    w = G.GGUFWriter()
    w.add_tensor_raw("w", "BF16", (x.size,), o.from_float_ref("BF16", x))
    files.append(w.write(d / "BF16.gguf"))
    try:
        from ggspec.conformance import tinymodels as T
        f32 = T.write_tiny_qwen2(T.TinySpec(n_head_kv=2, wtype="F32"), d / "tiny-qwen2-f32.gguf")
        files.append(T.quantize_with_llama_cpp(f32, d / "tiny-qwen2-Q4_K_M.gguf", "Q4_K_M"))
    except Exception as e:  # pragma: no cover
        print(f"(tiny Q4_K_M model skipped: {e})", file=sys.stderr)
    return files


def render(rows) -> str:
    from tabulate import tabulate
    out = []
    for r in rows:
        if r["mx_load"] in ("error", "missing"):
            out.append([r["file"], r["tensor"], r["type"], r["mx_load"], "", "", "", "", r.get("note", "")])
        else:
            out.append([r["file"], r["tensor"], r["type"], r["mx_load"], f"{r['differ']}/{r['n']}",
                        f"{r['max_abs']:.3g}", f"{r['max_rel']:.3g}", f"{r['to_inf']}/{r['to_zero']}",
                        "exact" if r["differ"] == 0 else ""])
    return tabulate(out, headers=["file", "tensor", "type", "mx.load gives", "values differing",
                                  "max abs diff", "max rel diff", "->inf / ->0", "note"], tablefmt="github")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    with tempfile.TemporaryDirectory() as d:
        files = [Path(a) for a in argv] or default_files(Path(d))
        rows = [r for f in files for r in compare(f)]
    if as_json:
        print(json.dumps(rows))
    else:
        print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
