"""Every subpackage in the source tree is importable from the installed ggspec (a wheel that
silently missed one would fail here: CI installs from a built wheel, not in editable mode)."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_packages():
    for top in ("reference", "accel", "conformance", "vectors"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            if "__pycache__" not in init.parts:
                yield "ggspec." + ".".join(init.parent.relative_to(ROOT).parts)


@pytest.mark.skipif(not (ROOT / "reference").is_dir(), reason="needs the source tree")
@pytest.mark.parametrize("name", list(_source_packages()))
def test_subpackage_is_installed(name):
    try:
        importlib.import_module(name)
    except ImportError as e:
        if e.name == name:
            pytest.fail(f"{name} is in the source tree but not in the installed package")
        pytest.skip(f"{name} needs an optional dependency: {e}")
