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
| scales | uint8_t | 8     | 8     | 4 uint16 ``sc``: 3-bit scales per 16 weights (bits 0..11), fp16 ``d`` in top nibbles |

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

Quantizers (``QUANTIZE``, the semantics of ``ggml_quantize_chunk``): IQ4_NL/IQ4_XS search a scale
per block of 32 over the 16 non-linear levels; the grid types search a scale per sub-block, project
each group onto the grid (or its nearest grid neighbours, from tables ggml builds at start-up and
``quant_grid`` rebuilds identically), and store 4-bit (IQ1: 3-bit) sub-block scales relative to
the largest one. The searches are described step by step in docs/formats/iquants.md.

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


def _asserted_scale(scale) -> np.float32:
    """``GGML_ASSERT(scale >= 0)``, which every i-quant search ends with: a NaN scale (e.g. from an
    infinite importance weight) makes ggml abort; here it is an error instead of bytes."""
    if not scale >= 0:
        raise GGSpecError(f"sub-block scale {float(scale)!r} (ggml aborts: GGML_ASSERT(scale >= 0))")
    return scale


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


# ==================================================================================================
# The quantizers' search tables (ggml's iq2xs_init_impl / iq3xs_init_impl)
#
# ggml builds these at start-up from its own copies of the grids written as level codes
# (kgrid_2bit_256, kgrid_1bit_2048, kgrid_256, ...). Those codes are exactly the format grids with
# each byte replaced by its rank among the grid's distinct byte values, so they are derived here.

@dataclass(frozen=True)
class QuantGrid:
    """The search tables of one grid, laid out as ggml lays them out.

    levels      (grid_size, ncoord) level of each coordinate (0..2 for 2-bit/1-bit grids, 0..7 for 3-bit)
    pos         2*levels + 1, the int8 values ggml's quantizer compares against (``kgrid_q2xs``)
    kmap        (kmap_size,) for a code ``u`` (levels packed ``bits`` apart): the grid index when
                ``u`` is on the grid, else ``-(offset + 1)`` with ``neighbours[offset]`` = count
                followed by that many grid indices (``kmap_q2xs`` / ``kmap_q3xs``)
    neighbours  flat uint16 array (``kneighbors_q2xs`` / ``kneighbors_q3xs``)
    """

    name: str
    bits: int
    nwant: int
    levels: np.ndarray
    pos: np.ndarray
    kmap: np.ndarray
    neighbours: np.ndarray

    def code(self, levels: np.ndarray) -> np.ndarray:
        """Pack levels (..., ncoord) into map codes ``u |= l << bits*i``."""
        shifts = self.bits * np.arange(self.levels.shape[1])
        return (np.asarray(levels, dtype=np.int64) << shifts).sum(axis=-1)

    def neighbours_of(self, u: int) -> np.ndarray:
        """The neighbour list of an off-grid code (ggml: ``kneighbors - kmap[u] - 1``)."""
        off = -int(self.kmap[u]) - 1
        n = int(self.neighbours[off])
        return self.neighbours[off + 1:off + 1 + n].astype(np.int64)


def _level_codes(grid_bytes: np.ndarray) -> np.ndarray:
    """Replace each byte of the grid by its rank among the grid's distinct values (signed order)."""
    vals = np.unique(grid_bytes)                     # sorted; int8 grids sort -1, 0, 1
    return np.searchsorted(vals, grid_bytes).astype(np.int64)


# grid name -> (format grid, bits per coordinate in a code, kmap_size, nwant)
_QUANT_GRIDS = {
    "IQ2_XXS": ("iq2xxs", 2, 43692, 2),
    "IQ2_XS": ("iq2xs", 2, 43692, 2),
    "IQ2_S": ("iq2s", 2, 43692, 1),
    "IQ1_S": ("iq1s", 2, 43692, 3),   # IQ1_S and IQ1_M share ggml's table (iq2_data[2])
    "IQ1_M": ("iq1s", 2, 43692, 3),
    "IQ3_XXS": ("iq3xxs", 3, 4096, 2),
    "IQ3_S": ("iq3s", 3, 4096, 3),
}
_FORMAT_GRIDS = {"iq2xxs": IQ2XXS_GRID, "iq2xs": IQ2XS_GRID, "iq2s": IQ2S_GRID, "iq1s": IQ1S_GRID,
                 "iq3xxs": IQ3XXS_GRID, "iq3s": IQ3S_GRID}


@functools.lru_cache(maxsize=None)
def _build_quant_grid(grid_name: str, bits: int, kmap_size: int, nwant: int) -> QuantGrid:
    levels = _level_codes(_FORMAT_GRIDS[grid_name])
    pos = (2 * levels + 1).astype(np.int8)
    grid_size, ncoord = levels.shape
    shifts = bits * np.arange(ncoord)

    kmap = np.full(kmap_size, -1, dtype=np.int64)
    kmap[(levels << shifts).sum(axis=1)] = np.arange(grid_size)

    # Every code u that is not on the grid gets the grid points closest to the point 2*l+1 it
    # stands for (squared euclidean distance in integers), sorted by (distance, grid index) -- the
    # order ggml's qsort with iq2_compare_func/iq3_compare_func gives, a total order since grid
    # indices are distinct -- cut after the nwant smallest distinct distances.
    off = np.flatnonzero(kmap < 0)
    P = (2 * ((off[:, None] >> shifts) & ((1 << bits) - 1)) + 1).astype(np.int16)
    G = pos.astype(np.int16)
    K = int(((2 * (1 << bits) - 2) ** 2) * ncoord) + 1      # distances are integers in [0, K)
    counts = np.empty(off.size, dtype=np.int64)
    members = []
    chunk = 2048
    for start in range(0, off.size, chunk):
        p = P[start:start + chunk]
        m = p.shape[0]
        d2 = np.zeros((m, grid_size), dtype=np.int16)           # squared distances, in integers
        for k in range(ncoord):
            diff = p[:, k, None] - G[None, :, k]
            d2 += diff * diff
        # the nwant-th smallest distinct distance of each row, from a per-row histogram
        hist = np.bincount((np.arange(m)[:, None] * K + d2).ravel(), minlength=m * K).reshape(m, K)
        rank = np.cumsum(hist > 0, axis=1)
        thr = np.where(rank[:, -1] >= nwant, np.argmax(rank >= nwant, axis=1), K - 1)
        sel = d2 <= thr[:, None]
        counts[start:start + m] = sel.sum(axis=1)
        r, j = np.nonzero(sel)
        order = np.lexsort((j, d2[r, j], r))         # by row, then distance, then grid index
        members.append(j[order])
    members = np.concatenate(members)

    # flat layout: for each off-grid code in increasing order, [count, members...]
    offsets = np.concatenate([[0], np.cumsum(1 + counts)[:-1]])
    neighbours = np.empty(int((1 + counts).sum()), dtype=np.uint16)
    neighbours[offsets] = counts
    rank = np.arange(members.size) - np.repeat(np.cumsum(counts) - counts, counts)
    neighbours[np.repeat(offsets, counts) + 1 + rank] = members
    kmap[off] = -(offsets + 1)
    return QuantGrid(grid_name, bits, nwant, levels, pos, kmap, neighbours)


def quant_grid(type_name: str) -> QuantGrid:
    """The search tables ggml_quantize_init builds for an i-quant type (cached per process)."""
    return _build_quant_grid(*_QUANT_GRIDS[type_name])


# ==================================================================================================
# pieces shared by the IQ2 / IQ3 searches

def _first_min_c(a: np.ndarray) -> int:
    """``imin = 0; min = a[0]; for i >= 1: if (a[i] < min) ...``: index of the first smallest."""
    imin, m = 0, a[0]
    for i in range(1, len(a)):
        if a[i] < m:
            m, imin = a[i], i
    return imin


def _abs_and_signs(xb: np.ndarray, weight: np.ndarray, even: bool):
    """xval = |xb| and one sign byte per group of 8 (bit i set when xb[i] < 0).

    With ``even`` (IQ2_XXS, IQ2_XS, IQ3_XXS: 7 stored sign bits, the 8th is parity), a group with
    an odd number of negatives flips the sign of its least important weight (smallest
    weight*x*x, first on ties): that xval becomes negative and its sign bit toggles.
    Returns (xval, signs): the stored codes are ``signs & 127`` when ``even``.
    """
    neg = ~(xb >= 0)                                  # C: if (x >= 0) ... else negative (NaN too)
    xval = np.where(neg, -xb, xb).astype(np.float32)
    signs = []
    for k in range(xb.size // 8):
        g = slice(8 * k, 8 * k + 8)
        s = int((neg[g].astype(np.int64) << np.arange(8)).sum())
        if even and int(neg[g].sum()) % 2:
            imin = 8 * k + _first_min_c(weight[g] * xb[g] * xb[g])
            xval[imin] = -xval[imin]
            s ^= 1 << (imin - 8 * k)
        signs.append(s & 127 if even else s)
    return xval, signs


def _grid_levels(id_, xval: np.ndarray, kmax: int) -> np.ndarray:
    """``l = nearest_int(0.5f*(id*xval - 1))`` clamped to ``0..kMaxQ-1``, element-wise."""
    return np.clip(_nearest_int_v(f32(0.5) * (id_ * xval - f32(1))), 0, kmax - 1)


def _best_neighbour(tab: QuantGrid, u: int, xval: np.ndarray, waux: np.ndarray, scale) -> int:
    """iq2_find_best_neighbour / iq3_find_best_neighbour: the neighbour of code ``u`` with the
    smallest sum of ``waux*diff*diff``, ``diff = scale*(2l+1) - xval``; first one on ties."""
    cand = tab.neighbours_of(u)
    q = tab.pos[cand].astype(np.float32)
    diff = scale * q - xval
    d2 = _seq_sum(waux * diff * diff)
    j = _first_strict_min(d2, FLT_MAX)
    if j < 0:  # ggml: GGML_ASSERT(grid_index >= 0) aborts
        raise GGSpecError(f"{tab.name}: no finite neighbour distance (ggml aborts here)")
    return int(cand[j])


def _snap_to_grid(tab: QuantGrid, L: np.ndarray, xval, waux, scale, groups=None):
    """Replace the levels of each off-grid group (of those in ``groups``) by its best neighbour.

    Returns (L, on_grid) with on_grid[k] telling whether group k's levels were on the grid.
    """
    n = tab.levels.shape[1]
    L = L.copy()
    codes = tab.code(L.reshape(-1, n))
    on_grid = tab.kmap[codes] >= 0
    for k in (range(len(codes)) if groups is None else groups):
        if on_grid[k]:
            continue
        g = slice(n * k, n * (k + 1))
        L[g] = tab.levels[_best_neighbour(tab, int(codes[k]), xval[g], waux[g], scale)]
    return L, on_grid


def _grid_indices(tab: QuantGrid, L: "np.ndarray | None") -> np.ndarray:
    """Grid index of each group's levels (ggml aborts with "Oops: found point not on grid")."""
    if L is None:
        # no trial scale was accepted and the scale is not positive (NaN sums): ggml goes on with
        # its level array uninitialised for this sub-block -- undefined; in our runs it aborted
        raise GGSpecError(f"{tab.name}: no level set was chosen for a sub-block (NaN sums; ggml reads "
                          "uninitialised levels here and aborts)")
    idx = tab.kmap[tab.code(L.reshape(-1, tab.levels.shape[1]))]
    if (idx < 0).any():
        raise GGSpecError(f"{tab.name}: quantized point not on the grid (ggml aborts here)")
    return idx


def _sums(weight, xval, L):
    """sumqx = sum w*xval*q, sumq2 = sum w*q*q with q = 2L+1, sequentially in float32."""
    q = (2 * L + 1).astype(np.float32)
    return _seq_sum(weight * xval * q), _seq_sum(weight * q * q)


def _scale_nibbles(scales, d, kmax: int = 15) -> list[int]:
    """``l = nearest_int(0.5f*(id*scale - 1))`` clamped to 0..kmax with ``id = 1/d``."""
    idv = f32(1) / d
    return [max(0, min(kmax, nearest_int(f32(0.5) * (idv * s - f32(1))))) for s in scales]


def make_qp_quants(nmax: int, x: np.ndarray, quant_weights: np.ndarray) -> np.float32:
    """ggml's make_qp_quants (the scale only; IQ2_XXS uses it to seed its search).

    ``L`` is a uint8 array in ggml: a negative level (possible, since IQ2_XXS passes one flipped,
    negative xval) wraps to 256 + l there and is read back wrapped; this is reproduced.
    """
    n = x.size
    w = quant_weights
    vmax = _c_max(x, start=0)
    if vmax < GROUP_MAX_EPS:
        return f32(0)
    iscale = f32(nmax) / vmax
    L = _nearest_int_v(iscale * x) & 0xFF
    scale = f32(1) / iscale
    diff = x - scale * L.astype(np.float32)
    best_mse = _seq_sum(w * diff * diff)
    for is_ in range(-4, 5):
        if is_ == 0:
            continue
        iscale_is = (f32(0.1) * f32(is_) + f32(nmax)) / vmax
        scale_is = f32(1) / iscale_is
        l = np.minimum(nmax, _nearest_int_v(iscale_is * x))
        diff = x - scale_is * l.astype(np.float32)
        mse = _seq_sum(w * diff * diff)
        if mse < best_mse:
            best_mse, iscale = mse, iscale_is
    l = np.minimum(nmax, _nearest_int_v(iscale * x))
    L = l & 0xFF
    lf = l.astype(np.float32)
    sumlx = _seq_sum(w * x * lf)
    suml2 = _seq_sum(w * lf * lf)
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            wi, xi, Li = w[i], x[i], f32(int(L[i]))
            slx = sumlx - wi * xi * Li
            sl2 = suml2 - wi * Li * Li
            if slx > 0 and sl2 > 0:
                new_l = min(nmax, nearest_int(xi * sl2 / slx))
                if new_l != int(L[i]):
                    nl = f32(new_l)
                    slx = slx + wi * xi * nl
                    sl2 = sl2 + wi * nl * nl
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx, suml2 = slx, sl2
                        n_changed += 1
        if not n_changed:
            break
    return sumlx / suml2 if suml2 > f32(0) else f32(0)


def _sigma2(xbl: np.ndarray, times_two: bool) -> np.float32:
    """``sumx2/QK_K`` (IQ2_XXS, IQ2_XS) or ``2*sumx2/QK_K`` (the others), sumx2 sequential."""
    sumx2 = _seq_sum(xbl * xbl)
    return (f32(2) * sumx2 if times_two else sumx2) / f32(QK_K)


# ==================================================================================================
# IQ2_XXS, IQ2_XS, IQ2_S

def quantize_block_iq2_xxs(xbl: np.ndarray, qw: np.ndarray) -> bytes:
    """quantize_row_iq2_xxs_impl for one super-block (imatrix required)."""
    tab = quant_grid("IQ2_XXS")
    kMaxQ = 3
    sigma2 = _sigma2(xbl, times_two=False)
    q2 = [0] * 16                                     # two uint32 per sub-block of 32
    scales = [f32(0)] * 8
    max_scale = f32(0)
    for ib in range(8):
        xb = xbl[32 * ib:32 * ib + 32]
        weight = qw[32 * ib:32 * ib + 32] * np.sqrt(sigma2 + xb * xb)
        waux = np.sqrt(weight)
        xval, block_signs = _abs_and_signs(xb, weight, even=True)
        vmax = _c_max(xval)
        if vmax < GROUP_MAX_EPS:
            continue
        scale = make_qp_quants(kMaxQ + 1, xval, weight)
        eff_max = scale * f32(kMaxQ)
        if eff_max <= 0:
            continue
        best = f32(0)
        L = None
        for is_ in range(-6, 7):
            idv = (f32(2 * kMaxQ - 1) + f32(is_) * f32(0.1)) / eff_max
            this_scale = f32(1) / idv
            Laux, _ = _snap_to_grid(tab, _grid_levels(idv, xval, kMaxQ), xval, waux, this_scale)
            sumqx, sumq2 = _sums(weight, xval, Laux)
            if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                scale = sumqx / sumq2
                best = scale * sumqx
                L = Laux
        if scale > 0:
            # re-project every group at the chosen scale, then refit the scale
            L, _ = _snap_to_grid(tab, _grid_levels(f32(1) / scale, xval, kMaxQ), xval, waux, scale)
            sumqx, sumq2 = _sums(weight, xval, L)
            if sumq2 > 0:
                scale = sumqx / sumq2
        if scale < 0:  # "should never happen": flip the scale and the stored signs
            scale = -scale
            block_signs = [(~s) & 127 for s in block_signs]
        idx = _grid_indices(tab, L)
        for k in range(4):
            q2[2 * ib] |= int(idx[k]) << (8 * k)
            q2[2 * ib + 1] |= block_signs[k] << (7 * k)
        scales[ib] = _asserted_scale(scale)
        max_scale = _c_max([scale], start=max_scale)
    if not max_scale:
        return _u16(_fp16_bits(0.0)) + bytes(64)
    d = max_scale / f32(31)
    for ib, l in enumerate(_scale_nibbles(scales, d)):
        q2[2 * ib + 1] |= l << 28
    return _u16(_fp16_bits(d)) + b"".join(v.to_bytes(4, "little") for v in q2)


def _iq2_16_search(tab: QuantGrid, xval, weight, waux, vmax):
    """The scale/grid search over 16 weights (two groups of 8) of IQ2_XS and IQ2_S.

    Returns (scale, L).
    """
    kMaxQ = 3
    best = f32(0)
    scale = vmax / f32(2 * kMaxQ - 1)
    L = np.zeros(16, dtype=np.int64)
    is_on_grid = np.array([True, True])
    for is_ in range(-9, 10):
        idv = (f32(2 * kMaxQ - 1) + f32(is_) * f32(0.1)) / vmax
        this_scale = f32(1) / idv
        Laux, on_grid = _snap_to_grid(tab, _grid_levels(idv, xval, kMaxQ), xval, waux, this_scale)
        sumqx, sumq2 = _sums(weight, xval, Laux)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            L, is_on_grid = Laux, on_grid
    if (~is_on_grid).any() and scale > 0:
        # re-project only the groups that needed a neighbour, at the chosen scale
        Lnew = _grid_levels(f32(1) / scale, xval, kMaxQ)
        off = [k for k in range(2) if not is_on_grid[k]]
        for k in off:
            L[8 * k:8 * k + 8] = Lnew[8 * k:8 * k + 8]
        L, _ = _snap_to_grid(tab, L, xval, waux, scale, groups=off)
        sumqx, sumq2 = _sums(weight, xval, L)
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale, L


def quantize_block_iq2_xs(xbl: np.ndarray, qw: np.ndarray) -> bytes:
    """quantize_row_iq2_xs_impl for one super-block (imatrix required)."""
    tab = quant_grid("IQ2_XS")
    sigma2 = _sigma2(xbl, times_two=False)
    q2 = [0] * 32                                     # one uint16 per group of 8
    scales = [f32(0)] * 16
    max_scale = f32(0)
    for ib in range(16):
        xb = xbl[16 * ib:16 * ib + 16]
        weight = qw[16 * ib:16 * ib + 16] * np.sqrt(sigma2 + xb * xb)
        waux = np.sqrt(weight)
        xval, block_signs = _abs_and_signs(xb, weight, even=True)
        vmax = _c_max(xval)
        if vmax < GROUP_MAX_EPS:
            continue
        scale, L = _iq2_16_search(tab, xval, weight, waux, vmax)
        if scale < 0:
            scale = -scale
            block_signs = [(~s) & 127 for s in block_signs]
        idx = _grid_indices(tab, L)
        for k in range(2):
            q2[2 * ib + k] = int(idx[k]) | (block_signs[k] << 9)
        scales[ib] = _asserted_scale(scale)
        max_scale = _c_max([scale], start=max_scale)
    if not max_scale:
        return _u16(_fp16_bits(0.0)) + bytes(64 + 8)
    d = max_scale / f32(31)
    nib = _scale_nibbles(scales, d)
    sc = bytes(nib[2 * i] | (nib[2 * i + 1] << 4) for i in range(8))
    return _u16(_fp16_bits(d)) + b"".join(_u16(v) for v in q2) + sc


def quantize_block_iq2_s(xbl: np.ndarray, qw) -> bytes:
    """quantize_row_iq2_s_impl for one super-block (imatrix optional)."""
    tab = quant_grid("IQ2_S")
    sigma2 = _sigma2(xbl, times_two=True)
    qs = bytearray(64)                                # 32 index bytes, then 32 sign bytes
    qh = bytearray(8)
    scales = [f32(0)] * 16
    max_scale = f32(0)
    for ib in range(16):
        xb = xbl[16 * ib:16 * ib + 16]
        if qw is not None:
            weight = qw[16 * ib:16 * ib + 16] * np.sqrt(sigma2 + xb * xb)
        else:
            weight = f32(0.25) * sigma2 + xb * xb
        waux = np.sqrt(weight)
        xval, block_signs = _abs_and_signs(xb, weight, even=False)
        vmax = _c_max(xval)
        if vmax < GROUP_MAX_EPS_IQ2_S:
            continue
        scale, L = _iq2_16_search(tab, xval, weight, waux, vmax)
        if scale < 0:
            scale = -scale
            block_signs = [(~s) & 0xFF for s in block_signs]
        idx = _grid_indices(tab, L)
        for k in range(2):
            i8 = 2 * ib + k
            qs[i8] = int(idx[k]) & 255
            qh[i8 // 4] |= (int(idx[k]) >> 8) << (2 * (i8 % 4))
            qs[32 + i8] = block_signs[k]
        scales[ib] = _asserted_scale(scale)
        max_scale = _c_max([scale], start=max_scale)
    if not max_scale:  # d = 0 and zero scales, but (unlike IQ2_XXS/IQ2_XS) the indices stay
        return _u16(_fp16_bits(0.0)) + bytes(qs) + bytes(qh) + bytes(8)
    d = max_scale / f32(31)
    nib = _scale_nibbles(scales, d)
    sc = bytes(nib[2 * i] | (nib[2 * i + 1] << 4) for i in range(8))
    return _u16(_fp16_bits(d * f32(0.9875))) + bytes(qs) + bytes(qh) + sc


# ==================================================================================================
# IQ3_XXS, IQ3_S (groups of 4 on a 3-bit grid, sub-blocks of 32)

def _iq3_search(tab: QuantGrid, xval, weight, waux, vmax, is_range: int, init_on_grid: bool,
                refine_all: bool):
    """The scale/grid search over 32 weights (8 groups of 4) of IQ3_XXS and IQ3_S.

    IQ3_XXS: is in -15..15, groups start "on grid", only off-grid groups are re-projected.
    IQ3_S:   is in -9..9, groups start "off grid", and the re-projection (when any group is off
             grid) redoes every group (ggml has the ``continue`` for on-grid groups commented out).
    Returns (scale, L).
    """
    kMaxQ = 8
    best = f32(0)
    scale = vmax / f32(2 * kMaxQ - 1)
    L = np.zeros(32, dtype=np.int64)
    is_on_grid = np.full(8, init_on_grid)
    for is_ in range(-is_range, is_range + 1):
        idv = (f32(2 * kMaxQ - 1) + f32(is_) * f32(0.2)) / vmax
        this_scale = f32(1) / idv
        Laux, on_grid = _snap_to_grid(tab, _grid_levels(idv, xval, kMaxQ), xval, waux, this_scale)
        sumqx, sumq2 = _sums(weight, xval, Laux)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            L, is_on_grid = Laux, on_grid
    if (~is_on_grid).any() and scale > 0:
        groups = list(range(8)) if refine_all else [k for k in range(8) if not is_on_grid[k]]
        Lnew, _ = _snap_to_grid(tab, _grid_levels(f32(1) / scale, xval, kMaxQ), xval, waux, scale,
                                groups=groups)
        L = L.copy()
        for k in groups:
            L[4 * k:4 * k + 4] = Lnew[4 * k:4 * k + 4]
        sumqx, sumq2 = _sums(weight, xval, L)
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale, L


def quantize_block_iq3_xxs(xbl: np.ndarray, qw) -> bytes:
    """quantize_row_iq3_xxs_impl(256, ...) for one super-block (imatrix optional)."""
    tab = quant_grid("IQ3_XXS")
    sigma2 = _sigma2(xbl, times_two=True)
    q3 = bytearray(64)                                # one grid index per group of 4
    scales_and_signs = [0] * 8
    scales = [f32(0)] * 8
    max_scale = f32(0)
    for ib in range(8):
        xb = xbl[32 * ib:32 * ib + 32]
        if qw is not None:
            weight = qw[32 * ib:32 * ib + 32] * np.sqrt(sigma2 + xb * xb)
        else:
            weight = xb * xb
        waux = np.sqrt(weight)
        xval, block_signs = _abs_and_signs(xb, weight, even=True)
        vmax = _c_max(xval)
        if vmax < GROUP_MAX_EPS_IQ3_XXS:
            continue
        scale, L = _iq3_search(tab, xval, weight, waux, vmax, 15, init_on_grid=True, refine_all=False)
        if scale < 0:
            scale = -scale
            block_signs = [(~s) & 127 for s in block_signs]
        idx = _grid_indices(tab, L)
        q3[8 * ib:8 * ib + 8] = bytes(int(i) for i in idx)
        scales_and_signs[ib] = block_signs[0] | (block_signs[1] << 7) | (block_signs[2] << 14) | (block_signs[3] << 21)
        scales[ib] = _asserted_scale(scale)
        max_scale = _c_max([scale], start=max_scale)
    if not max_scale:
        return _u16(_fp16_bits(0.0)) + bytes(96)
    d = max_scale / f32(31)
    for ib, l in enumerate(_scale_nibbles(scales, d)):
        scales_and_signs[ib] |= l << 28
    return (_u16(_fp16_bits(d * f32(1.0125))) + bytes(q3)
            + b"".join(v.to_bytes(4, "little") for v in scales_and_signs))


def quantize_block_iq3_s(xbl: np.ndarray, qw) -> bytes:
    """quantize_row_iq3_s_impl(32, ...) for one super-block (imatrix optional).

    ggml quirk kept: ``qs`` and ``signs`` are written through pointers that advance only after a
    sub-block that was not all zero, so after an all-zero sub-block the following sub-blocks'
    indices and signs land 8 (resp. 4) bytes early and the block's tail stays zero. ``qh`` and the
    scales are indexed by sub-block and are not shifted.
    """
    tab = quant_grid("IQ3_S")
    sigma2 = _sigma2(xbl, times_two=True)
    qs, qh, signs = bytearray(64), bytearray(8), bytearray(32)
    qs_at, signs_at = 0, 0                            # ggml's advancing qs / signs pointers
    scales = [f32(0)] * 8
    max_scale = f32(0)
    for ib in range(8):
        xb = xbl[32 * ib:32 * ib + 32]
        if qw is not None:
            weight = qw[32 * ib:32 * ib + 32] * np.sqrt(sigma2 + xb * xb)
        else:
            weight = xb * xb
        waux = np.sqrt(weight)
        xval, block_signs = _abs_and_signs(xb, weight, even=False)
        vmax = _c_max(xval)
        if not vmax:
            continue                                  # (without advancing qs_at / signs_at)
        scale, L = _iq3_search(tab, xval, weight, waux, vmax, 9, init_on_grid=False, refine_all=True)
        if scale < 0:
            scale = -scale
            block_signs = [(~s) & 0xFF for s in block_signs]
        idx = _grid_indices(tab, L)
        for k in range(8):
            qs[qs_at + k] = int(idx[k]) & 255
            qh[ib] |= (int(idx[k]) >> 8) << k
        qs_at += 8
        signs[signs_at:signs_at + 4] = bytes(block_signs)
        signs_at += 4
        scales[ib] = _asserted_scale(scale)
        max_scale = _c_max([scale], start=max_scale)
    if not max_scale:  # d = 0 and zero scales, but (unlike IQ3_XXS) indices and signs stay
        return _u16(_fp16_bits(0.0)) + bytes(qs) + bytes(qh) + bytes(signs) + bytes(4)
    d = max_scale / f32(31)
    nib = _scale_nibbles(scales, d)
    sc = bytes(nib[2 * i] | (nib[2 * i + 1] << 4) for i in range(4))
    return _u16(_fp16_bits(d * f32(1.033))) + bytes(qs) + bytes(qh) + bytes(signs) + sc


# ==================================================================================================
# IQ1_S, IQ1_M (values -1, 0, +1 shifted by +-delta; exhaustive split search)

IQ1S_X_P = np.array([-1 + IQ1S_DELTA, IQ1S_DELTA, 1 + IQ1S_DELTA], dtype=np.float32)     # x_p
IQ1S_X_M = np.array([-1 - IQ1S_DELTA, -IQ1S_DELTA, 1 - IQ1S_DELTA], dtype=np.float32)    # x_m


def _sorted_order(xb: np.ndarray) -> np.ndarray:
    """Indices of xb in increasing order; equal values keep their index order.

    ggml sorts (value, index) pairs with qsort and iq1_sort_helper, which compares the value only.
    qsort is not required to be stable; glibc's (the oracle's C library) is a merge sort for
    arrays this small and keeps equal values in index order, which is what this reproduces. A
    C library with an unstable qsort can order ties differently and produce different bytes.
    """
    return np.argsort(xb, kind="stable")


def _scan_candidates(sumqx: np.ndarray, sumq2: np.ndarray) -> int:
    """Index of the candidate the sequential search keeps, or -1.

    ggml: ``best = -FLT_MAX; for each candidate: if (sumq2 > 0 && sumqx*sumqx > best*sumq2)
    {scale = sumqx/sumq2; best = scale*sumqx; keep}``. Done here by jumping from one accepted
    candidate to the next one that beats the current best (the same comparisons, in float32).
    """
    lhs = sumqx * sumqx
    best = -FLT_MAX
    start, chosen = 0, -1
    while start < sumqx.size:
        ok = (sumq2[start:] > 0) & (lhs[start:] > best * sumq2[start:])
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            break
        chosen = start + int(hits[0])
        scale = sumqx[chosen] / sumq2[chosen]
        best = scale * sumqx[chosen]
        start = chosen + 1
    return chosen


def _iq1_best_neighbour2(tab: QuantGrid, u: int, xb, weight, scale, xx: np.ndarray) -> int:
    """iq1_find_best_neighbour2: the neighbour minimising sum w*(scale*xx[l] - x)^2."""
    cand = tab.neighbours_of(u)
    q = xx[tab.levels[cand]]
    diff = scale * q - xb
    d2 = _seq_sum(weight * diff * diff)
    j = _first_strict_min(d2, FLT_MAX)
    if j < 0:
        # ggml then scans the whole grid with an out-of-bounds read (xval[i] for i up to 2047)
        raise GGSpecError(f"{tab.name}: no finite neighbour distance (ggml reads out of bounds here)")
    return int(cand[j])


def _iq1_snap(tab: QuantGrid, L: np.ndarray, xb, weight, scale, xx_of_group):
    """Grid index per group of 8; off-grid groups take iq1_find_best_neighbour2's choice.

    Returns (index per group, all_on_grid).
    """
    codes = tab.code(L.reshape(-1, 8))
    index = tab.kmap[codes].copy()
    for k in np.flatnonzero(index < 0):
        g = slice(8 * k, 8 * k + 8)
        index[k] = _iq1_best_neighbour2(tab, int(codes[k]), xb[g], weight[g], scale, xx_of_group(k))
    return index, bool((tab.kmap[codes] >= 0).all())


def quantize_block_iq1_s(xbl: np.ndarray, qw: np.ndarray) -> bytes:
    """quantize_row_iq1_s_impl for one super-block (imatrix required)."""
    tab = quant_grid("IQ1_S")
    block_size = 32
    sigma2 = _sigma2(xbl, times_two=True)
    qs = bytearray(32)
    qh = [0] * 8
    scales = [f32(0)] * 8
    shifts = [1] * 8
    max_scale = f32(0)
    i1s, i2s = np.triu_indices(block_size + 1)        # all 0 <= i1 <= i2 <= 32, i1 outer, i2 inner
    for ib in range(8):
        xb = xbl[block_size * ib:block_size * (ib + 1)]
        weight = qw[block_size * ib:block_size * (ib + 1)] * np.sqrt(sigma2 + xb * xb)
        vmax = _c_max(np.abs(xb))
        if vmax < GROUP_MAX_EPS_IQ1_S:
            continue
        # Sort by value; with prefix sums of w*x and w over the sorted order, the split "first i1
        # sorted weights -> level 0, next up to i2 -> level 1, rest -> level 2" has
        # sumqx = S[i1]*v0 + (S[i2]-S[i1])*v1 + (S[32]-S[i2])*v2 (likewise sumq2 with W and v^2).
        idx = _sorted_order(xb)
        sumx = np.concatenate([[f32(0)], np.add.accumulate((weight * xb)[idx], dtype=np.float32)])
        sumw = np.concatenate([[f32(0)], np.add.accumulate(weight[idx], dtype=np.float32)])
        sumx, sumw = sumx.astype(np.float32), sumw.astype(np.float32)
        A, B, C = sumx[i1s] - sumx[0], sumx[i2s] - sumx[i1s], sumx[block_size] - sumx[i2s]
        Aw, Bw, Cw = sumw[i1s] - sumw[0], sumw[i2s] - sumw[i1s], sumw[block_size] - sumw[i2s]
        cand_qx, cand_q2 = [], []
        for v in (IQ1S_X_P, IQ1S_X_M):                # for each split: x_p first, then x_m
            cand_qx.append(A * v[0] + B * v[1] + C * v[2])
            cand_q2.append(Aw * v[0] * v[0] + Bw * v[1] * v[1] + Cw * v[2] * v[2])
        sumqx_c = np.stack(cand_qx, axis=1).reshape(-1)
        sumq2_c = np.stack(cand_q2, axis=1).reshape(-1)
        chosen = _scan_candidates(sumqx_c, sumq2_c)
        if chosen < 0:
            continue
        scale = sumqx_c[chosen] / sumq2_c[chosen]
        besti1, besti2 = int(i1s[chosen // 2]), int(i2s[chosen // 2])
        best_shift = 1 if chosen % 2 == 0 else -1
        L = np.empty(block_size, dtype=np.int64)
        L[idx[:besti1]] = 0
        L[idx[besti1:besti2]] = 1
        L[idx[besti2:]] = 2
        if scale < 0:
            L = 2 - L
            scale = -scale
            best_shift = -best_shift
        xx = IQ1S_X_P if best_shift == 1 else IQ1S_X_M
        index, all_on_grid = _iq1_snap(tab, L, xb, weight, scale, lambda k: xx)
        if not all_on_grid:
            q = xx[tab.levels[index]].reshape(-1)
            sumqx = _seq_sum(weight * q * xb)
            sumq2 = _seq_sum(weight * q * q)
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        h = 0
        for k in range(4):
            qs[4 * ib + k] = int(index[k]) & 255
            h |= (int(index[k]) >> 8) << (3 * k)
        qh[ib] = h
        scales[ib] = _asserted_scale(scale)
        shifts[ib] = best_shift
        max_scale = _c_max([scale], start=max_scale)
    if not max_scale:  # d = 0; indices stay
        return _u16(_fp16_bits(0.0)) + bytes(qs) + b"".join(_u16(h) for h in qh)
    d = max_scale / f32(15)
    for ib, l in enumerate(_scale_nibbles(scales, d, kmax=7)):
        if shifts[ib] == -1:
            l |= 8
        qh[ib] |= l << 12
    return _u16(_fp16_bits(d * f32(1.125))) + bytes(qs) + b"".join(_u16(h) for h in qh)


IQ1M_X_P = np.array([-1 + IQ1M_DELTA, IQ1M_DELTA, 1 + IQ1M_DELTA], dtype=np.float32)
IQ1M_X_M = np.array([-1 - IQ1M_DELTA, -IQ1M_DELTA, 1 - IQ1M_DELTA], dtype=np.float32)
IQ1M_MASKS = (0x00, 0x80, 0x08, 0x88)   # shift choice k -> delta sign bits of the two groups


def _iq1m_xx(best_k: int, group: int) -> np.ndarray:
    """k = 0: (+,+), 1: (+,-), 2: (-,+), 3: (-,-) for the two groups of 8 of a sub-block of 16."""
    if group == 0:
        return IQ1M_X_P if best_k < 2 else IQ1M_X_M
    return IQ1M_X_P if best_k % 2 == 0 else IQ1M_X_M


def quantize_block_iq1_m(xbl: np.ndarray, qw) -> bytes:
    """quantize_row_iq1_m_impl for one super-block (imatrix optional)."""
    tab = quant_grid("IQ1_M")
    block_size = 16
    sigma2 = _sigma2(xbl, times_two=True)
    qs, qh = bytearray(32), bytearray(16)
    sc = [0] * 4
    scales = [f32(0)] * 16
    shifts = [0] * 16
    max_scale = f32(0)
    i1s, i2s = np.triu_indices(block_size + 1)
    p2, m2 = IQ1M_X_P[2], IQ1M_X_M[2]
    cp1 = IQ1M_X_P[0] * IQ1M_X_P[0] - IQ1M_X_P[1] * IQ1M_X_P[1]
    cp2 = IQ1M_X_P[1] * IQ1M_X_P[1] - IQ1M_X_P[2] * IQ1M_X_P[2]
    cm1 = IQ1M_X_M[0] * IQ1M_X_M[0] - IQ1M_X_M[1] * IQ1M_X_M[1]
    cm2 = IQ1M_X_M[1] * IQ1M_X_M[1] - IQ1M_X_M[2] * IQ1M_X_M[2]

    def weights_of(ib):
        xb = xbl[block_size * ib:block_size * (ib + 1)]
        if qw is not None:
            return qw[block_size * ib:block_size * (ib + 1)] * np.sqrt(sigma2 + xb * xb)
        return xb * xb

    for ib in range(16):
        xb = xbl[block_size * ib:block_size * (ib + 1)]
        weight = weights_of(ib)
        vmax = _c_max(np.abs(xb))
        if vmax < GROUP_MAX_EPS_IQ1_M:
            continue
        idx = _sorted_order(xb)
        # prefix sums per half of the sub-block (each half may use its own delta sign), over the
        # sorted order; px[h][j+1] = px[h][j] + w*x when element j of the order is in half h
        px = np.zeros((2, block_size + 1), dtype=np.float32)
        pw = np.zeros((2, block_size + 1), dtype=np.float32)
        for j in range(block_size):
            i = int(idx[j])
            h = 0 if i < block_size // 2 else 1
            px[h, j + 1] = px[h, j] + weight[i] * xb[i]
            px[1 - h, j + 1] = px[1 - h, j]
            pw[h, j + 1] = pw[h, j] + weight[i]
            pw[1 - h, j + 1] = pw[1 - h, j]
        txs, tws = px[:, block_size], pw[:, block_size]
        qx_p, qx_m, q2_p, q2_m = [], [], [], []
        for h in range(2):
            sx = px[h, i1s] + px[h, i2s]
            qx_p.append(txs[h] * p2 - sx)
            qx_m.append(txs[h] * m2 - sx)
            q2_p.append(tws[h] * p2 * p2 + pw[h, i1s] * cp1 + pw[h, i2s] * cp2)
            q2_m.append(tws[h] * m2 * m2 + pw[h, i1s] * cm1 + pw[h, i2s] * cm2)
        # candidates per split, in ggml's order k = 0..3: (+,+), (+,-), (-,+), (-,-)
        sumqx_c = np.stack([qx_p[0] + qx_p[1], qx_p[0] + qx_m[1],
                            qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]], axis=1).reshape(-1)
        sumq2_c = np.stack([q2_p[0] + q2_p[1], q2_p[0] + q2_m[1],
                            q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]], axis=1).reshape(-1)
        chosen = _scan_candidates(sumqx_c, sumq2_c)
        if chosen < 0:
            continue
        scale = sumqx_c[chosen] / sumq2_c[chosen]
        besti1, besti2, best_k = int(i1s[chosen // 4]), int(i2s[chosen // 4]), chosen % 4
        L = np.empty(block_size, dtype=np.int64)
        L[idx[:besti1]] = 0
        L[idx[besti1:besti2]] = 1
        L[idx[besti2:]] = 2
        if scale < 0:
            L = 2 - L
            scale = -scale
            best_k = 3 - best_k                       # 0 <-> 3, 1 <-> 2
        index, all_on_grid = _iq1_snap(tab, L, xb, weight, scale, lambda k: _iq1m_xx(best_k, k))
        if not all_on_grid:
            q = np.concatenate([_iq1m_xx(best_k, k)[tab.levels[index[k]]] for k in range(2)])
            sumqx = _seq_sum(weight * q * xb)
            sumq2 = _seq_sum(weight * q * q)
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        qs[2 * ib] = int(index[0]) & 255
        qs[2 * ib + 1] = int(index[1]) & 255
        qh[ib] = (int(index[0]) >> 8) | ((int(index[1]) >> 8) << 4)
        scales[ib] = _asserted_scale(scale)
        shifts[ib] = best_k
        max_scale = _c_max([scale], start=max_scale)

    if not max_scale:  # no scale at all: indices stay, scales and d are zero
        return bytes(qs) + bytes(qh) + bytes(8)

    # 3-bit sub-block scales, then refit d over the whole super-block with the final indices
    d = max_scale / f32(15)
    ls = _scale_nibbles(scales, d, kmax=7)
    q_all, w_all = [], []
    for ib in range(16):
        sc[ib // 4] |= ls[ib] << (3 * (ib % 4))
        qh[ib] |= IQ1M_MASKS[shifts[ib]]
        w_all.append(weights_of(ib))
        for k in range(2):
            index = qs[2 * ib + k] + ((qh[ib] << (8 - 4 * k)) & 0x700)
            q_all.append(_iq1m_xx(shifts[ib], k)[tab.levels[index]] * f32(2 * ls[ib] + 1))
    q = np.concatenate(q_all)
    w = np.concatenate(w_all)
    sumqx = _seq_sum(w * q * xbl)
    sumq2 = _seq_sum(w * q * q)
    if sumq2 > 0:
        d = sumqx / sumq2
    s = _fp16_bits(d * f32(1.1125))
    sc[0] |= (s & 0x000F) << 12
    sc[1] |= (s & 0x00F0) << 8
    sc[2] |= (s & 0x0F00) << 4
    sc[3] |= (s & 0xF000)
    return bytes(qs) + bytes(qh) + b"".join(_u16(v) for v in sc)

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


def _per_superblock(block_fn):
    """A row quantizer that runs ``block_fn(x_block, imatrix_block)`` on each super-block of 256."""
    def quantize_row(row: np.ndarray, imatrix=None) -> bytes:
        out = []
        for ibl in range(row.size // QK_K):
            qw = None if imatrix is None else imatrix[QK_K * ibl:QK_K * (ibl + 1)]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                out.append(block_fn(row[QK_K * ibl:QK_K * (ibl + 1)], qw))
        return b"".join(out)
    quantize_row.__name__ = block_fn.__name__.replace("block", "row")
    quantize_row.__doc__ = f"{block_fn.__name__} on each super-block of a row."
    return quantize_row


QUANTIZE = {
    "IQ2_XXS": _per_superblock(quantize_block_iq2_xxs),
    "IQ2_XS": _per_superblock(quantize_block_iq2_xs),
    "IQ2_S": _per_superblock(quantize_block_iq2_s),
    "IQ3_XXS": _per_superblock(quantize_block_iq3_xxs),
    "IQ3_S": _per_superblock(quantize_block_iq3_s),
    "IQ1_S": _per_superblock(quantize_block_iq1_s),
    "IQ1_M": _per_superblock(quantize_block_iq1_m),
    "IQ4_NL": quantize_row_iq4_nl,
    "IQ4_XS": quantize_row_iq4_xs,
}
