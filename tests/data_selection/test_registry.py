"""dataset_info.json registration (atomic, locked, ownership-aware) and `data-select check`."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest
from helpers import REPO_ROOT, make_alpaca_rows, write_jsonl

from data_selection.cli import main
from data_selection.command_line import UserError
from data_selection.registry import (
    MARKER,
    check_dataset_info,
    check_subset_name,
    read_dataset_info,
    register_entry,
    subset_entry,
)
from data_selection.subset import ALPACA_COLUMNS

HAND_ENTRY = {"file_name": "mine.json", "columns": {"prompt": "q", "response": "a"}}


def _info(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "dataset_info.json"
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return path


def test_register_adds_and_updates_in_place_keeping_other_entries(tmp_path):
    path = _info(tmp_path, {"hand_a": HAND_ENTRY, "hand_b": {"hf_hub_url": "x/y"}})
    entry = subset_entry("data/s.jsonl", "alpaca", ALPACA_COLUMNS)
    assert register_entry(path, "sub", entry) == "added"
    assert register_entry(path, "sub", entry) == "unchanged"
    info = read_dataset_info(path)
    assert list(info) == ["hand_a", "hand_b", "sub"]
    assert info["hand_a"] == HAND_ENTRY and info["sub"]["created_by"] == MARKER
    # move it to the middle by hand; an update keeps its position and the hand entries untouched
    path.write_text(json.dumps({"hand_a": HAND_ENTRY, "sub": info["sub"], "hand_b": info["hand_b"]}), "utf-8")
    assert register_entry(path, "sub", subset_entry("data/s2.jsonl", "alpaca", ALPACA_COLUMNS)) == "updated"
    info = read_dataset_info(path)
    assert list(info) == ["hand_a", "sub", "hand_b"]
    assert info["sub"]["file_name"] == "data/s2.jsonl"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".dataset_info.json.*.tmp"))


def test_register_refuses_an_entry_it_did_not_create_unless_forced(tmp_path):
    path = _info(tmp_path, {"hand_a": HAND_ENTRY})
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"entry 'hand_a' was not created by data-select.*--force"):
        register_entry(path, "hand_a", subset_entry("data/s.jsonl", "alpaca", ALPACA_COLUMNS))
    assert path.read_bytes() == before
    assert register_entry(path, "hand_a", subset_entry("data/s.jsonl", "alpaca", ALPACA_COLUMNS), force=True) == "updated"
    assert read_dataset_info(path)["hand_a"]["created_by"] == MARKER


@pytest.mark.parametrize("text", ['{"a": {"file_name": "x.json"', "[1, 2]", '{"a": 3}'])
def test_corrupted_dataset_info_is_a_clear_error_naming_the_file(tmp_path, text, capsys):
    path = tmp_path / "dataset_info.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=str(path)):
        register_entry(path, "sub", subset_entry("data/s.jsonl", "alpaca", ALPACA_COLUMNS))
    with pytest.raises(UserError, match=str(path)):
        check_dataset_info(path)
    assert path.read_text(encoding="utf-8") == text  # nothing overwritten
    assert main(["check", "--dataset_info", str(path)]) == 1
    assert str(path) in capsys.readouterr().err


def _register_many(path: str, worker: int, count: int, barrier) -> None:
    barrier.wait(60)  # start together, so the read-modify-write cycles overlap
    for i in range(count):
        register_entry(path, f"w{worker}_{i}", subset_entry(f"data/w{worker}_{i}.jsonl", "alpaca", ALPACA_COLUMNS))


def test_concurrent_registrations_lose_nothing(tmp_path):
    path = _info(tmp_path, {"hand_a": HAND_ENTRY})
    ctx = mp.get_context("spawn")
    workers, count = 6, 20
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_register_many, args=(str(path), w, count, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    info = read_dataset_info(path)
    assert info["hand_a"] == HAND_ENTRY and next(iter(info)) == "hand_a"
    assert {f"w{w}_{i}" for w in range(workers) for i in range(count)} <= set(info)
    assert len(info) == 1 + workers * count


def _file_entry(file_name, **extra):
    return {"file_name": file_name, "formatting": "alpaca", "columns": dict(ALPACA_COLUMNS), **extra}


def test_check_reports_every_problem_by_entry_name(tmp_path, capsys):
    write_jsonl(make_alpaca_rows(6), tmp_path / "data" / "good.jsonl")
    write_jsonl([{k: v for k, v in r.items() if k != "system"} for r in make_alpaca_rows(4)],
                tmp_path / "data" / "nosys.jsonl")
    write_jsonl(make_alpaca_rows(4), tmp_path / "data" / "unmapped.jsonl")
    write_jsonl([{"instruction": "", "input": "", "output": "x", "system": ""}], tmp_path / "data" / "empty.jsonl")
    path = _info(tmp_path, {
        "good": _file_entry("data/good.jsonl"),
        "missing_file": _file_entry("data/nope.jsonl", recipe="data-select select --name missing_file"),
        "missing_column": _file_entry("data/nosys.jsonl"),
        "bad_format": {**_file_entry("data/good.jsonl"), "formatting": "chatml"},
        "typo_column": {"file_name": "data/good.jsonl", "columns": {"instruction": "instruction"}},
        "unmapped_system": {"file_name": "data/unmapped.jsonl",
                            "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
        "no_source": {"formatting": "alpaca"},
        "empty_prompt": _file_entry("data/empty.jsonl"),
        "hub": {"hf_hub_url": "redsgnaoh/acereason11_100k", "columns": dict(ALPACA_COLUMNS)},
    })
    results = {r.name: r for r in check_dataset_info(path)}
    assert results["good"].ok and "loaded 6 row(s)" in results["good"].notes[0]
    assert results["hub"].ok and "structurally only (offline)" in results["hub"].notes[0]
    expect = {
        "missing_file": "not found (not created yet: data-select select --name missing_file)",
        "missing_column": "declared column(s) {'system': 'system'} not in",
        "bad_format": "formatting 'chatml' is not one LLaMA-Factory knows",
        "typo_column": "columns key(s) ['instruction'] are not ones LLaMA-Factory reads",
        "unmapped_system": "silently use the template's default system prompt",
        "no_source": "no data source",
        "empty_prompt": "have an empty prompt or response message",
    }
    for name, text in expect.items():
        assert not results[name].ok, name
        assert any(text in p for p in results[name].problems), (name, results[name].problems)
    assert main(["check", "--dataset_info", str(path)]) == 1
    out = capsys.readouterr().out
    for name in expect:
        assert f"PROBLEM  {name}:" in out
    assert "9 entries checked, 7 with problems" in out
    assert main(["check", "good", "hub", "--dataset_info", str(path)]) == 0


def test_cli_register_detects_columns_from_the_file(tmp_path, capsys):
    write_jsonl(make_alpaca_rows(3), tmp_path / "data" / "mine.jsonl")
    path = tmp_path / "dataset_info.json"
    assert main(["register", "--name", "mine", "--dataset_info", str(path)]) == 0
    entry = read_dataset_info(path)["mine"]
    assert entry["file_name"] == "data/mine.jsonl" and entry["formatting"] == "alpaca"
    assert entry["columns"] == {"prompt": "instruction", "response": "output", "query": "input", "system": "system"}
    assert main(["check", "--dataset_info", str(path)]) == 0
    assert main(["register", "--name", "other", "--dataset_info", str(path)]) == 1
    assert "data/other.jsonl: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("columns, message", [
    ('["prompt"]', "--columns must be a JSON object, got '[\"prompt\"]'"),
    ("{prompt: q}", "--columns is not valid JSON"),
])
def test_cli_columns_option_errors_are_clear_and_leave_dataset_info_alone(tmp_path, capsys, columns, message):
    write_jsonl(make_alpaca_rows(3), tmp_path / "data" / "mine.jsonl")
    path = _info(tmp_path, {"hand": HAND_ENTRY})
    before = path.read_bytes()
    assert main(["register", "--name", "mine", "--dataset_info", str(path), "--columns", columns]) == 1
    assert message in capsys.readouterr().err
    assert path.read_bytes() == before
    # the same parser serves `score` and `verify`, before any model or pool is loaded
    for command in (["score", "--model", str(tmp_path), "--template", "qwen"], ["verify"]):
        argv = [*command, "--dataset", str(tmp_path / "data" / "mine.jsonl"), "--out", str(tmp_path / "o"),
                "--columns", columns]
        assert main(argv) == 1
        assert message in capsys.readouterr().err


def test_root_dataset_info_declares_the_shared_entries():
    from llamafactory.data.parser import get_dataset_list

    path = REPO_ROOT / "dataset_info.json"
    info = read_dataset_info(path, missing_ok=False)
    ours = ["acereason_zpd_15k", "acereason_random_15k", "acereason_temp_15k", "demo_zpd", "demo_random"]
    assert set(ours) | {"acereason11_100k"} <= set(info)
    attrs = {a.dataset_name: a for a in get_dataset_list(list(info), str(REPO_ROOT))}
    pool = attrs["redsgnaoh/acereason11_100k"]
    assert (pool.load_from, pool.prompt, pool.query, pool.response, pool.system) == (
        "hf_hub", "instruction", "input", "output", "system")
    assert "created_by" not in info["acereason11_100k"]  # the pool entry is protected from `select --name`
    for name in ours:
        assert info[name]["created_by"] == MARKER
        attr = attrs[f"data/{name}.jsonl"]
        assert (attr.load_from, attr.formatting, attr.system) == ("file", "alpaca", "system")
    results = {r.name: r for r in check_dataset_info(path)}
    assert results["acereason11_100k"].ok


def _bad_utf8_pool(path: Path) -> None:
    write_jsonl(make_alpaca_rows(4), path)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"output": "', b'"output": "\xff', 1)
    path.write_bytes(b"\n".join(lines))


def test_register_refuses_a_file_that_is_not_utf8_naming_line_and_offset(tmp_path, capsys):
    _bad_utf8_pool(tmp_path / "data" / "mine.jsonl")
    path = tmp_path / "dataset_info.json"
    assert main(["register", "--name", "mine", "--dataset_info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "mine.jsonl line 3: not valid UTF-8" in err and "0xff at byte" in err
    assert not path.exists()


def test_check_flags_a_file_that_is_not_utf8(tmp_path):
    _bad_utf8_pool(tmp_path / "data" / "mine.jsonl")
    rows = make_alpaca_rows(2)
    (tmp_path / "data" / "arr.json").write_bytes(json.dumps(rows).encode().replace(b"Step 0", b"Step \xff0", 1))
    path = _info(tmp_path, {"mine": _file_entry("data/mine.jsonl"), "arr": _file_entry("data/arr.json")})
    results = {r.name: r for r in check_dataset_info(path)}
    assert any("mine.jsonl line 3: not valid UTF-8" in p for p in results["mine"].problems)
    assert any("arr.json line 1: not valid UTF-8" in p for p in results["arr"].problems)


def _sharegpt_rows(n: int, broken: tuple[int, ...]) -> list[dict]:
    rows = []
    for i in range(n):
        turns = [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]
        rows.append({"conversations": turns[:1] if i in broken else turns})
    return rows


def test_check_reads_every_row_by_default_and_rows_n_says_it_sampled(tmp_path, capsys):
    write_jsonl(_sharegpt_rows(20, broken=(12, 15)), tmp_path / "data" / "chat.jsonl")
    path = _info(tmp_path, {"chat": {"file_name": "data/chat.jsonl", "formatting": "sharegpt",
                                     "columns": {"messages": "conversations"}}})
    (res,) = check_dataset_info(path)
    assert not res.ok and any("row(s) [12, 15] of 20" in p and "drops them" in p for p in res.problems)
    assert main(["check", "--dataset_info", str(path)]) == 1
    assert main(["check", "--dataset_info", str(path), "--rows", "0"]) == 1  # 0 means every row
    assert "row(s) [12, 15] of 20" in capsys.readouterr().out
    assert main(["check", "--dataset_info", str(path), "--rows", "5"]) == 0
    out = capsys.readouterr().out
    assert "sampled: the first 5 row(s) only" in out and "loaded 5 row(s)" in out


def test_check_has_no_false_positive_on_the_shapes_of_llamafactorys_own_registry(tmp_path):
    """Entry shapes of LLaMA-Factory 0.9.5's data/dataset_info.json: owner-less canonical hub ids, several hubs,
    preference pairs, KTO tags, pre-training text, media columns, tags with system_tag, subset/split/folder."""
    data = tmp_path / "data"
    data.mkdir()
    chat = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
             "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}]
    (data / "dpo.json").write_text(json.dumps(chat), encoding="utf-8")
    kto = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}], "label": True}]
    (data / "kto.json").write_text(json.dumps(kto), encoding="utf-8")
    (data / "wiki.txt").write_text("Some text.\nMore text.\n", encoding="utf-8")
    write_jsonl([{"text": "A web page."}, {"text": "Another."}], data / "c4.jsonl")
    (data / "identity.json").write_text(json.dumps([{"instruction": "who", "input": "", "output": "me"}]), "utf-8")
    role_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    path = _info(data, {
        "identity": {"file_name": "identity.json"},
        "wikiqa": {"hf_hub_url": "wiki_qa", "columns": {"prompt": "question", "response": "answer"}},
        "alpaca_en": {"hf_hub_url": "llamafactory/alpaca_en", "ms_hub_url": "llamafactory/alpaca_en",
                      "om_hub_url": "HaM/alpaca_en"},
        "deepctrl": {"ms_hub_url": "deepctrl/deepctrl-sft-data"},
        "adgen_eval": {"hf_hub_url": "HasturOfficial/adgen", "split": "validation",
                       "columns": {"prompt": "content", "response": "summary"}},
        "open_thoughts": {"hf_hub_url": "llamafactory/OpenThoughts-114k", "formatting": "sharegpt",
                          "columns": {"messages": "messages"}, "tags": {**role_tags, "system_tag": "system"}},
        "llava": {"hf_hub_url": "BUAADreamer/llava-en-zh-2k", "subset": "en", "formatting": "sharegpt",
                  "columns": {"messages": "messages", "images": "images"}, "tags": role_tags},
        "dpo_en_demo": {"file_name": "dpo.json", "ranking": True, "formatting": "sharegpt",
                        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "kto_en_demo": {"file_name": "kto.json", "formatting": "sharegpt",
                        "columns": {"messages": "messages", "kto_tag": "label"}, "tags": role_tags},
        "wiki_demo": {"file_name": "wiki.txt", "columns": {"prompt": "text"}},
        "c4_demo": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}},
        "starcoder": {"hf_hub_url": "bigcode/starcoderdata", "columns": {"prompt": "content"}, "folder": "python"},
    })
    results = check_dataset_info(path)
    assert [(r.name, r.problems) for r in results if not r.ok] == []


def test_a_selection_name_never_replaces_a_registered_pool_or_its_file(tmp_path):
    write_jsonl(make_alpaca_rows(3), tmp_path / "data" / "pool.jsonl")
    path = tmp_path / "dataset_info.json"
    assert main(["register", "--name", "pool", "--dataset_info", str(path)]) == 0
    assert read_dataset_info(path)["pool"]["made_by"] == "register"
    for command in ("select", "prune-steps"):
        with pytest.raises(UserError, match=r"entry 'pool' was made by `data-select register`"):
            check_subset_name(path, "pool", command)
        with pytest.raises(UserError, match=r"would overwrite .*pool\.jsonl, the file of entry 'pool'"):
            check_subset_name(path, "pool", command, register=False)
        check_subset_name(path, "pool", command, force=True)
        with pytest.raises(UserError, match="would write over the pool"):
            check_subset_name(path, "pool", command, force=True, reads=tmp_path / "data" / "pool.jsonl")
    # what a selection wrote, a selection of that name replaces; register's own entry, register replaces
    register_entry(path, "sub", subset_entry("data/sub.jsonl", "alpaca", ALPACA_COLUMNS, made_by="prune-steps"))
    check_subset_name(path, "sub", "select")
    assert register_entry(path, "pool", subset_entry("data/pool.jsonl", "sharegpt", {}, made_by="register")) == "updated"
    with pytest.raises(UserError, match="made by `data-select register`"):
        register_entry(path, "pool", subset_entry("data/pool.jsonl", "alpaca", ALPACA_COLUMNS))
