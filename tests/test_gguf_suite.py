"""The gguf suite's judging rules: extension claims, data_offset of files without tensors, tensor data.

The vectors themselves are checked by tests/test_conform.py (the reference passes, a lenient reader
fails, regeneration is byte-identical) and by the mutation catalogue (tests/mutation/, gguf family).
"""

from __future__ import annotations

import json

import pytest

from ggspec.conformance.suites import Case
from ggspec.conformance.suites import gguf as S

PARSE = {"version": 3, "alignment": 32, "data_offset": 24, "kv": [], "tensors": []}
WITH_T = {"version": 3, "alignment": 32, "data_offset": 64, "kv": [],
          "tensors": [{"name": "w", "type": 0, "ne": [2, 1, 1, 1], "offset": 0, "data": "0000803f00000040"}]}


def case(result, subject, expected):
    return Case(1, "c", [], subject, result, {"test": {"tcId": 1, "expected": expected}, "result": result})


def test_an_extension_is_judged_as_valid_only_when_claimed():
    v1 = dict(PARSE, version=1)
    c = case("extension", "extension/version1", v1)
    assert S.judge(c, False, None, "no v1", claims={"version1"}).kind == "fail"
    assert S.judge(c, False, None, "no v1", claims={"big-endian"}).kind == "unsupported"
    assert S.judge(c, False, None, "no v1", claims=None).kind == "unsupported"
    assert S.judge(c, True, PARSE, claims=set()).kind == "fail"        # accepting it still needs the right parse
    assert S.judge(c, True, PARSE, claims={"version1"}).kind == "fail"
    assert S.judge(c, True, v1, claims=set()).kind == "pass"
    assert S.judge(c, True, v1, claims={"version1"}).kind == "pass"


def test_claimed_acceptable_forms_must_be_read_and_strict_utf8_must_reject():
    nested = case("acceptable", "acceptable/nested-array", PARSE)
    assert S.judge(nested, False, None, "no", claims=set()).kind == "pass"
    assert S.judge(nested, False, None, "no", claims={"nested-array"}).kind == "fail"
    assert S.judge(nested, True, PARSE, claims={"nested-array"}).kind == "pass"
    utf8 = case("acceptable", "acceptable/utf8", None)
    assert S.judge(utf8, True, PARSE, claims=set()).kind == "pass"
    assert S.judge(utf8, False, None, "bad", claims=set()).kind == "pass"
    assert S.judge(utf8, True, PARSE, claims={"strict-utf8"}).kind == "fail"
    assert S.judge(utf8, False, None, "bad", claims={"strict-utf8"}).kind == "pass"


def test_claims_come_from_the_adapter_or_the_exec_hello():
    from ggspec.conformance.adapters import ReferenceImpl

    class Hello:
        supports_list = [("gguf", "*", "*"), ("gguf", "extension", "big-endian"),
                         ("gguf", "extension", "extension/version1"), ("codec", "extension", "x")]

    class Wild:
        supports_list = [("gguf", "*", "*")]

    assert {"version1", "big-endian", "nested-array", "strict-utf8"} <= S.claimed_extensions(ReferenceImpl())
    assert S.claimed_extensions(Hello()) == {"big-endian", "version1"}
    assert S.claimed_extensions(Wild()) == set()          # "*" claims no extension
    assert S.claimed_extensions(object()) == set()


def test_data_offset_of_a_file_without_tensors():
    assert S.diff(PARSE, PARSE) is None
    assert S.diff(dict(PARSE, data_offset=None), PARSE) is None          # "no data section"
    assert "data_offset" in S.diff(dict(PARSE, data_offset=32), PARSE)    # padded: not ggml's
    assert S.diff(dict(WITH_T, data_offset=None), WITH_T) is not None     # with tensors a number is needed


def test_tensor_data_is_compared_when_given():
    bare = json.loads(json.dumps(WITH_T))
    del bare["tensors"][0]["data"]
    assert S.diff(bare, WITH_T) is None
    bad = json.loads(json.dumps(WITH_T))
    bad["tensors"][0]["data"] = "0000803f00000041"
    assert S.diff(bad, WITH_T) == "tensors[0].data: byte 7: got 41, expected 40"
    short = json.loads(json.dumps(WITH_T))
    short["tensors"][0]["data"] = "0000803f"
    assert "4 bytes, expected 8" in S.diff(short, WITH_T)


# --- through the runner, on the shipped vectors

FAKES = """
from ggspec.conformance.adapters import ReferenceImpl


class NoVersion1(ReferenceImpl):
    name = "no-v1"
    gguf_extensions = ("big-endian",)

    def read_gguf(self, path):
        with open(path, "rb") as f:
            if f.read(8)[4:8] == bytes([1, 0, 0, 0]):
                raise ValueError("GGUF version 1 is not supported")
        return super().read_gguf(path)


class ClaimsButRejects(NoVersion1):
    name = "claims-v1"
    gguf_extensions = ("version1", "big-endian")


no_v1, claims_v1 = NoVersion1(), ClaimsButRejects()
"""


def _conform(capsys, tmp_path, monkeypatch, cls):
    import argparse
    from ggspec.conformance import cmd_conform
    (tmp_path / "ggspec_gguf_fakes.py").write_text(FAKES)
    monkeypatch.syspath_prepend(str(tmp_path))
    p = argparse.ArgumentParser()
    cmd_conform.register(p.add_subparsers())
    args = p.parse_args(["conform", "--impl", f"ggspec_gguf_fakes:{cls}", "--suite", "gguf", "--json", "--quiet"])
    code = args.func(args)
    return code, json.loads(capsys.readouterr().out)["implementations"][0]["results"]


@pytest.mark.skipif(not S.load(None), reason="vectors/gguf/gguf.json not generated")
def test_an_unclaimed_extension_is_unsupported_a_claimed_one_fails(capsys, tmp_path, monkeypatch):
    code, res = _conform(capsys, tmp_path, monkeypatch, "no_v1")
    assert code == 0
    assert res["extension/version1"]["extension"]["status"] == "unsupported"
    assert res["extension/big-endian"]["extension"]["status"] == "pass"
    code, res = _conform(capsys, tmp_path, monkeypatch, "claims_v1")
    assert code == 1
    cell = res["extension/version1"]["extension"]
    assert cell["status"] == "FAIL" and "a form it claims to read" in cell["failure"]


EXEC_CLIENT = """
import json, sys
from ggspec.conformance.adapters import ReferenceImpl
claims = sys.argv[1:]
print(json.dumps({"hello": "ggspec-exec/1", "name": "py-gguf",
                  "supports": [["gguf", "*", "*"]] + [["gguf", "extension", c] for c in claims]}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    with open(req["path"], "rb") as f:
        v1 = f.read(8)[4:8] == bytes([1, 0, 0, 0])
    try:
        if v1:
            raise ValueError("no version 1")
        out = {"result": ReferenceImpl().read_gguf(req["path"])}
    except Exception as e:
        out = {"reject": str(e)}
    out["id"] = req["id"]
    print(json.dumps(out), flush=True)
"""


@pytest.mark.skipif(not S.load(None), reason="vectors/gguf/gguf.json not generated")
def test_an_exec_program_claims_extensions_in_its_hello(capsys, tmp_path):
    import argparse
    import sys
    from ggspec.conformance import cmd_conform
    client = tmp_path / "client.py"
    client.write_text(EXEC_CLIENT)

    def run(*claims):
        p = argparse.ArgumentParser()
        cmd_conform.register(p.add_subparsers())
        args = p.parse_args(["conform", "--exec", " ".join([sys.executable, str(client), *claims]),
                             "--suite", "gguf", "--json", "--quiet"])
        code = args.func(args)
        return code, json.loads(capsys.readouterr().out)["implementations"][0]["results"]

    code, res = run("big-endian")
    assert code == 0 and res["extension/version1"]["extension"]["status"] == "unsupported"
    assert res["extension/big-endian"]["extension"]["status"] == "pass"
    code, res = run("big-endian", "version1")
    assert code == 1 and res["extension/version1"]["extension"]["status"] == "FAIL"


# --- the gguf family of the mutation catalogue (tests/mutation/): a rotating sample, each must be killed

def _gguf_sample():
    import datetime
    import importlib
    import os
    import random
    import sys
    from pathlib import Path
    here = str(Path(__file__).resolve().parent / "mutation")
    if here not in sys.path:
        sys.path.insert(0, here)
    cat = importlib.import_module("mutation_catalogue")
    ms = [m for m in cat.CATALOGUE if m.suite == "gguf"]
    seed = int(os.environ.get("GGSPEC_MUTATION_SEED", datetime.date.today().toordinal()))
    k = int(os.environ.get("GGSPEC_GGUF_MUTATION_SAMPLE", "4"))
    return random.Random(seed).sample(ms, min(k, len(ms)))


@pytest.mark.skipif(not S.load(None), reason="vectors/gguf/gguf.json not generated")
@pytest.mark.parametrize("m", _gguf_sample(), ids=lambda m: m.id)
def test_sampled_gguf_mutant_is_killed(m):
    import importlib
    harness = importlib.import_module("mutation_harness")
    r = harness.run_mutant(m)
    assert r.status == "killed", f"{m.id} ({m.why}): {r.status} {r.detail}"
