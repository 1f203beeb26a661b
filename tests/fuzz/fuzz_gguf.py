#!/usr/bin/env python3
"""atheris fuzzer for the container readers (coverage-guided, libFuzzer underneath).

    pip install atheris
    python tests/fuzz/fuzz_gguf.py [gguf|ggml] -max_total_time=600 -workers=1 \
        -artifact_prefix=tests/fuzz/crashes/ tests/fuzz/work-gguf tests/fuzz/corpus/gguf

libFuzzer arguments pass through (the first directory is where it writes new inputs; the others are
read as seeds). A crash is any exception other than a ggspec error (GGSpecError): the input that
caused it is written to -artifact_prefix. Interesting inputs worth keeping are copied to
tests/fuzz/corpus/<format>/fuzz-<sha1 prefix>.<ext>; tests/fuzz/test_corpus.py replays them.
-merge=1 and -jobs=N make libFuzzer re-run argv[0] itself: run the script as an executable with the
virtualenv's python first on PATH (./tests/fuzz/fuzz_gguf.py ...), not as "python tests/fuzz/...".
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FMT = "gguf"
if len(sys.argv) > 1 and sys.argv[1] in ("gguf", "ggml"):
    FMT = sys.argv.pop(1)

with atheris.instrument_imports():
    import ggspec.reference.gguf  # noqa: F401
    import ggspec.reference.fp  # noqa: F401
    import ggspec.reference.legacy  # noqa: F401
    if FMT == "ggml":
        import ggspec.reference.ggml_legacy  # noqa: F401
    import gguf_harness as harness

from ggspec.errors import GGSpecError  # noqa: E402

RUN = harness.EXERCISE[FMT]


def TestOneInput(data: bytes) -> None:
    try:
        RUN(data)
    except GGSpecError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
