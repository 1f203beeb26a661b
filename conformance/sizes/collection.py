"""The 2-bit collection: IQ2_XXS / IQ2_XS file size and RAM (n_ctx 4096) of every model in its seed.

The hyper-parameters come from public copies of the HF ``config.json`` files (no internet here except
package registries; copies were found in public GitHub sources).  Each entry names its source.  Where no
copy of a model's own config was found, the row is computed for the *base model's* shape that the
model's card names -- said so in the row (``shape_source``) -- or left empty with "config not found".
"""

from __future__ import annotations

from .archs import ModelShape, shape_from_hf_config

# Base-model configs (the values llama.cpp reads), each with where it was found.
BASE_CONFIGS: dict[str, dict] = {
    "llama-2-70b": {
        "config": {"architectures": ["LlamaForCausalLM"], "hidden_size": 8192, "intermediate_size": 28672,
                   "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
                   "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05},
        "source": "meta-llama/Llama-2-70b-hf config.json: a verbatim public copy in GitHub source (ggspec "
                  "find_string file id 7768956847, 'Llama_2_70b_hf'); equal to ggspec's llama-2-70b preset",
    },
    "codellama-70b": {
        "config": {"architectures": ["LlamaForCausalLM"], "hidden_size": 8192, "intermediate_size": 28672,
                   "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
                   "vocab_size": 32016, "max_position_embeddings": 16384, "rope_theta": 1000000.0},
        "source": "ggspec's codellama-70b preset (conformance/sizes/archs.py ARCHITECTURES: Meta's published "
                  "params, vocab 32016)",
    },
    "yi-34b": {
        "config": {"architectures": ["LlamaForCausalLM"], "hidden_size": 7168, "intermediate_size": 20480,
                   "num_attention_heads": 56, "num_hidden_layers": 60, "num_key_value_heads": 8,
                   "vocab_size": 64000, "max_position_embeddings": 4096},
        "source": "01-ai/Yi-34B config as quoted in public GitHub source (find_string id 55608441559, "
                  "'YI_34B_CONFIG'); Yi-1.5-34B's verbatim copy (id 7768956847) has the same shape",
    },
    "deepseek-llm-67b": {
        "config": {"architectures": ["LlamaForCausalLM"], "hidden_size": 8192, "intermediate_size": 22016,
                   "num_attention_heads": 64, "num_hidden_layers": 95, "num_key_value_heads": 8,
                   "vocab_size": 102400, "max_position_embeddings": 4096},
        "source": "layers 95, hidden 8192, 64 heads, 8 KV heads: deepseek-ai/deepseek-llm-67b-chat config.json as "
                  "quoted in a public review note (find_string id 68296221970, also arXiv:2401.02954); "
                  "intermediate_size 22016 and vocab 102400 only from a third-party table (id 56144638994) "
                  "that gets the KV heads wrong -- unverified",
    },
    "mixtral-8x7b": {
        "config": {"architectures": ["MixtralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
                   "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
                   "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000,
                   "max_position_embeddings": 32768, "rope_theta": 1000000.0},
        "source": "shape as in a public test fixture (find_string id 53077583450, 'mixtralJson'); vocab 32000, "
                  "context and rope_theta not in that copy -- unverified",
    },
}

# (name as in the seed, base shape or None, how the shape was chosen)
COLLECTION: list[tuple[str, "str | None", str]] = [
    ("Senku-70B", None, "config not found (a Miqu-70B fine-tune: rope_theta/context differ from Llama-2)"),
    ("Nous-Hermes2-70B", None, "config not found"),
    ("Miquliz-120B", None, "config not found (a frankenmerge: its layer count is in its config only)"),
    ("Tess-72B", None, "config not found"),
    ("WizardLM-70B", "llama-2-70b", "own config not found; Llama-2-70B shape (its card's base model), vocab "
                                    "of the fine-tune unverified"),
    ("Qwen1.5-72B", None, "config not found (Qwen2ForCausalLM, 80 layers: llama.cpp's LLM_TYPE_70B rule "
                          "applies)"),
    ("CausalLM-72B", None, "config not found"),
    ("Xwin-70B", "llama-2-70b", "own config not found; Llama-2-70B shape (its card's base model)"),
    ("Codellama-70B", "codellama-70b", "ggspec preset"),
    ("DeepMoney-67B", "deepseek-llm-67b", "own config not found; DeepSeek-LLM-67B shape (its card's base model)"),
    ("Deepseek-67B", "deepseek-llm-67b", "DeepSeek-LLM-67B (partly verified, see BASE_CONFIGS)"),
    ("DiscoLM-120B", None, "config not found (a frankenmerge)"),
    ("BigWeave-103B", None, "config not found (a frankenmerge)"),
    ("Saily-100B", None, "config not found (a frankenmerge)"),
    ("Nous-Hermes-34B", "yi-34b", "own config not found; Yi-34B shape (its card's base model), vocab of the "
                                  "fine-tune unverified"),
    ("Kafka-70B", "llama-2-70b", "own config not found; Llama-2-70B shape (its card's base model)"),
    ("Kafka-Mixtral", "mixtral-8x7b", "own config not found; Mixtral-8x7B shape (its card's base model)"),
    ("LongAlpaca-70B", "llama-2-70b", "own config not found; Llama-2-70B shape (the weights; its config adds "
                                      "linear rope scaling 8 = --compress-pos-emb 8, which changes no size)"),
    ("Mistral-Alpha-70B", None, "config not found"),
    ("MoMo-72B", None, "config not found"),
    ("Notux-Mixtral", "mixtral-8x7b", "own config not found; Mixtral-8x7B shape (its card's base model)"),
    ("Qwen-72B", None, "config not found (QWenLMHeadModel: fused QKV; modelled as 'qwen')"),
    ("Smaug-72B", None, "config not found"),
    ("Smaug-34B", "yi-34b", "own config not found; Yi-34B shape (its card's base model)"),
    ("Synthia-70B", "llama-2-70b", "own config not found; Llama-2-70B shape (its card's base model)"),
    ("Tess-M", None, "config not found (Yi-34B-200K based: context and rope_theta differ)"),
    ("Yarn-Llama2-70b-32k", "llama-2-70b", "own config not found; Llama-2-70B weights shape (YaRN factor 8 "
                                           "changes no size; KV cache at n_ctx 4096 as shown)"),
    ("Laser-Mistral", None, "config not found (which base -- 7B, 2x7B MoE -- the seed does not say)"),
]


def base_shape(key: str) -> ModelShape:
    return shape_from_hf_config(BASE_CONFIGS[key]["config"], name=key)


def collection_rows(n_ctx: int = 4096, n_prompt: int = 512, repack=()) -> list[dict]:
    """Every model of the seed: IQ2_XXS and IQ2_XS file bytes (imatrix, as llama-quantize requires) and the
    RAM estimate; empty figures where the config was not found."""
    from .layout import _pad, gguf_header_bytes
    from .mixes import predict_tensor_types
    from .ram import ram_from_shape
    from .common import tensor_nbytes
    from .tokenizer import estimate_metadata
    cache: dict = {}
    rows = []
    for name, base, how in COLLECTION:
        r = {"model": name, "base": base, "shape_source": how}
        if base is not None:
            if base not in cache:
                shape = base_shape(base)
                meta = estimate_metadata(shape)
                tensors = shape.tensors()
                out = {"describe": shape.describe(), "metadata_uncertainty": meta["uncertainty"]}
                header = gguf_header_bytes(tensors, meta["kv_bytes"])
                for mix in ("IQ2_XXS", "IQ2_XS"):
                    types = predict_tensor_types(shape.arch, tensors, mix, True, hparams={
                        "n_layer": shape.n_layer, "n_head": shape.n_head, "n_head_kv": shape.n_head_kv,
                        "n_expert": shape.n_expert})
                    size = header + sum(_pad(tensor_nbytes(types[n], ne), 32) for n, ne, _ in tensors)
                    ram = ram_from_shape(shape, types, n_ctx, header_bytes=header, n_prompt=n_prompt, repack=repack)
                    out[mix] = {"bytes": size, "ram": ram["total"]}
                cache[base] = out
            r.update(cache[base])
        rows.append(r)
    return rows
