"""Turn the pytest-benchmark JSON of test_reference_quantizers.py into a table (Mweights/s)."""

import json
import sys

from tabulate import tabulate


def main(path: str) -> None:
    runs = json.load(open(path))["benchmarks"]
    by = {}
    for b in runs:
        e = b["extra_info"]
        by.setdefault(e["type"], {})[e["impl"]] = e["n_weights"] / b["stats"]["median"] / 1e6
    rows = [[t, f"{v.get('reference', 0):.4f}", f"{v.get('libggml', 0):.2f}",
             f"{v.get('libggml', 0) / v['reference']:.0f}x" if v.get("reference") else "-"] for t, v in by.items()]
    print(tabulate(rows, headers=["type", "reference Mw/s", "libggml Mw/s (1 thread)", "libggml / reference"],
                   tablefmt="github"))


if __name__ == "__main__":
    main(sys.argv[1])
