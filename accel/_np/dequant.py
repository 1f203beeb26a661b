"""Whole-chunk dequantizers: ``DEQ[name](b, out)`` with ``b`` the (nb, type_size) uint8 blocks of a
chunk and ``out`` its (nb, block_size) float32 output, written in place.

Exactness: block fields are decoded with integer ops; every float op is one float32 numpy ufunc in
ggml's order (``d * sc`` before ``* q``, the product before ``- m``). Most products here are exact
(an fp16 scale has 11 significant bits, the integer factors a few), so only the final add or
subtract rounds, but the order is kept anyway so that Inf and NaN scales give ggml's bits. Where
ggml flips a sign (the i-quant sign bits: the compiler emits an xor for ``* (s ? -1.f : 1.f)``) the
sign bit is xor-ed here too, which flips a NaN's sign as x86 does.

x86's ``addss`` returns its first operand when both are NaN; numpy may commute an add, so the one
add with two possibly-NaN operands (``q*d + m`` of Q4_1/Q5_1) is fixed up for the blocks whose
``m`` is NaN.
"""

from __future__ import annotations

import numpy as np

from ...reference import grids
from .common import E8M0_HALF_TABLE, F32, I8, U8, U16, U32, UE4M3_TABLE, f16_field

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
_G1 = _grid(grids.iq1s_grid, 8).view(I8).astype(F32)      # (2048, 8) -1, 0, +1
# IQ1_S / IQ1_M: grid[j] + delta is exact in float32; rows 0..2047 with +delta, 2048..4095 with -delta
G_IQ1 = np.concatenate([_G1 + F32(grids.IQ1S_DELTA), _G1 - F32(grids.IQ1S_DELTA)]).astype(F32)

# sign bit masks: a sign byte (bit j negates weight j) -> 8 uint32 masks (0x80000000 or 0)
_BYTE_SIGNS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(U32) << U32(31)   # (256, 8)
KSIGN_MASKS = _BYTE_SIGNS[np.array(grids.ksigns_iq2xs, dtype=np.intp)]               # (128, 8)
# Q1_0: bit set -> +d, clear -> -d: the sign mask is set where the bit is clear
Q1_SIGNS = _BYTE_SIGNS ^ U32(0x80000000)                                              # (256, 8)
# TQ1_0: digit k of a byte: ((uint8_t)(b * 3**k) * 3) >> 8, minus 1, as int8
_B = np.arange(256)
TQ1_DIGITS = np.stack([((((_B * 3 ** k) & 0xFF) * 3) >> 8) - 1 for k in range(5)]).astype(I8)   # (5, 256)


_V16 = np.dtype("V16")
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)


def _nibbles(qs, q):
    """(nb, 16) bytes -> q (nb, 32): low nibbles then high nibbles (Q4_0/Q4_1/Q5/IQ4_NL order).

    The 16 bytes of each block are moved as one 16-byte item and split eight at a time as uint64
    (masks keep each byte's nibble in its byte): far fewer numpy inner-loop calls than a
    (nb, 16) uint8 operation."""
    nb = qs.shape[0]
    w = np.empty((nb, 2), np.uint64)
    w.view(_V16)[:, 0] = qs.view(_V16)[:, 0]
    t = np.bitwise_and(w, _M4)
    qv = q.view(_V16)
    qv[:, 0] = t.view(_V16)[:, 0]
    np.right_shift(w, np.uint64(4), out=t)
    np.bitwise_and(t, _M4, out=t)
    qv[:, 1] = t.view(_V16)[:, 0]


# --------------------------------------------------------------------------------------------------
# legacy

def q4_0(b, out):
    d = f16_field(b, 0)
    q = np.empty(out.shape, U8)
    _nibbles(b[:, 2:18], q)
    np.subtract(q, U8(8), out=q)                 # wraps: the int8 view is q - 8
    np.multiply(q.view(I8), d, out=out)          # (q - 8) * d


def q4_1(b, out):
    d, m = f16_field(b, 0), f16_field(b, 2)
    q = np.empty(out.shape, U8)
    _nibbles(b[:, 4:20], q)
    np.multiply(q, d, out=out)                   # q * d
    bad = np.isnan(m[:, 0])
    prod = out[bad].copy() if bad.any() else None
    np.add(out, m, out=out)                      # + m
    if prod is not None:
        out[bad] = np.where(np.isnan(prod), prod, m[bad])


def _q5_high(b, off, q):
    h = np.unpackbits(b[:, off:off + 4], axis=1, bitorder="little")   # bit i of the LE uint32 qh
    np.left_shift(h, 4, out=h)
    np.bitwise_or(q, h, out=q)


def q5_0(b, out):
    d = f16_field(b, 0)
    q = np.empty(out.shape, U8)
    _nibbles(b[:, 6:22], q)
    _q5_high(b, 2, q)
    np.subtract(q, U8(16), out=q)
    np.multiply(q.view(I8), d, out=out)


def q5_1(b, out):
    d, m = f16_field(b, 0), f16_field(b, 2)
    q = np.empty(out.shape, U8)
    _nibbles(b[:, 8:24], q)
    _q5_high(b, 4, q)
    np.multiply(q, d, out=out)
    bad = np.isnan(m[:, 0])
    prod = out[bad].copy() if bad.any() else None
    np.add(out, m, out=out)
    if prod is not None:
        out[bad] = np.where(np.isnan(prod), prod, m[bad])


def q8_0(b, out):
    np.multiply(b[:, 2:34].view(I8), f16_field(b, 0), out=out)


def q8_1(b, out):
    np.multiply(b[:, 4:36].view(I8), f16_field(b, 0), out=out)     # y = qs * d (s is not used)


# --------------------------------------------------------------------------------------------------
# k-quants

def _crumbs(qs, nb):
    """Q2_K/Q3_K ``qs`` (nb, 64) -> (nb, 2, 4, 32) values 0..3: [h, s, 16g + l] = qs[32h + 16g + l] >> 2s & 3."""
    q = np.empty((nb, 2, 4, 32), U8)
    src = qs.reshape(nb, 2, 32)
    for s in range(4):
        np.right_shift(src, 2 * s, out=q[:, :, s])
    np.bitwise_and(q, 3, out=q)
    return q


def q2_K(b, out):
    nb = b.shape[0]
    d, dmin = f16_field(b, 80), f16_field(b, 82)
    sc = b[:, 0:16]
    dl = d * (sc & 0xF)                          # d * (sc & 0xF): (nb, 16)
    ml = dmin * (sc >> 4)                        # dmin * (sc >> 4)
    q = _crumbs(b[:, 16:80], nb).reshape(nb, 16, 16)
    o = out.reshape(nb, 16, 16)
    np.multiply(q, dl[:, :, None], out=o)        # dl * q
    np.subtract(o, ml[:, :, None], out=o)        # - ml


def q3_K(b, out):
    nb = b.shape[0]
    d = f16_field(b, 108)
    s = b[:, 96:108]
    sc = np.empty((nb, 16), U8)
    sc[:, 0:8] = s[:, 0:8] & 0xF
    sc[:, 8:16] = s[:, 0:8] >> 4
    hi = np.concatenate([(s[:, 8:12] >> sh) & 3 for sh in (0, 2, 4, 6)], axis=1)   # j = 4*(j//4) + j%4
    sc |= hi << 4
    np.subtract(sc, U8(32), out=sc)
    dl = d * sc.view(I8)                         # d * (sc - 32)
    q = _crumbs(b[:, 32:96], nb)                 # (nb, h, s, 32)
    hm = b[:, 0:32]
    h = np.empty((nb, 2, 4, 32), U8)
    for hh in range(2):
        for ss in range(4):
            np.right_shift(hm, 4 * hh + ss, out=h[:, hh, ss])
    np.bitwise_and(h, 1, out=h)
    np.left_shift(h, 2, out=h)
    np.bitwise_or(q, h, out=q)                   # low | high << 2: 0..7
    np.subtract(q, U8(4), out=q)                 # q - 4 as int8: low - (high ? 0 : 4)
    o = out.reshape(nb, 16, 16)
    np.multiply(q.view(I8).reshape(nb, 16, 16), dl[:, :, None], out=o)


def _scale_min_k4(s):
    """get_scale_min_k4 for j = 0..7 on (nb, 12) bytes -> (sc, m), each (nb, 8) uint8."""
    nb = s.shape[0]
    sc = np.empty((nb, 8), U8)
    m = np.empty((nb, 8), U8)
    sc[:, :4] = s[:, 0:4] & 63
    m[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


def _k4_finish(b, q, out):
    nb = b.shape[0]
    d, dmin = f16_field(b, 0), f16_field(b, 2)
    sc, m = _scale_min_k4(b[:, 4:16])
    dl = d * sc                                  # d1 = d * sc
    ml = dmin * m                                # m1 = min * m
    o = out.reshape(nb, 8, 32)
    np.multiply(q.reshape(nb, 8, 32), dl[:, :, None], out=o)
    np.subtract(o, ml[:, :, None], out=o)


def q4_K(b, out):
    nb = b.shape[0]
    qs = b[:, 16:144].reshape(nb, 4, 32)
    q = np.empty((nb, 4, 2, 32), U8)
    np.bitwise_and(qs, 15, out=q[:, :, 0])
    np.right_shift(qs, 4, out=q[:, :, 1])
    _k4_finish(b, q, out)


def q5_K(b, out):
    nb = b.shape[0]
    qs = b[:, 48:176].reshape(nb, 4, 32)
    q = np.empty((nb, 4, 2, 32), U8)
    np.bitwise_and(qs, 15, out=q[:, :, 0])
    np.right_shift(qs, 4, out=q[:, :, 1])
    qh = b[:, 16:48]
    h = np.empty((nb, 8, 32), U8)
    for j in range(8):
        np.right_shift(qh, j, out=h[:, j])
    np.bitwise_and(h, 1, out=h)
    np.left_shift(h, 4, out=h)
    np.bitwise_or(q.reshape(nb, 8, 32), h, out=q.reshape(nb, 8, 32))
    _k4_finish(b, q, out)


def q6_K(b, out):
    nb = b.shape[0]
    d = f16_field(b, 208)
    ql = b[:, 0:128].reshape(nb, 2, 2, 32)       # [h, s & 1, l]
    qh = b[:, 128:192].reshape(nb, 2, 32)
    q = np.empty((nb, 2, 4, 32), U8)
    for s in range(4):
        lo = ql[:, :, s & 1]
        if s < 2:
            np.bitwise_and(lo, 15, out=q[:, :, s])
        else:
            np.right_shift(lo, 4, out=q[:, :, s])
        hs = (qh >> (2 * s)) & 3
        np.left_shift(hs, 4, out=hs)
        np.bitwise_or(q[:, :, s], hs, out=q[:, :, s])
    np.subtract(q, U8(32), out=q)
    ds = d * b[:, 192:208].view(I8)              # d * sc[is]: (nb, 16)
    o = out.reshape(nb, 16, 16)
    np.multiply(q.view(I8).reshape(nb, 16, 16), ds[:, :, None], out=o)


def q8_K(b, out):
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4")                # float32 d, bits as stored
    np.multiply(d, b[:, 4:260].view(I8), out=out)                  # d * qs


# --------------------------------------------------------------------------------------------------
# ternary, low-bit, fp4

def tq1_0(b, out):
    nb = b.shape[0]
    d = f16_field(b, 52)
    v = np.empty((nb, 256), I8)
    a = v[:, 0:160].reshape(nb, 5, 32)
    c = v[:, 160:240].reshape(nb, 5, 16)
    h = v[:, 240:256].reshape(nb, 4, 4)
    for k in range(5):
        np.take(TQ1_DIGITS[k], b[:, 0:32], out=a[:, k])
        np.take(TQ1_DIGITS[k], b[:, 32:48], out=c[:, k])
        if k < 4:
            np.take(TQ1_DIGITS[k], b[:, 48:52], out=h[:, k])
    np.multiply(v, d, out=out)                   # (float)(xi - 1) * d


def tq2_0(b, out):
    nb = b.shape[0]
    q = _crumbs(b[:, 0:64], nb)                  # [h, l, m] = qs[32h + m] >> 2l & 3
    np.subtract(q, U8(1), out=q)
    np.multiply(q.view(I8).reshape(nb, 256), f16_field(b, 64), out=out)


def q1_0(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0).view(U32)
    o = out.view(U32).reshape(nb, 16, 8)
    np.take(Q1_SIGNS, b[:, 2:18], axis=0, out=o)                   # bit clear -> sign flip
    np.bitwise_xor(o, d[:, :, None], out=o)      # bit ? d : -d


def q2_0(b, out):
    nb = b.shape[0]
    qs = b[:, 2:18]
    q = np.empty((nb, 16, 4), U8)
    for k in range(4):
        np.right_shift(qs, 2 * k, out=q[:, :, k])
    np.bitwise_and(q, 3, out=q)
    np.subtract(q, U8(1), out=q)
    np.multiply(q.view(I8).reshape(nb, 64), f16_field(b, 0), out=out)


def mxfp4(b, out):
    d = np.take(E8M0_HALF_TABLE, b[:, 0:1])
    q = np.empty(out.shape, U8)
    _nibbles(b[:, 1:17], q)
    v = np.take(KV_MXFP4, q)
    np.multiply(v, d, out=out)                   # x0 * d


def nvfp4(b, out):
    nb = b.shape[0]
    d = np.take(UE4M3_TABLE, b[:, 0:4])          # (nb, 4)
    qs = b[:, 4:36].reshape(nb, 4, 8)
    q = np.empty((nb, 4, 2, 8), U8)
    np.bitwise_and(qs, 15, out=q[:, :, 0])
    np.right_shift(qs, 4, out=q[:, :, 1])
    v = np.take(KV_MXFP4, q).reshape(nb, 4, 16)
    np.multiply(v, d[:, :, None], out=out.reshape(nb, 4, 16))     # v0 * d


# --------------------------------------------------------------------------------------------------
# i-quants

def iq4_nl(b, out):
    q = np.empty(out.shape, U8)
    _nibbles(b[:, 2:18], q)
    np.multiply(f16_field(b, 0), np.take(KV_IQ4NL, q), out=out)    # d * kvalues[q]


def iq4_xs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    sh = b[:, 2:4].view("<u2").astype(np.int32)                    # (nb, 1)
    sl = b[:, 4:8]
    ib = np.arange(8)
    ls = ((sl[:, ib // 2] >> (4 * (ib % 2))) & 0xF).astype(np.int32) | (((sh >> (2 * ib)) & 3) << 4)
    dl = d * (ls - 32).astype(F32)               # d * (ls - 32): int, then to float
    qs = b[:, 8:136].reshape(nb, 8, 16)
    q = np.empty((nb, 8, 2, 16), U8)
    np.bitwise_and(qs, 15, out=q[:, :, 0])
    np.right_shift(qs, 4, out=q[:, :, 1])
    np.multiply(dl[:, :, None], np.take(KV_IQ4NL, q).reshape(nb, 8, 32), out=out.reshape(nb, 8, 32))


def _signs(out, masks):
    """Flip the sign bit of out where the (same-shaped) uint32 masks have it."""
    o = out.view(U32)
    np.bitwise_xor(o, masks.reshape(o.shape), out=o)


def iq2_xxs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    w = b[:, 2:66].reshape(nb, 8, 8)             # per sub-block: 4 grid indices, then aux32[1]
    aux1 = np.ascontiguousarray(w[:, :, 4:8]).view("<u4")[:, :, 0]  # (nb, 8)
    db = d * (F32(0.5) + (aux1 >> 28).astype(F32))
    db *= F32(0.25)                              # d * (0.5f + s) * 0.25f, left to right
    o = out.reshape(nb, 8, 32)
    np.take(G_IQ2XXS, w[:, :, 0:4], axis=0, out=out.reshape(nb, 8, 4, 8))
    np.multiply(db[:, :, None], o, out=o)        # db * grid[j]
    codes = (aux1[:, :, None] >> (7 * np.arange(4, dtype=U32))) & 127
    _signs(out, np.take(KSIGN_MASKS, codes, axis=0))


def _db_iq2(d, scales):
    """db for IQ2_XS / IQ2_S: (nb, 8, 2) = d * (0.5f + nibble) * 0.25f (low nibble: groups 0,1)."""
    s4 = np.stack([scales & 0xF, scales >> 4], axis=2).astype(F32)
    db = d[:, :, None] * (F32(0.5) + s4)
    db *= F32(0.25)
    return db


def iq2_xs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    qs = np.ascontiguousarray(b[:, 2:66]).view("<u2").reshape(nb, 8, 4)
    db = _db_iq2(d, b[:, 66:74])                 # (nb, 8, 2)
    np.take(G_IQ2XS, qs & 511, axis=0, out=out.reshape(nb, 8, 4, 8))
    o = out.reshape(nb, 8, 2, 16)                # groups l = 0,1 use db[0]; 2,3 use db[1]
    np.multiply(db[:, :, :, None], o, out=o)
    _signs(out, np.take(KSIGN_MASKS, qs >> 9, axis=0))


def iq2_s(b, out):
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
    _signs(out, np.take(_BYTE_SIGNS, signs, axis=0))


def iq3_xxs(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    aux = np.ascontiguousarray(b[:, 66:98]).view("<u4")            # (nb, 8)
    db = d * (F32(0.5) + (aux >> 28).astype(F32))
    db *= F32(0.5)                               # d * (0.5f + s) * 0.5f
    np.take(G_IQ3XXS, b[:, 2:66], axis=0, out=out.reshape(nb, 64, 4))
    o = out.reshape(nb, 8, 32)
    np.multiply(db[:, :, None], o, out=o)
    codes = (aux[:, :, None] >> (7 * np.arange(4, dtype=U32))) & 127
    _signs(out, np.take(KSIGN_MASKS, codes, axis=0))


def iq3_s(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    qs = b[:, 2:66].reshape(nb, 8, 8).astype(np.int32)
    qh = b[:, 66:74].astype(np.int32)
    idx = qs | (((qh[:, :, None] >> np.arange(8)) & 1) << 8)      # 9th bit: bit k of qh[ib]
    sc = b[:, 106:110]
    s4 = np.stack([sc & 0xF, sc >> 4], axis=2).reshape(nb, 8).astype(np.int32)
    db = d * (1 + 2 * s4).astype(F32)            # d * (1 + 2*s): int, then to float
    np.take(G_IQ3S, idx, axis=0, out=out.reshape(nb, 8, 8, 4))
    o = out.reshape(nb, 8, 32)
    np.multiply(db[:, :, None], o, out=o)
    _signs(out, np.take(_BYTE_SIGNS, b[:, 74:106], axis=0))


def iq1_s(b, out):
    nb = b.shape[0]
    d = f16_field(b, 0)
    qs = b[:, 2:34].reshape(nb, 8, 4).astype(np.int32)
    qh = np.ascontiguousarray(b[:, 34:50]).view("<u2").astype(np.int32)   # (nb, 8)
    idx = qs | (((qh[:, :, None] >> (3 * np.arange(4))) & 7) << 8)
    idx |= (qh[:, :, None] & 0x8000) >> 4        # + 2048: the rows with -delta
    dl = d * (2 * ((qh >> 12) & 7) + 1).astype(F32)
    np.take(G_IQ1, idx, axis=0, out=out.reshape(nb, 8, 4, 8))     # grid[j] + delta
    o = out.reshape(nb, 8, 32)
    np.multiply(dl[:, :, None], o, out=o)        # dl * (grid[j] + delta)


def iq1_m(b, out):
    nb = b.shape[0]
    qs = b[:, 0:32].reshape(nb, 8, 4).astype(np.int32)
    qh = b[:, 32:48].reshape(nb, 8, 2).astype(np.int32)
    sc = np.ascontiguousarray(b[:, 48:56]).view("<u2").astype(np.int32)   # (nb, 4)
    bits = ((sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0x00F0) | ((sc[:, 2] >> 4) & 0x0F00) | (sc[:, 3] & 0xF000))
    from .common import F16_TABLE
    d = F16_TABLE[bits][:, None]
    ib = np.arange(8)
    field = sc[:, ib // 2] >> (6 * (ib % 2))     # (nb, 8)
    s3 = np.stack([field & 7, (field >> 3) & 7], axis=2)           # (nb, 8, 2)
    dl = d[:, :, None] * (2 * s3 + 1).astype(F32)                  # d * (2*s + 1)
    idx = np.empty((nb, 8, 4), np.int32)
    idx[:, :, 0] = qs[:, :, 0] | ((qh[:, :, 0] << 8) & 0x700)
    idx[:, :, 1] = qs[:, :, 1] | ((qh[:, :, 0] << 4) & 0x700)
    idx[:, :, 2] = qs[:, :, 2] | ((qh[:, :, 1] << 8) & 0x700)
    idx[:, :, 3] = qs[:, :, 3] | ((qh[:, :, 1] << 4) & 0x700)
    neg = np.stack([qh[:, :, 0] & 0x08, qh[:, :, 0] & 0x80, qh[:, :, 1] & 0x08, qh[:, :, 1] & 0x80], axis=2)
    idx[neg != 0] += 2048
    np.take(G_IQ1, idx, axis=0, out=out.reshape(nb, 8, 4, 8))
    o = out.reshape(nb, 8, 2, 16)
    np.multiply(dl[:, :, :, None], o, out=o)


DEQ = {
    "Q4_0": q4_0, "Q4_1": q4_1, "Q5_0": q5_0, "Q5_1": q5_1, "Q8_0": q8_0, "Q8_1": q8_1,
    "Q2_K": q2_K, "Q3_K": q3_K, "Q4_K": q4_K, "Q5_K": q5_K, "Q6_K": q6_K, "Q8_K": q8_K,
    "TQ1_0": tq1_0, "TQ2_0": tq2_0, "Q1_0": q1_0, "Q2_0": q2_0, "MXFP4": mxfp4, "NVFP4": nvfp4,
    "IQ4_NL": iq4_nl, "IQ4_XS": iq4_xs, "IQ2_XXS": iq2_xxs, "IQ2_XS": iq2_xs, "IQ2_S": iq2_s,
    "IQ3_XXS": iq3_xxs, "IQ3_S": iq3_s, "IQ1_S": iq1_s, "IQ1_M": iq1_m,
}
