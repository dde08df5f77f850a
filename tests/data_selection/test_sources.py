"""Reading a user's pool (data_selection.sources): bytes that are not UTF-8, path typos, the user's own ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_alpaca_rows

from data_selection.command_line import UserError
from data_selection.encoding import load_tokenizer
from data_selection.names import check_model_path
from data_selection.sources import PoolSpec, duplicate_user_ids_line, load_pool, resolve_attr


def _write_with_bad_byte(rows: list[dict], path: Path, bad_row: int) -> int:
    """JSON Lines with byte 0xff inside row ``bad_row``'s output; returns the file offset of that byte."""
    out = b""
    offset = -1
    for i, r in enumerate(rows):
        line = json.dumps(r).encode()
        if i == bad_row:
            at = line.index(b'"output": "') + len(b'"output": "')
            offset = len(out) + at
            line = line[:at] + b"\xff" + line[at:]
        out += line + b"\n"
    path.write_bytes(out)
    return offset


def test_a_jsonl_line_that_is_not_utf8_is_a_rejected_row_and_every_good_row_is_kept(tmp_path):
    rows = make_alpaca_rows(5)
    offset = _write_with_bad_byte(rows, tmp_path / "pool.jsonl", bad_row=2)
    pool = load_pool(PoolSpec(dataset=str(tmp_path / "pool.jsonl")))
    reasons = pool.converted["reject_reason"]
    assert [bool(r) for r in reasons] == [False, False, True, False, False]
    assert "line 3" in reasons[2] and "not valid UTF-8" in reasons[2] and f"byte {offset}" in reasons[2]
    kept = [m[0]["content"] if m else "" for m in pool.converted["_response"]]
    assert [kept[i] for i in (0, 1, 3, 4)] == [rows[i]["output"] for i in (0, 1, 3, 4)]
    assert not any("\ufffd" in t for t in kept)


def test_a_json_array_that_is_not_utf8_is_a_file_error_naming_file_and_offset(tmp_path):
    rows = make_alpaca_rows(3)
    text = json.dumps(rows).encode()
    at = text.index(b'"output": "', text.index(b'"output": "') + 1) + len(b'"output": "')  # row 2's output
    (tmp_path / "pool.json").write_bytes(text[:at] + b"\xff" + text[at:])
    with pytest.raises(UserError, match=rf"pool\.json: not valid UTF-8 .*byte {at}"):
        load_pool(PoolSpec(dataset=str(tmp_path / "pool.json")))


def test_a_sharegpt_array_with_a_bad_byte_never_reaches_the_rows_as_a_replacement_character(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"The answer {i}"}]}
            for i in range(3)]
    (tmp_path / "pool.json").write_bytes(json.dumps(rows).encode().replace(b"The answer 1", b"The \xff answer 1"))
    with pytest.raises(UserError, match="not valid UTF-8"):
        load_pool(PoolSpec(dataset=str(tmp_path / "pool.json")))


def test_a_path_typo_without_extension_says_what_it_may_mean_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "pool.jsonl").write_text(json.dumps(make_alpaca_rows(1)[0]) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        resolve_attr(PoolSpec(dataset="mydata/pool"))
    assert str(err.value) == ("no file or folder mydata/pool (did you mean mydata/pool.jsonl?); as a hub id it "
                              "cannot be reached offline")
    with pytest.raises(UserError) as err:
        resolve_attr(PoolSpec(dataset="someone/pool"))
    assert str(err.value) == "no file or folder someone/pool; as a hub id it cannot be reached offline"


def test_a_hub_id_is_still_a_hub_id_when_online_and_no_local_file_is_near(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    assert resolve_attr(PoolSpec(dataset="someone/pool")).load_from == "hf_hub"


def test_a_missing_model_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for path in ("models/nope/base", str(tmp_path / "nope"), "./nope"):
        with pytest.raises(UserError, match=rf"^--model: no folder {path}$"):
            check_model_path(path)
    with pytest.raises(UserError, match=r"^--model: no folder someone/model; as a hub id it is not in the local "
                                        r"cache and cannot be reached offline$"):
        check_model_path("someone/model")
    (tmp_path / "models" / "here").mkdir(parents=True)
    check_model_path("models/here")
    with pytest.raises(UserError, match=r"--tokenizer: no folder models/gone"):
        load_tokenizer("models/here", "models/gone")


def test_a_users_id_column_is_kept_as_user_id_and_duplicates_are_counted(tmp_path):
    rows = make_alpaca_rows(6)
    for i, r in enumerate(rows):
        r["id"] = ["a", "b", "a", "c", 7, "b"][i]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pool = load_pool(PoolSpec(dataset=str(path)))
    assert "user_id" in pool.meta_columns
    assert pool.converted["user_id"] == ["a", "b", "a", "c", "7", "b"]
    assert all(i.startswith(f"{r:08d}-") for r, i in enumerate(pool.converted["id"]))  # our row id is unchanged
    d = pool.describe()
    assert d["user_id_column"] == "id"
    assert d["duplicate_user_ids"] == {"ids": 2, "rows": 4, "first": ["a", "b"]}
    assert duplicate_user_ids_line(d) == ("duplicate user ids: 2 value(s) of column 'id' repeat over 4 rows (first: "
                                          "'a', 'b'); rows are told apart by our id, not by yours")


def test_a_pool_without_an_id_column_has_no_user_id(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_alpaca_rows(3)), encoding="utf-8")
    pool = load_pool(PoolSpec(dataset=str(path)))
    assert "user_id" not in pool.meta_columns and "user_id_column" not in pool.describe()
    assert duplicate_user_ids_line(pool.describe()) == ""
