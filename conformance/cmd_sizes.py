"""``ggspec sizes``: predict model file sizes (and RAM) and check published tables.

    ggspec sizes --table shared/tables/llama2-70b-ggml.psv          # every row: predicted vs published
    ggspec sizes --arch llama-2-70b --mix q4_K_M --era ggmlv3       # one prediction, with the type mix
    ggspec sizes --arch llama-2-70b --gptq --bits 4 --group-size 128
    ggspec sizes --hf-config path/to/config.json --mix Q4_K_M --ram --n-ctx 4096
    ggspec sizes --bpw                                              # bits per weight of every type
    ggspec sizes --gguf model.gguf                  # per tensor: llama-quantize's type beside the file's
    ggspec sizes --gguf model.gguf --check-mix      # exit 1 if any tensor deviates from llama.cpp's mix
    ggspec sizes --gguf model.gguf --ram            # RAM from the file's actual tensor bytes
    ggspec sizes --hf-config config.json --mix IQ2_XS --ram --tokenizer tokenizer.json
    ggspec sizes --arch llama-2-70b --mix Q4_K_M --token-embedding-type Q8_0 --output-tensor-type Q8_0
Exit status 1 when a table row does not reproduce or (--check-mix) a tensor deviates; 2 when the
model is not modelled (the message names what is missing) or the input is bad.
"""

from __future__ import annotations

import dataclasses
import json

from tabulate import tabulate

from ..errors import GGSpecError
from ..reference.types import LIVE_TYPES
from . import sizes as S


def register(sub) -> None:
    p = sub.add_parser("sizes", help="predict model file sizes and RAM; check published size tables",
                       description="Exact file sizes of llama.cpp (ggmlv3, GGUF) and AutoGPTQ files from an "
                                   "architecture and a quant mix; --table checks every row of a published "
                                   "table (exit 1 if any row fails).")
    src = p.add_argument_group("what to size")
    src.add_argument("--table", action="append", default=[], metavar="PATH",
                     help="a published table (.psv, '#' header); repeatable")
    src.add_argument("--arch", default=None,
                     help="architecture preset (" + ", ".join(sorted(S.ARCHITECTURES)) + ")")
    src.add_argument("--hf-config", default=None, metavar="PATH", help="a Hugging Face config.json (or its folder)")
    src.add_argument("--gguf", default=None, metavar="PATH", help="take the architecture from a GGUF file's metadata")
    src.add_argument("--mix", default=None, help="quant mix, e.g. q4_K_M (default with --arch: every mix of the era)")
    src.add_argument("--era", default=None,
                     help="ggmlv3, gguf (today's llama.cpp rules) or gguf@YYYY-MM-DD (rules of that day); "
                          "with --table: overrides what the header says")
    src.add_argument("--imatrix", choices=("yes", "no"), default=None,
                     help="GGUF: whether an importance matrix was used (default: only where required; with "
                          "--gguf: what the file's quantize.imatrix.* keys say)")
    src.add_argument("--check-mix", action="store_true",
                     help="with --gguf: list the tensors whose type is not what llama-quantize gives them; exit 1 "
                          "if there is any")
    src.add_argument("--tokenizer", default=None, metavar="PATH",
                     help="with --hf-config: tokenizer.json, tokenizer.model or a GGUF to take the vocabulary "
                          "metadata from (exact metadata bytes)")
    src.add_argument("--all", action="store_true", help="with --gguf: list every tensor, not only the deviating ones")
    o = p.add_argument_group("llama-quantize overrides (same names and semantics)")
    o.add_argument("--token-embedding-type", default=None, metavar="TYPE")
    o.add_argument("--output-tensor-type", default=None, metavar="TYPE")
    o.add_argument("--tensor-type", action="append", default=[], metavar="PATTERN=TYPE",
                   help="regex (searched in the tensor name) = type; repeatable, the first match wins")
    o.add_argument("--pure", action="store_true", help="the mix's default type for every tensor")
    o.add_argument("--leave-output-tensor", action="store_true", help="output.weight keeps its source type")
    g = p.add_argument_group("GPTQ")
    g.add_argument("--gptq", action="store_true", help="size an AutoGPTQ safetensors file instead")
    g.add_argument("--bits", type=int, default=4)
    g.add_argument("--group-size", default="128", help="group size, or None / -1 for no grouping")
    g.add_argument("--act-order", choices=("yes", "no"), default="yes")
    g.add_argument("--inv-freq", choices=("yes", "no"), default=None,
                   help="rotary inv_freq buffers in the checkpoint (transformers <= 4.31); default: by architecture")
    r = p.add_argument_group("RAM")
    r.add_argument("--ram", action="store_true", help="also print the RAM estimate")
    r.add_argument("--n-ctx", type=int, default=4096)
    r.add_argument("--cache-type", default="f16")
    r.add_argument("--n-gpu-layers", type=int, default=0)
    r.add_argument("--repack", choices=("auto", "none", "avx2", "avx512"), default="auto",
                   help="which weight types the CPU backend repacks (an extra anonymous copy): this machine's "
                        "(auto), none, or those of an AVX2 / AVX-512 x86 CPU")
    r.add_argument("--no-mmap", action="store_true", help="RAM estimate without mmap")
    r.add_argument("--n-prompt", type=int, default=512, help="prompt tokens evaluated (--gguf / --hf-config; "
                   "default 512)")
    r.add_argument("--swa-full", choices=("yes", "no"), default="yes",
                   help="full-size SWA KV cache (llama_context_default_params / llama-cpp-python: yes; "
                        "llama.cpp's CLI tools: no)")
    p.add_argument("--bpw", action="store_true", help="print the bits per weight of every ggml type")
    p.add_argument("--collection", action="store_true",
                   help="the 2-bit collection: IQ2_XXS / IQ2_XS size and RAM (--n-ctx) of every model of its seed")
    p.add_argument("--breakdown", choices=("yes", "no"), default="yes", help="per-type breakdown under each row")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _arch(args) -> "S.LlamaArchitecture | None":
    if args.hf_config:
        return S.from_hf_config(args.hf_config)
    if args.gguf:
        return S.from_gguf(args.gguf)
    if args.arch:
        return S.get_architecture(args.arch)
    return None


def _imatrix(args):
    return None if args.imatrix is None else args.imatrix == "yes"


def _roles_text(roles: dict, era: str) -> str:
    names = S.GGMLV3_NAMES if era == "ggmlv3" else S.GGUF_NAMES
    parts = []
    for role, n in roles.items():
        short = names[role].replace("layers.{i}.", "").replace("blk.{i}.", "").replace(".weight", "")
        parts.append(f"{short} x{n}" if n > 1 else short)
    return ", ".join(parts)


def _breakdown_rows(breakdown: dict, era: str) -> list[list]:
    rows = []
    for ty, e in sorted(breakdown.items(), key=lambda kv: -kv[1]["bytes"]):
        if "roles" in e:
            bpw = S.bits_per_weight(ty)
            rows.append([ty, f"{float(bpw):g}", e["count"], f"{e['bytes']:,}", _roles_text(e["roles"], era)])
        else:
            rows.append([ty, "", e["count"], f"{e['bytes']:,}", ""])
    return rows


def _print_table_report(path: str, table: S.Table, arch: S.LlamaArchitecture, kind: str, results: list[dict],
                        show_breakdown: bool) -> None:
    print(f"{path}\n  {arch.describe()}\n  era: {kind}")
    rows = []
    for r in results:
        what = r.get("mix") or f"{r['bits']}-bit g{r['group_size'] or 'none'} act={'yes' if r['act_order'] else 'no'}"
        if "error" in r:
            rows.append([r["label"], what, "", "", r["published_gb"], "FAIL: " + r["error"], "", "", ""])
            continue
        row = [r["label"], what, f"{r['predicted_bytes']:,}", r["predicted_gb"], r["published_gb"],
               "pass" if r["ok"] else "FAIL"]
        if "published_ram_gb" in r:
            row += [r["predicted_ram_gb"], r["published_ram_gb"], "pass" if r["ram_ok"] else "FAIL"]
        else:
            row += ["", "", ""]
        rows.append(row)
    print(tabulate(rows, headers=["row", "mix", "predicted bytes", "pred GB", "published GB", "size",
                                  "pred RAM GB", "pub RAM GB", "RAM"], tablefmt="simple",
                   disable_numparse=True))
    if show_breakdown:
        for r in results:
            if "error" in r:
                continue
            print(f"\n  {r['label']}: {r['predicted_bytes']:,} bytes")
            print(_indent(tabulate(_breakdown_rows(r["breakdown"], kind),
                                   headers=["type", "bpw", "tensors", "bytes", "which tensors"], tablefmt="simple",
                   disable_numparse=True)))
    n_fail = sum(1 for r in results if not r["ok"] or r.get("ram_ok") is False)
    print(f"\n  {len(results)} rows: {len(results) - n_fail} pass, {n_fail} FAIL")


def _indent(text: str, n: int = 4) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def _jsonable(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        r = dict(r)
        bd = {}
        for ty, e in r.pop("breakdown").items():
            bd[ty] = {k: v for k, v in e.items()}
        r["breakdown"] = bd
        out.append(r)
    return out


def _overrides(args) -> "S.QuantOverrides":
    return S.QuantOverrides(imatrix=_imatrix(args), token_embedding_type=args.token_embedding_type,
                            output_tensor_type=args.output_tensor_type, tensor_types=tuple(args.tensor_type),
                            pure=args.pure, leave_output_tensor=args.leave_output_tensor)


def _repack(args):
    return {"auto": None, "none": (), "avx2": S.REPACK_AVX2, "avx512": S.REPACK_AVX512}[args.repack]


def run(args) -> int:
    try:
        return _run(args)
    except S.NotModelled as e:
        if args.json:
            print(json.dumps({"not_modelled": e.missing}))
        else:
            print(str(e))
        return 2


def _run(args) -> int:
    if args.collection:
        return _run_collection(args)
    if args.gguf and not args.gptq:
        return _run_gguf(args)
    if args.check_mix:
        raise GGSpecError("--check-mix needs --gguf FILE")
    if args.hf_config and not args.gptq and not args.table and args.era in (None, "gguf"):
        return _run_shape(args, S.shape_from_hf_config(args.hf_config))
    if args.bpw:
        rows = [[t.name, t.block_size, t.type_size, str(t.bpw), f"{float(t.bpw):g}"] for t in LIVE_TYPES]
        if args.json:
            print(json.dumps([dict(zip(("type", "block_size", "type_size", "bpw", "bpw_float"), r)) for r in rows],
                             indent=1))
        else:
            print(tabulate(rows, headers=["type", "block", "bytes", "bpw (exact)", "bpw"], tablefmt="simple",
                   disable_numparse=True))
        return 0

    if args.table:
        failed = False
        reports = []
        for path in args.table:
            table = S.read_table(path)
            arch = _arch(args) or S.table_architecture(table)
            kind = args.era or S.table_kind(table)
            results = S.evaluate_table(table, arch, kind)
            failed |= any(not r["ok"] or r.get("ram_ok") is False for r in results)
            if args.json:
                reports.append({"table": str(path), "architecture": arch.describe(), "era": kind,
                                "rows": _jsonable(results)})
            else:
                _print_table_report(path, table, arch, kind, results, args.breakdown == "yes")
        if args.json:
            print(json.dumps(reports, indent=1))
        return 1 if failed else 0

    arch = _arch(args)
    if arch is None:
        raise GGSpecError("give --table, or an architecture (--arch, --hf-config or --gguf), or --bpw")

    if args.gptq:
        gs = None if args.group_size.strip().lower() in ("none", "-1", "0") else int(args.group_size)
        inv = None if args.inv_freq is None else args.inv_freq == "yes"
        act = args.act_order == "yes"
        n = S.gptq_file_size(arch, args.bits, gs, act, inv_freq=inv)
        bd = S._gptq_breakdown(arch, args.bits, gs, act)
        if args.json:
            print(json.dumps({"architecture": arch.describe(), "format": "autogptq-safetensors", "bits": args.bits,
                              "group_size": gs, "act_order": act, "bytes": n, "gb": S.round_gb(n),
                              "breakdown": bd}, indent=1))
        else:
            print(f"{arch.describe()}\nAutoGPTQ {args.bits}-bit, group size {gs or 'none'}: {n:,} bytes "
                  f"({S.round_gb(n)} GB)")
            print(tabulate([[k, e["count"], f"{e['bytes']:,}"] for k, e in bd.items()],
                           headers=["tensor (dtype)", "count", "bytes"], tablefmt="simple",
                   disable_numparse=True))
        return 0

    era = args.era or "gguf"
    base, _ = S._rules_date(era)
    mixes = [args.mix] if args.mix else list(S.GGMLV3_MIXES if base == "ggmlv3" else
                                             [m for m in S.GGUF_MIXES if m not in ("MXFP4_MOE",)])
    results = []
    for mix in mixes:
        try:
            ov = _overrides(args)
            ov = None if ov.is_default else ov
            types = S.tensor_types(arch, mix, era, _imatrix(args), ov)
            n = S.ggml_file_size(arch, mix, era, imatrix=_imatrix(args), overrides=ov)
        except GGSpecError as e:
            if args.mix:
                raise
            if "did not exist" not in str(e):
                results.append({"mix": mix, "error": str(e)})
            continue
        weights = sum(e["bytes"] for e in S.mix_breakdown(types).values())
        r = {"mix": mix.upper(), "era": era, "bytes": n, "gb": S.round_gb(n),
             "bpw": round(8 * weights / arch.n_params, 4), "card_max_ram_gb": S.round_gb(S.card_max_ram(n)),
             "breakdown": S.mix_breakdown(types)}
        if args.ram:
            repack = {"auto": None, "none": (), "avx2": S.REPACK_AVX2, "avx512": S.REPACK_AVX512}[args.repack]
            r["ram"] = S.ram_estimate(arch, mix, era, args.n_ctx, args.cache_type, mmap=not args.no_mmap,
                                      overrides=ov, imatrix=_imatrix(args),
                                      n_gpu_layers=args.n_gpu_layers, repack=repack)
        results.append(r)
    if args.json:
        print(json.dumps({"architecture": arch.describe(), "n_params": arch.n_params, "results": results}, indent=1))
        return 0
    print(f"{arch.describe()} ({arch.n_params:,} parameters), era {era}")
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["mix"], "", "", "", r["error"]] + ([""] if args.ram else []))
            continue
        row = [r["mix"], f"{r['bytes']:,}", r["gb"], r["bpw"], r["card_max_ram_gb"]]
        if args.ram:
            row.append(f"{S.round_gb(r['ram']['total'])} (n_ctx {args.n_ctx})")
        rows.append(row)
    headers = ["mix", "bytes", "GB", "bpw (weights)", "card max RAM GB"] + (["RAM estimate GB"] if args.ram else [])
    print(tabulate(rows, headers=headers, tablefmt="simple",
                   disable_numparse=True))
    if args.mix and args.breakdown == "yes":
        r = results[0]
        print()
        print(tabulate(_breakdown_rows(r["breakdown"], S._rules_date(era)[0]),
                       headers=["type", "bpw", "tensors", "bytes", "which tensors"], tablefmt="simple",
                   disable_numparse=True))
        if "ram" in r:
            print()
            print(tabulate([[k, f"{v:,}", S.round_gb(v)] for k, v in r["ram"].items()],
                           headers=["RAM component", "bytes", "GB"], tablefmt="simple",
                   disable_numparse=True))
    return 0


def _ram_text(ram: dict, n_ctx: int) -> str:
    return (f"RAM estimate (CPU, {'mmap' if ram.get('reclaimable') else 'no mmap'}, n_ctx {n_ctx}): {ram['total']:,} bytes "
            f"({ram['total'] / 1e6:.1f} MB) = " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in ram.items()
                                                         if k not in ("total", "reclaimable")))


def _run_gguf(args) -> int:
    inv = S.read_inventory(args.gguf)
    ov = _overrides(args)
    r = S.predict_inventory(inv, args.mix, ov, _imatrix(args), args.era or "gguf")
    if args.ram:
        r["ram_n_ctx"] = args.n_ctx
        r["ram_estimate"] = S.ram_from_inventory(inv, args.n_ctx, args.cache_type, mmap=not args.no_mmap,
                                                 n_prompt=args.n_prompt, repack=_repack(args),
                                                 swa_full=args.swa_full == "yes")
    deviating = r["deviations"]
    if args.json:
        out = dict(r)
        if not args.all:
            out["rows"] = [x for x in out["rows"] if x["deviates"]] if args.check_mix else out["rows"]
        print(json.dumps(out, indent=1))
    else:
        print(f"{args.gguf}: {r['arch']}, {r['mix']}" + (" (imatrix)" if r["imatrix"] else "")
              + (f", rules of {r['era']}" if r["era"] != "gguf" else "")
              + (f", overrides {r['overrides']}" if {k for k in r['overrides'] if k != 'imatrix'} else ""))
        rows = r["rows"] if args.all else deviating
        if rows:
            print(tabulate([[x["name"], " x ".join(map(str, x["shape"])), x["actual"], x["predicted"],
                             f"{x['actual_bytes']:,}", f"{x['predicted_bytes']:,}", "DEVIATES" if x["deviates"] else ""]
                            for x in rows], headers=["tensor", "shape", "file", "llama-quantize", "file bytes",
                                                      "predicted bytes", ""], tablefmt="simple", disable_numparse=True))
        print(f"\n{len(r['rows'])} tensors, {len(deviating)} deviate from "
              + ("today's llama-quantize mix" if r["era"] == "gguf" else f"llama-quantize's mix of {r['era']}")
              + (" (a third-party quantizer, overrides, or another llama.cpp era)" if deviating else ""))
        print(f"predicted file size {r['predicted_file_size']:,} bytes, actual {r['actual_file_size']:,} "
              f"({r['difference']:+,})")
        if "ram_estimate" in r:
            print(_ram_text(r["ram_estimate"], args.n_ctx))
    return 1 if (args.check_mix and deviating) else 0


def _run_shape(args, shape: "S.ModelShape") -> int:
    ov = _overrides(args)
    era = args.era or "gguf"
    if era != "gguf":
        raise S.NotModelled(f"--era {era} for --hf-config of a {shape.arch} model: dated rules are transcribed for "
                            f"the Llama-2 shapes only (use --arch / a Llama-2 config, or today's rules)")
    meta = S.estimate_metadata(shape, args.tokenizer)
    mixes = [args.mix.upper()] if args.mix else [m for m in S.GGUF_MIXES if m not in ("MXFP4_MOE",)]
    tensors = shape.tensors()
    results = []
    for mix in mixes:
        base_mix, extra = S.published_mix(mix)
        ovm = ov if extra is None else dataclasses.replace(ov, token_embedding_type="Q8_0", output_tensor_type="Q8_0")
        try:
            types = S.predict_tensor_types(shape.arch, tensors, base_mix, _imatrix(args), ovm,
                                           hparams={"n_layer": shape.n_layer, "n_head": shape.n_head,
                                                    "n_head_kv": shape.n_head_kv, "n_expert": shape.n_expert})
        except S.NotModelled:
            raise
        except GGSpecError as e:
            if args.mix:
                raise
            results.append({"mix": mix, "error": str(e)})
            continue
        header = S.gguf_header_bytes(tensors, meta["kv_bytes"])
        data = sum(S._pad(S.tensor_nbytes(types[n], ne), 32) for n, ne, _ in tensors)
        n = header + data
        r = {"mix": mix, "bytes": n, "gb": S.round_gb(n), "metadata_bytes": meta["kv_bytes"],
             "metadata_exact": meta["exact"], "metadata_uncertainty": meta["uncertainty"],
             "bpw": round(8 * sum(S.tensor_nbytes(types[n], ne) for n, ne, _ in tensors) / shape.n_params, 4),
             "types": _count_types(types)}
        if args.ram:
            r["ram"] = S.ram_from_shape(shape, types, args.n_ctx, args.cache_type, header_bytes=header,
                                        mmap=not args.no_mmap, n_prompt=args.n_prompt, repack=_repack(args),
                                        swa_full=args.swa_full == "yes")
        results.append(r)
    if args.json:
        print(json.dumps({"architecture": shape.describe(), "n_params": shape.n_params, "metadata": meta,
                          "results": results}, indent=1))
        return 0
    print(f"{shape.describe()} ({shape.n_params:,} parameters), today's llama-quantize rules")
    if not meta["exact"]:
        print(f"metadata bytes estimated: {meta['kv_bytes']:,} (can be off by up to {meta['uncertainty']:,} bytes; "
              f"pass --tokenizer for the exact figure)")
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["mix"], "", "", "", r["error"]])
            continue
        row = [r["mix"], f"{r['bytes']:,}", r["gb"], r["bpw"], ", ".join(f"{k} x{v}" for k, v in r["types"].items())]
        if args.ram:
            row.append(f"{S.round_gb(r['ram']['total'])} (n_ctx {args.n_ctx})")
        rows.append(row)
    print(tabulate(rows, headers=["mix", "bytes", "GB", "bpw (weights)", "tensor types"]
                   + (["RAM estimate GB"] if args.ram else []), tablefmt="simple", disable_numparse=True))
    if args.mix and args.ram and "ram" in results[0]:
        print(_ram_text(results[0]["ram"], args.n_ctx))
    return 0


def _count_types(types: dict) -> dict:
    out: dict = {}
    for t in types.values():
        out[t] = out.get(t, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _run_collection(args) -> int:
    from .sizes.collection import collection_rows
    rows = collection_rows(args.n_ctx, args.n_prompt, repack=_repack(args) if args.repack != "auto" else ())
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    out = []
    for r in rows:
        if "IQ2_XXS" in r:
            out.append([r["model"], S.round_gb(r["IQ2_XXS"]["bytes"]), S.round_gb(r["IQ2_XXS"]["ram"]),
                        S.round_gb(r["IQ2_XS"]["bytes"]), S.round_gb(r["IQ2_XS"]["ram"]), r["shape_source"]])
        else:
            out.append([r["model"], "", "", "", "", r["shape_source"]])
    print(tabulate(out, headers=["model", "IQ2_XXS GB", f"RAM GB (n_ctx {args.n_ctx})", "IQ2_XS GB",
                                 f"RAM GB (n_ctx {args.n_ctx})", "shape"], tablefmt="simple", disable_numparse=True))
    return 0
