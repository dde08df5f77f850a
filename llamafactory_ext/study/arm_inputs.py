"""What every arm builder of a study reads (Inputs) and returns (Subset), and the helpers the builders share;
llamafactory_ext/study/plan.py puts their steps in order."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.steps import Step


@dataclass
class Inputs:
    """What every arm builder may read: the shared steps and the resolved paths."""

    cfg: StudyConfig
    model_path: str
    model_key: dict[str, Any]
    model_step: Step | None
    data_step: Step | None
    pool: str  # the --dataset of data-select score
    pool_key: dict[str, Any]
    score: Step
    trained: dict[tuple[str, int], Step]  # (arm, seed) -> train step, for arms that need another arm's model
    subsets: dict[tuple[str, int], Subset]  # (arm, seed) -> its subset, for arms built on another arm's subset
    shared: dict[str, Step]  # steps several arms and seeds use (made once), by name


@dataclass
class Subset:
    """The step that registered an arm's training subset: its name and dataset_info.json folder."""

    step: Step
    name: str
    dataset_dir: Path
    extra_steps: list[Step]  # steps it needs that are not shared (made before it)

def launcher(cfg: StudyConfig) -> list[str]:
    """data-select, under torchrun when the study scores on several GPUs."""
    if cfg.gpus > 1:
        return ["torchrun", "--nproc-per-node", str(cfg.gpus), "-m", "data_selection.cli"]
    return ["data-select"]

def subset_name(arm: str, seed: int, step: Step) -> str:
    return f"{arm}_s{seed}_{step.hash[:8]}".replace("-", "_")

def shared_step(inp: Inputs, name: str, make: Callable[[], Step]) -> tuple[Step, list[Step]]:
    """A step made once for the whole study: (the step, [it] the first time it is asked for, else [])."""
    if name in inp.shared:
        return inp.shared[name], []
    inp.shared[name] = make()
    return inp.shared[name], [inp.shared[name]]


def arm_rows(arm, cfg: StudyConfig) -> int:
    """The rows of this arm's subset: its own ``subset_size`` if it has one, else the study's."""
    return arm.subset_size or cfg.subset_size


def json_key(obj) -> str:
    return json.dumps(obj, sort_keys=True)
