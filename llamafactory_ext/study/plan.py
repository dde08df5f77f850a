"""From a study configuration to the ordered list of steps: the same commands a user would type.

::

    data (demo pool + held-out set) ─┐
    model (embedded checkpoint)     ─┴─ score ── select(arm, seed) ── train(arm, seed) ── eval(arm, seed)
                                                        base model ─────────────────────── eval(base)

Each arm's steps are built by the builder registered for its strategy (``ARM_BUILDERS``): a plain
`data-select select` strategy by :func:`select_steps`; strategies that need more inputs (perturbed
checkpoints, verified answers, pruned responses) register their own builder returning the step that makes
the subset, so training and evaluation stay the same for every arm. A temp arm also reads another arm's
trained model (θf of TEMP's direction: the random arm's, same seed), so it must come after that arm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafactory_ext.study.config import BASE_ARM, EMBEDDED_PREFIX, ArmConfig, StudyConfig
from llamafactory_ext.study.steps import Step, file_digest


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


def _opt(name: str) -> str:
    return f"--{name}"


def _model(cfg: StudyConfig) -> tuple[str, dict[str, Any], Step | None]:
    if cfg.model.startswith(EMBEDDED_PREFIX):
        which = cfg.model[len(EMBEDDED_PREFIX):]
        if which != "smollm2":
            from data_selection.command_line import UserError

            raise UserError(f"{cfg.source}: model {cfg.model!r}: the embedded model is 'embedded:smollm2'")
        from data_selection.embedded import smollm2_gguf_path

        gguf = smollm2_gguf_path()
        key = {"embedded": which, "gguf": gguf.name, "bytes": gguf.stat().st_size}
        step = Step("model", "SmolLM2-135M-Instruct", key, [], cfg.out)
        step.argv = ["data-select", "prepare-model", "--out_dir", str(step.dir / "model")]
        return str(step.dir / "model"), {"step": step.hash}, step
    path = Path(cfg.model)
    if path.is_dir():
        from data_selection.scoring.identity import model_identity

        return str(path), model_identity(str(path), None), None
    return cfg.model, {"hub": cfg.model}, None


def _data(cfg: StudyConfig) -> tuple[str, dict[str, Any], Step | None]:
    if cfg.pool.demo_data is not None:
        opts = dict(cfg.pool.demo_data)
        step = Step("data", "demo pool", {"make-demo-data": opts}, [], cfg.out)
        step.argv = ["data-select", "make-demo-data", "--out_dir", str(step.dir)]
        for k, v in opts.items():
            step.argv += [_opt(k), str(v)]
        return str(step.dir / "pool.jsonl"), {"step": step.hash}, step
    key: dict[str, Any] = {"dataset": cfg.pool.dataset, "dataset_dir": cfg.pool.dataset_dir, "columns": cfg.pool.columns}
    local = Path(cfg.pool.dataset)
    if local.is_file():
        key["digest"] = file_digest(local)
    return str(cfg.pool.dataset), key, None


def _launcher(cfg: StudyConfig) -> list[str]:
    """data-select, under torchrun when the study scores on several GPUs."""
    if cfg.gpus > 1:
        return ["torchrun", "--nproc-per-node", str(cfg.gpus), "-m", "data_selection.cli"]
    return ["data-select"]


def _score(cfg: StudyConfig, model_path: str, model_key, model_step, pool: str, pool_key, data_step) -> Step:
    key = {"model": model_key, "template": cfg.template, "cutoff_len": cfg.cutoff_len,
           "system_prompt": cfg.system_prompt, "pool": pool_key, "options": cfg.score}
    deps = [s for s in (model_step, data_step) if s is not None]
    step = Step("score", "pool scores", key, deps, cfg.out)
    step.argv = [*_launcher(cfg), "score", "--model", model_path, "--dataset", pool, "--template", cfg.template,
                 "--cutoff_len", str(cfg.cutoff_len), "--out", str(step.dir)]
    if cfg.system_prompt:
        step.argv += ["--system_prompt", cfg.system_prompt]
    if data_step is None:
        step.argv += ["--dataset_dir", cfg.pool.dataset_dir]
        if cfg.pool.columns:
            step.argv += ["--columns", cfg.pool.columns]
    for k, v in cfg.score.items():
        step.argv += [_opt(k), str(v)]
    return step


def subset_name(arm: str, seed: int, step: Step) -> str:
    return f"{arm}_s{seed}_{step.hash[:8]}".replace("-", "_")


def select_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """A `data-select select` strategy (zpd, random, ...) on the pool scores."""
    cfg = inp.cfg
    key = {"strategy": arm.strategy, "options": arm.options, "n": cfg.subset_size, "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--scores", str(inp.score.dir), "--strategy", arm.strategy,
                 "--n", str(cfg.subset_size), "--seed", str(seed), "--name", name,
                 "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    for k, v in arm.options.items():
        step.argv += [_opt(k), str(v)]
    return Subset(step, name, step.dir, [])


def _shared(inp: Inputs, name: str, make: Callable[[], Step]) -> tuple[Step, list[Step]]:
    """A step made once for the whole study: (the step, [it] the first time it is asked for, else [])."""
    if name in inp.shared:
        return inp.shared[name], []
    inp.shared[name] = make()
    return inp.shared[name], [inp.shared[name]]


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
        for k, v in verify_options.items():
            step.argv += [_opt(k), str(v)]
        return step

    verify, new = _shared(inp, f"verify {json_key(verify_options)}", make_verify)
    key = {"strategy": arm.strategy, "options": options, "n": cfg.subset_size, "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score, verify], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--verified", str(verify.dir), "--scores", str(inp.score.dir),
                 "--strategy", arm.strategy, "--n", str(cfg.subset_size), "--seed", str(seed), "--name", name,
                 "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    for k, v in options.items():
        step.argv += [_opt(k), str(v)]
    return Subset(step, name, step.dir, new)


def sibling_subset(arm: ArmConfig, seed: int, inp: Inputs, option: str, what: str) -> tuple[dict[str, Any], Subset]:
    """(the arm's other options, the subset of the arm its ``option`` names, same seed) for arms built on another."""
    from data_selection.command_line import UserError

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
    for k, v in options.items():
        step.argv += [_opt(k), str(v)]
    return Subset(step, name, step.dir, [])


def matched_steps(arm: ArmConfig, seed: int, inp: Inputs) -> Subset:
    """A random draw matching the response-length distribution of another arm's subset of the same seed
    (`select --strategy matched-random --match`, data_selection/selectors/matched_random.py)."""
    from data_selection.subset import subset_paths

    cfg = inp.cfg
    options, base = sibling_subset(arm, seed, inp, "match", "length-matched")
    key = {"strategy": arm.strategy, "match": base.name, "options": options, "n": cfg.subset_size, "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score, base.step], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--scores", str(inp.score.dir), "--strategy", arm.strategy,
                 "--match", str(subset_paths(base.dataset_dir, base.name)["data"]), "--n", str(cfg.subset_size),
                 "--seed", str(seed), "--name", name, "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    for k, v in options.items():
        step.argv += [_opt(k), str(v)]
    return Subset(step, name, step.dir, [])


# TEMP arm options (docs/methods.md §3): `data-select perturb` options per kind; the rest go to `select`
TEMP_PERTURB_OPTIONS = {"gaussian": ("num", "start", "end", "scale", "seed"),
                        "directional": ("num", "min_radius", "max_radius", "seed")}
# `select` options the directional scoring must share, so that it scores exactly the survivors select sees
TEMP_SURVIVOR_OPTIONS = ("over_length", "temp_checkpoint", "temp_init_label_num")
# `data-select score` options of the study that score-checkpoints takes too (the same batches and dtype)
TEMP_SCORING_OPTIONS = ("batch_tokens", "packing", "dtype", "attn", "shard_rows", "chunk_tokens", "device")


def _temp_target(arm: ArmConfig, seed: int, inp: Inputs, target: str | None) -> Step:
    """The train step of the arm whose fine-tuned model is θf for this seed (default: the study's random arm)."""
    from data_selection.command_line import UserError

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
    from data_selection.command_line import UserError

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
            for k, v in opts.items():
                step.argv += [_opt(k), str(v)]
            return step

        step, made = _shared(inp, f"perturb {json_key(key)}", make)
        new.extend(made)
        return step

    def checkpoint_scores(kind: str, source: Step, gaussian: Step | None, shared_seed: bool) -> Step:
        extra = survivor_opts if kind == "directional" else {}
        key = {"kind": kind, "num": perturb[kind].get("num", 8), "options": scoring, "survivors": extra}

        def make() -> Step:
            label = f"checkpoint scores {kind}" + ("" if shared_seed else f" seed {seed}")
            deps = [inp.score, source, *([gaussian] if gaussian else [])]
            step = Step("checkpoints", label, key, deps, cfg.out, seed=None if shared_seed else seed)
            step.argv = [*_launcher(cfg), "score-checkpoints", "--perturb", str(source.dir / "perturb"),
                         "--scores", str(inp.score.dir), "--out", str(step.dir / "temp")]
            if gaussian is not None:
                step.argv += ["--gaussian", str(gaussian.dir / "temp")]
            for k, v in {**scoring, **extra}.items():
                step.argv += [_opt(k), str(v)]
            return step

        deps_hashes = [d.hash for d in (source, gaussian) if d is not None]
        step, made = _shared(inp, f"checkpoints {json_key([key, deps_hashes])}", make)
        new.extend(made)
        return step

    fixed = "seed" in perturb["gaussian"]
    g_perturb = perturbation("gaussian", int(perturb["gaussian"].get("seed", seed)), fixed, None)
    g_scores = checkpoint_scores("gaussian", g_perturb, None, fixed)
    theta_f = _temp_target(arm, seed, inp, target)
    d_perturb = perturbation("directional", int(perturb["directional"].get("seed", seed)), False, theta_f)
    d_scores = checkpoint_scores("directional", d_perturb, g_scores, False)
    key = {"strategy": arm.strategy, "options": options, "n": cfg.subset_size, "seed": seed}
    step = Step("select", f"select {arm.name} seed {seed}", key, [inp.score, d_scores], cfg.out, arm.name, seed)
    name = subset_name(arm.name, seed, step)
    step.argv = ["data-select", "select", "--scores", str(inp.score.dir), "--temp-scores", str(d_scores.dir / "temp"),
                 "--strategy", arm.strategy, "--n", str(cfg.subset_size), "--seed", str(seed), "--name", name,
                 "--dataset_info", str(step.dir / "dataset_info.json"), "--force"]
    for k, v in options.items():
        step.argv += [_opt(k), str(v)]
    return Subset(step, name, step.dir, new)


def json_key(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


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
    from data_selection.selectors import STRATEGIES

    return set(STRATEGIES) | set(ARM_BUILDERS)


def _train(cfg: StudyConfig, arm: ArmConfig, seed: int, subset: Subset, model_path: str, model_key) -> Step:
    t = cfg.train
    key = {"recipe": t.recipe, "recipe_digest": file_digest(t.recipe), "launcher": t.launcher,
           "overrides": t.overrides, "env": t.env, "seed": seed, "model": model_key, "template": cfg.template,
           "cutoff_len": cfg.cutoff_len, "dataset": subset.name}
    step = Step("train", f"train {arm.name} seed {seed}", key, [subset.step], cfg.out, arm.name, seed)
    step.argv = [t.launcher, "train", t.recipe, f"model_name_or_path={model_path}", f"dataset={subset.name}",
                 f"dataset_dir={subset.dataset_dir}", f"template={cfg.template}", f"cutoff_len={cfg.cutoff_len}",
                 f"output_dir={step.dir}", f"seed={seed}", "overwrite_output_dir=true"]
    step.argv += [f"{k}={v}" for k, v in t.overrides.items()]
    step.env = {k: str(v) for k, v in t.env.items()}
    return step


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
    for name in ("preset", "max_new_tokens", "temperature", "top_p", "samples", "batch_size", "max_samples"):
        value = getattr(e, name)
        if value is not None:
            step.argv += [_opt(name), str(value)]
    return step


def build_plan(cfg: StudyConfig) -> list[Step]:
    """Every step of the study in an order that respects dependencies (shared steps first, then per seed)."""
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
            train = _train(cfg, arm, seed, subset, model_path, model_key)
            inp.trained[(arm.name, seed)] = train
            ev = _eval(cfg, f"eval {arm.name} seed {seed}", arm.name, seed, str(train.dir), train,
                       {"train": train.hash}, data_step)
            steps += [*subset.extra_steps, subset.step, train, ev]
    return steps
