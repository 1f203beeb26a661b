"""GPTQ checkpoints as AutoGPTQ / GPTQ-for-LLaMa write them (safetensors + quantize_config.json).

    m = read("llama-7b-gptq/")                # a directory (or one .safetensors file)
    m.config.bits, m.config.group_size, m.config.desc_act
    W = m.layers["model.layers.0.self_attn.q_proj"].dequantize()    # float32 (out_features, in_features)

Tensors of one quantized linear layer ``<prefix>``

| tensor            | dtype | shape                                      | content                              |
|-------------------|-------|--------------------------------------------|--------------------------------------|
| ``qweight``       | int32 | (in_features * bits / 32, out_features)    | q, packed along the *input* dim      |
| ``qzeros``        | int32 | (n_groups, out_features * bits / 32)       | zero points, packed along the output |
| ``scales``        | fp16  | (n_groups, out_features)                   | one scale per group and output       |
| ``g_idx``         | int32 | (in_features,)                             | group of each input row (optional)   |
| ``bias``          | fp16  | (out_features,)                            | optional                             |

Packing (bits = 2, 4, 8): an int32 holds 32/bits consecutive values, value k of the word in bits
``bits*k .. bits*k + bits-1`` (little end first). bits = 3: 32 values fill three int32 words, read as one
96-bit little-endian integer ``w0 | w1 << 32 | w2 << 64``; value k is bits ``3k .. 3k+2``, so values 10
and 21 straddle word boundaries. Values are unsigned ``0 .. 2**bits - 1``.

Groups: ``group_size`` consecutive input rows share a scale and zero (``-1``: one group for the whole
input, n_groups = 1). ``g_idx[i]`` is the group of input row i: ``i // group_size`` normally; with
act-order (``desc_act``) rows were quantized in a permuted order and g_idx is arbitrary. Without
``g_idx`` in the file, ``i // group_size`` is used.

Dequantize (float32; ``z_stored`` is the packed zero)

    z = z_stored + 1        for checkpoint_format "gptq" (the v1 convention: AutoGPTQ and
                            GPTQ-for-LLaMa store zero - 1; the default)
    z = z_stored            for checkpoint_format "gptq_v2"
    W[o, i] = float32(scales[g_idx[i], o]) * float32(q[i, o] - z[g_idx[i], o])   (one rounding)

(AutoGPTQ's torch fallback computes the same product in fp16 -- one more rounding, to fp16.)
``sym=True`` checkpoints store the same fields (z = 2**(bits-1) for every group).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import FormatError, GGSpecError, ShapeError

SUPPORTED_BITS = (2, 3, 4, 8)
f32 = np.float32


@dataclass
class GPTQConfig:
    bits: int = 4
    group_size: int = 128
    desc_act: bool = False
    sym: bool = True
    checkpoint_format: str = "gptq"
    raw: dict = field(default_factory=dict)

    @property
    def zero_offset(self) -> int:
        """What to add to a stored zero: 1 for the v1 "gptq" convention, 0 for "gptq_v2"."""
        return 0 if self.checkpoint_format == "gptq_v2" else 1

    @classmethod
    def from_dict(cls, d: dict, where: str = "quantize_config.json") -> "GPTQConfig":
        if not isinstance(d, dict):
            raise FormatError(f"{where}: expected a JSON object")
        if "quantization_config" in d and isinstance(d["quantization_config"], dict):
            d = d["quantization_config"]      # a transformers config.json
        try:
            bits = int(d.get("bits", d.get("w_bit", 4)))
            gs = int(d.get("group_size", d.get("q_group_size", 128)))
        except (TypeError, ValueError):
            raise FormatError(f"{where}: bits and group_size must be integers") from None
        if bits not in SUPPORTED_BITS:
            raise FormatError(f"{where}: bits = {bits} (GPTQ checkpoints use 2, 3, 4 or 8)")
        if gs != -1 and gs <= 0:
            raise FormatError(f"{where}: group_size = {gs} (a positive size or -1)")
        fmt = str(d.get("checkpoint_format", "gptq"))
        if fmt not in ("gptq", "gptq_v2"):
            raise FormatError(f"{where}: checkpoint_format {fmt!r} is not 'gptq' or 'gptq_v2'")
        return cls(bits, gs, bool(d.get("desc_act", False)), bool(d.get("sym", True)), fmt, dict(d))

    def to_dict(self) -> dict:
        d = dict(self.raw)
        d.update(bits=self.bits, group_size=self.group_size, desc_act=self.desc_act, sym=self.sym,
                 checkpoint_format=self.checkpoint_format, quant_method="gptq")
        return d


# --------------------------------------------------------------------------------------------------
# bit packing
# --------------------------------------------------------------------------------------------------

def _u32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32) if a.dtype == np.int32 else a.astype(np.uint32)


def unpack_rows(packed: np.ndarray, bits: int) -> np.ndarray:
    """Unpack int32 words along axis 0: (n * bits / 32, m) -> (n, m) unsigned values."""
    w = _u32(packed)
    if bits in (2, 4, 8):
        per = 32 // bits
        shifts = (np.arange(per, dtype=np.uint32) * bits)[None, :, None]
        v = (w[:, None, :] >> shifts) & np.uint32((1 << bits) - 1)
        return v.reshape(w.shape[0] * per, w.shape[1]).astype(np.int32)
    if bits == 3:
        if w.shape[0] % 3:
            raise ShapeError(f"3-bit data needs a multiple of 3 words along the packed axis, got {w.shape[0]}")
        g = w.reshape(-1, 3, w.shape[1]).astype(np.uint64)
        # value k of a 96-bit group: bits 3k..3k+2 of w0 | w1 << 32 | w2 << 64
        out = np.empty((g.shape[0], 32, w.shape[1]), dtype=np.int32)
        lo = g[:, 0] | (g[:, 1] << np.uint64(32))          # bits 0..63
        for k in range(32):
            b = 3 * k
            if b + 3 <= 64:
                v = (lo >> np.uint64(b)) & np.uint64(7)
            else:  # bits 63..65 (k = 21): one bit from w1, two from w2; k >= 22: w2 only
                hi_shift = b - 64
                if hi_shift < 0:
                    v = ((lo >> np.uint64(b)) | (g[:, 2] << np.uint64(64 - b))) & np.uint64(7)
                else:
                    v = (g[:, 2] >> np.uint64(hi_shift)) & np.uint64(7)
            out[:, k] = v.astype(np.int32)
        return out.reshape(-1, w.shape[1])
    raise ShapeError(f"unsupported bit width {bits}")


def pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of unpack_rows: (n, m) values 0..2**bits-1 -> int32 (n * bits / 32, m)."""
    v = np.asarray(values).astype(np.uint64)
    if v.shape[0] % 32:
        raise ShapeError(f"packing needs a multiple of 32 rows, got {v.shape[0]}")
    if (v >> np.uint64(bits)).any():
        raise ShapeError(f"values do not fit in {bits} bits")
    g = v.reshape(-1, 32, v.shape[1])
    big = np.zeros((g.shape[0], v.shape[1]), dtype=object)    # Python ints: 32*bits-bit little-endian groups
    for k in range(32):
        big = big | (g[:, k].astype(object) << (bits * k))
    words = bits                                # 32 values * bits bits = `bits` words of 32 bits
    out = np.empty((g.shape[0], words, v.shape[1]), dtype=np.uint32)
    for j in range(words):
        out[:, j] = ((big >> (32 * j)) & 0xFFFFFFFF).astype(np.uint64).astype(np.uint32)
    return out.reshape(-1, v.shape[1]).view(np.int32)


def unpack_cols(packed: np.ndarray, bits: int) -> np.ndarray:
    """Unpack along axis 1 (qzeros): (g, m * bits / 32) -> (g, m)."""
    return unpack_rows(np.ascontiguousarray(packed.T), bits).T


def pack_cols(values: np.ndarray, bits: int) -> np.ndarray:
    return np.ascontiguousarray(pack_rows(np.ascontiguousarray(np.asarray(values).T), bits).T)


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------

@dataclass
class GPTQLinear:
    prefix: str
    qweight: np.ndarray
    qzeros: np.ndarray
    scales: np.ndarray
    g_idx: Optional[np.ndarray]
    bias: Optional[np.ndarray]
    config: GPTQConfig

    @property
    def in_features(self) -> int:
        return self.qweight.shape[0] * 32 // self.config.bits

    @property
    def out_features(self) -> int:
        return self.qweight.shape[1]

    @property
    def n_groups(self) -> int:
        return self.scales.shape[0]

    def group_index(self) -> np.ndarray:
        if self.g_idx is not None:
            return self.g_idx.astype(np.int64)
        gs = self.config.group_size
        return np.arange(self.in_features) // (self.in_features if gs == -1 else gs)

    def validate(self) -> None:
        b, p = self.config.bits, self.prefix
        if self.qweight.dtype != np.int32 or self.qweight.ndim != 2:
            raise FormatError(f"{p}.qweight must be a 2-D int32 tensor, got {self.qweight.dtype} {self.qweight.shape}")
        if self.qzeros.dtype != np.int32 or self.qzeros.ndim != 2:
            raise FormatError(f"{p}.qzeros must be a 2-D int32 tensor, got {self.qzeros.dtype} {self.qzeros.shape}")
        if self.scales.ndim != 2 or self.scales.dtype.kind != "f":
            raise FormatError(f"{p}.scales must be a 2-D float tensor, got {self.scales.dtype} {self.scales.shape}")
        if (self.qweight.shape[0] * 32) % b or (b == 3 and self.qweight.shape[0] % 3):
            raise FormatError(f"{p}.qweight has {self.qweight.shape[0]} rows, not a whole number of {b}-bit packs")
        n_in, n_out = self.in_features, self.out_features
        if self.scales.shape[1] != n_out:
            raise FormatError(f"{p}.scales has {self.scales.shape[1]} columns, qweight has {n_out} outputs")
        if self.qzeros.shape[0] != self.n_groups or self.qzeros.shape[1] * 32 != n_out * b:
            raise FormatError(f"{p}.qzeros has shape {self.qzeros.shape}; expected ({self.n_groups}, "
                              f"{n_out * b / 32:g}) for {n_out} outputs at {b} bits")
        if b == 3 and self.qzeros.shape[1] % 3:
            raise FormatError(f"{p}.qzeros: 3-bit zeros need a multiple of 3 words per row")
        gs = self.config.group_size
        if self.g_idx is None:
            want = 1 if gs == -1 else -(-n_in // gs)
            if self.n_groups != want:
                raise FormatError(f"{p}: {self.n_groups} groups for {n_in} inputs at group_size {gs} (expected {want})")
        else:
            if self.g_idx.shape != (n_in,) or self.g_idx.dtype.kind not in "iu":
                raise FormatError(f"{p}.g_idx has shape {self.g_idx.shape} ({self.g_idx.dtype}); expected ({n_in},) int")
            if n_in and (self.g_idx.min() < 0 or self.g_idx.max() >= self.n_groups):
                raise FormatError(f"{p}.g_idx refers to groups outside 0..{self.n_groups - 1}")
        if self.bias is not None and self.bias.shape != (n_out,):
            raise FormatError(f"{p}.bias has shape {self.bias.shape}, expected ({n_out},)")

    def unpack(self) -> tuple[np.ndarray, np.ndarray]:
        """(q (in, out), zeros (n_groups, out)) as stored (zeros before the +1)."""
        return unpack_rows(self.qweight, self.config.bits), unpack_cols(self.qzeros, self.config.bits)

    def dequantize(self) -> np.ndarray:
        """float32 weight, shape (out_features, in_features) like torch's nn.Linear.weight."""
        q, z = self.unpack()
        g = self.group_index()
        z = z.astype(np.int64) + self.config.zero_offset
        s = self.scales.astype(f32)
        w = s[g] * (q.astype(np.int64) - z[g]).astype(f32)       # (in, out); one float32 rounding
        return np.ascontiguousarray(w.T)


@dataclass
class GPTQModel:
    config: GPTQConfig
    layers: dict
    tensors: dict          # everything else (embeddings, norms, lm_head, ...), numpy arrays
    path: Optional[Path] = None


def _load_safetensors(path: Path) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError as e:  # pragma: no cover
        raise GGSpecError("reading GPTQ checkpoints needs the safetensors package") from e
    try:
        return load_file(str(path))
    except Exception as e:      # SafetensorError, OSError, ...: the file is not readable safetensors
        raise FormatError(f"{path.name} is not a readable safetensors file: {e}", 0) from None


def read_config(path) -> GPTQConfig:
    path = Path(path)
    for name in ("quantize_config.json", "quant_config.json", "config.json"):
        p = path / name if path.is_dir() else path.with_name(name)
        if p.is_file():
            try:
                d = json.loads(p.read_text("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise FormatError(f"{p.name} is not valid JSON: {e}", 0) from None
            if name == "config.json" and "quantization_config" not in d:
                continue
            return GPTQConfig.from_dict(d, p.name)
    raise FormatError(f"no quantize_config.json next to {path}", None)


def from_tensors(tensors: dict, config: GPTQConfig, path=None) -> GPTQModel:
    layers, rest = {}, {}
    prefixes = sorted({k[:-len(".qweight")] for k in tensors if k.endswith(".qweight")})
    used = set()
    for p in prefixes:
        for part in ("qzeros", "scales"):
            if f"{p}.{part}" not in tensors:
                raise FormatError(f"{p}.qweight has no {p}.{part}")
        lin = GPTQLinear(p, tensors[f"{p}.qweight"], tensors[f"{p}.qzeros"], tensors[f"{p}.scales"],
                         tensors.get(f"{p}.g_idx"), tensors.get(f"{p}.bias"), config)
        lin.validate()
        layers[p] = lin
        used.update(f"{p}.{x}" for x in ("qweight", "qzeros", "scales", "g_idx", "bias"))
    for k, v in tensors.items():
        if k not in used:
            rest[k] = v
    if not layers:
        raise FormatError("no GPTQ layers (no *.qweight tensors) in the checkpoint")
    return GPTQModel(config, layers, rest, Path(path) if path else None)


def read(path) -> GPTQModel:
    """A GPTQ checkpoint: a directory with *.safetensors and quantize_config.json, or one file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FormatError(f"{path} has no .safetensors file")
    elif path.is_file():
        files = [path]
    else:
        raise GGSpecError(f"cannot open {path}: no such file or directory")
    tensors = {}
    for f in files:
        for k, v in _load_safetensors(f).items():
            if k in tensors:
                raise FormatError(f"tensor {k!r} appears in two files")
            tensors[k] = v
    return from_tensors(tensors, read_config(path), path)


# --------------------------------------------------------------------------------------------------
# a packer: round-to-nearest GPTQ-layout quantization (for tests and synthetic checkpoints)
# --------------------------------------------------------------------------------------------------

def quantize_linear(W: np.ndarray, bits: int = 4, group_size: int = 128, *, sym: bool = False,
                    g_idx: Optional[np.ndarray] = None, checkpoint_format: str = "gptq",
                    bias: Optional[np.ndarray] = None) -> dict:
    """Quantize W (out, in) float32 to the GPTQ tensors (no Hessian: plain min/max RTN per group, as
    GPTQ's ``Quantizer.find_params``). ``g_idx`` gives an act-order grouping; default i // group_size.
    Returns {"qweight", "qzeros", "scales", "g_idx"[, "bias"]} numpy arrays."""
    W = np.asarray(W, dtype=f32)
    n_out, n_in = W.shape
    if n_in % 32 or n_out % 32:
        raise ShapeError("in_features and out_features must be multiples of 32")
    gs = n_in if group_size == -1 else group_size
    if g_idx is None:
        g_idx = (np.arange(n_in) // gs).astype(np.int32)
    g_idx = np.asarray(g_idx, dtype=np.int32)
    n_groups = int(g_idx.max()) + 1
    maxq = (1 << bits) - 1
    scales = np.zeros((n_groups, n_out), dtype=np.float16)
    zeros = np.zeros((n_groups, n_out), dtype=np.int64)
    for gi in range(n_groups):
        cols = W[:, g_idx == gi]
        xmin = np.minimum(cols.min(axis=1, initial=0.0), 0)
        xmax = np.maximum(cols.max(axis=1, initial=0.0), 0)
        if sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            xmin = np.where(xmin < 0, -xmax, xmin)
        same = (xmin == 0) & (xmax == 0)
        xmin, xmax = np.where(same, -1, xmin), np.where(same, 1, xmax)
        s = ((xmax - xmin) / maxq).astype(np.float16)
        s = np.where(s == 0, np.float16(1e-3), s)
        scales[gi] = s
        zeros[gi] = np.full(n_out, (maxq + 1) // 2) if sym else np.clip(np.round(-xmin / s.astype(f32)), 0, maxq)
    if checkpoint_format != "gptq_v2":
        # the v1 convention stores zero - 1: a zero point of 0 cannot be stored (it would read back as
        # 2**bits); AutoGPTQ's packer writes -1 there. We use 1 instead (only all-non-negative groups).
        zeros = np.maximum(zeros, 1)
    sg = scales.astype(f32)[g_idx]                        # (in, out)
    q = np.clip(np.round(W.T / sg) + zeros[g_idx], 0, maxq).astype(np.int64)
    off = 0 if checkpoint_format == "gptq_v2" else 1
    stored_z = (zeros - off) & maxq                       # v1 stores zero - 1 (wrapping like the int packing)
    out = {"qweight": pack_rows(q, bits), "qzeros": pack_cols(stored_z, bits), "scales": scales, "g_idx": g_idx}
    if bias is not None:
        out["bias"] = np.asarray(bias, dtype=np.float16)
    return out


def save(directory, layers: dict, config: GPTQConfig, extra: Optional[dict] = None,
         filename: str = "model.safetensors") -> Path:
    """Write {prefix: quantize_linear(...)} (+ extra tensors) and quantize_config.json."""
    from safetensors.numpy import save_file
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"{p}.{k}": np.ascontiguousarray(v) for p, parts in layers.items() for k, v in parts.items()}
    tensors.update(extra or {})
    save_file(tensors, str(d / filename))
    (d / "quantize_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return d


__all__ = ["GPTQConfig", "GPTQLinear", "GPTQModel", "read", "read_config", "from_tensors", "unpack_rows",
           "pack_rows", "unpack_cols", "pack_cols", "quantize_linear", "save"]
