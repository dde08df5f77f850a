"""GPU-hours per step for ``--dry-run``, from stated assumptions (the study YAML's ``estimate`` section).

Nothing here is measured: every figure is ``rows x tokens / throughput`` with the throughputs and token
counts the YAML states (ideally copied from ``bench/`` runs and a scored pool's ``meta.json``), and the
dry run prints those assumptions beside the total.
"""

from __future__ import annotations

from typing import Any

import yaml

from llamafactory_ext.study.arm_inputs import arm_rows
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.steps import Step

ASSUMPTIONS = {
    "pool_rows": "rows in the pool",
    "tokens_per_row": "mean prompt + response tokens of a row",
    "score_tokens_per_s": "scoring throughput of one GPU (tokens/s)",
    "train_tokens_per_s": "training throughput of one GPU (tokens/s)",
    "eval_gpu_hours": "GPU-hours to evaluate one model on the suite",
    "prompt_tokens_per_row": "mean prompt tokens of a row (TEMP checkpoint scores: prompt + 100 / 1,000 tokens)",
    "temp_survivor_share": "share of the pool that survives TEMP's difficulty filter (directional scoring)",
}
TEMP_PREFIX = {"gaussian": 100, "directional": 1000}


def _epochs(cfg: StudyConfig) -> float:
    if "num_train_epochs" in cfg.train.overrides:
        return float(cfg.train.overrides["num_train_epochs"])
    with open(cfg.train.recipe, encoding="utf-8") as f:
        return float((yaml.safe_load(f) or {}).get("num_train_epochs", 3.0))


def gpu_hours(step: Step, cfg: StudyConfig) -> float | None:
    e: dict[str, Any] = cfg.estimate
    try:
        if step.kind in ("data", "model", "select", "perturb"):  # perturb: a manifest, drawn on the CPU
            return 0.0
        if step.kind == "checkpoints":  # every checkpoint scores a prefix of each row (docs/methods.md §3)
            kind = step.key["kind"]
            rows = e["pool_rows"] * (e["temp_survivor_share"] if kind == "directional" else 1.0)
            tokens = e["prompt_tokens_per_row"] + min(TEMP_PREFIX[kind], e["tokens_per_row"] - e["prompt_tokens_per_row"])
            return step.key["num"] * rows * tokens / e["score_tokens_per_s"] / 3600
        if step.kind == "score":
            return e["pool_rows"] * e["tokens_per_row"] / e["score_tokens_per_s"] / 3600
        if step.kind == "train":
            arm = next((a for a in cfg.trained_arms if a.name == step.arm), None)
            rows = arm_rows(arm, cfg) if arm is not None else cfg.subset_size
            return rows * e["tokens_per_row"] * _epochs(cfg) / e["train_tokens_per_s"] / 3600
        if step.kind == "eval":
            return float(e["eval_gpu_hours"])
    except KeyError:
        return None
    return None


def assumptions(cfg: StudyConfig) -> list[str]:
    return [f"{k} = {cfg.estimate[k]:,} ({what})" for k, what in ASSUMPTIONS.items() if k in cfg.estimate]
