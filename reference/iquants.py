"""The i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, IQ4_NL, IQ4_XS.

Bit-exact against ggml 0.25.3 (``ggml-quants.c``). The constant tables (grids, sign codes, the
IQ4 levels) live in ``grids.py``; ``QK_K = 256``. Every type except IQ4_NL has super-blocks of 256
weights; the scale ``d`` is fp16 (IQ1_M hides it in the top nibbles of its scales).

The "grid" types store, for each group of 8 (IQ2, IQ1) or 4 (IQ3) weights, an index into a table
of allowed magnitude patterns instead of one code per weight; signs are stored separately (IQ2,
IQ3) or the grid itself is signed (IQ1). In the tables below, "group" is 8 weights unless said.

IQ2_XXS (66 bytes, 2.0625 bpw)
------------------------------
| field | C type   | count | bytes | meaning                                              |
|-------|----------|-------|-------|------------------------------------------------------|
| d     | fp16     | 1     | 2     | super-block scale                                    |
| qs    | uint16_t | 32    | 64    | per 32 weights two uint32: ``aux0``, ``aux1``        |

For sub-block ``ib`` (32 weights) ``aux0`` holds 4 grid indices (byte ``l`` for group ``l``),
``aux1`` holds four 7-bit sign codes (bits ``7l..7l+6``) and the 4-bit scale (bits 28..31)::

    db   = d * (0.5f + (aux1 >> 28)) * 0.25f
    y[j] = db * iq2xxs_grid[aux0 byte l].byte[j]        negated when ksigns_iq2xs[code_l] & kmask_iq2xs[j]

IQ2_XS (74 bytes, 2.3125 bpw)
-----------------------------
| field  | C type   | count | bytes | meaning                                           |
|--------|----------|-------|-------|---------------------------------------------------|
| d      | fp16     | 1     | 2     | super-block scale                                 |
| qs     | uint16_t | 32    | 64    | per group: 9-bit grid index, 7-bit sign code << 9 |
| scales | uint8_t  | 8     | 8     | two 4-bit scales per 32 weights (low: first 16)   |

    db   = d * (0.5f + s4) * 0.25f                      (s4 = low nibble for groups 0,1; high for 2,3)
    y[j] = db * iq2xs_grid[qs & 511].byte[j]            negated per ksigns_iq2xs[qs >> 9]

IQ2_S (82 bytes, 2.5625 bpw)
----------------------------
| field  | C type  | count | bytes | meaning                                              |
|--------|---------|-------|-------|------------------------------------------------------|
| d      | fp16    | 1     | 2     | super-block scale                                    |
| qs     | uint8_t | 64    | 64    | 32 low bytes of the grid indices, then 32 sign bytes |
| qh     | uint8_t | 8     | 8     | 2 high index bits per group (group l: bits 2l, 2l+1) |
| scales | uint8_t | 8     | 8     | as IQ2_XS                                            |

    index = qs[l] | (qh[ib] << (8 - 2l) & 0x300)        (10 bits, iq2s_grid)
    y[j]  = db * iq2s_grid[index].byte[j]               negated when sign byte & kmask_iq2xs[j]

IQ3_XXS (98 bytes, 3.0625 bpw), groups of 4
-------------------------------------------
| field | C type  | count | bytes | meaning                                                 |
|-------|---------|-------|-------|---------------------------------------------------------|
| d     | fp16    | 1     | 2     | super-block scale                                       |
| qs    | uint8_t | 96    | 96    | 64 grid indices (one per 4 weights), then 8 uint32      |

The uint32 of sub-block ``ib`` (``scales_and_signs``) holds four 7-bit sign codes (one per 8 weights)
and the 4-bit scale in bits 28..31::

    db = d * (0.5f + (aux >> 28)) * 0.5f ;  y[j] = db * iq3xxs_grid[qs[i]].byte[j] (signed as IQ2_XXS)

IQ3_S (110 bytes, 3.4375 bpw), groups of 4
------------------------------------------
| field  | C type  | count | bytes | meaning                                                |
|--------|---------|-------|-------|--------------------------------------------------------|
| d      | fp16    | 1     | 2     | super-block scale                                      |
| qs     | uint8_t | 64    | 64    | low 8 bits of the grid indices                         |
| qh     | uint8_t | 8     | 8     | bit k of qh[ib]: 9th index bit of group k of sub-block ib |
| signs  | uint8_t | 32    | 32    | one sign bit per weight                                |
| scales | uint8_t | 4     | 4     | 4-bit scales, two per 64 weights                       |

    db = d * (1 + 2*s4) ;  y[j] = db * iq3s_grid[index].byte[j], negated when sign bit set

IQ1_S (50 bytes, 1.5625 bpw)
----------------------------
| field | C type   | count | bytes | meaning                                                     |
|-------|----------|-------|-------|-------------------------------------------------------------|
| d     | fp16     | 1     | 2     | super-block scale                                           |
| qs    | uint8_t  | 32    | 32    | low 8 bits of the 11-bit grid indices                       |
| qh    | uint16_t | 8     | 16    | per 32 weights: 4 x 3 high index bits, 3-bit scale (12..14), delta sign (bit 15) |

    dl = d * (2*((qh >> 12) & 7) + 1) ;  delta = qh & 0x8000 ? -0.125f : 0.125f
    y[j] = dl * (iq1s_grid[index].int8[j] + delta)

IQ1_M (56 bytes, 1.75 bpw)
--------------------------
| field  | C type  | count | bytes | meaning                                                       |
|--------|---------|-------|-------|---------------------------------------------------------------|
| qs     | uint8_t | 32    | 32    | low 8 bits of the grid indices                                |
| qh     | uint8_t | 16    | 16    | per 2 groups: 3 high index bits + delta sign bit (0x08, 0x80) |
| scales | uint8_t | 8     | 8     | 4 uint16 ``sc``: 3-bit scales per 16 weights (bits 0..11); the fp16 ``d`` in the top nibbles |

There is no ``d`` field: ``d = fp16(sc[0] >> 12 | (sc[1] >> 8) & 0xf0 | (sc[2] >> 4) & 0xf00 | sc[3] & 0xf000)``
(``iq1m_scale_t``). Then ``dl = d * (2*s3 + 1)``, ``y[j] = dl * (grid[j] + delta)`` as IQ1_S.

IQ4_NL (18 bytes per 32, 4.5 bpw) and IQ4_XS (136 bytes, 4.25 bpw)
-------------------------------------------------------------------
| field (IQ4_NL) | C type  | count | bytes |   | field (IQ4_XS) | C type   | count | bytes |
|----------------|---------|-------|-------|---|----------------|----------|-------|-------|
| d              | fp16    | 1     | 2     |   | d              | fp16     | 1     | 2     |
| qs             | uint8_t | 16    | 16    |   | scales_h       | uint16_t | 1     | 2     |
|                |         |       |       |   | scales_l       | uint8_t  | 4     | 4     |
|                |         |       |       |   | qs             | uint8_t  | 128   | 128   |

    IQ4_NL: y[j] = d * kvalues_iq4nl[qs[j] & 0xf],  y[j+16] = d * kvalues_iq4nl[qs[j] >> 4]
    IQ4_XS: ls = (scales_l nibble) | (2 bits of scales_h) << 4 ;  dl = d * (ls - 32) ; then as IQ4_NL per 32

Arithmetic is float32 throughout, in ggml's order; reductions are sequential (``_seq_sum``).
Element-wise steps are written with numpy arrays where that gives the same bits as ggml's loops.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import GGSpecError
from . import grids
from .fp import f16_to_f32, f32, f32_to_f16, nearest_int, read_f16
from .types import QK_K

QK4_NL = 32
FLT_MAX = f32(np.finfo(np.float32).max)

# ggml's thresholds below which a group counts as all zero (all are float literals, 1e-15f etc.)
GROUP_MAX_EPS = f32(1e-15)
GROUP_MAX_EPS_IQ3_XXS = f32(1e-8)
GROUP_MAX_EPS_IQ2_S = f32(1e-8)
GROUP_MAX_EPS_IQ1_M = f32(1e-7)
GROUP_MAX_EPS_IQ1_S = f32(1e-12)
IQ1S_DELTA = f32(grids.IQ1S_DELTA)
IQ1M_DELTA = f32(grids.IQ1M_DELTA)


# --------------------------------------------------------------------------------------------------
# the tables as numpy arrays

def _grid_bytes(table, nbytes: int, dtype=np.uint8) -> np.ndarray:
    """Grid entries -> (entries, nbytes) array; column j is byte j of the little-endian entry."""
    words = np.array(table, dtype=np.uint64 if nbytes == 8 else np.uint32)
    return words.astype("<u8" if nbytes == 8 else "<u4").view(np.uint8).reshape(-1, nbytes).view(dtype)


IQ2XXS_GRID = _grid_bytes(grids.iq2xxs_grid, 8)
IQ2XS_GRID = _grid_bytes(grids.iq2xs_grid, 8)
IQ2S_GRID = _grid_bytes(grids.iq2s_grid, 8)
IQ3XXS_GRID = _grid_bytes(grids.iq3xxs_grid, 4)
IQ3S_GRID = _grid_bytes(grids.iq3s_grid, 4)
IQ1S_GRID = _grid_bytes(grids.iq1s_grid, 8, np.int8)
KSIGNS = np.array(grids.ksigns_iq2xs, dtype=np.uint8)
KMASK = np.array(grids.kmask_iq2xs, dtype=np.uint8)
KVALUES_IQ4NL = np.array(grids.kvalues_iq4nl, dtype=np.int8)


# --------------------------------------------------------------------------------------------------
# small exact helpers

def _seq_sum(a) -> np.ndarray:
    """Sum over the last axis in float32, left to right, starting from 0.0f (a C ``s += a[i]`` loop).

    ``np.add.accumulate`` is sequential (each partial sum is defined), unlike ``np.sum`` which is
    pairwise. The leading 0 makes an all-(-0.0) sum +0.0, as in C.
    """
    a = np.asarray(a, dtype=np.float32)
    zero = np.zeros(a.shape[:-1] + (1,), dtype=np.float32)
    return np.add.accumulate(np.concatenate([zero, a], axis=-1), axis=-1, dtype=np.float32)[..., -1]


def _nearest_int_v(x) -> np.ndarray:
    """ggml's nearest_int, element-wise (the same float32 add and bit extraction as fp.nearest_int)."""
    with np.errstate(over="ignore", invalid="ignore"):
        val = np.asarray(x, dtype=np.float32) + f32(12582912.0)
    return (val.view(np.int32).astype(np.int64) & 0x007FFFFF) - 0x00400000


def _c_max(values, start=None) -> np.float32:
    """Fold with C's ``MAX(a, b) = a > b ? a : b`` (keeps NaN/signed-zero behaviour of the macro)."""
    it = iter(values)
    m = f32(next(it)) if start is None else f32(start)
    for v in it:
        v = f32(v)
        m = m if m > v else v
    return m


def _first_strict_min(d2: np.ndarray, bound) -> int:
    """Index that ``best = bound; for j: if (d2[j] < best) {best = d2[j]; pick j}`` picks, or -1."""
    ok = d2 < bound
    if not ok.any():
        return -1
    m = d2[ok].min()
    return int(np.flatnonzero(ok & (d2 == m))[0])


def _fp16_bits(x) -> int:
    """GGML_FP32_TO_FP16 of a float32 scalar, as an int."""
    return int(f32_to_f16(f32(x)))


def _f16_value(bits: int) -> np.float32:
    """GGML_FP16_TO_FP32 of fp16 bits given as an int."""
    return f32(f16_to_f32(np.array([bits], dtype=np.uint16))[0])


def _u16(v: int) -> bytes:
    return int(v & 0xFFFF).to_bytes(2, "little")


# ==================================================================================================
# dequantize

def dequantize_block_iq2_xxs(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    aux = np.frombuffer(block, dtype="<u4", count=16, offset=2).astype(np.int64).reshape(8, 2)
    grid_index = (aux[:, 0:1] >> (8 * np.arange(4))) & 0xFF                # (8 sub-blocks, 4 groups)
    sign_code = (aux[:, 1:2] >> (7 * np.arange(4))) & 127
    with np.errstate(all="ignore"):
        db = d * (f32(0.5) + (aux[:, 1] >> 28).astype(np.float32)) * f32(0.25)
        y = db[:, None, None] * IQ2XXS_GRID[grid_index].astype(np.float32)
    return _apply_signs(y, KSIGNS[sign_code]).reshape(QK_K)


def _apply_signs(y: np.ndarray, sign_bytes: np.ndarray) -> np.ndarray:
    """Negate y[..., j] where bit j of the sign byte is set.

    ggml writes ``y = db * grid[j] * (signs & kmask[j] ? -1.f : 1.f)``; the compiler turns the
    multiply by -1 into a sign-bit flip (xorps), so a NaN's sign flips too: numpy's negation does
    the same.
    """
    neg = (sign_bytes[..., None] & KMASK) != 0
    return np.where(neg, -y, y).astype(np.float32)


def dequantize_block_iq2_xs(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    qs = np.frombuffer(block, dtype="<u2", count=32, offset=2).astype(np.int64).reshape(8, 4)
    scales = np.frombuffer(block, dtype=np.uint8, count=8, offset=66).astype(np.int64)
    s4 = np.stack([scales & 0xF, scales >> 4], axis=1)                    # (8, 2): groups 0-1, 2-3
    with np.errstate(all="ignore"):
        db = d * (f32(0.5) + s4.astype(np.float32)) * f32(0.25)
        db = np.repeat(db, 2, axis=1)                                       # (8, 4): db[l // 2]
        y = db[..., None] * IQ2XS_GRID[qs & 511].astype(np.float32)
    return _apply_signs(y, KSIGNS[qs >> 9]).reshape(QK_K)


def dequantize_block_iq2_s(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    raw = np.frombuffer(block, dtype=np.uint8).astype(np.int64)
    qs, signs = raw[2:34].reshape(8, 4), raw[34:66].reshape(8, 4)
    qh, scales = raw[66:74], raw[74:82]
    index = qs | ((qh[:, None] << (8 - 2 * np.arange(4))) & 0x300)
    s4 = np.stack([scales & 0xF, scales >> 4], axis=1)
    with np.errstate(all="ignore"):
        db = np.repeat(d * (f32(0.5) + s4.astype(np.float32)) * f32(0.25), 2, axis=1)
        y = db[..., None] * IQ2S_GRID[index].astype(np.float32)
    return _apply_signs(y, signs.astype(np.uint8)).reshape(QK_K)


def dequantize_block_iq3_xxs(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    qs = np.frombuffer(block, dtype=np.uint8, count=64, offset=2).astype(np.int64).reshape(8, 4, 2)
    aux = np.frombuffer(block, dtype="<u4", count=8, offset=66).astype(np.int64)
    sign_code = (aux[:, None] >> (7 * np.arange(4))) & 127                # (8, 4): one per 8 weights
    with np.errstate(all="ignore"):
        db = d * (f32(0.5) + (aux >> 28).astype(np.float32)) * f32(0.5)
        # two grid entries of 4 make the 8 weights of one sign code
        mags = IQ3XXS_GRID[qs].reshape(8, 4, 8).astype(np.float32)
        y = db[:, None, None] * mags
    return _apply_signs(y, KSIGNS[sign_code]).reshape(QK_K)


def dequantize_block_iq3_s(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    raw = np.frombuffer(block, dtype=np.uint8).astype(np.int64)
    qs = raw[2:66].reshape(8, 8)                                            # (sub-block, group of 4)
    qh = raw[66:74]
    signs = raw[74:106].reshape(8, 4)
    scales = raw[106:110]
    index = qs | (((qh[:, None] >> np.arange(8)) & 1) << 8)                 # 9th bit: bit k of qh[ib]
    s4 = np.stack([scales & 0xF, scales >> 4], axis=1).reshape(8)          # sub-block ib: scales[ib/2]
    with np.errstate(all="ignore"):
        db = d * (1 + 2 * s4).astype(np.float32)
        y = db[:, None, None] * IQ3S_GRID[index].reshape(8, 4, 8).astype(np.float32)
    return _apply_signs(y, signs.astype(np.uint8)).reshape(QK_K)


def dequantize_block_iq1_s(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    qs = np.frombuffer(block, dtype=np.uint8, count=32, offset=2).astype(np.int64).reshape(8, 4)
    qh = np.frombuffer(block, dtype="<u2", count=8, offset=34).astype(np.int64)
    index = qs | (((qh[:, None] >> (3 * np.arange(4))) & 7) << 8)
    delta = np.where(qh & 0x8000, -IQ1S_DELTA, IQ1S_DELTA).astype(np.float32)
    with np.errstate(all="ignore"):
        dl = d * (2 * ((qh >> 12) & 7) + 1).astype(np.float32)
        y = dl[:, None, None] * (IQ1S_GRID[index].astype(np.float32) + delta[:, None, None])
    return y.reshape(QK_K).astype(np.float32)


def iq1m_scale(sc: np.ndarray) -> int:
    """The fp16 bits of IQ1_M's super-block scale: the top nibbles of the four uint16 ``sc``."""
    sc = [int(v) for v in sc]
    return (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)


def dequantize_block_iq1_m(block: bytes) -> np.ndarray:
    raw = np.frombuffer(block, dtype=np.uint8).astype(np.int64)
    qs = raw[0:32].reshape(8, 4)
    qh = raw[32:48].reshape(8, 2)
    sc = np.frombuffer(block, dtype="<u2", count=4, offset=48).astype(np.int64)
    d = _f16_value(iq1m_scale(sc))
    # per sub-block ib of 32: the 6-bit field (ib % 2) of sc[ib // 2] holds two 3-bit scales
    field = sc[np.arange(8) // 2] >> (6 * (np.arange(8) % 2))
    s3 = np.stack([field & 7, (field >> 3) & 7], axis=1)                  # (8, 2): first/second 16
    index = np.stack([qs[:, 0] | ((qh[:, 0] << 8) & 0x700), qs[:, 1] | ((qh[:, 0] << 4) & 0x700),
                      qs[:, 2] | ((qh[:, 1] << 8) & 0x700), qs[:, 3] | ((qh[:, 1] << 4) & 0x700)], axis=1)
    dbit = np.stack([qh[:, 0] & 0x08, qh[:, 0] & 0x80, qh[:, 1] & 0x08, qh[:, 1] & 0x80], axis=1)
    delta = np.where(dbit != 0, -IQ1S_DELTA, IQ1S_DELTA).astype(np.float32)   # ggml uses IQ1S_DELTA here
    with np.errstate(all="ignore"):
        dl = d * (2 * s3 + 1).astype(np.float32)                            # (8, 2)
        dl = np.repeat(dl, 2, axis=1)                                       # groups 0,1 -> dl1; 2,3 -> dl2
        y = dl[..., None] * (IQ1S_GRID[index].astype(np.float32) + delta[..., None])
    return y.reshape(QK_K).astype(np.float32)


def dequantize_block_iq4_nl(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    qs = np.frombuffer(block, dtype=np.uint8, count=16, offset=2)
    q = np.concatenate([qs & 0xF, qs >> 4])
    with np.errstate(all="ignore"):
        return (d * KVALUES_IQ4NL[q].astype(np.float32)).astype(np.float32)


def dequantize_block_iq4_xs(block: bytes) -> np.ndarray:
    d = read_f16(block, 0)
    scales_h = int(np.frombuffer(block, dtype="<u2", count=1, offset=2)[0])
    scales_l = np.frombuffer(block, dtype=np.uint8, count=4, offset=4).astype(np.int64)
    qs = np.frombuffer(block, dtype=np.uint8, count=128, offset=8).reshape(8, 16)
    ib = np.arange(8)
    ls = ((scales_l[ib // 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1)                         # (8, 32)
    with np.errstate(all="ignore"):
        dl = d * (ls - 32).astype(np.float32)
        y = dl[:, None] * KVALUES_IQ4NL[q].astype(np.float32)
    return y.reshape(QK_K).astype(np.float32)



# ==================================================================================================
# IQ4_NL and IQ4_XS: quantize_row_iq4_nl_impl

def best_index_int8(values: np.ndarray, x) -> np.ndarray:
    """ggml's ``best_index_int8(n, values, x)`` element-wise: index of the nearest level.

    ``x <= values[0]`` gives 0, ``x >= values[n-1]`` gives n-1; otherwise with ``mu`` the first
    level above x, ``x - values[mu-1] < values[mu] - x ? mu-1 : mu`` in float32 (a tie goes up).
    A NaN fails every comparison and ends at n-1, as ggml's binary search does.
    """
    x = np.asarray(x, dtype=np.float32)
    v = values.astype(np.float32)
    n = len(v)
    mu = np.clip(np.searchsorted(v, x, side="right"), 1, n - 1)
    with np.errstate(invalid="ignore"):
        pick = np.where((x - v[mu - 1]) < (v[mu] - x), mu - 1, mu)
        pick = np.where(x >= v[n - 1], n - 1, pick)
        pick = np.where(x <= v[0], 0, pick)
    return pick.astype(np.int64)


def _iq4_block_scale(xb, weight, ntry: int):
    """The scale search of one block of 32 in ``quantize_row_iq4_nl_impl`` -> (d, L) or (0, None)."""
    values = KVALUES_IQ4NL
    v0 = int(values[0])
    # amax/max: the first element of largest magnitude (strict >)
    amax, vmax = f32(0), f32(0)
    for v in xb:
        ax = f32(abs(v))
        if ax > amax:
            amax, vmax = ax, f32(v)
    if amax < GROUP_MAX_EPS:
        return f32(0), None
    d = (-vmax) / f32(v0) if ntry > 0 else vmax / f32(v0)
    idv = f32(1) / d
    L = best_index_int8(values, idv * xb)
    q = values[L].astype(np.float32)
    sumqx = _seq_sum(weight * q * xb)
    sumq2 = _seq_sum(weight * q * q)
    d = sumqx / sumq2 if sumq2 > 0 else f32(0)
    best = d * sumqx
    for itry in range(-ntry, ntry + 1):
        idv = f32(itry + v0) / vmax
        q = values[best_index_int8(values, idv * xb)].astype(np.float32)
        sumqx = _seq_sum(weight * q * xb)
        sumq2 = _seq_sum(weight * q * q)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            d = sumqx / sumq2
            best = d * sumqx
    return f32(d), L


def _quantize_iq4(x: np.ndarray, qw, super_block_size: int, ntry: int = 7):
    """``quantize_row_iq4_nl_impl`` for one super-block (32 for IQ4_NL, 256 for IQ4_XS).

    Returns (d fp16 bits, scales_h, scales_l (list), q4 bytes).
    """
    block_size = 32
    values = KVALUES_IQ4NL
    nb = super_block_size // block_size
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sigma2 = _seq_sum(x * x) * f32(2.0 / super_block_size)             # sigma2 *= 2.f/size
        L = np.zeros(super_block_size, dtype=np.int64)
        scales = [f32(0)] * nb
        max_scale, amax_scale = f32(0), f32(0)
        for ib in range(nb):
            xb = x[ib * block_size:(ib + 1) * block_size]
            if qw is not None:
                weight = qw[ib * block_size:(ib + 1) * block_size] * np.sqrt(sigma2 + xb * xb)
            else:
                weight = xb * xb
            d, Lb = _iq4_block_scale(xb, weight, ntry)
            scales[ib] = d
            if Lb is None:               # all (near) zero: scale 0, L left as it was
                continue
            L[ib * block_size:(ib + 1) * block_size] = Lb
            if abs(d) > amax_scale:      # the scale of largest magnitude, with its sign
                amax_scale, max_scale = f32(abs(d)), d

        scales_h, scales_l = 0, [0] * (nb // 2)
        if nb > 1:
            d = (-max_scale) / f32(32)
            dh = _fp16_bits(d)
            idv = f32(1) / d if d else f32(0)
            for ib in range(nb):
                l = nearest_int(idv * scales[ib])
                l = max(-32, min(31, l))
                dl = d * f32(l)
                idl = f32(1) / dl if dl else f32(0)
                xb = x[ib * block_size:(ib + 1) * block_size]
                L[ib * block_size:(ib + 1) * block_size] = best_index_int8(values, idl * xb)
                l += 32
                if ib % 2 == 0:
                    scales_l[ib // 2] = l & 0xF
                else:
                    scales_l[ib // 2] |= (l & 0xF) << 4
                scales_h |= (l >> 4) << (2 * (ib % 8))
        else:
            dh = _fp16_bits(scales[0])
            if ntry > 0:
                idv = f32(1) / scales[0] if scales[0] else f32(0)
                L = best_index_int8(values, idv * x)

    Lr = L.reshape(-1, 2, 16)
    q4 = (Lr[:, 0, :] | (Lr[:, 1, :] << 4)).astype(np.uint8).tobytes()
    return dh, scales_h, scales_l, q4


def quantize_row_iq4_nl(row: np.ndarray, imatrix=None) -> bytes:
    """quantize_iq4_nl for one row: each block of 32 on its own (ntry = 7)."""
    out = []
    for ibl in range(row.size // QK4_NL):
        qw = None if imatrix is None else imatrix[QK4_NL * ibl:QK4_NL * (ibl + 1)]
        dh, _, _, q4 = _quantize_iq4(row[QK4_NL * ibl:QK4_NL * (ibl + 1)], qw, QK4_NL)
        out.append(_u16(dh) + q4)
    return b"".join(out)


def quantize_row_iq4_xs(row: np.ndarray, imatrix=None) -> bytes:
    """quantize_iq4_xs for one row: super-blocks of 256, 8 blocks of 32 with 6-bit scales."""
    out = []
    for ibl in range(row.size // QK_K):
        qw = None if imatrix is None else imatrix[QK_K * ibl:QK_K * (ibl + 1)]
        dh, scales_h, scales_l, q4 = _quantize_iq4(row[QK_K * ibl:QK_K * (ibl + 1)], qw, QK_K)
        out.append(_u16(dh) + _u16(scales_h) + bytes(scales_l) + q4)
    return b"".join(out)

DEQUANTIZE = {
    "IQ2_XXS": dequantize_block_iq2_xxs,
    "IQ2_XS": dequantize_block_iq2_xs,
    "IQ2_S": dequantize_block_iq2_s,
    "IQ3_XXS": dequantize_block_iq3_xxs,
    "IQ3_S": dequantize_block_iq3_s,
    "IQ1_S": dequantize_block_iq1_s,
    "IQ1_M": dequantize_block_iq1_m,
    "IQ4_NL": dequantize_block_iq4_nl,
    "IQ4_XS": dequantize_block_iq4_xs,
}


QUANTIZE = {
    "IQ4_NL": quantize_row_iq4_nl,
    "IQ4_XS": quantize_row_iq4_xs,
}
