"""RAM: what llama.cpp keeps resident while it runs a model on the CPU."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ...reference.types import QK_K, get_type
from .archs import LlamaArchitecture, Tensor
from .common import tensor_nbytes
from .layout import gguf_data_offsets, gguf_metadata
from .mixes import _rules_date, tensor_types

# ---------------------------------------------------------------------------------------------------
# RAM
# ---------------------------------------------------------------------------------------------------

# TheBloke's model cards (GGML and GGUF, 2023): "Max RAM required" = file size + 2.50 GB, every row
# (max_ram_gb - size_gb == 2.50 on all rows of the shared tables).  A card convention, not a measurement.
CARD_RAM_OVERHEAD_BYTES = 2_500_000_000


def card_max_ram(file_bytes: int) -> int:
    """The cards' "Max RAM required" rule: the file size plus a flat 2.5 GB (no GPU offloading)."""
    return file_bytes + CARD_RAM_OVERHEAD_BYTES


CACHE_TYPE_BYTES = {"f32": Fraction(4), "f16": Fraction(2), "bf16": Fraction(2), "q8_0": Fraction(34, 32),
                    "q4_0": Fraction(18, 32), "q4_1": Fraction(20, 32), "q5_0": Fraction(22, 32),
                    "q5_1": Fraction(24, 32), "iq4_nl": Fraction(18, 32)}


def kv_cache_bytes(arch: LlamaArchitecture, n_ctx: int, cache_type: str = "f16") -> int:
    """K and V caches: n_ctx x n_layer x 2 x n_head_kv x head_dim x bytes per element of the type.

    llama.cpp allocates the whole cache up front and clears it (``ggml_backend_buffer_clear``), so all
    of it is resident from the start.
    """
    per = CACHE_TYPE_BYTES[cache_type.lower()]
    return int(n_ctx * arch.n_layers * 2 * arch.n_embd_kv * per)


def _pad_to(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def compute_buffer_bytes(arch: LlamaArchitecture, n_kv: int, n_tokens: int, n_outputs: int = 1,
                         weight_types: "Iterable[str]" = ()) -> int:
    """The part of llama.cpp's CPU compute buffer a graph of ``n_tokens`` tokens attending ``n_kv``
    cache cells touches: the largest live set of the graph (ggml-alloc reuses memory between ops),
    plus the CPU backend's work buffer for the quantized activations.

    * attention (no flash attention): KQ [n_kv, n_tokens, n_head] f32 (soft_max runs in place), the
      f32 KQ mask [n_kv, n_tokens], and about eight n_embd-wide f32 activations (residual, norm, Q, K,
      V, roped Q/K, KQV);
    * FFN: gate, up and their SwiGLU product [n_ff, n_tokens] f32 (the fused GLU op does not run in
      place) and three n_embd-wide;
    * output: the logits [n_vocab, n_outputs] f32 and three n_embd-wide.
    Work buffer: the activations converted to the weights' ``vec_dot_type`` for the widest mat-mul
    input (Q8_K: 292/256 bytes per value; Q8_0: 34/32; F16: 2).
    """
    d, nt = arch.dim, n_tokens
    attn = 4 * (n_kv * nt * (arch.n_heads + 1) + 8 * d * nt)
    ffn = 4 * (3 * arch.ffn_dim * nt + 3 * d * nt)
    out = 4 * (arch.n_vocab * n_outputs + 3 * d * nt)
    per_value = Fraction(0)
    for ty in weight_types:
        t = get_type(ty)
        if t.family == "kquant" or ty.startswith(("IQ", "TQ")) and t.block_size == QK_K:
            per_value = max(per_value, Fraction(292, 256))
        elif t.family in ("legacy", "iquant", "fp4", "lowbit"):
            per_value = max(per_value, Fraction(34, 32))
        elif ty in ("F16", "BF16"):
            per_value = max(per_value, Fraction(2))
    work = int(max(arch.ffn_dim, arch.dim) * nt * per_value)
    return max(attn, ffn, out) + work


# CPU "repack" (ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type): on x86 with AVX2 the
# mat-mul weights of these types (rows a multiple of 8; not token_embd, which is read by get_rows) are
# copied into an interleaved layout in an anonymous CPU_REPACK buffer -- in addition to the mmapped file
# pages, which stay resident.  AVX-512 adds Q2_K.  (ARM NEON has its own list; pass ``repack=``.)
REPACK_AVX2 = ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4")
REPACK_AVX512 = REPACK_AVX2 + ("Q2_K",)


def host_repack_types() -> tuple[str, ...]:
    """The repacked types on this machine (x86 flags from /proc/cpuinfo; none elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ()
    if "avx512f" in flags and "avx2" in flags:
        return REPACK_AVX512
    if "avx2" in flags:
        return REPACK_AVX2
    return ()


# The fixed part of the peak RSS: the host process (for the validation harness: CPython with numpy
# and llama_cpp imported, ~42 MB) plus llama.cpp's own state that does not scale with the model
# (backend and thread pool, vocabulary maps for 32000 tokens, tensor and graph metadata, the code
# pages of libggml/libllama).  Measured: peak RSS of the smallest synthetic model (1 layer, dim 256)
# with no evaluation, minus its mapped tensor data and KV cache (docs/sizes.md, "RAM").
FIXED_OVERHEAD_BYTES = 52_000_000

# What the vocabulary costs in llama.cpp's memory (llama_vocab: id_to_token, token_to_id, the token-to-
# piece cache; the GGUF's string array in the loader's context): measured as the peak-RSS difference of
# two otherwise equal models with 32000 and 262144 SentencePiece tokens (48.06 MB / 230144 tokens), and of
# a 32000-token SentencePiece and a 32000-token BPE vocabulary with 31000 merges (bpe_ranks: 5.7 MB)
# (docs/sizes.md, "RAM for real files").  FIXED_OVERHEAD_BYTES was measured with 32000 SPM tokens.
VOCAB_BYTES_PER_TOKEN = 209
VOCAB_BYTES_PER_MERGE = 185


def overhead_bytes(n_vocab: int = 32000, n_merges: int = 0) -> int:
    """The fixed part of the peak RSS for a vocabulary of ``n_vocab`` tokens and ``n_merges`` BPE merges."""
    return FIXED_OVERHEAD_BYTES + VOCAB_BYTES_PER_TOKEN * (n_vocab - 32000) + VOCAB_BYTES_PER_MERGE * n_merges


def ram_estimate(arch: LlamaArchitecture, mix: str, era: str = "gguf", n_ctx: int = 4096,
                 cache_type: str = "f16", mmap: bool = True, n_gpu_layers: int = 0, *,
                 n_prompt: "int | None" = None, n_batch: int = 512, n_ubatch: int = 512, n_outputs: int = 1,
                 repack: "Sequence[str] | None" = None, overhead: "int | None" = None,
                 overrides=None, imatrix: "bool | None" = None) -> dict[str, int]:
    """Peak resident memory (bytes, by component) of llama.cpp running the model on the CPU.

    weights   with mmap the span of the file from the first to the last tensor read from the mapping
              (llama.cpp maps the file with MAP_POPULATE, so every page is resident, then unmaps the
              parts outside that span: the header, repacked or offloaded tensors at the ends); without
              mmap the data of those tensors, copied into anonymous memory.
    repack    the anonymous copies of the weights the CPU backend repacks (``repack``: the types; None =
              this machine's, see ``host_repack_types``).
    kv_cache  ``kv_cache_bytes`` of the layers kept on the CPU.
    compute   ``compute_buffer_bytes`` for the largest ubatch of a prompt of ``n_prompt`` tokens (None:
              ``n_ctx``, the worst case), attending at most ``n_ctx`` cells (padded to 256).
    overhead  ``FIXED_OVERHEAD_BYTES``.
    ``total`` is the sum (the peak RSS); ``reclaimable`` the part of it that is clean file pages.
    The estimate is checked against measured peak RSS in tests/test_sizes.py.
    """
    types = tensor_types(arch, mix, era, imatrix, overrides)
    repack_types = host_repack_types() if repack is None else tuple(repack)
    n_cpu_layers = arch.n_layers - min(max(n_gpu_layers, 0), arch.n_layers)
    offload_output = n_gpu_layers > arch.n_layers

    def on_cpu(t: Tensor) -> bool:
        if t.layer is not None:
            return t.layer < n_cpu_layers
        return not (offload_output and t.role in ("output", "output_norm"))

    def is_repacked(t: Tensor, ty: str) -> bool:
        return on_cpu(t) and ty in repack_types and t.n_dims == 2 and t.role != "token_embd" and t.ne[1] % 8 == 0

    repacked = sum(tensor_nbytes(ty, t.ne) for t, ty in types if is_repacked(t, ty))
    mapped = [(t, ty) for t, ty in types if on_cpu(t) and not is_repacked(t, ty)]
    if mmap and _rules_date(era)[0] == "gguf":
        # llama.cpp maps the file with MAP_POPULATE, then unmaps what lies outside the span of the
        # tensors it reads from the mapping (the header; repacked or offloaded tensors at the ends)
        from .mixes import published_mix
        offsets = gguf_data_offsets(types, gguf_metadata(arch, published_mix(mix)[0]))
        spans = [off for (t, ty), off in zip(types, offsets) if (t, ty) in set(mapped)]
        weights = (max(e for _, e in spans) - min(b for b, _ in spans)) if spans else 0
    else:
        weights = sum(tensor_nbytes(ty, t.ne) for t, ty in mapped)
    kv = kv_cache_bytes(arch, n_ctx, cache_type) * n_cpu_layers // arch.n_layers
    n_prompt = n_ctx if n_prompt is None else min(n_prompt, n_ctx)
    if n_prompt > 0:
        nt = min(n_ubatch, n_batch, n_prompt)
        n_kv = min(n_ctx, _pad_to(n_prompt, 256))
        compute = compute_buffer_bytes(arch, n_kv, nt, min(n_outputs, nt), {ty for _, ty in types})
    else:
        compute = 0
    if overhead is None:  # the fixed part, with the vocabulary's share (known BPE vocabularies: their merges)
        from .tokenizer import KNOWN_VOCAB_MERGES
        overhead = overhead_bytes(arch.n_vocab, KNOWN_VOCAB_MERGES.get(arch.n_vocab, 0))
    out = {"weights": weights, "repack": repacked, "kv_cache": kv, "compute": compute, "overhead": overhead}
    out["total"] = sum(out.values())
    # mmapped file pages are clean page cache: the kernel can drop them under memory pressure (and read
    # them again), so the memory a run *needs* is the total minus this
    out["reclaimable"] = weights if mmap else 0
    return out




# ---------------------------------------------------------------------------------------------------
# RAM of any modelled architecture: from a file's actual tensors, or from a shape and a predicted mix
# ---------------------------------------------------------------------------------------------------


def kv_cache_bytes_layers(n_ctx: int, layers: "Sequence[tuple[int, int, bool]]", cache_type: str = "f16", *,
                          n_swa: int = 0, swa_full: bool = True, n_ubatch: int = 512, n_seq: int = 1) -> int:
    """K and V caches of ``layers`` [(n_embd_k_gqa, n_embd_v_gqa, is_swa)].

    Non-SWA layers hold ``n_ctx`` cells.  SWA layers (llama-kv-cache-iswa.cpp) hold
    ``GGML_PAD(min(n_ctx, n_swa * n_seq + n_ubatch), 256)`` cells -- unless ``swa_full``, the default of
    ``llama_context_default_params`` (and so of llama-cpp-python), which gives them ``n_ctx`` cells too;
    llama.cpp's command-line tools default to ``--swa-full`` off."""
    per = CACHE_TYPE_BYTES[cache_type.lower()]
    size_swa = n_ctx if swa_full else min(_pad_to(min(n_ctx, n_swa * n_seq + n_ubatch), 256), _pad_to(n_ctx, 256))
    total = 0
    for k, v, swa in layers:
        cells = size_swa if (swa and n_swa) else n_ctx
        total += int(cells * (k + v) * per)
    return total


def _repackable(name: str, ne: Sequence[int], ty: str, repack_types: Sequence[str]) -> bool:
    """Weights the CPU backend copies into CPU_REPACK buffers: mat-mul (2-D) and expert (3-D) weights of
    a repacked type with ``ne[1] % 8 == 0``; never token_embd (read with get_rows)."""
    return (ty in repack_types and len(ne) in (2, 3) and ne[1] % 8 == 0 and name.endswith(".weight")
            and name not in ("token_embd.weight",) and "ffn_gate_inp" not in name)


def ram_from_tensors(tensors: "Sequence[tuple[str, tuple, str, int, int]]", kv: int, dims: Mapping, *,
                     n_ctx: int = 4096, mmap: bool = True, n_prompt: "int | None" = None, n_batch: int = 512,
                     n_ubatch: int = 512, n_outputs: int = 1, repack: "Sequence[str] | None" = None,
                     overhead: "int | None" = None) -> dict[str, int]:
    """The RAM estimate from tensors [(name, ne, type, start, end)] at their file offsets, the KV cache
    bytes and the graph dimensions ``dims`` (n_embd, n_head, n_ff -- per token, all experts used --,
    n_vocab).  Components as ``ram_estimate``."""
    repack_types = host_repack_types() if repack is None else tuple(repack)
    rep = [(n, ne, ty, s, e) for n, ne, ty, s, e in tensors if _repackable(n, ne, ty, repack_types)]
    rep_names = {r[0] for r in rep}
    mapped = [t for t in tensors if t[0] not in rep_names]
    if mmap:
        weights = (max(t[4] for t in mapped) - min(t[3] for t in mapped)) if mapped else 0
    else:
        weights = sum(t[4] - t[3] for t in mapped)
    repacked = sum(e - s for _, _, _, s, e in rep)
    n_prompt = n_ctx if n_prompt is None else min(n_prompt, n_ctx)
    if n_prompt > 0:
        from types import SimpleNamespace
        nt = min(n_ubatch, n_batch, n_prompt)
        n_kv = min(n_ctx, _pad_to(n_prompt, 256))
        a = SimpleNamespace(dim=dims["n_embd"], n_heads=dims["n_head"], ffn_dim=dims["n_ff"], n_vocab=dims["n_vocab"])
        compute = compute_buffer_bytes(a, n_kv, nt, min(n_outputs, nt), {t[2] for t in tensors})
    else:
        compute = 0
    if overhead is None:
        overhead = overhead_bytes(dims.get("n_tokens", dims["n_vocab"]), dims.get("n_merges", 0))
    out = {"weights": weights, "repack": repacked, "kv_cache": kv, "compute": compute, "overhead": overhead}
    out["total"] = sum(out.values())
    out["reclaimable"] = weights if mmap else 0
    return out


def _kv_layers_from_metadata(inv) -> "tuple[list, int]":
    from .archs import ARCH_SPECS
    from .mixes import NotModelled
    hp = inv.hparams()
    if "n_layer" not in hp or "n_head" not in hp:
        raise NotModelled("the KV cache: block_count / attention.head_count missing from the metadata")
    n_layer, n_embd = hp["n_layer"], int(inv.key("embedding_length"))
    heads = inv.key("attention.head_count")
    kvh = inv.key("attention.head_count_kv", heads)

    def at(v, i):
        return int(v[i]) if isinstance(v, (list, tuple)) else int(v)
    n_head0 = at(heads, 0)
    hk = int(inv.key("attention.key_length") or n_embd // n_head0)
    hv = int(inv.key("attention.value_length") or n_embd // n_head0)
    n_swa = int(inv.key("attention.sliding_window") or 0)
    spec = ARCH_SPECS[inv.arch]
    if inv.arch == "phi3":
        n_swa = 0  # models/phi3.cpp: "Phi SWA is currently disabled"
    if inv.arch == "gemma2" and not n_swa:
        n_swa = 4096
    pat = inv.key("attention.sliding_window_pattern", spec.swa_pattern)
    layers = []
    for il in range(n_layer):
        if isinstance(pat, (list, tuple)):
            swa = bool(pat[il])
        else:
            p = int(pat or 0)
            swa = bool(n_swa) and (p == 0 or il % p < p - 1)
        layers.append((hk * at(kvh, il), hv * at(kvh, il), swa))
    return layers, n_swa


def ram_from_inventory(inv, n_ctx: int = 4096, cache_type: str = "f16", *, types: "Mapping[str, str] | None" = None,
                       swa_full: bool = True, **kw) -> dict[str, int]:
    """Peak RSS of llama.cpp running a GGUF on the CPU, from the file's *actual* tensor bytes and offsets
    (``types``: predicted types instead, laid out as llama-quantize would), the KV cache of its
    architecture (GQA, SWA layers) and the compute buffer."""
    from .archs import arch_spec
    from .layout import _pad
    from .mixes import NotModelled
    if inv.arch is None:
        raise NotModelled("the architecture: the file has no general.architecture")
    arch_spec(inv.arch)
    if int(inv.metadata.get("split.count") or 1) > 1:
        raise NotModelled("the RAM of a split GGUF from one shard (the other shards' tensors are not in it)")
    if types is None:
        ts = [(t.name, t.ne, t.type, t.offset, t.offset + t.nbytes) for t in inv.tensors]
    else:
        pos, ts = inv.header_bytes_v3, []
        for t in inv.tensors:
            nb = tensor_nbytes(types[t.name], t.ne)
            ts.append((t.name, t.ne, types[t.name], pos, pos + nb))
            pos += _pad(nb, inv.alignment)
    layers, n_swa = _kv_layers_from_metadata(inv)
    kv = kv_cache_bytes_layers(n_ctx, layers, cache_type, n_swa=n_swa, swa_full=swa_full,
                               n_ubatch=kw.get("n_ubatch", 512))
    hp = inv.hparams()
    n_ff = inv.key("feed_forward_length")
    n_ff = max(n_ff) if isinstance(n_ff, (list, tuple)) else int(n_ff or 0)
    if hp.get("n_expert"):
        n_ff = int(inv.key("expert_feed_forward_length") or n_ff) * int(inv.key("expert_used_count") or 1)
    vocab = next((t.ne[1] for t in inv.tensors if t.name == "token_embd.weight"), 0)
    toks = inv.metadata.get("tokenizer.ggml.tokens")
    merges = inv.metadata.get("tokenizer.ggml.merges")
    dims = {"n_embd": int(inv.key("embedding_length")), "n_head": hp["n_head"], "n_ff": n_ff, "n_vocab": vocab,
            "n_tokens": len(toks) if toks is not None else vocab, "n_merges": len(merges) if merges is not None else 0}
    return ram_from_tensors(ts, kv, dims, n_ctx=n_ctx, **kw)


def ram_from_shape(shape, types: "Mapping[str, str]", n_ctx: int = 4096, cache_type: str = "f16", *,
                   header_bytes: int = 0, alignment: int = 32, swa_full: bool = True, **kw) -> dict[str, int]:
    """The RAM estimate for a ``ModelShape`` quantized to ``types`` ({name: type}), laid out in
    llama-quantize's order after ``header_bytes``."""
    from .layout import _pad
    from .mixes import weights_order
    inv = {n: ne for n, ne, _ in shape.tensors()}
    pos, ts = header_bytes, []
    for n in weights_order(inv):
        nb = tensor_nbytes(types[n], inv[n])
        ts.append((n, inv[n], types[n], pos, pos + nb))
        pos += _pad(nb, alignment)
    hd = shape.n_embd_head
    layers = [(hd * shape.n_head_kv, hd * shape.n_head_kv, shape.is_swa(il)) for il in range(shape.n_layer)]
    kv = kv_cache_bytes_layers(n_ctx, layers, cache_type, n_swa=shape.n_swa, swa_full=swa_full,
                               n_ubatch=kw.get("n_ubatch", 512))
    n_ff = shape.n_ff // 2 if shape.arch == "qwen" else shape.n_ff
    if shape.n_expert:
        n_ff *= max(1, shape.n_expert_used)
    # merges: a BPE vocabulary (any vocabulary over 32256 tokens, as estimate_metadata assumes) has about
    # as many merges as tokens
    dims = {"n_embd": shape.n_embd, "n_head": shape.n_head, "n_ff": n_ff, "n_vocab": shape.n_vocab,
            "n_merges": shape.n_vocab if shape.n_vocab > 32256 else 0}
    return ram_from_tensors(ts, kv, dims, n_ctx=n_ctx, **kw)
