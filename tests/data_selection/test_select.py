"""`data-select select` end to end on a real pool file with synthetic scores: subset file, manifest, card,
registration, LLaMA-Factory round trip, byte-identical reruns, and every bad input. Also `data-select push`
up to the upload call."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import make_acereason_rows
from score_fixtures import make_scores_dir

from data_selection import push as push_mod
from data_selection.cli import main
from data_selection.command_line import UserError
from data_selection.registry import read_dataset_info
from data_selection.select import SelectOptions, run_select
from data_selection.sources import PoolSpec, load_pool
from data_selection.subset import render_card

N_ROWS = 90
TRUNCATED = (2, 11, 40)
REJECTED = (5,)
BAD = (8,)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("scored")
    return make_scores_dir(root, n_rows=N_ROWS, truncated_rows=TRUNCATED, rejected_rows=REJECTED, bad_rows=BAD)


def _select(scores: Path, work: Path, name: str, **kw) -> dict:
    opts = SelectOptions(scores=str(scores), name=name, n=kw.pop("n", 20), seed=kw.pop("seed", 42),
                         dataset_info=str(work / "dataset_info.json"), **kw)
    return run_select(opts)


def _lf_aligned(work: Path, name: str):
    """The subset as LLaMA-Factory's own loader reads it through the registered entry."""
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    (attr,) = get_dataset_list([name], str(work))
    return _load_single_dataset(attr, ModelArguments(model_name_or_path="unused"),
                                DataArguments(dataset_dir=str(work)),
                                Seq2SeqTrainingArguments(output_dir=str(work / "out"), report_to="none"))


def test_select_writes_a_subset_llamafactory_trains_on_exactly_as_scored(scored, tmp_path):
    res = _select(scored, tmp_path, "sub_zpd", strategy="zpd")
    data = tmp_path / "data" / "sub_zpd.jsonl"
    rows = [json.loads(x) for x in data.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 20
    assert list(rows[0]) == ["instruction", "input", "output", "system", "id", "category", "source"]
    scores = pd.read_parquet(scored / "scores.parquet").set_index("id")
    ids = [r["id"] for r in rows]
    assert set(ids) <= set(scores.index)
    assert not scores.loc[ids, "truncated"].any()
    th = res["manifest"]["thresholds"]
    assert scores.loc[ids, "loss_mean"].between(th["low_value"], th["high_value"]).all()

    entry = read_dataset_info(tmp_path / "dataset_info.json")["sub_zpd"]
    assert entry["file_name"] == "data/sub_zpd.jsonl" and entry["columns"]["system"] == "system"
    assert entry["created_by"] == "data-select" and entry["manifest"] == "data/sub_zpd.manifest.json"

    meta = json.loads((scored / "meta.json").read_text(encoding="utf-8"))
    pool = load_pool(PoolSpec.from_dict({**meta["pool"], "formatting": ""}))
    by_id = {ex["id"]: ex for ex in pool.converted}
    aligned = _lf_aligned(tmp_path, "sub_zpd")
    assert len(aligned) == 20
    for ex, rid in zip(aligned, ids):
        src = by_id[rid]
        assert ex["_prompt"] == src["_prompt"]
        assert ex["_response"] == src["_response"]
        assert ex["_system"] == src["_system"] and src["_system"].startswith("Please reason step by step")


def test_manifest_records_funnel_thresholds_and_composition(scored, tmp_path):
    res = _select(scored, tmp_path, "sub", strategy="zpd", stratify="category")
    m = json.loads((tmp_path / "data" / "sub.manifest.json").read_text(encoding="utf-8"))
    assert m == json.loads(json.dumps(res["manifest"]))
    f = m["funnel"]
    assert f["pool"] == N_ROWS
    assert f["rejected"] == len(REJECTED) + len(BAD)
    assert f["scored"] == N_ROWS - f["rejected"]
    assert f["over_length_dropped"] == len(TRUNCATED)
    assert f["eligible"] == f["scored"] - len(TRUNCATED)
    assert f["band"] == f["eligible"] - f["dropped_low"] - f["dropped_high"]
    assert f["selected"] == m["num_rows"] == 20
    assert m["parameters"] == {"n": 20, "seed": 42, "key": "loss_mean", "low": 0.25, "high": 0.75,
                               "stratify": "category", "over_length": "drop", "band_scope": "stratum"}
    assert set(m["thresholds"]["per_stratum"]) == {"math", "code"}
    comp = m["composition"]["category"]
    assert set(comp) == {"pool", "eligible", "band", "selected"} and sum(comp["selected"].values()) == 20
    assert m["source"]["fingerprint"] == m["scorer"]["pool"]["fingerprint"]
    assert m["scorer"]["template"] == "qwen" and m["scorer"]["cutoff_len"] == 16384
    assert m["sha256"] == hashlib.sha256((tmp_path / "data" / "sub.jsonl").read_bytes()).hexdigest()
    assert m["recipe"].startswith("data-select select --scores")


def test_same_inputs_and_seed_give_byte_identical_outputs(scored, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for work in (a, b):
        _select(scored, work, "same", strategy="random", key="loss_first_100")
    for suffix in (".jsonl", ".manifest.json", ".README.md"):
        assert (a / "data" / f"same{suffix}").read_bytes() == (b / "data" / f"same{suffix}").read_bytes()
    assert (a / "dataset_info.json").read_bytes() == (b / "dataset_info.json").read_bytes()
    _select(scored, a, "same", strategy="random", key="loss_first_100", seed=43)
    assert (a / "data" / "same.jsonl").read_bytes() != (b / "data" / "same.jsonl").read_bytes()


def test_card_is_a_hub_dataset_card(scored, tmp_path):
    _select(scored, tmp_path, "carded", strategy="zpd")
    text = (tmp_path / "data" / "carded.README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["configs"][0]["data_files"][0]["path"] == "data/train.jsonl"
    assert "selection-zpd" in front["tags"] and front["size_categories"] == ["n<1K"]
    assert "| selected | 20 |" in text and '"system": "system"' in text


def test_multi_turn_pools_are_written_as_sharegpt(tmp_path):
    rows = []
    for i in range(30):
        conv = [{"from": "human", "value": f"Hi {i}"}, {"from": "gpt", "value": f"Hello {i}"},
                {"from": "human", "value": f"What is {i} + 1?"}, {"from": "gpt", "value": f"It is {i + 1}."}]
        rows.append({"conversations": conv, "system": "Be brief."})
    scores = make_scores_dir(tmp_path, rows=rows, name="chat")
    _select(scores, tmp_path, "chat_sub", strategy="random", n=10)
    entry = read_dataset_info(tmp_path / "dataset_info.json")["chat_sub"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "system": "system"}
    written = [json.loads(x) for x in (tmp_path / "data" / "chat_sub.jsonl").read_text("utf-8").splitlines()]
    meta = json.loads((scores / "meta.json").read_text(encoding="utf-8"))
    pool = load_pool(PoolSpec.from_dict({**meta["pool"], "formatting": ""}))
    by_id = {ex["id"]: ex for ex in pool.converted}
    for ex, rec in zip(_lf_aligned(tmp_path, "chat_sub"), written):
        src = by_id[rec["id"]]
        assert (ex["_prompt"], ex["_response"], ex["_system"]) == (src["_prompt"], src["_response"], "Be brief.")
        assert len(ex["_prompt"]) == 3


def test_a_pool_changed_since_scoring_is_a_clear_error(tmp_path):
    scores = make_scores_dir(tmp_path, n_rows=40)
    pool_file = tmp_path / "pool.jsonl"
    lines = pool_file.read_text(encoding="utf-8").splitlines()
    for i in range(len(lines)):  # edit every row's answer: whatever is selected was scored on other text
        row = json.loads(lines[i])
        row["output"] += " (edited)"
        lines[i] = json.dumps(row)
    pool_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="differ from what was scored .* changed since scoring"):
        _select(scores, tmp_path, "stale", strategy="random", n=5)
    assert not (tmp_path / "data" / "stale.jsonl").exists()


def test_bad_inputs_are_clear_errors(scored, tmp_path, capsys):
    info = tmp_path / "dataset_info.json"
    base = ["select", "--dataset_info", str(info), "--name", "x", "--n", "10"]
    assert main([*base, "--scores", str(tmp_path / "nowhere")]) == 1
    assert "scores folder" in capsys.readouterr().err
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(scored / "meta.json", half / "meta.json")
    assert main([*base, "--scores", str(half)]) == 1
    assert "scores.parquet not found" in capsys.readouterr().err
    assert main([*base, "--scores", str(scored), "--n", "80"]) == 1
    assert "fewer than --n 80" in capsys.readouterr().err
    for option, value in (("--key", "perplexity"), ("--strategy", "best")):  # choices come from the registries
        with pytest.raises(SystemExit) as exit_:
            main([*base, "--scores", str(scored), option, value])
        assert exit_.value.code == 2
        assert f"argument {option}: invalid choice: '{value}'" in capsys.readouterr().err
    info.write_text('{"x": ', encoding="utf-8")
    assert main([*base, "--scores", str(scored)]) == 1
    assert f"{info}: not valid JSON" in capsys.readouterr().err
    info.write_text(json.dumps({"x": {"file_name": "theirs.json"}}), encoding="utf-8")
    assert main([*base, "--scores", str(scored)]) == 1
    assert "entry 'x' was not created by data-select" in capsys.readouterr().err
    assert not (tmp_path / "data" / "x.jsonl").exists()
    assert main([*base, "--scores", str(scored), "--force"]) == 0
    assert read_dataset_info(info)["x"]["created_by"] == "data-select"


def test_push_uploads_data_manifest_and_card(scored, tmp_path, monkeypatch):
    _select(scored, tmp_path, "pushme", strategy="zpd")
    sent = {}

    def fake_upload(repo, files, private, token, message):
        sent.update(repo=repo, files={dst: (src if isinstance(src, bytes) else Path(src).read_bytes())
                                      for dst, src in files}, private=private, message=message)
        return f"https://huggingface.co/datasets/{repo}/commit/abc"

    monkeypatch.setattr(push_mod, "upload_files", fake_upload)
    info = str(tmp_path / "dataset_info.json")
    assert main(["push", "pushme", "--repo", "me/pushme", "--private", "--license", "cc-by-4.0",
                 "--dataset_info", info]) == 0
    assert sent["repo"] == "me/pushme" and sent["private"] is True
    assert set(sent["files"]) == {"data/train.jsonl", "manifest.json", "README.md"}
    assert sent["files"]["data/train.jsonl"] == (tmp_path / "data" / "pushme.jsonl").read_bytes()
    card = sent["files"]["README.md"].decode()
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "cc-by-4.0"
    assert sent["message"] == "Upload pushme"

    assert main(["push", "pushme", "--repo", "not-a-repo-id", "--dataset_info", info]) == 1
    assert main(["push", "nothere", "--repo", "me/x", "--dataset_info", info]) == 1
    with open(tmp_path / "data" / "pushme.jsonl", "a", encoding="utf-8") as f:
        f.write('{"instruction": "sneaked in"}\n')
    with pytest.raises(UserError, match="does not match its manifest's sha256"):
        push_mod.prepare_upload(tmp_path, "pushme")


def test_real_upload_refuses_to_run_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        push_mod.upload_files("me/x", [("README.md", b"x")], False, None, "m")


def test_select_never_replaces_an_entry_made_by_register_nor_the_file_it_reads(scored, tmp_path, capsys):
    """`select --name X` replaces an entry only when a select (or prune-steps) of the same name made it."""
    work = tmp_path
    pool_copy = work / "data" / "my_math.jsonl"
    pool_copy.parent.mkdir(parents=True)
    shutil.copy(scored.parent.parent / "pool.jsonl", pool_copy)
    assert main(["register", "--name", "my_math", "--dataset_info", str(work / "dataset_info.json")]) == 0
    before = pool_copy.read_bytes()
    with pytest.raises(UserError, match=r"entry 'my_math' was made by `data-select register`.*--force"):
        _select(scored, work, "my_math", strategy="random")
    assert pool_copy.read_bytes() == before  # the user's pool file is untouched
    assert read_dataset_info(work / "dataset_info.json")["my_math"]["made_by"] == "register"
    # --no-register does not overwrite the registered file either
    with pytest.raises(UserError, match="my_math"):
        _select(scored, work, "my_math", strategy="random", register=False)
    assert pool_copy.read_bytes() == before
    # a select's own entry of the same name is replaced (a re-run with other options)
    assert _select(scored, work, "sub_a", strategy="random")["registered"] == "added"
    assert _select(scored, work, "sub_a", strategy="random", n=10)["registered"] == "updated"
    assert read_dataset_info(work / "dataset_info.json")["sub_a"]["made_by"] == "select"
    # --force replaces the registered pool
    assert _select(scored, work, "my_math", strategy="random", force=True)["registered"] == "updated"


def test_select_refuses_to_write_over_the_pool_it_reads(tmp_path):
    """A pool that is itself a subset (data/sub.jsonl, scored) cannot be selected again under the same name."""
    work = tmp_path
    scores = make_scores_dir(work / "data", n_rows=30, name="sub")  # the pool file is work/data/sub.jsonl
    pool_file = work / "data" / "sub.jsonl"
    before = pool_file.read_bytes()
    with pytest.raises(UserError, match=r"reads .*sub\.jsonl"):
        _select(scores, work, "sub", strategy="random", n=5)
    with pytest.raises(UserError, match=r"reads .*sub\.jsonl"):
        _select(scores, work, "sub", strategy="random", n=5, force=True)
    assert pool_file.read_bytes() == before


def test_subset_rows_keep_the_users_own_id(tmp_path):
    rows = make_acereason_rows(30)
    for i, r in enumerate(rows):
        r["id"] = f"user-{i:03d}"
    scores = make_scores_dir(tmp_path, n_rows=30, rows=rows)
    _select(scores, tmp_path, "mine_sub", strategy="random", n=5)
    out = [json.loads(x) for x in (tmp_path / "data" / "mine_sub.jsonl").read_text(encoding="utf-8").splitlines()]
    for rec in out:
        row = int(rec["id"][:8])
        assert rec["user_id"] == f"user-{row:03d}"
    assert pd.read_parquet(scores / "scores.parquet")["user_id"].str.startswith("user-").all()


def test_card_names_the_users_id_column():
    manifest = {"name": "s", "source": {"dataset": "p.jsonl", "user_id_column": "id", "fingerprint": "f"},
                "parameters": {"n": 1, "seed": 0}, "funnel": {"pool": 1}, "num_rows": 1, "strategy": "random",
                "formatting": "alpaca", "columns": {}}
    assert "`user_id` is the source's own `id` column" in render_card(manifest)


def test_select_prints_no_band_for_a_draw_without_one(scored, tmp_path, capsys):
    """`select --strategy random` printed `… → band 60` (the manifest's shared funnel keys); zpd keeps its band."""
    info = str(tmp_path / "dataset_info.json")
    base = ["select", "--scores", str(scored), "--dataset_info", info, "--n", "10"]
    assert main([*base, "--strategy", "random", "--name", "r"]) == 0
    funnel = capsys.readouterr().out.splitlines()[0]
    assert "eligible" in funnel and "band" not in funnel and "dropped low" not in funnel
    assert main([*base, "--strategy", "zpd", "--name", "z"]) == 0
    assert "→ band" in capsys.readouterr().out
