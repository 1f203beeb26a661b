"""benchmarks/report.py: rates, ratios and target verdicts from a hand-made pytest-benchmark JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
if not REPORT.exists():  # an installed copy without the source tree
    pytest.skip("benchmarks/report.py is not in this tree", allow_module_level=True)


def _load():
    spec = importlib.util.spec_from_file_location("ggspec_bench_report", REPORT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(op, t, impl, n, median, **extra):
    return {"extra_info": dict(op=op, type=t, impl=impl, n_weights=n, **extra), "stats": {"median": median}}


def test_report_ratios_and_verdicts(tmp_path):
    n = 16_000_000
    runs = [
        # Q4_0 dequantize: gguf-py 100 Mw/s, libggml 1000, numpy 400 (4x gguf-py, 0.4x libggml), mlx 200 (0.5x numpy)
        _bench("dequantize", "Q4_0", "gguf-py", n, n / 100e6),
        _bench("dequantize", "Q4_0", "libggml", n, n / 1000e6),
        _bench("dequantize", "Q4_0", "numpy", n, n / 400e6, exact=True),
        _bench("dequantize", "Q4_0", "mlx", n, n / 200e6, exact=True),
        # Q4_K dequantize: numpy 2.5x libggml; gguf-py at 2x below numpy -> 2.0x (missed)
        _bench("dequantize", "Q4_K", "gguf-py", n, n / 500e6, exact=False),
        _bench("dequantize", "Q4_K", "libggml", n, n / 400e6),
        _bench("dequantize", "Q4_K", "numpy", n, n / 1000e6, exact=True),
        _bench("dequantize", "Q4_K", "mlx", n, n / 800e6, exact=True),
        # Q4_K quantize: numpy 1.5x libggml
        _bench("quantize", "Q4_K", "libggml", n, n / 10e6),
        _bench("quantize", "Q4_K", "numpy", n, n / 15e6, exact=True),
        # memory: 1 GiB out, 0.25 GiB mapped input, RSS growth 1.3 GiB -> 1.05x without the input
        {"extra_info": dict(op="memory", type="Q8_0", impl="numpy", n_weights=2**28, out_bytes=2**30,
                            input_bytes=2**28, rss_before=10 * 2**20, rss_peak=10 * 2**20 + int(1.3 * 2**30),
                            peak_alloc=2**30, alloc_ratio=1.0, rss_ratio=1.3),
         "stats": {"median": 1.0}},
    ]
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"benchmarks": runs, "machine_info": {}}))
    rep = _load()
    text = rep.render(*rep.load([str(p)]))
    lines = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("|")}
    assert "4.00" in lines["Q4_0"] and "0.40" in lines["Q4_0"] and "0.50" in lines["Q4_0"]
    assert "500 ≠" in text                                   # gguf-py's inexact Q4_K is marked
    g = next(ln for ln in text.splitlines() if "≥ 3× gguf-py" in ln)
    assert "MISSED" in g and "Q4_K 2.00×" in g              # Q4_K 2.0x gguf-py < 3x (Q4_0's 4x alone would pass)
    geo = next(ln for ln in text.splitlines() if "geometric mean" in ln)
    assert "1.00×" in geo and "| met" in geo                # sqrt(0.4 * 2.5) = 1.0
    q = next(ln for ln in text.splitlines() if "quantize of Q2_K" in ln)
    assert "| met" in q and "1.50×" in q
    m = next(ln for ln in text.splitlines() if "MLX (Linux CPU)" in ln)
    assert "MISSED" in m and "Q4_0 0.50×" in m
    mem = next(ln for ln in text.splitlines() if "numpy: peak memory" in ln)
    assert "| met" in mem and "1.050×" in mem
