"""``ggspec convert MODEL.gguf OUT/ --to mlx-lm [--dtype float32|float16|bfloat16|q4|q8] [--json]``:
write a folder that ``mlx_lm.load(OUT)`` runs (config.json, safetensors weights under the Hugging Face
names, tokenizer.json rebuilt from the GGUF). Weights are dequantized exactly (``ggspec.accel.mlx_gguf``);
q4/q8 re-quantize with MLX's affine quantization and print the error this adds per tensor.
See docs/mlx.md."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert a GGUF model for mlx-lm", description=__doc__)
    p.add_argument("model", help="a .gguf file (llama, Mixtral-style MoE, qwen2)")
    p.add_argument("out", help="output folder (must not exist or be empty)")
    p.add_argument("--to", default="mlx-lm", choices=["mlx-lm"], help="target (default mlx-lm)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "q4", "q8"],
                   help="weight type written (default float32: exact)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the report)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _progress(i: int, n: int, name: str) -> None:
    sys.stderr.write(f"\r[{i}/{n}] {name[:60]:<60}")
    if i == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run(args) -> int:
    try:
        from ..accel import mlx_convert
    except ImportError as e:
        from ..errors import GGSpecError
        raise GGSpecError(f"convert needs mlx (pip install 'ggspec[mlx-lm]'): {e}") from None
    quiet = args.quiet or args.json or not sys.stderr.isatty()
    rep = mlx_convert.convert(args.model, args.out, to=args.to, dtype=args.dtype,
                              progress=None if quiet else _progress)
    if args.json:
        json.dump(rep.as_dict(), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(f"wrote {rep.out}: {rep.model_type}, {rep.n_tensors} tensors, {rep.n_bytes / 1e6:.1f} MB {rep.dtype}")
    print("files: " + ", ".join(rep.files))
    if rep.quant_error:
        from tabulate import tabulate
        rows = [(k, f"{v['max_abs']:.3e}", f"{v['rms']:.3e}") for k, v in rep.quant_error.items()]
        print(f"\nerror added by MLX {rep.dtype} ({rep.quant_error[next(iter(rep.quant_error))]['bits']}-bit affine, "
              f"group {rep.quant_error[next(iter(rep.quant_error))]['group_size']}) against the GGUF's values:")
        print(tabulate(rows, headers=["tensor", "max abs", "RMS"]))
    if rep.unreachable_pieces:
        u = rep.unreachable_pieces
        print(f"\ntokenizer: {len(u)} SentencePiece pieces cannot be produced by the rebuilt BPE (a half is a "
              f"character that is not a token): {', '.join(map(repr, u[:10]))}{', ...' if len(u) > 10 else ''}; "
              "text containing them tokenizes differently from llama.cpp")
    if rep.range_loss:
        print(f"\nvalues out of {rep.dtype}'s range (overflow to inf / underflow to 0):")
        for k, (o, u) in rep.range_loss.items():
            print(f"  {k}: {o} over, {u} under")
    return 0
