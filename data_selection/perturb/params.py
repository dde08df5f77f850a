"""Which parameters a perturbation touches, fp32 loading, content digests, and shape checks.

Embeddings (never perturbed by the Gaussian checkpoints): the weight of every ``nn.Embedding`` module, every
parameter whose name contains "embed" (the rule of the paper's code), and an output head that shares its
storage with the input embeddings (a tied head, as in Qwen2.5-3B and SmolLM2, *is* the embedding matrix;
``named_parameters()`` lists it once, under the embedding's name). An untied head (Qwen2.5-7B) is perturbed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from data_selection.command_line import UserError


def _config(path: str, trust_remote_code: bool):
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a model config from {path!r}: {err}") from err


def meta_shapes(path: str, trust_remote_code: bool = False) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the model at ``path``, from its config alone (no weights read)."""
    config = _config(path, trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def check_same_shape(base: dict[str, tuple], target: dict[str, tuple], base_path: str, target_path: str) -> None:
    """A clear error when two models do not have the same parameter names and shapes."""
    only_base = [n for n in base if n not in target]
    only_target = [n for n in target if n not in base]
    shape = [f"{n}: {base[n]} vs {target[n]}" for n in base if n in target and base[n] != target[n]]
    if not (only_base or only_target or shape):
        return
    parts = []
    if only_base:
        parts.append(f"{len(only_base)} parameter(s) only in {base_path} (e.g. {', '.join(only_base[:3])})")
    if only_target:
        parts.append(f"{len(only_target)} parameter(s) only in {target_path} (e.g. {', '.join(only_target[:3])})")
    if shape:
        parts.append(f"{len(shape)} shape mismatch(es) (e.g. {'; '.join(shape[:3])})")
    raise UserError(f"--target {target_path} is not a model of the same shape as --model {base_path}: "
                    + "; ".join(parts) + ". The direction θf − θ0 needs a fine-tune of the base model itself.")


def load_fp32(path: str, device: str = "cpu", trust_remote_code: bool = False):
    """The model at ``path`` in float32 on ``device``, inference only (the exact stored values for fp32/bf16
    checkpoints)."""
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load model weights from {path!r}: {err}") from err
    model.to(device).eval()
    model.requires_grad_(False)
    return model


def embedding_names(model) -> list[str]:
    """Names (as ``named_parameters()`` lists them) of the embedding parameters, tied heads included."""
    emb_ptrs = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if inp is not None and getattr(inp, "weight", None) is not None:
        emb_ptrs.add(inp.weight.data_ptr())
    return [n for n, p in model.named_parameters() if "embed" in n.lower() or p.data_ptr() in emb_ptrs]


def perturbed_parameters(model, kind: str) -> list[tuple[str, Any]]:
    """(name, parameter) pairs a perturbation of ``kind`` changes, in ``named_parameters()`` order.

    gaussian: everything but the embeddings; directional: everything (the direction spans all parameters).
    """
    skip = set(embedding_names(model)) if kind == "gaussian" else set()
    return [(n, p) for n, p in model.named_parameters() if n not in skip]


def params_digest(named) -> str:
    """BLAKE2b of names, shapes and fp32 bytes of ``(name, tensor)`` pairs: the content, not the file sizes."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in named:
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.numpy().data)
    return h.hexdigest()
