"""The FLOP cost model of training and of the scorer, per row, and what re-scoring a dynamic selection's candidates
at each stage boundary costs against the training it rides on.

One home for the formulas ``bench/train_flops.py`` (training MFU), ``bench/dynamic_selection_cost.py`` (the
re-scoring bench) and ``llamafactory-ext study --dry-run`` (:mod:`llamafactory_ext.study.dynamic_cost`) use.
Light: standard library only.

* training, per row of n tokens: ``6·N·n + 6·layers·n²·hidden`` (N = every matmul weight, the lm_head included;
  forward + backward, causal attention, no recompute, no padding);
* the scorer, per row: ``2·N_body·n + 2·layers·n²·hidden + 2·hidden·vocab·(n - prompt)`` (forward only; the
  lm_head runs at response positions only, chunk by chunk);
* re-scoring: ``K`` candidates scored at each of the run's boundaries (stage 0 reuses the base scores) against
  training on the stage's ``n`` rows per epoch.
"""

from __future__ import annotations

import math
from typing import Any

QWEN25_3B = {"num_hidden_layers": 36, "hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16,
             "num_key_value_heads": 2, "vocab_size": 151936}  # fmt: skip
PROMPT_TOKENS = 200  # prompt tokens of a row when none are stated (the lm_head runs on the rest)


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


def train_row_flops(config, n: int) -> float:
    """Useful forward+backward FLOPs of one row of n tokens (no padding, causal attention, no recompute)."""
    s = shape_of(config)
    return 6.0 * matmul_params(config) * n + 6.0 * s["layers"] * n * n * s["hidden"]


def score_row_flops(config, n: int, prompt_tokens: int = PROMPT_TOKENS) -> float:
    """Useful forward FLOPs of the scorer on one row of n tokens (the lm_head at response positions only)."""
    s = shape_of(config)
    body = matmul_params(config) - s["hidden"] * s["vocab"]
    return 2.0 * body * n + 2.0 * s["layers"] * n * n * s["hidden"] + 2.0 * s["hidden"] * s["vocab"] * max(
        n - prompt_tokens, 1)


def boundaries(epochs: float, epochs_per_stage: int = 1) -> int:
    """Re-scored stage boundaries of a run: stages start at epochs 0, e, 2e, … (e epochs per stage); stage 0
    reuses the base model's scores."""
    return max(math.ceil(math.ceil(epochs) / max(epochs_per_stage, 1)) - 1, 0)


def rescoring_cost(candidates: int, n: int, epochs: float, n_boundaries: int, score_per_row: float,
                   train_per_row: float) -> dict[str, Any]:
    """Re-scoring ``candidates`` rows at each of ``n_boundaries`` boundaries against training on ``n`` rows for
    ``epochs`` epochs; ``score_per_row`` / ``train_per_row`` in any one unit (FLOPs, GPU-seconds).

    ``ratio_to_epoch``: one boundary's re-scoring / one epoch of training; ``ratio_to_run``: all of it / the run's
    training (the share re-scoring adds on top)."""
    per_boundary = candidates * score_per_row
    epoch = n * train_per_row
    return {"candidates": candidates, "per_boundary": per_boundary, "epoch": epoch, "boundaries": n_boundaries,
            "ratio_to_epoch": per_boundary / epoch, "ratio_to_run": per_boundary * n_boundaries / (epoch * epochs)}
