"""The study report's "what each arm trained on": response kinds per arm, mean share over seeds."""

import json

from data_selection.subset import subset_paths
from llamafactory_ext.study.arm_inputs import subset_name
from llamafactory_ext.study.composition import composition_section
from llamafactory_ext.study.steps import Step


def _select(tmp_path, arm, seed, selected):
    step = Step("select", f"select {arm} seed {seed}", {"arm": arm, "seed": seed}, [], tmp_path, arm, seed)
    manifest = subset_paths(step.dir, subset_name(arm, seed, step))["manifest"]
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"composition": {"response_kind": {"pool": {"correct": 9}, "selected": selected},
                                                    "source": {"selected": {"arithmetic": sum(selected.values())}}}}))
    return step


def test_each_arm_shows_the_mean_share_of_each_kind_over_its_seeds(tmp_path):
    steps = [_select(tmp_path, "zpd", 1, {"correct": 8, "wrong": 2}), _select(tmp_path, "zpd", 2, {"correct": 10}),
             _select(tmp_path, "random", 1, {"correct": 6, "repetitive": 3, "truncated": 1}),
             Step("train", "train zpd seed 1", {}, [], tmp_path, "zpd", 1)]
    lines, summary = composition_section(steps)
    text = "\n".join(lines)
    assert "## What each arm trained on: response kind" in text
    assert "| arm | seeds | correct | repetitive | truncated | wrong |" in text
    assert "| zpd | 2 | 90.0% | 0.0% | 0.0% | 10.0% |" in text
    assert "| random | 1 | 60.0% | 30.0% | 10.0% | 0.0% |" in text
    assert summary["response_kind"]["zpd"]["wrong"] == 0.1 and "source" in summary


def test_no_manifest_no_section(tmp_path):
    step = Step("select", "select zpd seed 1", {}, [], tmp_path, "zpd", 1)
    assert composition_section([step]) == ([], {})
