"""From a study configuration to the ordered list of steps: the same commands a user would type.

::

    data (demo pool + held-out set) ─┐
    model (embedded checkpoint)     ─┴─ score ── select(arm, seed) ── train(arm, seed) ── eval(arm, seed)
                                                        base model ─────────────────────── eval(base)

Each arm's steps are built by the builder registered for its strategy (``ARM_BUILDERS``): a plain
`data-select select` strategy by ``select_steps``; strategies that need more inputs (verified answers, pruned or
length-matched subsets: arm_builders.py; perturbed checkpoints: temp_arm.py) register their own builder
returning the step that makes the subset, so training and evaluation stay the same for every arm. A temp arm also reads another arm's
trained model (θf of TEMP's direction: the random arm's, same seed), so it must come after that arm.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError
from data_selection.embedded import smollm2_gguf_path
from data_selection.options.select import STRATEGY_SUMMARIES
from data_selection.scoring.identity import model_identity
from llamafactory_ext.study.arm_builders import matched_steps, pass_cv_steps, prune_steps, select_steps
from llamafactory_ext.study.arm_inputs import Inputs, Subset, arm_rows, launcher, subset_name
from llamafactory_ext.study.check import check_plan
from llamafactory_ext.study.config import BASE_ARM, EMBEDDED_PREFIX, ArmConfig, StudyConfig
from llamafactory_ext.study.dynamic_arm import train_overrides
from llamafactory_ext.study.steps import Step, file_digest, recipe_digest
from llamafactory_ext.study.temp_arm import temp_steps

__all__ = ["build_plan", "builder_for", "known_strategies", "subset_name"]


def _model(cfg: StudyConfig) -> tuple[str, dict[str, Any], Step | None]:
    if cfg.model.startswith(EMBEDDED_PREFIX):
        which = cfg.model[len(EMBEDDED_PREFIX):]
        if which != "smollm2":
            raise UserError(f"{cfg.source}: model {cfg.model!r}: the embedded model is 'embedded:smollm2'")
        gguf = smollm2_gguf_path()
        key = {"embedded": which, "gguf": gguf.name, "bytes": gguf.stat().st_size}
        step = Step("model", "SmolLM2-135M-Instruct", key, [], cfg.out)
        step.argv = ["data-select", "prepare-model", "--out_dir", str(step.dir / "model")]
        return str(step.dir / "model"), {"step": step.hash}, step
    path = Path(cfg.model)
    if path.is_dir():
        return str(path), model_identity(str(path), None), None
    return cfg.model, {"hub": cfg.model}, None


def _data(cfg: StudyConfig) -> tuple[str, dict[str, Any], Step | None]:
    if cfg.pool.demo_data is not None:
        opts = dict(cfg.pool.demo_data)
        step = Step("data", "demo pool", {"make-demo-data": opts}, [], cfg.out)
        step.argv = ["data-select", "make-demo-data", "--out_dir", str(step.dir)]
        step.add_options("pool.demo_data", opts)
        return str(step.dir / "pool.jsonl"), {"step": step.hash}, step
    key: dict[str, Any] = {"dataset": cfg.pool.dataset, "dataset_dir": cfg.pool.dataset_dir, "columns": cfg.pool.columns}
    local = Path(cfg.pool.dataset)
    if local.is_file():
        key["digest"] = file_digest(local)
    return str(cfg.pool.dataset), key, None

def _score(cfg: StudyConfig, model_path: str, model_key, model_step, pool: str, pool_key, data_step) -> Step:
    key = {"model": model_key, "template": cfg.template, "cutoff_len": cfg.cutoff_len,
           "system_prompt": cfg.system_prompt, "pool": pool_key, "options": cfg.score}
    deps = [s for s in (model_step, data_step) if s is not None]
    step = Step("score", "pool scores", key, deps, cfg.out)
    step.argv = [*launcher(cfg), "score", "--model", model_path, "--dataset", pool, "--template", cfg.template,
                 "--cutoff_len", str(cfg.cutoff_len), "--out", str(step.dir)]
    if cfg.system_prompt:
        step.argv += ["--system_prompt", cfg.system_prompt]
    if data_step is None:
        step.argv += ["--dataset_dir", cfg.pool.dataset_dir]
        if cfg.pool.columns:
            step.argv += ["--columns", cfg.pool.columns]
    step.add_options("score", cfg.score)
    return step

# strategy -> builder of the subset step; strategies with extra inputs add theirs (plain select strategies use
# select_steps)
ARM_BUILDERS: dict[str, Callable[[ArmConfig, int, Inputs], Subset]] = {
    "matched-random": matched_steps,
    "pass-cv": pass_cv_steps,
    "prune-steps": prune_steps,
    "temp": temp_steps,
}


def builder_for(strategy: str) -> Callable[[ArmConfig, int, Inputs], Subset]:
    return ARM_BUILDERS.get(strategy, select_steps)


def known_strategies() -> set[str]:
    """`data-select select` strategies (named in its light options module) and those with a builder of their own."""
    return set(STRATEGY_SUMMARIES) | set(ARM_BUILDERS)


def _train(cfg: StudyConfig, arm: ArmConfig, seed: int, subset: Subset, model_path: str, model_key,
           inp: Inputs | None = None) -> Step:
    t = cfg.train
    dynamic = train_overrides(arm, seed, arm_rows(arm, cfg), inp.pool, str(inp.score.dir)) if inp else []
    launcher = "llamafactory-ext" if dynamic else t.launcher  # dynamic_selection is our recipe key
    key = {"recipe": t.recipe, "recipe_digest": recipe_digest(t.recipe), "launcher": launcher,
           "overrides": t.overrides, "env": t.env, "seed": seed, "model": model_key, "template": cfg.template,
           "cutoff_len": cfg.cutoff_len, "dataset": subset.name}
    if dynamic:  # a static arm's key (and so its hash and folder) is unchanged
        key["dynamic"] = dynamic
    step = Step("train", f"train {arm.name} seed {seed}", key, [subset.step], cfg.out, arm.name, seed)
    step.argv = [launcher, "train", t.recipe, f"model_name_or_path={model_path}", f"dataset={subset.name}",
                 f"dataset_dir={subset.dataset_dir}", f"template={cfg.template}", f"cutoff_len={cfg.cutoff_len}",
                 f"output_dir={step.dir}", f"seed={seed}", "overwrite_output_dir=true"]
    step.argv += [f"{k}={v}" for k, v in t.overrides.items()] + dynamic
    step.env = {k: str(v) for k, v in t.env.items()}
    return step


# EvalConfig fields passed on as `llamafactory-ext eval` options when set
EVAL_OPTIONS = ("preset", "max_new_tokens", "temperature", "top_p", "samples", "batch_size", "max_samples")


def _eval(cfg: StudyConfig, label: str, arm: str, seed: int, model: str, model_dep: Step | None,
          model_key, data_step: Step | None) -> Step:
    e = cfg.eval
    suite = e.suite
    deps = [s for s in (model_dep, data_step if suite == "heldout" else None) if s is not None]
    key = {"model": model_key, "eval": vars(e), "seed": seed, "system_prompt": cfg.system_prompt}
    step = Step("eval", label, key, deps, cfg.out, arm, seed)
    heldout = suite == "heldout"
    if heldout:
        suite = f"local:{data_step.dir / 'eval.jsonl'}"
    step.argv = ["llamafactory-ext", "eval", "--model", model, "--suite", suite, "--out", str(step.dir),
                 "--seed", str(seed), "--overwrite", "--system_prompt", cfg.system_prompt, "--backend", e.backend]
    if heldout:
        step.argv += ["--task_name", "heldout"]
    step.add_options("eval", {name: getattr(e, name) for name in EVAL_OPTIONS if getattr(e, name) is not None})
    return step


def build_plan(cfg: StudyConfig) -> list[Step]:
    """Every step of the study in an order that respects dependencies (shared steps first, then per seed).

    Each step's command line is parsed by its command's options class here (study/check.py), so a typo or a bad
    value in the YAML stops the study when it is loaded, naming the arm (or section) and the key."""
    model_path, model_key, model_step = _model(cfg)
    pool, pool_key, data_step = _data(cfg)
    score = _score(cfg, model_path, model_key, model_step, pool, pool_key, data_step)
    steps = [s for s in (data_step, model_step) if s is not None] + [score]
    inp = Inputs(cfg, model_path, model_key, model_step, data_step, pool, pool_key, score, {}, {}, {})
    sampled = (cfg.eval.temperature is None or cfg.eval.temperature > 0) or (cfg.eval.samples or 1) > 1
    for arm in cfg.arms:
        if arm.strategy is None:  # the base model: one evaluation, or one per seed when answers are sampled
            for seed in cfg.seeds if sampled else cfg.seeds[:1]:
                steps.append(_eval(cfg, f"eval {BASE_ARM} seed {seed}", BASE_ARM, seed, model_path, model_step,
                                   {"base": model_key}, data_step))
    for seed in cfg.seeds:  # seed by seed, so an early stop still leaves complete replicates
        for arm in cfg.trained_arms:
            subset = builder_for(arm.strategy)(arm, seed, inp)
            inp.subsets[(arm.name, seed)] = subset
            train = _train(cfg, arm, seed, subset, model_path, model_key, inp)
            inp.trained[(arm.name, seed)] = train
            ev = _eval(cfg, f"eval {arm.name} seed {seed}", arm.name, seed, str(train.dir), train,
                       {"train": train.hash}, data_step)
            steps += [*subset.extra_steps, subset.step, train, ev]
    check_plan(cfg, steps)
    return steps
