"""``dynamic_selection:`` in a train recipe, without a model: keys, bad input named before anything loads, stage 0 =
``data-select select``, seeded stages, flows, the stage sampler."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO_ROOT
from score_fixtures import make_scores_dir

from data_selection.command_line import UserError
from data_selection.options.select import SelectOptions
from data_selection.scores_table import STAT_COLUMNS, load_scored_pool, load_scores
from data_selection.select import run_select
from llamafactory_ext.train.args import extension_help, split_recipe_args
from llamafactory_ext.train.dynamic import stages
from llamafactory_ext.train.dynamic.options import DynamicSelection, brier_top_k, steps_per_epoch
from llamafactory_ext.train.dynamic.runtime import (
    POSITION,
    SLOT,
    PoolDataset,
    SlotCollator,
    Stages,
    StageSampler,
)


@pytest.fixture
def scored(tmp_path):
    """60 rows scored by 'tiny-test-model' (template qwen, cutoff 16384): (scores folder, pool name)."""
    out = make_scores_dir(tmp_path, n_rows=60)
    return out, json.loads((out / "meta.json").read_text())["pool"]["dataset"]


def _recipe(scores, pool, **dyn):
    return {"model_name_or_path": "tiny-test-model", "stage": "sft", "do_train": True, "dataset": "d",
            "template": "qwen", "cutoff_len": 16384, "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1, "num_train_epochs": 3,
            "dynamic_selection": {"pool": pool, "scores": str(scores), "n": 10, **dyn}}


def test_keys_are_removed_before_llamafactory_and_typed(scored, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    scores, pool = scored
    lf, ext = split_recipe_args(_recipe(scores, pool, every="10", candidates="40", save_stage_checkpoints="true"))
    assert "dynamic_selection" not in lf and lf["dataset"] == "d"
    assert ext.dynamic == DynamicSelection(pool=pool, scores=str(scores), n=10, every=10, candidates=40,
                                           save_stage_checkpoints=True)
    assert ext.dynamic.every_steps == 10 and ext.dynamic.candidate_rows == 40
    for key in ("pool", "scores", "strategy", "every", "candidates", "save_stage_checkpoints", "low", "high", "seed"):
        assert f"{key}: " in extension_help()  # every key documented in `llamafactory-ext train --help`


@pytest.mark.parametrize("dyn, lf, message", [
    ({"strategy": "pass-cv"}, {}, "dynamic_selection.strategy pass-cv cannot be re-drawn inside the loop"),
    ({"strategy": "temp"}, {}, "dynamic_selection.strategy temp cannot be re-drawn inside the loop"),
    ({"n": 31}, {}, "dynamic_selection.n 31 is larger than the band: 30 of 60"),
    ({"n": 11, "candidates": 20}, {}, "dynamic_selection.n 11 is larger than the band: 10 of 20"),
    ({"candidates": 61}, {}, "dynamic_selection.candidates 61 is more than the 60 scored rows"),
    ({"every": 16}, {}, "dynamic_selection.every 16 steps is larger than the run (15 optimizer steps)"),
    ({"every": 0}, {}, "dynamic_selection.every must be 'epoch' or a positive integer, got 0"),
    ({"every": -3}, {}, "dynamic_selection.every must be 'epoch' or a positive integer"),
    ({"every": 2.5}, {}, "dynamic_selection.every must be 'epoch' or a positive integer, got 2.5"),
    ({"every": True}, {}, "dynamic_selection.every must be 'epoch' or a positive integer, got True"),
    ({"every": 5}, {"max_steps": 4}, "dynamic_selection.every 5 steps is larger than the run (4 optimizer steps)"),
    ({}, {"max_steps": 4}, "dynamic_selection.every epoch (5 steps) is larger than the run (4 optimizer steps)"),
    ({"every": "week"}, {}, "dynamic_selection.every must be 'epoch' or a positive integer"),
    ({"candidates": 0}, {}, "dynamic_selection.candidates must be 'all' or a positive integer"),
    ({"bogus": 1}, {}, "unknown key(s) dynamic_selection.bogus"),
    ({}, {"packing": True}, "dynamic_selection cannot run with `packing: true`"),
    ({}, {"neat_packing": True}, "dynamic_selection cannot run with `neat_packing: true`"),
    ({}, {"model_name_or_path": "other-model"}, "made with model_name_or_path 'tiny-test-model', the recipe trains "
     "with model_name_or_path 'other-model'"),
    ({}, {"template": "llama3"}, "made with template 'qwen'"),
    ({}, {"cutoff_len": 4096}, "made with cutoff_len 16384"),
    ({"pool": "another_pool"}, {}, "not dynamic_selection.pool 'another_pool' (pool never scored"),
    ({"scores": "/nonexistent/scores"}, {}, "dynamic_selection.scores '/nonexistent/scores': no finished"),
    ({"low": 0.8, "high": 0.5}, {}, "the band needs 0 <= low < high <= 1"),
])
def test_bad_input_names_the_key_before_anything_loads(scored, monkeypatch, dyn, lf, message):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    scores, pool = scored
    args = _recipe(scores, pool)
    args["dynamic_selection"].update(dyn)
    args.update(lf)
    with pytest.raises(UserError) as err:
        split_recipe_args(args, source="r.yaml")
    assert str(err.value).startswith("r.yaml: ") and message in str(err.value), str(err.value)


@pytest.mark.parametrize("key, column", [("rsr", "rank_mean"), ("lark_first_100", "brier_topk_first_100")])
def test_a_ratio_key_needs_the_statistics_in_the_base_scores(scored, monkeypatch, key, column):
    """rsr / lark on a table scored before the rank and Brier columns: refused naming the file and the column; with
    them (and the top-K in the scores' identity) accepted, and the stages re-compute them with that K."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    scores, pool = scored
    with pytest.raises(UserError) as err:
        split_recipe_args(_recipe(scores, pool, key=key), source="r.yaml")
    msg = str(err.value)
    assert f"dynamic_selection.key {key}" in msg and str(scores / "scores.parquet") in msg and column in msg
    assert "Re-score" in msg
    table = pd.read_parquet(scores / "scores.parquet")
    for c in STAT_COLUMNS:
        table[c] = np.linspace(1.0, 2.0, len(table))
    table.to_parquet(scores / "scores.parquet", index=False)
    with pytest.raises(UserError, match="names no brier_top_k"):  # the columns, but no K to re-compute them with
        split_recipe_args(_recipe(scores, pool, key=key), source="r.yaml")
    meta = json.loads((scores / "meta.json").read_text())
    meta["identity"] = {"brier_top_k": 7}
    (scores / "meta.json").write_text(json.dumps(meta))
    _, ext = split_recipe_args(_recipe(scores, pool, key=key), source="r.yaml")
    assert ext.dynamic.key == key and brier_top_k(meta) == 7


def test_a_missing_required_key_is_named(scored):
    scores, _ = scored
    with pytest.raises(UserError, match="dynamic_selection.pool is required"):
        split_recipe_args({**_recipe(scores, ""), "dynamic_selection": {"scores": str(scores)}})


def test_stage_0_is_byte_identical_to_data_select_select(scored, tmp_path):
    scores, pool = scored
    dyn = DynamicSelection(pool=pool, scores=str(scores), n=12, seed=5, low=0.2, high=0.7)
    opts = SelectOptions(name="zpd12", scores=str(scores), strategy="zpd", n=12, seed=5, low=0.2, high=0.7,
                         dataset_info=str(tmp_path / "dataset_info.json"))
    run_select(opts)
    table, meta, _ = load_scores(scores)
    selection = stages.draw(table, dyn, 0)
    manifest = stages.stage_manifest(dyn, 0, selection, 0, 0.0, len(table), "base", None, 0.0)
    d = stages.write_stage(tmp_path / "out", 0, table, selection, load_scored_pool(meta, scores), manifest)
    assert (d / "subset.jsonl").read_bytes() == (tmp_path / "data" / "zpd12.jsonl").read_bytes()
    written = json.loads((tmp_path / "data" / "zpd12.manifest.json").read_text())
    assert stages.read_stage(tmp_path / "out", 0)["thresholds"] == written["thresholds"]
    assert not list((tmp_path / "out" / "selection").glob(".*"))  # no temporary folder left behind


def test_same_seed_same_stages_and_each_stage_its_own_seed(scored):
    scores, pool = scored
    table, _, _ = load_scores(scores)
    dyn = DynamicSelection(pool=pool, scores=str(scores), n=8, candidates=30)
    for stage in (1, 2):
        assert np.array_equal(stages.candidate_rows(table, dyn, stage), stages.candidate_rows(table, dyn, stage))
        sub = table[table["row"].isin(stages.candidate_rows(table, dyn, stage))]
        assert stages.draw(sub, dyn, stage).ids == stages.draw(sub, dyn, stage).ids
    assert not np.array_equal(stages.candidate_rows(table, dyn, 1), stages.candidate_rows(table, dyn, 2))
    assert stages.draw(table, dyn, 1).ids != stages.draw(table, dyn, 2).ids  # seed + stage
    assert len(stages.candidate_rows(table, dyn, 1)) == 30


def test_flows_count_learned_risen_stayed_and_entered():
    dyn = DynamicSelection(pool="p", scores="s", n=2, low=0.25, high=0.75)
    rows = np.arange(8)
    before = pd.DataFrame({"id": [str(r) for r in rows], "row": rows, "loss_mean": np.arange(8.0),
                           "n_response_tokens": 10, "truncated": False})
    after = before.copy()
    # by the new losses: rows 2, 3 below the band (learned), 6, 7, 0, 1 in it, 5, 4 above (risen)
    after["loss_mean"] = [4.0, 5.0, 0.5, 0.6, 7.0, 6.0, 2.0, 3.0]
    prev_status, new_status = stages.band_status(before, dyn), stages.band_status(after, dyn)
    assert [prev_status[r] for r in rows] == ["below"] * 2 + ["band"] * 4 + ["above"] * 2
    flow = stages.flows([2, 3, 4, 5], prev_status, [0, 6], new_status)
    assert flow == {"learned": 2, "rose_above": 2, "stayed": 0, "not_rescored": 0, "kept": 0, "entered": 2,
                    "entered_band": 4}
    assert stages.flows([0, 6], new_status, [0, 7], new_status)["stayed"] == 2


@pytest.mark.parametrize("every", [1, 3, 7, 15])
def test_any_every_up_to_the_run_is_accepted(scored, monkeypatch, every):
    """Stages are not tied to epochs: 5 steps per epoch, every 1, 3, 7 (mid-epoch boundaries) or the whole run."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    scores, pool = scored
    _, ext = split_recipe_args(_recipe(scores, pool, every=every), source="r.yaml")
    assert ext.dynamic.every_steps == every


def _plan(n=4, per_device=1, accumulation=2, every=3, stage_rows=None):
    """A Stages without model or pool: ``n`` rows per stage, 8 pool rows, the stages given as pool rows."""
    plan = object.__new__(Stages)
    plan.dyn = SimpleNamespace(n=n)
    plan.dataset = PoolDataset({r: SimpleNamespace(input_ids=np.array([r + 1]), labels=np.array([r + 1]))
                                for r in range(8)})
    plan.per_epoch = -(-n // (per_device * accumulation))
    plan.every, plan.rows_per_step, plan.seed = every, per_device * accumulation, 3
    plan._orders, plan._positions, plan._cache = {}, {}, {k: {"rows": rows} for k, rows in (stage_rows or {}).items()}
    plan.trainer = SimpleNamespace(state=SimpleNamespace(global_step=0))
    plan.collate = lambda feats: {"input_ids": torch.tensor([f["input_ids"] for f in feats]),
                                  "labels": torch.tensor([f["labels"] for f in feats])}
    return plan


def test_sampler_yields_n_slots_per_epoch_and_replays_a_resumed_epoch():
    plan = _plan()
    sampler = StageSampler(plan, seed=11)
    assert len(sampler) == 4 and plan.seed == 11
    sampler.set_epoch(2)
    assert list(sampler) == [8, 9, 10, 11] and list(sampler) == [12, 13, 14, 15]  # next epoch without set_epoch
    sampler.set_epoch(2)
    assert list(sampler) == [8, 9, 10, 11]  # a resumed epoch: the same slots, so the skip lands on the same rows


def test_each_step_trains_its_stage_rows_in_the_epoch_order():
    """2 optimizer steps per epoch (4 rows, 1 per device x 2 accumulated), a stage every 3 steps: step 3 (epoch 1's
    second step) trains stage 1's rows at the slots epoch 1's order gives, the same order on every call."""
    plan = _plan(stage_rows={0: [0, 1, 2, 3], 1: [4, 5, 6, 7]})
    order = plan.order(1, 4)
    assert sorted(order.tolist()) == [0, 1, 2, 3] and plan.order(1, 4) is order
    g = torch.Generator()
    g.manual_seed(3 + 1)
    assert order.tolist() == torch.randperm(4, generator=g).tolist()  # seed + epoch, as the sampler always did
    assert [plan.stage_of_step(s) for s in range(6)] == [0, 0, 0, 1, 1, 1]
    assert [plan.planned_position(i, 1, 0) for i in range(4)] == order.tolist()
    assert [plan.planned_position(i, 1, 1) for i in range(4)] == [4 + o for o in order.tolist()]
    # epoch 1's slots 4..7: steps 2, 2, 3, 3 -> stage 0, 0, 1, 1
    assert [plan.provisional_position(s) for s in (4, 5, 6, 7)] == [*order[:2], *(4 + order[2:])]
    plan._cache.pop(1)  # fetched before stage 1 exists: stage 0's rows stand in
    assert [plan.provisional_position(s) for s in (4, 5, 6, 7)] == order.tolist()


def _batch(plan, slots):
    feats = [{**plan.dataset[plan.provisional_position(s)], SLOT: s, POSITION: plan.provisional_position(s)}
             for s in slots]
    return SlotCollator(plan.collate)(feats)


def test_batches_fetched_ahead_of_a_boundary_are_collated_again_from_the_new_stage():
    plan = _plan(stage_rows={0: [0, 1, 2, 3], 1: [4, 5, 6, 7]})
    plan._cache.pop(1)
    ahead = [_batch(plan, [6]), _batch(plan, [7])]  # step 3's micro-batches, fetched before stage 1 existed
    assert all(SLOT in b and POSITION in b for b in ahead)
    drawn = []

    def rows(stage):  # Stages.rows without disk: draws a missing stage
        if stage not in plan._cache:
            drawn.append(stage)
            plan._cache[stage] = {"rows": [4, 5, 6, 7]}
        return plan._cache[stage]["rows"]

    plan.rows = rows
    plan.trainer.state.global_step = 3
    out = list(plan.batches(iter(ahead)))
    assert drawn == [1]  # the step's stage is drawn before its first batch is handed over
    order = plan.order(1, 4)
    assert [b["input_ids"].tolist() for b in out] == [[[4 + order[2] + 1]], [[4 + order[3] + 1]]]
    assert all(SLOT not in b and POSITION not in b for b in out)  # nothing of ours reaches the model
    plan.trainer.state.global_step = 2  # a batch that already holds the plan's rows is handed over untouched
    same = _batch(plan, [4])
    assert list(plan.batches(iter([same])))[0] is same


def test_a_missing_stage_is_drawn_only_at_its_boundary_step(tmp_path):
    """Resumed in the middle of stage 1 without its folder: drawing it now would use other weights -> refused."""
    plan = _plan(stage_rows={0: [0, 1, 2, 3]})
    plan.output_dir = str(tmp_path)
    plan.trainer.state.global_step, plan.trainer.state.epoch = 4, 2.0
    with pytest.raises(UserError, match=r"stage 1 is not in .*stage-1 and the run is at step 4, not at its boundary "
                       r"step 3.*Resume from checkpoint-3"):
        list(plan.batches(iter([])))


def test_the_collator_passes_evaluation_batches_through():
    plan = _plan()
    feats = [plan.dataset[0], plan.dataset[1]]
    assert SlotCollator(plan.collate)(feats)["input_ids"].tolist() == [[1], [2]]


def test_steps_per_epoch_counts_like_the_trainer(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert steps_per_epoch(15000, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 8}) == 469
    monkeypatch.setenv("WORLD_SIZE", "1")  # advanced.yaml's header: 938 optimizer steps per epoch
    assert steps_per_epoch(15000, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 8}) == 938
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("NPROC_PER_NODE", "1")
    assert steps_per_epoch(10, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 1}) == 5


def test_the_recipe_is_advanced_yaml_plus_dynamic_selection_and_parses(tmp_path, monkeypatch):
    """yaml_recipes/advanced_dynamic.yaml: advanced.yaml's science, our key removed before LLaMA-Factory's strict
    parser, checked against a scores folder with the recipe's identity."""
    from llamafactory.hparams.parser import _parse_train_args

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = yaml.safe_load((REPO_ROOT / "yaml_recipes" / "advanced_dynamic.yaml").read_text())
    base = yaml.safe_load((REPO_ROOT / "yaml_recipes" / "advanced.yaml").read_text())
    assert {k: v for k, v in recipe.items() if k not in ("dynamic_selection", "output_dir")} == {
        k: v for k, v in base.items() if k != "output_dir"}
    assert "FORCE_TORCHRUN=1 llamafactory-ext train yaml_recipes/advanced_dynamic.yaml" in (
        REPO_ROOT / "yaml_recipes" / "advanced_dynamic.yaml").read_text()
    scores = make_scores_dir(tmp_path, n_rows=60)
    meta = json.loads((scores / "meta.json").read_text())
    meta.update(model={"name_or_path": recipe["model_name_or_path"]}, template="qwen", cutoff_len=16384)
    meta["pool"]["dataset"] = "acereason11_100k"
    meta["counts"]["scored"] = 100_000  # the band of 100K rows holds 50,000 >= n
    (scores / "meta.json").write_text(json.dumps(meta))
    recipe["dynamic_selection"]["scores"] = str(scores)
    lf_args, ext = split_recipe_args(recipe, source="advanced_dynamic.yaml")
    assert ext.dynamic.n == 15000 and ext.dynamic.every == "epoch" and "dynamic_selection" not in lf_args
    _, data_args, training_args, _, _ = _parse_train_args({**lf_args, "use_cpu": True})
    assert data_args.dataset == ["acereason_zpd_15k"] and training_args.num_train_epochs == 3


def test_the_cost_bench_scales_with_the_candidates(monkeypatch):
    """bench/dynamic_selection_cost.py: re-scoring cost per boundary is linear in the candidates re-scored."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "bench"))
    from dynamic_selection_cost import calculated

    args = SimpleNamespace(pool=2000, n=300, median=4000, sigma=0.8, cutoff=16384, epochs=3, candidates=[300, 1000])
    c = calculated(args)
    ratios = {r["candidates"]: r["ratio_to_epoch"] for r in c["rows"]}
    assert ratios[1000] == pytest.approx(ratios["all"] / 2) and ratios[300] == pytest.approx(ratios["all"] * 0.15)
    # a forward over the whole pool costs more than an epoch's forward+backward on 15% of it
    assert 1.5 < ratios["all"] < 3.5 and c["boundaries"] == 2


def test_finished_stages_drawn_with_other_keys_are_refused(scored, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    scores, pool = scored
    stage = tmp_path / "run" / "selection" / "stage-1"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text(json.dumps({"stage": 1, "strategy": "zpd", "n": 10, "seed": 43,
                                                     "key": "loss_mean", "low": 0.25, "high": 0.75}))
    args = {**_recipe(scores, pool), "output_dir": str(tmp_path / "run")}
    split_recipe_args(args)  # the same keys: reused on resume
    args["dynamic_selection"]["n"] = 12
    with pytest.raises(UserError, match=r"stage-1 was drawn with other keys \(dynamic_selection.n: 10 there, 12"):
        split_recipe_args(args)
