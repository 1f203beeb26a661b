"""Shared fixtures: the C oracle (skips `oracle` tests with the reason when it is absent)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "dev", max_examples=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def oracle():
    """The loaded libggml-base of llama-cpp-python==0.3.36; skips the test when it is absent."""
    from ggspec.conformance import libggml

    try:
        return libggml.load()
    except Exception as e:  # OracleUnavailable, or anything the loader hits
        if os.environ.get("GGSPEC_REQUIRE_ORACLE"):
            pytest.fail(f"GGSPEC_REQUIRE_ORACLE is set but the oracle is unavailable: {e}")
        pytest.skip(f"C oracle unavailable: {e}")



@pytest.fixture(scope="session")
def llama_cpp_vendor():
    """``vendor/llama.cpp`` of the pinned llama-cpp-python 0.3.36 source (vocabulary GGUFs,
    ggml-common.h): ``$GGSPEC_LLAMA_CPP_SRC`` or the cache that ``ggspec oracle setup`` fills."""
    from ggspec.conformance import oracle_setup
    from ggspec.errors import OracleUnavailable

    try:
        return oracle_setup.vendor_dir()
    except OracleUnavailable as e:
        if os.environ.get("GGSPEC_REQUIRE_ORACLE"):
            pytest.fail(f"GGSPEC_REQUIRE_ORACLE is set but the pinned source is absent: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def portable():
    """The portable oracle (llama-cpp-python 0.3.36 with every SIMD path, llamafile, repacking and FMA
    contraction off), running in a child process: ``portable.call(module, function, *args)``.
    The ground truth for model math (RoPE, mat-mul, attention, the forward pass)."""
    from ggspec.conformance import portable as P
    from ggspec.errors import OracleUnavailable

    try:
        oracle = P.shared()
    except OracleUnavailable as e:
        if os.environ.get("GGSPEC_REQUIRE_ORACLE"):
            pytest.fail(f"GGSPEC_REQUIRE_ORACLE is set but the portable oracle is absent: {e}")
        pytest.skip(f"portable oracle unavailable: {e}")
    yield oracle
    oracle.close()
