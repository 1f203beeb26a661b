"""Generate ``vectors/mix/mix.json``: the mix suite (which ggml type llama-quantize gives each tensor).

    python -m ggspec.vectors.generate_mix [--out DIR]        # needs the oracle (llama-cpp-python 0.3.36)

The expected types come from llama.cpp itself: ``llama_quant_compute_types`` (src/llama-ext.h) on a
mock model made by ``llama_quant_model_from_metadata``, through ctypes, with
``llama_model_quantize_default_params`` plus the case's overrides (``token_embedding_type``,
``output_tensor_type``, ``pure``, ``tt_overrides`` = ``--tensor-type PATTERN=TYPE``). The tensor list
given to it (names and shapes of the 2-D weights, in GGUF order) is the architecture's inventory.

Not in the vectors: importance matrices (``llama_quant_compute_types`` resets ``has_imatrix`` to
false, so the oracle cannot be asked), and Q1_0 on rows that are not a multiple of 128 (llama.cpp
throws there, which ctypes cannot survive).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

ARCHS = ("llama-2-7b", "llama-2-70b", "mistral-7b", "codellama-34b", "odd-320", "odd-ff-1000",
         # appended later (earlier tcIds stay): tied embeddings, no output.weight -- token_embd takes the
         # output's rules (llama-quant.cpp's has_tied_embeddings, decided from the tensor names)
         "tied-1b", "tied-odd-320")
OVERRIDES = [
    ("Q4_K_M", {"token_embedding_type": "Q8_0", "output_tensor_type": "Q8_0"}),
    ("Q4_K_M", {"tensor_types": [["attn_v", "Q8_0"], ["ffn_down", "Q5_K"]]}),
    ("Q3_K_M", {"tensor_types": [["blk\\.[0-3]\\.", "Q6_K"], ["attn", "IQ4_XS"]]}),
    ("Q5_K_S", {"pure": True}),
    ("IQ4_XS", {"output_tensor_type": "Q6_K", "tensor_types": [["ffn_up", "Q4_0"]]}),
]


def model_desc(name: str) -> dict:
    from ggspec.conformance import sizes as S
    if name == "odd-320":
        arch = S.llama_architecture(320, 16, 5, 1, 960, 1000, name="odd-320")
    elif name == "tied-1b":         # the shape of Llama 3.2 1B (tie_word_embeddings)
        arch = S.llama_architecture(2048, 16, 32, 8, 8192, 128256, name="tied-1b", tied_embeddings=True)
    elif name == "tied-odd-320":    # tied, rows of 320: not a multiple of 256 (the output rule's Q8_0)
        arch = S.llama_architecture(320, 4, 5, 1, 960, 1000, name="tied-odd-320", tied_embeddings=True)
    elif name == "odd-ff-1000":    # ffn_down rows of 1000: not a multiple of 32 either (the F16 fallback)
        arch = S.llama_architecture(256, 2, 4, 2, 1000, 1000, name="odd-ff-1000")
    else:
        arch = S.ARCHITECTURES[name]
    tensors = [{"name": t.name("gguf"), "ne": list(t.ne)} for t in arch.tensors("gguf") if t.n_dims == 2]
    return {"name": name, "architecture": "llama", "n_embd": arch.dim, "n_ff": arch.ffn_dim,
            "n_layer": arch.n_layers, "n_head": arch.n_heads, "n_head_kv": arch.n_kv_heads,
            "n_embd_head": arch.n_embd_head, "n_vocab": arch.n_vocab, "tensors": tensors}


class _GGMLInitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class _QuantModelDesc(ctypes.Structure):
    _fields_ = [("architecture", ctypes.c_char_p)] + [(n, ctypes.c_uint32) for n in (
        "n_embd", "n_ff", "n_layer", "n_head", "n_head_kv", "n_expert", "n_embd_head_k", "n_embd_head_v")]


class _TensorOverride(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("type", ctypes.c_int)]


class Oracle:
    def __init__(self):
        import llama_cpp
        from llama_cpp import llama_cpp as lc
        libdir = Path(llama_cpp.__file__).parent / "lib"
        self.ggml = ggml = ctypes.CDLL(str(libdir / "libggml-base.so"))
        self.llama = llama = ctypes.CDLL(str(libdir / "libllama.so"))
        self.lc = lc
        sym = {"model": "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc",
               "init": "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params",
               "types": "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem",
               "free": "_Z16llama_quant_freeP19quantize_state_impl"}
        f = self.f = {k: getattr(llama, v) for k, v in sym.items()}
        f["model"].restype, f["model"].argtypes = ctypes.c_void_p, [ctypes.POINTER(_QuantModelDesc)]
        f["init"].restype = ctypes.c_void_p
        f["init"].argtypes = [ctypes.c_void_p, ctypes.POINTER(lc.llama_model_quantize_params)]
        f["types"].restype = None
        f["types"].argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_int), ctypes.c_size_t]
        f["free"].argtypes = [ctypes.c_void_p]
        llama.llama_model_free.argtypes = [ctypes.c_void_p]
        llama.llama_model_quantize_default_params.restype = lc.llama_model_quantize_params
        ggml.ggml_init.restype, ggml.ggml_init.argtypes = ctypes.c_void_p, [_GGMLInitParams]
        ggml.ggml_new_tensor.restype = ctypes.c_void_p
        ggml.ggml_new_tensor.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
        ggml.ggml_set_name.restype, ggml.ggml_set_name.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
        ggml.ggml_free.argtypes = [ctypes.c_void_p]

    def types(self, m: dict, ftype_id: int, overrides: dict) -> list:
        from ggspec.reference.types import get_type
        f, ggml, llama = self.f, self.ggml, self.llama
        d = _QuantModelDesc(m["architecture"].encode(), m["n_embd"], m["n_ff"], m["n_layer"], m["n_head"],
                            m["n_head_kv"], 0, m["n_embd_head"], m["n_embd_head"])
        model = f["model"](ctypes.byref(d))
        params = llama.llama_model_quantize_default_params()
        if "token_embedding_type" in overrides:
            params.token_embedding_type = get_type(overrides["token_embedding_type"]).id
        if "output_tensor_type" in overrides:
            params.output_tensor_type = get_type(overrides["output_tensor_type"]).id
        params.pure = bool(overrides.get("pure", False))
        keep = None
        if overrides.get("tensor_types"):
            tt = overrides["tensor_types"]
            keep = (_TensorOverride * (len(tt) + 1))(*[_TensorOverride(p.encode(), get_type(t).id) for p, t in tt],
                                                    _TensorOverride(None, 0))
            params.tt_overrides = ctypes.cast(keep, ctypes.POINTER(self.lc.llama_model_tensor_override))
        qs = f["init"](model, ctypes.byref(params))
        ctx = ggml.ggml_init(_GGMLInitParams(1 << 22, None, True))
        try:
            ptrs = []
            for t in m["tensors"]:
                ne = (ctypes.c_int64 * 2)(*t["ne"])
                p = ggml.ggml_new_tensor(ctx, 1, 2, ne)  # an F16 source, as a converter writes it
                ggml.ggml_set_name(p, t["name"].encode())
                ptrs.append(p)
            arr = (ctypes.c_void_p * len(ptrs))(*ptrs)
            out = (ctypes.c_int * len(ptrs))()
            f["types"](qs, ftype_id, arr, out, len(ptrs))
            return [get_type(int(x)).name for x in out]
        finally:
            ggml.ggml_free(ctx)
            f["free"](qs)
            llama.llama_model_free(model)
            del keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent), help="vectors directory (default: in place)")
    args = ap.parse_args(argv)
    from ggspec.conformance import libggml
    from ggspec.conformance import sizes as S
    if libggml.installed_version() != libggml.ORACLE_VERSION:
        raise SystemExit(f"needs {libggml.ORACLE_PACKAGE}=={libggml.ORACLE_VERSION}")
    oracle = Oracle()
    mixes = [m for m in S.FTYPES if m not in ("F32", "F16", "BF16")]
    groups, tc = [], 0
    for name in ARCHS:
        m = model_desc(name)
        tests = []
        cases = [(mix, {}) for mix in mixes] + OVERRIDES
        for mix, ov in cases:
            if mix == "Q1_0" and any(t["ne"][0] % 128 for t in m["tensors"]):
                continue
            tc += 1
            types = oracle.types(m, S.FTYPES[mix], ov)
            t = {"tcId": tc, "comment": f"{mix}" + (f" with {json.dumps(ov)}" if ov else ""),
                 "flags": ["Overrides"] if ov else ["Default"], "ftype": mix, "ftype_id": S.FTYPES[mix],
                 "imatrix": False, "overrides": ov, "expected": types}
            tests.append(t)
        groups.append({"model": m, "tests": tests})
    doc = {"schema": "ggspec-mix-vectors/1",
           "provenance": {"oracle": f"{libggml.ORACLE_PACKAGE} {libggml.ORACLE_VERSION}",
                          "function": "llama_quant_compute_types (llama-ext.h) on llama_quant_model_from_metadata",
                          "generator": "vectors/generate_mix.py"},
           "format": "expected[i] is the ggml type of model.tensors[i]; see conformance/suites/mix.py",
           "testGroups": groups}
    out = Path(args.out) / "mix"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mix.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {out / 'mix.json'}: {tc} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
