"""The pytest plugin turns vectors into test items for other projects (run through pytester)."""

import pytest

pytest_plugins = ["pytester"]

BROKEN = '''
import numpy as np
from ggspec import reference

class Broken:
    name = "broken"
    def supports(self, op, t):
        return t.name == "F16" and op != "quantize+imatrix"
    def dequantize(self, t, raw, n):
        y = reference.dequantize(t, raw, n).copy()
        y[np.isnan(y)] = 0.0          # the defect: NaNs flushed to zero
        return y
    def quantize(self, t, x, imatrix):
        return reference.quantize(t, x, imatrix)

def make():
    return Broken()
'''


def test_plugin_inactive_without_option(pytester):
    pytester.makepyfile(test_x="def test_one():\n    assert True\n")
    res = pytester.runpytest()
    res.assert_outcomes(passed=1)


def test_plugin_passes_the_reference_and_catches_a_defect(pytester):
    pytester.makepyfile(brokenimpl=BROKEN)
    pytester.syspathinsert()
    res = pytester.runpytest("--ggspec-impl=reference",
                             "--ggspec-impl=brokenimpl:make", "--ggspec-types=F16", "-q")
    outcomes = res.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1           # the NaN-flushing implementation fails
    assert outcomes.get("passed", 0) >= 40          # reference and the defect-free F16 cases pass
    res.stdout.fnmatch_lines(["*ggspec[[]broken-F16-dequantize-tc*"])
    assert "ggspec[reference-F16" not in "\n".join(l for l in res.outlines if "FAILED" in l)
