"""Run an implementation's calls in a child process with a time and a memory limit.

Parsers of untrusted files hang, blow up or crash on bad input (on the project's fuzz corpus,
third-party Python GGUF readers ran for over 10 minutes at 3 GiB, or raised IndexError,
UnicodeDecodeError, MemoryError or struct.error). The gguf suite therefore never calls a Python
adapter's ``read_gguf`` in the runner's own process: a ``Sandbox`` forks one worker per
implementation, sends it one call at a time over a pipe, and gives every call

* a time limit (``timeout`` seconds): a call that does not answer in time is a ``timeout``; the
  worker is killed and a fresh one forked for the next call;
* a memory limit (``memory`` bytes of address space above what the worker had when it started,
  ``RLIMIT_AS``; not enforced on macOS): an allocation beyond it raises ``MemoryError`` in Python
  (verdict ``memory``) or kills a C library (verdict ``crash``);
* crash isolation: a worker that dies (segfault, abort) is a ``crash`` with its signal or exit code.

The worker's C-level stdout/stderr goes to a file; its lines are counted (``warnings``), not printed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import tempfile
from dataclasses import dataclass

DEFAULT_TIMEOUT = 10.0
DEFAULT_MEMORY = 1 << 30


@dataclass
class CallResult:
    kind: str               # ok | raised | crash | timeout | memory
    value: object = None    # the return value (ok)
    error: str = ""         # "Type: message" (raised, memory), or how it died
    warnings: int = 0       # lines the call wrote to the worker's stdout/stderr


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _worker(conn, impl, memory, log_path):
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if memory:
        try:
            limit = _vm_size() + int(memory)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if msg is None:
            os._exit(0)
        method, args = msg
        try:
            out = ("ok", getattr(impl, method)(*args))
        except MemoryError as e:
            out = ("memory", f"{type(e).__name__}: {str(e)[:300]}")
        except BaseException as e:  # noqa: BLE001 - everything the implementation raises is a verdict
            out = ("raised", f"{type(e).__name__}: {str(e)[:300]}")
        try:
            conn.send(out)
        except MemoryError:
            conn.send(("memory", "MemoryError while sending the result"))
        except Exception as e:  # an unpicklable result
            conn.send(("raised", f"{type(e).__name__} while returning the result: {str(e)[:300]}"))


class Sandbox:
    """One forked worker for ``impl``; ``call(method, *args)`` -> ``CallResult``."""

    def __init__(self, impl, timeout: float = DEFAULT_TIMEOUT, memory: "int | None" = DEFAULT_MEMORY):
        self.impl, self.timeout, self.memory = impl, timeout, memory
        self._proc = None
        self._conn = None
        self._log = tempfile.NamedTemporaryFile(prefix="ggspec-sandbox-", suffix=".log", delete=False)
        self._log.close()
        self._log_pos = 0

    def _start(self):
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child, self.impl, self.memory, self._log.name), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        self._log_pos = 0

    def _warnings(self) -> int:
        try:
            with open(self._log.name, "rb") as f:
                f.seek(self._log_pos)
                data = f.read()
                self._log_pos = f.tell()
        except OSError:
            return 0
        return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)

    def _kill(self):
        if self._proc is not None:
            try:
                os.kill(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, OSError):
                pass
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def call(self, method: str, *args) -> CallResult:
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()
        try:
            self._conn.send((method, args))
        except (BrokenPipeError, OSError):
            self._kill()
            self._start()
            self._conn.send((method, args))
        if not self._conn.poll(self.timeout):
            self._kill()
            return CallResult("timeout", error=f"no answer within {self.timeout:g} s (killed)", warnings=self._warnings())
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exit status {code}")
            self._kill()
            return CallResult("crash", error=f"the worker died ({how})", warnings=self._warnings())
        if kind == "ok":
            return CallResult("ok", value=value, warnings=self._warnings())
        return CallResult(kind, error=value, warnings=self._warnings())

    def close(self):
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(2)
            except OSError:
                pass
        self._kill()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
