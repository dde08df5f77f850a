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


def shape_of(config) -> dict:
    """The numbers the FLOP formula needs, from a transformers config (or a dict with the same keys)."""
    get = config.get if isinstance(config, dict) else lambda k, default=None: getattr(config, k, default)
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    head_dim = get("head_dim") or hidden // heads
    return {
        "layers": get("num_hidden_layers"),
        "hidden": hidden,
        "intermediate": get("intermediate_size"),
        "q_dim": heads * head_dim,
        "kv_dim": get("num_key_value_heads") * head_dim,
        "vocab": get("vocab_size"),
    }


def matmul_params(config) -> int:
    """N: every matmul weight (q, k, v, o, gate, up, down per layer, and the lm_head)."""
    s = shape_of(config)
    d = s["hidden"]
    per_layer = d * s["q_dim"] + 2 * d * s["kv_dim"] + s["q_dim"] * d + 3 * d * s["intermediate"]
    return s["layers"] * per_layer + d * s["vocab"]


def row_flops(config, n: int) -> float:
    """Useful forward+backward FLOPs of one row of n tokens (no padding, causal attention, no recompute)."""
    s = shape_of(config)
    return 6.0 * matmul_params(config) * n + 6.0 * s["layers"] * n * n * s["hidden"]


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
