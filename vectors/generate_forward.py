"""Golden vectors for the whole forward pass: ``vectors/model/forward/``.

    python -m ggspec.vectors.generate_forward [--out DIR] [--only NAME,...]

Each case is a tiny GGUF (``<name>.gguf``, random weights from a seed, written with gguf-py and,
for the llama.cpp mixes, quantized by ``llama_model_quantize``) and ``<name>.json``: the token ids,
the context parameters (``ggspec.reference.llama.ContextParams`` fields), the logits of every prompt
position and decode step as float32 bits, and the greedy continuation -- all computed by llama.cpp's
**portable build** (through llama-cpp-python, ``logits_all=True``) and nothing else. ``manifest.json``
lists the cases with each GGUF's sha256 and, per case, ``native_max_abs``: the largest logit
difference of the installed native (SIMD) llama.cpp build against the portable result, measured
when the file was made -- a justified bound for SIMD implementations; scalar ones must be exact.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from ggspec.conformance import libggml, llama_run, portable, tinymodels as T
from ggspec.conformance.vectors import f32_to_hex

SCHEMA = "ggspec-forward-vectors/1"
RUN = "ggspec.conformance.llama_run"
PROMPT = [1, 300, 17, 42, 280, 5, 99, 260, 3, 77, 150, 201, 8]


def _spec(**kw):
    base = dict(n_embd=256, n_head=4, n_head_kv=2, n_layer=1, n_ff=256, n_ctx_train=4096, seed=11)
    base.update(kw)
    return T.TinySpec(**base)


# name -> (writer, spec, imatrix, llama ftype or None, flags)
def cases():
    out = {}
    small = dict(n_embd=64, n_head=4, n_ff=128, n_layer=2)
    out["llama-f32-mha-none"] = ("llama", _spec(wtype="F32", n_head_kv=None, rope="none", **small), None, ["MHA"])
    out["llama-f16-gqa-yarn"] = ("llama", _spec(wtype="F16", rope="yarn", **small), None, ["GQA", "YaRN"])
    # original_context_length 4000 (not a multiple of 256): see OWN_RUNS
    out["llama-f16-mqa-longrope"] = ("llama", _spec(wtype="F16", n_head_kv=1, rope="longrope", rope_orig_ctx=4000,
                                                    **small), None, ["MQA", "LongRoPE"])
    out["llama-f16-gqa-ntk"] = ("llama", _spec(wtype="F16", rope="ntk", **small), None, ["GQA", "NTK"])
    out["llama-f16-gqa-linear"] = ("llama", _spec(wtype="F16", rope="linear", **small), None, ["GQA", "Linear"])
    out["llama-q4_k_m-gqa-llama3"] = ("llama", _spec(wtype="F32", rope="llama3"), "Q4_K_M", ["GQA", "Llama3", "Mix"])
    out["llama-tied-q8_0-gqa"] = ("llama-tied", _spec(wtype="Q8_0", rope="none"), None, ["TiedEmbeddings"])
    out["qwen2-q4_k_m-gqa"] = ("qwen2", _spec(wtype="F32", rope="none"), "Q4_K_M", ["Qwen2", "Biases", "Mix"])
    out["moe-q6_k-gqa"] = ("moe", _spec(wtype="Q6_K", rope="none", n_ff=256), None, ["MoE"])
    for w in ("BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "IQ4_NL", "IQ4_XS",
              "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "MXFP4"):
        # Q2_K with n_ff 512: ffn_down's rows are two Q2_K blocks, where the order of ggml's per-block
        # `sumf += dall*isum - dmin*summs` shows (one block: (0 + a) - b == a - b exactly)
        more = dict(n_ff=512) if w == "Q2_K" else {}
        name = f"llama-{w.lower()}-gqa"
        flags = [w] + (["TwoBlockRows"] if more else []) + (["ActivationTies"] if name in ACT_TIES else [])
        out[name] = ("llama-imx" if w.startswith("IQ1") or w in ("IQ2_XXS", "IQ2_XS") else "llama",
                     _spec(wtype=w, rope="none", **more), None, flags)
    # discriminating shapes (docs/vectors.md, mutation catalogue): head_dim 24, where 1.0f/sqrtf(24.0f)
    # differs from 1/sqrt(24) rounded once; n_ff 19 and 6 experts, not multiples of 4, so silu and the
    # router's softmax run their scalar libm tails; 3 of 6 experts with tied router rows (top-k order
    # of equal probabilities, a 3-term weight sum); runs with an F32 KV cache (flash attention casts
    # it to F16). F32 weights: no fp16 rounding of the activations hides a last-bit difference. One
    # head and a shorter prompt keep the file small.
    out["moe-f32-hd24-x6"] = ("moe-x6-ties", _spec(wtype="F32", rope="none", n_embd=24, n_head=1, n_head_kv=1,
                                                   n_ff=19), None,
                              ["MoE", "HeadDim24", "SoftmaxTail", "SiluTail", "RouterTies", "F32Cache"])
    # weights aligned with the embeddings (see _llama_aligned): integer block sums near their maximum,
    # so (float)sumi*dx is not exact and ggml's order of the scale products shows
    out["llama-q4_0-aligned"] = ("llama-aligned", _spec(wtype="Q4_0", rope="none", n_embd=64, n_ff=64,
                                                        n_extra_tokens=5), None, ["Q4_0", "AlignedWeights"])
    return out


CONTEXTS = [  # (suffix, ContextParams kwargs, n_predict, only these models or None)
    ("", dict(n_ctx=256), 8, None),
    ("-flash", dict(n_ctx=256, flash_attn=True), 4, None),
    ("-q8cache", dict(n_ctx=256, type_k="Q8_0"), 4, {"llama-q4_k_m-gqa-llama3", "qwen2-q4_k_m-gqa"}),
    ("-q8cache-flash", dict(n_ctx=256, type_k="Q8_0", type_v="Q8_0", flash_attn=True), 4,
     {"llama-q4_k_m-gqa-llama3", "moe-q6_k-gqa", "llama-tied-q8_0-gqa"}),
    ("-ubatch5", dict(n_ctx=256, n_batch=8, n_ubatch=5), 2, {"llama-f16-gqa-ntk", "llama-q5_k-gqa"}),
]


SHORT_PROMPT = [1, 300, 17, 42, 280, 5]
LONG_PROMPT = [1] + [(7 * i) % 317 + 3 for i in range(299)]   # 300 tokens, ids 3..319
ALIGNED_PROMPT = [1, 30, 17, 42, 200, 5]
# models with their own runs instead of CONTEXTS: name -> (prompt, [(suffix, ContextParams kwargs, n_predict)])
OWN_RUNS = {
    "moe-f32-hd24-x6": (SHORT_PROMPT, [
        ("", dict(n_ctx=256), 3),
        ("-flash", dict(n_ctx=256, flash_attn=True), 1),
        ("-f32cache", dict(n_ctx=256, type_k="F32", type_v="F32"), 1),
        ("-f32cache-flash", dict(n_ctx=256, type_k="F32", type_v="F32", flash_attn=True), 1),
    ]),
    # split-KV flash attention (one token, n_kv >= 512 cells) with n_threads 1 and n_threads_batch 2:
    # a 300-token prompt, then decode steps; the thread count of a decode step is n_threads, and
    # only the last rows are kept (logits_from)
    "llama-f32-mha-none": (PROMPT, [("", dict(n_ctx=256), 8), ("-flash", dict(n_ctx=256, flash_attn=True), 4),
                                    ("-flash-splitkv-t1b2", dict(n_ctx=512, flash_attn=True, n_threads=1,
                                                                 n_threads_batch=2), 3,
                                     {"prompt": LONG_PROMPT, "logits_from": len(LONG_PROMPT) - 1})]),
    "llama-q4_0-aligned": (ALIGNED_PROMPT, [("", dict(n_ctx=256), 2), ("-flash", dict(n_ctx=256, flash_attn=True), 1)]),
    # LongRoPE's long/short choice (llama_model::get_rope_factors: n_ctx_seq > hparams.n_ctx_orig_yarn):
    # n_ctx 3900 is padded to 4096 > 4000, the GGUF's original_context_length: long factors (3900 itself
    # is not > 4000), and the context's yarn_orig_ctx = 8000 does not move the choice (4096 < 8000)
    "llama-f16-mqa-longrope": (PROMPT, [("", dict(n_ctx=256), 8), ("-flash", dict(n_ctx=256, flash_attn=True), 4),
                                        ("-ctx3900-orig8000", dict(n_ctx=3900, yarn_orig_ctx=8000), 1)]),
}


def write_model(kind, spec, ftype, path: Path) -> None:
    if ftype:
        tmp = path.with_suffix(".src.gguf")
        _writer(kind)(spec, tmp)
        T.quantize_with_llama_cpp(tmp, path, ftype)
        tmp.unlink()
    else:
        _writer(kind)(spec, path)


def _writer(kind):
    if kind == "llama":
        return T.write_tiny_llama
    if kind == "llama-imx":
        return _llama_imatrix
    if kind == "llama-tied":
        return T.write_tiny_tied_llama
    if kind == "qwen2":
        return T.write_tiny_qwen2
    if kind == "moe":
        return T.write_tiny_moe
    if kind == "moe-x6-ties":
        return _moe_x6_ties
    if kind == "llama-aligned":
        return _llama_aligned
    raise ValueError(kind)


def _llama_aligned(spec, path):
    """write_tiny_llama with embeddings of random signs and every 2-D weight row the sign pattern of a
    prompt token's embedding times a random positive scale: the activations and weight levels of a
    block line up, so Q4_0's sumi reaches ~2^15. attn_output and ffn_down are scaled down so the last
    hidden state stays close to the token's embedding, lined up with output.weight too (the other
    mat-muls' last bits mostly vanish in the fp16 KV cache and the Q8_0 activations)."""
    orig = T.tiny_weights

    def aligned(sp):
        w = orig(sp)
        rng = np.random.default_rng(sp.seed + 404)
        emb = np.where(rng.random(w["token_embd.weight"].shape) < 0.5, -1.0, 1.0).astype(np.float32)
        w["token_embd.weight"] = emb
        for name, arr in w.items():
            if arr.ndim != 2 or name == "token_embd.weight":
                continue
            n_out, n_in = arr.shape
            src = np.asarray(ALIGNED_PROMPT)[np.arange(n_out) % len(ALIGNED_PROMPT)]
            rows = np.resize(emb[src], (n_out, n_in)) if n_in != emb.shape[1] else emb[src]
            g = (0.5 + rng.random((n_out, 1))) / np.sqrt(n_in)
            if name.endswith(("attn_output.weight", "ffn_down.weight")):
                g = g * 1e-3
            w[name] = (rows * g).astype(np.float32)
        return w
    T.tiny_weights = aligned
    try:
        return T.write_tiny_llama(spec, path)
    finally:
        T.tiny_weights = orig


# Activation ties (issue 15, docs/vectors.md "Third round"): in layer 0's attn_norm weight, the
# entries at two or more positions of TIE_TOKEN's first block are set so that TIE_TOKEN's input to
# the first mat-muls (rms_norm(embedding row) * attn_norm, the embedding as the model's type
# dequantizes it) holds exact values chosen for the activation quantization of those mat-muls:
# - "Q8_K": the block's largest value -127/16 (iscale = 16 exactly) and values 2.5/16, -2.5/16,
#   0.5/16 (iscale*x = 2.5, -2.5, 0.5: ties to even in nearest_int, away from zero in roundf);
# - "Q8_0": an amax A where A/127 and A*(1/127) are different floats, and an x whose x*(1/d) rounds
#   (roundf) differently with the two (found by scanning consecutive floats x).
# The rms_norm is computed here as ggml does (float squares, double sum, float mean, 1/sqrtf) to
# find the weights w with fl(u*w) == the target; the expected logits are the oracle's as always.
TIE_TOKEN = 300   # PROMPT[1]


def _ggml_rms_norm(x: np.ndarray, eps: float) -> np.ndarray:
    x = np.asarray(x, np.float32)
    acc = 0.0
    for v in (x * x).astype(np.float32):
        acc += float(v)
    mean = np.float32(acc / x.size)
    scale = np.float32(1.0) / np.sqrt(np.float32(mean + np.float32(eps)), dtype=np.float32)
    return (x * np.float32(scale)).astype(np.float32)


def _weight_for(u: np.float32, target: float):
    """the float32 w nearest target/u with fl(u*w) == target exactly (8 steps either way), or None"""
    w0 = np.float32(float(target) / float(u))
    down, up = [w0], [w0]
    for _ in range(8):
        down.append(np.nextafter(down[-1], np.float32(-np.inf)))
        up.append(np.nextafter(up[-1], np.float32(np.inf)))
    for w in [w0] + [v for pair in zip(down[1:], up[1:]) for v in pair]:
        if np.float32(u * w) == np.float32(target):
            return np.float32(w)
    return None


def _q8_0_recip_pair(lo: float):
    """(A, X): the first float A >= lo with A/127 != A*(1/127), and an X (0 < X < A/2) whose
    roundf(X*id) differs for the two d (id = 1.0f/d)"""
    def roundf(v):
        return float(np.floor(float(v) + 0.5))   # v > 0
    r = np.float32(1.0 / 127.0)
    a = np.float32(lo)
    while True:
        d1, d2 = np.float32(a / np.float32(127.0)), np.float32(a * r)
        if d1 != d2:
            id1, id2 = np.float32(1.0) / d1, np.float32(1.0) / d2
            for k in range(1, 63):
                x = np.float32((k + 0.5) / float(id1))
                for _ in range(4):
                    x = np.nextafter(x, np.float32(-np.inf))
                for _ in range(9):
                    if roundf(np.float32(x * id1)) != roundf(np.float32(x * id2)):
                        return a, x
                    x = np.nextafter(x, np.float32(np.inf))
        a = np.nextafter(a, np.float32(np.inf))


def _act_ties(spec, w, kind: str) -> None:
    emb = w["token_embd.weight"]
    raw = T._quantize(spec.wtype, emb[TIE_TOKEN:TIE_TOKEN + 1])
    row = libggml.load().to_float(spec.wtype, raw.tobytes(), emb.shape[1]) if spec.wtype != "F32" else emb[TIE_TOKEN]
    u = _ggml_rms_norm(row, spec.rms_eps)
    nw = w["blk.0.attn_norm.weight"]
    if kind == "Q8_K":
        targets = [-127.0 / 16, 2.5 / 16, -2.5 / 16, 0.5 / 16]
        blk = slice(0, 256)
    else:
        a, x = _q8_0_recip_pair(6.0)
        targets = [float(a), float(x)]
        blk = slice(0, 32)
    pos, j = [], blk.start
    for t in targets:
        while True:
            wt = _weight_for(u[j], t)
            j += 1
            if wt is not None:
                pos.append(j - 1)
                nw[j - 1] = wt
                break
    act = (u * nw).astype(np.float32)[blk]
    assert np.all(np.abs(np.delete(act, pos)) < abs(targets[0])), "a tie row's block maximum is not the target"
    assert [float(act[p]) for p in pos] == [float(np.float32(t)) for t in targets]


# name -> activation type whose ties TIE_TOKEN's first mat-mul input holds (see _act_ties)
ACT_TIES = {"llama-q2_k-gqa": "Q8_K", "llama-q4_0-gqa": "Q8_0"}


@contextlib.contextmanager
def _act_ties_patch(kind):
    """while writing a model of ACT_TIES: tiny_weights with _act_ties applied (no-op for kind None)"""
    if kind is None:
        yield
        return
    orig = T.tiny_weights

    def tied(sp):
        w = orig(sp)
        _act_ties(sp, w, kind)
        return w
    T.tiny_weights = tied
    try:
        yield
    finally:
        T.tiny_weights = orig


def _moe_x6_ties(spec, path):
    """write_tiny_moe with 6 experts, 3 used, and router rows 2 = 1 and 5 = 4 (equal logits, so equal
    probabilities: rows 1, 2 both go through ggml_v_expf, 4, 5 both through the libm tail)."""
    orig = T.tiny_weights_arch

    def tied(*a, **k):
        w = orig(*a, **k)
        for name, arr in w.items():
            if name.endswith("ffn_gate_inp.weight"):
                arr[2] = arr[1]
                arr[5] = arr[4]
        return w
    T.tiny_weights_arch = tied
    try:
        return T.write_tiny_moe(spec, path, n_expert=6, n_expert_used=3)
    finally:
        T.tiny_weights_arch = orig


def _llama_imatrix(spec, path):
    # i-quants that need an importance matrix: the tied-llama writer with imatrix=True (same graph as llama)
    return T.write_tiny_tied_llama(spec, path, imatrix=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    from ggspec.reference.llama import ContextParams

    out = Path(args.out) / "model" / "forward"
    out.mkdir(parents=True, exist_ok=True)
    P = portable.shared()
    only = {s for s in args.only.split(",") if s}
    manifest = []
    for name, (kind, spec, ftype, flags) in cases().items():
        if only and name not in only:
            continue
        gg = out / f"{name}.gguf"
        if gg.exists():
            gg.unlink()
        with _act_ties_patch(ACT_TIES.get(name)):
            write_model(kind, spec, ftype, gg)
        sha = hashlib.sha256(gg.read_bytes()).hexdigest()
        runs = []
        prompt, contexts = OWN_RUNS.get(name, (PROMPT, None))
        if contexts is None:
            contexts = [(suffix, kw, n_predict) for suffix, kw, n_predict, models in CONTEXTS
                        if models is None or name in models]
        for suffix, kw, n_predict, *extra in contexts:
            ex = extra[0] if extra else {}
            run_prompt, first = ex.get("prompt", prompt), ex.get("logits_from", 0)
            kw = dict(kw)
            threads = dict(n_threads=kw.pop("n_threads", 1), n_threads_batch=kw.pop("n_threads_batch", 1))
            cp = ContextParams(**threads, **kw)
            cp.validate()
            cpd = dataclasses.asdict(cp)
            logits, greedy = P.call(RUN, "run", str(gg), run_prompt, cpd, n_predict=n_predict)
            logits = np.asarray(logits, np.float32)
            nat, nat_greedy = llama_run.run(str(gg), run_prompt, cpd, n_predict=n_predict)
            with np.errstate(invalid="ignore"):
                native_abs = float(np.nanmax(np.abs(np.asarray(nat, np.float64) - logits)[first:]))
            logits = logits[first:]
            runs.append({"name": name + suffix, "context": cpd, "tokens": run_prompt, "n_predict": n_predict,
                         **({"logits_from": first} if first else {}),
                         "n_vocab": int(logits.shape[1]),
                         "logits_shape": list(logits.shape), "expected_logits_f32_hex": f32_to_hex(logits),
                         "greedy": greedy, "native_max_abs": native_abs, "native_greedy_same": nat_greedy == greedy})
        doc = {"schema": SCHEMA, "name": name, "model": gg.name, "model_sha256": sha, "architecture": kind,
               "weights": ftype or spec.wtype, "head_layout": f"{spec.n_head}/{spec.kv_heads}", "rope": spec.rope,
               "flags": flags, "runs": runs, "provenance": _provenance()}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        manifest.append({"name": name, "model": gg.name, "model_sha256": sha, "vectors": f"{name}.json",
                         "architecture": kind, "weights": ftype or spec.wtype, "rope": spec.rope, "flags": flags,
                         "native_max_abs": max(r["native_max_abs"] for r in runs)})
        print(f"{name}: {gg.stat().st_size} bytes, native max |diff| {manifest[-1]['native_max_abs']:.3g}",
              file=sys.stderr)
    man = out / "manifest.json"
    if only and man.exists():
        # --only into a directory that has a manifest: replace those entries, keep the others (cases() order)
        old = {c["name"]: c for c in json.loads(man.read_text())["cases"]}
        old.update({c["name"]: c for c in manifest})
        manifest = [old[n] for n in cases() if n in old]
    if not only or man.exists():
        man.write_text(json.dumps({"schema": SCHEMA, "provenance": _provenance(), "cases": manifest}, indent=1) + "\n")
    P.close()
    return 0


def _provenance() -> dict:
    return {"oracle": f"llama-cpp-python {libggml.ORACLE_VERSION}, portable build (no SIMD, no llamafile, no repack, "
                      "-ffp-contract=off)", "ggml": "0.25.3",
            "function": "llama_cpp.Llama(logits_all=True).eval(tokens), then one greedy token at a time",
            "generator": "vectors/generate_forward.py"}


if __name__ == "__main__":
    sys.exit(main())
