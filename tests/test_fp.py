"""fp16 / bf16 conversions against ggml, exhaustively where the domain is small."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ggspec.conformance.compare import assert_bits_equal
from ggspec.reference import fp


def test_f16_known_values():
    h = np.array([0x3C00, 0xC000, 0x0001, 0x7C00, 0x8000], np.uint16)
    got = fp.f16_to_f32(h)
    assert got[0] == 1.0 and got[1] == -2.0 and got[2] == 2.0**-24 and np.isposinf(got[3])
    assert np.signbit(got[4]) and got[4] == 0


def test_f32_to_f16_rounds_half_to_even_and_canonicalises_nan():
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 65520.0, np.nan], np.float32)
    assert list(fp.f32_to_f16(x)) == [0x3C00, 0x3C02, 0x7C00, 0x7E00]


@pytest.mark.oracle
def test_f16_to_f32_exhaustive(oracle):
    h = np.arange(65536, dtype=np.uint32).astype("<u2")
    assert_bits_equal(fp.f16_to_f32(h), oracle.to_float("F16", h.tobytes(), h.size), "F16 to_float")


@pytest.mark.oracle
def test_bf16_to_f32_exhaustive(oracle):
    h = np.arange(65536, dtype=np.uint32).astype("<u2")
    assert_bits_equal(fp.bf16_to_f32(h), oracle.to_float("BF16", h.tobytes(), h.size), "BF16 to_float")


@pytest.mark.oracle
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=512))
def test_f32_to_f16_and_bf16_any_bits(oracle, words):
    x = np.array(words, dtype=np.uint32).view(np.float32)
    assert fp.f32_to_f16(x).astype("<u2").tobytes() == oracle.quantize("F16", x[None], None)
    assert fp.f32_to_bf16(x).astype("<u2").tobytes() == oracle.quantize("BF16", x[None], None)


@pytest.mark.oracle
def test_f32_to_f16_near_every_f16_boundary(oracle):
    # every fp16 value and the float32 neighbours of the midpoints between consecutive fp16 values
    h = np.arange(0, 0x7C00, dtype=np.uint32).astype(np.uint16)
    v = fp.f16_to_f32(h).astype(np.float64)
    mid = ((v[:-1] + v[1:]) / 2).astype(np.float32)
    cand = np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(0))])
    cand = np.concatenate([cand, -cand]).astype(np.float32)
    assert fp.f32_to_f16(cand).astype("<u2").tobytes() == oracle.quantize("F16", cand[None], None)


def test_nearest_int_is_half_to_even():
    assert [fp.nearest_int(v) for v in (0.5, 1.5, 2.5, -0.5, -1.5, 3.7, -3.7)] == [0, 2, 2, 0, -2, 4, -4]
