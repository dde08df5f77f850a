"""How ``data-select score``'s ``auto`` values resolve on the machine at hand."""

from __future__ import annotations

import torch

from data_selection.options.score import ScoreOptions  # noqa: F401  (its old import path, used by tests)
from data_selection.scoring import varlen


def resolve_dtype(dtype: str, device: str):
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


def resolve_attn(attn: str, device: str, dtype=None) -> str:
    """``--attn`` -> transformers' ``attn_implementation``: auto = FlashAttention-2 on a GPU when the flash-attn
    package runs there (proven on a tiny packed batch, :mod:`data_selection.scoring.kernel_proof`), else SDPA."""
    if attn == "fa2":
        return "flash_attention_2"
    if attn in ("sdpa", "eager"):
        return attn
    if device.startswith("cuda"):
        if varlen.kernel_available("flash_attn", device, dtype if dtype is not None else resolve_dtype("auto", device)):
            return "flash_attention_2"
    return "sdpa"
