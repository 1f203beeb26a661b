"""``ggspec conform``: suites, severity classes, report format, exit status, JUnit XML.

Implementations with known defects are planted (module:factory in a temporary module) and the
report must name them; ggspec's reference must pass every suite that has vectors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ggspec.conformance import cmd_conform, runner, suites
from ggspec.conformance.compare import float_diff

FAKES = textwrap.dedent('''
    import os, time, warnings
    import numpy as np
    from ggspec import reference
    from ggspec.conformance.adapters import ReferenceImpl

    class NanSign(ReferenceImpl):
        """The reference, with every NaN's sign bit flipped and -0 written as +0."""
        name = "nansign"
        def dequantize(self, t, raw, n):
            y = np.array(reference.dequantize(t, raw, n), np.float32)
            b = y.view(np.uint32)
            b[np.isnan(y)] ^= 0x80000000
            y[y == 0] = 0.0
            return y

    class FlushNaN(ReferenceImpl):
        """A real defect: NaNs flushed to zero."""
        name = "flushnan"
        def dequantize(self, t, raw, n):
            y = np.array(reference.dequantize(t, raw, n), np.float32)
            y[np.isnan(y)] = 0.0
            return y

    class Broken(ReferenceImpl):
        name = "broken"
        def supports(self, op, t):
            raise RuntimeError("adapter bug")

    class Noisy(ReferenceImpl):
        name = "noisy"
        def dequantize(self, t, raw, n):
            warnings.warn("noisy dequantize", UserWarning)
            return reference.dequantize(t, raw, n)

    class Raises(ReferenceImpl):
        name = "raises"
        def quantize(self, t, x, imatrix):
            raise KeyError("no quantizer")

    class Lenient(ReferenceImpl):
        """A GGUF reader that accepts anything it cannot parse (returns an empty parse)."""
        name = "lenient"
        def read_gguf(self, path):
            try:
                return super().read_gguf(path)
            except Exception:
                return {"version": 3, "alignment": 32, "data_offset": 0, "kv": [], "tensors": []}

    class Hostile(ReferenceImpl):
        """Hangs on one file, crashes on another, allocates without bound on a third."""
        name = "hostile"
        def read_gguf(self, path):
            n = len(open(path, "rb").read())
            if n == 0:
                time.sleep(60)
            if n == 2:
                os.abort()
            if n == 6:
                x = []
                while True:
                    x.append(bytearray(1 << 24))
            return super().read_gguf(path)

    class RopeOff(ReferenceImpl):
        name = "ropeoff"
        def rope(self, x, pos, params):
            y = np.array(super().rope(x, pos, params))
            y.reshape(-1)[5] = y.reshape(-1)[5] * 2 + 1
            return y

    class RopeOffSimd(RopeOff):
        name = "ropeoffsimd"
        simd = True

    class RopeUlp(ReferenceImpl):
        """Within 1 ulp everywhere: what a SIMD build with FMA gives."""
        name = "ropeulp"
        simd = True
        def rope(self, x, pos, params):
            y = np.array(super().rope(x, pos, params))
            v = y.reshape(-1).view(np.uint16 if y.dtype == np.float16 else np.uint32)
            fin = np.isfinite(y.reshape(-1)) & (y.reshape(-1) != 0)
            v[fin & (np.arange(v.size) % 3 == 0)] += 1
            return y

    class MixOff(ReferenceImpl):
        """Forgets that attn_v gets more bits in Q4_K_M."""
        name = "mixoff"
        def tensor_types(self, model, ftype, imatrix=False, overrides=None):
            out = super().tensor_types(model, ftype, imatrix, overrides)
            if ftype == "Q4_K_M":
                out = ["Q4_K" if t["name"].endswith("attn_v.weight") else ty for t, ty in zip(model["tensors"], out)]
            return out

    class OwnNanSign(NanSign):
        """A mistake in ggspec's own reference that changes only NaN signs (e.g. an edited copy)."""
        name = "reference"

    def mixoff(): return MixOff()
    def nansign(): return NanSign()
    def ownnansign(): return OwnNanSign()
    def ropeoffsimd(): return RopeOffSimd()
    def ropeulp(): return RopeUlp()
    def flushnan(): return FlushNaN()
    def broken(): return Broken()
    def noisy(): return Noisy()
    def raises(): return Raises()
    def lenient(): return Lenient()
    def hostile(): return Hostile()
    def ropeoff(): return RopeOff()
''')


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    (tmp_path / "ggspec_fakes.py").write_text(FAKES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "ggspec_fakes"


def conform(capsys, *argv) -> "tuple[int, str]":
    p = argparse.ArgumentParser()
    cmd_conform.register(p.add_subparsers())
    args = p.parse_args(["conform", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


def gguf_vectors() -> bool:
    return bool(suites.get("gguf").load(None))


# ------------------------------------------------------------------------------------------------
# the nan-bits class

def test_float_diff_classes():
    e = np.array([1.0, np.nan, 0.0, -2.0], np.float32)
    assert float_diff(e.copy(), e) is None
    g = e.copy()
    g.view(np.uint32)[1] ^= 0x80000001          # NaN sign and payload
    g[2] = -0.0
    d = float_diff(g, e)
    assert d["kind"] == "nan-bits" and d["n"] == 2 and d["k_nan"] == 2
    g[3] = -2.0000002
    d = float_diff(g, e)
    assert d["kind"] == "fail" and d["index"] == 3 and d["k_nan"] == 2
    g2 = e.copy()
    g2[1] = 0.0                                   # a NaN flushed to zero is a real difference
    assert float_diff(g2, e)["kind"] == "fail"


def test_nan_bits_is_its_own_class_and_fails_only_with_strict(fakes, capsys):
    code, out = conform(capsys, "--impl", f"{fakes}:nansign", "--suite", "codec", "--types", "F16,Q4_0",
                        "--ops", "dequantize")
    assert re.search(r"nansign +nan-bits 2/2", out) and not re.search(r"FAIL \d", out)
    assert code == 0
    code, _ = conform(capsys, "--impl", f"{fakes}:nansign", "--suite", "codec", "--types", "F16",
                      "--ops", "dequantize", "--strict")
    assert code == 1


def test_own_implementations_are_judged_strictly(fakes, capsys):
    """ggspec's reference defines the format: a NaN-sign-only difference there fails without --strict
    (the issue-15 mutants "keep the NaN payload" must fail `ggspec conform --impl reference`)."""
    code, out = conform(capsys, "--impl", f"{fakes}:ownnansign", "--suite", "codec", "--types", "F16",
                        "--ops", "dequantize")
    assert "nan-bits" in out and code == 1


def test_a_real_nan_defect_fails_with_comment_and_flags(fakes, capsys):
    code, out = conform(capsys, "--impl", f"{fakes}:flushnan", "--suite", "codec", "--types", "F16",
                        "--ops", "dequantize")
    assert code == 1
    line = next(l for l in out.splitlines() if "flushnan F16 dequantize" in l)
    assert "tcId" in line and "[" in out          # comment and flags follow the tcId


def test_all_failures_lists_every_failing_case(fakes, capsys):
    _, first = conform(capsys, "--impl", f"{fakes}:raises", "--suite", "codec", "--types", "Q4_0",
                       "--ops", "quantize")
    _, every = conform(capsys, "--impl", f"{fakes}:raises", "--suite", "codec", "--types", "Q4_0",
                       "--ops", "quantize", "--all-failures")
    n1 = first.count("raised KeyError")
    n2 = every.count("raised KeyError")
    assert n1 == 1 and n2 > 5
    assert "FAIL" in first and "(" in first


def test_broken_adapter_is_reported_not_unsupported(fakes, capsys):
    code, out = conform(capsys, "--impl", f"{fakes}:broken", "--suite", "codec", "--types", "Q4_0")
    assert code == 1
    assert "broken adapter" in out and "adapter bug" in out


def test_quiet_counts_warnings_per_cell(fakes, capsys, recwarn):
    code, out = conform(capsys, "--impl", f"{fakes}:noisy", "--suite", "codec", "--types", "Q4_0",
                        "--ops", "dequantize", "--quiet", "--json")
    doc = json.loads(out)
    cell = doc["implementations"][0]["results"]["Q4_0"]["dequantize"]
    assert cell["status"] == "pass" and cell["warnings"] == cell["total"] > 0
    assert not [w for w in recwarn if "noisy" in str(w.message)]


def test_suites_without_vectors_say_so(capsys, tmp_path):
    code, out = conform(capsys, "--impl", "reference", "--vectors", str(tmp_path), "--suite",
                        "gguf,rope,attention,forward")
    assert code == 0
    for name in ("gguf", "rope", "attention", "forward"):
        assert re.search(rf"^{name}: no vectors", out, re.M), name


def test_unknown_suite_is_an_error():
    from ggspec.errors import GGSpecError
    with pytest.raises(GGSpecError, match="unknown suite"):
        suites.get("nonsense")


# ------------------------------------------------------------------------------------------------
# report format and exit status

def test_default_report_fits_100_columns_and_peers_do_not_set_the_exit_status(fakes, capsys, monkeypatch):
    from ggspec.conformance import adapters
    from importlib import import_module
    mod = import_module(fakes)
    monkeypatch.setattr(adapters, "available_implementations",
                        lambda: ([adapters.ReferenceImpl(), mod.flushnan()], {"absent": "not installed here"}))
    code, out = conform(capsys, "--suite", "codec", "--types", "F16,Q4_0")
    assert code == 0, out                    # flushnan is a peer: its FAIL is a finding
    assert max(len(l) for l in out.splitlines()) <= 100, max(out.splitlines(), key=len)
    assert "findings in peers" in out and "flushnan" in out
    assert "reference" in out and "not run: absent" in out
    monkeypatch.setattr(adapters, "available_implementations",
                        lambda: ([mod.flushnan()], {}))
    mod.FlushNaN.name = "reference"          # the same defect in one of ggspec's own
    try:
        code, out = conform(capsys, "--suite", "codec", "--types", "F16")
    finally:
        mod.FlushNaN.name = "flushnan"
    assert code == 1 and "failures in ggspec's own" in out


def test_with_impl_any_fail_exits_1_and_detail_tables_show(fakes, capsys):
    code, out = conform(capsys, "--impl", "reference", "--impl", f"{fakes}:flushnan", "--suite", "codec",
                        "--types", "F16")
    assert code == 1
    assert "reference / codec" in out and "flushnan / codec" in out


def test_summary_counts_vector_files_run(capsys):
    code, out = conform(capsys, "--impl", "reference", "--suite", "codec", "--types", "Q4_0,Q8_0,F16",
                        "--json")
    doc = json.loads(out)
    assert doc["implementations"][0]["files_run"] == 3


def test_junit_xml_loads_and_has_one_testcase_per_cell(fakes, capsys, tmp_path):
    path = tmp_path / "r.xml"
    code, _ = conform(capsys, "--impl", "reference", "--impl", f"{fakes}:flushnan", "--suite", "codec",
                      "--types", "F16,Q4_0", "--junit-xml", str(path))
    root = ET.parse(path).getroot()
    cases = root.findall(".//testcase")
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("ggspec.reference.codec", "Q4_0 quantize") in names
    fails = [c for c in cases if c.find("failure") is not None]
    assert fails and all(c.get("classname") == "ggspec.flushnan.codec" for c in fails)
    assert "tcId" in fails[0].find("failure").get("message")


# ------------------------------------------------------------------------------------------------
# gguf suite

needs_gguf_vectors = pytest.mark.skipif(not gguf_vectors(), reason="vectors/gguf/gguf.json not generated yet")


@needs_gguf_vectors
def test_reference_passes_the_gguf_suite(capsys):
    code, out = conform(capsys, "--impl", "reference", "--suite", "gguf", "--json")
    doc = json.loads(out)
    rep = doc["implementations"][0]
    assert code == 0 and not rep["failed"]
    cells = rep["results"]
    assert {op for c in cells.values() for op in c} == {"valid", "invalid", "acceptable", "extension", "write"}
    assert sum(o["passed"] for c in cells.values() for o in c.values()) > 50


@needs_gguf_vectors
def test_a_lenient_gguf_reader_fails_naming_the_case(fakes, capsys):
    code, out = conform(capsys, "--impl", f"{fakes}:lenient", "--suite", "gguf", "--all-failures")
    assert code == 1
    assert "accepted an invalid file" in out and "truncated" in out


@needs_gguf_vectors
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the memory limit is RLIMIT_AS, enforced on Linux")
def test_hang_crash_and_blowup_are_verdicts_and_the_run_goes_on(fakes, capsys):
    code, out = conform(capsys, "--impl", f"{fakes}:hostile", "--suite", "gguf", "--parse-timeout", "3",
                        "--memory-limit", "256", "--json")
    doc = json.loads(out)
    kinds = {}
    total = 0
    for c in doc["implementations"][0]["results"].values():
        for o in c.values():
            total += o["total"]
            for k, n in o["kinds"].items():
                kinds[k] = kinds.get(k, 0) + n
    assert kinds.get("timeout") == 1 and kinds.get("crash") == 1 and kinds.get("memory") == 1, kinds
    assert total > 50 and code == 1


# ------------------------------------------------------------------------------------------------
# rope suite

def _libm():
    from ggspec.reference import rope as R
    return R.libm_available()


def _rope_portable() -> bool:
    vs = suites.get("rope").load(None)
    return bool(vs) and "portable" in json.dumps(vs[0].provenance)


@pytest.mark.skipif(not _libm(), reason="bit-exact RoPE needs the C library's sinf/cosf")
@pytest.mark.skipif(not _rope_portable(), reason="vectors/model/rope.json predates the portable oracle, whose "
                    "definition (no FMA contraction) the reference follows; regenerate it")
def test_reference_passes_rope_and_a_wrong_value_is_located(fakes, capsys):
    code, out = conform(capsys, "--impl", "reference", "--suite", "rope", "--json")
    rep = json.loads(out)["implementations"][0]
    assert code == 0 and not rep["failed"] and rep["files_run"] == 1
    assert all(o["status"] == "pass" for c in rep["results"].values() for o in c.values())
    code, out = conform(capsys, "--impl", f"{fakes}:ropeoff", "--suite", "rope")
    assert code == 1
    assert "index (0, 0, 5)" in out
    # a SIMD build is judged within the vectors' native tolerance: 1 ulp passes, a wrong value does not
    code, out = conform(capsys, "--impl", f"{fakes}:ropeulp", "--suite", "rope")
    assert code == 0, out
    code, out = conform(capsys, "--impl", f"{fakes}:ropeoffsimd", "--suite", "rope")
    assert code == 1 and "SIMD bound" in out


def test_runner_engine_counts_kinds():
    o = runner.Outcome()
    o.record("pass")
    o.record("nan-bits", "tcId 2: x")
    assert o.status == "nan-bits" and o.cell() == "nan-bits 1/2"
    o.record("timeout", "tcId 3: y")
    assert o.status == "FAIL" and o.cell() == "FAIL 1/3 (1 timeout)"
    assert o.failed() and not runner.Outcome(status="nan-bits").failed() and runner.Outcome(status="nan-bits").failed(True)


# ------------------------------------------------------------------------------------------------
# mix suite

@pytest.mark.skipif(not suites.get("mix").load(None), reason="vectors/mix/mix.json not generated")
def test_reference_passes_mix_and_a_wrong_rule_names_the_tensor(fakes, capsys):
    code, out = conform(capsys, "--impl", "reference", "--suite", "mix", "--json")
    rep = json.loads(out)["implementations"][0]
    assert code == 0 and not rep["failed"]
    assert {op for c in rep["results"].values() for op in c} == {"default", "overrides"}
    code, out = conform(capsys, "--impl", f"{fakes}:mixoff", "--suite", "mix")
    assert code == 1
    assert re.search(r"Q4_K_M: blk\.\d+\.attn_v\.weight .*got Q4_K, expected Q6_K", " ".join(out.split()))


@pytest.mark.oracle
def test_mix_and_gguf_vectors_regenerate_identically(oracle, tmp_path):
    import subprocess
    import sys
    from ggspec.conformance.vectors import vectors_root
    from pathlib import Path
    corpus = str(Path(__file__).parent / "fuzz" / "corpus" / "gguf")
    for mod, rel, extra in (("generate_mix", "mix/mix.json", []),
                            ("generate_gguf", "gguf/gguf.json", ["--corpus", corpus])):
        out = subprocess.run([sys.executable, "-m", f"ggspec.vectors.{mod}", "--out", str(tmp_path), *extra],
                             capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr[-2000:]
        assert (tmp_path / rel).read_bytes() == (vectors_root() / rel).read_bytes(), rel


def test_quantize_to_plain_floats_has_the_nan_bits_class_too():
    """F16 output whose bytes differ only in NaN payloads is nan-bits; a changed number is a FAIL."""
    from ggspec import reference
    from ggspec.conformance.vectors import QuantizeCase
    from ggspec.reference.types import get_type
    x = np.array([[1.0, np.nan, -0.0, 2.5] * 8], np.float32)
    want = reference.quantize("F16", x)
    case = QuantizeCase("F16", 1, "", [], x, None, want, None)

    class Impl:
        def __init__(self, out):
            self.out = out

        def quantize(self, t, x, imatrix):
            return self.out
    h = np.frombuffer(want, np.uint16).copy()
    h[1] ^= 0x0001                        # a NaN with another payload
    h[2] ^= 0x8000                        # +0 instead of -0
    kind, text = runner.q_verdict(Impl(h.tobytes()), get_type("F16"), case)
    assert kind == "nan-bits" and "byte 2" in text
    h[0] ^= 0x0001                        # 1.0 -> 1.0009765625: a real difference
    kind, text = runner.q_verdict(Impl(h.tobytes()), get_type("F16"), case)
    assert kind == "fail" and "only in NaN/zero-sign bits" in text


def test_parallel_workers_give_the_same_report_as_one_process(fakes, capsys):
    def strip(doc):
        for r in doc["implementations"]:
            for c in r["results"].values():
                for o in c.values():
                    o.pop("seconds")
                    o.pop("warnings")
        return doc
    args = ["--impl", "reference", "--impl", f"{fakes}:flushnan", "--suite", "codec,gguf", "--types", "F16,Q4_0",
            "--json", "--quiet"]
    c1, one = conform(capsys, *args, "--jobs", "1")
    c2, two = conform(capsys, *args, "--jobs", "2")
    assert c1 == c2 == 1
    assert strip(json.loads(one)) == strip(json.loads(two))


def test_quantized_blocks_whose_values_differ_only_in_nan_bits_are_nan_bits():
    """A Q8_0 block whose fp16 scale is a NaN with another payload decodes to NaNs either way."""
    import struct
    from ggspec.conformance.vectors import QuantizeCase
    from ggspec.reference.types import get_type
    x = np.zeros((1, 32), np.float32)
    want = struct.pack("<H", 0x7E00) + bytes(range(1, 33))       # d = qNaN
    case = QuantizeCase("Q8_0", 1, "", [], x, None, want, None)

    class Impl:
        def __init__(self, out):
            self.out = out

        def quantize(self, t, x, imatrix):
            return self.out
    kind, text = runner.q_verdict(Impl(struct.pack("<H", 0x7E01) + bytes(range(1, 33))), get_type("Q8_0"), case)
    assert kind == "nan-bits" and "byte 0" in text
    kind, text = runner.q_verdict(Impl(struct.pack("<H", 0x3C00) + bytes(range(1, 33))), get_type("Q8_0"), case)
    assert kind == "fail"
    zero = bytes(2) + bytes(range(1, 33))                          # d = 0: every qs decodes to 0
    case0 = QuantizeCase("Q8_0", 2, "", [], x, None, zero, None)
    kind, text = runner.q_verdict(Impl(bytes(2) + bytes(32)), get_type("Q8_0"), case0)
    assert kind == "fail" and "decode to the same values" in text
