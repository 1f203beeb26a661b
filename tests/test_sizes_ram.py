"""The RAM estimate of real files (``ram_from_inventory``: the file's own tensor bytes, the KV cache of its
architecture, the compute buffer) against llama.cpp's measured peak RSS: synthetic GGUFs of each modelled
architecture, quantized with ``llama_model_quantize``, loaded with llama_cpp at n_ctx 4096 and evaluating
a 512-token prompt.  Within 10 %."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from ggspec.conformance import sizes as S
from ggspec.conformance.sizes.synth import RSS_SHAPES

_CHILD = r"""
import sys, llama_cpp
path, n_ctx, n_prompt, n_vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=2, verbose=False)
if n_prompt:
    m.eval([1] + [259 + (i * 7919) % (n_vocab - 259) for i in range(n_prompt - 1)])
"""
_WRAPPER = r"""
import resource, subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1]] + sys.argv[2:], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def peak_rss(path: Path, n_ctx: int, n_prompt: int, n_vocab: int) -> int:
    """Peak RSS (bytes) of a fresh process that loads ``path`` with llama_cpp and evaluates a prompt."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, _CHILD, str(path), str(n_ctx), str(n_prompt), str(n_vocab)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def quantize(src: Path, dst: Path, mix: str) -> None:
    from llama_cpp import llama_cpp as lc
    params = lc.llama_model_quantize_default_params()
    params.ftype = S.FTYPES[mix]
    params.nthread = 2
    assert lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0


CASES = [("smollm-135m-like", "Q4_1"), ("gemma3-270m-like", "Q4_K_M"), ("qwen2-0.5b-like", "Q4_K_M"),
         ("mixtral-small", "Q4_K_M"), ("phi3-small", "Q4_0"), ("qwen-v1-small", "Q8_0"), ("qwen3moe-small", "Q4_K_M")]


def measure(name: str, mix: str, workdir: Path, n_ctx: int = 4096, n_prompt: int = 512) -> dict:
    from ggspec.conformance.sizes.synth import write_f16
    shape = RSS_SHAPES[name]
    src = write_f16(shape, workdir / f"{name}.f16.gguf")
    out = workdir / f"{name}.{mix}.gguf"
    quantize(src, out, mix)
    src.unlink()
    inv = S.read_inventory(out)
    pred = S.predict_inventory(inv)
    est = S.ram_from_inventory(inv, n_ctx, n_prompt=n_prompt)
    rss = peak_rss(out, n_ctx, n_prompt, shape.n_vocab)
    out.unlink()
    return {"model": name, "mix": mix, "file": inv.file_size, "predicted_file": pred["predicted_file_size"],
            "deviations": len(pred["deviations"]), "rss": rss, "estimate": est, "error": est["total"] / rss - 1}


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("name,mix", [c for c in CASES if c[0] in ("smollm-135m-like", "gemma3-270m-like",
                                                                     "mixtral-small")])
def test_ram_from_file_within_10_percent_of_peak_rss(oracle, tmp_path, name, mix):
    pytest.importorskip("gguf")
    r = measure(name, mix, tmp_path)
    assert r["deviations"] == 0 and r["predicted_file"] == r["file"]
    assert abs(r["error"]) <= 0.10, r


if __name__ == "__main__":  # python tests/test_sizes_ram.py DIR: the table in docs/sizes.md
    import tempfile
    d = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    only = sys.argv[2:]
    for name, mix in CASES:
        if only and name not in only:
            continue
        r = measure(name, mix, d)
        e = r["estimate"]
        print(f"| {name} | {mix} | {r['file'] / 1e6:.1f} MB | {r['rss'] / 1e6:.1f} MB | {e['total'] / 1e6:.1f} MB | "
              f"{100 * r['error']:+.1f}% | weights {e['weights'] / 1e6:.1f}, repack {e['repack'] / 1e6:.1f}, "
              f"KV {e['kv_cache'] / 1e6:.1f}, compute {e['compute'] / 1e6:.1f} |", flush=True)
