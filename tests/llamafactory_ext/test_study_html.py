"""The study's report.html: the bootstrap's intervals, every per-problem score, links to the arms' selection pages."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import yaml
from helpers import REPO_ROOT
from score_fixtures import make_scores_dir

from data_selection.select import SelectOptions, run_select
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies, subset_name
from llamafactory_ext.study.report import write_report

STUDY = {
    "name": "page", "model": "unused-model", "template": "qwen", "cutoff_len": 256,
    "pool": {"demo_data": {"pool_size": 40, "eval_size": 6, "seed": 0}}, "subset_size": 20, "seeds": [1, 2],
    "arms": {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd"}},
    "train": {"recipe": "yaml_recipes/demo_zpd.yaml"}, "eval": {"suite": "heldout"},
    "analysis": {"reference": "random", "baseline": "", "draws": 300},
}


def _payload(path):
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', path.read_text(), re.S)
    return json.loads(m.group(1))


def test_study_page(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "out": str(tmp_path / "out")}), encoding="utf-8")
    cfg = load_study(path, known_strategies())
    steps = build_plan(cfg)
    # the zpd arm's first-seed subset exists (made as its select step would); the random arm's does not
    zpd = next(s for s in steps if s.kind == "select" and s.arm == "zpd" and s.seed == 1)
    scores = make_scores_dir(tmp_path, n_rows=120)
    run_select(SelectOptions(scores=str(scores), name=subset_name("zpd", 1, zpd), strategy="zpd", n=20, seed=1,
                             dataset_info=str(zpd.dir / "dataset_info.json")))
    rng = np.random.default_rng(0)
    results = pd.DataFrame([{"task": "heldout", "arm": a, "seed": s, "problem": f"p{p}",
                             "score": float(rng.random() < (0.4 if a == "random" else 0.6))}
                            for a in ("random", "zpd") for s in (1, 2) for p in range(6)])
    summary = write_report(cfg, steps, results, None)
    out = cfg.report_dir
    d = _payload(out / "report.html")
    sec = d["sections"][0]
    arms_block, diff_block = (b for b in sec["blocks"] if b["kind"] == "intervals")
    task = summary["tasks"]["heldout"]
    assert [(r["estimate"], r["low"], r["high"]) for r in arms_block["rows"]] == [
        (task["arms"][a]["estimate"], task["arms"][a]["low"], task["arms"][a]["high"]) for a in ("random", "zpd")]
    (diff,) = diff_block["rows"]
    assert diff["label"] == "zpd − random" and diff["estimate"] == task["differences"]["zpd - random"]["estimate"]
    assert any(b["kind"] == "note" and b["text"].startswith("zpd − random = ") for b in sec["blocks"])
    g = next(b for b in sec["blocks"] if b["kind"] == "grid")
    assert g["rows"] == ["random seed 1", "random seed 2", "zpd seed 1", "zpd seed 2"]
    by = results.set_index(["arm", "seed", "problem"])["score"]
    for i, label in enumerate(g["rows"]):
        arm, seed = label.split(" seed ")
        assert g["values"][i] == [by[(arm, int(seed), p)] for p in g["columns"]]
    links = {it["label"]: it for it in d["sections"][-1]["blocks"][0]["items"]}
    assert links["zpd"]["href"] == "selections/zpd/report.html" and (out / links["zpd"]["href"]).is_file()
    assert "href" not in links["random"] and "no selection page" in links["random"]["text"]
