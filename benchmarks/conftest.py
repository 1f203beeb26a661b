"""Record what the numbers depend on next to them (pytest-benchmark's machine_info)."""

from __future__ import annotations

import os
import platform

import pytest


@pytest.fixture(scope="session")
def lib():
    """The C oracle (libggml-base of llama-cpp-python==0.3.36); benchmarks skip without it."""
    from ggspec.conformance import libggml
    try:
        return libggml.load()
    except Exception as e:
        pytest.skip(f"oracle unavailable: {e}")


def _version(mod):
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:
        return None


def pytest_benchmark_update_machine_info(config, machine_info):
    cpu = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    machine_info["ggspec"] = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "numpy": _version("numpy"),
        "mlx": _version("mlx"),
        "gguf": _version("gguf"),
        "llama_cpp_python": _version("llama_cpp_python"),
        "python": platform.python_version(),
    }
