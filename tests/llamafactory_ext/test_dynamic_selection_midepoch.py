"""``dynamic_selection: {every: N}`` with stage boundaries inside epochs, on the tiny model (CPU, fp32): 8 rows per
stage, 1 row per device x 2 accumulated = 4 optimizer steps per epoch, 2 epochs = 8 steps, a stage every 3 steps:
stage 1 starts at step 3 (epoch 0.75), stage 2 at step 6 (epoch 1.5). In-loop scores = ``data-select score`` on the
checkpoint saved at the boundary step, steps and learning rates = the static recipe's, resume at a mid-epoch
boundary and mid-stage = the uninterrupted run, 2 torchrun ranks cutting an epoch at the same step."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
from dynamic_fixtures import make_pool, ok, recipe, score, stage_of, train, trainer_log
from safetensors.torch import load_file

from data_selection.options.select import SelectOptions
from data_selection.select import run_select

pytestmark = pytest.mark.slow

STAGES = {0: 0, 1: 3, 2: 6}  # stage -> the global step it starts at
SHAPE = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 2, "num_train_epochs": 2}


@pytest.fixture(scope="module")
def run(tiny_qwen_dir, tmp_path_factory):
    """The pool, its base scores, and one run with a stage every 3 steps and a checkpoint per step."""
    root = make_pool(tmp_path_factory.mktemp("midepoch"))
    score(tiny_qwen_dir, root, root / "scores" / "base")
    args = recipe(tiny_qwen_dir, root, root / "out", n=8, every=3)
    args.update(SHAPE, save_strategy="steps", save_steps=1)
    ok(train(root, args))
    return root, args


def test_stages_start_mid_epoch_at_every_third_step(run):
    root, _ = run
    out = root / "out"
    assert sorted(p.name for p in (out / "selection").iterdir()) == ["stage-0", "stage-1", "stage-2"]
    for k, step in STAGES.items():
        m = stage_of(out, k)
        assert m["global_step"] == step and m["seed"] == 42 + k and m["every"] == 3
        assert len(m["ids"]) == m["num_rows"] == 8
    assert [stage_of(out, k)["epoch"] for k in STAGES] == [0, pytest.approx(0.75), pytest.approx(1.5)]


def test_in_loop_scores_equal_data_select_score_on_the_mid_epoch_checkpoint(run):
    """Stage 1 was scored at step 3, inside epoch 0: the HF checkpoint saved at step 3 scores the same losses."""
    root, _ = run
    offline = score(root / "out" / "checkpoint-3", root, root / "scores" / "offline-3")
    ours = pd.read_parquet(root / "out" / "selection" / "stage-1" / "scores.parquet").set_index("id")
    theirs = pd.read_parquet(offline / "scores.parquet").set_index("id")
    assert sorted(ours.index) == sorted(theirs.index) and len(ours) == 24
    for col in ("loss_mean", "loss_sum", "loss_first_100"):
        assert (ours[col] - theirs.loc[ours.index, col]).abs().max() <= 1e-5, col
    base = pd.read_parquet(root / "scores" / "base" / "scores.parquet").set_index("id")
    assert (ours["loss_mean"] - base.loc[ours.index, "loss_mean"]).abs().max() > 1e-3  # the weights moved


def test_steps_and_learning_rates_equal_the_static_recipe(run):
    root, args = run
    run_select(SelectOptions(name="tiny_zpd8", scores=str(root / "scores" / "base"), strategy="zpd", n=8, seed=42,
                             dataset_info=str(root / "dataset_info.json")))
    assert (root / "data" / "tiny_zpd8.jsonl").read_bytes() == (
        root / "out" / "selection" / "stage-0" / "subset.jsonl").read_bytes()
    static = {k: v for k, v in args.items() if k != "dynamic_selection"}
    static.update(dataset="tiny_zpd8", output_dir=str(root / "static"), save_strategy="no")
    ok(train(root, static, "static.yaml"))
    ours, theirs = trainer_log(root / "out"), trainer_log(root / "static")
    assert [r["current_steps"] for r in ours if "loss" in r] == [r["current_steps"] for r in theirs if "loss" in r]
    assert {r["total_steps"] for r in ours} == {r["total_steps"] for r in theirs} == {8}
    assert [r["lr"] for r in ours if "lr" in r] == [r["lr"] for r in theirs if "lr" in r]


@pytest.mark.parametrize("checkpoint, kept", [(3, (0,)), (5, (0, 1))], ids=["mid-epoch-boundary", "mid-stage"])
def test_resume_inside_an_epoch_draws_the_same_subsets_and_weights(run, checkpoint, kept):
    """Killed after step 3 (the boundary of stage 1, inside epoch 0: stage 1 not drawn yet) or step 5 (inside stage 1
    and epoch 1): the trainer skips the epoch's consumed batches, the slots it skips are the ones the uninterrupted
    run trained, and the run ends with the same stages and weights. From step 3 this also proves that the
    uninterrupted run trained stage 1's rows at step 3 although its loader had fetched that step's first
    micro-batch while stage 1 did not exist yet (the resumed run fetches it after drawing stage 1)."""
    root, args = run
    done, out = root / "out", root / f"resumed-{checkpoint}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(done / f"checkpoint-{checkpoint}", out / f"checkpoint-{checkpoint}")
    for k in kept:
        shutil.copytree(done / "selection" / f"stage-{k}", out / "selection" / f"stage-{k}")
    before = {k: (out / "selection" / f"stage-{k}" / "manifest.json").stat().st_mtime_ns for k in kept}
    resumed = {**args, "output_dir": str(out), "save_strategy": "no", "overwrite_output_dir": False,
               "resume_from_checkpoint": str(out / f"checkpoint-{checkpoint}")}
    ok(train(root, resumed, f"resume-{checkpoint}.yaml"))
    for k in kept:  # reused, not re-scored
        assert (out / "selection" / f"stage-{k}" / "manifest.json").stat().st_mtime_ns == before[k]
    for k in STAGES:
        assert stage_of(out, k)["ids"] == stage_of(done, k)["ids"], k
        assert stage_of(out, k)["global_step"] == stage_of(done, k)["global_step"]
    a, b = load_file(done / "model.safetensors"), load_file(out / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


def test_two_ranks_cut_an_epoch_at_the_same_step(run):
    """torchrun, 2 CPU ranks, 2 micro-batches accumulated: 2 steps per epoch, stage 1 at step 3 (inside epoch 1); both
    ranks draw it at that step and its scores equal ``data-select score`` on the checkpoint of step 3."""
    root, args = run
    out = root / "two-ranks"
    two = {**args, "output_dir": str(out), "save_strategy": "steps", "save_steps": 3}
    ok(train(root, two, "two.yaml", env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}))
    assert {r["total_steps"] for r in trainer_log(out)} == {4}  # 8 rows / (2 ranks x 1 per device x 2 accumulated) x 2
    assert sorted(p.name for p in (out / "selection").iterdir()) == ["stage-0", "stage-1"]
    assert stage_of(out, 1)["global_step"] == 3 and stage_of(out, 1)["epoch"] == pytest.approx(1.5)
    offline = score(out / "checkpoint-3", root, root / "scores" / "offline-two")
    ours = pd.read_parquet(out / "selection" / "stage-1" / "scores.parquet").set_index("id")
    theirs = pd.read_parquet(offline / "scores.parquet").set_index("id")
    assert len(ours) == 24 and (ours["loss_mean"] - theirs.loc[ours.index, "loss_mean"]).abs().max() <= 1e-5
