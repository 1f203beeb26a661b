"""numpy backend: whole-tensor vectorized ggml dequantization and quantization, bit- and byte-exact.

    from ggspec import accel
    b = accel.backend("numpy")
    y = b.dequantize("Q4_K", raw, n)              # float32, same uint32 view as ggml's to_float
    raw = b.quantize("Q4_K", x, imatrix=None)     # bytes, same as ggml_quantize_chunk

Same semantics as ``ggspec.reference`` (which follows ggml), but every operation works on all
blocks of a chunk at once instead of one block at a time. Chunks (a few hundred KB of output, so
the temporaries stay in cache) run on a small thread pool: numpy releases the GIL inside its loops.

How exactness is kept (see ``accel/_np``):

* block fields are decoded with integer ops; fp16 goes through a 65536-entry table built from
  ``reference.fp.f16_to_f32`` (ggml's software conversion, NaN quieting included);
* each float operation is one float32 numpy ufunc, in ggml's order of operations;
* float reductions (the quantizers' sums over a sub-block) are accumulated left to right, position
  by position across all sub-blocks (``_np.common.seq_sum``: numpy's reduction over the outer axis,
  checked sequential at import) -- never a reduction along the contiguous axis, which is pairwise;
* the quantizers' iterative searches run for all sub-blocks at once, each keeping its own state,
  with ggml's comparisons (strict ``<``/``>``, NaN never winning) written as masks.

``quantize`` is vectorized for every type ggml quantizes (the grid i-quants in ``_np/iq1.py``,
``iq2.py``, ``iq3.py``; see docs/accel.md for how their searches stay exact). ``Backend(threads=1)``
runs on the calling thread only.
"""

from __future__ import annotations

import numpy as np

from .. import reference
from ..errors import ImatrixRequiredError, ShapeError
from ..reference.types import live_type
from ._np import common
from ._np.common import F16_TABLE, F32, run_chunks
from ._np.dequant import DEQ

# output elements per chunk: 512k (2 MB of float32). Each chunk costs a fixed 10-25 numpy calls and a
# pool task; at 64k that overhead was 20-40 % of the time and made two threads slower than one.
CHUNK_ELEMENTS = 1 << 19

_PLAIN = {"F32": "<f4", "F64": "<f8", "I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}


_QUANT: dict = {}


def _quantizers() -> dict:
    """type name -> vectorized quantizer (imported on first use)."""
    if not _QUANT:
        from ._np import iq1, iq2, iq3, iq4, kquant, quant
        for mod in (quant, kquant, iq4, iq1, iq2, iq3):
            _QUANT.update(mod.QUANT)
    return _QUANT


class Backend:
    name = "numpy"

    def __init__(self, threads: "int | None" = None):
        self.threads = int(threads) if threads else common.THREADS

    # ---------------------------------------------------------------------------------------------
    def supports(self, op: str, type) -> bool:
        return reference.supports("quantize" if op.startswith("quantize") else op, type)

    def vectorized(self, type, op: str = "dequantize") -> bool:
        """True when ``op`` on ``type`` runs vectorized here (not through the reference)."""
        t = live_type(type)
        if op == "dequantize":
            return t.block_size == 1 or t.name in DEQ
        return t.name in _quantizers()

    # ---------------------------------------------------------------------------------------------
    def dequantize(self, type, raw, n) -> np.ndarray:
        t = live_type(type)
        n = int(n)
        if n < 0 or n % t.block_size:
            raise ShapeError(f"{t.name}: n = {n} is not a non-negative multiple of the block size {t.block_size}")
        nb = n // t.block_size
        data = np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)
        if data.size < nb * t.type_size:
            raise ShapeError(f"{t.name}: {n} values need {nb * t.type_size} bytes, got {data.size}")
        data = data[: nb * t.type_size]
        out = np.empty(n, F32)
        if t.block_size == 1:
            if t.name == "F16":
                src = data.view("<f2")
                o32 = out.view(np.uint32)

                def conv(lo, hi):                       # the hardware conversion, then ggml's quiet NaN:
                    np.copyto(out[lo:hi], src[lo:hi])   # a signalling fp16 NaN comes out with bit 22 set
                    nan = np.isnan(out[lo:hi])
                    if nan.any():
                        o32[lo:hi][nan] |= np.uint32(0x00400000)
            elif t.name == "BF16":
                src = data.view("<u2")
                o32 = out.view(np.uint32)

                def conv(lo, hi):                       # bits << 16: the low half is zero
                    np.left_shift(src[lo:hi], 16, out=o32[lo:hi], dtype=np.uint32)
            else:
                src = data.view(_PLAIN[t.name])

                def conv(lo, hi):
                    out[lo:hi] = src[lo:hi]             # C's conversion to float (round to nearest)
            run_chunks(n, CHUNK_ELEMENTS * 4, conv, self.threads)
            return out
        fn = DEQ.get(t.name)
        if fn is None:
            return reference.dequantize(t, data, n)
        blocks = data.reshape(nb, t.type_size)
        out2 = out.reshape(nb, t.block_size)
        chunk = max(1, CHUNK_ELEMENTS // t.block_size)
        run_chunks(nb, chunk, lambda lo, hi: fn(blocks[lo:hi], out2[lo:hi]), self.threads)
        return out

    # ---------------------------------------------------------------------------------------------
    def quantize(self, type, x, imatrix=None) -> bytes:
        t = live_type(type)
        fn = _quantizers().get(t.name)
        if fn is None:
            return reference.quantize(t, x, imatrix)
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ShapeError(f"x must be float32, got {x.dtype}")
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2:
            raise ShapeError(f"x must have shape (rows, n_per_row), got {x.shape}")
        rows, n_per_row = x.shape
        if n_per_row % t.block_size:
            raise ShapeError(f"{t.name}: n_per_row = {n_per_row} is not a multiple of the block size {t.block_size}")
        if imatrix is not None:
            imatrix = np.asarray(imatrix)
            if imatrix.dtype != np.float32 or imatrix.shape != (n_per_row,):
                raise ShapeError(f"imatrix must be float32 of shape ({n_per_row},), got {imatrix.dtype} {imatrix.shape}")
        elif t.requires_imatrix:
            raise ImatrixRequiredError(f"{t.name} cannot be quantized without an importance matrix (ggml asserts imatrix != NULL)")
        x = np.ascontiguousarray(x)
        out = np.empty(rows * t.row_size(n_per_row), np.uint8)
        fn(t, x, imatrix, out, self.threads)
        return out.tobytes()
