"""Training FLOPs, MFU and row-length mixes shared by the training benches (train_mfu, train_cost_model).

Training MFU as issue 14 defines it: forward+backward model FLOPs of the non-padding tokens, divided by wall
time and the GPU's dense bf16 peak. Per row of n tokens:

* ``6 * N * n`` for the matmuls, N = every matmul parameter: q, k, v, o and the three MLP matrices of every layer
  plus the lm_head (``hidden x vocab``, counted although Qwen2.5-3B ties it to the embedding: the matmul runs);
  biases, norms and the embedding lookup are not matmuls;
* ``6 * layers * n^2 * hidden`` for causal attention (QK^T and AV over the lower triangle: 2 n^2 d forward per
  layer, twice that backward);
* no recomputation (gradient checkpointing re-runs the forward: real work, not counted), no padding, no masked
  upper triangles.

Qwen2.5-3B: N = 36 x 77.07M + 311.16M = 3.086e9, so 18.5 GFLOP per token for the matmuls, plus attention
6 x 36 x 2048 x n = 0.44 MFLOP x n per token (7.2 GFLOP per token at n = 16,384).
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# the formulas' one home (study --dry-run and bench/dynamic_selection_cost.py use them too)
from llamafactory_ext.study.cost_model import matmul_params, shape_of  # noqa: E402,F401
from llamafactory_ext.study.cost_model import train_row_flops as row_flops  # noqa: E402


def training_flops(config, row_lengths) -> float:
    return sum(row_flops(config, n) for n in row_lengths)


def mfu(config, row_lengths, seconds: float, peak_tflops: float | None) -> float | None:
    if not peak_tflops or seconds <= 0:
        return None
    return training_flops(config, row_lengths) / seconds / (peak_tflops * 1e12)


# ----------------------------------------------------------------------------------------------- length mixes


def uniform_lengths(n: int, lo: int, hi: int, seed: int = 0) -> list[int]:
    """The bench's rows: uniform between lo and hi tokens (issue 14 measured on rows of 2K-16K)."""
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def lognormal_lengths(n: int, median: float, sigma: float, cutoff: int, seed: int = 0) -> list[int]:
    """A long-tail mix like AceReason traces: log-normal around ``median``; longer rows kept at full length
    (LLaMA-Factory truncates them to ``cutoff`` in padded training, packing drops them)."""
    rng = random.Random(seed)
    return [max(64, int(math.exp(rng.gauss(math.log(median), sigma)))) for _ in range(n)]
