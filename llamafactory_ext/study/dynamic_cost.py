"""``--dry-run``'s statement, per dynamic arm, of what re-scoring at stage boundaries costs against the training it
rides on, and what ``candidates: K`` saves (the cost model: :mod:`llamafactory_ext.study.cost_model`).

Per row, re-scoring and training are costed in one of two ways, said on the first line:

* the study's ``estimate`` throughputs when it states both ``score_tokens_per_s`` and ``train_tokens_per_s``
  (GPU-seconds: measured speeds, ideally from ``bench/score_mfu.py`` and ``bench/train_mfu.py``);
* else the FLOP model (the scorer's forward against training's forward + backward) for the model's shape (its
  local ``config.json``; Qwen2.5-3B's when the model is not a local folder) on rows of ``estimate.tokens_per_row``
  tokens (else ``cutoff_len``, an upper bound).

Boundaries: a stage per epoch (``every: epoch``) or per ``every`` optimizer steps; stage 0 reuses the base scores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from llamafactory_ext.study.arm_inputs import arm_rows
from llamafactory_ext.study.config import ArmConfig, StudyConfig
from llamafactory_ext.study.cost_model import (
    PROMPT_TOKENS,
    QWEN25_3B,
    boundaries,
    rescoring_cost,
    score_row_flops,
    train_row_flops,
)
from llamafactory_ext.study.dynamic_arm import dynamic_of
from llamafactory_ext.train.dynamic.options import steps_per_epoch


def train_args(cfg: StudyConfig) -> dict[str, Any]:
    """The study's train recipe with its overrides (the keys the step count needs)."""
    with open(cfg.train.recipe, encoding="utf-8") as f:
        return {**(yaml.safe_load(f) or {}), **cfg.train.overrides}


def _per_epoch(n: int, args: dict[str, Any], cfg: StudyConfig) -> int:
    world = int(cfg.train.env.get("NPROC_PER_NODE", 1)) * int(cfg.train.env.get("NNODES", 1))
    return steps_per_epoch(n, {**args, "per_device_train_batch_size":
                               int(args.get("per_device_train_batch_size", 8)) * world})


def schedule(arm: ArmConfig, cfg: StudyConfig, dyn: dict[str, Any]) -> tuple[float, int, str]:
    """(epochs the arm trains, re-scored boundaries, how the stages are cut) of a dynamic arm."""
    args = train_args(cfg)
    n = arm_rows(arm, cfg)
    per_epoch = _per_epoch(n, args, cfg)
    max_steps = int(args.get("max_steps", -1) or -1)
    epochs = max_steps / per_epoch if max_steps > 0 else float(args.get("num_train_epochs", 3.0))
    every = dyn.get("every", "epoch")
    if every == "epoch":
        return epochs, boundaries(epochs), "every epoch"
    total = max_steps if max_steps > 0 else math.ceil(epochs * per_epoch)
    n_bound = max(math.ceil(total / int(every)) - 1, 0)  # stages start after 0, N, 2N, … steps, mid-epoch too
    return epochs, n_bound, f"every {every} steps (epochs of {per_epoch} steps)"


def row_costs(cfg: StudyConfig) -> tuple[float, float, str]:
    """(re-scoring cost of one row, training cost of one row for one epoch, the basis in words)."""
    e = cfg.estimate
    if e.get("score_tokens_per_s") and e.get("train_tokens_per_s"):
        tokens = float(e.get("tokens_per_row", 1.0))
        return (tokens / e["score_tokens_per_s"], tokens / e["train_tokens_per_s"],
                f"GPU-seconds from the study's estimate (scoring {e['score_tokens_per_s']:,} tokens/s, training "
                f"{e['train_tokens_per_s']:,} tokens/s)")
    config = Path(cfg.model) / "config.json"
    shape, name = (json.loads(config.read_text(encoding="utf-8")), f"{cfg.model}'s") if config.is_file() else (
        QWEN25_3B, "Qwen2.5-3B's (the model has no local config.json)")
    tokens = int(e.get("tokens_per_row") or cfg.cutoff_len)
    prompt = int(e.get("prompt_tokens_per_row") or min(PROMPT_TOKENS, tokens // 2))
    where = "estimate.tokens_per_row" if e.get("tokens_per_row") else "cutoff_len, an upper bound"
    return (score_row_flops(shape, tokens, prompt), train_row_flops(shape, tokens),
            f"FLOPs of the scorer's forward vs training's forward + backward, {name} shape, rows of {tokens:,} "
            f"tokens ({where}); give the study's estimate score_tokens_per_s and train_tokens_per_s for GPU time")


def pool_rows(cfg: StudyConfig) -> int | None:
    """Rows ``candidates: all`` re-scores: the demo pool's size, else ``estimate.pool_rows``."""
    demo = cfg.pool.demo_data or {}
    rows = demo.get("pool_size") or cfg.estimate.get("pool_rows")
    return int(rows) if rows else None


def _ratios(c: dict[str, Any]) -> str:
    return f"{c['ratio_to_epoch']:.2f}x one epoch of training per boundary, {c['ratio_to_run']:.2f}x the run's training"


def arm_lines(arm: ArmConfig, cfg: StudyConfig, score_row: float, train_row: float) -> list[str]:
    dyn = dynamic_of(arm) or {}
    n = arm_rows(arm, cfg)
    epochs, n_bound, cut = schedule(arm, cfg, dyn)
    pool = pool_rows(cfg)
    setting = dyn.get("candidates", "all")
    k = pool if setting == "all" else min(int(setting), pool or int(setting))
    head = (f"  {arm.name}: {n:,} rows per stage, {cut}, {epochs:g} epoch(s) = {n_bound} re-scored boundar"
            f"{'y' if n_bound == 1 else 'ies'}; candidates: {setting if setting == 'all' else f'{int(setting):,}'}"
            + (f" of {pool:,} pool rows" if pool else ""))
    if k is None:
        return [head, "    candidates: all re-scores the whole pool: its size is unknown (give the study's estimate "
                      "pool_rows) — set candidates: K to bound the cost"]
    c = rescoring_cost(k, n, epochs, n_bound, score_row, train_row)
    lines = [head, f"    re-scoring {k:,} rows: {_ratios(c)} (+{100 * c['ratio_to_run']:.0f}% on top of training)"]
    if n_bound == 0:
        lines.append("    (one stage only: nothing is re-scored; lengthen the run or shorten every)")
    if pool and setting != "all":
        full = rescoring_cost(pool, n, epochs, n_bound, score_row, train_row)
        lines.append(f"    candidates: all would re-score {pool:,} rows: {_ratios(full)}; candidates: {k:,} saves "
                     f"{100 * (1 - k / pool):.0f}% of the re-scoring")
    elif pool:
        for alt in sorted({n, 2 * n}):
            if alt < pool:
                other = rescoring_cost(alt, n, epochs, n_bound, score_row, train_row)
                lines.append(f"    candidates: {alt:,} would cost {_ratios(other)}: it saves "
                             f"{100 * (1 - alt / pool):.0f}% of the re-scoring")
    if cfg.estimate.get("score_tokens_per_s") and cfg.estimate.get("tokens_per_row"):
        hours = n_bound * k * cfg.estimate["tokens_per_row"] / cfg.estimate["score_tokens_per_s"] / 3600
        lines.append(f"    ≈ {hours:,.2f} GPU-hours of re-scoring per run, on top of its train step's estimate")
    return lines


def dynamic_cost_lines(cfg: StudyConfig) -> list[str]:
    """The dry run's block for the dynamic arms (empty when the study has none)."""
    arms = [a for a in cfg.trained_arms if dynamic_of(a) is not None]
    if not arms:
        return []
    score_row, train_row, basis = row_costs(cfg)
    lines = [f"dynamic arms: re-scoring at stage boundaries against the training it rides on; cost basis: {basis}"]
    for arm in arms:
        lines += arm_lines(arm, cfg, score_row, train_row)
    return lines
