"""`llamafactory-ext study`: configuration errors, hash-keyed steps, the full-scale dry run, and a miniature
study on the tiny model that is killed mid-way and finished by a re-run without recomputing anything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

from data_selection.command_line import UserError
from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies

MINI = {
    "name": "mini",
    "template": "qwen",
    "cutoff_len": 256,
    "system_prompt": "Please reason step by step, and put your final answer within \\boxed{}.",
    "pool": {"demo_data": {"pool_size": 40, "eval_size": 5, "seed": 0}},
    "score": {"batch_tokens": 4096, "shard_rows": 16},
    "subset_size": 8,
    "seeds": [1, 2],
    "arms": {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd", "low": 0.25, "high": 0.75}},
    "train": {"recipe": "yaml_recipes/demo_zpd.yaml",
              "overrides": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "logging_steps": 1}},
    "eval": {"suite": "heldout", "max_new_tokens": 4, "temperature": 0.0, "batch_size": 8},
    "analysis": {"reference": "random", "baseline": "", "draws": 500},
}


def write_study(tmp_path: Path, model: str, **changes) -> Path:
    cfg = {**MINI, "model": model, "out": str(tmp_path / "out"), **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # recipes are named relative to the repository root, as users run studies


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seedz": [1]}, "unknown key 'seedz' (did you mean 'seeds'?)"),
        ({"seeds": [1, 1]}, "seeds must be a list of distinct integers"),
        ({"arms": {"best": {"strategy": "bestest"}}}, "arms.best: unknown strategy 'bestest'"),
        ({"arms": {"zpd": {}}}, "arms.zpd needs a strategy"),
        ({"analysis": {"reference": "nope"}}, "analysis.reference 'nope' is not one of the arms"),
        ({"eval": {"suit": "heldout"}}, "eval: unknown key 'suit' (did you mean 'suite'?)"),
        ({"pool": {"dataset": "x.jsonl", "demo_data": {}}}, "pool needs exactly one of demo_data"),
        ({"train": {"recipe": "yaml_recipes/nope.yaml"}}, "train.recipe yaml_recipes/nope.yaml not found"),
        ({"train": {"recipe": "yaml_recipes/demo_zpd.yaml", "overrides": {"seed": 3}}},
         "train.overrides.seed: the study sets each run's seed"),
        ({"train": {"recipe": "yaml_recipes/demo_zpd.yaml", "overrides": {"data_seed": 3}}},
         "train.overrides.data_seed: the study sets each run's seed"),
    ],
)
def test_bad_study_files_are_clear_errors_naming_the_key(tmp_path, change, message):
    path = write_study(tmp_path, "some/model", **change)
    with pytest.raises(UserError) as err:
        load_study(path, known_strategies())
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_recipe_that_sets_data_seed_is_refused(tmp_path):
    """data_seed makes the shuffle sampler ignore ``seed``: every study seed would train in one order."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO_ROOT / "yaml_recipes" / "demo_zpd.yaml").read_text() + "\ndata_seed: 7\n")
    path = write_study(tmp_path, "some/model", train={"recipe": str(recipe)})
    with pytest.raises(UserError, match="sets data_seed: every study seed would train in one data order"):
        load_study(path, known_strategies())


def _hashes(path: Path) -> dict[str, str]:
    return {s.label: s.hash for s in build_plan(load_study(path, known_strategies()))}


def test_a_changed_setting_recomputes_exactly_what_it_affects(tmp_path, tiny_qwen_dir):
    base = _hashes(write_study(tmp_path, str(tiny_qwen_dir)))
    assert len(base) == 1 + 1 + 2 * 2 * 3  # data, score, (select, train, eval) x 2 arms x 2 seeds

    def changed(**kw) -> set[str]:
        new = _hashes(write_study(tmp_path, str(tiny_qwen_dir), **kw))
        assert new.keys() == base.keys()
        return {label.split()[0] for label in base if new[label] != base[label]}

    assert changed(eval={**MINI["eval"], "max_new_tokens": 8}) == {"eval"}
    assert changed(subset_size=6) == {"select", "train", "eval"}
    assert changed(train={**MINI["train"], "overrides": {"learning_rate": 1e-3}}) == {"train", "eval"}
    assert changed(score={"batch_tokens": 2048}) == {"pool", "select", "train", "eval"}  # "pool scores"
    assert changed(pool={"demo_data": {"pool_size": 41, "eval_size": 5, "seed": 0}}) == {
        "demo", "pool", "select", "train", "eval"}
    seeds = _hashes(write_study(tmp_path, str(tiny_qwen_dir), seeds=[1, 2, 3]))
    assert {k: v for k, v in seeds.items() if k in base} == base  # adding a seed reuses the others


def test_full_scale_study_dry_run_prints_every_command_and_gpu_hours(capsys):
    assert lfx_main(["study", "studies/zpd_qwen3b.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "torchrun --nproc-per-node 8 -m data_selection.cli score --model Qwen/Qwen2.5-3B-Instruct " \
           "--dataset acereason11_100k --template qwen --cutoff_len 16384" in out
    for arm in ("random", "zpd"):
        for seed in (42, 43, 44):
            assert f"--strategy {arm} --n 15000 --seed {seed}" in out
            assert f"to run train {arm} seed {seed}  (est. GPU-hours 10.05)" in out
    # random, zpd and the length-matched random arm, 3 seeds each
    assert out.count("FORCE_TORCHRUN=1 NPROC_PER_NODE=8 llamafactory-cli train yaml_recipes/advanced.yaml") == 9
    assert out.count("llamafactory-ext eval --model") == 12 and "--suite reasoning" in out  # base sampled per seed
    score_h = 100_000 * 6000 / 32_400 / 3600
    train_h = 9 * 15_000 * 6000 * 3 / 7460 / 3600
    assert f"score {score_h:,.2f}" in out and f"train {train_h:,.2f}" in out and "eval 72.00" in out
    assert f"total {score_h + train_h + 72:,.2f}" in out
    assert "assumption: tokens_per_row = 6,000" in out


@pytest.mark.slow
def test_miniature_study_survives_a_kill_and_recomputes_nothing(tmp_path, tiny_qwen_dir):
    """2 arms x 2 seeds on the tiny model: SIGKILL after the first training run, re-run to the end."""
    path = write_study(tmp_path, str(tiny_qwen_dir))
    cmd = [sys.executable, "-m", "llamafactory_ext.cli", "study", str(path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    train_dir = tmp_path / "out" / "steps" / "train"
    deadline = time.time() + 900
    while not list(train_dir.glob("*/step.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and whatever step it was running
    proc.wait()
    finished = {p: p.read_text() for p in (tmp_path / "out" / "steps").glob("*/*/step.json")}
    assert any("/train/" in str(p) for p in finished) and len(finished) < 14

    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(finished)} were done already" in done.stdout
    for p, text in finished.items():  # untouched: same record, same finish time
        assert p.read_text() == text
    records = list((tmp_path / "out" / "steps").glob("*/*/step.json"))
    assert len(records) == 14  # data, score, (select, train, eval) x 2 arms x 2 seeds
    summary = json.loads((tmp_path / "out" / "reports" / "mini" / "summary.json").read_text())
    (task,) = summary["tasks"].values()
    assert task["problems"] == 5 and task["replicates"] == {"random": 2, "zpd": 2}
    assert "zpd - random" in task["differences"]
    report = (tmp_path / "out" / "reports" / "mini" / "report.md").read_text()
    assert report.count("data-select select --scores") == 4 and "llamafactory-cli train" in report
    assert (tmp_path / "out" / "reports" / "mini" / "arms.png").stat().st_size > 10_000
    page = (tmp_path / "out" / "reports" / "mini" / "report.html").read_text()
    assert "selections/zpd/report.html" in page and (tmp_path / "out" / "reports" / "mini" / "selections" / "zpd"
                                                     / "report.html").is_file()
    assert "this run's wall time" in report
    again = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert "0 step(s) ran, 14 were done already" in again.stdout
    rebuilt = (tmp_path / "out" / "reports" / "mini" / "report.md").read_text()
    assert "this run's wall time" not in rebuilt and "min of compute in all." in rebuilt  # no 0.0-min wall time


def test_pass_cv_and_pruning_arms_build_on_shared_and_sibling_steps(tmp_path, tiny_qwen_dir):
    arms = {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd"},
            "pass_cv": {"strategy": "pass-cv", "cv_thresholds": "math=0"},
            "zpd_pir30": {"strategy": "prune-steps", "from": "zpd", "ratio": 0.3}}
    steps = build_plan(load_study(write_study(tmp_path, str(tiny_qwen_dir), arms=arms), known_strategies()))
    verify = [s for s in steps if s.kind == "verify"]
    assert len(verify) == 1  # one verification of the pool serves every seed
    assert verify[0].argv[:4] == ["data-select", "verify", "--dataset", str(steps[0].dir / "pool.jsonl")]
    for seed in (1, 2):
        pc = next(s for s in steps if s.label == f"select pass_cv seed {seed}")
        assert pc.deps[1] is verify[0] and "--verified" in pc.argv and pc.argv[pc.argv.index("--strategy") + 1] == "pass-cv"
        assert pc.argv[-2:] == ["--cv_thresholds", "math=0"]
        prune = next(s for s in steps if s.label == f"prune zpd_pir30 seed {seed}")
        zpd = next(s for s in steps if s.label == f"select zpd seed {seed}")
        assert prune.deps == [zpd] and prune.argv[prune.argv.index("--dataset_dir") + 1] == str(zpd.dir)
        assert steps.index(zpd) < steps.index(prune) < steps.index(
            next(s for s in steps if s.label == f"train zpd_pir30 seed {seed}"))
    bad = write_study(tmp_path, str(tiny_qwen_dir), arms={"random": {"strategy": "random"},
                                                          "p": {"strategy": "prune-steps", "from": "zpd"}})
    with pytest.raises(UserError, match="`from` must name an arm listed before it"):
        build_plan(load_study(bad, known_strategies()))


def test_temp_arm_perturbs_towards_the_random_arms_model_of_the_same_seed(tmp_path, tiny_qwen_dir):
    from llamafactory_ext.study.estimate import gpu_hours

    temp = {"strategy": "temp", "gaussian": {"num": 4, "start": 0.01}, "directional": {"num": 3}, "temp_checkpoint": 2}
    estimate = {"pool_rows": 1000, "tokens_per_row": 600, "prompt_tokens_per_row": 100, "score_tokens_per_s": 1000,
                "temp_survivor_share": 0.5}
    cfg = load_study(write_study(tmp_path, str(tiny_qwen_dir), arms={"random": {"strategy": "random"}, "temp": temp},
                                 estimate=estimate), known_strategies())
    steps = build_plan(cfg)
    (score,) = [s for s in steps if s.kind == "score"]
    by_label = {s.label: s for s in steps}
    assert len(by_label) == len(steps)  # no step twice
    gaussian_perturbs = [s for s in steps if s.label.startswith("perturb gaussian")]
    assert len(gaussian_perturbs) == 2  # no gaussian seed in the arm: every replicate draws its own noise
    for seed in (1, 2):
        gp, gs = by_label[f"perturb gaussian seed {seed}"], by_label[f"checkpoint scores gaussian seed {seed}"]
        dp, ds = by_label[f"perturb directional seed {seed}"], by_label[f"checkpoint scores directional seed {seed}"]
        theta_f, sel = by_label[f"train random seed {seed}"], by_label[f"select temp seed {seed}"]
        assert gp.argv == ["data-select", "perturb", "--kind", "gaussian", "--model", str(tiny_qwen_dir), "--out",
                           str(gp.dir / "perturb"), "--seed", str(seed), "--num", "4", "--start", "0.01"]
        assert gs.deps == [score, gp] and gs.argv == [
            "data-select", "score-checkpoints", "--perturb", str(gp.dir / "perturb"), "--scores", str(score.dir),
            "--out", str(gs.dir / "temp"), "--batch_tokens", "4096", "--shard_rows", "16"]  # the study's scoring
        assert dp.deps == [theta_f] and dp.argv[dp.argv.index("--target") + 1] == str(theta_f.dir)
        assert dp.argv[-4:] == ["--seed", str(seed), "--num", "3"]
        assert ds.deps == [score, dp, gs]
        assert ds.argv[ds.argv.index("--gaussian") + 1] == str(gs.dir / "temp")
        assert ds.argv[-2:] == ["--temp_checkpoint", "2"]  # scores exactly the survivors select will see
        assert sel.deps == [score, ds] and sel.argv[sel.argv.index("--temp-scores") + 1] == str(ds.dir / "temp")
        assert sel.argv[sel.argv.index("--strategy"):sel.argv.index("--name")] == [
            "--strategy", "temp", "--n", "8", "--seed", str(seed)]
        assert steps.index(theta_f) < steps.index(dp) < steps.index(ds) < steps.index(sel) < steps.index(
            by_label[f"train temp seed {seed}"])
        assert gpu_hours(gs, cfg) == pytest.approx(4 * 1000 * (100 + 100) / 1000 / 3600)
        assert gpu_hours(ds, cfg) == pytest.approx(3 * 500 * (100 + 500) / 1000 / 3600) and gpu_hours(dp, cfg) == 0
    assert by_label["perturb gaussian seed 1"].hash != by_label["perturb gaussian seed 2"].hash

    fixed = {**temp, "gaussian": {"num": 4, "seed": 7}}
    steps = build_plan(load_study(write_study(tmp_path, str(tiny_qwen_dir), arms={
        "random": {"strategy": "random"}, "temp": fixed}), known_strategies()))
    (gp,) = [s for s in steps if s.label.startswith("perturb gaussian")]  # made once for every seed
    (gs,) = [s for s in steps if s.label.startswith("checkpoint scores gaussian")]
    assert gp.argv[-4:] == ["--seed", "7", "--num", "4"] and gp.seed is None
    directional = [s for s in steps if s.label.startswith("checkpoint scores directional")]
    assert len(directional) == 2 and all(s.deps[2] is gs for s in directional)

    for arms, message in (({"temp": temp}, "needs exactly one arm with strategy random listed before it (there is "
                                           "none)"),
                          ({"temp": temp, "uniform": {"strategy": "random"}},  # the YAML lists arms sorted
                           "target arm 'uniform' must be a trained arm listed before 'temp'"),
                          ({"random": {"strategy": "random"}, "temp": {**temp, "gaussian": {"sigma": 1}}},
                           "arms.temp.gaussian: unknown key 'sigma'")):
        path = write_study(tmp_path, str(tiny_qwen_dir), arms=arms, analysis={"reference": "", "baseline": ""})
        with pytest.raises(UserError, match=re.escape(message)):
            build_plan(load_study(path, known_strategies()))


def test_demo_all_reuses_every_step_of_the_demo_study_and_adds_one_arm_per_strategy():
    """`make study-all` after `make study` must only run the new arms: same settings, same step hashes."""
    demo = load_study(REPO_ROOT / "studies" / "demo.yaml", known_strategies())
    demo_all = load_study(REPO_ROOT / "studies" / "demo_all.yaml", known_strategies())
    assert demo.out == demo_all.out and demo.report_dir != demo_all.report_dir
    dirs_all = {s.dir for s in build_plan(demo_all)}
    missing = [s.label for s in build_plan(demo) if s.dir not in dirs_all]
    assert not missing, f"demo_all.yaml would recompute {missing}: its shared settings differ from demo.yaml"
    strategies = {a.strategy for a in demo_all.trained_arms}
    assert strategies == known_strategies(), f"demo_all.yaml lacks an arm for {known_strategies() - strategies}"


def test_a_recipe_comment_keeps_the_trainings_and_a_changed_value_reruns_them(tmp_path):
    """The train step's hash reads the recipe's settings, not its bytes: fixing a header comment must not re-run
    hours of training; changing learning_rate must."""
    recipe = tmp_path / "recipe.yaml"
    text = (REPO_ROOT / "yaml_recipes" / "demo_zpd.yaml").read_text()
    recipe.write_text(text)
    path = write_study(tmp_path, "some/model", train={"recipe": str(recipe)})
    before = {k: v for k, v in _hashes(path).items() if k.startswith("train")}
    recipe.write_text("# a new header line\n" + text.replace("\n#", "\n#  ", 3))
    assert {k: v for k, v in _hashes(path).items() if k.startswith("train")} == before
    recipe.write_text(text.replace("learning_rate:", "learning_rate: 3.0e-5 #", 1))
    after = {k: v for k, v in _hashes(path).items() if k.startswith("train")}
    assert before and all(after[k] != before[k] for k in before)
