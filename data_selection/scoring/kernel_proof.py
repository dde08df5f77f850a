"""Choose a fused varlen attention kernel only once it has run, and agreed with SDPA, on a tiny packed batch.

A package that is installed is not a kernel that works: ``pip install flash-attn`` against a torch it was not
built for leaves a package that fails to import (``undefined symbol``), or imports and then fails to load its
CUDA kernels, or (a mismatched build) returns wrong numbers. ``find_spec`` sees none of that. So before the
scorer (:mod:`data_selection.scoring.varlen`) or padding-free training
(:mod:`llamafactory_ext.train.padding_free`) picks ``flash_attn`` or ``torch_varlen``, :func:`proof_failure`
runs the kernel on three packed rows (GQA heads, 64-dim) on the target device and dtype and compares it with
one causal SDPA call per row in float32. The verdict is cached per process; a rejected kernel is reported in
one line (:func:`say_once`) and the next kernel is tried.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable

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
    import os

    if line in _SAID or int(os.environ.get("RANK", 0)) != 0:
        return
    _SAID.add(line)
    print(line, file=sys.stderr, flush=True)


def forget() -> None:
    """Drop every cached verdict and notice (tests that swap kernels)."""
    _VERDICTS.clear()
    _SAID.clear()
