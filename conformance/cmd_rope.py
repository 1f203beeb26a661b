"""``ggspec rope --explain``: the exact ggml_rope_ext parameters behind a llama.cpp command line or an
HF ``rope_scaling`` dict.

    ggspec rope --explain -- --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 4096 -c 32768
    ggspec rope --explain --head-dim 128 '{"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                 "high_freq_factor": 4, "original_max_position_embeddings": 8192}' --freq-base 500000
    ggspec rope --explain --json '{"type": "dynamic", "factor": 2}' --n-ctx 8192

Model-side defaults (what a GGUF would carry) come from --head-dim, --freq-base, --n-ctx-train,
--model-scaling/--model-factor; llama.cpp flags override them exactly as llama_context does.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys

import numpy as np

from ..errors import GGSpecError
from ..reference import llama as L
from ..reference import rope as R

f32 = np.float32


def register(subparsers) -> None:
    p = subparsers.add_parser("rope", help="explain RoPE parameters (llama.cpp flags or an HF rope_scaling dict)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--explain", action="store_true", help="print the ggml_rope_ext parameters (the default action)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--head-dim", type=int, default=128, help="n_dims = head size (default 128)")
    p.add_argument("--freq-base", type=float, default=10000.0, help="model's rope.freq_base / rope_theta (default 10000)")
    p.add_argument("--n-ctx-train", type=int, default=4096, help="model's context_length (default 4096)")
    p.add_argument("--model-scaling", default=None, help="model's rope.scaling.type (GGUF)")
    p.add_argument("--model-factor", type=float, default=0.0, help="model's rope.scaling.factor (GGUF)")
    p.add_argument("--n-ctx", type=int, default=None, help="context size for an HF dict (dynamic NTK length, longrope choice)")
    p.add_argument("spec", nargs=argparse.REMAINDER,
                   help="llama.cpp flags (after --) or one JSON object (HF rope_scaling)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------
def parse_llama_cpp_flags(argv) -> "tuple[L.ContextParams, list]":
    """llama.cpp's common/arg.cpp semantics for the RoPE flags."""
    cp = L.ContextParams()
    notes = []
    it = iter(argv)
    for tok in it:
        if "=" in tok and tok.startswith("--"):
            tok, val = tok.split("=", 1)
        else:
            val = None

        def nxt():
            v = val if val is not None else next(it, None)
            if v is None:
                raise GGSpecError(f"{tok} needs a value")
            return v
        if tok in ("-c", "--ctx-size"):
            cp.n_ctx = int(nxt())
        elif tok == "--rope-scaling":
            v = nxt()
            if v not in ("none", "linear", "yarn"):
                raise GGSpecError(f"--rope-scaling {v}: llama.cpp accepts none, linear, yarn")
            cp.rope_scaling_type = v
        elif tok == "--rope-scale":
            cp.rope_freq_scale = float(f32(f32(1.0) / f32(float(nxt()))))
        elif tok == "--rope-freq-base":
            cp.rope_freq_base = float(f32(float(nxt())))
        elif tok == "--rope-freq-scale":
            cp.rope_freq_scale = float(f32(float(nxt())))
        elif tok == "--yarn-orig-ctx":
            cp.yarn_orig_ctx = int(nxt())
        elif tok == "--yarn-ext-factor":
            cp.yarn_ext_factor = float(f32(float(nxt())))
        elif tok == "--yarn-attn-factor":
            cp.yarn_attn_factor = float(f32(float(nxt())))
        elif tok == "--yarn-beta-slow":
            cp.yarn_beta_slow = float(f32(float(nxt())))
        elif tok == "--yarn-beta-fast":
            cp.yarn_beta_fast = float(f32(float(nxt())))
        elif tok in ("--compress-pos-emb", "--compress_pos_emb"):
            # text-generation-webui's name for linear scaling: its llama.cpp loader passes
            # rope_freq_scale = 1 / compress_pos_emb (and no --rope-scaling), i.e. --rope-scale N
            n = float(nxt())
            if n <= 0:
                raise GGSpecError(f"--compress-pos-emb {n}: must be positive")
            cp.rope_freq_scale = float(f32(f32(1.0) / f32(n)))
            notes.append(f"--compress-pos-emb {n:g} (text-generation-webui) sets rope_freq_scale = 1/{n:g}, the same "
                         f"as llama.cpp's --rope-scale {n:g}; the scaling *type* stays what the GGUF says (none or "
                         f"linear: linear interpolation; a YaRN GGUF keeps YaRN, now with factor {n:g})")
        elif tok == "--":
            continue
        else:
            raise GGSpecError(f"not a RoPE flag llama.cpp knows: {tok}")
    if cp.yarn_attn_factor >= 0 and (cp.rope_scaling_type == "yarn" or cp.yarn_ext_factor > 0):
        notes.append("--yarn-attn-factor is overwritten by llama_context whenever ext_factor != 0")
    return cp, notes


def explain_llama_cpp(argv, head_dim=128, freq_base=10000.0, n_ctx_train=4096, model_scaling=None,
                      model_factor=0.0) -> dict:
    cp, notes = parse_llama_cpp_flags(argv)
    md = {"general.architecture": "llama", "llama.embedding_length": head_dim, "llama.attention.head_count": 1,
          "llama.context_length": n_ctx_train, "llama.block_count": 1, "llama.feed_forward_length": 1,
          "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": freq_base}
    if model_scaling:
        md["llama.rope.scaling.type"] = model_scaling
    if model_factor:
        md["llama.rope.scaling.factor"] = model_factor
    hp = L.LlamaHParams.from_metadata(md, n_vocab=1)
    p = L.rope_params_for_context(hp, cp)
    return _result(p, source="llama.cpp flags", notes=notes, n_ctx=cp.n_ctx)


def explain_hf(d: dict, head_dim=128, freq_base=10000.0, n_ctx_train=4096, n_ctx=None) -> dict:
    """HF rope_scaling dict -> the ggml parameters llama.cpp would use (after convert_hf_to_gguf)."""
    d = dict(d)
    kind = str(d.get("rope_type", d.get("type", "default"))).lower()
    base = float(d.get("rope_theta", freq_base))
    orig = int(d.get("original_max_position_embeddings", n_ctx_train))
    max_pos = int(d.get("max_position_embeddings", n_ctx_train))
    n_ctx = n_ctx or max_pos
    notes = []
    kw = dict(n_dims=head_dim, mode="normal", freq_base=float(f32(base)), n_ctx_orig=orig)
    if "compress_pos_emb" in d and kind == "default":
        kind = "linear"
        d["factor"] = d["compress_pos_emb"]
        notes.append("compress_pos_emb N is linear scaling with factor N (freq_scale = 1/N)")
    if "alpha" in d and kind in ("default", "ntk"):
        kind = "ntk"
    if kind in ("default", "none"):
        p = R.RopeParams(**kw)
    elif kind == "linear":
        p = R.RopeParams(**kw, freq_scale=float(f32(f32(1) / f32(d["factor"]))))
    elif kind == "ntk":
        nb = R.ntk_alpha_base(base, float(d["alpha"]), head_dim)
        p = R.RopeParams(**{**kw, "freq_base": float(nb)})
        notes.append(f"static NTK-aware: freq_base = base * alpha^(d/(d-2)) = {float(nb)!r} (float32)")
    elif kind == "dynamic":
        nb = R.hf_dynamic_base(base, head_dim, float(d["factor"]), max_pos, n_ctx)
        p = R.RopeParams(**{**kw, "freq_base": float(f32(nb))})
        notes.append("dynamic NTK is transformers-only: the base is recomputed from the running sequence length; "
                     f"shown: the static base at seq_len {n_ctx} (pass it as --rope-freq-base); "
                     f"at seq_len <= {max_pos} it is the plain base {base!r}")
    elif kind == "yarn":
        factor = float(d.get("factor") or max_pos / orig)
        fs = f32(f32(1) / f32(factor))
        attn = L.yarn_attn_factor(fs)
        p = R.RopeParams(**{**kw, "n_ctx_orig": orig}, freq_scale=float(fs),
                         ext_factor=float(f32(d.get("extrapolation_factor", 1.0))),
                         attn_factor=float(attn), beta_fast=float(f32(d.get("beta_fast") or 32)),
                         beta_slow=float(f32(d.get("beta_slow") or 1)))
        _, hf_att = R.hf_yarn(head_dim, base, factor, orig, d.get("beta_fast") or 32, d.get("beta_slow") or 1,
                               d.get("attention_factor"), d.get("mscale"), d.get("mscale_all_dim"))
        net = float(attn) * (1 + 0.1 * math.log(1 / float(fs)))
        notes.append(f"magnitude on cos/sin: ggml attn_factor * (1 + 0.1 ln(1/freq_scale)) = {net:.7g}; "
                     f"transformers attention_factor = {hf_att:.7g}")
        if d.get("attention_factor") is not None or d.get("mscale"):
            notes.append("llama.cpp's llama architecture does not read rope.scaling.yarn_attn_factor; only "
                         "yarn_log_multiplier (mscale_all_dim) changes attn_factor")
    elif kind == "llama3":
        ff = R.llama3_rope_freqs(head_dim, base, float(d.get("factor", 8.0)), float(d.get("low_freq_factor", 1.0)),
                                 float(d.get("high_freq_factor", 4.0)), int(d.get("original_max_position_embeddings", 8192)))
        p = R.RopeParams(**kw, freq_factors=tuple(ff.tolist()))
        notes.append("llama3: no scaling keys in the GGUF; the converter writes rope_freqs.weight (theta is divided by it)")
    elif kind in ("longrope", "su"):
        factor = d.get("factor") or max_pos / orig
        att = d.get("attention_factor")
        if att is None:
            att = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        long_ = n_ctx > orig
        ff = d["long_factor"] if long_ else d["short_factor"]
        p = R.RopeParams(**kw, freq_factors=tuple(float(f32(v)) for v in ff), attn_factor=float(f32(att)))
        notes.append(f"longrope: llama.cpp uses rope_factors_{'long' if long_ else 'short'} because n_ctx {n_ctx} "
                     f"{'>' if long_ else '<='} original {orig} (fixed per context; transformers switches per call "
                     "on the current sequence length)")
        notes.append("attn_factor comes from rope.scaling.attn_factor = sqrt(1 + ln(factor)/ln(original))")
    else:
        raise GGSpecError(f"unknown rope type {kind!r}")
    return _result(p, source=f"HF rope_scaling ({kind})", notes=notes, n_ctx=n_ctx)


def _result(p: R.RopeParams, source: str, notes, n_ctx) -> dict:
    corr = R.yarn_corr_dims(p.n_dims, p.n_ctx_orig, p.freq_base, p.beta_fast, p.beta_slow) if p.ext_factor else None
    return {
        "source": source, "n_ctx": n_ctx, "mode": p.mode, "n_dims": p.n_dims,
        "freq_base": p.freq_base, "freq_scale": p.freq_scale, "ext_factor": p.ext_factor,
        "attn_factor": p.attn_factor, "beta_fast": p.beta_fast, "beta_slow": p.beta_slow,
        "n_ctx_orig": p.n_ctx_orig, "freq_factors": list(p.freq_factors) if p.freq_factors else None,
        "theta_scale": float(R.theta_scale(p.freq_base, p.n_dims)),
        "yarn_corr_dims": [float(corr[0]), float(corr[1])] if corr else None,
        "notes": list(notes),
    }


def explain(spec, **kw) -> dict:
    """spec: list of llama.cpp argv tokens, or one JSON string / dict."""
    if isinstance(spec, dict):
        return explain_hf(spec, **{k: v for k, v in kw.items() if k in ("head_dim", "freq_base", "n_ctx_train", "n_ctx")})
    if isinstance(spec, str):
        spec = [spec]
    spec = [s for s in spec if s != "--"]
    if len(spec) == 1 and spec[0].lstrip().startswith("{"):
        return explain(json.loads(spec[0]), **kw)
    if len(spec) == 1 and " " in spec[0]:
        spec = shlex.split(spec[0])
    return explain_llama_cpp(spec, **{k: v for k, v in kw.items() if k in ("head_dim", "freq_base", "n_ctx_train",
                                                                        "model_scaling", "model_factor")})


def format_text(r: dict) -> str:
    lines = [f"RoPE parameters (ggml_rope_ext) from {r['source']}:"]
    for k in ("mode", "n_dims", "freq_base", "freq_scale", "ext_factor", "attn_factor", "beta_fast", "beta_slow",
              "n_ctx_orig", "theta_scale", "yarn_corr_dims"):
        if r.get(k) is not None:
            v = r[k]
            lines.append(f"  {k:<14} {v!r}")
    ff = r.get("freq_factors")
    if ff:
        shown = ", ".join(f"{v:.7g}" for v in ff[:8]) + (", ..." if len(ff) > 8 else "")
        lines.append(f"  {'freq_factors':<14} [{shown}] ({len(ff)} values, theta_i is divided by them)")
    else:
        lines.append(f"  {'freq_factors':<14} none")
    for n in r.get("notes", []):
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def run(args) -> int:
    # options given after the spec (e.g. '{"type": ...}' --head-dim 64) land in REMAINDER: pick them out
    spec, extra = [], list(args.spec)
    opts = {"--head-dim": ("head_dim", int), "--freq-base": ("freq_base", float), "--n-ctx-train": ("n_ctx_train", int),
            "--n-ctx": ("n_ctx", int), "--model-scaling": ("model_scaling", str), "--model-factor": ("model_factor", float)}
    i = 0
    is_json = any(s.lstrip().startswith("{") for s in extra)
    while i < len(extra):
        s = extra[i]
        if s == "--json":
            args.json = True
        elif s == "--explain":
            pass
        elif s in opts and (is_json or s in ("--head-dim", "--n-ctx-train", "--model-scaling", "--model-factor")) \
                and i + 1 < len(extra):
            name, typ = opts[s]
            setattr(args, name, typ(extra[i + 1]))
            i += 1
        else:
            spec.append(s)
        i += 1
    if not spec:
        print("ggspec rope: give llama.cpp flags (after --) or an HF rope_scaling JSON object", file=sys.stderr)
        return 2
    r = explain(spec, head_dim=args.head_dim, freq_base=args.freq_base, n_ctx_train=args.n_ctx_train,
                n_ctx=args.n_ctx, model_scaling=args.model_scaling, model_factor=args.model_factor)
    print(json.dumps(r, indent=2) if args.json else format_text(r))
    return 0
