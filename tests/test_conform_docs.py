"""Tables in the docs that implementers copy: checked against ggml and the registry."""

import re
from pathlib import Path

import pytest

from ggspec.reference import types as T

DOCS = Path(__file__).parent.parent / "docs"


def _gguf_type_rows():
    text = (DOCS / "formats" / "gguf.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\(?\w+\)?) \| ([\d-]+) \| ([\d-]+) \|", text, re.M)
    return [(int(i), n, b, s) for i, n, b, s in rows]


def test_gguf_md_type_table_matches_the_registry():
    rows = _gguf_type_rows()
    assert [r[0] for r in rows] == list(range(T.GGML_TYPE_COUNT))
    for i, name, b, s in rows:
        t = T.get_type(i)
        if t.removed:
            assert name == f"({t.name})" and b == s == "-"
        else:
            assert (name, int(b), int(s)) == (t.name, t.block_size, t.type_size)


@pytest.mark.oracle
def test_gguf_md_type_table_matches_ggml(oracle):
    for i, name, b, s in _gguf_type_rows():
        tr = oracle.traits(i)
        if b == "-":
            assert tr["blck_size"] == 0, i
        else:
            assert (tr["type_name"].upper(), tr["blck_size"], tr["type_size"]) == (name.upper(), int(b), int(s))


def test_iquants_md_points_at_the_tables_and_float_md_states_the_ue4m3_order():
    iq = (DOCS / "formats" / "iquants.md").read_text()
    assert "vectors/tables/" in iq and "signs[4*ib + l] & (1 << (4*h + j))" in iq
    fl = (DOCS / "formats" / "float.md").read_text()
    assert "whole byte" in fl and "240" in fl


@pytest.mark.oracle
def test_ue4m3_whole_byte_zero_test_then_sign_drop(oracle):
    """NVFP4 block: ggml_ue4m3_to_fp32(0xFF) = 240 (E4M3 480, halved), 0x7F and 0x80 = 0, 0x38 = 0.5;
    every weight is e2m1 code 2 (doubled table value 2), so y = 2 * d."""
    import numpy as np
    qs = bytes([0x22] * 32)                       # e2m1 code 2 (doubled table value 2) everywhere
    y = oracle.to_float("NVFP4", bytes([0xFF, 0x7F, 0x80, 0x38]) + qs, 64)
    assert np.all(y[:16] == 480.0) and np.all(y[16:48] == 0.0) and np.all(y[48:] == 1.0)
