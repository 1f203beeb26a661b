"""Search for inputs that tell a mutant apart from ggml: the adversarial-case finder.

    python tests/mutation/search.py --ids q3-four-passes,qp-four-passes --seeds 300

For each mutant and each of its types, rows from the recipes of ``vectors/generate.py`` (``RECIPES``,
with and without an importance matrix where the type takes one) are quantized by the oracle and by
the mutated reference (imported in this process from a throw-away copy, see mutation_harness.py); the first
(recipe, seed) whose bytes differ is printed as an entry for ``SEARCHED`` in vectors/generate.py.
Needs the oracle. Bounded: at most ``--seeds`` rows per recipe and ``--budget`` seconds per mutant.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutation_catalogue as catalogue  # noqa: E402
import mutation_harness as harness  # noqa: E402


def search(m, seeds: int, budget: float, oracle, gen):
    from ggspec.reference.types import get_type
    tmp = Path(tempfile.mkdtemp(prefix="ggspec-search-"))
    ref = harness.load_in_process(m, tmp)
    found = []
    t0 = time.perf_counter()
    for tname in m.types:
        t = get_type(tname)
        imrecs = [None] if not t.quantize_chunk else ([None] if not t.requires_imatrix else []) + list(gen.IMATRIX_RECIPES)
        if t.requires_imatrix:
            imrecs = list(gen.IMATRIX_RECIPES)
        for seed in range(seeds):
            for rec in gen.RECIPES:
                for imrec in imrecs:
                    if time.perf_counter() - t0 > budget:
                        return found
                    x = gen.recipe_row(rec, seed)
                    im = None if imrec is None else gen.recipe_imatrix(imrec, seed)
                    try:
                        want = oracle.quantize(t, x, im)
                    except Exception:
                        continue
                    try:
                        got = ref.quantize(tname, x, im)
                    except Exception:
                        got = None
                    if got != want:
                        found.append((tname, rec, seed, imrec))
                        return found
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", required=True)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per mutant")
    args = ap.parse_args(argv)
    from ggspec.conformance import libggml
    from ggspec.vectors import generate as gen
    oracle = libggml.load()
    for mid in args.ids.split(","):
        m = catalogue.BY_ID[mid.strip()]
        t0 = time.perf_counter()
        found = search(m, args.seeds, args.budget, oracle, gen)
        dt = time.perf_counter() - t0
        if found:
            for tname, rec, seed, imrec in found:
                print(f'    ("{tname}", "{rec}", {seed}, {imrec!r}, "{m.id}"),   # {dt:.0f}s', flush=True)
        else:
            print(f"# {m.id}: nothing found in {dt:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
