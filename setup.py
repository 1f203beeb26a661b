"""Package list for setuptools: the repository root is ``ggspec`` and every package under the fixed
top-level folders becomes ``ggspec.<folder>[.<sub>]`` (found automatically, so a new subpackage
cannot be left out of the wheel). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

SUBPACKAGES = find_packages(include=["reference", "reference.*", "accel", "accel.*",
                                     "conformance", "conformance.*", "vectors", "vectors.*"])
setup(packages=["ggspec"] + [f"ggspec.{p}" for p in SUBPACKAGES])
