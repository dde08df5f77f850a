"""The selection report's length section: Spearman of the key with length, subset vs pool lengths."""

from __future__ import annotations

import numpy as np
import pytest
from score_fixtures import make_scores_dir, synthetic_scores

from data_selection.cli import main
from data_selection.reports.length import length_facts
from data_selection.select import SelectOptions, run_select


def test_spearman_and_quantiles_are_computed_over_the_eligible_pool():
    t = synthetic_scores(500, seed=2, truncated_share=0.0)
    t["loss_mean"] = 1.0 / t["n_response_tokens"]  # the key is a decreasing function of length
    short = set(t.sort_values("n_response_tokens")["id"].iloc[:100])
    f = length_facts(t, {"parameters": {"key": "loss_mean", "over_length": "drop"}}, short)
    assert f["spearman"] == pytest.approx(-1.0)
    assert f["pool"][2] == pytest.approx(np.median(t["n_response_tokens"]))
    assert f["subset"][-1] <= f["pool"][1] and f["ks"] > 0.7  # the shortest fifth: far left of the pool
    adjusted = length_facts(t, {"parameters": {"key": "loss_first_1000"}}, short)
    assert abs(adjusted["spearman"]) < 1.0


def test_the_report_states_the_length_section_for_every_selection(tmp_path, capsys):
    scores = make_scores_dir(tmp_path, n_rows=200)
    info = str(tmp_path / "dataset_info.json")
    for strategy in ("zpd", "random"):
        run_select(SelectOptions(scores=str(scores), name=f"l_{strategy}", strategy=strategy, n=40, seed=1,
                                 dataset_info=info))
    out = tmp_path / "rep"
    assert main(["report", "l_zpd", "l_random", "--out", str(out), "--dataset_info", info]) == 0
    text = (out / "report.md").read_text()
    section = text[text.index("## Response length"):text.index("## Plots")]
    assert "| l_zpd | loss_mean |" in section and "| l_random | loss_mean |" in section
