"""Variable-length causal attention over packed rows, plugged into transformers' ``AttentionInterface``.

The scorer packs a batch's rows into one sequence (:mod:`data_selection.scoring.packing`): ``input_ids`` of
shape ``[1, T]``, position ids restarting at 0 for each row, and ``cu_seq_lens`` (the rows' cumulative
lengths). Each attention layer must then attend causally *within* each row only. The kernels, by preference:

``flash_attn_4``
    FlashAttention-4's ``flash_attn.cute.flash_attn_varlen_func`` (the ``flash-attn-4`` wheel: CuTe DSL, no
    compile; Hopper and Blackwell, bf16/fp16), when it imports.
``flash_attn``
    FlashAttention-2's ``flash_attn.flash_attn_varlen_func`` (the ``flash-attn`` package; CUDA sm80+,
    bf16/fp16), when it imports. Which of the two is installed is read from the functions themselves
    (:func:`data_selection.scoring.kernel_proof.flash_attention_import`): FA4 alone leaves ``flash_attn`` a
    namespace package that ``find_spec`` finds but that has no FA2.
``torch_varlen``
    PyTorch's own FlashAttention-2 varlen kernel, ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10,
    CUDA, sm80+, bf16/fp16; no flash-attn package needed). Its signature changed: 2.10 takes ``is_causal``; 2.11
    ``varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
    window_size=(-1, -1))`` (causal = ``window_size=(-1, 0)``) and no GQA, so K/V heads are expanded; 2.12 adds
    ``enable_gqa``, used where :func:`inspect.signature` shows it. It has no CPU kernel.

A fused kernel (the first three) is chosen only after it has run on a tiny packed batch on the model's device
and agreed with SDPA (:mod:`data_selection.scoring.kernel_proof`): an installed flash-attn that fails to import,
to load its CUDA kernels, or returns wrong numbers is passed over with one line saying why.
``sdpa_rows``
    ``scaled_dot_product_attention(is_causal=True)`` on each row's slice of the packed sequence: any device,
    any dtype, exact, no [T x T] mask; one call per row and layer.
``sdpa_mask``
    Not a kernel of ours: transformers' own handling of packed position ids with SDPA, a block-diagonal
    causal [T x T] mask. O(T²) memory; the test oracle of the three above.

Each of the first four is registered as a transformers attention function (``ds_varlen_<kernel>``) fed
``cu_seq_lens_q`` / ``max_length_q`` through the model's forward kwargs (transformers' ``FlashAttentionKwargs``);
:func:`packed_attention` switches a loaded model to it for the duration of a call. No attention mask is built
for these names (transformers skips mask creation for attention functions without a mask function).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from data_selection.scoring.kernel_proof import (
    FA2,
    FA4,
    MIN_CAPABILITY,
    flash_attention_import,
    proof_failure,
    say_once,
    varlen_function,
)

KERNELS = ("flash_attn_4", "flash_attn", "torch_varlen", "sdpa_rows")
FLASH = {FA4.kernel: FA4, FA2.kernel: FA2}
PACKED_MODES = (*KERNELS, "sdpa_mask")
HALF = (torch.bfloat16, torch.float16)


def _flash_attn_kernel(q, k, v, cu: torch.Tensor, max_len: int, scale: float) -> torch.Tensor:
    return varlen_function(FA2)(q, k, v, cu, cu, max_len, max_len, softmax_scale=scale, causal=True)


def _flash_attn_4_kernel(q, k, v, cu: torch.Tensor, max_len: int, scale: float) -> torch.Tensor:
    """FA4's varlen function by keyword (its positional order after max_seqlen_k is not FA2's); it returns
    ``(out, lse)``."""
    out = varlen_function(FA4)(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=max_len,
                               max_seqlen_k=max_len, softmax_scale=scale, causal=True)
    return out[0] if isinstance(out, tuple) else out


@functools.cache
def _torch_varlen_params() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn  # lazy: absent before torch 2.10

    return frozenset(inspect.signature(varlen_attn).parameters)


def torch_varlen_kwargs(params: frozenset[str], n_heads: int, n_kv_heads: int, scale: float, head_dim: int):
    """Keyword arguments for ``varlen_attn`` across torch versions, and whether K/V heads must be expanded.

    torch 2.10 takes ``is_causal``; 2.11+ ``window_size=(-1, 0)`` (causal); 2.12+ also ``enable_gqa`` (without
    it K/V heads are expanded). A scale other than the default 1/sqrt(head_dim) needs a ``scale`` parameter.
    """
    kw: dict = {}
    if "window_size" in params:
        kw["window_size"] = (-1, 0)
    elif "is_causal" in params:
        kw["is_causal"] = True
    else:
        raise RuntimeError("this torch's varlen_attn has neither window_size nor is_causal: cannot ask for causal")
    if "scale" in params:
        kw["scale"] = scale
    elif abs(scale - head_dim**-0.5) > 1e-12:
        raise RuntimeError(f"this torch's varlen_attn takes no scale and the model's is {scale} (not 1/sqrt(d))")
    expand = n_heads != n_kv_heads and "enable_gqa" not in params
    if n_heads != n_kv_heads and not expand:
        kw["enable_gqa"] = True
    return kw, expand


def _torch_varlen_kernel(q, k, v, cu: torch.Tensor, max_len: int, scale: float) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn  # lazy: absent before torch 2.10

    kw, expand = torch_varlen_kwargs(_torch_varlen_params(), q.shape[1], k.shape[1], scale, q.shape[2])
    if expand:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)


def _sdpa_rows_kernel(q, k, v, cu: torch.Tensor, max_len: int, scale: float) -> torch.Tensor:
    bounds = cu.tolist()  # a CPU tensor (see packing.PackedBatch.to): no device sync
    out = torch.empty_like(q)
    gqa = q.shape[1] != k.shape[1]
    for s, e in zip(bounds[:-1], bounds[1:]):
        # 4-D [1, H, n, D]: with 3-D inputs CPU SDPA falls back to its math kernel, an [H, n, n] matrix
        # (16 GB for a 16K-token row with 16 heads) instead of its flash kernel's tiles
        o = torch.nn.functional.scaled_dot_product_attention(
            q[None, s:e].transpose(1, 2), k[None, s:e].transpose(1, 2), v[None, s:e].transpose(1, 2),
            is_causal=True, scale=scale, enable_gqa=gqa,
        )
        out[s:e] = o[0].transpose(0, 1)
    return out


_KERNEL_FNS = {"flash_attn_4": _flash_attn_4_kernel, "flash_attn": _flash_attn_kernel,
               "torch_varlen": _torch_varlen_kernel, "sdpa_rows": _sdpa_rows_kernel}


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, sliding_window=None, softcap=None, *, kernel: str,
                             **kwargs):
    """A transformers attention function: ``query`` [1, Hq, T, D], ``key``/``value`` [1, Hkv, T, D] of one packed
    sequence -> ([1, T, Hq, D], None), causal within each row of ``kwargs["cu_seq_lens_q"]``."""
    cu, max_len = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if cu is None or max_len is None:
        raise ValueError("packed attention needs cu_seq_lens_q and max_length_q (see data_selection.scoring.packing)")
    if attention_mask is not None or query.shape[0] != 1:
        raise ValueError("packed attention takes one packed sequence and no attention mask")
    if sliding_window is not None or softcap is not None or (dropout and module.training):
        raise NotImplementedError("packed attention supports neither sliding windows, soft-capping nor dropout")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # [T, H, D]
    if kernel != "sdpa_rows":  # the flash kernels want the head dim contiguous and dense rows: one copy per layer
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = _KERNEL_FNS[kernel](q, k, v, cu, int(max_len), scale)
    return out.unsqueeze(0), None


def attn_name(kernel: str) -> str:
    return f"ds_varlen_{kernel}"


@functools.cache
def register() -> None:
    """Register the kernels with transformers (idempotent)."""
    from transformers import AttentionInterface  # lazy: transformers' import costs seconds

    for kernel in KERNELS:
        AttentionInterface.register(attn_name(kernel), functools.partial(varlen_attention_forward, kernel=kernel))


def kernel_supported(kernel: str, device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether ``kernel`` is meant to run for a model on ``device`` in ``dtype`` (installed, right hardware)."""
    device = torch.device(device)
    if kernel == "sdpa_rows":
        return True
    if device.type != "cuda" or dtype not in HALF:
        return False
    if kernel in FLASH:
        installed, _ = flash_attention_import(FLASH[kernel])
        return installed and torch.cuda.get_device_capability(device)[0] >= MIN_CAPABILITY[kernel]
    if kernel == "torch_varlen":
        if importlib.util.find_spec("torch.nn.attention.varlen") is None:
            return False
        flash_ok = getattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)()
        return flash_ok and torch.cuda.get_device_capability(device)[0] >= 8
    raise ValueError(f"unknown packed-attention kernel {kernel!r}")


def kernel_problem(kernel: str, device: torch.device | str, dtype: torch.dtype) -> str | None:
    """Why ``kernel`` cannot be used on ``device`` in ``dtype``; None when it is supported and has run, and agreed
    with SDPA, on a tiny packed batch there (:mod:`data_selection.scoring.kernel_proof`)."""
    if not kernel_supported(kernel, device, dtype):
        return f"{kernel} is not available on {device} in {str(dtype).replace('torch.', '')}"
    if kernel == "sdpa_rows":
        return None
    return proof_failure(f"scoring {kernel}", _KERNEL_FNS[kernel], device, dtype)


def kernel_available(kernel: str, device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether ``kernel`` runs, correctly, for a model on ``device`` in ``dtype``. A fused kernel that is installed
    but fails its proof is reported in one line on stderr."""
    problem = kernel_problem(kernel, device, dtype)
    if problem and kernel_supported(kernel, device, dtype):
        say_once(f"[data-select] packed attention: not using {kernel}: {problem}")
    return problem is None


def unsupported_reason(model) -> str | None:
    """Why this model cannot run packed (None when it can): attention features the varlen kernels lack."""
    cfg = model.config
    if "sliding_attention" in (getattr(cfg, "layer_types", None) or ()) or getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(cfg, "attn_logit_softcapping", None):
        return "attention logit soft-capping"
    can_set = getattr(model, "_can_set_attn_implementation", None)
    if can_set is not None and not can_set():
        return "its attention does not go through transformers' AttentionInterface"
    return None


NEEDS = {"flash_attn": " and FlashAttention-2 (the flash-attn package)",
         "flash_attn_4": " and FlashAttention-4 (the flash-attn-4 package, sm90/sm100)"}


def resolve_packing(mode: str, model) -> str:
    """``auto``/``off``/a kernel/``sdpa_mask`` -> the packed mode to run, or ``off`` (padded batches).

    ``auto``: the fastest exact path on the model's device: a flash varlen kernel on CUDA in bf16/fp16
    (FlashAttention-4, then FlashAttention-2, then torch's), else ``sdpa_rows`` (CPU, fp32, GPUs without FlashAttention-2);
    ``off`` for models packing does not support (sliding windows, soft-capped attention). An explicitly
    requested kernel that cannot run is an error, not a silent fallback.
    """
    if mode == "off":
        return "off"
    param = next(model.parameters())
    reason = unsupported_reason(model)
    if mode == "auto":
        if reason:
            return "off"
        return next(k for k in KERNELS if kernel_available(k, param.device, param.dtype))
    if mode not in PACKED_MODES:
        raise ValueError(f"unknown packing {mode!r}; choose from auto, off, {', '.join(PACKED_MODES)}")
    if reason:
        raise ValueError(f"packing={mode} is not possible for this model: {reason}; use packing=off")
    if mode in KERNELS and kernel_supported(mode, param.device, param.dtype):
        problem = kernel_problem(mode, param.device, param.dtype)
        if problem:
            raise ValueError(f"packing={mode}: {problem}. Use packing=auto (it falls back to the next kernel).")
    elif mode in KERNELS:
        raise ValueError(f"packing={mode} needs a CUDA GPU (sm80+), bf16/fp16 weights"
                         f"{NEEDS.get(mode, ' and torch >= 2.10')}; "
                         f"this model is on {param.device} in {param.dtype}. Use packing=auto.")
    return mode


@contextmanager
def packed_attention(model, mode: str) -> Iterator[None]:
    """Run ``model``'s attention with packed-mode ``mode`` inside the block (restored afterwards).

    ``sdpa_mask`` keeps the model's own sdpa/eager attention: transformers builds the block-diagonal mask from
    the restarting position ids itself.
    """
    if mode not in KERNELS:
        impl = model.config._attn_implementation
        if mode == "sdpa_mask" and impl not in ("sdpa", "eager"):
            raise ValueError(f"packing=sdpa_mask needs a model loaded with sdpa or eager attention, not {impl}")
        yield
        return
    register()
    old = model.config._attn_implementation
    model.config._attn_implementation = attn_name(mode)
    try:
        yield
    finally:
        model.config._attn_implementation = old
