"""What a doctor run checks against: one check's verdict (:class:`Check`) and what the given recipe or study
will need (:class:`Target`: GPUs, precision, kernels, models and pools, what it writes and where)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from data_selection.command_line import UserError
from llamafactory_ext.study.config import EMBEDDED_PREFIX, load_study
from llamafactory_ext.study.plan import known_strategies

Status = Literal["ok", "warn", "blocker", "skip"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Target:
    """Everything the probes need to know about the config; empty (``kind=None``) without one."""

    kind: str | None = None  # "recipe" | "study" | None
    path: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)  # LLaMA-Factory + our keys, overrides applied
    recipe_path: str = ""
    model: str = ""
    datasets: list[str] = field(default_factory=list)  # hub ids, dataset_info entries or files
    dataset_dir: str = "."
    out: str = ""  # the folder everything is written under
    gpus_needed: int = 0  # 0: runs on the CPU
    eval_backend: str = ""  # "vllm" when the config evaluates with vLLM
    train_runs: int = 1
    study: Any = None  # the StudyConfig

    @property
    def needs_gpu(self) -> bool:
        return self.gpus_needed > 0

    @property
    def half(self) -> str | None:
        for key in ("bf16", "fp16"):
            if _truthy(self.recipe.get(key)):
                return key
        return None


def _truthy(value: Any) -> bool:
    return value.lower() in ("true", "1", "yes", "y") if isinstance(value, str) else bool(value)


def _recipe_needs_gpus(recipe: dict[str, Any], env: dict[str, str] | None = None) -> int:
    env = env or {}
    if not (recipe.get("deepspeed") or _truthy(recipe.get("bf16")) or _truthy(recipe.get("fp16"))):
        return 0
    return int(env.get("NPROC_PER_NODE", 1) or 1)


def load_target(config_path: str | None) -> Target:
    """The recipe or study at ``config_path`` (a study has ``arms`` and ``train``), or an empty target."""
    if not config_path:
        return Target()
    path = Path(config_path)
    if not path.is_file():
        raise UserError(f"{config_path}: no such file (a recipe YAML or a study YAML)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{config_path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{config_path}: a recipe or study is a mapping of keys")
    if "arms" in raw and "train" in raw:
        return _study_target(path)
    return Target(kind="recipe", path=str(path), recipe=raw, recipe_path=str(path),
                  model=str(raw.get("model_name_or_path", "")), datasets=_split(raw.get("dataset")),
                  dataset_dir=str(raw.get("dataset_dir", ".")), out=str(raw.get("output_dir", "")),
                  gpus_needed=_recipe_needs_gpus(raw))


def _split(value: Any) -> list[str]:
    return [s.strip() for s in str(value).split(",") if s.strip()] if value else []


def _study_target(path: Path) -> Target:
    cfg = load_study(path, known_strategies())
    with open(cfg.train.recipe, encoding="utf-8") as f:
        recipe = {**(yaml.safe_load(f) or {}), **cfg.train.overrides}
    gpus = max(_recipe_needs_gpus(recipe, cfg.train.env), cfg.gpus if cfg.gpus > 1 else 0)
    backend = cfg.eval.backend
    if backend == "vllm" or (backend == "auto" and gpus):
        backend = "vllm"
    datasets = [cfg.pool.dataset] if cfg.pool.dataset else []
    model = "" if cfg.model.startswith(EMBEDDED_PREFIX) else cfg.model
    return Target(kind="study", path=str(path), recipe=recipe, recipe_path=cfg.train.recipe, model=model,
                  datasets=datasets, dataset_dir=cfg.pool.dataset_dir, out=str(cfg.out),
                  gpus_needed=max(gpus, 1 if backend == "vllm" else 0), eval_backend=backend,
                  train_runs=len(cfg.trained_arms) * len(cfg.seeds), study=cfg)
