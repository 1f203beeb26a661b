"""ggspec: the executable specification of llama.cpp's model formats.

Subpackages:
    ggspec.reference    readable numpy reference (block layouts, containers, model math)
    ggspec.accel        accelerated backends (numpy-vectorized, MLX)
    ggspec.conformance  golden-vector runner, implementation adapters, size model
    ggspec.vectors      the embedded golden vectors (JSON)
"""

__version__ = "0.1.0"
