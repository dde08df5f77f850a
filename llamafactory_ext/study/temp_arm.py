"""The study's TEMP arm (docs/methods.md §3): perturbed checkpoints, their early-token scores, then `select
--strategy temp`; θf of the direction is another arm's trained model of the same seed."""

from __future__ import annotations

from data_selection.command_line import UserError
from llamafactory_ext.study.arm_inputs import (
    Inputs,
    Subset,
    arm_rows,
    json_key,
    launcher,
    shared_step,
    subset_name,
)
from llamafactory_ext.study.config import ArmConfig
from llamafactory_ext.study.steps import Step

# TEMP arm options (docs/methods.md §3): `data-select perturb` options per kind; the rest go to `select`
TEMP_PERTURB_OPTIONS = {"gaussian": ("num", "start", "end", "scale", "seed"),
                        "directional": ("num", "min_radius", "max_radius", "seed")}
# `select` options the directional scoring must share, so that it scores exactly the survivors select sees
TEMP_SURVIVOR_OPTIONS = ("over_length", "temp_checkpoint", "temp_init_label_num")
# `data-select score` options of the study that score-checkpoints takes too (the same batches and dtype)
TEMP_SCORING_OPTIONS = ("batch_tokens", "packing", "dtype", "attn", "shard_rows", "chunk_tokens", "device")


def _temp_target(arm: ArmConfig, seed: int, inp: Inputs, target: str | None) -> Step:
    """The train step of the arm whose fine-tuned model is θf for this seed (default: the study's random arm)."""
    cfg = inp.cfg
    where = f"{cfg.source}: arms.{arm.name}"
    if target is None:
        randoms = [a.name for a in cfg.trained_arms if a.strategy == "random"]
        if len(randoms) != 1:
            found = f"found {len(randoms)}: {', '.join(randoms)}" if randoms else "there is none"
            raise UserError(f"{where}: a temp arm perturbs the base model towards the model trained on the random "
                            f"arm's subset of the same seed (docs/methods.md §3), so the study needs exactly one arm "
                            f"with strategy random listed before it ({found}); or name one with `target: ARM`")
        target = randoms[0]
    if (target, seed) not in inp.trained:
        raise UserError(f"{where}: the direction's target arm {target!r} must be a trained arm listed before "
                        f"{arm.name!r} (its model of seed {seed} is θf)")
    return inp.trained[(target, seed)]


def temp_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """TEMP (docs/methods.md §3): Gaussian checkpoints of the base model → L^(100) of the pool at each →
    directional checkpoints towards the random arm's model of this seed → L^(1000) of the difficulty survivors
    → `select --strategy temp`.

    The Gaussian steps depend on the seed only through the noise: with ``gaussian: {seed: S}`` in the arm they
    are made once for the study (every seed selects from the same difficulty filter); without it the noise seed
    is the study's seed and every replicate draws its own. The directional steps are always per seed (θf is).
    """
    cfg = inp.cfg
    options = dict(arm.options)
    perturb = {k: dict(options.pop(k, None) or {}) for k in TEMP_PERTURB_OPTIONS}
    target = options.pop("target", None)
    for kind, allowed in TEMP_PERTURB_OPTIONS.items():
        for key in perturb[kind]:
            if key not in allowed:
                raise UserError(f"{cfg.source}: arms.{arm.name}.{kind}: unknown key {key!r} (data-select perturb "
                                f"--kind {kind} options: {', '.join(allowed)})")
    survivor_opts = {k: options[k] for k in TEMP_SURVIVOR_OPTIONS if k in options}
    scoring = {k: v for k, v in cfg.score.items() if k in TEMP_SCORING_OPTIONS}
    model_deps = [d for d in (inp.model_step,) if d is not None]
    new: list[Step] = []

    def perturbation(kind: str, noise_seed: int, shared_seed: bool, theta_f: Step | None) -> Step:
        opts = {k: v for k, v in perturb[kind].items() if k != "seed"}
        key = {"model": inp.model_key, "kind": kind, "options": opts, "seed": noise_seed,
               **({"target": theta_f.hash} if theta_f is not None else {})}

        def make() -> Step:
            label = f"perturb {kind}" + ("" if shared_seed else f" seed {seed}")
            step = Step("perturb", label, key, [*model_deps, *([theta_f] if theta_f else [])], cfg.out,
                        seed=None if shared_seed else seed)
            step.argv = ["data-select", "perturb", "--kind", kind, "--model", inp.model_path]
            if theta_f is not None:
                step.argv += ["--target", str(theta_f.dir)]
            step.argv += ["--out", str(step.dir / "perturb"), "--seed", str(noise_seed)]
            step.add_options(f"arms.{arm.name}.{kind}", opts)
            return step

        step, made = shared_step(inp, f"perturb {json_key(key)}", make)
        new.extend(made)
        return step

    def checkpoint_scores(kind: str, source: Step, gaussian: Step | None, shared_seed: bool) -> Step:
        extra = survivor_opts if kind == "directional" else {}
        key = {"kind": kind, "num": perturb[kind].get("num", 8), "options": scoring, "survivors": extra}

        def make() -> Step:
            label = f"checkpoint scores {kind}" + ("" if shared_seed else f" seed {seed}")
            deps = [inp.score, source, *([gaussian] if gaussian else [])]
            step = Step("checkpoints", label, key, deps, cfg.out, seed=None if shared_seed else seed)
            step.argv = [*launcher(cfg), "score-checkpoints", "--perturb", str(source.dir / "perturb"),
                         "--scores", str(inp.score.dir), "--out", str(step.dir / "temp")]
            if gaussian is not None:
                step.argv += ["--gaussian", str(gaussian.dir / "temp")]
            step.add_options("score", scoring)
            step.add_options(f"arms.{arm.name}", extra)
            return step

        deps_hashes = [d.hash for d in (source, gaussian) if d is not None]
        step, made = shared_step(inp, f"checkpoints {json_key([key, deps_hashes])}", make)
        new.extend(made)
        return step

    fixed = "seed" in perturb["gaussian"]
    g_perturb = perturbation("gaussian", int(perturb["gaussian"].get("seed", seed)), fixed, None)
    g_scores = checkpoint_scores("gaussian", g_perturb, None, fixed)
    theta_f = _temp_target(arm, seed, inp, target)
    d_perturb = perturbation("directional", int(perturb["directional"].get("seed", seed)), False, theta_f)
    d_scores = checkpoint_scores("directional", d_perturb, g_scores, False)
    key = {"strategy": arm.strategy, "options": options, "n": arm_rows(arm, cfg), "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score, d_scores], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--scores", str(inp.score.dir), "--temp-scores", str(d_scores.dir / "temp"),
                 "--strategy", arm.strategy, "--n", str(arm_rows(arm, cfg)), "--seed", str(seed), "--name", name,
                 "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    step.add_options(f"arms.{arm.name}", options)
    return Subset(step, name, step.dir, new)
