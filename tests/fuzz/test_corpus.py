"""Every malformed corpus file, every truncation of valid files and seeded random corruptions go
through the readers: FormatError (or a valid parse for inputs that are still well-formed), never
another exception, a hang, or a large allocation."""

from __future__ import annotations

import importlib.util
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ggspec.errors import FormatError, GGSpecError

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE))
import gguf_harness as harness  # noqa: E402

FORMATS = [f for f in ("gguf", "ggml") if importlib.util.find_spec(
    {"gguf": "ggspec.reference.gguf", "ggml": "ggspec.reference.ggml_legacy"}[f]) is not None]


for _f in FORMATS:       # import the readers before any allocation is measured
    importlib.import_module({"gguf": "ggspec.reference.gguf", "ggml": "ggspec.reference.ggml_legacy"}[_f])
import ggspec.reference.fp  # noqa: E402,F401


def _files(fmt, prefix):
    d = CORPUS / fmt
    return sorted(p for p in d.glob(prefix + "*") if p.is_file()) if d.is_dir() else []


def _all(prefix):
    return [(fmt, p) for fmt in FORMATS for p in _files(fmt, prefix)]


@pytest.mark.parametrize("fmt,path", _all("bad-"), ids=lambda v: getattr(v, "name", v))
def test_malformed_file_gives_format_error(fmt, path):
    data = path.read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as e:
            harness.EXERCISE[fmt](data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.offset is not None and 0 <= e.value.offset <= max(len(data), 2**32)
    assert len(e.value.message) > 15
    assert peak < 10 * len(data) + 2**20, f"peak allocation {peak} for a {len(data)}-byte file"


@pytest.mark.parametrize("fmt,path", _all("seed-"), ids=lambda v: getattr(v, "name", v))
def test_seed_files_parse(fmt, path):
    harness.EXERCISE[fmt](path.read_bytes())


@pytest.mark.parametrize("fmt,path", _all("fuzz-"), ids=lambda v: getattr(v, "name", v))
def test_fuzzer_findings(fmt, path):
    try:
        harness.EXERCISE[fmt](path.read_bytes())
    except GGSpecError:
        pass


@pytest.mark.parametrize("fmt,path", _all("seed-"), ids=lambda v: getattr(v, "name", v))
def test_every_truncation(fmt, path):
    data = path.read_bytes()
    full = harness.EXERCISE[fmt](data)
    end = max((t.offset + t.nbytes for t in full.tensors.values()), default=0)
    # legacy files have no tensor count: a prefix ending exactly after the vocabulary or after a
    # tensor's data is a well-formed file with fewer tensors (undetectable; see docs/formats/ggml-legacy.md)
    boundaries = set()
    if fmt == "ggml":
        boundaries = {t.offset + t.nbytes for t in full.tensors.values()}
        boundaries.add(min((t.header_offset for t in full.tensors.values()), default=len(data)))
    for n in range(len(data)):
        try:
            harness.EXERCISE[fmt](data[:n])
        except FormatError:
            continue
        # only trailing padding may be cut from a file and still parse
        assert n >= end or n in boundaries, f"prefix of {n} bytes (data ends at {end}) parsed"


@pytest.mark.parametrize("fmt,path", _all("seed-"), ids=lambda v: getattr(v, "name", v))
def test_random_corruptions(fmt, path):
    data = path.read_bytes()
    rng = np.random.default_rng(len(data))
    for _ in range(300):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            b[i] = int(rng.integers(256)) if rng.random() < 0.7 else b[i] ^ 0xFF
        try:
            harness.EXERCISE[fmt](bytes(b))
        except GGSpecError:
            pass
