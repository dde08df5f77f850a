"""studies/demo_temp.yaml: TEMP at its official defaults on the demo, sharing its steps with the other demo studies."""

from __future__ import annotations

import pytest
from helpers import REPO_ROOT

from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies

SIGMA_OPTIONS = ("--start", "--end", "--scale", "--num")


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def _plan(name):
    return build_plan(load_study(REPO_ROOT / "studies" / name, known_strategies()))


def test_the_demo_temp_arm_runs_the_official_gaussian_grid_in_both_studies():
    for name in ("demo_temp.yaml", "demo_all.yaml"):
        perturbs = [s for s in _plan(name) if s.kind == "perturb" and "--kind" in s.argv
                    and s.argv[s.argv.index("--kind") + 1] == "gaussian"]
        assert len(perturbs) == 1, f"{name}: one Gaussian sequence is to serve every seed, got {len(perturbs)}"
        argv = perturbs[0].argv
        overridden = [o for o in SIGMA_OPTIONS if o in argv]
        assert not overridden, f"{name}: the TEMP arm overrides the default σ grid with {overridden}"
        selects = [s for s in _plan(name) if s.kind == "select" and "temp" in s.argv]
        assert selects and not any(o in s.argv for s in selects for o in ("--temp-allocation", "--temp_allocation",
                                                                           "--temp-ranking", "--temp_ranking"))


def test_demo_temp_reuses_demo_matched_and_shares_its_temp_steps_with_demo_all():
    temp = _plan("demo_temp.yaml")
    matched_dirs = {s.dir for s in _plan("demo_matched.yaml")}
    own = [s for s in temp if s.kind in ("perturb", "checkpoints") or any(w in s.label for w in ("temp", "base"))]
    # one Gaussian perturbation and its scores, 3 directional ones and theirs (shared by temp and temp_fill),
    # 3 x select/train/eval for each of temp and temp_fill, the base evaluation
    assert len(own) == 1 + 1 + 3 * 2 + 2 * 3 * 3 + 1, [s.label for s in own]
    own += [s for s in temp if "random_39" in s.label]
    recomputed = [s.label for s in temp if s not in own and s.dir not in matched_dirs]
    assert not recomputed, f"demo_temp.yaml would recompute {recomputed} that demo_matched.yaml has"
    all_dirs = {s.dir for s in _plan("demo_all.yaml")}
    not_shared = [s.label for s in temp if s.kind != "eval" and not any(a in s.label for a in ("temp_fill", "random_39"))
                  and s.dir not in all_dirs]
    assert not not_shared, f"demo_temp.yaml's {not_shared} differ from demo_all.yaml's"
    assert sum(1 for s in temp if s.kind == "train" and "temp" in s.label) == 6
    fill = [s for s in temp if s.label.startswith("select temp_fill")]
    assert fill and all(s.argv[-2:] == ["--temp_shortfall", "fill"] for s in fill)


def test_an_arm_with_its_own_subset_size_changes_only_its_own_steps(tmp_path, tiny_qwen_dir):
    from test_study import write_study

    from data_selection.command_line import UserError

    arms = {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd"}}
    plain = build_plan(load_study(write_study(tmp_path, str(tiny_qwen_dir), arms=arms), known_strategies()))
    sized = {**arms, "small": {"strategy": "random", "subset_size": 7}}
    cfg = load_study(write_study(tmp_path, str(tiny_qwen_dir), arms=sized), known_strategies())
    steps = build_plan(cfg)
    assert {s.dir for s in plain} <= {s.dir for s in steps}  # the other arms' steps are untouched
    small = [s for s in steps if s.label.startswith("select small")]
    rnd = [s for s in steps if s.label.startswith("select random")]
    assert small and all(s.argv[s.argv.index("--n") + 1] == "7" and s.argv.count("--n") == 1 for s in small)
    assert all(s.argv[s.argv.index("--n") + 1] == str(cfg.subset_size) for s in rnd)
    assert {s.hash for s in small}.isdisjoint({s.hash for s in rnd})
    for bad in (0, -3, "39", True, 2.5):
        path = write_study(tmp_path, str(tiny_qwen_dir), arms={**arms, "small": {"strategy": "random",
                                                                                 "subset_size": bad}})
        with pytest.raises(UserError, match="arms.small.subset_size must be a positive integer"):
            load_study(path, known_strategies())


def test_analysis_pairs_add_paired_differences_and_bad_pairs_name_the_key(tmp_path, tiny_qwen_dir):
    from test_study import write_study

    from data_selection.command_line import UserError
    from llamafactory_ext.study.report import comparisons

    arms = {"base": {}, "random": {"strategy": "random"}, "zpd": {"strategy": "zpd"},
            "small": {"strategy": "random", "subset_size": 7}}
    plain = load_study(write_study(tmp_path, str(tiny_qwen_dir), arms=arms), known_strategies())
    names = [a.name for a in plain.arms]
    assert ("zpd", "small") not in comparisons(plain, names)
    paired = load_study(write_study(tmp_path, str(tiny_qwen_dir), arms=arms,
                                    analysis={"pairs": [["zpd", "small"], ["zpd", "random"]]}), known_strategies())
    pairs = comparisons(paired, names)
    assert pairs[:len(comparisons(plain, names))] == comparisons(plain, names)  # the usual ones first, in order
    assert pairs.count(("zpd", "small")) == 1 and pairs.count(("zpd", "random")) == 1  # no repeat of zpd − random
    assert ("zpd", "small") not in comparisons(paired, ["base", "random", "zpd"])  # an arm without results: skipped
    for bad in (["zpd"], ["zpd", "zpd"], ["zpd", "nope"], "zpd-small"):
        path = write_study(tmp_path, str(tiny_qwen_dir), arms=arms, analysis={"pairs": [bad]})
        with pytest.raises(UserError, match=r"analysis.pairs: each pair is \[ARM, OTHER_ARM\]"):
            load_study(path, known_strategies())
