"""A study arm whose selection moves with the model (issue 29): ``zpd_dynamic: {strategy: zpd, dynamic: {every:
epoch}}``. Stage 0 is the arm's ordinary ``data-select select`` subset (the dataset the run is given); the train
step runs under ``llamafactory-ext train`` with ``dynamic_selection.*`` overrides naming the study's pool, its scores
step, the arm's strategy, rows, seed and select options, and the ``dynamic`` mapping's own keys (every, candidates,
save_stage_checkpoints, batch_tokens, packing)."""

from __future__ import annotations

from typing import Any

from data_selection.command_line import UserError
from llamafactory_ext.study.config import ArmConfig
from llamafactory_ext.train.dynamic.options import DynamicSelection

DYNAMIC = "dynamic"  # the arm option that makes an arm dynamic
SELECT_KEYS = ("low", "high", "key", "stratify", "over_length")  # select options a stage re-uses
OWN_KEYS = ("every", "candidates", "save_stage_checkpoints", "batch_tokens", "packing")  # the dynamic mapping's


def dynamic_of(arm: ArmConfig) -> dict[str, Any] | None:
    value = arm.options.get(DYNAMIC)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"arms.{arm.name}.{DYNAMIC} must be a mapping (e.g. {{every: epoch}}), got {value!r}")
    bad = sorted(k for k in value if k not in OWN_KEYS)
    if bad:
        raise UserError(f"arms.{arm.name}.{DYNAMIC}: unknown key(s) {bad}; known: {', '.join(OWN_KEYS)}")
    return value


def select_options(arm: ArmConfig) -> dict[str, Any]:
    """The arm's options for its `data-select select` step (stage 0): everything but the dynamic mapping."""
    return {k: v for k, v in arm.options.items() if k != DYNAMIC}


def train_overrides(arm: ArmConfig, seed: int, n: int, pool: str, scores: str) -> list[str]:
    """``dynamic_selection.KEY=VALUE`` overrides of the arm's train step (empty for a static arm)."""
    dyn = dynamic_of(arm)
    if dyn is None:
        return []
    values: dict[str, Any] = {"pool": pool, "scores": scores, "strategy": arm.strategy, "n": n, "seed": seed}
    values.update({k: v for k, v in arm.options.items() if k in SELECT_KEYS})
    values.update(dyn)
    assert set(values) <= set(DynamicSelection.__dataclass_fields__)
    return [f"dynamic_selection.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()]
