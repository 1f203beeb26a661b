"""The type registry against ggml's own type_traits and quantize_requires_imatrix."""

from fractions import Fraction

import pytest

from ggspec.errors import UnsupportedTypeError
from ggspec.reference.types import GGML_TYPE_COUNT, LIVE_TYPES, TYPES, get_type, live_type


def test_every_enum_value_has_one_row():
    assert [t.id for t in TYPES] == list(range(GGML_TYPE_COUNT))
    assert len({t.name for t in TYPES}) == GGML_TYPE_COUNT
    assert len(LIVE_TYPES) == 35


def test_bpw_is_exact_fraction():
    q4k = get_type("Q4_K")
    assert isinstance(q4k.bpw, Fraction)
    assert q4k.bpw == Fraction(9, 2)          # 144 bytes * 8 / 256
    assert get_type("Q2_K").bpw == Fraction(21, 8)  # 2.625, not the 2.5625 some model cards print
    assert get_type("Q6_K").bpw == Fraction(105, 16)


@pytest.mark.parametrize("key", ["Q4_K", "q4_k", "GGML_TYPE_Q4_K", 12, " q4_K "])
def test_lookup_spellings(key):
    assert get_type(key).id == 12


@pytest.mark.parametrize("key", [43, -1, "Q4_9", "", 3.0, None, True])
def test_unknown_types_raise_typed_error(key):
    with pytest.raises(UnsupportedTypeError):
        get_type(key)


def test_removed_types_are_known_but_not_live():
    assert get_type(4).removed and get_type(4).name == "Q4_2"
    with pytest.raises(UnsupportedTypeError, match="removed"):
        live_type("Q4_0_4_4")


@pytest.mark.oracle
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_row_matches_ggml_type_traits(oracle, t):
    tr = oracle.traits(t.id)
    if t.removed:
        assert tr["blck_size"] == 0 and tr["type_size"] == 0
        return
    assert tr["type_name"] == t.ggml_name
    assert tr["blck_size"] == t.block_size
    assert tr["type_size"] == t.type_size
    assert tr["is_quantized"] == (t.block_size > 1)
    assert tr["to_float"] == t.to_float
    assert tr["from_float_ref"] == t.ref_quantizer
    assert oracle.requires_imatrix(t.id) == t.requires_imatrix
