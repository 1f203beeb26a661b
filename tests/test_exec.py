"""``ggspec conform --exec``: the line-JSON protocol end to end.

* small Python programs speak it: a correct one passes; one that crashes, hangs or lies gets those
  verdicts and the run goes on (the program is restarted);
* the C client of docs/conformance.md (tests/exec_client.c), compiled with ``cc``, answers the codec
  suite with the oracle's libggml and the gguf suite with ggml's gguf_init_from_file, and passes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ggspec.conformance import cmd_conform

HERE = Path(__file__).parent

CLIENT = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    from ggspec import reference
    MODE = sys.argv[1]
    print(json.dumps({"hello": "ggspec-exec/1", "name": "py-" + MODE,
                      "supports": [["codec", "dequantize", "Q4_0"], ["codec", "quantize", "Q4_0"],
                                   ["gguf", "*", "*"]]}), flush=True)
    state = os.environ.get("STATE")
    for line in sys.stdin:
        req = json.loads(line)
        n_seen = 0
        if state:
            n_seen = int(open(state).read() or 0) + 1 if os.path.exists(state) else 1
            open(state, "w").write(str(n_seen))
        if MODE == "crash" and n_seen == 3:
            os.abort()
        if MODE == "hang" and n_seen == 3:
            time.sleep(60)
        if MODE == "lie" and req["op"] == "dequantize":
            print(json.dumps({"id": req["id"], "f32_hex": "00" * 4 * req["n"]}), flush=True)
            continue
        if req["suite"] == "gguf":
            try:
                from ggspec.conformance.adapters import ReferenceImpl
                out = {"result": ReferenceImpl().read_gguf(req["path"])}
            except Exception as e:
                out = {"reject": str(e)}
        elif req["op"] == "dequantize":
            y = reference.dequantize("Q4_0", bytes.fromhex(req["input_hex"]), req["n"])
            out = {"f32_hex": np.asarray(y, "<f4").tobytes().hex()}
        else:
            x = np.frombuffer(bytes.fromhex(req["input_f32_hex"]), "<f4").reshape(req["rows"], req["n_per_row"])
            out = {"hex": reference.quantize("Q4_0", x).hex()}
        out["id"] = req["id"]
        print(json.dumps(out), flush=True)
''')


def conform(capsys, *argv):
    p = argparse.ArgumentParser()
    cmd_conform.register(p.add_subparsers())
    args = p.parse_args(["conform", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture
def client(tmp_path):
    path = tmp_path / "client.py"
    path.write_text(CLIENT)
    return path


def test_a_correct_program_passes(client, capsys):
    code, out = conform(capsys, "--exec", f"{sys.executable} {client} ok", "--suite", "codec,gguf",
                        "--types", "Q4_0", "--json")
    doc = json.loads(out)
    rep = {r["suite"]: r for r in doc["implementations"]}
    assert code == 0, out
    assert rep["codec"]["impl"] == "py-ok"
    q = rep["codec"]["results"]["Q4_0"]
    assert q["dequantize"]["status"] == "pass" and q["quantize"]["status"] == "pass"
    assert q["quantize+imatrix"]["status"] == "unsupported"
    assert not rep["gguf"]["failed"] and rep["gguf"]["files_run"] == 1


@pytest.mark.parametrize("mode,kind", [("crash", "crash"), ("hang", "timeout")])
def test_crash_and_hang_are_verdicts_and_the_run_goes_on(client, capsys, tmp_path, monkeypatch, mode, kind):
    monkeypatch.setenv("STATE", str(tmp_path / "n"))
    code, out = conform(capsys, "--exec", f"{sys.executable} {client} {mode}", "--suite", "codec",
                        "--types", "Q4_0", "--ops", "dequantize", "--timeout", "3", "--json")
    o = json.loads(out)["implementations"][0]["results"]["Q4_0"]["dequantize"]
    assert code == 1
    assert o["kinds"] == {kind: 1}, o["kinds"]
    assert o["passed"] == o["total"] - 1 > 10          # every other request answered after the restart


def test_wrong_answers_fail_with_the_case(client, capsys):
    code, out = conform(capsys, "--exec", f"{sys.executable} {client} lie", "--suite", "codec",
                        "--types", "Q4_0", "--ops", "dequantize")
    assert code == 1
    assert re.search(r"py-lie Q4_0 dequantize: tcId \d+.*: index \d+: got 0x00000000", " ".join(out.split()))


B64_CLIENT = textwrap.dedent('''
    import base64, json, sys
    import numpy as np
    from ggspec import reference
    print(json.dumps({"hello": "ggspec-exec/1", "name": "py-b64", "encoding": "base64",
                      "supports": [["codec", "dequantize", "Q8_0"]]}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        assert "input_b64" in req and "input_hex" not in req
        y = reference.dequantize("Q8_0", base64.b64decode(req["input_b64"]), req["n"])
        print(json.dumps({"id": req["id"], "f32_b64": base64.b64encode(np.asarray(y, "<f4").tobytes()).decode()}),
              flush=True)
''')


def test_base64_payloads(tmp_path, capsys):
    path = tmp_path / "b64.py"
    path.write_text(B64_CLIENT)
    code, out = conform(capsys, "--exec", f"{sys.executable} {path}", "--suite", "codec", "--types", "Q8_0",
                        "--json")
    o = json.loads(out)["implementations"][0]["results"]["Q8_0"]["dequantize"]
    assert code == 0 and o["status"] == "pass" and o["passed"] > 20


def test_a_program_without_hello_is_an_error(tmp_path):
    from ggspec.errors import GGSpecError
    from ggspec.conformance.exec_protocol import ExecImpl
    with pytest.raises(GGSpecError, match="hello"):
        ExecImpl(f"{sys.executable} -c \"print('hi')\"")


# ------------------------------------------------------------------------------------------------
# the C client

C_TYPES = "Q4_0,Q8_1,Q4_K,Q6_K,Q8_K,IQ4_XS,IQ3_S,TQ2_0,MXFP4,F16,BF16"


@pytest.fixture(scope="module")
def c_client(tmp_path_factory):
    cc = shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler (cc) on PATH")
    exe = tmp_path_factory.mktemp("cc") / "exec_client"
    out = subprocess.run([cc, "-O1", "-Wall", "-o", str(exe), str(HERE / "exec_client.c"), "-ldl"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return exe


@pytest.mark.oracle
def test_c_client_passes_codec_and_gguf(oracle, c_client, capsys):
    code, out = conform(capsys, "--exec", f"{c_client} {oracle.path}", "--suite", "codec,gguf",
                        "--types", C_TYPES, "--json")
    doc = json.loads(out)
    rep = {r["suite"]: r for r in doc["implementations"]}
    assert code == 0, [(r["suite"], t, op, o["failure"]) for r in doc["implementations"]
                       for t, c in r["results"].items() for op, o in c.items() if o["status"] == "FAIL"]
    codec = rep["codec"]["results"]
    assert len(codec) == len(C_TYPES.split(","))
    for t in C_TYPES.split(","):
        # ggml has no to_float for Q8_1 (its vectors come from Q8_0's): the client does not claim it
        assert codec[t]["dequantize"]["status"] == ("unsupported" if t == "Q8_1" else "pass"), t
        assert codec[t]["quantize"]["status"] == "pass", t
    gg = rep["gguf"]["results"]
    assert sum(o["passed"] for c in gg.values() for o in c.values()) == sum(o["total"] for c in gg.values()
                                                                           for o in c.values()) > 60


def test_docs_show_the_c_client_verbatim():
    doc = (HERE.parent / "docs" / "conformance.md").read_text()
    blocks = re.findall(r"```c\n(.*?)```", doc, re.S)
    assert blocks, "docs/conformance.md has no C block"
    assert (HERE / "exec_client.c").read_text() in blocks
