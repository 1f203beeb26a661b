"""The size model: bits per weight, exact file sizes and a RAM estimate for Llama-family models.

A model file is an *architecture* (tensor names and shapes) plus a *quant mix* (which ggml type each
tensor gets) laid out in a *container*.  All three are versioned:

* **ggmlv3** -- the ``ggjt`` version 3 ``.bin`` files of July/August 2023.  Container: llama.cpp's
  ``llama_file_saver``; mix: ``llama_model_quantize_internal`` as of llama.cpp commit
  ``097e121e2`` (2023-08-18, the last commit before GGUF); these rules did not change between
  ``bbef28218`` (2023-07-11) and GGUF (2023-08-21).
* **gguf** -- GGUF v3 (v2 is byte-identical for little-endian files; v1, August 2023, used 32-bit
  counts).  Mix: today's ``llama_tensor_get_type`` of the vendored llama.cpp (``src/llama-quant.cpp``
  of llama-cpp-python 0.3.36) by default, or the rules in force at a date (``era="gguf@2023-09-15"``):
  the quantization rules changed several times after August 2023 (see ``GGUF_RULE_CHANGES``).
* **gptq** -- AutoGPTQ safetensors (``gptq_file_size``).

Everything is exact integer arithmetic: no tolerances.  Published tables round to 10^9 bytes with two
decimals; a row reproduces when our byte count rounds to the published figure (``round_gb``).

The sources each rule follows are named next to it; ``docs/sizes.md`` explains the whole model.

The package is split along what it models:

* ``common``     bits per weight, tensor bytes, GB rounding;
* ``tokenizer``  vocabulary statistics (the bytes a tokenizer adds to a file);
* ``archs``      architectures and their tensor inventories (``ARCH_SPECS``: one declarative entry each);
* ``mixes``      the quantizer's mix rules per era, llama-quantize's overrides, ``predict_tensor_types``;
* ``layout``     file byte layouts (ggmlv3, GGUF, AutoGPTQ safetensors);
* ``inventory``  prediction from a GGUF's own tensor inventory, ``--check-mix``;
* ``ram``        the RAM estimate;
* ``tables``     published-table checking;
* ``collection`` the 2-bit collection (HF configs kept under ``conformance/data``).
"""

from __future__ import annotations

from .common import *  # noqa: F401,F403
from .tokenizer import *  # noqa: F401,F403
from .archs import *  # noqa: F401,F403
from .mixes import *  # noqa: F401,F403
from .mixes import (_FALLBACK_2023_10, _FALLBACK_2024_02, _FALLBACK_TODAY, _IQ2_FAMILY, _QuantState,  # noqa: F401
                    _ggmlv3_mix, _gguf_fallback, _gguf_impl_type, _gguf_mix, _rules_date, _since)
from .layout import *  # noqa: F401,F403
from .layout import _SAFETENSORS_DTYPE_ORDER, _pad  # noqa: F401
from .inventory import *  # noqa: F401,F403
from .ram import *  # noqa: F401,F403
from .ram import _pad_to  # noqa: F401
from .tables import *  # noqa: F401,F403
from .tables import _MONTHS, _gptq_breakdown, _preset_for, _published, _same_gb, _yes  # noqa: F401

__all__ = [
    "bits_per_weight", "tensor_nbytes", "round_gb", "TokenizerStats", "LLAMA_SPM", "Tensor", "LlamaArchitecture",
    "llama_architecture", "ARCHITECTURES", "get_architecture", "from_hf_config", "from_gguf", "FTYPES",
    "GGMLV3_MIXES", "GGUF_MIXES", "GGUF_RULE_CHANGES", "normalize_mix", "use_more_bits", "tensor_types",
    "mix_breakdown", "ggml_file_size", "ggmlv3_file_size", "gguf_file_size", "gguf_metadata", "KV",
    "gptq_tensors", "gptq_file_size", "safetensors_file_size", "autogptq_metadata", "card_max_ram",
    "kv_cache_bytes", "ram_estimate", "read_table", "evaluate_table", "table_architecture", "table_kind",
    "NotModelled", "QuantModel", "QuantOverrides", "predict_tensor_types", "today_tensor_types", "ModelShape",
    "ArchSpec", "ARCH_SPECS", "shape_from_hf_config", "read_inventory", "predict_inventory", "predict_file",
    "check_mix", "ram_from_inventory", "ram_from_shape", "estimate_metadata", "tokenizer_kv_bytes",
    "gguf_header_bytes", "published_mix",
]
