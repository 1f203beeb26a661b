"""The benchmark results as tables, with every target of the accelerated-paths issue checked.

    python benchmarks/report.py RESULTS.json [MORE.json ...] [--write docs/performance.md]

Reads pytest-benchmark JSON from benchmarks/test_peers.py (and test_memory.py). Throughput is
weights / median seconds, in Mweights/s. With ``--write`` the generated part of the page (between
the ``<!-- generated -->`` markers) is replaced; the hand-written text around it is kept.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from tabulate import tabulate

BEGIN, END = "<!-- generated: benchmarks/report.py -->", "<!-- end generated -->"
inexact: set = set()      # (op, type, impl) whose output differed from libggml
GRID_IQ = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"}


def load(paths):
    rate, mem, machine = {}, {}, {}
    inexact.clear()
    for p in paths:
        d = json.load(open(p))
        machine = d.get("machine_info", machine) or machine
        for b in d["benchmarks"]:
            e = b["extra_info"]
            if e.get("op") == "memory":
                mem[(e["type"], e["impl"])] = e
            elif "op" in e:
                rate[(e["op"], e["type"], e["impl"])] = e["n_weights"] / b["stats"]["median"] / 1e6
                if e["impl"] == "libggml":
                    _NW[(e["op"], e["type"])] = e["n_weights"]
                if e.get("exact") is False:
                    inexact.add((e["op"], e["type"], e["impl"]))
    return rate, mem, machine


def cell(op, t, impl, v, digits=0):
    """A rate, marked ≠ when that implementation's output was not identical to libggml's."""
    s = fmt(v, digits)
    return s + " ≠" if (op, t, impl) in inexact else s


def fmt(v, digits=0):
    if v is None:
        return "–"
    if v < 1 and digits == 0:
        return f"{v:.3g}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def _shape(rate) -> str:
    n = max((v for k, v in _NW.items()), default=0)
    return f"of {n / 1e6:.1f} M weights (4096 per row)" if n else "?"


_NW: dict = {}


def geomean(vals):
    vals = [v for v in vals if v]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def render(rate, mem, machine) -> str:
    out = []
    g = machine.get("ggspec", {})
    out.append(f"Machine: {g.get('cpu_model') or machine.get('cpu', {}).get('brand_raw', '?')}, "
               f"{g.get('cores', '?')} cores; Python {g.get('python', '?')}, numpy {g.get('numpy', '?')}, "
               f"mlx {g.get('mlx', '?')}, gguf {g.get('gguf', '?')}, llama-cpp-python {g.get('llama_cpp_python', '?')}. "
               f"Tensor {_shape(rate)}, random normal; the bytes every dequantizer reads were made "
               "by libggml; each result was checked against libggml (bit-equal floats, equal bytes) in the same "
               "test. Mw/s = million weights per second, median of 3 rounds (1 round for the reference, which "
               "runs on 4 rows, and for the numpy/mlx grid i-quant quantizers, which run on 256 rows).\n")
    impls = ["gguf-py", "libggml", "reference", "numpy", "mlx"]
    targets = []

    # ---- dequantize
    types = sorted({t for (op, t, _) in rate if op == "dequantize"}, key=_order)
    rows = []
    np_lib, np_gguf, mlx_np = [], {}, {}
    for t in types:
        r = {i: rate.get(("dequantize", t, i)) for i in impls}
        a, b_, c = ratio(r["numpy"], r["gguf-py"]), ratio(r["numpy"], r["libggml"]), ratio(r["mlx"], r["numpy"])
        if b_ is not None and t not in ("F16", "BF16"):
            np_lib.append(b_)
        if a is not None:
            np_gguf[t] = a
        if c is not None:
            mlx_np[t] = c
        rows.append([t] + [cell("dequantize", t, i, r[i]) for i in impls] + [fmt(a, 2), fmt(b_, 2), fmt(c, 2)])
    out.append("### Dequantize (Mweights/s)\n")
    out.append(tabulate(rows, headers=["type"] + impls + ["numpy / gguf-py", "numpy / libggml", "mlx / numpy"],
                        tablefmt="github", disable_numparse=True))
    gm = geomean(np_lib)

    # ---- quantize
    types = sorted({t for (op, t, _) in rate if op == "quantize"}, key=_order)
    rows = []
    q_lib = {}
    for t in types:
        r = {i: rate.get(("quantize", t, i)) for i in impls}
        b_ = ratio(r["numpy"], r["libggml"])
        if b_ is not None:
            q_lib[t] = b_
        rows.append([t] + [cell("quantize", t, i, r[i], 2 if (r[i] or 0) < 10 else 0) for i in impls]
                    + [fmt(ratio(r["numpy"], r["gguf-py"]), 2), fmt(b_, 2)])
    out.append("\n### Quantize (Mweights/s)\n")
    out.append("Types that need an importance matrix are quantized with one (the same for every implementation); "
               "the others without.\n")
    out.append(tabulate(rows, headers=["type"] + impls + ["numpy / gguf-py", "numpy / libggml"],
                        tablefmt="github", disable_numparse=True))

    # ---- memory
    if mem:
        rows = []
        for (t, i), e in sorted(mem.items(), key=lambda kv: (kv[0][1], _order(kv[0][0]))):
            rows.append([t, i, f"{e['input_bytes'] / 2**20:,.0f}", f"{e['out_bytes'] / 2**20:,.0f}",
                         f"{e['peak_alloc'] / 2**20:,.0f}" if i == "numpy" else "(not seen)",
                         f"{(e['rss_peak'] - e['rss_before']) / 2**20:,.0f}", f"{e['rss_ratio']:.3f}",
                         f"{_excl(e):.3f}"])
        out.append("\n### Peak memory, dequantizing 268 M weights (1 GiB of float32 output)\n")
        out.append("The input file is memory-mapped; its pages join the resident set as they are read. "
                   "\"peak allocated\" is tracemalloc's peak (numpy reports its buffers to it; MLX's allocator "
                   "does not). The target is judged on the last column: resident-set growth less the mapped "
                   "input, over the output.\n")
        out.append(tabulate(rows, headers=["type", "backend", "input MiB (mmap)", "output MiB",
                                           "peak allocated MiB", "RSS growth MiB", "RSS growth / output",
                                           "(RSS growth − input) / output"], tablefmt="github", disable_numparse=True))

    # ---- targets
    def line(name, ok, detail):
        targets.append([name, "met" if ok else "MISSED", detail])

    if np_gguf:
        worst = min(np_gguf, key=np_gguf.get)
        miss = sorted(t for t, v in np_gguf.items() if v < 3)
        line("numpy dequantize ≥ 3× gguf-py, every type gguf-py has", not miss,
             f"lowest {worst} {np_gguf[worst]:.2f}×" + (f"; below 3×: {', '.join(miss)}" if miss else ""))
    if gm is not None:
        line("numpy dequantize geometric mean ≥ 1.0× libggml (1 thread)", gm >= 1.0,
             f"{gm:.2f}× over {len(np_lib)} quantized types")
    kq = {t: v for t, v in q_lib.items() if t.endswith("_K") and t != "Q8_K" or t.startswith("IQ")}
    if kq:
        miss = sorted((t for t, v in kq.items() if v < 1), key=_order)
        worst = min(kq, key=kq.get)
        line("numpy quantize of Q2_K…Q6_K and the i-quants ≥ 1.0× libggml (1 thread)", not miss,
             f"lowest {worst} {kq[worst]:.2f}×" + (f"; below 1×: {', '.join(miss)}" if miss else ""))
    if mlx_np:
        miss = sorted((t for t, v in mlx_np.items() if v < 0.7), key=_order)
        worst = min(mlx_np, key=mlx_np.get)
        line("MLX (Linux CPU) dequantize ≥ 0.7× numpy, every type", not miss,
             f"lowest {worst} {mlx_np[worst]:.2f}×" + (f"; below 0.7×: {', '.join(miss)}" if miss else ""))
    for i in ("numpy", "mlx"):
        ms = {t: e for (t, ii), e in mem.items() if ii == i}
        if ms:
            worst = max(ms, key=lambda t: _excl(ms[t]))
            worst_rss = max(ms, key=lambda t: ms[t]["rss_ratio"])
            ok = all(_excl(e) <= 1.2 for e in ms.values())
            line(f"{i}: peak memory of dequantizing 1 GiB ≤ 1.2× the output", ok,
                 f"worst {worst} {_excl(ms[worst]):.3f}× (RSS growth less the mapped input); counting the "
                 f"input too: worst {worst_rss} {ms[worst_rss]['rss_ratio']:.3f}×")
    if inexact:
        out.append("\n≠: that implementation's output was not identical to libggml's on this data "
                   "(peers only; ours are asserted exact): " + ", ".join(f"{i} {op} {t}" for op, t, i in sorted(inexact)) + ".\n")
    out.append("\n### Targets\n")
    out.append(tabulate(targets, headers=["target", "", "measured"], tablefmt="github"))
    return "\n".join(out) + "\n"


def _excl(e) -> float:
    """(peak RSS - RSS before - mapped input bytes) / output bytes."""
    return (e["rss_peak"] - e["rss_before"] - e["input_bytes"]) / e["out_bytes"]


def _order(t):
    from ggspec.reference.types import live_type
    try:
        return live_type(t).id
    except Exception:
        return 999


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+")
    ap.add_argument("--write", metavar="MD", help="replace the generated part of this page")
    a = ap.parse_args(argv)
    text = render(*load(a.json))
    if a.write:
        p = Path(a.write)
        page = p.read_text() if p.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
        if BEGIN not in page:
            page += f"\n{BEGIN}\n{END}\n"
        page = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: f"{BEGIN}\n{text}{END}", page, flags=re.S)
        p.write_text(page)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
