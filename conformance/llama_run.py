"""Run llama.cpp (through llama-cpp-python) on a GGUF and return its logits -- the oracle side of the
forward pass. Meant to run inside the portable oracle's child process::

    from ggspec.conformance import portable, llama_run
    logits, greedy = portable.shared().call("ggspec.conformance.llama_run", "run",
                                            path, tokens, cp_dict, n_predict=32)

``cp_dict`` holds the fields of :class:`ggspec.reference.llama.ContextParams` (``asdict``). The
context is created exactly as ``llama_cpp.Llama(model_path, n_ctx=..., ...)`` does, with
``logits_all=True`` so every position's logits come back; tokens are evaluated with ``Llama.eval``
(batches of n_batch; llama_decode splits them into ubatches of n_ubatch); the greedy continuation
takes the argmax of the last row and evaluates it, one token at a time.
"""

from __future__ import annotations

import numpy as np

GGML_TYPE_IDS = {"F32": 0, "F16": 1, "Q8_0": 8}
ROPE_SCALING = {None: -1, "none": 0, "linear": 1, "yarn": 2, "longrope": 3}


def llama_kwargs(cp: dict) -> dict:
    kw = dict(n_ctx=int(cp["n_ctx"]), n_batch=int(cp["n_batch"]), n_ubatch=int(cp["n_ubatch"]),
              type_k=GGML_TYPE_IDS[cp["type_k"]], type_v=GGML_TYPE_IDS[cp["type_v"]],
              flash_attn=bool(cp["flash_attn"]), n_threads=int(cp["n_threads"]),
              n_threads_batch=int(cp["n_threads_batch"]), logits_all=True, verbose=False,
              rope_scaling_type=ROPE_SCALING[cp.get("rope_scaling_type")],
              rope_freq_base=float(cp.get("rope_freq_base", 0.0)),
              rope_freq_scale=float(cp.get("rope_freq_scale", 0.0)),
              yarn_orig_ctx=int(cp.get("yarn_orig_ctx", 0)))
    # llama-cpp-python turns 0.0 into "from the model" for these; negative = default as well
    for name in ("yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow"):
        v = float(cp.get(name, -1.0))
        kw[name] = v if v >= 0 else {"yarn_ext_factor": -1.0, "yarn_attn_factor": 1.0,
                                     "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0}[name]
    return kw


def run(path: str, tokens, cp: dict, n_predict: int = 0) -> "tuple[np.ndarray, list[int]]":
    """(logits float32 (len(tokens) + max(n_predict-1, 0), n_vocab), greedy continuation)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), **llama_kwargs(cp))
    try:
        toks = [int(t) for t in tokens]
        llm.eval(toks)
        rows = [np.array(llm.scores[:len(toks)], dtype=np.float32, copy=True)]
        out = []
        for i in range(n_predict):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(nxt)
            if i == n_predict - 1:
                break
            llm.eval([nxt])
            rows.append(np.array(llm.scores[llm.n_tokens - 1:llm.n_tokens], dtype=np.float32, copy=True))
        return np.concatenate(rows), out
    finally:
        llm.close()
