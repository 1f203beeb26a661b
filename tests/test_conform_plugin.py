"""The pytest plugin's severity: a nan-bits difference passes with a warning unless --ggspec-strict."""

pytest_plugins = ["pytester"]

NANSIGN = '''
import numpy as np
from ggspec import reference

class NanSign:
    name = "nansign"
    def supports(self, op, t):
        return t.name == "F16" and op == "dequantize"
    def dequantize(self, t, raw, n):
        y = np.array(reference.dequantize(t, raw, n), np.float32)
        y.view(np.uint32)[np.isnan(y)] ^= 0x80000000       # only NaN signs differ
        return y
    def quantize(self, t, x, imatrix):
        raise NotImplementedError

def make():
    return NanSign()
'''


def test_nan_bits_pass_with_a_warning_and_fail_with_strict(pytester):
    pytester.makepyfile(nansignimpl=NANSIGN)
    pytester.syspathinsert()
    res = pytester.runpytest("--ggspec-impl=nansignimpl:make", "--ggspec-types=F16", "-q", "-W", "default")
    o = res.parseoutcomes()
    assert o.get("failed", 0) == 0 and o.get("passed", 0) >= 3
    res.stdout.fnmatch_lines(["*ggspec nan-bits: F16*"])
    res = pytester.runpytest("--ggspec-impl=nansignimpl:make", "--ggspec-types=F16", "-q", "--ggspec-strict")
    assert res.parseoutcomes().get("failed", 0) >= 1
