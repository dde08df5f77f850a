"""``dynamic_selection:`` in a train recipe, without a model: keys, bad input named before anything loads, stage 0 =
``data-select select``, seeded stages, flows, the stage sampler."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO_ROOT
from score_fixtures import make_scores_dir

from data_selection.command_line import UserError
from data_selection.options.select import SelectOptions
from data_selection.scores_table import load_scored_pool, load_scores
from data_selection.select import run_select
from llamafactory_ext.train.args import extension_help, split_recipe_args
from llamafactory_ext.train.dynamic import stages
from llamafactory_ext.train.dynamic.options import DynamicSelection, steps_per_epoch
from llamafactory_ext.train.dynamic.runtime import StageSampler


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
    ({"every": 7}, {}, "dynamic_selection.every 7 is not a multiple of the 5 optimizer steps per epoch"),
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


def test_sampler_draws_the_epochs_stage_n_rows_seeded():
    subsets = {0: np.array([0, 1, 2, 3]), 1: np.array([4, 5, 6, 7])}
    fake = SimpleNamespace(dyn=SimpleNamespace(n=4), stage_of_epoch=lambda e: e // 2,
                           positions=lambda s: subsets[s])
    sampler = StageSampler(fake, seed=3)
    assert len(sampler) == 4
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(first) == [0, 1, 2, 3] and sorted(list(sampler)) == [0, 1, 2, 3]  # epoch 1: still stage 0
    assert sorted(list(sampler)) == [4, 5, 6, 7]  # epoch 2: stage 1
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch replays the same order


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
