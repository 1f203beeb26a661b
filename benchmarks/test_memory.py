"""Peak memory of dequantizing a tensor whose float32 output is 1 GiB (268,435,456 weights).

    python -m pytest benchmarks/test_memory.py --benchmark-only --benchmark-json=/tmp/mem.json

Each case runs in a fresh Python process so that its peak resident set is its own:

1. the quantized tensor is written to a file: libggml quantizes 1 M random weights once and the
   bytes are written 256 times (the values do not matter for memory; the float32 input never exists);
2. a new process memory-maps that file, records its resident set, dequantizes the whole tensor with
   the backend and records the peak resident set (``VmHWM``) and the peak of Python-level
   allocations (``tracemalloc``, which numpy reports its buffers to).

Two ratios are reported in ``extra_info``, both against the 1 GiB float32 output:
``alloc_ratio`` = peak tracemalloc bytes / output bytes (what dequantize allocates: the output plus
its temporaries), and ``rss_ratio`` = (peak RSS - RSS before) / output bytes, which also counts the
memory-mapped input pages as they are read (0.14 GiB for Q4_0, 0.27 GiB for Q8_0).
The issue's target is <= 1.2x; nothing here asserts it (report.py prints met / missed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ggspec.reference.types import live_type

N = 1 << 28                      # 268,435,456 weights -> 1 GiB of float32
TYPES = ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ2_XXS", "F16"]
BACKENDS = ["numpy", "mlx"]

_CHILD = textwrap.dedent("""
    import json, mmap, sys, tracemalloc
    import numpy as np
    from ggspec import accel
    from ggspec.reference.types import live_type
    path, tname, n, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    b = accel.backend(backend)
    t = live_type(tname)
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    # warm up (imports, tables, thread pool) on a small slice so that their memory is in the baseline
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    b.dequantize(t, memoryview(mm)[: t.type_size * 1024], t.block_size * 1024)
    before = rss()
    tracemalloc.start()
    y = b.dequantize(t, mm, n)
    _, peak_alloc = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so it would start at the parent's peak
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
    print(json.dumps(dict(before=before, peak=peak, peak_alloc=peak_alloc, out=int(y.nbytes),
                          checksum=float(np.float64(y[:: 4099].astype(np.float64).sum())))))
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory, lib):
    made = {}

    def make(tname):
        if tname in made:
            return made[tname]
        t = live_type(tname)
        path = tmp_path_factory.mktemp("mem") / f"{tname}.bin"
        rng = np.random.default_rng(0)
        im = np.exp(rng.standard_normal(4096)).astype(np.float32) if t.requires_imatrix else None
        step = 1 << 20
        part = lib.quantize(t, rng.standard_normal((step // 4096, 4096)).astype(np.float32), im)
        with open(path, "wb") as f:
            for _ in range(N // step):
                f.write(part)
        made[tname] = path
        return path
    return make


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tname", TYPES)
def test_peak_memory(benchmark, files, tname, backend):
    if backend == "mlx":
        pytest.importorskip("mlx.core")
    path = files(tname)

    def run():
        p = subprocess.run([sys.executable, "-c", _CHILD, str(path), tname, str(N), backend],
                           capture_output=True, text=True, env=dict(os.environ))
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    r = benchmark.pedantic(run, rounds=1, iterations=1)
    assert r["out"] == 4 * N
    benchmark.group = "memory"
    benchmark.extra_info.update(
        type=tname, impl=backend, op="memory", n_weights=N, out_bytes=r["out"],
        input_bytes=os.path.getsize(path), rss_before=r["before"], rss_peak=r["peak"],
        peak_alloc=r["peak_alloc"],
        alloc_ratio=r["peak_alloc"] / r["out"], rss_ratio=(r["peak"] - r["before"]) / r["out"])
