"""Where the oracles and the pinned llama.cpp source live, and how they are made.

Two builds of ``llama-cpp-python==0.3.36`` serve as ground truth:

* the **native** build (``pip install ".[oracle]"``): ggml's quantizers and dequantizers (codec
  vectors). Found by :mod:`ggspec.conformance.libggml` next to the installed ``llama_cpp``.
* the **portable** build: the same source with every SIMD path, the llamafile sgemm, CPU weight
  repacking and FMA contraction off (:data:`PORTABLE_CMAKE_ARGS`). Every CPU op is then one of
  ggml's generic C loops, the same on every x86-64 CPU: the oracle for model math (RoPE, mat-mul,
  attention, the forward pass). It is installed with ``pip install --target`` into its own
  directory and only ever loaded in a child process (its libraries have the same sonames as the
  native ones, so both cannot live in one process).

The pinned source (the sdist, with ``vendor/llama.cpp``: vocabulary GGUFs, ggml-common.h) is
downloaded once with ``pip download --no-binary :all:``.

Locations (each overridable by an environment variable):

    GGSPEC_LLAMA_CPP_SRC      the extracted sdist root (contains vendor/llama.cpp)
    GGSPEC_PORTABLE_ORACLE    the --target directory of the portable build (contains llama_cpp/)

default: ``$XDG_CACHE_HOME/ggspec`` (``~/.cache/ggspec``). ``ggspec oracle setup`` makes both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import OracleUnavailable

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SDIST_DIRNAME = f"llama_cpp_python-{VERSION}"

#: CMake options of the portable oracle (checked against the vendored ggml/CMakeLists.txt and
#: llama_print_system_info(): it reports no SSE3/AVX/F16C/FMA/REPACK/LLAMAFILE).
PORTABLE_CMAKE_ARGS = " ".join([
    "-DGGML_NATIVE=OFF",
    "-DGGML_SSE42=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_AVX_VNNI=OFF", "-DGGML_BMI2=OFF",
    "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF", "-DGGML_AVX512_VNNI=OFF", "-DGGML_AVX512_BF16=OFF",
    "-DGGML_FMA=OFF", "-DGGML_F16C=OFF",
    "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DGGML_LLAMAFILE=OFF", "-DGGML_CPU_REPACK=OFF", "-DGGML_BLAS=OFF",
    "-DCMAKE_C_FLAGS=-ffp-contract=off", "-DCMAKE_CXX_FLAGS=-ffp-contract=off",
])


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ggspec"


def source_root() -> Path:
    """The extracted sdist of llama-cpp-python 0.3.36 (may not exist yet)."""
    env = os.environ.get("GGSPEC_LLAMA_CPP_SRC")
    return Path(env) if env else cache_root() / SDIST_DIRNAME


def vendor_dir() -> Path:
    """``vendor/llama.cpp`` of the pinned source, or OracleUnavailable saying how to get it."""
    v = source_root() / "vendor" / "llama.cpp"
    if not (v / "ggml" / "src" / "ggml-common.h").is_file():
        raise OracleUnavailable(
            f"the pinned llama.cpp source is not at {v}: run `ggspec oracle setup --source` "
            "(or set GGSPEC_LLAMA_CPP_SRC to an extracted llama-cpp-python 0.3.36 sdist)")
    return v


def portable_dir() -> Path:
    env = os.environ.get("GGSPEC_PORTABLE_ORACLE")
    return Path(env) if env else cache_root() / f"portable-{SDIST_DIRNAME}"


def portable_lib_dir() -> Path:
    """The portable build's ``llama_cpp/lib``, or OracleUnavailable."""
    lib = portable_dir() / "llama_cpp" / "lib"
    if not any(lib.glob("libggml-base.*")):
        raise OracleUnavailable(
            f"the portable oracle is not built at {portable_dir()}: run `ggspec oracle setup` "
            "(about 8 minutes on 2 cores) or set GGSPEC_PORTABLE_ORACLE")
    return lib


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"ggspec oracle: {msg}", file=sys.stderr, flush=True)


def fetch_source(quiet: bool = False) -> Path:
    """Download and extract the sdist (idempotent). Returns the extracted root."""
    root = source_root()
    if (root / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-common.h").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _log(f"downloading the {PACKAGE}=={VERSION} source distribution", quiet)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        f"{PACKAGE}=={VERSION}", "-d", tmp], check=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if len(archives) != 1:
            raise OracleUnavailable(f"pip download gave {archives}, expected one sdist")
        _log(f"extracting to {root}", quiet)
        staging = Path(tempfile.mkdtemp(dir=root.parent))
        with tarfile.open(archives[0]) as tf:
            tf.extractall(staging, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(staging)
        src = staging / SDIST_DIRNAME
        if root.exists():
            shutil.rmtree(root)
        src.rename(root)
        shutil.rmtree(staging, ignore_errors=True)
    return root


def build_portable(quiet: bool = False, force: bool = False) -> Path:
    """Build the portable oracle from the pinned source into :func:`portable_dir` (idempotent)."""
    target = portable_dir()
    if not force:
        try:
            portable_lib_dir()
            return target
        except OracleUnavailable:
            pass
    src = fetch_source(quiet)
    staging = Path(tempfile.mkdtemp(dir=target.parent if target.parent.exists() else None,
                                    prefix="portable-build-"))
    env = dict(os.environ, CMAKE_ARGS=PORTABLE_CMAKE_ARGS)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    _log(f"building the portable oracle (CMAKE_ARGS={PORTABLE_CMAKE_ARGS}); about 8 minutes on 2 cores", quiet)
    # --no-cache-dir: pip's wheel cache is keyed by the source, not by CMAKE_ARGS; a cached native
    # wheel would silently be reused otherwise.
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--target", str(staging), str(src)]
    if quiet:
        cmd.insert(4, "--quiet")
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise OracleUnavailable(f"building the portable oracle failed (pip exit {r.returncode})")
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    _log(f"portable oracle ready at {target}", quiet)
    return target


def status() -> dict:
    """What is present, for ``ggspec oracle status``."""
    from . import libggml

    out = {"native": None, "portable": None, "source": None}
    try:
        out["native"] = str(libggml.find_library())
    except OracleUnavailable as e:
        out["native_error"] = str(e)
    try:
        out["portable"] = str(portable_lib_dir())
    except OracleUnavailable as e:
        out["portable_error"] = str(e)
    try:
        out["source"] = str(vendor_dir())
    except OracleUnavailable as e:
        out["source_error"] = str(e)
    return out
