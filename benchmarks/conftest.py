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


@pytest.fixture(scope="session", autouse=True)
def backed_memory():
    """Touch GGSPEC_BENCH_PRETOUCH_GIB (default 4) GiB once, then free it.

    On the VMs this was measured on, the first write to a guest page the hypervisor has never backed
    costs ~9 us per 4 KB page (a fresh 64 MB output: ~150 ms instead of ~7 ms), and whether an
    allocation gets such pages or recycled ones varies from call to call. Every implementation
    writes fresh outputs, so without this the ratios measured the hypervisor, erratically (2-6x)."""
    import numpy as np
    gib = float(os.environ.get("GGSPEC_BENCH_PRETOUCH_GIB", "4"))
    if gib > 0:
        parts = [np.ones(1 << 28, np.float32) for _ in range(int(gib))]
        del parts
    yield


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
