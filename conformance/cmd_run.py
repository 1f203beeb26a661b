"""``ggspec run``: the reference forward pass on a GGUF, from token ids.

    ggspec run MODEL.gguf --tokens 1,2,3 [--n-predict N] [--top-k K] [--compare-llama-cpp] [--json]
              [--n-ctx N] [--flash-attn] [--type-k F16] [--type-v F16] [--n-batch N] [--n-ubatch N]
              [--threads N] [--threads-batch N]

Prints the top-k logits of the last prompt position and the greedy continuation. With
``--compare-llama-cpp`` it also runs llama.cpp (the portable build when present -- the ground
truth, where the answer must be "identical" -- else the installed native build, which differs by
its SIMD accumulation order) on the same tokens and context parameters and prints the first
differing position and the largest difference. Token ids only; tokenizers are out of scope.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("run", help="reference forward pass on a GGUF: top-k logits and greedy continuation")
    p.add_argument("model", help="a GGUF file (llama family or qwen2)")
    p.add_argument("--tokens", required=True, help="comma-separated token ids, e.g. 1,2,3")
    p.add_argument("--n-predict", type=int, default=0, help="greedy tokens to generate (default 0)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--compare-llama-cpp", action="store_true",
                   help="also run llama.cpp and report the first differing position and the max difference")
    p.add_argument("--n-ctx", type=int, default=512)
    p.add_argument("--flash-attn", action="store_true")
    p.add_argument("--type-k", default="F16", choices=["F32", "F16"])
    p.add_argument("--type-v", default="F16", choices=["F32", "F16"])
    p.add_argument("--n-batch", type=int, default=512)
    p.add_argument("--n-ubatch", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="n_threads (single-token decode)")
    p.add_argument("--threads-batch", type=int, default=None, help="n_threads_batch (prompts)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)


def _parse_tokens(s: str) -> "list[int]":
    from ..errors import ShapeError
    try:
        toks = [int(t) for t in s.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ShapeError(f"--tokens must be comma-separated integers, got {s!r}") from None
    if not toks:
        raise ShapeError("--tokens is empty")
    return toks


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _run(args) -> int:
    from ..reference.llama import ContextParams, LlamaModel

    tokens = _parse_tokens(args.tokens)
    cp = ContextParams(n_ctx=args.n_ctx, type_k=args.type_k, type_v=args.type_v, flash_attn=args.flash_attn,
                       n_batch=args.n_batch, n_ubatch=args.n_ubatch)
    if args.threads:
        cp.n_threads = args.threads
    if args.threads_batch:
        cp.n_threads_batch = args.threads_batch
    cp.validate()
    quiet = args.json
    t0 = time.perf_counter()
    model = LlamaModel.from_gguf(args.model)
    hp = model.hp
    _log(f"{args.model}: {model.arch}, {hp.n_layer} layers, n_embd {hp.n_embd}, heads {hp.n_head}/{hp.n_head_kv}, "
         f"n_vocab {hp.n_vocab}", quiet)
    _log(f"evaluating {len(tokens)} prompt tokens ...", quiet)
    logits, gen = model.run(tokens, cp, args.n_predict,
                            progress=lambda i, n: _log(f"  greedy token {i}/{n}", quiet))
    elapsed = time.perf_counter() - t0
    last = logits[len(tokens) - 1]
    k = max(1, min(args.top_k, last.size))
    top = np.argsort(-last, kind="stable")[:k]
    out = {"model": str(args.model), "architecture": model.arch, "tokens": tokens,
           "context": dataclasses.asdict(cp),
           "top_k": [{"token": int(t), "logit": float(last[t]), "logit_bits": f"{last[t:t+1].view(np.uint32)[0]:08x}"}
                     for t in top],
           "greedy": gen, "seconds": round(elapsed, 3)}
    status = 0
    if args.compare_llama_cpp:
        out["llama_cpp"] = _compare(args.model, tokens, cp, args.n_predict, logits, gen, quiet)
        status = 0 if out["llama_cpp"]["identical"] or out["llama_cpp"]["oracle"] == "native" else 1
    if args.json:
        print(json.dumps(out, indent=2))
        return status
    print(f"top-{k} logits at position {len(tokens) - 1}:")
    for r in out["top_k"]:
        print(f"  {r['token']:>8d}  {r['logit']: .6f}  (bits {r['logit_bits']})")
    if gen:
        print(f"greedy continuation: {','.join(map(str, gen))}")
    if args.compare_llama_cpp:
        c = out["llama_cpp"]
        print(f"llama.cpp ({c['oracle']} build): " + ("identical" if c["identical"] else
              f"first differing position {c['first_diff_position']}, max |diff| {c['max_abs_diff']:.6g}, "
              f"{c['n_diff']} of {c['n_logits']} logits differ; greedy {'same' if c['greedy_same'] else 'differs'}"))
        if c["oracle"] == "native":
            print("  (the native build accumulates in SIMD order: differences are expected; build the portable "
                  "oracle with `ggspec oracle setup` for the exact check)")
    print(f"({elapsed:.1f} s)")
    return status


def _compare(path, tokens, cp, n_predict, logits, gen, quiet) -> dict:
    from . import llama_run, portable
    from ..errors import OracleUnavailable

    cpd = dataclasses.asdict(cp)
    try:
        oracle = portable.shared()
        kind = "portable"
        _log("running llama.cpp (portable build) ...", quiet)
        want, want_gen = oracle.call("ggspec.conformance.llama_run", "run", str(path), tokens, cpd, n_predict=n_predict)
        oracle.close()
    except OracleUnavailable:
        kind = "native"
        _log("running llama.cpp (native build; the portable oracle is absent) ...", quiet)
        want, want_gen = llama_run.run(str(path), tokens, cpd, n_predict=n_predict)
    want = np.asarray(want, np.float32)
    diff = want.view(np.uint32) != logits.view(np.uint32)
    rows = np.flatnonzero(diff.any(axis=1))
    with np.errstate(invalid="ignore"):
        mad = float(np.nanmax(np.abs(want.astype(np.float64) - logits.astype(np.float64)))) if want.size else 0.0
    return {"oracle": kind, "identical": not diff.any() and want_gen == gen,
            "first_diff_position": int(rows[0]) if rows.size else None, "max_abs_diff": mad,
            "n_diff": int(diff.sum()), "n_logits": int(diff.size), "greedy": want_gen, "greedy_same": want_gen == gen}
