"""Study arms with a length-matched random baseline: wiring, pairing with the matched arm, reuse of demo's steps."""

from __future__ import annotations

import pytest
from helpers import REPO_ROOT
from test_study import write_study

from data_selection.command_line import UserError
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies
from llamafactory_ext.study.report import comparisons


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def test_a_matched_arm_matches_the_named_arms_subset_of_the_same_seed(tmp_path, tiny_qwen_dir):
    arms = {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd"},
            "zpd_len": {"strategy": "random", "match": "zpd", "match_bins": 4}}  # (write_study sorts the arms)
    cfg = load_study(write_study(tmp_path, str(tiny_qwen_dir), arms=arms), known_strategies())
    assert [a.strategy for a in cfg.arms] == ["random", "zpd", "matched-random"]
    steps = build_plan(cfg)
    for seed in (1, 2):
        sel = next(s for s in steps if s.label == f"select zpd_len seed {seed}")
        zpd = next(s for s in steps if s.label == f"select zpd seed {seed}")
        assert sel.deps[1] is zpd and steps.index(zpd) < steps.index(sel)
        target = sel.argv[sel.argv.index("--match") + 1]
        assert target.startswith(str(zpd.dir)) and target.endswith(".jsonl")
        assert sel.argv[sel.argv.index("--strategy") + 1] == "matched-random"
        assert sel.argv[sel.argv.index("--seed") + 1] == str(seed) and sel.argv[-2:] == ["--match_bins", "4"]
    # zpd − matched beside zpd − random (and matched − random: does matching lengths change the baseline?)
    pairs = comparisons(cfg, [a.name for a in cfg.arms])
    assert pairs == [("zpd", "random"), ("zpd_len", "random"), ("zpd", "zpd_len")]
    bad = write_study(tmp_path, str(tiny_qwen_dir), arms={"random": {"strategy": "random"},
                                                          "m": {"strategy": "matched-random", "match": "zpd"},
                                                          "zpd": {"strategy": "zpd"}})
    with pytest.raises(UserError, match="`match` must name an arm listed before it"):
        build_plan(load_study(bad, known_strategies()))


def test_demo_matched_reuses_the_demo_studys_scores_subsets_and_trainings():
    demo = load_study(REPO_ROOT / "studies" / "demo.yaml", known_strategies())
    matched = load_study(REPO_ROOT / "studies" / "demo_matched.yaml", known_strategies())
    dirs = {s.dir for s in build_plan(matched)}
    reused = [s.label for s in build_plan(demo) if s.kind != "eval" and s.dir not in dirs]
    assert not reused, f"demo_matched.yaml would recompute {reused}"
    assert any(a.strategy == "matched-random" and a.matches == "zpd" for a in matched.arms)
    for name in ("demo_all.yaml", "zpd_qwen3b.yaml"):
        cfg = load_study(REPO_ROOT / "studies" / name, known_strategies())
        assert any(a.matches == "zpd" for a in cfg.arms), f"{name} lacks a length-matched arm"
