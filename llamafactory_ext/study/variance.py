"""Where the width of a paired difference's interval comes from: seeds, problems, their interaction, sampling.

The report's interval (:mod:`llamafactory_ext.study.stats`) is a crossed bootstrap of the replicate x problem
table of differences ``d[r, p] = y_a[r, p] - y_b[r, p]`` (an arm with one replicate is the same in every row).
Write ``d = m + a_r + b_p + c_rp`` (two-way decomposition: row effects, column effects, residual). For
multinomial replicate weights W and problem weights V the bootstrap variance of the mean difference is exactly

    Var* = mean(a²) / R  +  mean(b²) / P  +  mean(c²) / (R P)
           (seeds)          (problems)       (seed x problem)

(the cross terms vanish because a, b and c each sum to zero). Under the model
``d = δ + s_r + g_p + e_rp`` (seed effect of variance S2, a fixed per-problem difference G, per-cell noise E)
its expectation is

    E Var* = (R-1)/R (S2 + E/P) / R  +  (P-1)/P (G + E/R) / P  +  (R-1)(P-1)/(RP) E / (RP)

which :mod:`llamafactory_ext.study.power` projects to other numbers of problems, seeds and samples. E holds the
within-problem sampling noise when answers are sampled: a problem's score is the mean of k samples, whose
variance is estimated per cell by p̂(1 - p̂)/(k - 1); its share of Var* is reported as ``sampling``. The problem
draw already carries that noise (a drawn problem brings its k samples), so the bootstrap does not resample the
samples again: that would count it twice (two-stage bootstrap: resample the first stage only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Components:
    """Var* of one paired difference, split as above (in points²), plus the table's shape."""

    seeds: float
    problems: float
    interaction: float
    sampling: float  # the part of the three above that within-problem sampling is expected to contribute
    replicates: int
    n_problems: int
    samples: int
    cell_sampling_var: float  # mean per-cell sampling variance of the difference (points², at `samples`)

    @property
    def total(self) -> float:
        return self.seeds + self.problems + self.interaction

    def shares(self) -> dict[str, float]:
        t = self.total or 1.0
        return {"seeds": self.seeds / t, "problems": self.problems / t, "seed x problem": self.interaction / t,
                "of which sampling": self.sampling / t}

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def residual_factor(r: int, p: int) -> float:
    """E Var* contribution of per-cell noise of variance 1, times R P (see the module docstring)."""
    return (r - 1) / r + (p - 1) / p + (r - 1) * (p - 1) / (r * p)


def cell_sampling_variance(y: np.ndarray, k: int) -> np.ndarray:
    """Per-cell variance of a mean of k 0/1 samples, unbiased: p̂(1 - p̂)/(k - 1); zero for one sample."""
    if k <= 1:
        return np.zeros_like(y)
    return y * (1 - y) / (k - 1)


def decompose(y_a: np.ndarray, y_b: np.ndarray, k_a: int = 1, k_b: int = 1) -> Components:
    """Components of the difference of two (replicates x problems) tables (scores in [0, 1]).

    A one-row table is broadcast to the other's replicates (the untrained base model)."""
    r = max(y_a.shape[0], y_b.shape[0])
    a_full = np.broadcast_to(y_a, (r, y_a.shape[1]))
    b_full = np.broadcast_to(y_b, (r, y_b.shape[1]))
    d = 100 * (a_full - b_full)
    p = d.shape[1]
    m = d.mean()
    row = d.mean(axis=1) - m
    col = d.mean(axis=0) - m
    res = d - m - row[:, None] - col[None, :]
    seeds, problems, inter = float((row**2).mean() / r), float((col**2).mean() / p), float((res**2).mean() / (r * p))
    # sampling noise: a full table's is per-cell noise (residual factor); a broadcast (one-run) arm's is the same in
    # every row, so it acts like a per-problem difference: (P - 1)/P / P
    sampling, cell = 0.0, 0.0
    for y, k in ((y_a, k_a), (y_b, k_b)):
        s = 1e4 * float(cell_sampling_variance(y, k).mean())
        cell += s
        sampling += s * (residual_factor(r, p) / (r * p) if y.shape[0] == r else (p - 1) / p / p)
    return Components(seeds, problems, inter, sampling, r, p, max(k_a, k_b), cell)
