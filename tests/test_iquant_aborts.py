"""Where ggml aborts in an i-quant search (GGML_ASSERT(scale >= 0), or GGML_ABORT on a point off the
grid), ggspec raises; where it
returns bytes, ggspec returns the same bytes. ggml runs in a child process, since an abort kills it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ggspec import accel, reference
from ggspec.errors import GGSpecError

GRID_IQ = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]

_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from ggspec.conformance import libggml
    x = np.load(sys.argv[1]); im = np.load(sys.argv[2])
    sys.stdout.buffer.write(libggml.load().quantize(sys.argv[3], x, im))
""")


def _cases():
    rng = np.random.default_rng(77)
    x = rng.standard_normal((2, 512)).astype(np.float32)
    inf_im = rng.random(512).astype(np.float32)
    inf_im[40] = np.inf                                   # one infinite importance weight
    huge_x = x.copy()
    huge_x[0, 3] = 3e38                                   # sums overflow to inf
    return {"inf-imatrix": (x, inf_im), "huge-x": (huge_x, rng.random(512).astype(np.float32))}


@pytest.mark.oracle
@pytest.mark.parametrize("case", sorted(_cases()))
@pytest.mark.parametrize("name", GRID_IQ)
def test_abort_or_same_bytes(oracle, tmp_path, name, case):
    x, im = _cases()[case]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "im.npy", im)
    p = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "x.npy"), str(tmp_path / "im.npy"), name],
                       capture_output=True, timeout=300)
    impls = {"reference": lambda: reference.quantize(name, x, im),
             "numpy": lambda: accel.backend("numpy").quantize(name, x, im)}
    if p.returncode != 0:                                  # ggml aborted (SIGABRT: -6)
        assert p.returncode == -6 and b"ggml-quants.c" in p.stderr, p.stderr[:500]   # GGML_ASSERT / GGML_ABORT
        for impl, fn in impls.items():
            with pytest.raises(GGSpecError):
                fn()
    else:
        for impl, fn in impls.items():
            assert fn() == p.stdout, f"{impl}: bytes differ from ggml's"
