"""``ggspec conform --junit-xml PATH``: one JUnit testcase per (implementation, suite, subject, op).

A FAIL cell is a ``<failure>`` whose message is the first failing case (every failing case in the
body); a broken adapter is an ``<error>``; an unsupported cell or a suite without vectors is
``<skipped>``; a nan-bits cell passes with the difference in ``<system-out>`` (a ``<failure>`` with
``--strict``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET


def build(reports, strict: bool = False) -> ET.ElementTree:
    root = ET.Element("testsuites", name="ggspec conform")
    by_suite: dict = {}
    for r in reports:
        by_suite.setdefault((r.impl, r.suite), []).append(r)
    for (impl, suite), rs in by_suite.items():
        ts = ET.SubElement(root, "testsuite", name=f"{impl}.{suite}")
        n = fails = errors = skipped = 0
        for r in rs:
            if not r.results:
                tc = ET.SubElement(ts, "testcase", classname=f"ggspec.{impl}.{suite}", name=suite)
                ET.SubElement(tc, "skipped", message=r.note or "nothing to run")
                n += 1
                skipped += 1
            for (subject, op), o in r.results.items():
                n += 1
                tc = ET.SubElement(ts, "testcase", classname=f"ggspec.{impl}.{suite}", name=f"{subject} {op}",
                                   time=f"{o.seconds:.4f}")
                if o.status == "broken":
                    ET.SubElement(tc, "error", message=f"broken adapter: {o.failure}")
                    errors += 1
                elif o.status == "FAIL":
                    f = ET.SubElement(tc, "failure", message=o.cell() + ": " + (o.failure or ""))
                    f.text = "\n".join(o.failed_cases)
                    fails += 1
                elif o.status == "nan-bits":
                    if strict:
                        f = ET.SubElement(tc, "failure", message=f"{o.cell()}: {o.nan_failure}")
                        fails += 1
                    else:
                        ET.SubElement(tc, "system-out").text = f"{o.cell()}: {o.nan_failure}"
                elif o.status in ("unsupported", "no vectors"):
                    ET.SubElement(tc, "skipped", message=o.status)
                    skipped += 1
        ts.set("tests", str(n))
        ts.set("failures", str(fails))
        ts.set("errors", str(errors))
        ts.set("skipped", str(skipped))
    return ET.ElementTree(root)


def write_junit(path, reports, strict: bool = False) -> None:
    tree = build(reports, strict)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
