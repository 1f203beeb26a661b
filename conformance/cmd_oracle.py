"""``ggspec oracle``: set up and show the oracles (the pinned llama.cpp source, the portable build).

    ggspec oracle setup              # download the pinned source and build the portable oracle
    ggspec oracle setup --source     # only the source (vocabulary GGUFs, ggml-common.h)
    ggspec oracle status [--json]
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("oracle", help="set up / show the oracles (pinned llama.cpp source, portable build)")
    s = p.add_subparsers(dest="oracle_cmd", metavar="ACTION")
    a = s.add_parser("setup", help="download the pinned source and build the portable oracle (idempotent)")
    a.add_argument("--source", action="store_true", help="only download and extract the source")
    a.add_argument("--force", action="store_true", help="rebuild the portable oracle even if present")
    a.add_argument("--quiet", action="store_true")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_setup)
    b = s.add_parser("status", help="where the native oracle, the portable oracle and the source are")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_status)
    p.set_defaults(func=_status, json=False)


def _setup(args) -> int:
    from . import oracle_setup as O

    src = O.fetch_source(quiet=args.quiet)
    out = {"source": str(src)}
    if not args.source:
        out["portable"] = str(O.build_portable(quiet=args.quiet, force=args.force))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:9s} {v}")
    return 0


def _status(args) -> int:
    from . import oracle_setup as O

    st = O.status()
    if getattr(args, "json", False):
        print(json.dumps(st, indent=2))
    else:
        for k in ("native", "portable", "source"):
            print(f"{k:9s} {st[k] or 'absent: ' + st.get(k + '_error', '')}")
    return 0 if all(st[k] for k in ("native", "portable", "source")) else 1
