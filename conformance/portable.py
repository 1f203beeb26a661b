"""The portable oracle, run in a child process.

The portable build of llama-cpp-python 0.3.36 (see :mod:`oracle_setup`) has the same library
names and sonames as the native one, so the two cannot share a process: once a ``libggml-base.so``
is loaded, the dynamic linker hands it to every later library that asks for that name. The portable
oracle therefore runs in a spawned child whose ``GGSPEC_LIBGGML`` points at the portable
``libggml-base`` and whose ``sys.path`` starts with the portable ``--target`` directory (so
``import llama_cpp`` there is the portable build).

    from ggspec.conformance import portable
    with portable.Oracle() as P:
        y = P.call("ggspec.conformance.ggml_graph", "op", "mul_mat", w, x)   # any importable function
        print(P.system_info())

``call(module, function, *args, **kwargs)`` imports ``module`` in the child, calls ``function`` and
returns its (picklable) result. A crash of the child raises :class:`OracleError` naming the call;
the next call starts a fresh child.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..errors import GGSpecError
from . import oracle_setup


class OracleError(GGSpecError):
    """The portable oracle's child process died or refused a call."""


def _init(target_dir: str, libbase: str) -> None:
    os.environ["GGSPEC_LIBGGML"] = libbase
    os.environ["GGSPEC_IN_PORTABLE_ORACLE"] = "1"
    sys.path.insert(0, target_dir)


def _run(module: str, function: str, args, kwargs):
    mod = importlib.import_module(module)
    fn = mod
    for part in function.split("."):
        fn = getattr(fn, part)
    return fn(*args, **kwargs)


def _system_info() -> str:
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode()


def _whoami() -> dict:
    import llama_cpp

    from . import libggml

    return {"llama_cpp": os.path.dirname(llama_cpp.__file__), "libggml": str(libggml.find_library())}


class Oracle:
    """A child process running the portable build; reusable, restarts after a crash."""

    def __init__(self):
        lib = oracle_setup.portable_lib_dir()          # OracleUnavailable when absent
        self._target = str(oracle_setup.portable_dir())
        base = sorted(lib.glob("libggml-base.so*")) or sorted(lib.glob("libggml-base.*"))
        self._libbase = str(base[0])
        self._pool = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                             initializer=_init, initargs=(self._target, self._libbase))
        return self._pool

    def call(self, module: str, function: str, *args, **kwargs):
        pool = self._ensure()
        try:
            return pool.submit(_run, module, function, args, kwargs).result()
        except BrokenProcessPool as e:
            self.close()
            raise OracleError(f"the portable oracle's process died in {module}.{function}") from e

    def system_info(self) -> str:
        return self.call(__name__, "_system_info")

    def whoami(self) -> dict:
        return self.call(__name__, "_whoami")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_shared: "Oracle | None" = None


def shared() -> Oracle:
    """One process-wide Oracle (tests and the CLI share it)."""
    global _shared
    if _shared is None:
        _shared = Oracle()
    return _shared
