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
    assert "| arm | seeds | distinct rows | correct | repetitive | truncated | wrong |" in text
    assert "| zpd | 2 | 10 | 90.0% | 0.0% | 0.0% | 10.0% |" in text
    assert "| random | 1 | 10 | 60.0% | 30.0% | 10.0% | 0.0% |" in text
    assert summary["response_kind"]["zpd"]["wrong"] == 0.1 and "source" in summary


def test_no_manifest_no_section(tmp_path):
    step = Step("select", "select zpd seed 1", {}, [], tmp_path, "zpd", 1)
    assert composition_section([step]) == ([], {})


def test_a_dynamic_arm_counts_every_stage_it_trained_and_its_distinct_rows(tmp_path):
    """zpd_dynamic's select step drew stage 0 only; its training ran stages 0-2: the table counts all three."""
    select = _select(tmp_path, "zpd_dynamic", 1, {"correct": 4})
    train = Step("train", "train zpd_dynamic seed 1", {"arm": "zpd_dynamic"}, [], tmp_path, "zpd_dynamic", 1)
    stages = {0: [("a", "correct"), ("b", "correct"), ("c", "correct"), ("d", "correct")],
              1: [("a", "correct"), ("e", "wrong"), ("f", "correct"), ("g", "wrong")],
              2: [("e", "wrong"), ("h", "correct"), ("i", "correct"), ("j", "correct")]}
    for k, rows in stages.items():
        d = train.dir / "selection" / f"stage-{k}"
        d.mkdir(parents=True)
        d.joinpath("subset.jsonl").write_text("".join(
            json.dumps({"id": i, "output": "...", "response_kind": kind, "source": "arithmetic"}) + "\n"
            for i, kind in rows))
    static = _select(tmp_path, "zpd", 1, {"correct": 4})
    lines, summary = composition_section([select, train, static])
    text = "\n".join(lines)
    assert "| zpd_dynamic | 1 | 10 | 75.0% | 25.0% |" in text  # 9 of 12 stage rows correct, 10 distinct ids
    assert "| zpd | 1 | 4 | 100.0% | 0.0% |" in text
    assert "zpd_dynamic: the rows of every stage's subset" in text
    assert summary["distinct_rows"] == {"zpd_dynamic": 10, "zpd": 4}
