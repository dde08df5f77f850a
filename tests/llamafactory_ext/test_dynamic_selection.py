"""``dynamic_selection`` in real training runs on the tiny model (CPU, fp32): in-loop scores = ``data-select score``
on the checkpoint of the stage boundary, steps and learning rates = the static recipe's, stage folders, resume."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
from dynamic_fixtures import make_pool, ok, recipe, score, stage_of, train, trainer_log
from safetensors.torch import load_file

from data_selection.options.select import SelectOptions
from data_selection.scores_table import STAT_COLUMNS
from data_selection.select import run_select
from llamafactory_ext.train.dynamic import stages
from llamafactory_ext.train.dynamic.options import DynamicSelection

pytestmark = pytest.mark.slow

STAGES = (0, 1, 2)  # 3 epochs of 2 steps, a stage per epoch


@pytest.fixture(scope="module")
def run(tiny_qwen_dir, tmp_path_factory):
    """The pool, its base scores, and one dynamic run keeping every stage's weights and a checkpoint per step."""
    root = make_pool(tmp_path_factory.mktemp("dynamic"))
    score(tiny_qwen_dir, root, root / "scores" / "base")
    args = recipe(tiny_qwen_dir, root, root / "out", save_stage_checkpoints=True)
    args.update(save_strategy="steps", save_steps=1)
    ok(train(root, args))
    return root, args


def test_stage_folders(run):
    root, _ = run
    out = root / "out"
    assert sorted(p.name for p in (out / "selection").iterdir()) == ["stage-0", "stage-1", "stage-2"]
    for k in STAGES:
        m = stage_of(out, k)
        assert m["stage"] == k and m["seed"] == 42 + k and m["global_step"] == 2 * k
        assert len(m["ids"]) == m["num_rows"] == 4 and m["funnel"]["band"] == 12
        assert m["thresholds"]["low_value"] <= m["thresholds"]["high_value"]
        assert (m["flows"] is None) == (k == 0)
    flow = stage_of(out, 1)["flows"]
    assert flow["learned"] + flow["rose_above"] + flow["stayed"] + flow["not_rescored"] == 4
    assert flow["kept"] + flow["entered"] == 4
    # training really learns: the in-loop band moves down from the base model's
    assert stage_of(out, 2)["thresholds"]["high_value"] < stage_of(out, 0)["thresholds"]["low_value"]


@pytest.mark.parametrize("k", [1, 2])
def test_in_loop_scores_equal_data_select_score_on_the_boundary_weights(run, k):
    root, _ = run
    d = root / "out" / "selection" / f"stage-{k}"
    offline = score(d / "model", root, root / "scores" / f"offline-{k}")
    ours = pd.read_parquet(d / "scores.parquet").set_index("id")
    theirs = pd.read_parquet(offline / "scores.parquet").set_index("id")
    assert sorted(ours.index) == sorted(theirs.index) and len(ours) == 24
    for col in ("loss_mean", "loss_sum", "loss_first_100", "loss_first_1000", *STAT_COLUMNS):
        assert (ours[col] - theirs.loc[ours.index, col]).abs().max() <= 1e-5, col  # rank and Brier: re-computed too
    # the weights really moved between stages: not the base scores again
    base = pd.read_parquet(root / "scores" / "base" / "scores.parquet").set_index("id")
    assert (ours["loss_mean"] - base.loc[ours.index, "loss_mean"]).abs().max() > 1e-3


def test_steps_and_learning_rates_equal_the_static_recipe(run):
    root, args = run
    run_select(SelectOptions(name="tiny_zpd", scores=str(root / "scores" / "base"), strategy="zpd", n=4, seed=42,
                             dataset_info=str(root / "dataset_info.json")))
    assert (root / "data" / "tiny_zpd.jsonl").read_bytes() == (
        root / "out" / "selection" / "stage-0" / "subset.jsonl").read_bytes()
    static = {k: v for k, v in args.items() if k != "dynamic_selection"}
    static.update(dataset="tiny_zpd", output_dir=str(root / "static"), save_strategy="no")
    ok(train(root, static, "static.yaml"))
    ours, theirs = trainer_log(root / "out"), trainer_log(root / "static")
    assert [r["current_steps"] for r in ours if "loss" in r] == [r["current_steps"] for r in theirs if "loss" in r]
    assert {r["total_steps"] for r in ours} == {r["total_steps"] for r in theirs} == {6}
    assert [r["lr"] for r in ours if "lr" in r] == [r["lr"] for r in theirs if "lr" in r]


@pytest.mark.parametrize("checkpoint, kept", [(3, (0, 1)), (2, (0,))], ids=["mid-stage", "at-boundary"])
def test_resume_reuses_finished_stages_and_draws_the_same_subsets(run, checkpoint, kept):
    """Killed after step ``checkpoint`` with stages ``kept`` on disk: the resumed run scores only the missing
    stages, draws the same subsets as the uninterrupted run and ends with the same weights."""
    root, args = run
    done, out = root / "out", root / f"resumed-{checkpoint}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(done / f"checkpoint-{checkpoint}", out / f"checkpoint-{checkpoint}")
    for k in kept:
        shutil.copytree(done / "selection" / f"stage-{k}", out / "selection" / f"stage-{k}")
    before = {k: (out / "selection" / f"stage-{k}" / "manifest.json").stat().st_mtime_ns for k in kept}
    resumed = {**args, "output_dir": str(out), "save_strategy": "no", "overwrite_output_dir": False,
               "resume_from_checkpoint": str(out / f"checkpoint-{checkpoint}")}
    resumed["dynamic_selection"] = {**args["dynamic_selection"], "save_stage_checkpoints": False}
    ok(train(root, resumed, f"resume-{checkpoint}.yaml"))
    for k in kept:  # reused, not re-scored
        assert (out / "selection" / f"stage-{k}" / "manifest.json").stat().st_mtime_ns == before[k]
    for k in STAGES:
        assert stage_of(out, k)["ids"] == stage_of(done, k)["ids"], k
        assert stage_of(out, k)["global_step"] == stage_of(done, k)["global_step"]
    a, b = load_file(done / "model.safetensors"), load_file(out / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


def test_two_ranks_score_their_shares_and_equal_data_select_score(run):
    """torchrun, 2 CPU ranks: each rank scores half the candidates, the merge equals the offline scorer."""
    root, args = run
    out = root / "two-ranks"
    two = {**args, "output_dir": str(out), "save_strategy": "no"}
    ok(train(root, two, "two.yaml", env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}))
    assert {r["total_steps"] for r in trainer_log(out)} == {3}  # 4 rows per stage / (2 ranks x 2 per device)
    d = out / "selection" / "stage-1"
    assert stage_of(out, 1)["global_step"] == 1
    offline = score(d / "model", root, root / "scores" / "offline-two")
    ours = pd.read_parquet(d / "scores.parquet").set_index("id")
    theirs = pd.read_parquet(offline / "scores.parquet").set_index("id")
    assert len(ours) == 24 and (ours["loss_mean"] - theirs.loc[ours.index, "loss_mean"]).abs().max() <= 1e-5


def test_every_n_steps_and_k_candidates(run):
    """every: 4 steps (2 epochs) -> stages 0 and 1 only; candidates: 16 -> 16 rows re-scored, drawn with seed + 1."""
    root, args = run
    out = root / "every4"
    dyn = {**args["dynamic_selection"], "every": 4, "candidates": 16, "save_stage_checkpoints": False}
    ok(train(root, {**args, "output_dir": str(out), "save_strategy": "no", "dynamic_selection": dyn}, "every4.yaml"))
    assert sorted(p.name for p in (out / "selection").iterdir()) == ["stage-0", "stage-1"]
    m = stage_of(out, 1)
    assert m["global_step"] == 4 and m["candidates"] == 16 and m["funnel"]["band"] == 8
    assert len(pd.read_parquet(out / "selection" / "stage-1" / "scores.parquet")) == 16
    assert not (out / "selection" / "stage-1" / "model").exists()


def test_rsr_key_ranks_every_stage_by_the_current_weights_ranks(run):
    """key: rsr in the loop: each stage's subset is `data-select select --key rsr` on that stage's own table, whose
    rank columns come from the weights of the boundary (not the base model's)."""
    root, args = run
    out = root / "rsr"
    dyn = {**args["dynamic_selection"], "key": "rsr", "save_stage_checkpoints": False}
    ok(train(root, {**args, "num_train_epochs": 2, "output_dir": str(out), "save_strategy": "no",
                    "dynamic_selection": dyn}, "rsr.yaml"))
    base = pd.read_parquet(root / "scores" / "base" / "scores.parquet").set_index("id")
    for k in (0, 1):
        d = out / "selection" / f"stage-{k}"
        m = stage_of(out, k)
        assert m["key"] == "rsr"
        opts = SelectOptions(name=f"rsr{k}", scores=str(root / "scores" / "base"), strategy="zpd", n=4, seed=42 + k,
                             key="rsr", dataset_info=str(root / f"rsr{k}_info.json"))
        if k == 0:  # stage 0 = data-select select on the base scores, byte for byte
            run_select(opts)
            assert (d / "subset.jsonl").read_bytes() == (root / "data" / "rsr0.jsonl").read_bytes()
            continue
        table = pd.read_parquet(d / "scores.parquet")
        assert (table.set_index("id")["rank_mean"] - base.loc[table["id"], "rank_mean"]).abs().max() > 1e-3
        again = stages.draw(table, DynamicSelection(**{**dyn, "n": 4}), 1)
        assert list(again.ids) == m["ids"]
