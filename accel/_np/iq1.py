"""Vectorized IQ1 i-quant quantizers (work in progress): ``QUANT[name](t, x, imatrix, out, threads)``."""

QUANT: dict = {}
