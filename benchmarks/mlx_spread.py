"""MLX vs numpy dequantize, with the spread over several fresh processes.

    python benchmarks/mlx_spread.py --runs 5 --json /tmp/spread.json
    python benchmarks/mlx_spread.py --from-json /tmp/spread.json --write docs/performance.md

One run of the peers benchmark gives one number per cell, and on a shared 2-core machine the MLX
column moved more between runs than the gaps it reported. Here each run is a fresh Python process
that dequantizes every type with both backends (``accel.backend("numpy")``, ``accel.backend("mlx")``;
two threads each) on the same memory-mapped bytes: a tensor of 16.8 M weights (4096 per row), 1 M
random normal weights quantized by libggml (with an importance matrix where ggml needs one) and
repeated 16 times. Per run and type: the median of ``ROUNDS`` timed calls per backend (after one
untimed call), alternating the backends; each result is checked bit for bit (the first 1 M values
against libggml's to_float, the rest against the first 1 M). The report gives, per type, the median
over runs of each rate and the median, min and max over runs of the per-run ratio mlx / numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

N_PART = 1 << 20          # weights quantized by libggml
REPEAT = 16               # 16.8 M weights per tensor
ROUNDS = 3
TARGET = 0.7

_CHILD = textwrap.dedent("""
    import json, mmap, sys, time
    import numpy as np
    from ggspec import accel
    from ggspec.conformance import libggml
    from ggspec.reference.types import live_type
    d, names, rounds, pretouch = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), float(sys.argv[4])
    if pretouch > 0:        # back guest pages once (see benchmarks/conftest.py: backed_memory)
        parts = [np.ones(1 << 28, np.float32) for _ in range(int(pretouch))]
        del parts
    lib = libggml.load()
    bk = {"numpy": accel.backend("numpy"), "mlx": accel.backend("mlx")}
    res = {}
    for name in names:
        t = live_type(name)
        with open(f"{d}/{name}.bin", "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        n = len(mm) // t.type_size * t.block_size
        part = len(mm) // %(repeat)d
        ref = lib.to_float(t, mm[:part], n // %(repeat)d) if name not in ("F16", "BF16") or True else None
        times = {"numpy": [], "mlx": []}
        for k in ("numpy", "mlx"):
            y = bk[k].dequantize(t, mm, n)                     # untimed: tables, pools
            m = n // %(repeat)d
            ok = np.array_equal(y[:m].view(np.uint32), ref.view(np.uint32)) and \\
                np.array_equal(y.reshape(%(repeat)d, m).view(np.uint32), np.broadcast_to(ref.view(np.uint32), (%(repeat)d, m)))
            if not ok:
                print(json.dumps({"error": f"{k} {name}: result differs from libggml"}))
                sys.exit(1)
            del y
        for r in range(rounds):
            for k in (("numpy", "mlx") if r %% 2 == 0 else ("mlx", "numpy")):
                t0 = time.perf_counter()
                y = bk[k].dequantize(t, mm, n)
                times[k].append(time.perf_counter() - t0)
                del y
        res[name] = {"n": n, "numpy": float(np.median(times["numpy"])), "mlx": float(np.median(times["mlx"]))}
        mm.close()
    print(json.dumps(res))
""") % {"repeat": REPEAT}


def types():
    from ggspec.reference.types import LIVE_TYPES
    out = [t for t in LIVE_TYPES if (t.block_size > 1 and t.name not in ("Q8_1",)) or t.name in ("F16", "BF16")]
    return [t.name for t in out]


def make_files(d: Path, names) -> None:
    from ggspec.conformance import libggml
    from ggspec.reference.types import live_type
    lib = libggml.load()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_PART // 4096, 4096)).astype(np.float32)
    im = np.exp(np.random.default_rng(1).standard_normal(4096)).astype(np.float32)
    for name in names:
        t = live_type(name)
        raw = lib.quantize(t, x, im if t.requires_imatrix else None)
        with open(d / f"{name}.bin", "wb") as f:
            for _ in range(REPEAT):
                f.write(raw)


def run(runs: int, names, pretouch: float, progress=True) -> dict:
    with tempfile.TemporaryDirectory() as d:
        make_files(Path(d), names)
        per_run = []
        for i in range(runs):
            p = subprocess.run([sys.executable, "-c", _CHILD, d, ",".join(names), str(ROUNDS), str(pretouch)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"run {i + 1} failed: {(p.stdout + p.stderr)[-2000:]}")
            per_run.append(json.loads(p.stdout.strip().splitlines()[-1]))
            if progress:
                print(f"run {i + 1}/{runs} done", file=sys.stderr)
    import mlx.core as mx
    return {"runs": per_run, "machine": machine(), "rounds": ROUNDS, "weights": N_PART * REPEAT,
            "mlx": mx.__version__, "numpy": np.__version__}


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "loadavg": load}


def summarize(data: dict) -> "list[dict]":
    rows = []
    names = list(data["runs"][0])
    for name in names:
        rs = [r[name] for r in data["runs"] if name in r]
        ratio = [r["numpy"] / r["mlx"] for r in rs]          # rate ratio = inverse time ratio
        rows.append({"type": name, "runs": len(rs),
                     "numpy": float(np.median([r["n"] / r["numpy"] / 1e6 for r in rs])),
                     "mlx": float(np.median([r["n"] / r["mlx"] / 1e6 for r in rs])),
                     "ratio_median": float(np.median(ratio)), "ratio_min": float(min(ratio)),
                     "ratio_max": float(max(ratio))})
    return rows


def render(data: dict) -> str:
    from tabulate import tabulate
    rows = summarize(data)
    m = data["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {data['numpy']}, mlx {data['mlx']}"
           f" (CPU); load average at the end {', '.join(f'{v:.1f}' for v in (m['loadavg'] or []))}. "
           f"{len(data['runs'])} fresh processes; in each, per type and backend, the median of {data['rounds']} "
           f"calls on {data['weights'] / 1e6:.1f} M weights; every result checked bit for bit against libggml.",
           ""]
    tab = []
    for r in rows:
        met = "met" if r["ratio_median"] >= TARGET else "**missed**"
        tab.append([r["type"], f"{r['numpy']:,.0f}", f"{r['mlx']:,.0f}", f"{r['ratio_median']:.2f}",
                    f"{r['ratio_min']:.2f} - {r['ratio_max']:.2f}", met])
    out.append(tabulate(tab, headers=["type", "numpy Mw/s (median)", "mlx Mw/s (median)", "mlx / numpy median",
                                      "min - max over runs", f">= {TARGET}x"], tablefmt="github"))
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- generated: benchmarks/mlx_spread.py -->", "<!-- end: benchmarks/mlx_spread.py -->"


def write(page: Path, text: str) -> None:
    s = page.read_text()
    block = f"{BEGIN}\n{text}{END}"
    if BEGIN in s and END in s:
        a, b = s.index(BEGIN), s.index(END) + len(END)
        s = s[:a] + block + s[b:]
    else:
        s = s.rstrip("\n") + "\n\n" + block + "\n"
    page.write_text(s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--types", default=None, help="comma-separated (default: every dequantizable type)")
    ap.add_argument("--pretouch-gib", type=float, default=1.0)
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--from-json", default=None, help="render earlier results instead of running")
    ap.add_argument("--write", default=None, help="replace the generated block of this markdown page")
    a = ap.parse_args(argv)
    if a.from_json:
        data = json.loads(Path(a.from_json).read_text())
    else:
        names = a.types.split(",") if a.types else types()
        data = run(a.runs, names, a.pretouch_gib)
        if a.json:
            Path(a.json).write_text(json.dumps(data))
    text = render(data)
    print(text)
    if a.write:
        write(Path(a.write), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
