"""Whole-chunk dequantizers: ``DEQ[name](b, out)`` with ``b`` the (nb, type_size) uint8 blocks of a
chunk (C-contiguous) and ``out`` its (nb, block_size) float32 output (C-contiguous), written in place.

Exactness: block fields are decoded with integer ops; every float op is one float32 numpy ufunc in
ggml's order (``d * sc`` before ``* q``, the product before ``- m``). Most products here are exact
(an fp16 scale has 11 significant bits, the integer factors a few), so only the final add or
subtract rounds, but the order is kept anyway so that Inf and NaN scales give ggml's bits.

Speed. Measured costs on the 2-core dev machine (64k-value chunk): ~1 us per numpy call, a
contiguous float32 pass ~5-8 us, a per-row scale broadcast over rows of 16-32 ~20 us (per-row
overhead), a gather ~0.7 ns per item, u8 left shifts and array-valued shifts unvectorized. Hence:

* the float stage is a cast of the int8/uint8 quants into ``out`` and one contiguous multiply (and
  subtract) by the per-sub-block scales repeated to one per value (``_scale``): cheaper than the
  broadcast. Per-sub-block scales are made the same way (``_dmul``);
* integer decoding runs on whole contiguous arrays or uint64 words (SWAR), with scalar shifts; bit
  planes are computed plane by plane and moved into output order as 16/32-byte items (``V16``,
  ``V32``), never by numpy ops over short strided rows;
* lookups gather several values per item: 4-bit codes four values per uint16 of two packed bytes
  (IQ4_NL/IQ4_XS/MXFP4/NVFP4), grids 8 int8 values per item with the sign already applied (``db *
  (-g)`` is the same float as ``-(db * g)`` for every finite or infinite ``db``; blocks with a NaN
  scale, where ggml's sign flip shows in the NaN's sign bit, are redone by the plain path ``_p_*``),
  IQ1_S/IQ1_M ``8 * (grid + delta)`` as int8 (``(dl * 0.125f) * that`` is exactly ``dl * (grid +
  delta)``), Q5 high bits and Q2_0 crumbs one byte -> 8 or 4 values; ``np.take`` in clip mode;
* scratch arrays are per thread and reused across chunks (``_buf``).

Add/subtract operands keep ggml's order; where x86's NaN-operand rule could differ from numpy's
(Q4_1/Q5_1 ``x*d + m`` with a NaN ``m``), those blocks are redone by the plain path.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ...reference import grids
from .common import E8M0_HALF_TABLE, F16_TABLE, F32, I8, U8, U16, U32, UE4M3_TABLE, f16_field

U64 = np.uint64

# --------------------------------------------------------------------------------------------------
# per-thread scratch

_TLS = threading.local()


def _buf(name: str, shape, dtype) -> np.ndarray:
    """A per-thread scratch array (contents undefined), reused by later calls with the same key."""
    cache = _TLS.__dict__
    key = (name, shape, dtype)
    a = cache.get(key)
    if a is None:
        if len(cache) > 256:                     # many ragged chunk sizes: start over
            cache.clear()
        a = cache[key] = np.empty(shape, dtype)
    return a


def _rep(s, r: int) -> np.ndarray:
    """Per-row scales (rows, ...) -> each repeated ``r`` times, flat: one scale per output element."""
    return np.repeat(s.reshape(-1), r)


def _scale(q, s, out, r: int) -> None:
    """out = float(q) * s with one scale per ``r`` consecutive values (float(q) exact: |q| < 2**24).

    A cast, then a contiguous multiply by the repeated scales: numpy's broadcast of a per-row scalar
    over rows of 16-32 costs more than the repeat."""
    o = out.reshape(-1)
    np.copyto(o, q.reshape(-1))
    np.multiply(o, _rep(s, r), out=o)


def _dmul(d, x) -> np.ndarray:
    """``d * x`` for a per-block scale d (nb, 1) and per-sub-block integers or floats x (nb, ...) ->
    float32 (nb, k): d repeated, then one flat multiply (a broadcast over rows of 8-16 is slow)."""
    nb = d.shape[0]
    x = np.ascontiguousarray(x).reshape(nb, -1)
    r = np.repeat(d.reshape(-1), x.shape[1])
    np.multiply(r, x.reshape(-1), out=r)
    return r.reshape(x.shape)


def _scale_sub(q, s, m, out, r: int) -> None:
    """out = float(q) * s - m, scales per ``r`` consecutive values."""
    o = out.reshape(-1)
    np.copyto(o, q.reshape(-1))
    np.multiply(o, _rep(s, r), out=o)
    np.subtract(o, _rep(m, r), out=o)


def _redo_nan(b, out, scale, slow) -> None:
    """Recompute with ``slow`` the blocks whose ``scale`` (nb, ...) has a NaN."""
    bad = np.isnan(scale.reshape(scale.shape[0], -1)).any(axis=1)
    if bad.any():
        i = np.flatnonzero(bad)
        tmp = np.empty((i.size, out.shape[1]), F32)
        slow(np.ascontiguousarray(b[i]), tmp)
        out[i] = tmp


def _f16(b, off, k=1):
    """``k`` (1 or 2) consecutive little-endian fp16 fields at byte ``off`` -> float32 (nb, k)."""
    if k == 1:
        return np.take(F16_TABLE, b[:, off:off + 2].view("<u2"), mode="clip")
    w = np.empty((b.shape[0], 1), "<u4")         # both fields as one item: a contiguous index
    np.copyto(w, b[:, off:off + 4].view("<u4"))
    return np.take(F16_TABLE, w.view("<u2"), mode="clip")


# --------------------------------------------------------------------------------------------------
# tables

KV_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=I8)
KV_IQ4NL = np.array(grids.kvalues_iq4nl, dtype=I8)


def _grid(table, nbytes):
    words = np.array(table, dtype=np.uint64 if nbytes == 8 else np.uint32)
    return words.astype("<u8" if nbytes == 8 else "<u4").view(U8).reshape(-1, nbytes)


G_IQ2XXS = _grid(grids.iq2xxs_grid, 8).astype(F32)        # (256, 8) magnitudes as float
G_IQ2XS = _grid(grids.iq2xs_grid, 8).astype(F32)          # (512, 8)
G_IQ2S = _grid(grids.iq2s_grid, 8).astype(F32)            # (1024, 8)
G_IQ3XXS = _grid(grids.iq3xxs_grid, 4).astype(F32)        # (256, 4)
G_IQ3S = _grid(grids.iq3s_grid, 4).astype(F32)            # (512, 4)

# sign bit masks: a sign byte (bit j negates weight j) -> 8 uint32 masks (0x80000000 or 0)
_BYTE_SIGNS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(U32) << U32(31)   # (256, 8)
KSIGN_MASKS = _BYTE_SIGNS[np.array(grids.ksigns_iq2xs, dtype=np.intp)]               # (128, 8)

# --- int8 tables, 8 bytes (one uint64) per entry ----------------------------------------------------
_V4, _V8, _V16, _V32, _V64 = (np.dtype(f"V{k}") for k in (4, 8, 16, 32, 64))   # k-byte items
_ONES = U64(0x0101010101010101)
# a sign byte -> 8 bytes 0xFF (bit set: negate) or 0x00
BYTE_NEG = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(U8) * U8(0xFF)      # (256, 8)
BYTE_NEG64 = np.ascontiguousarray(BYTE_NEG).view("<u8")[:, 0].astype(U64)
KSIGN_NEG64 = BYTE_NEG64[np.array(grids.ksigns_iq2xs, dtype=np.intp)]                   # (128,)


def _neg8(g, m):
    """Per byte: g, or -g where m is 0xFF (g >= 1 in every grid byte, so no carry crosses a byte)."""
    return (g ^ m) + (m & _ONES)


def _grid64(table):
    return np.ascontiguousarray(_grid(table, 8)).view("<u8")[:, 0].astype(U64)


for _t in (grids.iq2xxs_grid, grids.iq2xs_grid, grids.iq2s_grid, grids.iq3xxs_grid, grids.iq3s_grid):
    assert min(_grid(_t, 8 if _t is not grids.iq3xxs_grid and _t is not grids.iq3s_grid else 4).ravel()) >= 1

# IQ2_XXS: (grid << 7 | sign code) -> signed int8 x 8
_G = _grid64(grids.iq2xxs_grid)
T_IQ2XXS = _neg8(np.repeat(_G, 128), np.tile(KSIGN_NEG64, 256))                         # (32768,)
# IQ2_XS: the uint16 field itself (grid = q & 511, sign code = q >> 9) -> signed int8 x 8
_G = _grid64(grids.iq2xs_grid)
_Q = np.arange(65536)
T_IQ2XS = _neg8(_G[_Q & 511], KSIGN_NEG64[_Q >> 9])                                     # (65536,)
G64_IQ2S = _grid64(grids.iq2s_grid)                                                      # (1024,)
G32_IQ3XXS = np.array(grids.iq3xxs_grid, dtype=np.uint32).astype("<u4")                  # (256,)
# two 7-bit sign codes (14 bits) -> their two 8-byte negation masks (one 16-byte item)
_C14 = np.arange(16384)
KSIGN2_NEG = np.ascontiguousarray(np.stack([KSIGN_NEG64[_C14 & 127], KSIGN_NEG64[_C14 >> 7]], axis=1)).view(_V16)[:, 0].copy()
# IQ3_XXS: two grid indices as a little-endian uint16 -> their 8 values (one uint64)
G64P_IQ3XXS = (G32_IQ3XXS[np.arange(65536) & 255].astype(U64)
               | (G32_IQ3XXS[np.arange(65536) >> 8].astype(U64) << U64(32)))
G32_IQ3S = np.array(grids.iq3s_grid, dtype=np.uint32).astype("<u4")                     # (512,)
# IQ1_S / IQ1_M: 8 * (grid + delta) as int8 (exact: grid in -1..1, delta = +-1/8); rows 0..2047 with
# +delta, 2048..4095 with -delta. dl * (grid + delta) == (dl * 0.125f) * (8 * (grid + delta)) exactly.
_G1 = _grid(grids.iq1s_grid, 8).view(I8).astype(np.int16) * 8
T_IQ1 = np.ascontiguousarray(np.concatenate([_G1 + 1, _G1 - 1]).astype(I8)).view("<u8")[:, 0].astype(U64)
assert grids.IQ1S_DELTA == 0.125

# 4-bit lookups by two packed bytes: w = qs[j] | qs[j+1] << 8 (little-endian uint16) ->
# uint32 (kv[qs[j] & 15], kv[qs[j+1] & 15], kv[qs[j] >> 4], kv[qs[j+1] >> 4]) as int8 bytes
def _pair_table(kv):
    w = np.arange(65536)
    v = np.stack([kv[w & 15], kv[(w >> 8) & 15], kv[(w >> 4) & 15], kv[w >> 12]], axis=1)
    return np.ascontiguousarray(v.astype(I8)).view("<u4")[:, 0].copy()


T2_MXFP4 = _pair_table(KV_MXFP4)
# IQ4_XS scales_h byte -> 4 bytes ((byte >> 2i) & 3) << 4
# IQ2_XS / IQ2_S scale byte -> (0.5f + (b & 15), 0.5f + (b >> 4))
T_HALF_NIB = (F32(0.5) + np.stack([np.arange(256) & 15, np.arange(256) >> 4], axis=1).astype(F32)).astype(F32)
# IQ2_S qh byte -> 4 uint16 (qh << (8 - 2l)) & 0x300
T_QH2S = np.ascontiguousarray(((np.arange(256)[:, None] << (8 - 2 * np.arange(4))) & 0x300).astype("<u2")).view("<u8")[:, 0].copy()
# IQ1_M: a scale word's low 12 bits -> 4 floats 2*s+1 for its fields (bits 0-2, 3-5, 6-8, 9-11)
T_IQ1M = (2 * ((np.arange(4096)[:, None] >> (3 * np.arange(4))) & 7) + 1).astype(F32)
# IQ1_S qh -> 4 index high bytes ((qh >> 3l) & 7) | (qh >> 12 & 8), and 2 * ((qh >> 12) & 7) + 1
_Q = np.arange(65536)
T_QH1S = np.ascontiguousarray((((_Q[:, None] >> (3 * np.arange(4))) & 7) | ((_Q[:, None] >> 12) & 8)).astype(U8)).view("<u4")[:, 0].copy()
T_ODD8 = (2 * ((_Q >> 12) & 7) + 1).astype(F32)
T_XSH = np.ascontiguousarray((((np.arange(256)[:, None] >> (2 * np.arange(4))) & 3) << 4).astype(U8)).view("<u4")[:, 0].copy()
T2_IQ4NL = _pair_table(KV_IQ4NL)

# Q5_0 / Q5_1 high bits: a qh byte -> 8 bytes, byte k from bit k: Q5_0 (0x00 if set else 0xF0, so
# that nibble | it is the int8 q - 16), Q5_1 (0x10 if set else 0x00)
_BITS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(U8)
T_Q50H = np.ascontiguousarray((1 - _BITS) * U8(0xF0)).view("<u8")[:, 0].astype(U64)
T_Q51H = np.ascontiguousarray(_BITS * U8(0x10)).view("<u8")[:, 0].astype(U64)
# Q2_0: a byte -> 4 int8 values (crumb k) - 1
_C = (np.arange(256)[:, None] >> (2 * np.arange(4))) & 3
T_Q20 = np.ascontiguousarray((_C - 1).astype(I8)).view("<u4")[:, 0].astype(U32)
# Q1_0: a byte -> 8 uint32 sign masks (bit clear -> flip)
Q1_SIGNS = _BYTE_SIGNS ^ U32(0x80000000)                                                 # (256, 8)

_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)


def _take(table, idx, out):
    """np.take with in-range indices (mode='clip' skips numpy's per-item range error path)."""
    return np.take(table, idx, out=out, mode="clip")


def _mv16(dst, src):
    """Copy (nb, 16) byte rows (any row stride) as one 16-byte item each."""
    dst.view(_V16)[:, 0] = src.view(_V16)[:, 0]


# --------------------------------------------------------------------------------------------------
# legacy

def _q4_split(b, off, name):
    """Low nibbles then high nibbles of the 16 bytes at ``off`` -> uint8 (nb, 32), output order.

    The 16 bytes of each block move once as a 16-byte item into aligned uint64 pairs, are split
    eight at a time, and the halves move back as 16-byte items from contiguous arrays."""
    nb = b.shape[0]
    w = _buf(name + "w", (nb, 2), U64)
    _mv16(w, b[:, off:off + 16])
    t = _buf(name + "t", (nb, 2), U64)
    q = _buf(name + "q", (nb, 32), U8)
    np.bitwise_and(w, _M4, out=t)
    _mv16(q[:, 0:16], t)
    np.right_shift(w, U64(4), out=t)
    np.bitwise_and(t, _M4, out=t)
    _mv16(q[:, 16:32], t)
    return q


def q4_0(b, out):
    d = _f16(b, 0)
    q = _q4_split(b, 2, "q4")
    np.subtract(q, U8(8), out=q)                 # wraps: the int8 view is q - 8
    _scale(q.view(I8), d, out, 32)               # (q - 8) * d


def _p_q41(b, out, off_q, hi_off=None):
    """x*d + m with x86's NaN rule for the add (used for blocks with a NaN m)."""
    d, m = f16_field(b, 0), f16_field(b, 2)
    q = np.empty(out.shape, U8)
    nb = b.shape[0]
    w = np.empty((nb, 2), np.uint64)
    w.view(_V16)[:, 0] = b[:, off_q:off_q + 16].view(_V16)[:, 0]
    t = np.bitwise_and(w, _M4)
    q.view(_V16)[:, 0] = t.view(_V16)[:, 0]
    np.right_shift(w, np.uint64(4), out=t)
    np.bitwise_and(t, _M4, out=t)
    q.view(_V16)[:, 1] = t.view(_V16)[:, 0]
    if hi_off is not None:
        h = np.unpackbits(b[:, hi_off:hi_off + 4], axis=1, bitorder="little")
        np.left_shift(h, 4, out=h)
        np.bitwise_or(q, h, out=q)
    np.multiply(q, d, out=out)                   # q * d
    bad = np.isnan(m[:, 0])
    prod = out[bad].copy() if bad.any() else None
    np.add(out, m, out=out)                      # + m
    if prod is not None:
        out[bad] = np.where(np.isnan(prod), prod, m[bad])


def _x_d_m(q, dm, out):
    """out = x * d + m (per block of 32)."""
    o = out.reshape(-1)
    np.copyto(o, q.reshape(-1))
    np.multiply(o, _rep(dm[:, 0], 32), out=o)
    np.add(o, _rep(dm[:, 1], 32), out=o)


def q4_1(b, out):
    dm = _f16(b, 0, 2)
    _x_d_m(_q4_split(b, 4, "q4"), dm, out)
    _redo_nan(b, out, dm[:, 1:2], lambda bb, oo: _p_q41(bb, oo, 4))


def _q5_high(b, off, table, q):
    """q |= table[qh byte] (8 bytes per qh byte: one per weight)."""
    nb = b.shape[0]
    qh = _buf("q5qh", (nb, 1), U32)
    np.copyto(qh, b[:, off:off + 4].view("<u4"))                   # contiguous index bytes
    h = _buf("q5h", (nb, 4), U64)
    _take(table, qh.view(U8), h)
    np.bitwise_or(q.view(U64), h, out=q.view(U64))


def q5_0(b, out):
    d = _f16(b, 0)
    q = _q4_split(b, 6, "q5")
    _q5_high(b, 2, T_Q50H, q)                    # bit clear -> 0xF0: nibble | that = q - 16 as int8
    _scale(q.view(I8), d, out, 32)


def q5_1(b, out):
    dm = _f16(b, 0, 2)
    q = _q4_split(b, 8, "q5")
    _q5_high(b, 4, T_Q51H, q)
    _x_d_m(q, dm, out)
    _redo_nan(b, out, dm[:, 1:2], lambda bb, oo: _p_q41(bb, oo, 8, 4))


def _q8(b, off, out):
    nb = b.shape[0]
    q = _buf("q8", (nb, 32), I8)
    q.view(_V32)[:, 0] = b[:, off:off + 32].view(_V32)[:, 0]   # contiguous int8
    _scale(q, _f16(b, 0), out, 32)               # qs * d


def q8_0(b, out):
    _q8(b, 2, out)


def q8_1(b, out):
    _q8(b, 4, out)                               # y = qs * d (s is not used)


# --------------------------------------------------------------------------------------------------
# k-quants

_K8 = np.arange(8, dtype=U64).reshape(8, 1)
_K4 = np.array([0, 2, 4, 6], dtype=U64).reshape(4, 1)


def _words(src, name):
    """A contiguous, aligned uint64 copy of the (nb, k) bytes ``src`` (k a multiple of 8), flat."""
    nb, k = src.shape
    w = _buf(name, (nb * k // 8,), U64)
    np.copyto(w.view(U8).reshape(nb, k), src)
    return w


def _crumbs(qs, nb, name):
    """Q2_K/Q3_K/Q6_K/TQ2_0 ``qs`` (nb, 64) -> (nb, 2, 4, 32) uint8 0..3: [h, s, 16g + l] = qs[32h + 16g + l] >> 2s & 3.

    The four shifts run on whole uint64 planes [s, block, h], then 32-byte rows move into place."""
    a = _buf(name + "p", (4, nb * 8), U64)
    np.right_shift(_words(qs, name + "w"), _K4, out=a)
    np.bitwise_and(a, U64(0x0303030303030303), out=a)
    q = _buf(name, (nb, 2, 4, 32), U8)
    q.view(_V32)[:, :, :, 0] = a.view(_V32).reshape(4, nb, 2).transpose(1, 2, 0)
    return q


def _highbits(hm, nb, value, invert=False):
    """(nb, 32) bytes -> (nb, 8, 32) uint8: [k, l] = ``value`` where bit k of hm[l] is set (clear if
    ``invert``), else 0."""
    w = _words(hm, "hw")
    if invert:
        np.invert(w, out=w)
    a = _buf("hp", (8, nb * 4), U64)
    np.right_shift(w, _K8, out=a)
    np.bitwise_and(a, _ONES, out=a)
    np.multiply(a, U64(value), out=a)
    h = _buf("h", (nb, 8, 32), U8)
    h.view(_V32)[:, :, 0] = a.view(_V32).reshape(8, nb).T
    return h


def q2_K(b, out):
    nb = b.shape[0]
    dm = _f16(b, 80, 2)
    sc = _buf("q2s", (nb, 2), U64)               # the 16 scale bytes as aligned words
    _mv16(sc, b[:, 0:16])
    t = _buf("q2t", (nb, 2), U64)
    np.bitwise_and(sc, _M4, out=t)
    dl = _dmul(dm[:, 0:1], t.view(U8))           # d * (sc & 0xF): (nb, 16)
    np.right_shift(sc, U64(4), out=t)
    np.bitwise_and(t, _M4, out=t)
    ml = _dmul(dm[:, 1:2], t.view(U8))           # dmin * (sc >> 4)
    q = _crumbs(b[:, 16:80], nb, "c")
    _scale_sub(q, dl, ml, out, 16)               # dl * q - ml


def q3_K(b, out):
    nb = b.shape[0]
    d = _f16(b, 108)
    # the 16 6-bit scales on uint64 words: sc[j] = low nibble of s[j] (j < 8) or high nibble of
    # s[j - 8], | ((s[8 + j % 4] >> 2 (j // 4)) & 3) << 4
    lo = _buf("q3l", (nb,), U64)
    np.copyto(lo, b[:, 96:104].view("<u8")[:, 0])
    x = _buf("q3x", (nb,), U64)
    np.copyto(x, b[:, 104:108].view("<u4")[:, 0])
    np.multiply(x, U64(0x0000000100000001), out=x)                  # s[8:12] twice
    t = _buf("q3t", (nb,), U64)
    sc = _buf("q3s", (nb, 2), U64)               # sc[0:8], sc[8:16]
    for col, (m_lo, sh_lo, m_hi, sh_hi) in enumerate(((0x03030303, 4, 0x0C0C0C0C << 32, 2),
                                                      (0x30303030, 0, 0xC0C0C0C0 << 32, -2))):
        np.bitwise_and(x, U64(m_hi), out=t)      # bits of j // 4 = 2 col + 1 (high half)
        if sh_hi > 0:
            np.left_shift(t, U64(sh_hi), out=t)
        else:
            np.right_shift(t, U64(-sh_hi), out=t)
        c = sc[:, col]
        np.bitwise_and(x, U64(m_lo), out=c)      # bits of j // 4 = 2 col (low half)
        if sh_lo:
            np.left_shift(c, U64(sh_lo), out=c)
        np.bitwise_or(c, t, out=c)
        if col == 0:
            np.bitwise_and(lo, _M4, out=t)
        else:
            np.right_shift(lo, U64(4), out=t)
            np.bitwise_and(t, _M4, out=t)
        np.bitwise_or(c, t, out=c)
    s8 = sc.view(U8)
    np.subtract(s8, U8(32), out=s8)
    dl = _dmul(d, s8.view(I8))                   # d * (sc - 32)
    q = _crumbs(b[:, 32:96], nb, "c")            # (nb, h, s, 32)
    h = _highbits(b[:, 0:32], nb, 0xFC, invert=True)   # bit 4h + s of hm[l] clear -> 0xFC
    np.bitwise_or(q.reshape(nb, 8, 32), h, out=q.reshape(nb, 8, 32))   # low - (high ? 0 : 4) as int8
    _scale(q.view(I8), dl, out, 16)


def _scale_min_k4(s):
    """get_scale_min_k4 for j = 0..7 on (nb, 12) bytes -> (sc, m), each uint8 (nb, 8), contiguous.

    On uint64 words: bytes 0..7 give sc[0:4], m[0:4] (& 63) and the top bits of sc[4:8], m[4:8];
    bytes 8..11, doubled into one word, give their low/high nibbles."""
    nb = s.shape[0]
    lo = _buf("sml", (nb,), U64)
    np.copyto(lo, s[:, 0:8].view("<u8")[:, 0])
    a = _buf("sma", (nb,), U64)
    np.bitwise_and(lo, U64(0x3F3F3F3F3F3F3F3F), out=a)             # sc[0:4] | m[0:4] << 32
    np.right_shift(lo, U64(2), out=lo)
    np.bitwise_and(lo, U64(0x3030303030303030), out=lo)            # (s[j] >> 6) << 4
    x = _buf("smx", (nb,), U64)
    np.copyto(x, s[:, 8:12].view("<u4")[:, 0])
    np.multiply(x, U64(0x0000000100000001), out=x)                  # s[8:12] twice
    t = _buf("smt", (nb,), U64)
    np.right_shift(x, U64(4), out=t)
    np.bitwise_and(t, U64(0x0F0F0F0F00000000), out=t)              # high nibbles -> m[4:8]
    np.bitwise_and(x, U64(0x000000000F0F0F0F), out=x)              # low nibbles -> sc[4:8]
    np.bitwise_or(x, t, out=x)
    np.bitwise_or(x, lo, out=x)                                    # sc[4:8] | m[4:8] << 32
    sc = _buf("smsc", (nb,), U64)
    m = _buf("smm", (nb,), U64)
    np.left_shift(x, U64(32), out=t)
    np.bitwise_and(a, U64(0xFFFFFFFF), out=sc)
    np.bitwise_or(sc, t, out=sc)                 # sc[0:4] | sc[4:8] << 32
    np.right_shift(a, U64(32), out=m)
    np.bitwise_and(x, U64(0xFFFFFFFF00000000), out=t)
    np.bitwise_or(m, t, out=m)                   # m[0:4] | m[4:8] << 32
    return sc.view(U8).reshape(nb, 8), m.view(U8).reshape(nb, 8)


def _k4_finish(b, q, out):
    dm = _f16(b, 0, 2)
    sc, m = _scale_min_k4(b[:, 4:16])
    dl = _dmul(dm[:, 0:1], sc)                   # d1 = d * sc
    ml = _dmul(dm[:, 1:2], m)                    # m1 = min * m
    _scale_sub(q, dl, ml, out, 32)               # d1 * q - m1


def _k4_nibbles(qs, nb):
    """(nb, 128) -> (nb, 4, 2, 32): [j, 0] low nibbles of qs[32j:32j+32], [j, 1] high nibbles."""
    lo = _buf("k4l", (nb, 4, 32), U8)
    np.bitwise_and(qs.reshape(nb, 4, 32), U8(15), out=lo)
    q = _buf("k4", (nb, 4, 2, 32), U8)
    q.view(_V32)[:, :, 0, 0] = lo.view(_V32)[:, :, 0]
    np.right_shift(qs.reshape(nb, 4, 32), U8(4), out=lo)
    q.view(_V32)[:, :, 1, 0] = lo.view(_V32)[:, :, 0]
    return q


def q4_K(b, out):
    nb = b.shape[0]
    _k4_finish(b, _k4_nibbles(b[:, 16:144], nb), out)


def q5_K(b, out):
    nb = b.shape[0]
    q = _k4_nibbles(b[:, 48:176], nb)
    h = _highbits(b[:, 16:48], nb, 16)           # bit 2j + half of qh[l] -> 16
    np.bitwise_or(q.reshape(nb, 8, 32), h, out=q.reshape(nb, 8, 32))
    _k4_finish(b, q, out)


def q6_K(b, out):
    nb = b.shape[0]
    d = _f16(b, 208)
    ql = b[:, 0:128].reshape(nb, 2, 64)          # [h, 32 * (s & 1) + l]
    q = _crumbs(b[:, 128:192], nb, "c")          # (qh[32h + l] >> 2s) & 3
    np.multiply(q, U8(16), out=q)
    lo = _buf("q6l", (nb, 2, 64), U8)
    nib = _buf("q6n", (nb, 2, 2, 64), U8)       # [h, s // 2, 32 * (s & 1) + l]: q's layout
    np.bitwise_and(ql, U8(15), out=lo)           # s = 0, 1
    nib.view(_V64)[:, :, 0, 0] = lo.view(_V64)[:, :, 0]
    np.right_shift(ql, U8(4), out=lo)            # s = 2, 3
    nib.view(_V64)[:, :, 1, 0] = lo.view(_V64)[:, :, 0]
    np.bitwise_or(q, nib.reshape(q.shape), out=q)
    np.subtract(q, U8(32), out=q)                # q - 32 as int8
    sc = _buf("q6s", (nb, 16), I8)
    _mv16(sc, b[:, 192:208])
    ds = _dmul(d, sc)                            # d * sc[is]: (nb, 16)
    _scale(q.view(I8), ds, out, 16)              # (d * sc) * q


def q8_K(b, out):
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4")                # float32 d, bits as stored
    _scale(b[:, 4:260].view(I8), d, out, 256)                      # d * qs


# --------------------------------------------------------------------------------------------------
# ternary, low-bit, fp4


def tq1_0(b, out):
    nb = b.shape[0]
    d = _f16(b, 52)
    x = _buf("t1x", (nb, 52), U8)                # qs[48], qh[4], contiguous
    np.copyto(x, b[:, 0:52])
    p = _buf("t1p", (5, nb, 52), U8)             # (uint8_t)(x * 3**n) for n = 0..4
    for n in range(5):
        np.multiply(x, U8(3 ** n), out=p[n])
    # ((uint16_t)q * 3) >> 8 is (q >= 86) + (q >= 171); minus 1
    g1 = _buf("t1a", (5, nb, 52), np.bool_)
    g2 = _buf("t1b", (5, nb, 52), np.bool_)
    np.greater_equal(p, U8(86), out=g1)
    np.greater_equal(p, U8(171), out=g2)
    np.add(g1.view(U8), g2.view(U8), out=p)
    np.subtract(p, U8(1), out=p)
    # output order: [n][m] over qs[0:32], then [n][m] over qs[32:48], then [n < 4][j] over qh
    v = _buf("t1", (nb, 256), U8)
    v[:, 0:160].reshape(nb, 5, 32).view(_V32)[:, :, 0] = p[:, :, 0:32].view(_V32)[:, :, 0].T
    v[:, 160:240].reshape(nb, 5, 16).view(_V16)[:, :, 0] = p[:, :, 32:48].view(_V16)[:, :, 0].T
    v[:, 240:256].reshape(nb, 4, 4).view(_V4)[:, :, 0] = p[0:4, :, 48:52].view(_V4)[:, :, 0].T
    _scale(v.view(I8), d, out, 256)              # (float)(xi - 1) * d


def tq2_0(b, out):
    nb = b.shape[0]
    q = _crumbs(b[:, 0:64], nb, "c")             # [h, l, m] = qs[32h + m] >> 2l & 3
    np.subtract(q, U8(1), out=q)
    _scale(q.view(I8), _f16(b, 64), out, 256)


def q1_0(b, out):
    nb = b.shape[0]
    d = _f16(b, 0).view(U32)
    o = out.view(U32).reshape(nb, 16, 8)
    idx = _buf("q1i", (nb, 16), U8)
    _mv16(idx, b[:, 2:18])
    np.take(Q1_SIGNS, idx, axis=0, out=o, mode="clip")             # bit clear -> sign flip
    np.bitwise_xor(o, d[:, :, None], out=o)      # bit ? d : -d


def q2_0(b, out):
    nb = b.shape[0]
    idx = _buf("q2i", (nb, 16), U8)
    _mv16(idx, b[:, 2:18])
    v = _buf("q20", (nb, 16), U32)
    _take(T_Q20, idx, v)                         # 4 crumbs - 1 per byte, in weight order
    _scale(v.view(I8), _f16(b, 0), out, 64)      # ((int)q - 1) * d


def _kv_pairs(qs, table, rows, k):
    """4-bit codes packed two per byte, (rows, 2k) bytes ``qs`` -> int8 (rows, 4k): the 2k
    low-nibble values, then the 2k high-nibble values (ggml's order within a group).

    One gather per two bytes (four values), indexed by the bytes as a uint16; the low and high
    halves of each gathered uint32 are split with a cast and a shift, then moved as whole rows."""
    item = np.dtype(f"V{2 * k}")
    w = _buf("kvw", (rows, k), U16)
    w.view(item)[:, 0] = qs.view(item)[:, 0]     # contiguous index
    g = _buf("kvg", (rows, k), U32)
    _take(table, w, g)
    v = _buf("kv", (rows, 2, k), U16)
    np.copyto(w, g, casting="unsafe")            # low halves: the low-nibble pairs
    v.view(item)[:, 0, 0] = w.view(item)[:, 0]
    np.right_shift(g, U32(16), out=g)
    np.copyto(w, g, casting="unsafe")
    v.view(item)[:, 1, 0] = w.view(item)[:, 0]
    return v.view(I8).reshape(rows, 4 * k)


def mxfp4(b, out):
    nb = b.shape[0]
    d = np.take(E8M0_HALF_TABLE, b[:, 0:1], mode="clip")
    v = _kv_pairs(b[:, 1:17], T2_MXFP4, nb, 8)
    _scale(v, d, out, 32)                        # x0 * d


def nvfp4(b, out):
    nb = b.shape[0]
    e = _buf("nve", (nb, 4), U8)
    e.view(_V4)[:, 0] = b[:, 0:4].view(_V4)[:, 0]
    d = np.take(UE4M3_TABLE, e, mode="clip")     # (nb, 4)
    v = _kv_pairs(b[:, 4:36].reshape(nb * 4, 8), T2_MXFP4, nb * 4, 4)
    _scale(v, d, out, 16)                        # v0 * d


# --------------------------------------------------------------------------------------------------
# i-quants

def iq4_nl(b, out):
    nb = b.shape[0]
    v = _kv_pairs(b[:, 2:18], T2_IQ4NL, nb, 8)
    _scale(v, _f16(b, 0), out, 32)               # d * kvalues[q]


def iq4_xs(b, out):
    nb = b.shape[0]
    d = _f16(b, 0)
    ls = _buf("xls", (nb, 8), U8)               # ls = low nibble | high 2 bits << 4
    sl = b[:, 4:8]
    np.bitwise_and(sl, U8(0xF), out=ls[:, 0::2])
    np.right_shift(sl, U8(4), out=ls[:, 1::2])
    hb = _buf("xhb", (nb, 2), U32)
    _take(T_XSH, b[:, 2:4], hb)                  # scales_h >> 2ib & 3, << 4, one byte per ib
    np.bitwise_or(ls, hb.view(U8), out=ls)
    np.subtract(ls, U8(32), out=ls)
    dl = _dmul(d, ls.view(I8))                   # d * (ls - 32): int, then to float
    v = _kv_pairs(b[:, 8:136].reshape(nb * 8, 16), T2_IQ4NL, nb * 8, 8)
    _scale(v, dl, out, 32)                       # dl * kvalues[q]


def _take_t(table, idx4, out):
    """out (M, 4) = table[idx4.T] for an index computed as (4, M) (contiguous rows, cheap to build)."""
    v2 = _buf("tt", idx4.shape, out.dtype)
    _take(table, idx4, v2)
    np.copyto(out, v2.T)


def _neg_apply(g, m):
    """g (uint64 words of 8 positive int8 grid values) negated per byte where m has 0xFF."""
    np.bitwise_xor(g, m, out=g)
    np.bitwise_and(m, _ONES, out=m)
    np.add(g, m, out=g)


def _p_signs(out, masks):
    """Flip the sign bit of out where the (same-shaped) uint32 masks have it."""
    o = out.view(U32)
    np.bitwise_xor(o, masks.reshape(o.shape), out=o)


def _p_iq2_xxs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    w = b[:, 2:66].reshape(nb, 8, 8)
    aux1 = np.ascontiguousarray(w[:, :, 4:8]).view("<u4")[:, :, 0]
    db = d * (F32(0.5) + (aux1 >> 28).astype(F32))
    db *= F32(0.25)
    o = out.reshape(nb, 8, 32)
    np.take(G_IQ2XXS, w[:, :, 0:4], axis=0, out=out.reshape(nb, 8, 4, 8))
    np.multiply(db[:, :, None], o, out=o)
    codes = (aux1[:, :, None] >> (7 * np.arange(4, dtype=U32))) & 127
    _p_signs(out, np.take(KSIGN_MASKS, codes, axis=0))


_S8L = (8 * np.arange(4, dtype=U64)).reshape(4, 1)
_S7L = (32 + 7 * np.arange(4, dtype=U64)).reshape(4, 1)


def iq2_xxs(b, out):
    nb = b.shape[0]
    M = nb * 8
    d = _f16(b, 0)
    w = _buf("w", (M,), U64)                     # per sub-block: 4 grid indices, then aux32[1]
    np.copyto(w.view(U8).reshape(nb, 64), b[:, 2:66])
    db = (w >> U64(60)).astype(F32).reshape(nb, 8)
    np.add(db, F32(0.5), out=db)
    db = _dmul(d, db)
    db *= F32(0.25)                              # d * (0.5f + s) * 0.25f, left to right
    a = _buf("a", (4, M), U64)
    np.right_shift(w, _S8L, out=a)
    np.bitwise_and(a, U64(0xFF), out=a)
    np.multiply(a, U64(128), out=a)              # grid index << 7
    c = _buf("c", (4, M), U64)
    np.right_shift(w, _S7L, out=c)
    np.bitwise_and(c, U64(127), out=c)           # sign code l
    np.bitwise_or(a, c, out=a)
    v = _buf("gv", (M, 4), U64)
    _take_t(T_IQ2XXS, a.view(np.int64), v)       # signed grid values
    _scale(v.view(I8), db, out, 32)
    _redo_nan(b, out, d, _p_iq2_xxs)


def _db_iq2(d, scales):
    """db for IQ2_XS / IQ2_S: (nb, 8, 2) = d * (0.5f + nibble) * 0.25f (low nibble: groups 0,1)."""
    s4 = np.stack([scales & 0xF, scales >> 4], axis=2).astype(F32)
    db = d[:, :, None] * (F32(0.5) + s4)
    db *= F32(0.25)
    return db


def _db_iq2_t(d, scales):
    """_db_iq2 with (0.5f + nibble) from a table of both nibbles of a byte."""
    db = np.take(T_HALF_NIB, scales, axis=0, mode="clip")         # (nb, 8, 2)
    db = _dmul(d, db).reshape(-1, 8, 2)
    db *= F32(0.25)
    return db


def _p_iq2_xs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    qs = np.ascontiguousarray(b[:, 2:66]).view("<u2").reshape(nb, 8, 4)
    db = _db_iq2(d, b[:, 66:74])
    np.take(G_IQ2XS, qs & 511, axis=0, out=out.reshape(nb, 8, 4, 8))
    o = out.reshape(nb, 8, 2, 16)
    np.multiply(db[:, :, :, None], o, out=o)
    _p_signs(out, np.take(KSIGN_MASKS, qs >> 9, axis=0))


def iq2_xs(b, out):
    nb = b.shape[0]
    d = _f16(b, 0)
    db = _db_iq2_t(d, b[:, 66:74])               # (nb, 8, 2)
    q = _buf("w", (nb, 32), U16)
    np.copyto(q.view(U8), b[:, 2:66])
    v = _buf("gv", (nb, 32), U64)
    _take(T_IQ2XS, q, v)                         # grid (q & 511) with signs ksigns[q >> 9] applied
    _scale(v.view(I8), db, out, 16)
    _redo_nan(b, out, d, _p_iq2_xs)


def _p_iq2_s(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    qs = b[:, 2:34].reshape(nb, 8, 4).astype(np.int32)
    signs = b[:, 34:66].reshape(nb, 8, 4)
    qh = b[:, 66:74].astype(np.int32)
    idx = qs | ((qh[:, :, None] << (8 - 2 * np.arange(4))) & 0x300)
    db = _db_iq2(d, b[:, 74:82])
    np.take(G_IQ2S, idx, axis=0, out=out.reshape(nb, 8, 4, 8))
    o = out.reshape(nb, 8, 2, 16)
    np.multiply(db[:, :, :, None], o, out=o)
    _p_signs(out, np.take(_BYTE_SIGNS, signs, axis=0))


def iq2_s(b, out):
    nb = b.shape[0]
    d = _f16(b, 0)
    db = _db_iq2_t(d, b[:, 74:82])
    raw = _buf("w", (nb, 72), U8)                # qs[32] signs[32] qh[8], contiguous
    np.copyto(raw, b[:, 2:74])
    idx = _buf("gi", (nb, 8), U64)
    _take(T_QH2S, raw[:, 64:72], idx)            # 4 uint16 per qh byte: (qh << (8 - 2l)) & 0x300
    i16 = idx.view(U16).reshape(nb, 8, 4)
    np.bitwise_or(i16, raw[:, 0:32].reshape(nb, 8, 4), out=i16)
    g = _buf("gv", (nb, 32), U64)
    _take(G64_IQ2S, i16, g.reshape(nb, 8, 4))
    m = _buf("gm", (nb, 32), U64)
    _take(BYTE_NEG64, raw[:, 32:64], m)
    _neg_apply(g, m)                             # signed grid values
    _scale(g.view(I8), db, out, 16)
    _redo_nan(b, out, d, _p_iq2_s)


def _p_iq3_xxs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    aux = np.ascontiguousarray(b[:, 66:98]).view("<u4")
    db = d * (F32(0.5) + (aux >> 28).astype(F32))
    db *= F32(0.5)
    np.take(G_IQ3XXS, b[:, 2:66], axis=0, out=out.reshape(nb, 64, 4))
    o = out.reshape(nb, 8, 32)
    np.multiply(db[:, :, None], o, out=o)
    codes = (aux[:, :, None] >> (7 * np.arange(4, dtype=U32))) & 127
    _p_signs(out, np.take(KSIGN_MASKS, codes, axis=0))


def iq3_xxs(b, out):
    nb = b.shape[0]
    M = nb * 8
    d = _f16(b, 0)
    raw = _buf("w", (nb, 96), U8)                # qs[64], scales_and_signs[32], contiguous
    np.copyto(raw, b[:, 2:98])
    aux = raw[:, 64:96].view("<u4").reshape(M)
    db = (aux >> U32(28)).astype(F32).reshape(nb, 8)
    np.add(db, F32(0.5), out=db)
    db = _dmul(d, db)
    db *= F32(0.5)                               # d * (0.5f + s) * 0.5f
    g = _buf("gv", (nb, 32), U64)
    _take(G64P_IQ3XXS, raw[:, 0:64].view("<u2"), g)   # grid1, grid2 of each group of 8
    c = _buf("c", (M, 2), U32)                   # sign codes 0,1 and 2,3 as 14-bit pairs
    np.bitwise_and(aux, U32(0x3FFF), out=c[:, 0])
    np.right_shift(aux, U32(14), out=c[:, 1])
    np.bitwise_and(c[:, 1], U32(0x3FFF), out=c[:, 1])
    m = _buf("gm", (M, 4), U64)
    _take(KSIGN2_NEG, c, m.view(_V16))
    _neg_apply(g.reshape(M, 4), m)
    _scale(g.view(I8), db, out, 32)
    _redo_nan(b, out, d, _p_iq3_xxs)


def _p_iq3_s(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    qs = b[:, 2:66].reshape(nb, 8, 8).astype(np.int32)
    qh = b[:, 66:74].astype(np.int32)
    idx = qs | (((qh[:, :, None] >> np.arange(8)) & 1) << 8)
    sc = b[:, 106:110]
    s4 = np.stack([sc & 0xF, sc >> 4], axis=2).reshape(nb, 8).astype(np.int32)
    db = d * (1 + 2 * s4).astype(F32)
    np.take(G_IQ3S, idx, axis=0, out=out.reshape(nb, 8, 8, 4))
    o = out.reshape(nb, 8, 32)
    np.multiply(db[:, :, None], o, out=o)
    _p_signs(out, np.take(_BYTE_SIGNS, b[:, 74:106], axis=0))


def iq3_s(b, out):
    nb = b.shape[0]
    d = _f16(b, 0)
    sc = b[:, 106:110]
    s4 = np.empty((nb, 4, 2), U8)
    np.bitwise_and(sc, U8(0xF), out=s4[:, :, 0])
    np.right_shift(sc, U8(4), out=s4[:, :, 1])
    np.multiply(s4, U8(2), out=s4)
    np.add(s4, U8(1), out=s4)
    db = _dmul(d, s4)                            # d * (1 + 2*s): int, then to float
    idx = _buf("gi", (nb, 64), U16)
    i8 = idx.view(U8).reshape(nb, 64, 2)
    i8[:, :, 0] = b[:, 2:66]
    i8[:, :, 1] = np.unpackbits(b[:, 66:74], axis=1, bitorder="little")   # 9th bit: bit k of qh[ib]
    g = _buf("gv", (nb, 64), U32)
    _take(G32_IQ3S, idx, g)
    sg = _buf("sg", (nb, 32), U8)
    np.copyto(sg, b[:, 74:106])
    m = _buf("gm", (nb, 32), U64)
    _take(BYTE_NEG64, sg, m)
    _neg_apply(g.view(U64), m)
    _scale(g.view(I8), db, out, 32)
    _redo_nan(b, out, d, _p_iq3_s)


def iq1_s(b, out):
    nb = b.shape[0]
    d = _f16(b, 0)
    qh = _buf("q1h", (nb, 8), U16)
    np.copyto(qh.view(U8), b[:, 34:50])
    # index = qs[l] | ((qh >> 3l) & 7) << 8, + 2048 (the -delta rows) when qh & 0x8000: built as
    # uint16 with the low byte qs and the high byte from a table of qh
    idx = _buf("gi", (nb, 32), U16)
    i8 = idx.view(U8).reshape(nb, 32, 2)
    i8[:, :, 0] = b[:, 2:34]
    hb = _buf("q1hb", (nb, 8), U32)
    _take(T_QH1S, qh, hb)
    i8[:, :, 1] = hb.view(U8)
    dl = np.take(T_ODD8, qh, mode="clip")       # 2 * ((qh >> 12) & 7) + 1
    dl = _dmul(d, dl)                            # dl = d * (2*s + 1)
    dl *= F32(0.125)
    v = _buf("gv", (nb, 32), U64)
    _take(T_IQ1, idx, v)                         # 8 * (grid[j] + delta)
    _scale(v.view(I8), dl, out, 32)              # (dl / 8) * (8 * (grid + delta))


def iq1_m(b, out):
    nb = b.shape[0]
    sc = _buf("msc", (nb, 4), U16)
    np.copyto(sc.view(U64), b[:, 48:56].view("<u8"))
    w = sc.view(U64)[:, 0]
    t = _buf("mt", (nb,), U64)                   # fp16 bits: the top nibble of each word
    bits = _buf("mb", (nb,), U64)
    np.right_shift(w, U64(12), out=bits)
    np.bitwise_and(bits, U64(0x000F), out=bits)
    for sh, m in ((24, 0x00F0), (36, 0x0F00), (48, 0xF000)):
        np.right_shift(w, U64(sh), out=t)
        np.bitwise_and(t, U64(m), out=t)
        np.bitwise_or(bits, t, out=bits)
    d = np.take(F16_TABLE, bits, mode="clip")[:, None, None]
    np.bitwise_and(sc, U16(0x0FFF), out=sc)
    dl = np.take(T_IQ1M, sc, axis=0, mode="clip").reshape(nb, 8, 2)   # 2*s + 1
    dl = _dmul(d.reshape(nb, 1), dl).reshape(nb, 8, 2)   # d * (2*s + 1)
    dl *= F32(0.125)
    # index = qs | nibble << 8 with the nibble's bit 3 the delta sign (+2048: the -delta rows)
    idx = _buf("gi", (nb, 32), U16)
    i8 = idx.view(U8).reshape(nb, 32, 2)
    i8[:, :, 0] = b[:, 0:32]
    qh = b[:, 32:48]
    np.bitwise_and(qh, U8(15), out=i8[:, 0::2, 1])
    np.right_shift(qh, U8(4), out=i8[:, 1::2, 1])
    v = _buf("gv", (nb, 32), U64)
    _take(T_IQ1, idx, v)
    _scale(v.view(I8), dl, out, 16)


DEQ = {
    "Q4_0": q4_0, "Q4_1": q4_1, "Q5_0": q5_0, "Q5_1": q5_1, "Q8_0": q8_0, "Q8_1": q8_1,
    "Q2_K": q2_K, "Q3_K": q3_K, "Q4_K": q4_K, "Q5_K": q5_K, "Q6_K": q6_K, "Q8_K": q8_K,
    "TQ1_0": tq1_0, "TQ2_0": tq2_0, "Q1_0": q1_0, "Q2_0": q2_0, "MXFP4": mxfp4, "NVFP4": nvfp4,
    "IQ4_NL": iq4_nl, "IQ4_XS": iq4_xs, "IQ2_XXS": iq2_xxs, "IQ2_XS": iq2_xs, "IQ2_S": iq2_s,
    "IQ3_XXS": iq3_xxs, "IQ3_S": iq3_s, "IQ1_S": iq1_s, "IQ1_M": iq1_m,
}
