"""Run the mutation catalogue against the shipped vectors and print the score per family.

    python tests/mutation/run.py                          # all mutants (codec, rope, gguf, attention,
                                                          # forward, mix)
    python tests/mutation/run.py --family fp,legacy       # some families
    python tests/mutation/run.py --ids q8_0-half-even     # some mutants
    python tests/mutation/run.py --sample 8 --seed 3      # a random sample
    python tests/mutation/run.py --json > score.json

Each mutant is applied to a copy of the reference and checked with
``ggspec conform --impl ggspec_mutant_impl:make --strict`` (see mutation_harness.py).
Exit status 1 when a codec, attention, forward or mix mutant survives.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutation_catalogue as catalogue  # noqa: E402
import mutation_harness as harness  # noqa: E402


def select(ids="", family="", suite="", sample=0, seed=0):
    ms = list(catalogue.CATALOGUE)
    if ids:
        want = [s.strip() for s in ids.split(",") if s.strip()]
        unknown = [i for i in want if i not in catalogue.BY_ID]
        if unknown:
            raise SystemExit(f"unknown mutant id(s): {unknown}")
        ms = [catalogue.BY_ID[i] for i in want]
    if family:
        fams = {s.strip() for s in family.split(",")}
        ms = [m for m in ms if m.family in fams]
    if suite:
        suites = {s.strip() for s in suite.split(",")}
        ms = [m for m in ms if m.suite in suites]
    if sample and sample < len(ms):
        ms = random.Random(seed).sample(ms, sample)
    return ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", default="")
    ap.add_argument("--family", default="")
    ap.add_argument("--suite", default="", help="codec, rope, gguf, attention, forward, mix (comma-separated)")
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hint-only", action="store_true", help="run codec mutants on their hinted types only")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--vectors", default=None, help="codec vector directory (default: the shipped vectors)")
    args = ap.parse_args(argv)
    harness.VECTORS_DIR = args.vectors
    ms = select(args.ids, args.family, args.suite, args.sample, args.seed)
    results = []
    for i, m in enumerate(ms):
        r = harness.run_mutant(m, hint_only=args.hint_only)
        results.append(r)
        if not args.json:
            extra = r.first_failure[:110] if r.status in ("killed", "nan-bits") else r.detail[:110]
            print(f"[{i + 1:3d}/{len(ms)}] {r.status:8s} {r.seconds:6.1f}s {m.family:8s} {m.id:28s} {extra}",
                  flush=True)
    table = harness.score_table(results)
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results],
                          "score": [{"family": f, "killed": k, "nan_bits": nb, "counted": n, "survivors": s}
                                    for f, k, nb, n, s in table]},
                         indent=1))
    else:
        print("\nfamily     killed (+nan-bits only) / counted   survivors")
        for f, k, nb, n, s in table:
            print(f"{f:10s} {k:3d} (+{nb}) / {n:<3d}                {', '.join(s)}")
        other = [r for r in results if r.status not in ("killed", "nan-bits", "survived")]
        for r in other:
            print(f"not counted: {r.id}: {r.status} {r.detail[:200]}")
    gate = ("codec", "attention", "forward", "mix")
    return 1 if any(r.status == "survived" and r.suite in gate for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
