"""Peak memory of ``ggspec.accel.mlx_gguf.load`` (float32) on a 1 GB Q4_K GGUF, in a fresh process.

    python -m pytest benchmarks/test_mlx_gguf_memory.py --benchmark-only --benchmark-json=/tmp/mlxmem.json

The file: ``N_TENSORS`` Q4_K tensors of 4096 x 14336 weights (a 7-8B model's FFN matrix; 33 MB
each, ~1.0 GB in all), the bytes of 1 M random weights quantized once by libggml and repeated (the
values do not matter for memory). A child process imports everything and loads a one-tensor file
first (so MLX, its tables and thread pool are in the baseline), records its resident set
(``VmRSS``), loads the big file with ``mlx_gguf.load`` keeping every array, and reports the peak
resident set (``VmHWM``). The issue's target: peak - before <= output bytes + 10 %
(``rss_ratio`` <= 1.10). ``GGSPEC_MLXMEM_TENSORS`` overrides the tensor count (for a quick run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROWS, COLS = 14336, 4096
N_TENSORS = int(os.environ.get("GGSPEC_MLXMEM_TENSORS", "30"))

_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mlx.core as mx
    from ggspec.accel import mlx_gguf
    big, small = sys.argv[1], sys.argv[2]
    def status(key):
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) * 1024
    mlx_gguf.load(small)                       # warm-up: imports, tables, threads
    before = status("VmRSS")
    arrays = mlx_gguf.load(big)
    peak = status("VmHWM")
    out = sum(a.nbytes for a in arrays.values())
    chk = float(sum(float(mx.sum(a[::97, ::89]).item()) for a in list(arrays.values())[:3]))
    print(json.dumps(dict(before=before, peak=peak, out=out, n=len(arrays), after=status("VmRSS"), checksum=chk)))
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory, lib):
    from ggspec.reference import gguf as G
    d = tmp_path_factory.mktemp("mlxmem")
    rng = np.random.default_rng(0)
    part = lib.quantize("Q4_K", rng.standard_normal((256, COLS)).astype(np.float32))   # 256 rows
    reps = ROWS // 256
    tensor = part * reps                                                                 # one tensor's bytes
    w = G.GGUFWriter()
    w.add("general.architecture", "bench")
    for i in range(N_TENSORS):
        w.add_tensor_raw(f"blk.{i}.ffn_up.weight", "Q4_K", (COLS, ROWS), tensor)
    big = d / "q4k.gguf"
    w.write(big)
    small = G.GGUFWriter()
    small.add_tensor_raw("w", "Q4_K", (COLS, 256), part)
    small.write(d / "small.gguf")
    return big, d / "small.gguf"


def test_mlx_gguf_load_peak_memory(benchmark, files):
    pytest.importorskip("mlx.core")
    big, small = files

    def run():
        p = subprocess.run([sys.executable, "-c", _CHILD, str(big), str(small)], capture_output=True, text=True,
                           env=dict(os.environ))
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    r = benchmark.pedantic(run, rounds=1, iterations=1)
    assert r["n"] == N_TENSORS and r["out"] == N_TENSORS * ROWS * COLS * 4
    benchmark.group = "mlx_gguf memory"
    benchmark.extra_info.update(
        type="Q4_K", impl="mlx_gguf.load", op="load-memory", file_bytes=os.path.getsize(big), out_bytes=r["out"],
        rss_before=r["before"], rss_peak=r["peak"], rss_after=r["after"],
        rss_ratio=(r["peak"] - r["before"]) / r["out"])
    print(f"\nmlx_gguf.load of {os.path.getsize(big) / 1e9:.2f} GB Q4_K: output {r['out'] / 2**30:.2f} GiB, "
          f"peak - before {(r['peak'] - r['before']) / 2**30:.2f} GiB = {(r['peak'] - r['before']) / r['out']:.3f} x output")
