"""``data-select report --stages OUTPUT_DIR``: a dynamic selection's stages (reports/dynamic_stages.py and
reports/html/dynamic_stages.py), read from stage folders written by llamafactory_ext's own writer
(``llamafactory_ext/train/dynamic/stages.py``), so the manifest the trainer writes and the one the report reads
cannot drift."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO_ROOT
from score_fixtures import make_scores_dir
from test_reports_html_selection import ASSETS, _walk, page_payload

from data_selection.cli import main
from data_selection.command_line import UserError
from data_selection.options.report import ReportOptions
from data_selection.reports.dynamic_stages import load_stages
from data_selection.reports.selection import run_report
from data_selection.scores_table import load_scored_pool, load_scores
from data_selection.select import SelectOptions, run_select
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies, subset_name
from llamafactory_ext.study.report_html import selection_pages
from llamafactory_ext.train.dynamic import stages as writer
from llamafactory_ext.train.dynamic.options import DynamicSelection

PNG = b"\x89PNG\r\n\x1a\n"
N, K = 40, 150  # rows per stage, candidates re-scored per stage (of ~200 scored rows)


def _write_stages(scores: Path, out: Path, dyn: DynamicSelection, stages: int = 3) -> list[dict]:
    """Stages 0..stages-1 as the trainer's Stages._compute writes them; stage K's losses: the base ones shifted
    (the model learned: easy rows fall further), on K candidates drawn by the writer's own candidate_rows."""
    base, meta, _ = load_scores(str(scores))
    pool = load_scored_pool(meta, str(scores))
    rng = np.random.default_rng(0)
    prev_rows: list[int] = []
    prev_table = base
    written = []
    for k in range(stages):
        if k == 0:
            table, flow = base, None
        else:
            rows = writer.candidate_rows(base, dyn, k)
            table = base[base["row"].isin(rows)].copy().reset_index(drop=True)
            table["loss_mean"] = table["loss_mean"] * rng.uniform(0.5, 1.1, len(table))
        selection = writer.draw(table, dyn, k)
        if k > 0:
            flow = writer.flows(prev_rows, writer.band_status(prev_table, dyn), [int(r) for r in selection.rows],
                                writer.band_status(table, dyn))
        manifest = writer.stage_manifest(dyn, k, selection, global_step=5 * k, epoch=float(k), candidates=len(table),
                                         scored_with="test", flow=flow, seconds=0.25 * k)
        writer.write_stage(out, k, table, selection, pool, manifest)
        written.append({**manifest, "num_rows": len(selection.ids)})
        prev_rows, prev_table = [int(r) for r in selection.rows], table
    return written


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    scores = make_scores_dir(root, n_rows=200)
    info = root / "dataset_info.json"
    run_select(SelectOptions(scores=str(scores), name="s_zpd", strategy="zpd", n=N, seed=42, dataset_info=str(info)))
    dyn = DynamicSelection(pool="pool", scores=str(scores), n=N, candidates=K, seed=42)
    out = root / "train_out"
    written = _write_stages(scores, out, dyn)
    return root, out, written


def test_the_trainer_s_stage_folders_read_back(run):
    _, out, written = run
    for path in (out, out / "selection"):  # OUTPUT_DIR or its selection/ folder
        folder, stages = load_stages(path)
        assert folder == out / "selection" and [m["stage"] for m in stages] == [0, 1, 2]
    for m, w in zip(stages, written):
        assert m["global_step"] == w["global_step"] and m["candidates"] == w["candidates"]
        assert m["thresholds"]["low_value"] == w["thresholds"]["low_value"] and m["num_rows"] == N
        assert m["flows"] == w["flows"]
    f = stages[2]["flows"]
    assert f["learned"] + f["rose_above"] + f["stayed"] + f["not_rescored"] == N == f["kept"] + f["entered"]


def test_report_of_the_stages_alone(run, capsys):
    root, out, written = run
    rep = root / "rep_stages"
    assert main(["report", "--stages", str(out), "--out", str(rep)]) == 0
    said = capsys.readouterr().out
    assert str(rep / "report.md") in said and str(rep / "report.html") in said
    assert (rep / "stages.png").read_bytes().startswith(PNG) and (rep / "stages.png").stat().st_size > 10_000
    md = (rep / "report.md").read_text(encoding="utf-8")
    assert "## Stages (dynamic selection)" in md and "![stages.png](stages.png)" in md
    assert f"{N} rows per stage, zpd band [0.25, 0.75] of loss_mean, every epoch, {K} candidates" in md
    for w in written:  # one table row per stage with its step, band, candidates, selected and flows
        th, f = w["thresholds"], w["flows"] or {}
        cells = [str(w["stage"]), str(w["global_step"]), f"{th['low_value']:.4f}", f"{th['high_value']:.4f}",
                 str(w["candidates"]), str(N)] + [str(f[k]) for k in ("learned", "rose_above", "stayed", "entered")
                                                  if f]
        line = next(x for x in md.splitlines() if x.startswith(f"| {w['stage']} | {w['global_step']} |"))
        assert all(f" {c} |" in line for c in cells), (cells, line)
    with open(rep / "stages.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["candidates"]) for r in rows] == [w["candidates"] for w in written]
    assert rows[0]["learned"] == "" and int(rows[1]["learned"]) == written[1]["flows"]["learned"]
    assert float(rows[2]["band_low"]) == pytest.approx(written[2]["thresholds"]["low_value"])


def test_the_page_shows_the_band_and_the_stacked_flows(run):
    root, out, written = run
    rep = root / "rep_page"
    run_report(ReportOptions(stages=str(out / "selection"), out=str(rep)))
    d = page_payload(rep / "report.html")
    assert [s["title"] for s in d["sections"]] == ["Stages"] and d["browser"] is None
    blocks = {b["kind"]: b for b in d["sections"][0]["blocks"]}
    band = blocks["intervals"]["rows"]
    assert [(r["low"], r["high"]) for r in band] == [(w["thresholds"]["low_value"], w["thresholds"]["high_value"])
                                                     for w in written]
    assert all(r["estimate"] is None for r in band)
    stack = blocks["stack"]
    assert len(stack["categories"]) == 4  # stages 1 and 2: the previous subset, then the new one
    labels = [s["label"] for s in stack["series"]]
    assert labels[:3] == ["learned (fell below)", "rose above", "stayed in the band"] and "entered" in labels
    for i in range(4):  # each bar adds up to a subset's size
        assert sum(s["values"][i] or 0 for s in stack["series"]) == N
    assert blocks["table"]["rows"][1][8] == written[1]["flows"]["learned"]


def test_selections_and_stages_in_one_report(run):
    root, out, _ = run
    rep = root / "rep_both"
    res = run_report(ReportOptions(names=["s_zpd"], stages=str(out), out=str(rep), html_texts=0,
                                   dataset_info=str(root / "dataset_info.json")))
    assert {"stages.png", "stages.csv", "report.html", "key_histogram.png"} <= set(res["files"])
    md = (rep / "report.md").read_text(encoding="utf-8")
    assert md.index("## Stages (dynamic selection)") < md.index("## Plots")
    titles = [s["title"] for s in page_payload(rep / "report.html")["sections"]]
    assert titles.index("Stages") == titles.index("Strategy stages") + 1


def test_a_folder_without_stages_is_a_clear_error(run, tmp_path):
    root, _, _ = run
    with pytest.raises(UserError, match=r"--stages .*: no finished stage there"):
        run_report(ReportOptions(stages=str(root), out=str(tmp_path / "x")))
    with pytest.raises(UserError, match=r"--stages .*nope: no such folder"):
        run_report(ReportOptions(stages=str(tmp_path / "nope")))
    with pytest.raises(UserError, match="name at least one"):
        run_report(ReportOptions())


def test_one_stage_only_has_no_flows(run, tmp_path):
    _, out, _ = run
    one = tmp_path / "one" / "selection"
    shutil.copytree(out / "selection" / "stage-0", one / "stage-0")
    rep = tmp_path / "rep"
    run_report(ReportOptions(stages=str(one.parent), out=str(rep)))
    kinds = [b["kind"] for b in page_payload(rep / "report.html")["sections"][0]["blocks"]]
    assert "stack" not in kinds and "intervals" in kinds
    assert (rep / "stages.png").read_bytes().startswith(PNG)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_script_draws_stacked_segments_and_bands_without_points(run, tmp_path):
    root, out, written = run
    rep = root / "rep_js"
    run_report(ReportOptions(stages=str(out), out=str(rep)))
    data = tmp_path / "payload.json"
    data.write_text(json.dumps(page_payload(rep / "report.html")), encoding="utf-8")
    res = subprocess.run(["node", str(Path(__file__).with_name("report_js_dom.js")), str(ASSETS / "report.js"),
                          str(data)], capture_output=True, text=True, timeout=60, check=True)
    nodes = _walk(json.loads(res.stdout)["sections"], [])
    segs = [n for n in nodes if n["attrs"].get("class") == "seg"]
    drawn = ("learned", "rose_above", "stayed", "not_rescored", "kept", "entered")  # not entered_band
    assert len(segs) == sum(1 for w in written[1:] for k in drawn if w["flows"][k])
    intervals = next(n for n in nodes if n["attrs"].get("class") == "chart intervals")
    assert not [n for n in _walk(intervals, []) if n["tag"] == "circle"]


def test_stage_scores_parquet_is_the_trainer_s_table(run):
    _, out, _ = run
    t = pd.read_parquet(out / "selection" / "stage-1" / "scores.parquet")
    assert len(t) == K  # the writer's own candidates: the report reads the count from the manifest, not here
    assert load_stages(out)[1][1]["candidates"] == K


def test_a_study_s_dynamic_arm_page_shows_its_stages(tmp_path, monkeypatch):
    """The study's selection page of a dynamic arm (study/report_html.py) is run with --stages on its train step."""
    monkeypatch.chdir(REPO_ROOT)
    study = {"name": "page", "model": "unused-model", "template": "qwen", "cutoff_len": 256, "subset_size": N,
             "pool": {"demo_data": {"pool_size": 60, "eval_size": 6, "seed": 0}}, "seeds": [1],
             "arms": {"random": {"strategy": "random"}, "zd": {"strategy": "zpd", "dynamic": {"every": "epoch"}}},
             "train": {"recipe": "yaml_recipes/demo_zpd.yaml"}, "eval": {"suite": "heldout"},
             "analysis": {"reference": "random", "baseline": "", "draws": 300}, "out": str(tmp_path / "out")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study), encoding="utf-8")
    steps = build_plan(load_study(tmp_path / "study.yaml", known_strategies()))
    select = next(s for s in steps if s.kind == "select" and s.arm == "zd")
    train = next(s for s in steps if s.kind == "train" and s.arm == "zd")
    scores = make_scores_dir(tmp_path, n_rows=200)
    run_select(SelectOptions(scores=str(scores), name=subset_name("zd", 1, select), strategy="zpd", n=N, seed=1,
                             dataset_info=str(select.dir / "dataset_info.json")))
    _write_stages(scores, train.dir, DynamicSelection(pool="pool", scores=str(scores), n=N, seed=1), stages=2)
    pages = selection_pages(load_study(tmp_path / "study.yaml", known_strategies()), steps, tmp_path / "rep")
    page = tmp_path / "rep" / pages["zd"][0]
    titles = [s["title"] for s in page_payload(page)["sections"]]
    assert "Stages" in titles and (page.parent / "stages.png").is_file()
