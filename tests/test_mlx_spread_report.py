"""benchmarks/mlx_spread.py's summary: medians and min/max over runs, the >= 0.7x verdict, and the
generated block replaced in place (no benchmark is run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("tabulate")


def _mod():
    p = Path(__file__).resolve().parents[1] / "benchmarks" / "mlx_spread.py"
    spec = importlib.util.spec_from_file_location("mlx_spread", p)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


DATA = {"runs": [{"Q4_0": {"n": 100e6, "numpy": 1.0, "mlx": 2.0}, "BF16": {"n": 100e6, "numpy": 1.0, "mlx": 1.0}},
                 {"Q4_0": {"n": 100e6, "numpy": 1.0, "mlx": 1.0}, "BF16": {"n": 100e6, "numpy": 2.0, "mlx": 1.0}},
                 {"Q4_0": {"n": 100e6, "numpy": 2.0, "mlx": 4.0}, "BF16": {"n": 100e6, "numpy": 1.0, "mlx": 4.0}}],
        "machine": {"cpu": "x", "cores": 2, "python": "3", "loadavg": [1.0, 1.0, 1.0]}, "rounds": 3,
        "weights": 100e6, "mlx": "0", "numpy": "0"}


def test_summary_median_min_max():
    m = _mod()
    rows = {r["type"]: r for r in m.summarize(DATA)}
    # per-run ratios mlx/numpy of rates = numpy time / mlx time: Q4_0 0.5, 1.0, 0.5; BF16 1.0, 2.0, 0.25
    assert rows["Q4_0"]["ratio_median"] == 0.5 and rows["Q4_0"]["ratio_min"] == 0.5 and rows["Q4_0"]["ratio_max"] == 1.0
    assert rows["BF16"]["ratio_median"] == 1.0 and rows["BF16"]["ratio_min"] == 0.25 and rows["BF16"]["ratio_max"] == 2.0
    assert rows["Q4_0"]["numpy"] == pytest.approx(100.0)      # median of 100, 100, 50 Mw/s
    text = m.render(DATA)
    q4 = next(l for l in text.splitlines() if l.startswith("| Q4_0"))
    bf = next(l for l in text.splitlines() if l.startswith("| BF16"))
    assert "missed" in q4 and "met" in bf and "0.50 - 1.00" in q4


def test_write_replaces_block(tmp_path):
    m = _mod()
    page = tmp_path / "p.md"
    page.write_text("intro\n")
    m.write(page, "first\n")
    m.write(page, "second\n")
    s = page.read_text()
    assert s.count(m.BEGIN) == 1 and "second" in s and "first" not in s and s.startswith("intro")
