"""Directional checkpoints along a fine-tuning direction (TEMP's diversity signal; docs/methods.md §3).

e = (θf − θ0)/‖θf − θ0‖₂ with one global norm over all parameters (embeddings included, as in the paper's
commands). Checkpoint j = checkpoint j − 1 + λj·(1 + ξj) ⊙ e, ξj ~ N(0, I) per coordinate, and the distance
‖θj − θ0‖ must grow linearly from ``min_radius`` to ``max_radius``.

λj is **solved exactly** for the noise actually drawn (**choice**): with wj = (1 + ξj) ⊙ e and the Gram
matrix G_ik = ⟨wi, wk⟩ (one pass over the model), ‖θj − θ0‖² = Σ_{i,k≤j} λiλk·G_ik, so each λj is the positive
root of G_jj·λ² + 2λ·Σ_{i<j} λi·G_ij − (rj² − r_{j−1}²) = 0. The paper's code uses the expectation instead
(E‖Σλi(1 + ξi)⊙e‖² = m² + Σλi², m = Σλi), which is right to about √(Σ e⁴) relative: close on a large model,
not on a small one. Both give the same radii in expectation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from data_selection.command_line import UserError
from data_selection.perturb.noise import chunks, parallel_map, standard_normal


def target_radii(min_radius: float, max_radius: float, num: int) -> list[float]:
    """r1 = min_radius … r_num = max_radius, equally spaced (a single checkpoint sits at max_radius)."""
    if num < 1:
        raise UserError(f"--num must be at least 1, got {num}")
    if not (0 < min_radius <= max_radius):
        raise UserError(f"the radii need 0 < --min-radius <= --max-radius, got {min_radius}, {max_radius}")
    if num == 1:
        return [float(max_radius)]
    return [min_radius + j * (max_radius - min_radius) / (num - 1) for j in range(num)]


def direction_norm(base: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> float:
    """‖θf − θ0‖₂ over every tensor (float64 sums)."""
    total = 0.0
    for name, t0 in base.items():
        total += float((target[name].double() - t0.double()).pow(2).sum())
    return math.sqrt(total)


def unit_direction(base: torch.Tensor, target: torch.Tensor, norm: float) -> torch.Tensor:
    """float32 e of one tensor: (θf − θ0)/norm computed in float64, rounded once."""
    return ((target.double() - base.double()) / norm).to(torch.float32)


def _w(seed: int, checkpoint: int, name: str, c: int, e64: torch.Tensor) -> torch.Tensor:
    return (1.0 + standard_normal(seed, "directional", checkpoint, name, c, e64.numel())) * e64


def gram_matrix(direction: dict[str, torch.Tensor], seed: int, num: int, threads: int) -> np.ndarray:
    """G_ik = Σ over all coordinates of (1 + ξi)e · (1 + ξk)e, for the draws the checkpoints will use."""

    def part(name: str, c: int, start: int, stop: int) -> np.ndarray:
        e64 = direction[name].reshape(-1)[start:stop].to("cpu", torch.float64)
        w = torch.stack([_w(seed, j, name, c, e64) for j in range(1, num + 1)])
        return (w @ w.T).numpy()

    tasks = [(name, c, a, b) for name, e in direction.items() for c, a, b in chunks(e.numel())]
    g = np.zeros((num, num))
    for p in parallel_map(part, tasks, threads):  # summed in task order: deterministic
        g += p
    return g


def solve_lambdas(gram: np.ndarray, radii: list[float]) -> list[float]:
    """Step sizes that put checkpoint j at distance radii[j] from θ0 exactly (see the module docstring)."""
    lambdas: list[float] = []
    prev = 0.0
    for j, r in enumerate(radii):
        a = float(gram[j, j])
        b = float(sum(lambdas[i] * gram[i, j] for i in range(j)))
        rhs = r * r - prev * prev
        if a <= 0:
            raise UserError("the direction has no length: the target model equals the base model")
        disc = math.sqrt(max(0.0, b * b + a * rhs))
        lam = rhs / (b + disc) if b + disc > 0 else 0.0  # the positive root, without cancellation
        lambdas.append(lam)
        prev = r
    return lambdas


def expected_lambdas(radii: list[float]) -> list[float]:
    """The paper code's λj from the expectation m² + Σλ² (for comparison in the manifest)."""
    out, m, prev = [], 0.0, 0.0
    for r in radii:
        lam = (-m + math.sqrt(m * m + 2.0 * (r * r - prev * prev))) / 2.0
        out.append(lam)
        m += lam
        prev = r
    return out


def increment(seed: int, checkpoint: int, name: str, chunk: int, e_chunk: torch.Tensor, lam: float) -> torch.Tensor:
    """float32 step of one chunk: λ·(1 + ξ)⊙e in float64, rounded once."""
    return (_w(seed, checkpoint, name, chunk, e_chunk.to("cpu", torch.float64)) * lam).to(torch.float32)
