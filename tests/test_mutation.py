"""The mutation catalogue in CI: every entry still applies to the reference, and a rotating sample of
the codec mutants is killed by the shipped vectors (tests/mutation/, docs/vectors.md).

The sample changes every day (``GGSPEC_MUTATION_SEED`` overrides the seed, ``GGSPEC_MUTATION_SAMPLE``
the size); over the days every codec mutant comes round. Two model-layer mutants (rope, attention,
forward, mix suites; ``GGSPEC_MUTATION_MODEL_SAMPLE``) are sampled the same way. The full catalogue runs with
``python tests/mutation/run.py``.
"""

from __future__ import annotations

import datetime
import importlib
import os
import random
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "mutation"


if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
harness = importlib.import_module("mutation_harness")
catalogue = importlib.import_module("mutation_catalogue")

# codec mutants the shipped vectors do not kill yet (each one listed in docs/vectors.md); empty is the goal
KNOWN_SURVIVORS: set = set()

CODEC = [m for m in catalogue.CATALOGUE if m.suite == "codec" and m.id not in KNOWN_SURVIVORS]


def _sample() -> list:
    seed = int(os.environ.get("GGSPEC_MUTATION_SEED", datetime.date.today().toordinal()))
    k = int(os.environ.get("GGSPEC_MUTATION_SAMPLE", "6"))
    return random.Random(seed).sample(CODEC, min(k, len(CODEC)))


def test_catalogue_is_large_and_covers_every_family():
    fams = {m.family for m in catalogue.CATALOGUE}
    assert {"fp", "helpers", "legacy", "kquants", "iquants", "ternary", "fp4", "lowbit", "rope", "gguf",
            "attention", "forward", "mix"} <= fams
    assert len(catalogue.CATALOGUE) >= 60


@pytest.mark.parametrize("m", catalogue.CATALOGUE, ids=[m.id for m in catalogue.CATALOGUE])
def test_every_mutant_still_applies(m):
    """The line each mutant changes is still in the reference, and the mutated file compiles."""
    text = harness.mutated_text(m)
    compile(text, m.path, "exec")


def test_shadow_copy_leaves_the_reference_alone(tmp_path):
    m = catalogue.BY_ID["q8_0-half-even"]
    before = (harness.package_root() / m.path).read_text()
    harness.build_shadow(m, tmp_path)
    mutated = (tmp_path / harness.SHADOW / m.path).read_text()
    assert (harness.package_root() / m.path).read_text() == before
    assert mutated != before and m.new in mutated
    assert (tmp_path / harness.SHADOW / "reference" / "fp.py").is_symlink()


# model-layer mutants the shipped vectors do not kill (each one listed in docs/vectors.md with the reason);
# they stay in the catalogue (the full run reports them) but out of CI's daily sample
KNOWN_MODEL_SURVIVORS: set = set()

MODEL = [m for m in catalogue.CATALOGUE if m.suite in ("rope", "attention", "forward", "mix")
         and m.id not in KNOWN_MODEL_SURVIVORS]


def _model_sample() -> list:
    seed = int(os.environ.get("GGSPEC_MUTATION_SEED", datetime.date.today().toordinal()))
    k = int(os.environ.get("GGSPEC_MUTATION_MODEL_SAMPLE", "2"))
    return random.Random(seed + 1).sample(MODEL, min(k, len(MODEL)))


@pytest.mark.parametrize("m", _model_sample(), ids=lambda m: m.id)
def test_sampled_model_mutant_is_killed(m):
    """One model-layer mutant of today's sample (rope, attention, forward or mix suite) must make
    `ggspec conform --strict --suite <its suite>` fail on the shipped vectors."""
    r = harness.run_mutant(m)
    assert r.status in ("killed", "nan-bits"), f"{m.id} ({m.why}): {r.status} {r.detail}"


@pytest.mark.parametrize("m", _sample(), ids=lambda m: m.id)
def test_sampled_codec_mutant_is_killed(m):
    """One mutant of today's sample must make `ggspec conform --strict` fail on the shipped vectors
    (on the types the catalogue names for it; a FAIL there is a FAIL of the whole run)."""
    r = harness.run_mutant(m, hint_only=True)
    # nan-bits: only NaN bit patterns differ, which `ggspec conform --strict` fails (the harness runs strict)
    assert r.status in ("killed", "nan-bits"), f"{m.id} ({m.why}): {r.status} {r.detail}"
