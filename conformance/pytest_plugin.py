"""pytest plugin: the golden vectors as test items for another project's CI.

Installed with ggspec (entry point ``pytest11``); inactive unless asked:

    pytest --ggspec-impl=mypkg.ggml:make_impl [--ggspec-types=Q4_K,Q6_K] [--ggspec-vectors=DIR]

adds one test item per (implementation, vector case): ``ggspec[<impl>-<TYPE>-<op>-tc<tcId>]``.
A case the implementation does not support is skipped with that reason; a mismatch fails with
the first differing index (float32 bits) or byte offset. A difference only in NaN sign/payload or
zero sign bits (``nan-bits``) passes with a warning unless ``--ggspec-strict``.
"""

from __future__ import annotations

import numpy as np
import pytest


def pytest_addoption(parser):
    g = parser.getgroup("ggspec", "ggspec golden vectors")
    g.addoption("--ggspec-impl", action="append", default=[], metavar="SPEC",
                help="run the golden vectors against this implementation (module:factory, a builtin name "
                     "such as reference/libggml/gguf-py, or an entry point of group ggspec.implementations)")
    g.addoption("--ggspec-types", default="", metavar="TYPES", help="comma-separated ggml type names (default: all)")
    g.addoption("--ggspec-vectors", default=None, metavar="DIR", help="vector directory (default: the embedded set)")
    g.addoption("--ggspec-strict", action="store_true", default=False,
                help="fail on nan-bits differences too (only NaN sign/payload or zero sign bits differ)")


class VectorMismatch(AssertionError):
    pass


class VectorItem(pytest.Item):
    def __init__(self, *, impl, vf, case, **kwargs):
        super().__init__(**kwargs)
        self.impl, self.vf, self.case = impl, vf, case

    def runtest(self):
        from ..reference.types import get_type
        from . import runner
        t = get_type(self.vf.type)
        c = self.case
        if c.op == "dequantize":
            if not runner._supports(self.impl, "dequantize", t):
                pytest.skip(f"{self.impl.name} does not support dequantize for {t.name}")
            kind, err = runner.deq_verdict(self.impl, t, c, c.raw, c.n, c.expected, "")
        else:
            op = "quantize+imatrix" if c.imatrix is not None else "quantize"
            if not runner._supports(self.impl, op, t):
                pytest.skip(f"{self.impl.name} does not support {op} for {t.name}")
            kind, err = runner.q_verdict(self.impl, t, c)
            if err is None and c.dequantized is not None and runner._supports(self.impl, "dequantize", t):
                kind, err = runner.deq_verdict(self.impl, t, c, c.expected, c.x.size, c.dequantized,
                                               " (dequantize of the expected blocks)")
        if kind == "nan-bits" and not self.config.getoption("ggspec_strict"):
            import warnings
            warnings.warn(f"ggspec nan-bits: {t.name}: {err}", UserWarning)
            return
        if err:
            raise VectorMismatch(f"{t.name}: {err}; {c.comment} {c.flags}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, VectorMismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.vf.path, None, self.name


def pytest_collection_modifyitems(session, config, items):
    specs = config.getoption("ggspec_impl")
    if not specs:
        return
    from ..reference.types import get_type
    from . import adapters, vectors
    vfs = vectors.load_all(config.getoption("ggspec_vectors"))
    wanted = {get_type(s).name for s in config.getoption("ggspec_types").split(",") if s.strip()}
    for spec in specs:
        impl = adapters.get_implementation(spec)
        for vf in sorted(vfs.values(), key=lambda v: v.ggml_type_id):
            if wanted and vf.type not in wanted:
                continue
            for case in vf.cases():
                op = case.op if case.op == "dequantize" else (
                    "quantize+imatrix" if case.imatrix is not None else "quantize")
                name = f"ggspec[{impl.name}-{vf.type}-{op}-tc{case.tcId}]"
                items.append(VectorItem.from_parent(session, name=name, impl=impl, vf=vf, case=case))
