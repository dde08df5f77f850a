"""Choose a fused varlen attention kernel only once it has run, and agreed with SDPA, on a tiny packed batch.

A package that is installed is not a kernel that works: ``pip install flash-attn`` against a torch it was not
built for leaves a package that fails to import (``undefined symbol``), or imports and then fails to load its
CUDA kernels, or (a mismatched build) returns wrong numbers. ``find_spec`` sees none of that. So before the
scorer (:mod:`data_selection.scoring.varlen`) or padding-free training
(:mod:`llamafactory_ext.train.padding_free`) picks ``flash_attn`` or ``torch_varlen``, :func:`proof_failure`
runs the kernel on three packed rows (GQA heads, 64-dim) on the target device and dtype and compares it with
one causal SDPA call per row in float32. The verdict is cached per process; a rejected kernel is reported in
one line (:func:`say_once`) and the next kernel is tried.

Which FlashAttention is installed is read from the functions themselves (:func:`flash_attention`), never from
``find_spec("flash_attn")`` alone: FlashAttention-2 (``flash-attn``) is ``flash_attn.flash_attn_varlen_func``;
FlashAttention-4 (``flash-attn-4``, a pure-Python CuTe-DSL wheel for Hopper and Blackwell) installs only
``flash_attn/cute/``, so ``flash_attn`` is then a namespace package without FA2's function, and its varlen
kernel is ``flash_attn.cute.flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
max_seqlen_k, ..., softmax_scale=None, causal=False, ...)``, returning ``(out, lse)``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

LENGTHS = (5, 3, 8)  # three rows of one packed sequence; max length 8
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 64
# max |out - reference| allowed: bf16/fp16 attention outputs of unit-variance inputs are off by ~1e-2 at most;
# a kernel that ignores row boundaries, causality or the GQA head mapping is off by > 0.1
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 4e-2}

Kernel = Callable[..., torch.Tensor]  # (q, k, v [T, H, D], cu int32, max_len, scale) -> [T, Hq, D]
_VERDICTS: dict[tuple, str | None] = {}
_SAID: set[str] = set()


def tiny_packed_batch(device, dtype):
    g = torch.Generator().manual_seed(0)
    t = sum(LENGTHS)
    q, k, v = (torch.randn(t, h, HEAD_DIM, generator=g).to(device=device, dtype=dtype)
               for h in (HEADS, KV_HEADS, KV_HEADS))
    bounds = [0]
    for n in LENGTHS:
        bounds.append(bounds[-1] + n)
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)
    return q, k, v, cu, max(LENGTHS), HEAD_DIM**-0.5


def sdpa_reference(q, k, v, bounds: list[int], scale: float) -> torch.Tensor:
    """Causal attention within each row, in float32: one SDPA call per row (K/V heads expanded)."""
    rep = q.shape[1] // k.shape[1]
    q, k, v = q.float(), k.float().repeat_interleave(rep, dim=1), v.float().repeat_interleave(rep, dim=1)
    out = torch.empty_like(q)
    for s, e in zip(bounds[:-1], bounds[1:]):
        o = torch.nn.functional.scaled_dot_product_attention(
            q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), is_causal=True, scale=scale)
        out[s:e] = o.transpose(0, 1)
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_proof(name: str, kernel: Kernel, device, dtype) -> str | None:
    """Why ``kernel`` cannot be used on ``device`` in ``dtype`` (None when it runs and agrees with SDPA)."""
    device = torch.device(device)
    try:
        q, k, v, cu, max_len, scale = tiny_packed_batch(device, dtype)
        # no autograd, and no autocast (training's first forward may run under it): the reference stays fp32
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            out = kernel(q, k, v, cu, max_len, scale)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            ref = sdpa_reference(q, k, v, cu.tolist(), scale)
            if tuple(out.shape) != tuple(ref.shape):
                return f"{name} returned shape {tuple(out.shape)} for a {tuple(ref.shape)} packed batch"
            diff = float((out.float() - ref).abs().max())
    except Exception as err:  # an import error, a missing CUDA image, a launch failure: all mean "not this one"
        return f"{name} fails on a tiny packed batch ({_first_line(err)})"
    tol = TOLERANCE.get(dtype, 4e-2)
    if not diff <= tol:  # also catches NaN
        return f"{name} disagrees with SDPA on a tiny packed batch (max |diff| {diff:.3g} > {tol:g})"
    return None


def proof_failure(name: str, kernel: Kernel, device, dtype, impl: Hashable = None) -> str | None:
    """:func:`run_proof`, once per (name, device, dtype, impl) and process."""
    key = (name, str(torch.device(device)), dtype, impl)
    if key not in _VERDICTS:
        _VERDICTS[key] = run_proof(name, kernel, device, dtype)
    return _VERDICTS[key]


def say_once(line: str) -> None:
    """Print a fallback notice to stderr once per process (rank 0 only under torchrun)."""
    if line in _SAID or int(os.environ.get("RANK", 0)) != 0:
        return
    _SAID.add(line)
    print(line, file=sys.stderr, flush=True)


def forget() -> None:
    """Drop every cached verdict and notice (tests that swap kernels)."""
    _VERDICTS.clear()
    _SAID.clear()


# ------------------------------------------------------------------------------ which FlashAttention


@dataclass(frozen=True)
class FlashAttention:
    """One FlashAttention generation: its kernel name here, where its varlen function lives, its distribution."""

    kernel: str  # the packed-attention kernel name (scoring's --packing, padding_free_attention)
    label: str
    module: str
    dist: str
    gpus: str  # the GPUs it has kernels for


FA2 = FlashAttention("flash_attn", "FlashAttention-2", "flash_attn", "flash-attn", "sm80+ (Ampere and newer)")
FA4 = FlashAttention("flash_attn_4", "FlashAttention-4", "flash_attn.cute", "flash-attn-4",
                     "sm90/sm100 (Hopper, Blackwell)")
FLASH_ATTENTIONS = (FA4, FA2)  # by preference: FA4 is the faster where it has kernels
MIN_CAPABILITY = {FA2.kernel: 8, FA4.kernel: 9}


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def varlen_function(fa: FlashAttention) -> Callable:
    """``fa``'s ``flash_attn_varlen_func``, imported (raises whatever its import raises)."""
    module = importlib.import_module(fa.module)
    try:
        return module.flash_attn_varlen_func
    except AttributeError:
        raise ImportError(f"cannot import name 'flash_attn_varlen_func' from {fa.module!r}") from None


def _regular_package(name: str) -> bool:
    """Whether ``name`` is a package with its own ``__init__`` (not a namespace package), without importing it."""
    mod = sys.modules.get(name)
    if mod is not None:
        spec = getattr(mod, "__spec__", None)
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
    if spec is None:  # a module object made by hand (tests): a regular one
        return True
    return not (spec.origin in (None, "namespace") and spec.submodule_search_locations is not None)


def flash_attention_import(fa: FlashAttention) -> tuple[bool, str | None]:
    """(installed, why its varlen function does not import: None when it does).

    Installed means: the function imports, or the distribution is there, or (FA2) ``flash_attn`` has its own
    ``__init__`` (a build that fails to import). FA2 wheels also ship a ``flash_attn/cute`` directory without
    FA4's dependencies: that alone is not FA4.
    """
    try:
        varlen_function(fa)
        return True, None
    except Exception as err:  # not installed, an undefined symbol, a missing CuTe DSL: all mean "not this one"
        why = _first_line(err)
    installed = _dist_version(fa.dist) is not None or (fa is FA2 and _regular_package("flash_attn"))
    return installed, why if installed else None


def flash_attention_version(fa: FlashAttention) -> str | None:
    """The installed version of ``fa`` (its distribution's, else the module's ``__version__``)."""
    got = _dist_version(fa.dist)
    if got is None:
        mod = sys.modules.get(fa.module)
        got = getattr(mod, "__version__", None) if mod is not None else None
    return got
