"""Accelerated backends (numpy-vectorized, MLX). See issue: accelerated paths."""
