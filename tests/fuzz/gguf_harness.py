"""What the corpus test and the atheris fuzzer run on each input: parse, then touch every tensor.

Contract: a reader given any bytes either returns a result whose tensors can be read, or raises a
ggspec error (FormatError for malformed files). Any other exception is a bug.
"""

from __future__ import annotations

from ggspec.errors import GGSpecError

MAX_DEQUANT_ELEMENTS = 1 << 12


def exercise_gguf(data: bytes):
    from ggspec.reference import gguf as G
    g = G.parse(data)
    for t in g.tensors.values():
        assert t.offset + t.nbytes <= len(data)
        assert len(t.raw) == t.nbytes
        if t.n_elements <= MAX_DEQUANT_ELEMENTS:
            try:
                t.dequantize()
            except GGSpecError:
                pass
    return g


def exercise_ggml(data: bytes):
    from ggspec.reference import ggml_legacy as L
    m = L.parse(data)
    for t in m.tensors.values():
        assert t.offset + t.nbytes <= len(data)
        assert len(t.raw) == t.nbytes
        if t.n_elements <= MAX_DEQUANT_ELEMENTS:
            try:
                t.dequantize()
            except GGSpecError:
                pass
    return m


EXERCISE = {"gguf": exercise_gguf, "ggml": exercise_ggml}
