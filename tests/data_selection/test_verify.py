"""`data-select verify` end to end on small pool files, and `select --strategy pass-cv` on its output."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from helpers import write_jsonl
from score_fixtures import make_scores_dir

from data_selection.cli import main
from data_selection.command_line import UserError
from data_selection.demo_data import DemoDataConfig, generate
from data_selection.select import SelectOptions, run_select
from data_selection.sources import PoolSpec, load_pool
from data_selection.verify.judge import NO_ANSWER, NO_MAJORITY, TIE
from data_selection.verify.options import VerifyOptions
from data_selection.verify.output import VERIFIED, load_verified
from data_selection.verify.runner import run_verify

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PASSING = {"correct", "repetitive", "scrambled", "no_think"}


def tr(answer: str) -> str:
    return f"<think>\nWe work it out. It takes three steps. Then we stop.\n</think>\n\nThe answer is \\boxed{{{answer}}}."


@pytest.fixture(scope="module")
def demo_pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify_demo")
    pool, _ = generate(DemoDataConfig(pool_size=60, eval_size=0, seed=4, contested_rate=0.68))  # many contested
    return write_jsonl(pool, root / "pool.jsonl"), pool


def _verify(dataset, out, **kw):
    return run_verify(VerifyOptions(dataset=str(dataset), out=str(out), **{"workers": 1, **kw}))


def test_reference_pool_scores_ids_and_counts(demo_pool, tmp_path):
    path, rows = demo_pool
    s = _verify(path, tmp_path / "v", system_prompt=SYSTEM, shard_rows=16)
    assert s["merged"] and s["reference_column"] == "answer" and s["shards_total"] >= 3
    table, meta, rejects = load_verified(tmp_path / "v", text_columns=True)
    conv = load_pool(PoolSpec(dataset=str(path), system_prompt=SYSTEM)).converted
    assert table["row"].tolist() == list(range(len(rows))) and table["id"].tolist() == conv["id"]
    want = [1.0 if r["response_kind"] in PASSING else 0.0 for r in rows]
    assert table["verify_score"].tolist() == want  # wrong answers and cut traces fail, the rest pass
    assert (table["method"] == "reference").all() and (table["reason"] == "").all()
    assert table["target"].tolist() == [r["answer"] for r in rows]
    groups = sorted(table.groupby("query")["row"].apply(list).tolist())
    assert groups == sorted(pd.DataFrame(rows).reset_index().groupby("query_id")["index"].apply(list).tolist())
    assert table["has_think"].tolist() == [r["response_kind"] != "no_think" for r in rows]
    c = meta["counts"]
    assert c["rows"] == c["verified_rows"] == c["scored"] == len(rows) and c["rejected"] == 0 and not rejects
    assert c["queries"] == len({r["query_id"] for r in rows})


def test_a_rerun_finishes_missing_shards_and_refuses_another_configuration(demo_pool, tmp_path):
    path, _ = demo_pool
    out = tmp_path / "v"
    _verify(path, out, shard_rows=16)
    first = pd.read_parquet(out / VERIFIED)
    shards = sorted((out / "shards").glob("shard-*.parquet"))
    shards[1].unlink()
    (out / VERIFIED).unlink()
    s = _verify(path, out, shard_rows=16)
    assert s["shards_done_before"] == len(shards) - 1 and s["rows_verified_now"] > 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / VERIFIED), first)
    with pytest.raises(UserError, match="different configuration"):
        _verify(path, out, shard_rows=16, min_votes=3)
    _verify(path, out, shard_rows=16, min_votes=3, overwrite=True)
    assert json.loads((out / "meta.json").read_text())["identity"]["min_votes"] == 3


def test_ranks_share_the_shards_and_the_last_one_merges(demo_pool, tmp_path, monkeypatch):
    path, _ = demo_pool
    _verify(path, tmp_path / "single", shard_rows=8)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    first = _verify(path, tmp_path / "ranks", shard_rows=8)
    assert not first["merged"] and 0 < first["shards_mine"] < first["shards_total"]
    monkeypatch.setenv("RANK", "1")
    second = _verify(path, tmp_path / "ranks", shard_rows=8)
    assert second["merged"] and first["shards_mine"] + second["shards_mine"] == second["shards_total"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "single" / VERIFIED),
                                  pd.read_parquet(tmp_path / "ranks" / VERIFIED))


def test_worker_processes_give_the_same_table(demo_pool, tmp_path):
    path, _ = demo_pool
    _verify(path, tmp_path / "one", shard_rows=8)
    s = _verify(path, tmp_path / "two", shard_rows=8, workers=2)
    assert s["workers"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / VERIFIED),
                                  pd.read_parquet(tmp_path / "two" / VERIFIED))


def test_majority_pool_code_rows_and_bad_rows(tmp_path):
    rows = [
        *({"category": "math", "source": "s", "input": "What is 1/2?", "output": tr(a)}
          for a in ("\\frac{1}{2}", "0.5", "1/2", "3")),
        *({"category": "math", "source": "s", "input": "What is 2+2?", "output": tr(a)} for a in ("4", "5")),
        {"category": "math", "source": "s", "input": "What  is 2+2? ", "output": "<think>\nno end"},  # same query
        {"category": "code", "source": "s", "input": "Write code.", "output": "<think>x</think>```py\npass```"},
        {"category": "", "source": "s", "input": "No category?", "output": tr("1")},
        {"category": "math", "source": "s", "input": "Broken row", "output": None},
        {"category": "math", "source": "s", "input": "Empty answer", "output": " "},  # a failed response: 0
    ]
    path = write_jsonl(rows, tmp_path / "pool.jsonl")
    _verify(path, tmp_path / "v")
    table, meta, rejects = load_verified(tmp_path / "v", text_columns=True)
    assert [r["row"] for r in rejects] == [9] and "null" in rejects[0]["reason"]
    t = table.set_index("row")
    assert t.loc[[0, 1, 2, 3], "verify_score"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert (t.loc[[0, 1, 2, 3], "method"] == "majority").all()
    assert t.loc[4, "query"] == t.loc[5, "query"] == t.loc[6, "query"]  # normalised prompt: one query
    assert t.loc[[4, 5], "reason"].tolist() == [TIE, TIE] and t.loc[[4, 5], "verify_score"].isna().all()
    assert t.loc[6, "reason"] == NO_ANSWER
    assert math.isnan(t.loc[7, "verify_score"]) and "code" in t.loc[7, "reason"] and t.loc[7, "method"] == ""
    assert t.loc[8, "category"] == "math" and t.loc[8, "reason"] == NO_MAJORITY  # no category: checked as math
    c = meta["counts"]
    assert t.loc[10, "verify_score"] == 0.0 and t.loc[10, "method"] == "empty"
    assert c["rejected"] == 1 and c["scored"] == 5 and c["no_score"] == 5
    assert c["no_score_reasons"][TIE] == 2


def test_the_datasets_own_columns_are_used_directly(tmp_path):
    rows = []
    for q in range(3):
        for k in range(3):
            rows.append({"question": f"Problem {q}?", "answer": tr(str(q + k)), "category": "math" if q else "code",
                         "ground_truth": str(q), "verify_score": None if (q, k) == (1, 1) else float(k == 0),
                         "pass_rate_r1": 1 / 3, "ppl": 2.0 + k, "model_name": "r1"})
    path = write_jsonl(rows, tmp_path / "hub.jsonl")
    s = _verify(path, tmp_path / "v")
    assert s["dataset_verify_score"] and s["reference_column"] == "ground_truth"  # `answer` is the response here
    table, meta, _ = load_verified(tmp_path / "v", text_columns=True)
    t = table.set_index("row")
    assert t.loc[4, "method"] == "reference" and t.loc[4, "verify_score"] == 0.0  # the one row without a score
    dataset_rows = [r for r in range(9) if r != 4]
    assert (t.loc[dataset_rows, "method"] == "dataset").all()
    assert t.loc[dataset_rows, "verify_score"].tolist() == [rows[r]["verify_score"] for r in dataset_rows]
    assert t["pass_rate_r1"].tolist() == [1 / 3] * 9 and t["ppl"].tolist() == [r["ppl"] for r in rows]
    assert meta["verifier"]["passthrough_columns"] == ["pass_rate_r1", "ppl", "model_name"]
    assert meta["verifier"]["checker"].startswith("math-verify 0.") and "latex2sympy2_extended" in meta["verifier"]["checker"]


def test_select_pass_cv_end_to_end_with_scores_report_and_check(demo_pool, tmp_path, capsys):
    _, pool_rows = demo_pool
    scores = make_scores_dir(tmp_path, rows=[dict(r) for r in pool_rows], name="demo")  # pool file demo.jsonl
    _verify(tmp_path / "demo.jsonl", tmp_path / "verify")
    info = tmp_path / "dataset_info.json"
    out = run_select(SelectOptions(name="pc", strategy="pass-cv", verified=str(tmp_path / "verify"),
                                   scores=str(scores), n=10, seed=3, dataset_info=str(info), max_ppl=0))
    m = out["manifest"]
    assert m["strategy"] == "pass-cv" and m["num_rows"] == 10 and m["funnel"]["selected"] == 10
    assert m["verified"]["dir"] == str(tmp_path / "verify") and m["scores"]["dir"] == str(scores)
    assert m["scorer"]["model"]["name_or_path"] == "tiny-test-model" and m["verifier"]["identity"]["query_key"] == ""
    assert "--verified" in m["recipe"] and "--scores" in m["recipe"]
    subset = [json.loads(x) for x in (tmp_path / "data" / "pc.jsonl").read_text().splitlines()]
    kinds = {r["output"]: r["response_kind"] for r in pool_rows}
    assert all(kinds[r["output"]] in ("correct", "scrambled") for r in subset)  # passing, clean text
    assert len({r["instruction"] for r in subset}) == 10  # one response per query
    assert set(subset[0]) == {"instruction", "input", "output", "system", "id", "category", "source", "response_kind"}
    assert all(r["response_kind"] == kinds[r["output"]] for r in subset)  # carried from the pool, row for row
    assert main(["check", "pc", "--dataset_info", str(info)]) == 0
    assert main(["report", "pc", "--out", str(tmp_path / "rep"), "--dataset_info", str(info)]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Query funnel (pass-cv)" in md and (tmp_path / "rep" / "pass_cv.png").exists()
    assert "## Composition of pc by response_kind" in md  # what the strategy chose, by the pool's own labels
    assert (tmp_path / "rep" / "key_histogram.png").exists()  # scores given: the loss plots are drawn too
    page = _html_payload(tmp_path / "rep" / "report.html")
    plane = next(b for sec in page["sections"] for b in sec["blocks"] if b.get("title", "").startswith("pc: pass rate / CV"))
    assert len(plane["groups"][1]["x"]) == 10 and page["browser"]["n_pool"] > 0  # the 10 queries taken
    capsys.readouterr()
    assert main(["select", "--verified", str(tmp_path / "verify"), "--strategy", "pass-cv", "--n", "500",
                 "--name", "pc_all", "--dataset_info", str(info)]) == 0
    assert "not padded" in capsys.readouterr().err
    assert main(["report", "pc_all", "pc", "--out", str(tmp_path / "rep2"), "--dataset_info", str(info)]) == 0
    assert _html_payload(tmp_path / "rep2" / "report.html")["browser"] is None  # no scores: no table of rows
    run_select(SelectOptions(name="z", strategy="zpd", scores=str(scores), n=10, seed=3, dataset_info=str(info)))
    assert main(["report", "z", "pc", "--out", str(tmp_path / "rep3"), "--dataset_info", str(info)]) == 0
    with open(tmp_path / "rep3" / "funnel.csv", encoding="utf-8") as f:
        funnel = {line.split(",")[0]: line.strip().split(",")[1:] for line in f}
    assert funnel["selected"] == ["10", "10"] and funnel["band"][1] == "0" and funnel["stage1"][0] == "0"


def _html_payload(path):
    import re

    return json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)</script>',
                                path.read_text(encoding="utf-8"), re.S)[1])


def test_inputs_each_strategy_needs(demo_pool, tmp_path, capsys):
    with pytest.raises(UserError, match="pass-cv needs --verified"):
        run_select(SelectOptions(name="x", strategy="pass-cv", n=3))
    with pytest.raises(UserError, match="zpd needs --scores"):
        run_select(SelectOptions(name="x", strategy="zpd", n=3))
    with pytest.raises(UserError, match="not found"):
        run_select(SelectOptions(name="x", strategy="pass-cv", verified=str(tmp_path / "nope"), n=3))
    assert main(["verify", "--dataset", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "v")]) == 1
    assert "not found" in capsys.readouterr().err
    path, _ = demo_pool
    with pytest.raises(UserError, match="reference_column"):
        _verify(path, tmp_path / "v", reference_column="nope")
