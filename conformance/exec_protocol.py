"""``ggspec conform --exec CMD``: implementations in any language, over stdin/stdout.

ggspec starts ``CMD`` once (split like a shell command line, no shell) and talks to it in lines of
JSON, one object per line, UTF-8:

1. **hello** (program -> ggspec, the first line it writes)::

       {"hello": "ggspec-exec/1", "name": "mycrate 0.3",
        "supports": [["codec", "dequantize", "Q4_0"], ["codec", "quantize", "*"], ["gguf", "*", "*"]]}

   ``supports`` lists (suite, column, row) triples of the report's tables, ``"*"`` matching any:
   codec ``(codec, dequantize | quantize | quantize+imatrix, TYPE)``, gguf ``(gguf, *, *)`` (plus
   ``(gguf, extension, version1 | big-endian)`` and ``(gguf, acceptable, nested-array | ... |
   strict-utf8)`` to claim how it reads the forms of GGUF where readers differ: suites/gguf.py;
   the write op only when named: ``(gguf, write, *)``),
   rope ``(rope, float32 | float16, *)``. Optional ``"encoding": "base64"`` asks for binary
   payloads in base64 (fields ending ``_b64`` instead of ``_hex``); optional ``"simd": true``
   declares a SIMD build, judged by the model suites within the vectors' native tolerance.

2. **requests** (ggspec -> program), one at a time, each with an ``id``::

       {"id": 7, "suite": "codec", "op": "dequantize", "type": "Q4_0", "n": 256, "input_hex": "..."}
       {"id": 8, "suite": "codec", "op": "quantize", "type": "Q4_K", "rows": 2, "n_per_row": 256,
        "input_f32_hex": "...", "imatrix_f32_hex": "..."}        # imatrix only for quantize+imatrix
       {"id": 9, "suite": "gguf", "op": "parse", "path": "/tmp/.../tc12.gguf"}
       {"id": 11, "suite": "gguf", "op": "write", "description": {"kv": [...], "tensors": [...]}}
       {"id": 10, "suite": "rope", "op": "rope_ext", "dtype": "float32", "shape": [11, 2, 64],
        "pos": [0, 1, ...], "params": {...}, "input_hex": "..."}

3. **replies** (program -> ggspec), one line per request, with the same ``id``::

       {"id": 7, "f32_hex": "..."}            # dequantize: n float32, little-endian bits
       {"id": 8, "hex": "..."}                # quantize: the blocks; rope: the output (x's dtype)
       {"id": 9, "result": {parse JSON}}      # gguf: the parse (see conformance/suites/gguf.py)
       {"id": 9, "reject": "why"}             # gguf: the file is rejected
       {"id": 11, "file_hex": "47475546..."}  # gguf write: the file's bytes
       {"id": 11, "unsupported": "why"}       # any request: not implemented here (unsupported, not a FAIL)
       {"id": 7, "error": "why"}              # could not do it: reported as "raised" (a FAIL)

Each request has a timeout (``--timeout``, default 10 s). A program that does not answer in time is
killed (``timeout``); one that exits or writes something that is not a reply is a ``crash``; either way
it is started again for the next request and the run goes on. Its stderr is not read (left to a file).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shlex
import signal
import subprocess
import tempfile
import time

from ..errors import GGSpecError
from .suites import Verdict

PROTOCOL = "ggspec-exec/1"


class ExecError(GGSpecError):
    def __init__(self, verdict: str, message: str):
        super().__init__(message)
        self.verdict = verdict


class ExecImpl:
    """An implementation behind ``--exec CMD``."""

    out_of_process = True
    exec_protocol = True

    def __init__(self, cmd: str, timeout: float = 10.0, hello_timeout: float = 30.0):
        self.cmd = cmd
        self.argv = shlex.split(cmd)
        if not self.argv:
            raise GGSpecError("--exec needs a command")
        self.timeout, self.hello_timeout = timeout, hello_timeout
        self._p = None
        self._buf = b""
        self._id = 0
        self.restarts = 0
        self._stderr = tempfile.TemporaryFile()
        self.hello = self._start()
        self.name = str(self.hello.get("name") or os.path.basename(self.argv[0]))
        self.b64 = self.hello.get("encoding") == "base64"
        self.simd = bool(self.hello.get("simd", False))
        sup = self.hello.get("supports", [])
        if not isinstance(sup, list) or not all(isinstance(s, list) and len(s) == 3 for s in sup):
            raise GGSpecError(f"--exec {cmd}: 'supports' must be a list of [suite, column, row] triples")
        self.supports_list = [tuple(str(x) for x in s) for s in sup]

    # -- process
    def _start(self) -> dict:
        try:
            self._p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self._stderr, bufsize=0)
        except OSError as e:
            raise GGSpecError(f"--exec {self.cmd}: cannot start: {e}") from None
        self._buf = b""
        try:
            line = self._readline(self.hello_timeout)
        except ExecError as e:
            raise GGSpecError(f"--exec {self.cmd}: no hello line ({e})") from None
        try:
            hello = json.loads(line)
        except json.JSONDecodeError:
            raise GGSpecError(f"--exec {self.cmd}: the first line must be the hello (JSON), got {line[:100]!r}") from None
        if not isinstance(hello, dict) or hello.get("hello") != PROTOCOL:
            raise GGSpecError(f"--exec {self.cmd}: expected a hello line {{\"hello\": \"{PROTOCOL}\", ...}}, "
                              f"got {line[:100]!r}")
        return hello

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self._p.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExecError("timeout", f"no reply within {timeout:g} s")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                code = self._p.poll()
                if code is None:
                    try:
                        code = self._p.wait(1)
                    except subprocess.TimeoutExpired:
                        code = None
                how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exit status {code}")
                raise ExecError("crash", f"the program closed its output ({how})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", errors="replace")

    def _kill(self):
        if self._p is not None:
            try:
                self._p.kill()
            except OSError:
                pass
            try:
                self._p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for f in (self._p.stdin, self._p.stdout):
                try:
                    f.close()
                except Exception:
                    pass
        self._p = None

    def close(self):
        if self._p is not None and self._p.poll() is None:
            try:
                self._p.stdin.close()
                self._p.wait(2)
            except Exception:
                pass
        self._kill()

    def request(self, req: dict) -> dict:
        """Send one request; the reply, or ExecError("timeout" | "crash")."""
        if self._p is None or self._p.poll() is not None:
            self._kill()
            self.restarts += 1
            self._start()
        self._id += 1
        req = dict(req, id=self._id)
        if self.b64:
            req = {(k[:-4] + "_b64" if k.endswith("_hex") else k): (base64.b64encode(bytes.fromhex(v)).decode()
                                                                     if k.endswith("_hex") else v)
                   for k, v in req.items()}
        try:
            self._p.stdin.write((json.dumps(req) + "\n").encode())
            self._p.stdin.flush()
        except (BrokenPipeError, OSError):
            self._kill()
            raise ExecError("crash", "the program exited before the request (broken pipe)") from None
        try:
            line = self._readline(self.timeout)
        except ExecError:
            self._kill()
            raise
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            self._kill()
            raise ExecError("crash", f"the reply is not JSON: {line[:100]!r}") from None
        if not isinstance(reply, dict) or reply.get("id") != self._id:
            self._kill()
            raise ExecError("crash", f"the reply's id is {reply.get('id') if isinstance(reply, dict) else None}, "
                                     f"expected {self._id}")
        for k in [k for k in reply if k.endswith("_b64")]:
            reply[k[:-4] + "_hex"] = base64.b64decode(reply.pop(k)).hex()
        return reply

    # -- the runner's view
    def supports(self, op, type) -> bool:
        return self.supports_suite("codec", op, type.name)

    def supports_suite(self, suite, op, subject) -> bool:
        for s, o, t in self.supports_list:
            if suite == "gguf" and op == "write" and o != "write":
                continue            # the write op is claimed by name: ["gguf", "write", "*"]
            if s == suite and o in ("*", op) and t in ("*", subject):
                return True
        return False

    def run_case(self, suite, case) -> Verdict:
        if suite.exec_request is None or suite.exec_reply is None:
            return Verdict.unsupported(f"the {suite.name} suite has no exec requests")
        try:
            reply = self.request(suite.exec_request(case))
        except ExecError as e:
            return Verdict(e.verdict, f"{e.verdict}: {e}")
        if "unsupported" in reply:
            return Verdict.unsupported(f"the program says: {str(reply['unsupported'])[:200]}")
        if "error" in reply and suite.name != "gguf":
            return Verdict("raised", f"error reply: {str(reply['error'])[:200]}")
        if self.simd:
            reply.setdefault("simd", True)
        if suite.name == "gguf":      # the GGUF extensions the hello claims (conformance/suites/gguf.py)
            from .suites.gguf import claimed_extensions
            reply["_claims"] = sorted(claimed_extensions(self))
        return suite.exec_reply(case, reply)
