"""`data-select verify` on pools built for the defects of issue 19: an empty response in every layout, a
JSON Lines file with U+2028 after a bad line, a numeric reference answer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import write_jsonl

from data_selection.command_line import UserError
from data_selection.jsonl import jsonl_lines, read_jsonl
from data_selection.select import SelectOptions, run_select
from data_selection.selectors.pass_cv import select_pass_cv
from data_selection.sources import PoolSpec, load_pool
from data_selection.verify.options import VerifyOptions
from data_selection.verify.output import load_verified
from data_selection.verify.runner import run_verify


def tr(answer: str) -> str:
    return f"<think>\nWe add the numbers and check.\n</think>\n\nThe answer is \\boxed{{{answer}}}."


def _verify(path, out, **kw):
    run_verify(VerifyOptions(dataset=str(path), out=str(out), workers=1, **kw))
    return load_verified(out, text_columns=True)


# one query answered right three times and once with an empty (or blank) response, in each layout
LAYOUTS = {
    "alpaca": lambda out: {"instruction": "What is 2+2?", "input": "", "output": out, "answer": "4"},
    "acereason": lambda out: {"category": "math", "source": "s", "input": "What is 2+2?", "output": out,
                              "answer": "4"},
    "am_deepseek": lambda out: {"question": "What is 2+2?", "answer": out, "ground_truth": "4", "category": "math"},
    "sharegpt": lambda out: {"conversations": [{"from": "human", "value": "What is 2+2?"},
                                               {"from": "gpt", "value": out}], "answer": "4"},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("empty", ["", "  \n "])
def test_an_empty_response_is_a_failed_response_in_every_layout(layout, empty, tmp_path):
    make = LAYOUTS[layout]
    rows = [make(tr("4")), make(tr("4")), make(empty), make(tr("4"))]
    table, meta, rejects = _verify(write_jsonl(rows, tmp_path / "pool.jsonl"), tmp_path / "v")
    assert not rejects and meta["counts"]["rejected"] == 0  # scored, not rejected
    t = table.set_index("row")
    assert t["verify_score"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert t.loc[2, "method"] == "empty" and t["query"].nunique() == 1
    # the query is contested: CV = sqrt(3)/3 = 0.577, as the paper computes it; the empty row is never selected
    sel = select_pass_cv(table, n=5, seed=0)
    assert sel.facts["stats"]["key"]["selected"]["max"] == pytest.approx(np.sqrt(3) / 3)
    assert set(sel.rows.tolist()) <= {0, 1, 3} and len(sel.rows) == 1  # Stage II: one response per query
    assert select_pass_cv(table, n=5, seed=0, responses_per_query="all").rows.tolist() == [0, 1, 3]


@pytest.mark.parametrize("layout", ["sharegpt", "acereason"])
def test_zero_eligible_rows_is_an_error_and_nothing_is_written(layout, tmp_path):
    make = LAYOUTS[layout]
    rows = [make(tr("4")) for _ in range(3)]  # every response right: CV 0, nothing to select
    _verify(write_jsonl(rows, tmp_path / "pool.jsonl"), tmp_path / "v")
    info = tmp_path / "dataset_info.json"
    info.write_text("{}\n", encoding="utf-8")
    with pytest.raises(UserError, match="0 eligible rows.*nothing was written or registered"):
        run_select(SelectOptions(name="none", strategy="pass-cv", verified=str(tmp_path / "v"), n=3,
                                 dataset_info=str(info)))
    assert json.loads(info.read_text()) == {} and not (tmp_path / "data").exists()


def test_an_empty_response_is_zero_in_a_majority_check_too(tmp_path):
    rows = [{"input": "What is 2+2?", "output": o} for o in (tr("4"), tr("4"), "", tr("5"))]
    table, _, rejects = _verify(write_jsonl(rows, tmp_path / "pool.jsonl"), tmp_path / "v")
    assert not rejects
    assert table["verify_score"].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_score_still_rejects_an_empty_response(tmp_path):
    rows = [{"input": "What is 2+2?", "output": o} for o in (tr("4"), "")]
    conv = load_pool(PoolSpec(dataset=str(write_jsonl(rows, tmp_path / "p.jsonl")))).converted
    assert conv["reject_reason"][0] == "" and "(response) is empty" in conv["reject_reason"][1]
    assert conv["_prompt"][1][0]["content"] == "What is 2+2?"  # converted all the same, for verify's grouping


def test_a_row_with_u2028_is_read_whole_after_a_bad_line(tmp_path):
    """One broken line sends the file to the row-by-row reader; rows holding U+2028, U+2029, U+0085, form
    feeds or a lone CR inside strings are still one row each, and line numbers stay right."""
    odd = ["\u2028", "\u2029", "\x85", "\x0c", "\x1e", "\r"]
    lines = []
    for i in range(12):
        if i == 3:
            lines.append('{"input": "broken", "output": ')  # invalid JSON
            continue
        sep = odd[i % len(odd)]
        row = {"input": f"What is {i}+1?{sep}Think.", "output": tr(f"{i + 1}{sep}"), "answer": str(i + 1)}
        lines.append(json.dumps(row, ensure_ascii=False))
    path = tmp_path / "pool.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    table, meta, rejects = _verify(path, tmp_path / "v")
    assert meta["pool"]["num_rows"] == 12 and len(table) == 11
    assert [r["row"] for r in rejects] == [3] and "line 4: invalid JSON" in rejects[0]["reason"]
    assert table["row"].tolist() == [i for i in range(12) if i != 3]
    assert (table["verify_score"] == 1.0).all()  # every answer read whole and right
    assert [n for n, _ in jsonl_lines(path)] == list(range(1, 13))


def test_project_jsonl_readers_split_on_newline_only(tmp_path):
    recs = [{"row": 0, "reason": "a\u2028b"}, {"row": 1, "reason": "c\x85d\re"}]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs) + "\n", encoding="utf-8",
                    newline="")
    assert read_jsonl(path) == recs


def test_a_numeric_reference_answer_is_an_answer(tmp_path):
    rows = [{"input": "What is 2+2?", "output": tr(a), "answer": ref}
            for a, ref in (("4", 4), ("5", 4), ("1/2", "\\frac{1}{2}"), ("0.5", 0.5), ("7", "7"))]
    rows.append({"input": "Bad", "output": 12, "answer": "1"})  # a number as the response is still rejected
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    table, _, rejects = _verify(path, tmp_path / "v")
    assert [r["row"] for r in rejects] == [5] and "not a string" in rejects[0]["reason"]
    t = table.set_index("row")
    assert t["verify_score"].tolist() == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert t.loc[[0, 3], "target"].tolist() == ["4", "0.5"]


def test_verify_stores_the_dataset_wide_ngram_count(tmp_path):
    template = " ".join(f"t{i}" for i in range(20))
    rows = [{"input": f"What is {k}+0?", "output": f"<think>\n{template}\n</think>\n\\boxed{{{k}}}", "answer": str(k)}
            for k in range(21)]
    rows.append({"input": "Other?", "output": tr("1"), "answer": "1"})
    table, meta, _ = _verify(write_jsonl(rows, tmp_path / "pool.jsonl"), tmp_path / "v")
    assert table["dataset_repeat"].tolist() == [21] * 21 + [0] and (table["max_repeat"] <= 1).all()
    assert meta["counts"]["dataset_repeat_over_20"] == 21
    table2, _, _ = _verify(tmp_path / "pool.jsonl", tmp_path / "v2", dataset_repeats=False)
    assert "dataset_repeat" not in table2


def _wrong_pool(tmp_path):
    rows = [{"input": "Half?", "output": tr(a), "answer": "1/2"} for a in ("1/2", "one half", "3")]
    return write_jsonl(rows, tmp_path / "pool.jsonl")


def test_recheck_turns_a_model_confirmed_wrong_verdict_right(tmp_path, monkeypatch):
    import data_selection.verify.recheck as rc

    asked = []

    def stand_in(model, template, pairs, batch_size=16, device=""):  # a judge that knows "one half" = 1/2
        asked.extend(pairs)
        return [" Yes." if a == "one half" else "no" for a, _ in pairs]

    monkeypatch.setattr(rc, "ask", stand_in)
    path = _wrong_pool(tmp_path)
    plain, _, _ = _verify(path, tmp_path / "plain")
    assert plain["verify_score"].tolist() == [1.0, 0.0, 0.0]  # math-verify alone: the default
    table, meta, _ = _verify(path, tmp_path / "v", recheck_model="stand-in", recheck_template="qwen")
    assert sorted(asked) == [("3", "1/2"), ("one half", "1/2")]  # only math-verify's 'wrong' verdicts are asked
    assert table["verify_score"].tolist() == [1.0, 1.0, 0.0]
    assert table["method"].tolist() == ["reference", "reference+model", "reference"]
    assert meta["recheck"]["asked"] == 2 and meta["recheck"]["turned_right"] == 1
    asked.clear()
    table2, meta2, _ = _verify(path, tmp_path / "v", recheck_model="stand-in", recheck_template="qwen")
    assert asked == [] and meta2["recheck"]["asked_now"] == 0  # a re-run reuses recheck.parquet
    assert table2["verify_score"].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(UserError, match="--recheck_template"):
        _verify(path, tmp_path / "x", recheck_model="stand-in")


@pytest.mark.slow
def test_recheck_with_the_embedded_smollm2(smollm2_dir, tmp_path):
    table, meta, _ = _verify(_wrong_pool(tmp_path), tmp_path / "v", recheck_model=str(smollm2_dir),
                             recheck_template="smollm2")
    replies = __import__("pandas").read_parquet(tmp_path / "v" / "recheck.parquet")
    assert sorted(replies["row"]) == [1, 2] and replies["reply"].map(lambda r: isinstance(r, str)).all()
    assert meta["recheck"]["asked"] == 2 and table.loc[0, "verify_score"] == 1.0
