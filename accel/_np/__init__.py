"""Private implementation of the numpy backend (``ggspec.accel.numpy_backend``).

``common``   tables, C-semantics helpers, the chunked thread-pool runner
``dequant``  one whole-chunk dequantizer per ggml type
``quant``    block quantizers without searches (legacy, lowbit, ternary, fp4, Q8_K, float types)
``search``   ggml's scale searches vectorized across groups (exact: sequential order inside a group)
``kquant``   the k-quant quantizers
``iquant``   IQ4_NL / IQ4_XS quantizers
"""
