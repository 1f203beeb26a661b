"""Exact comparison of float32 outputs (uint32 views) and of quantized bytes."""

from __future__ import annotations

import numpy as np


def bits(a) -> np.ndarray:
    """uint32 view of float32 values: the bit-exact comparison used everywhere."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def first_float_mismatch(got, expected):
    """None when the uint32 views are equal, else (index, got_bits, expected_bits, n_differing)."""
    g, e = bits(got).reshape(-1), bits(expected).reshape(-1)
    if g.shape != e.shape:
        return (min(g.size, e.size), None, None, abs(g.size - e.size))
    bad = np.flatnonzero(g != e)
    if bad.size == 0:
        return None
    i = int(bad[0])
    return (i, int(g[i]), int(e[i]), int(bad.size))


def first_byte_mismatch(got: bytes, expected: bytes):
    """None when equal, else (offset, got_byte, expected_byte, n_differing)."""
    if len(got) != len(expected):
        return (min(len(got), len(expected)), None, None, abs(len(got) - len(expected)))
    if got == expected:
        return None
    a = np.frombuffer(got, np.uint8)
    b = np.frombuffer(expected, np.uint8)
    bad = np.flatnonzero(a != b)
    i = int(bad[0])
    return (i, int(a[i]), int(b[i]), int(bad.size))


def assert_bits_equal(got, expected, what=""):
    m = first_float_mismatch(got, expected)
    if m is None:
        return
    i, g, e, n = m
    if g is None:
        raise AssertionError(f"{what}: lengths differ ({np.size(got)} vs {np.size(expected)})")
    gf = np.array([g], np.uint32).view(np.float32)[0]
    ef = np.array([e], np.uint32).view(np.float32)[0]
    raise AssertionError(f"{what}: {n} values differ; first at index {i}: got {g:#010x} ({gf!r}) "
                         f"expected {e:#010x} ({ef!r})")


def assert_bytes_equal(got: bytes, expected: bytes, what="", block_bytes: int | None = None):
    m = first_byte_mismatch(got, expected)
    if m is None:
        return
    i, g, e, n = m
    if g is None:
        raise AssertionError(f"{what}: lengths differ ({len(got)} vs {len(expected)})")
    where = f" (block {i // block_bytes}, byte {i % block_bytes} of the block)" if block_bytes else ""
    raise AssertionError(f"{what}: {n} bytes differ; first at offset {i}{where}: got {g:#04x} expected {e:#04x}")


# ------------------------------------------------------------------------------------------------
# severity: "nan-bits" (the bits differ, every value compares equal)

def _uint_view(a, width: int) -> np.ndarray:
    if width == 2:
        return np.ascontiguousarray(a, dtype=np.float16).view(np.uint16).reshape(-1)
    return bits(a).reshape(-1)


def float_diff(got, expected, width: int = 4) -> "dict | None":
    """Compare float outputs bit for bit (``width`` 4: float32, 2: float16).

    None when the bit patterns are equal. Otherwise a dict with ``kind`` = ``"nan-bits"`` when every
    differing value compares equal as a number, NaN taken as equal to NaN (only a NaN's sign or
    payload, or a zero's sign, differs), else ``"fail"``; with ``index``, ``got``, ``expected`` (bit
    patterns of the first differing value that decides the kind), ``n`` (values whose bits differ),
    ``k_nan`` (of those, the NaN/zero-sign ones) and ``size``. A length mismatch is a ``fail`` with
    ``got`` None.
    """
    ft = np.float16 if width == 2 else np.float32
    g = _uint_view(got, width)
    e = _uint_view(expected, width)
    if g.shape != e.shape:
        return {"kind": "fail", "index": min(g.size, e.size), "got": None, "expected": None,
                "n": abs(g.size - e.size), "k_nan": 0, "size": e.size, "got_size": g.size}
    bad = np.flatnonzero(g != e)
    if bad.size == 0:
        return None
    gv, ev = g[bad].view(ft), e[bad].view(ft)
    benign = (np.isnan(gv) & np.isnan(ev)) | ((gv == 0) & (ev == 0))
    real = np.flatnonzero(~benign)
    i = int(bad[real[0]]) if real.size else int(bad[0])
    return {"kind": "fail" if real.size else "nan-bits", "index": i, "got": int(g[i]), "expected": int(e[i]),
            "n": int(bad.size), "k_nan": int(benign.sum()), "size": int(e.size)}


def describe_bits(b: "int | None", width: int = 4) -> str:
    if b is None:
        return "-"
    if width == 2:
        return f"{b:#06x} ({np.array([b], np.uint16).view(np.float16)[0]!r})"
    return f"{b:#010x} ({np.array([b], np.uint32).view(np.float32)[0]!r})"
