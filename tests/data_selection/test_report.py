"""`data-select report`: PNG plots, markdown summary and funnel CSV of one or more selections."""

from __future__ import annotations

import csv
import json

import pytest
from score_fixtures import make_scores_dir

from data_selection.cli import main
from data_selection.command_line import UserError
from data_selection.options.report import ReportOptions
from data_selection.reports.selection import run_report
from data_selection.select import SelectOptions, run_select

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def selections(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    scores = make_scores_dir(root, n_rows=300, truncated_rows=(1, 2, 3))
    info = root / "dataset_info.json"
    for strategy in ("zpd", "random"):
        run_select(SelectOptions(scores=str(scores), name=f"r_{strategy}", strategy=strategy, n=60, seed=42,
                                 dataset_info=str(info)))
    return root


def _manifest(root, name):
    return json.loads((root / "data" / f"{name}.manifest.json").read_text(encoding="utf-8"))


def test_report_of_two_selections(selections, capsys):
    out = selections / "reports" / "both"
    info = str(selections / "dataset_info.json")
    assert main(["report", "r_zpd", "r_random", "--out", str(out), "--dataset_info", info]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    for png in ("key_histogram.png", "loss_vs_length.png", "funnel.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, png
    md = (out / "report.md").read_text(encoding="utf-8")
    zpd, rnd = _manifest(selections, "r_zpd"), _manifest(selections, "r_random")
    th = zpd["thresholds"]
    assert f"[{th['low_value']:.4f}, {th['high_value']:.4f}]" in md
    assert f"| band | {zpd['funnel']['band']:,} | {rnd['funnel']['band']:,} |" in md
    assert "random reference" not in md  # a random selection is already there
    for name in ("r_zpd", "r_random"):
        assert f"## Composition of {name} by category" in md
    with open(out / "funnel.csv", encoding="utf-8") as f:
        table = {r["stage"]: r for r in csv.DictReader(f)}
    for stage, value in zpd["funnel"].items():
        assert int(table[stage]["r_zpd"]) == value
    assert int(table["selected"]["r_random"]) == rnd["funnel"]["selected"] == 60


def test_single_selection_gets_a_random_reference_and_a_default_folder(selections, monkeypatch):
    monkeypatch.chdir(selections)
    res = run_report(ReportOptions(names=["r_zpd"]))
    out = selections / "reports" / "r_zpd"
    assert res["out"] == "reports/r_zpd" and (out / "key_histogram.png").exists()
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "uniform draw of 60 eligible rows with seed 42" in md


def test_report_of_an_unknown_subset_is_a_clear_error(selections):
    with pytest.raises(UserError, match=r"nothing\.manifest\.json not found"):
        run_report(ReportOptions(names=["nothing"], dataset_info=str(selections / "dataset_info.json")))
    with pytest.raises(UserError, match="name at least one"):
        run_report(ReportOptions(names=[]))
