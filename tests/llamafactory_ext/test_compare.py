"""``llamafactory-ext compare`` on results files in the shapes of lighteval 0.10–0.13
(tests/fixtures/lighteval), and clear errors on broken or partial files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from data_selection.command_line import UserError
from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.evaluation.compare import Cell, Table, build_table, to_csv, to_markdown
from llamafactory_ext.evaluation.lighteval_results import (
    RunResults,
    Score,
    metric_kind,
    parse_task_key,
    primary_metric,
    read_run,
)

FIX = REPO_ROOT / "tests" / "fixtures" / "lighteval"


def run_compare(tmp_path: Path, *args: str) -> tuple[str, list[dict]]:
    out = tmp_path / "report"
    assert lfx_main(["compare", *args, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    return md, rows


def md_row(md: str, benchmark: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {benchmark} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_parse_task_keys_of_all_versions():
    assert parse_task_key("aime24|0") == "aime24"
    assert parse_task_key("lighteval|aime24|0") == "aime24"
    assert parse_task_key("lighteval|aime24|0|0") == "aime24"
    assert parse_task_key("extended|lcb:codegeneration|0") == "lcb:codegeneration"
    assert parse_task_key("gpqa:diamond:0") == "gpqa:diamond"  # pipeline.get_results() spelling
    assert parse_task_key("lighteval:math_500:0") == "math_500"
    assert parse_task_key("all") is None


def test_lighteval_013_loss_band_report_table(tmp_path):
    """The loss-band report's three models in 0.13's format: its numbers and its 'vs random' column."""
    runs = [str(FIX / "v0_13" / n) for n in ("base", "random", "zpd")]
    md, rows = run_compare(tmp_path, *runs, "--baseline", "base", "--reference", "random")
    header = md.splitlines()[0]
    assert "Δ zpd vs base" in header and "Δ zpd vs random" in header and "Δ random vs base" in header
    math = md_row(md, "MATH-500")
    assert math[1] == "`pass@k:k=1&n=1`"
    assert math[2].startswith("63.40 ±") and math[3].startswith("30.00 ±") and math[4].startswith("64.20 ±")
    assert math[-1] == "+34.20 ↑"  # ZPD vs random, the report's headline
    assert md_row(md, "GPQA-Diamond")[-1] == "−8.08"  # within 1.96 combined standard errors: no arrow
    assert md_row(md, "MMLU-Redux-2")[1] == "`acc`"  # log-likelihood accuracy, not the generative pass@k
    assert md_row(md, "MMLU-Redux-2")[2].startswith("57.05 ±")
    by_bench = {r["benchmark"]: r for r in rows}
    assert list(by_bench) == ["aime24", "aime25", "math_500", "gpqa:diamond", "mmlu_redux_2"]
    assert float(by_bench["math_500"]["delta_zpd_vs_random"]) == pytest.approx(34.2, abs=1e-3)
    assert float(by_bench["aime25"]["zpd"]) == pytest.approx(100 / 30, abs=1e-3)
    assert float(by_bench["math_500"]["base_stderr"]) == pytest.approx(
        100 * (0.634 * 0.366 / 499) ** 0.5, abs=1e-3
    )
    assert "Notes:" not in md


@pytest.mark.parametrize("version", ["v0_11", "v0_12"])
def test_lighteval_011_012_sft_training_llm_table(tmp_path, version):
    """SFT-Training-LLM's base vs fine-tuned in 0.11/0.12 spelling (pass@k_with_k…); 0.12's lacks the MMLU average."""
    md, rows = run_compare(tmp_path, str(FIX / version / "base"), str(FIX / version / "random"))
    assert md_row(md, "AIME 2025")[1:] == ["`pass@k_with_k`", "3.30 ± 3.32", "12.00 ± 6.03", "+8.70"]
    assert md_row(md, "MATH-500")[1] == "`pass@k_with_k_n`"
    assert md_row(md, "LiveCodeBench")[1:4] == ["`codegen_pass@1:16`", "10.40 ± 1.87", "9.70 ± 1.81"]
    # the _average entry (0.11) and the mean computed over the subjects (0.12) agree
    assert md_row(md, "MMLU-Redux-2")[2:] == ["63.90 ± 4.60", "64.40 ± 4.60", "+0.50"]
    assert len(rows) == 6


def test_lighteval_010_and_mixed_versions(tmp_path):
    md, _ = run_compare(tmp_path, *(str(FIX / "v0_10" / n) for n in ("base", "random", "zpd")))
    assert md_row(md, "AIME 2024")[1] == "`math_pass@1:1_samples`"  # pass@1 preferred over extractive_match
    assert md_row(md, "GPQA-Diamond")[1] == "`gpqa_pass@1:1_samples`"
    assert "MMLU" not in md.split("Scores in %")[0]

    # a 0.11 run between 0.13 runs: same kind of metric (pass@1), so no protocol warning; LCB only in one run
    md, rows = run_compare(
        tmp_path,
        str(FIX / "v0_13" / "base"),
        str(FIX / "v0_11" / "random"),
        str(FIX / "v0_13" / "zpd"),
        "--names",
        "base,random,zpd",
    )
    assert md_row(md, "AIME 2024")[1] == "`pass@k:k=1&n=1` / `pass@k_with_k`"
    assert "measure different things" not in md
    assert md_row(md, "LiveCodeBench")[2:] == ["—", "9.70 ± 1.81", "—", "—", "—", "—"]
    assert "LiveCodeBench: not evaluated in base, zpd" in md
    lcb = next(r for r in rows if r["benchmark"] == "lcb:codegeneration")
    assert lcb["base"] == "" and lcb["delta_zpd_vs_random"] == ""


def _write_results(path: Path, results: dict, max_samples=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"config_general": {"max_samples": max_samples, "model_name": "m"}, "results": results})
    )
    return path


def test_resampled_runs_partial_runs_and_merging(tmp_path):
    eight = tmp_path / "pass8" / "results" / "model"
    _write_results(
        eight / "results_2026-01-01T00-00-00.json",
        {
            "aime24_n8|0": {
                "pass@k:k=1&n=8": 0.1,
                "pass@k:k=1&n=8_stderr": 0.03,
                "pass@k:k=8&n=8": 0.3,
                "avg@n:n=8": 0.1,
            },
            "all": {},
        },
        max_samples=10,
    )
    # a later file of the same folder adds a task and overrides nothing else
    _write_results(eight / "results_2026-01-02T00-00-00.json", {"math_500_n8|0": {"pass@k:k=1&n=8": 0.5}})
    run = read_run(tmp_path / "pass8")
    assert set(run.scores) == {"aime24", "math_500"} and len(run.files) == 2
    assert primary_metric("aime24", run.scores["aime24"]) == "pass@k:k=1&n=8"
    assert metric_kind("pass@k:k=1&n=8") == "pass@1 (n=8)" and metric_kind("pass@k_with_k") == "pass@1"

    table = build_table(
        [str(FIX / "v0_13" / "base"), str(tmp_path / "pass8")], ["base", "pass8"], None, None, {}
    )
    md = to_markdown(table)
    assert "AIME 2024: runs measure different things (pass@1, pass@1 (n=8))" in md
    assert "pass8: partial evaluation, 10 problems per task" in md
    assert md_row(md, "AIME 2024")[3] == "10.00 ± 3.00" and md_row(md, "MATH-500")[3] == "50.00"
    forced = build_table([str(tmp_path / "pass8")], ["p"], None, None, {"aime24": "pass@k:k=8&n=8"})
    assert "30.00" in to_csv(forced).splitlines()[1].split(",")[3]


def test_broken_and_partial_results_name_the_file(tmp_path, capsys):
    run = tmp_path / "run" / "results" / "model"
    run.mkdir(parents=True)
    bad = run / "results_2026-01-01T00-00-00.json"

    bad.write_text(
        '{"config_general": {}, "results": {"aime24|0": {"pass@k:k=1&n=1": 0.'
    )  # cut off mid-write
    with pytest.raises(UserError, match=rf"{bad}: not valid JSON"):
        read_run(tmp_path / "run")
    bad.write_text(json.dumps({"config_general": {}, "versions": {}}))
    with pytest.raises(UserError, match=rf"{bad}: no 'results' object"):
        read_run(tmp_path / "run")
    bad.write_text(json.dumps({"results": {"all": {"acc": 0.5}}}))
    with pytest.raises(UserError, match=r"has no per-task entries \(only \['all'\]\)"):
        read_run(tmp_path / "run")
    bad.write_text(json.dumps({"results": {"math_500|0": {"pass@k:k=1&n=1": "0.5"}}}))
    with pytest.raises(UserError, match=r"results\['math_500\|0'\]\['pass@k:k=1&n=1'\] is not a number"):
        read_run(tmp_path / "run")
    bad.write_text(json.dumps({"results": {"math_500|0": {}}}))
    with pytest.raises(UserError, match=r"results\['math_500\|0'\] has no metric values"):
        read_run(tmp_path / "run")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no lighteval results_.*json under it"):
        read_run(empty)

    # through the command line: exit 1, one line naming the file, no traceback
    bad.write_text(json.dumps({"config_general": {}}))
    good = tmp_path / "good"
    shutil.copytree(FIX / "v0_13" / "base", good)
    rc = lfx_main(["compare", str(good), str(tmp_path / "run"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and str(bad) in err and "no 'results' object" in err and "Traceback" not in err
    assert lfx_main(["compare", str(good), str(good), "--out", str(tmp_path / "r")]) == 1
    assert "run names must differ" in capsys.readouterr().err
    assert lfx_main(["compare", str(good), "--baseline", "zpd", "--out", str(tmp_path / "r")]) == 1
    assert "--baseline 'zpd' is not one of the runs" in capsys.readouterr().err


def _table_of(scores: dict[str, float], n: int, bench: str = "local|heldout") -> Table:
    names = list(scores)
    runs = [RunResults(Path(name), [], {}) for name in names]
    cells = {bench: {name: Cell("extractive_match", Score(p, (p * (1 - p) / (n - 1)) ** 0.5))
                     for name, p in scores.items()}}
    deltas = [(x, names[0]) for x in names[1:]] + [(x, "random") for x in names[2:]]
    return Table(names, runs, [bench], cells, deltas, [])


def test_differences_of_a_few_problems_get_no_arrow_and_the_table_says_none_is_resolved():
    """`make demo`: 1 vs 3 problems of 30 is a 6.67-point difference well inside its standard error."""
    md = to_markdown(_table_of({"base": 2 / 30, "random": 1 / 30, "zpd": 3 / 30}, n=30))
    row = md_row(md, "local|heldout")
    assert row[-1] == "+6.67" and "↑" not in md and "↓" not in md
    line = next(x for x in md.splitlines() if x.startswith("Scores in %"))
    assert "no difference in this table is resolved" in line
    assert "base 2/30, random 1/30, zpd 3/30 solved" in line


def test_a_resolved_difference_keeps_its_arrow():
    md = to_markdown(_table_of({"base": 0.30, "random": 0.30, "zpd": 0.64}, n=500))
    assert md_row(md, "local|heldout")[-1] == "+34.00 ↑"
    assert "no difference in this table is resolved" not in md


def test_the_table_opens_with_one_line_a_newcomer_can_read():
    """Each run against the baseline, then against the reference, with ± 1.96 combined standard errors."""
    md = to_markdown(_table_of({"base": 0.10, "random": 0.40, "zpd": 0.42}, n=500))
    first = next(x for x in md.splitlines() if x.startswith("**In one line:**"))
    assert first.startswith("**In one line:** against base: random +30.0 ± ")
    assert "zpd +32.0 ± " in first and "against random: zpd +2.0 ± " in first
    assert first.count("(not resolved)") == 1 and first.endswith("points (not resolved).")
    small = to_markdown(_table_of({"base": 2 / 30, "random": 1 / 30, "zpd": 3 / 30}, n=30))
    small = next(x for x in small.splitlines() if x.startswith("**In one line:**"))
    assert small.count("(not resolved)") == 3
