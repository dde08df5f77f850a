"""Padding-free batches: the same micro-batches as LLaMA-Factory's padded ones, without computing on padding.

LLaMA-Factory pads each micro-batch to its longest row (``per_device_train_batch_size: 2`` of a 3K and a 16K row
computes 32K positions for 19K tokens) and, without the flash-attn package, hands SDPA a 4-D mask, which rules out
its FlashAttention kernel: the masked kernel then computes the whole square, not the causal triangle.
``padding_free: true`` keeps LLaMA-Factory's data pipeline and collator and changes only the layout of each
collated micro-batch:

* :func:`flatten_padded_batch`: the rows of the padded ``[B, L]`` batch are concatenated into one ``[1, T]`` row
  (``T`` = real tokens), ``position_ids`` restart at 0 for every row, ``cu_seq_lens_q/k`` mark the row
  boundaries, and each row's first label is set to ``IGNORE_INDEX`` so that the last token of a row never
  predicts the first token of the next (in the padded batch that position predicts padding, also ignored);
* :func:`padding_free_attention`: a transformers attention function (registered as ``"padding_free"``) that
  attends within each row only, causally: FlashAttention-4's ``flash_attn.cute.flash_attn_varlen_func`` (Hopper,
  Blackwell) or FlashAttention-2's ``flash_attn.flash_attn_varlen_func`` when it imports and passes its proof,
  else PyTorch's own FlashAttention-2 varlen kernel ``torch.nn.attention.varlen.varlen_attn`` (PyTorch >= 2.10,
  CUDA, bf16/fp16), else one SDPA call per row with ``is_causal=True`` (no mask: SDPA's flash kernel on a GPU;
  the exactness reference on CPU).

Why the science is unchanged: the rows of every micro-batch and every optimizer step are LLaMA-Factory's own
(same sampler, same collator), RoPE sees the same positions, each token attends to exactly the tokens it
attended to before, and the loss counts the same label tokens: HF's ``num_items_in_batch`` is the number of
labels that are not ``IGNORE_INDEX``, which is unchanged as long as a row's first label was already ignored
(LLaMA-Factory masks the prompt; ``train_on_prompt`` is refused for that reason). Loss and gradients equal the
padded run up to float rounding (tests/llamafactory_ext/test_padding_free.py).

``llamafactory-cli train`` cannot use this: it re-executes itself under torchrun and its workers never see a
patch made by a wrapper, so recipes with ``padding_free: true`` are launched with ``llamafactory-ext train``.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch
from llamafactory.data import SFTDataCollatorWith4DAttentionMask
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.extras.logging import get_logger
from torch.utils.weak import WeakIdKeyDictionary
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from data_selection.scoring.kernel_proof import FA2, FA4, proof_failure, say_once, varlen_function

ATTENTION_NAME = "padding_free"
BACKENDS = ("auto", "flash_attn_4", "flash_attn", "torch_varlen", "sdpa")
FUSED = ("flash_attn_4", "flash_attn", "torch_varlen")  # auto's order of preference
_SEQ_KEYS = ("input_ids", "attention_mask", "labels", "position_ids")
# the kernel asked for, per process: set by use_padding_free_attention (kept out of the saved model config)
_REQUESTED = {"backend": "auto"}


def flatten_padded_batch(batch: dict[str, Any], ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """One ``[1, T]`` row holding the real tokens of every row of a padded ``[B, L]`` batch, with boundaries."""
    unknown = sorted(k for k in batch if k not in _SEQ_KEYS)
    if unknown:
        raise ValueError(f"padding_free handles text-only SFT batches; this batch also has {unknown}")
    input_ids, labels = batch["input_ids"], batch["labels"]
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    if mask.dim() != 2 or mask.shape != input_ids.shape:
        raise ValueError(f"padding_free needs a 2-D attention mask, got shape {tuple(mask.shape)}")
    if mask.max() > 1:
        raise ValueError("padding_free: the attention mask holds packed-sequence indices (neat_packing?)")
    keep = mask.bool()
    lengths = keep.sum(dim=1)
    first = keep.int().argmax(dim=1)
    last = keep.shape[1] - 1 - keep.flip(1).int().argmax(dim=1)
    if bool(((last - first + 1 != lengths) & (lengths > 0)).any()):
        raise ValueError("padding_free: a row's tokens are not contiguous (padding inside a row)")
    labels = labels.clone()
    rows = torch.arange(labels.shape[0])
    labels[rows[lengths > 0], first[lengths > 0]] = ignore_index  # nothing predicts a row's first token
    lengths = lengths[lengths > 0]
    cu_seq_lens = torch.zeros(lengths.numel() + 1, dtype=torch.int32)
    cu_seq_lens[1:] = torch.cumsum(lengths, 0)
    position_ids = torch.cat([torch.arange(int(n)) for n in lengths])[None]
    flat_ids = input_ids[keep][None]
    max_length = int(lengths.max()) if lengths.numel() else 0
    return {
        "input_ids": flat_ids,
        "attention_mask": torch.ones_like(flat_ids),  # all ones: HF's non-padding token count stays right
        "labels": labels[keep][None],
        "position_ids": position_ids,
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": max_length,
        "max_length_k": max_length,
    }


# --------------------------------------------------------------------------------------------- attention


@lru_cache(maxsize=1)
def _flash_attn_varlen():
    """FlashAttention-2's varlen function, or None (not installed, or built for another torch/CUDA)."""
    try:
        return varlen_function(FA2)
    except Exception:
        return None


@lru_cache(maxsize=1)
def _flash_attn_4_varlen():
    """FlashAttention-4's varlen function (``flash_attn.cute``), or None (not installed, or its CuTe DSL
    does not import)."""
    try:
        return varlen_function(FA4)
    except Exception:
        return None


def _call_flash_attn_4(q, k, v, cu, max_length, scaling):
    """FA4 by keyword (its positional order after max_seqlen_k is not FA2's); it returns ``(out, lse)``."""
    cu = cu.to(device=q.device, dtype=torch.int32)
    out = _flash_attn_4_varlen()(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=max_length,
                                 max_seqlen_k=max_length, softmax_scale=scaling, causal=True)
    return out[0] if isinstance(out, tuple) else out


@lru_cache(maxsize=1)
def _torch_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn  # lazy: absent before torch 2.10
    except ImportError:  # PyTorch < 2.10
        return None
    return varlen_attn


def _fused_ok(query: torch.Tensor) -> bool:
    return query.is_cuda and query.dtype in (torch.float16, torch.bfloat16)


def _kernel(name: str):
    """The fused kernel ``name`` as (q, k, v [T, H, D], cu, max_len, scale) -> out, for its proof."""
    if name == "flash_attn":
        fn = _flash_attn_varlen()
        return lambda q, k, v, cu, n, scale: fn(q, k, v, cu, cu, n, n, dropout_p=0.0, softmax_scale=scale,
                                                causal=True)  # fmt: skip
    if name == "flash_attn_4":
        return _call_flash_attn_4
    return lambda q, k, v, cu, n, scale: _call_torch_varlen(q, k, v, cu, n, scale)


def kernel_problem(name: str, device, dtype) -> str | None:
    """Why fused kernel ``name`` cannot be used on ``device`` in ``dtype`` (None: installed, and proven on a tiny
    packed batch against SDPA there, :mod:`data_selection.scoring.kernel_proof`)."""
    present = {"flash_attn": _flash_attn_varlen, "flash_attn_4": _flash_attn_4_varlen}.get(name, _torch_varlen)()
    if present is None:
        return "this torch has no torch.nn.attention.varlen" if name == "torch_varlen" else "not installed"
    return proof_failure(f"padding_free {name}", _kernel(name), device, dtype, impl=present)


def available_backend(query: torch.Tensor, requested: str = "auto") -> str:
    """The kernel a call will use: the requested one (an error if it cannot run here) or, for auto, the best
    fused kernel that is installed and has proven itself on a tiny packed batch (one line says why one is
    passed over), else SDPA per row."""
    if requested not in BACKENDS:
        raise ValueError(f"padding_free_attention must be one of {BACKENDS}, got {requested!r}")
    if requested == "sdpa":
        return "sdpa"
    candidates = FUSED if requested == "auto" else (requested,)
    for name in candidates:
        if not _fused_ok(query):
            why = f"needs CUDA bf16/fp16 tensors, got {query.device} {query.dtype}"
        else:
            why = kernel_problem(name, query.device, query.dtype)
            if why is None:
                return name
        if requested != "auto":
            raise RuntimeError(f"padding_free_attention={requested}: {why}")
        if why != "not installed" and _fused_ok(query):
            say_once(f"[llamafactory-ext] padding_free: not using {name}: {why}")
    return "sdpa"


# cu_seq_lens tensor -> its boundaries as Python ints: one host sync per micro-batch, not one per layer
_BOUNDARIES = WeakIdKeyDictionary()


def _boundaries(cu_seq_lens: torch.Tensor) -> list[int]:
    got = _BOUNDARIES.get(cu_seq_lens)
    if got is None:
        got = _BOUNDARIES[cu_seq_lens] = [int(x) for x in cu_seq_lens.tolist()]
    return got


def _sdpa_per_row(module, query, key, value, cu_seq_lens, dropout, scaling):
    bounds = _boundaries(cu_seq_lens)
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        out, _ = sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                                        value[:, :, start:end], None, dropout=dropout, scaling=scaling,
                                        is_causal=True)  # fmt: skip
        outs.append(out)
    return torch.cat(outs, dim=1)


def _call_torch_varlen(q, k, v, cu_seq_lens, max_length, scaling):
    """``varlen_attn`` across its signatures: (…, is_causal) in 2.10; window_size and scale in 2.11 (no GQA: K/V
    heads expanded); enable_gqa from 2.12."""
    fn = _torch_varlen()
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)  # causal
    elif "is_causal" in params:
        kwargs["is_causal"] = True
    else:
        raise RuntimeError("torch.nn.attention.varlen.varlen_attn: cannot request causal attention")
    if "scale" in params:
        kwargs["scale"] = scaling
    elif scaling is not None and abs(scaling - q.shape[-1] ** -0.5) > 1e-12:
        raise RuntimeError(
            "this varlen_attn has no `scale` argument and the model's scaling is not 1/sqrt(d)"
        )
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:  # expand K/V heads as transformers' repeat_kv does: query head i reads KV head i // groups
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    cu = cu_seq_lens.to(device=q.device, dtype=torch.int32)
    return fn(q, k, v, cu, cu, max_length, max_length, **kwargs)


def padding_free_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                           cu_seq_lens_q=None, max_length_q=None, **kwargs):  # fmt: skip
    """transformers attention function: causal attention within each row of a flattened batch.

    ``query`` is ``[1, heads, T, head_dim]`` (``key``/``value`` with the model's KV heads); returns
    ``([1, T, heads, head_dim], None)`` like every transformers attention function. Without ``cu_seq_lens_q``
    (an ordinary padded batch, e.g. in evaluation) it is plain SDPA with the mask transformers built.
    """
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)  # fmt: skip
    if query.shape[0] != 1:
        raise ValueError(f"padding_free expects one flattened row, got a batch of {query.shape[0]}")
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError("padding_free does not implement sliding-window attention")
    backend = available_backend(query, _REQUESTED["backend"]) if dropout == 0.0 else "sdpa"
    _note_backend(backend)
    if backend == "sdpa":
        return _sdpa_per_row(module, query, key, value, cu_seq_lens_q, dropout, scaling), None
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # [T, heads, head_dim]
    max_length = (
        int(max_length_q)
        if max_length_q is not None
        else max(b - a for a, b in zip(_boundaries(cu_seq_lens_q)[:-1], _boundaries(cu_seq_lens_q)[1:]))
    )
    if backend == "flash_attn":
        cu = cu_seq_lens_q.to(device=q.device, dtype=torch.int32)
        out = _flash_attn_varlen()(q, k, v, cu, cu, max_length, max_length, dropout_p=0.0,
                                   softmax_scale=scaling, causal=True)  # fmt: skip
    elif backend == "flash_attn_4":
        out = _call_flash_attn_4(q, k, v, cu_seq_lens_q, max_length, scaling)
    else:
        out = _call_torch_varlen(q, k, v, cu_seq_lens_q, max_length, scaling)
    return out[None], None


_USED: set[str] = set()


def _note_backend(name: str) -> None:
    if name not in _USED:
        _USED.add(name)
        get_logger("llamafactory.ext").info_rank0("padding_free: attention kernel %s", name)


def register_attention() -> None:
    """Make ``attn_implementation="padding_free"`` known to transformers (idempotent)."""
    AttentionInterface.register(ATTENTION_NAME, padding_free_attention)
    # Padded batches (no cu_seq_lens) get SDPA's mask; a flattened batch's all-ones mask is skipped by it.
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def use_padding_free_attention(model, backend: str = "auto"):
    """Switch a loaded transformers model to the padding-free attention function."""
    register_attention()
    if backend not in BACKENDS:
        raise ValueError(f"padding_free_attention must be one of {BACKENDS}, got {backend!r}")
    _REQUESTED["backend"] = backend
    model.set_attn_implementation(ATTENTION_NAME)
    return model


# ----------------------------------------------------------------------------------- LLaMA-Factory hook


class PaddingFreeSFTCollator(SFTDataCollatorWith4DAttentionMask):
    """LLaMA-Factory's SFT collator (padding, label masking, everything), then :func:`flatten_padded_batch`."""

    def __call__(self, features):
        return flatten_padded_batch(super().__call__(features))


@contextmanager
def installed(ext):
    """Route LLaMA-Factory's SFT workflow through padding-free batches for the duration of the block.

    Yields a dict whose ``models`` counter tells whether LLaMA-Factory really loaded a model through us.
    """
    if not ext.padding_free:
        yield None
        return
    from llamafactory.train.sft import workflow  # lazy: imports LLaMA-Factory's whole trainer stack

    original_collator, original_load = workflow.SFTDataCollatorWith4DAttentionMask, workflow.load_model
    state = {"models": 0}

    def load_model(*args, **kwargs):
        model = use_padding_free_attention(original_load(*args, **kwargs), ext.padding_free_attention)
        state["models"] += 1
        return model

    workflow.SFTDataCollatorWith4DAttentionMask, workflow.load_model = PaddingFreeSFTCollator, load_model
    try:
        yield state
    finally:
        workflow.SFTDataCollatorWith4DAttentionMask, workflow.load_model = original_collator, original_load
