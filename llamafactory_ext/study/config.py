"""A study's YAML: what to compare, how, and how often. Parsed into dataclasses; every mistake names the key.

Example (``studies/demo.yaml`` is the annotated one)::

    name: demo
    out: outputs/studies/demo
    model: embedded:smollm2            # or a local folder / hub id
    template: smollm2
    cutoff_len: 512
    system_prompt: "Please reason step by step, and put your final answer within \\boxed{}."
    pool: {demo_data: {pool_size: 400, eval_size: 500, seed: 0}}   # or {dataset: NAME_OR_FILE, dataset_dir: .}
    subset_size: 80
    seeds: [1, 2, 3]                   # one subset draw + one training run per arm and seed
    arms:
      base: {}                         # the untrained model
      random: {strategy: random}
      zpd: {strategy: zpd, low: 0.25, high: 0.75}
      random_40: {strategy: random, subset_size: 40}   # an arm of its own size (a size control)
    train: {recipe: yaml_recipes/demo_zpd.yaml, overrides: {num_train_epochs: 1}}
    eval: {suite: heldout, max_new_tokens: 128, temperature: 0.0, batch_size: 64}
    analysis: {reference: random, baseline: base, resolution: 2.5}
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from data_selection.command_line import UserError

EMBEDDED_PREFIX = "embedded:"
BASE_ARM = "base"


@dataclass
class PoolConfig:
    demo_data: dict[str, Any] | None = None  # options of `data-select make-demo-data` (pool + held-out eval set)
    dataset: str | None = None  # or: a dataset_info.json entry, a file, or a hub id (as `data-select score`)
    dataset_dir: str = "."
    columns: str = ""


@dataclass
class ArmConfig:
    name: str
    strategy: str | None  # None: the untrained base model
    options: dict[str, Any] = field(default_factory=dict)  # further `data-select select` options (low, high, key…)
    subset_size: int | None = None  # this arm's rows instead of the study's subset_size (e.g. a size control)

    @property
    def matches(self) -> str | None:
        """The arm whose subset this length-matched baseline copies (``match: ARM``), else None."""
        return self.options.get("match") if self.strategy == "matched-random" else None


@dataclass
class TrainConfig:
    recipe: str
    launcher: str = "llamafactory-cli"  # or llamafactory-ext (our losses and callbacks)
    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # e.g. {FORCE_TORCHRUN: "1", NPROC_PER_NODE: "8"}


@dataclass
class EvalConfig:
    suite: str = "heldout"  # heldout: the demo data's held-out set; else any `llamafactory-ext eval --suite`
    preset: str | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    samples: int | None = None
    batch_size: int | None = None
    max_samples: int | None = None
    backend: str = "auto"


@dataclass
class AnalysisConfig:
    reference: str = "random"  # every arm is compared with this one (paired) ...
    baseline: str = BASE_ARM  # ... and with this one
    resolution: float = 2.5  # points: a paired difference whose 95% CI half-width is at most this is resolved
    confidence: float = 0.95
    draws: int = 10_000  # bootstrap draws
    seed: int = 0
    pilot: str = ""  # a finished study's OUT/reports/NAME/summary.json: --dry-run's power from its variance
    pairs: list[list[str]] = field(default_factory=list)  # more paired differences [[A, B], ...]: A − B
    assumptions: dict[str, Any] = field(default_factory=dict)  # else these (llamafactory_ext/study/power.py)


@dataclass
class StudyConfig:
    source: Path
    name: str
    out: Path
    model: str
    template: str
    cutoff_len: int
    pool: PoolConfig
    subset_size: int
    seeds: list[int]
    arms: list[ArmConfig]
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    system_prompt: str = ""
    score: dict[str, Any] = field(default_factory=dict)  # further `data-select score` options
    gpus: int = 1  # > 1: scoring runs under torchrun on this many GPUs (training: set train.env)
    estimate: dict[str, Any] = field(default_factory=dict)  # assumptions for --dry-run's GPU-hours
    cluster: dict[str, Any] = field(default_factory=dict)  # job resources (study/cluster.py)

    @property
    def report_dir(self) -> Path:
        """``OUT/reports/NAME``: studies that share ``out`` (and so their common steps) keep their own reports."""
        return self.out / "reports" / self.name

    @property
    def trained_arms(self) -> list[ArmConfig]:
        return [a for a in self.arms if a.strategy is not None]


def _check_keys(where: str, given: dict[str, Any], cls) -> None:
    known = [f.name for f in fields(cls) if f.name not in ("source", "name_", "options")]
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
            raise UserError(f"{where}: unknown key {key!r}{hint}")


def _section(path: Path, raw: dict[str, Any], key: str, cls, required: bool = False):
    value = raw.get(key)
    if value is None:
        if required:
            raise UserError(f"{path}: missing section {key!r}")
        return cls()
    if not isinstance(value, dict):
        raise UserError(f"{path}: {key} must be a mapping, got {type(value).__name__}")
    _check_keys(f"{path}: {key}", value, cls)
    try:
        return cls(**value)
    except TypeError as err:
        raise UserError(f"{path}: {key}: {err}") from None


def _arms(path: Path, raw: Any, strategies: set[str]) -> list[ArmConfig]:
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{path}: arms must be a non-empty mapping of arm name to its options")
    arms = []
    for name, opts in raw.items():
        opts = dict(opts or {})
        strategy = opts.pop("strategy", None)
        if strategy == "random" and "match" in opts:  # {strategy: random, match: zpd}: the length-matched baseline
            strategy = "matched-random"
        if name == BASE_ARM:
            if strategy or opts:
                raise UserError(f"{path}: arms.base is the untrained model and takes no options")
        elif strategy is None:
            raise UserError(f"{path}: arms.{name} needs a strategy (one of {', '.join(sorted(strategies))})")
        elif strategy not in strategies:
            close = difflib.get_close_matches(str(strategy), sorted(strategies), n=1)
            raise UserError(f"{path}: arms.{name}: unknown strategy {strategy!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(strategies))}"))
        if not str(name).replace("_", "").replace("-", "").isalnum():
            raise UserError(f"{path}: arm name {name!r} must be letters, digits, '-' or '_'")
        size = opts.pop("subset_size", None)
        if size is not None and (name == BASE_ARM or isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise UserError(f"{path}: arms.{name}.subset_size must be a positive integer (this arm's rows instead of "
                            f"the study's subset_size), got {size!r}")
        arms.append(ArmConfig(str(name), strategy, opts, size))
    return arms


def load_study(path: str | Path, strategies: set[str]) -> StudyConfig:
    """Read and validate a study YAML; ``strategies``: the arm strategies the planner can build."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a study is a mapping of keys (name, model, pool, arms, train, ...)")
    top = {f.name for f in fields(StudyConfig)} - {"source"}
    for key in raw:
        if key not in top:
            close = difflib.get_close_matches(key, sorted(top), n=1, cutoff=0.7)
            raise UserError(f"{path}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    for key in ("name", "out", "model", "template", "cutoff_len", "pool", "subset_size", "seeds", "arms", "train"):
        if raw.get(key) in (None, ""):
            raise UserError(f"{path}: missing key {key!r}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"{path}: seeds must be a list of distinct integers, got {seeds!r}")
    pool = _section(path, raw, "pool", PoolConfig, required=True)
    if (pool.demo_data is None) == (pool.dataset is None):
        raise UserError(f"{path}: pool needs exactly one of demo_data (generated) or dataset (yours)")
    cfg = StudyConfig(
        source=path,
        name=str(raw["name"]),
        out=Path(raw["out"]),
        model=str(raw["model"]),
        template=str(raw["template"]),
        cutoff_len=int(raw["cutoff_len"]),
        pool=pool,
        subset_size=int(raw["subset_size"]),
        seeds=sorted(seeds),
        arms=_arms(path, raw["arms"], strategies),
        train=_section(path, raw, "train", TrainConfig, required=True),
        eval=_section(path, raw, "eval", EvalConfig),
        analysis=_section(path, raw, "analysis", AnalysisConfig),
        system_prompt=str(raw.get("system_prompt") or ""),
        score=dict(raw.get("score") or {}),
        estimate=dict(raw.get("estimate") or {}),
        gpus=int(raw.get("gpus", 1)),
        cluster=dict(raw.get("cluster") or {}),
    )
    names = [a.name for a in cfg.arms]
    for role in ("reference", "baseline"):
        arm = getattr(cfg.analysis, role)
        if arm and arm not in names:
            raise UserError(f"{path}: analysis.{role} {arm!r} is not one of the arms {names}")
    for pair in cfg.analysis.pairs:
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1] or any(a not in names for a in pair):
            raise UserError(f"{path}: analysis.pairs: each pair is [ARM, OTHER_ARM], two different arms of {names} "
                            f"(reported as ARM − OTHER_ARM), got {pair!r}")
    if cfg.eval.suite == "heldout" and pool.demo_data is None:
        raise UserError(f"{path}: eval.suite heldout needs pool.demo_data (its held-out set); name a suite")
    if cfg.subset_size < 1:
        raise UserError(f"{path}: subset_size must be positive")
    if not Path(cfg.train.recipe).is_file():
        raise UserError(f"{path}: train.recipe {cfg.train.recipe} not found (paths are relative to the "
                        "directory you run the study from, normally the repository root)")
    _check_seed_keys(path, cfg.train)
    if cfg.train.launcher not in ("llamafactory-cli", "llamafactory-ext"):
        raise UserError(f"{path}: train.launcher must be llamafactory-cli or llamafactory-ext")
    return cfg


def _check_seed_keys(path, train: TrainConfig) -> None:
    """Each study seed must train in its own data order: the study sets ``seed`` per run, so an override of it
    would give every seed one value, and ``data_seed`` (which the shuffle sampler prefers when set) would give
    every seed one order (tests/llamafactory_ext/test_study_seeds.py shows both)."""
    for key in ("seed", "data_seed"):
        if key in train.overrides:
            raise UserError(f"{path}: train.overrides.{key}: the study sets each run's seed from `seeds:`; "
                            f"remove {key} from the overrides")
    recipe = yaml.safe_load(Path(train.recipe).read_text(encoding="utf-8")) or {}
    if isinstance(recipe, dict) and recipe.get("data_seed") is not None:
        raise UserError(f"{path}: train.recipe {train.recipe} sets data_seed: every study seed would train in one "
                        "data order; remove it from the recipe")
