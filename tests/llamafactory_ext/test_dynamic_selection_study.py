"""A study arm whose selection moves with the model: ``zpd_dynamic: {strategy: zpd, dynamic: {every: epoch}}``."""

from __future__ import annotations

import pytest
import yaml
from helpers import REPO_ROOT, SYSTEM
from omegaconf import OmegaConf

from data_selection.command_line import UserError
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies

STUDY = {
    "name": "mini", "template": "qwen", "cutoff_len": 256, "system_prompt": SYSTEM,
    "pool": {"demo_data": {"pool_size": 40, "eval_size": 5, "seed": 0}}, "subset_size": 8, "seeds": [1, 2],
    "arms": {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd", "low": 0.25, "high": 0.75},
             "zpd_dynamic": {"strategy": "zpd", "low": 0.25, "high": 0.75,
                             "dynamic": {"every": "epoch", "candidates": 20}}},
    "train": {"recipe": "yaml_recipes/demo_zpd.yaml"},
    "eval": {"suite": "heldout", "max_new_tokens": 4, "temperature": 0.0},
    "analysis": {"reference": "random", "baseline": "", "draws": 500},
}


def _plan(tmp_path, monkeypatch, arms=None):
    monkeypatch.chdir(REPO_ROOT)  # recipes are named relative to the repository root
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "model": "some/model", "out": str(tmp_path / "out"),
                                    **({"arms": arms} if arms else {})}), encoding="utf-8")
    return {s.label: s for s in build_plan(load_study(path, known_strategies()))}


def test_dynamic_arm_trains_with_dynamic_selection_over_its_own_stage_0(tmp_path, monkeypatch):
    steps = _plan(tmp_path, monkeypatch)
    select, train = steps["select zpd_dynamic seed 2"], steps["train zpd_dynamic seed 2"]
    assert "--dynamic" not in select.argv
    assert select.key == steps["select zpd seed 2"].key  # stage 0 is the static zpd arm's draw
    assert train.argv[:2] == ["llamafactory-ext", "train"]
    overrides = OmegaConf.to_container(OmegaConf.from_cli([a for a in train.argv if "=" in a]))
    assert overrides["dynamic_selection"] == {
        "pool": overrides["dynamic_selection"]["pool"], "scores": str(steps["pool scores"].dir), "strategy": "zpd",
        "n": 8, "seed": 2, "low": 0.25, "high": 0.75, "every": "epoch", "candidates": 20}
    assert overrides["dataset"] == select.argv[select.argv.index("--name") + 1]
    # the static arms' commands are untouched
    static = steps["train zpd seed 2"]
    assert static.argv[0] == "llamafactory-cli" and not any("dynamic_selection" in a for a in static.argv)


def test_a_bad_dynamic_mapping_names_the_arm(tmp_path, monkeypatch):
    arms = {"random": {"strategy": "random"}, "zd": {"strategy": "zpd", "dynamic": {"evry": "epoch"}}}
    with pytest.raises(UserError, match=r"arms.zd.dynamic: unknown key\(s\) \['evry'\]"):
        _plan(tmp_path, monkeypatch, arms)
