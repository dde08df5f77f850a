"""Cumulative Gaussian checkpoints (TEMP's difficulty signal; docs/methods.md §3).

Checkpoint i = checkpoint i − 1 + a fresh increment of i.i.d. Gaussian noise on every non-embedding tensor.
Independent increments add in quadrature, so with a first step of σ1 = ``start`` and every later step of
Δ = √((end² − start²)/(num − 1)), checkpoint i carries noise of per-element standard deviation
σi = √(start² + (i − 1)Δ²): ``start`` … ``end`` (2e-3 … 8e-3 in the paper).

``scale``: **absolute** (the default, the official method: σ is the per-element standard deviation of the
noise itself, ``param += randn_like(param) * σ`` in hjenryin/TEMP-ICML's ``perturb_model_gaussian.py``; the
paper's "L2/√d" is that noise vector's own norm per √d) or **relative** (an option of this project: each
tensor's noise is σ times the tensor's root-mean-square value in θ0, so a LayerNorm gain of ~1 and a
projection of ~0.02 are disturbed alike). A tensor whose RMS is 0 receives no noise in relative mode.
"""

from __future__ import annotations

import math

import torch

from data_selection.command_line import UserError
from data_selection.options.perturb import OFFICIAL_SCALE as OFFICIAL_SCALE  # re-exported: the engine's name
from data_selection.options.perturb import SCALES
from data_selection.perturb.noise import standard_normal


def sigma_schedule(start: float, end: float, num: int) -> tuple[list[float], list[float]]:
    """(σ of each checkpoint, standard deviation of each checkpoint's increment), both relative or absolute."""
    if num < 1:
        raise UserError(f"--num must be at least 1, got {num}")
    if not (0 < start <= end):
        raise UserError(f"the noise schedule needs 0 < --start <= --end, got start={start}, end={end}")
    if num == 1:
        return [start], [start]
    delta2 = (end * end - start * start) / (num - 1)
    sigmas = [math.sqrt(start * start + i * delta2) for i in range(num)]
    return sigmas, [start] + [math.sqrt(delta2)] * (num - 1)


def tensor_scales(named, scale: str) -> dict[str, float]:
    """Per-tensor multiplier of σ: the tensor's RMS in θ0 (relative) or 1 (absolute), in float64."""
    if scale not in SCALES:
        raise UserError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if scale == "absolute":
        return {name: 1.0 for name, _ in named}
    return {name: float(t.detach().double().pow(2).mean().sqrt()) if t.numel() else 0.0 for name, t in named}


def increment(seed: int, checkpoint: int, name: str, chunk: int, n: int, std: float) -> torch.Tensor:
    """float32 increment of one chunk: N(0, 1) draws (float64) times ``std``, rounded once to float32."""
    return (standard_normal(seed, "gaussian", checkpoint, name, chunk, n) * std).to(torch.float32)
