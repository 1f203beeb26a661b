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
import os
import pickle
import struct
import subprocess
import sys
import threading

from ..errors import GGSpecError
from . import oracle_setup


class OracleError(GGSpecError):
    """The portable oracle's child process died or refused a call."""


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


def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)))
    f.write(data)
    f.flush()


def _recv(f):
    head = f.read(8)
    if len(head) < 8:
        raise EOFError
    (n,) = struct.unpack("<Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


def _worker() -> None:
    """The child: ``python -m ggspec.conformance.portable`` with the portable build first on
    sys.path; answers (module, function, args, kwargs) requests until stdin closes."""
    target = os.environ["GGSPEC_PORTABLE_TARGET"]
    sys.path.insert(0, target)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr                      # nothing else may write to the reply pipe
    while True:
        try:
            module, function, args, kwargs = _recv(inp)
        except EOFError:
            return
        try:
            _send(out, (True, _run(module, function, args, kwargs)))
        except BaseException as e:               # report, keep serving
            try:
                _send(out, (False, e))
            except Exception:
                _send(out, (False, OracleError(f"{type(e).__name__}: {e}")))


class Oracle:
    """A child process running the portable build (a plain subprocess, so callers' scripts need no
    ``if __name__ == "__main__"`` guard); reusable, restarts after a crash."""

    def __init__(self):
        lib = oracle_setup.portable_lib_dir()          # OracleUnavailable when absent
        self._target = str(oracle_setup.portable_dir())
        base = sorted(lib.glob("libggml-base.so*")) or sorted(lib.glob("libggml-base.*"))
        self._libbase = str(base[0])
        self._proc = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ, GGSPEC_LIBGGML=self._libbase, GGSPEC_IN_PORTABLE_ORACLE="1",
                       GGSPEC_PORTABLE_TARGET=self._target)
            self._proc = subprocess.Popen([sys.executable, "-m", "ggspec.conformance.portable"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        return self._proc

    def call(self, module: str, function: str, *args, **kwargs):
        with self._lock:
            proc = self._ensure()
            try:
                _send(proc.stdin, (module, function, args, kwargs))
                ok, value = _recv(proc.stdout)
            except (EOFError, BrokenPipeError, OSError) as e:
                self.close()
                raise OracleError(f"the portable oracle's process died in {module}.{function}") from e
        if not ok:
            raise value
        return value

    def system_info(self) -> str:
        return self.call(__name__, "_system_info")

    def whoami(self) -> dict:
        return self.call(__name__, "_whoami")

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except Exception:
                self._proc.kill()
            self._proc = None

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


if __name__ == "__main__":
    _worker()
