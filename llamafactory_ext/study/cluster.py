"""The study YAML's ``cluster:`` section: what each step asks the scheduler (or the local GPU pool) for.

::

    cluster:
      partition: gpu                 # sbatch --partition / --account / --qos / --time for every job ...
      account: mylab
      qos: normal
      time: "24:00:00"
      gpus_per_node: 8               # GPUs of one node (0: a CPU-only cluster; no job asks for GPUs)
      cpus: 16                       # --cpus-per-task (one task per node)
      mem: 200G                      # --mem (per node)
      sbatch: ["--constraint=h200"]  # further sbatch options, as written
      steps:                         # ... overridden per step kind
        train: {nodes: 2, time: "12:00:00"}
        eval: {time: "06:00:00"}
      arms:                          # ... and per arm and kind
        zpd: {train: {time: "16:00:00"}}

Defaults per step kind (before any override): scoring (``score``, ``checkpoints``) and training take the
study's ``gpus`` on one node, evaluation and ``prune`` one GPU per model, everything else (data, model, select,
verify, perturb, the report) no GPU. A step's GPUs never exceed ``gpus_per_node``. ``nodes`` above 1 makes a
multi-node job (one launcher per node; see ``executors/jobscript.py``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from data_selection.command_line import UserError
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.steps import KINDS, Step

REPORT_KIND = "report"  # the report job (not a hashed step)
FULL_GPU_KINDS = ("score", "checkpoints", "train")
ONE_GPU_KINDS = ("eval", "prune")


@dataclass
class Resources:
    """One job's request (per node: one task with ``cpus`` CPUs, ``gpus`` GPUs and ``mem``)."""

    nodes: int = 1
    gpus: int = 0
    cpus: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: list[str] = field(default_factory=list)


RESOURCE_KEYS = tuple(f.name for f in fields(Resources))


@dataclass
class ClusterConfig:
    defaults: Resources
    gpus_per_node: int | None = None
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    arms: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _check(where: str, given: Any, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise UserError(f"{where} must be a mapping, got {type(given).__name__}")
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
            raise UserError(f"{where}: unknown key {key!r}{hint}")
    return given


def _resources(where: str, given: dict[str, Any], base: Resources) -> Resources:
    _check(where, given, RESOURCE_KEYS)
    values = dict(given)
    for key in ("nodes", "gpus", "cpus"):
        if key in values and (not isinstance(values[key], int) or values[key] < (1 if key == "nodes" else 0)):
            raise UserError(f"{where}.{key} must be a whole number{' >= 1' if key == 'nodes' else ' >= 0'}, "
                            f"got {values[key]!r}")
    if "sbatch" in values:
        if isinstance(values["sbatch"], str):
            values["sbatch"] = [values["sbatch"]]
        if not isinstance(values["sbatch"], list):
            raise UserError(f"{where}.sbatch must be a list of sbatch options")
        values["sbatch"] = [*base.sbatch, *map(str, values["sbatch"])]
    for key in ("mem", "time", "partition", "account", "qos"):
        if key in values and values[key] is not None:
            values[key] = str(values[key])
    return replace(base, **values)


def cluster_config(cfg: StudyConfig) -> ClusterConfig:
    """Validate the study's ``cluster:`` section (every mistake names the key)."""
    where = f"{cfg.source}: cluster"
    raw = dict(_check(where, cfg.cluster or {}, (*RESOURCE_KEYS, "gpus_per_node", "steps", "arms")))
    steps = _check(f"{where}.steps", raw.pop("steps", None) or {}, (*KINDS, REPORT_KIND))
    arms = _check(f"{where}.arms", raw.pop("arms", None) or {}, tuple(a.name for a in cfg.arms))
    for key in ("gpus", "nodes"):
        if key in raw:
            raise UserError(f"{where}: {key} is set per step kind (cluster.steps.KIND.{key}); the defaults are "
                            "the study's gpus for score and train, 1 for eval, 0 for the rest")
    gpn = raw.pop("gpus_per_node", None)
    if gpn is not None and (not isinstance(gpn, int) or gpn < 0):
        raise UserError(f"{where}.gpus_per_node must be a whole number >= 0, got {gpn!r}")
    defaults = _resources(where, raw, Resources())
    for kind, given in steps.items():
        _resources(f"{where}.steps.{kind}", given, defaults)
    for arm, per_kind in arms.items():
        for kind, given in _check(f"{where}.arms.{arm}", per_kind or {}, KINDS).items():
            _resources(f"{where}.arms.{arm}.{kind}", given, defaults)
    return ClusterConfig(defaults, gpn, steps, arms)


def default_gpus(kind: str, cfg: StudyConfig) -> int:
    if kind in FULL_GPU_KINDS:
        return max(1, cfg.gpus)
    return 1 if kind in ONE_GPU_KINDS else 0


def step_resources(step: Step | None, cfg: StudyConfig, cluster: ClusterConfig) -> Resources:
    """What ``step`` asks for (``None``: the report job): kind default, then ``steps.KIND``, then ``arms.ARM.KIND``."""
    kind = REPORT_KIND if step is None else step.kind
    res = replace(cluster.defaults, gpus=0 if step is None else default_gpus(kind, cfg))
    res = _resources("cluster", cluster.steps.get(kind) or {}, res)
    if step is not None and step.arm in cluster.arms:
        res = _resources("cluster", (cluster.arms[step.arm] or {}).get(kind) or {}, res)
    if cluster.gpus_per_node is not None:
        res = replace(res, gpus=min(res.gpus, cluster.gpus_per_node))
    return res
