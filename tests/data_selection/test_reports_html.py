"""`data-select report` writes report.html: self-contained, its numbers the manifests' and the scores'."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from score_fixtures import make_scores_dir

from data_selection.options.report import ReportOptions
from data_selection.reports.html.browser import KEPT
from data_selection.reports.selection import run_report
from data_selection.select import SelectOptions, run_select


def page_payload(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    scores = make_scores_dir(root, n_rows=300, truncated_rows=(1, 2, 3))
    info = root / "dataset_info.json"
    for strategy in ("zpd", "random"):
        run_select(SelectOptions(scores=str(scores), name=f"h_{strategy}", strategy=strategy, n=60, seed=42,
                                 dataset_info=str(info)))
    return root, scores, info


def _report(pool, name, **kw):
    root, _, info = pool
    out = root / "reports" / name
    run_report(ReportOptions(names=["h_zpd", "h_random"], out=str(out), dataset_info=str(info), **kw))
    return out / "report.html"


def _manifest(root, name):
    return json.loads((root / "data" / f"{name}.manifest.json").read_text(encoding="utf-8"))


def test_page_is_self_contained(pool):
    text = _report(pool, "plain").read_text(encoding="utf-8")
    assert "<script src" not in text and "<link" not in text and "url(" not in text
    assert not re.search(r"""(src|href)=["']https?:""", text)
    assert text.count("<script") == 2  # the data and the inlined script


def test_statuses_and_cut_points_are_the_selections(pool, qwen_tokenizer_dir):
    root, scores, _ = pool
    d = page_payload(_report(pool, "tok", html_tokenizer=str(qwen_tokenizer_dir)))
    zpd, rnd = _manifest(root, "h_zpd"), _manifest(root, "h_random")
    key_hist = next(b for s in d["sections"] for b in s["blocks"] if b["kind"] == "hist")
    assert [c["value"] for c in key_hist["cuts"]] == [zpd["thresholds"]["low_value"], zpd["thresholds"]["high_value"]]
    b = d["browser"]
    table = pd.read_parquet(scores / "scores.parquet")
    assert b["n_pool"] == len(table) == len(b["data"]["id"])
    legend = b["status_legend"]
    z = pd.Series([legend[c] for c in b["data"]["sel:h_zpd"]]).value_counts()
    f = zpd["funnel"]
    assert z[KEPT] == f["selected"] == 60
    assert z["dropped · below the band (too easy)"] == f["dropped_low"]
    assert z["dropped · above the band (too hard)"] == f["dropped_high"]
    assert z["dropped · in the band, not drawn"] == f["band"] - f["selected"]
    assert z["dropped · over-length (LLaMA-Factory would cut it)"] == f["over_length_dropped"] == 3
    r = pd.Series([legend[c] for c in b["data"]["sel:h_random"]]).value_counts()
    assert r[KEPT] == rnd["funnel"]["selected"] and r["dropped · eligible, not drawn"] == rnd["funnel"]["eligible"] - 60
    kept_ids = {i for i, c in zip(b["data"]["id"], b["data"]["sel:h_zpd"]) if legend[c] == KEPT}
    ids = {json.loads(line)["id"] for line in (root / "data" / "h_zpd.jsonl").read_text().splitlines()}
    assert kept_ids == ids
    # texts: the row's own response, rendered through the qwen template by the tokenizer
    rows = [json.loads(line) for line in (root / "pool.jsonl").read_text().splitlines()]
    for i in list(b["texts"])[:5]:
        t, row = b["texts"][i], b["data"]["row"][int(i)]
        assert t["response"] == rows[row]["output"] + "<|im_end|>\n" and t["response"].endswith("<|im_end|>\n")
        assert "<|im_start|>assistant" in t["prompt"] and rows[row]["input"] in t["prompt"]
    assert "the tokenizer" in b["text_note"]
    overlap = next(s for s in d["sections"] if s["title"] == "Overlap")["blocks"][0]["rows"][0]
    both = len(ids & {json.loads(line)["id"] for line in (root / "data" / "h_random.jsonl").read_text().splitlines()})
    assert overlap[1:4] == [60, 60, both] and overlap[4] == round(both / (120 - both), 4)


def test_row_bound_keeps_every_kept_row_and_texts_are_bounded(pool):
    d = page_payload(_report(pool, "bounded", html_rows=240, html_texts=20))
    b = d["browser"]
    legend = b["status_legend"]
    assert len(b["data"]["id"]) == 240 and b["n_pool"] == 300
    kept = [i for i in range(240) if KEPT in (legend[b["data"]["sel:h_zpd"][i]], legend[b["data"]["sel:h_random"][i]])]
    root = pool[0]
    union = {json.loads(line)["id"] for n in ("h_zpd", "h_random")
             for line in (root / "data" / f"{n}.jsonl").read_text().splitlines()}
    assert {b["data"]["id"][i] for i in kept} == union
    assert len(b["texts"]) == 20 and {int(i) for i in b["texts"]} <= set(kept)
    assert "formatters" in b["text_note"]  # no tokenizer: the template's own formatters render the text
    t = next(iter(b["texts"].values()))
    assert t["pieces"] == [] and "<|im_start|>user" in t["prompt"]


def test_token_losses_colour_the_response(pool, qwen_tokenizer_dir, tmp_path):
    root, scores, info = pool
    table = pd.read_parquet(scores / "scores.parquet")
    rng = np.random.default_rng(0)
    table["token_losses"] = [rng.uniform(0, 4, 8).round(3).tolist() for _ in range(len(table))]
    table.to_parquet(scores / "scores.parquet", index=False)
    try:
        d = page_payload(_report(pool, "tokens", html_tokenizer=str(qwen_tokenizer_dir), html_texts=5))
    finally:
        table.drop(columns="token_losses").to_parquet(scores / "scores.parquet", index=False)
    b = d["browser"]
    for i, t in b["texts"].items():
        want = table.loc[table["row"] == b["data"]["row"][int(i)], "token_losses"].iloc[0]
        assert len(t["pieces"]) >= 1 and [p[1] for p in t["pieces"]][:2] == want[:2]
        assert "coloured by their loss" in b["text_note"]
