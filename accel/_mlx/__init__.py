"""Private parts of the MLX backend (``ggspec.accel.mlx_backend``): the optional Metal kernels."""
