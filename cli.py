"""The ``ggspec`` command line.

Each sub-command lives in its own module under ``ggspec.conformance`` named ``cmd_<name>`` and
exposes ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import GGSpecError

COMMANDS = ("conform", "inspect", "sizes", "rope", "vectors", "oracle", "run", "convert")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ggspec", description="Executable specification of llama.cpp's model formats.")
    p.add_argument("--version", action="version", version=f"ggspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"ggspec.conformance.cmd_{name}")
        except ModuleNotFoundError as e:
            if e.name == f"ggspec.conformance.cmd_{name}":
                continue  # that sub-command has not landed yet
            raise
        mod.register(sub)
    return p


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GGSpecError as e:
        print(f"ggspec: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
