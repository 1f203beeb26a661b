"""Every subpackage in the source tree is listed in pyproject (a wheel would silently miss it)."""

tomllib = __import__("pytest").importorskip("tomllib", reason="tomllib needs Python 3.11")
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_pyproject_lists_every_subpackage():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"ggspec"}
    for top in ("reference", "accel", "conformance", "vectors"):
        for init in (ROOT / top).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT)
            found.add("ggspec." + ".".join(rel.parts))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"
