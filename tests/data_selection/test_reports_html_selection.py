"""The selection page (reports/html/selection.py, stages.py, browser.py and assets/report.js) with three selections.

Issue 28 (a zpd, a random and a matched-random selection on one pool): the Composition tables fit a laptop
window, each selection's verdict sits next to the row's id in a few words, the response-length histogram of
integer token counts has no empty comb teeth, the matched-random arm has its stage panel, the page carries
report.md's length table; issue 27.10: the band's two cut labels never overlap.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from score_fixtures import make_scores_dir

from data_selection.options.report import ReportOptions
from data_selection.reports.bins import integer_log_bins
from data_selection.reports.html.browser import KEPT, short_status
from data_selection.reports.selection import run_report
from data_selection.select import SelectOptions, run_select

ASSETS = Path(__file__).resolve().parents[2] / "data_selection" / "reports" / "html" / "assets"
NAMES = ["p_zpd", "p_random", "p_mr"]


def page_payload(path) -> dict:
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', path.read_text("utf-8"), re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("page3")
    scores = make_scores_dir(root, n_rows=300, truncated_rows=(1, 2, 3))
    info = str(root / "dataset_info.json")
    for name, strategy in (("p_zpd", "zpd"), ("p_random", "random")):
        run_select(SelectOptions(scores=str(scores), name=name, strategy=strategy, n=60, seed=42, dataset_info=info))
    run_select(SelectOptions(scores=str(scores), name="p_mr", strategy="random", match="p_zpd", n=60, seed=42,
                             match_bins=5, borrow=True, dataset_info=info))
    out = root / "report"
    run_report(ReportOptions(names=NAMES, out=str(out), dataset_info=info, html_texts=0))
    return root, out, page_payload(out / "report.html")


def _section(payload, title):
    return next(s for s in payload["sections"] if s["title"] == title)


def test_composition_tables_have_one_column_per_selection(report):
    _, _, d = report
    tables = [b for b in _section(d, "Composition")["blocks"] if b["kind"] == "table"]
    assert tables
    for t in tables:  # label column + pool column(s) + one per selection: no name x measure product
        assert len(t["columns"]) <= 3 + len(NAMES), t["columns"]
        assert t["columns"][-len(NAMES):] == NAMES


def test_status_columns_follow_the_id_in_a_few_words(report):
    _, _, d = report
    b = d["browser"]
    keys = [c["key"] for c in b["columns"]]
    assert keys[:2 + len(NAMES)] == ["row", "id", *(f"sel:{n}" for n in NAMES)]
    short = b["status_short"]
    assert len(short) == len(b["status_legend"]) and max(len(s) for s in short) <= 18
    assert short[b["status_legend"].index(KEPT)] == KEPT
    assert short_status("dropped · below the band of its source (a) (too easy)") == "below band"
    assert short_status("kept (over-length: trained on cut)") == "kept (cut)"
    assert short_status("dropped · eligible, not chosen by matched-random") == "not chosen"


def test_integer_lengths_get_bins_that_each_hold_an_integer():
    rng = np.random.default_rng(0)
    lengths = np.round(rng.lognormal(5, 1.2, 5200)).clip(1).astype(np.float64)
    edges = integer_log_bins(lengths)
    assert np.all(np.diff(edges) >= 1) and np.allclose(edges % 1, 0.5)
    counts, _ = np.histogram(lengths, bins=edges)
    lo, hi = np.quantile(lengths, [0.02, 0.98])
    inner = (edges[:-1] >= lo) & (edges[1:] <= hi)
    assert (counts[inner] > 0).all()  # no comb: every bin where the data is dense has rows


def test_the_response_length_histogram_uses_integer_bins(report):
    _, _, d = report
    h = next(b for b in _section(d, "Key and length")["blocks"] if b.get("title", "").startswith("Response length"))
    edges = np.asarray(h["edges"])
    assert np.allclose(edges % 1, 0.5) and np.all(np.diff(edges) >= 1)


def test_matched_random_has_its_stage_panel(report):
    root, _, d = report
    m = json.loads((root / "data" / "p_mr.manifest.json").read_text("utf-8"))["matching"]
    blocks = [b for b in _section(d, "Strategy stages")["blocks"]
              if b.get("title", "").startswith("p_mr:") or b.get("text", "").startswith("p_mr:")]
    bins = next(b for b in blocks if b["kind"] == "table" and b["title"] == "p_mr: length bins")
    assert [r[0] for r in bins["rows"]] == [c["cell"] for c in m["cells"]]
    assert [r[1:] for r in bins["rows"]] == [[c["target"], c["quota"], c["drawn"], c["candidates"]] for c in m["cells"]]
    note = next(b for b in blocks if b["kind"] == "note")
    assert f"{m['ks_lengths']['statistic']:.3f}" in note["text"]
    assert any(b["kind"] == "hbar" for b in blocks)


def test_the_page_has_report_md_length_table(report):
    _, out, d = report
    t = next(b for b in _section(d, "Key and length")["blocks"] if b["kind"] == "table")
    assert [r[0] for r in t["rows"]] == NAMES
    md = (out / "report.md").read_text("utf-8")
    for r in t["rows"]:
        line = next(x for x in md.splitlines() if x.startswith(f"| {r[0]} | "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert f"{r[2]:+.3f}" == cells[2] and r[3] == cells[3] and f"{r[4]:.3f}" == cells[4]


def test_the_band_labels_sit_on_either_side_of_their_cuts(report):
    _, _, d = report
    h = next(b for b in _section(d, "Key and length")["blocks"] if b["kind"] == "hist")
    assert [c["label"] for c in h["cuts"]] == ["q0.25", "q0.75"]
    assert [c["anchor"] for c in h["cuts"]] == ["end", "start"]


def _walk(node, out):
    out.append(node)
    for c in node.get("children", []):
        _walk(c, out)
    return out


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_script_draws_what_the_payload_says(report, tmp_path):
    _, out, d = report
    data = tmp_path / "payload.json"
    data.write_text(json.dumps(d), encoding="utf-8")
    res = subprocess.run(["node", str(Path(__file__).with_name("report_js_dom.js")), str(ASSETS / "report.js"),
                          str(data)], capture_output=True, text=True, timeout=60, check=True)
    tree = json.loads(res.stdout)
    assert tree["ready"] == "1"
    nodes = _walk(tree["sections"], [])
    labels = [n for n in nodes if n["attrs"].get("class") == "cut-label"]
    lines = [n for n in nodes if n["attrs"].get("class") == "cut"]
    assert [n["attrs"]["text-anchor"] for n in labels] == ["end", "start"]
    # the lower label ends left of its line, the upper starts right of its own: they cannot overlap
    assert float(labels[0]["attrs"]["x"]) < float(lines[0]["attrs"]["x1"])
    assert float(labels[1]["attrs"]["x"]) > float(lines[1]["attrs"]["x1"])
    parents = {}
    for n in nodes:
        for c in n["children"]:
            parents[id(c)] = n
    tables = [n for n in nodes if n["tag"] == "table"]
    assert tables and all(parents[id(t)]["attrs"].get("class") == "tscroll" for t in tables)
    css = (ASSETS / "report.css").read_text("utf-8")
    assert re.search(r"\.tscroll\s*\{[^}]*overflow-x:\s*auto", css)
    rows = [n for n in _walk(tree["browser"], []) if n["attrs"].get("class", "").startswith("row")]
    cells = rows[0]["children"]
    status = cells[2:2 + len(NAMES)]
    assert all("status" in c["attrs"]["class"] for c in status)
    assert all(c["text"] in d["browser"]["status_short"] and c["attrs"]["title"] in d["browser"]["status_legend"]
               for c in status)
    assert re.search(r"td\.status\s*\{[^}]*text-align:\s*left", css)
