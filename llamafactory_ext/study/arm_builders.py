"""Arm builders of a study for `data-select select` strategies: a plain strategy on the pool scores, DeepDistill's
pass-rate + CV on verified answers, LIMOPro pruning of another arm's subset, and a length-matched random draw.
Each returns the step that registers the arm's training subset (TEMP's builder: temp_arm.py)."""

from __future__ import annotations

from typing import Any

from data_selection.command_line import UserError
from data_selection.subset import subset_paths
from llamafactory_ext.study.arm_inputs import (
    Inputs,
    Subset,
    arm_rows,
    json_key,
    shared_step,
    subset_name,
)
from llamafactory_ext.study.config import ArmConfig
from llamafactory_ext.study.dynamic_arm import select_options
from llamafactory_ext.study.steps import Step


def select_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """A `data-select select` strategy (zpd, random, ...) on the pool scores."""
    cfg = inp.cfg
    options = select_options(arm)  # a dynamic arm's stage 0 is this plain select
    key = {"strategy": arm.strategy, "options": options, "n": arm_rows(arm, cfg), "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--scores", str(inp.score.dir), "--strategy", arm.strategy,
                 "--n", str(arm_rows(arm, cfg)), "--seed", str(seed), "--name", name,
                 "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    step.add_options(f"arms.{arm.name}", options)
    return Subset(step, name, step.dir, [])

def pass_cv_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """`data-select verify` on the pool (once), then `select --strategy pass-cv` (docs/methods.md §4)."""
    cfg = inp.cfg
    options = dict(arm.options)
    verify_options = dict(options.pop("verify", None) or {})

    def make_verify() -> Step:
        step = Step("verify", "verify answers", {"pool": inp.pool_key, "system_prompt": cfg.system_prompt,
                                                  "options": verify_options},
                    [d for d in (inp.data_step,) if d is not None], cfg.out)
        step.argv = ["data-select", "verify", "--dataset", inp.pool, "--out", str(step.dir)]
        if cfg.system_prompt:  # part of every row id: must equal what the scorer was given
            step.argv += ["--system_prompt", cfg.system_prompt]
        if inp.data_step is None:
            step.argv += ["--dataset_dir", cfg.pool.dataset_dir]
        step.add_options(f"arms.{arm.name}.verify", verify_options)
        return step

    verify, new = shared_step(inp, f"verify {json_key(verify_options)}", make_verify)
    key = {"strategy": arm.strategy, "options": options, "n": arm_rows(arm, cfg), "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score, verify], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--verified", str(verify.dir), "--scores", str(inp.score.dir),
                 "--strategy", arm.strategy, "--n", str(arm_rows(arm, cfg)), "--seed", str(seed), "--name", name,
                 "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    step.add_options(f"arms.{arm.name}", options)
    return Subset(step, name, step.dir, new)


def sibling_subset(arm: ArmConfig, seed: int, inp: Inputs, option: str, what: str) -> tuple[dict[str, Any], Subset]:
    """(the arm's other options, the subset of the arm its ``option`` names, same seed) for arms built on another."""
    options = dict(arm.options)
    source = options.pop(option, None)
    if (source, seed) not in inp.subsets:
        raise UserError(f"{inp.cfg.source}: arms.{arm.name}: `{option}` must name an arm listed before it whose "
                        f"subset is {what} (got {source!r})")
    return options, inp.subsets[(source, seed)]


def prune_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """LIMOPro step pruning (docs/methods.md §5) of another arm's subset of the same seed."""
    cfg = inp.cfg
    options, base = sibling_subset(arm, seed, inp, "from", "pruned")
    key = {"from": base.name, "options": options, "model": inp.model_key, "template": cfg.template,
           "cutoff_len": cfg.cutoff_len}
    step = Step("prune", f"prune {arm.name} seed {seed}", key, [base.step], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "prune-steps", "--model", inp.model_path, "--dataset", base.name,
                 "--dataset_dir", str(base.dataset_dir), "--template", cfg.template, "--cutoff_len",
                 str(cfg.cutoff_len), "--name", name, "--dataset_info", str(step.dir / "dataset_info.json"),
                 "--out", str(step.dir / "pir"), "--report_dir", str(step.dir / "report"), "--force"]
    step.add_options(f"arms.{arm.name}", options)
    return Subset(step, name, step.dir, [])


def matched_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """A random draw matching the response-length distribution of another arm's subset of the same seed
    (`select --strategy matched-random --match`, data_selection/selectors/matched_random.py)."""
    cfg = inp.cfg
    options, base = sibling_subset(arm, seed, inp, "match", "length-matched")
    key = {"strategy": arm.strategy, "match": base.name, "options": options, "n": arm_rows(arm, cfg), "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score, base.step], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--scores", str(inp.score.dir), "--strategy", arm.strategy,
                 "--match", str(subset_paths(base.dataset_dir, base.name)["data"]), "--n", str(arm_rows(arm, cfg)),
                 "--seed", str(seed), "--name", name, "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    step.add_options(f"arms.{arm.name}", options)
    return Subset(step, name, step.dir, [])
