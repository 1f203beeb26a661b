"""The i-quant constant tables (reference/grids.py): sizes and structural properties.

No oracle needed. Each property would fail on a mistyped or truncated table.
"""

from __future__ import annotations

import pytest

from ggspec.reference import grids

# name -> (entries, bytes per entry, allowed byte values, index bits the block format stores)
GRIDS = {
    "iq2xxs_grid": (256, 8, {0x08, 0x19, 0x2B}, 8),
    "iq2xs_grid": (512, 8, {0x08, 0x19, 0x2B}, 9),
    "iq2s_grid": (1024, 8, {0x08, 0x19, 0x2B}, 10),
    "iq3xxs_grid": (256, 4, {0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3E}, 8),
    "iq3s_grid": (512, 4, {1, 3, 5, 7, 9, 11, 13, 15}, 9),
    "iq1s_grid": (2048, 8, {0xFF, 0x00, 0x01}, 11),
}


def _bytes_of(entry: int, nbytes: int) -> list[int]:
    return list(entry.to_bytes(nbytes, "little"))


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_grid_size_matches_index_width(name):
    n, nbytes, _, bits = GRIDS[name]
    table = getattr(grids, name)
    assert len(table) == n == 1 << bits
    assert all(0 <= e < 1 << (8 * nbytes) for e in table)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_grid_bytes_take_only_the_format_levels(name):
    n, nbytes, allowed, _ = GRIDS[name]
    seen = set()
    for e in getattr(grids, name):
        seen.update(_bytes_of(e, nbytes))
    assert seen == allowed


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_grid_entries_are_distinct(name):
    table = getattr(grids, name)
    assert len(set(table)) == len(table)


@pytest.mark.parametrize("name", ["iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq3xxs_grid", "iq3s_grid"])
def test_unsigned_grids_are_listed_in_increasing_order(name):
    table = getattr(grids, name)
    assert list(table) == sorted(table)


def test_iq1s_grid_is_listed_in_increasing_order_of_its_level_code():
    # weight j's value -1/0/+1 is level 0/1/2 at bits 2j..2j+1 (the order ggml's quantizer tables use)
    level = {0xFF: 0, 0x00: 1, 0x01: 2}
    codes = [sum(level[b] << (2 * j) for j, b in enumerate(_bytes_of(e, 8))) for e in grids.iq1s_grid]
    assert codes == sorted(codes)


def test_ksigns_are_seven_bits_plus_parity():
    assert len(grids.ksigns_iq2xs) == 128
    for code, s in enumerate(grids.ksigns_iq2xs):
        assert s & 127 == code
        assert bin(s).count("1") % 2 == 0  # bit 7 makes the number of minus signs even


def test_kmask_is_one_bit_per_weight():
    assert list(grids.kmask_iq2xs) == [1 << j for j in range(8)]


def test_kvalues_iq4nl_are_sixteen_increasing_int8():
    v = list(grids.kvalues_iq4nl)
    assert len(v) == 16
    assert all(-128 <= a < b <= 127 for a, b in zip(v, v[1:]))


def test_iq1_deltas():
    assert grids.IQ1S_DELTA == grids.IQ1M_DELTA == 0.125
    assert grids.NGRID_IQ1S == len(grids.iq1s_grid)
