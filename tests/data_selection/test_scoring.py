"""The scorer: exactness against LLaMA-Factory and the model, resumption, rejects, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from helpers import (
    REPO_ROOT,
    SYSTEM,
    install_varlen_stand_ins,
    make_acereason_rows,
    make_alpaca_rows,
    write_jsonl,
)

from data_selection.command_line import UserError
from data_selection.commands import score as score_command
from data_selection.encoding import TemplateEncoder
from data_selection.encoding import load_tokenizer as our_tokenizer
from data_selection.scoring import forward, runner
from data_selection.scoring.runner import ScoreOptions, run_score
from data_selection.shards import driver
from data_selection.sources import PoolSpec, load_pool


def _opts(model, dataset, out, **kw) -> ScoreOptions:
    base = dict(model=str(model), dataset=str(dataset), out=str(out), template="qwen", cutoff_len=96,
                shard_rows=4, batch_tokens=512, num_proc=1)
    base.update(kw)
    return ScoreOptions(**base)


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    rows = make_alpaca_rows(14)
    write_jsonl(rows, d / "pool.jsonl")
    info = {"mypool": {"file_name": "pool.jsonl", "columns": {"prompt": "instruction", "query": "input",
                                                              "response": "output", "system": "system"}}}
    (d / "dataset_info.json").write_text(json.dumps(info))
    return d


@pytest.fixture(scope="module")
def scored(tiny_qwen_dir, pool_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "run"
    summary = run_score(_opts(tiny_qwen_dir, "mypool", out, dataset_dir=str(pool_dir), per_token_prefix=8))
    return out, summary


def test_tokens_equal_llamafactory_sft_preprocessing(tiny_qwen_dir, pool_dir, tmp_path):
    """The scored labels are exactly the labels LLaMA-Factory's own SFT pipeline produces (truncation included)."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = dict(model_name_or_path=str(tiny_qwen_dir), stage="sft", do_train=True, finetuning_type="full",
                dataset="mypool", dataset_dir=str(pool_dir), template="qwen", cutoff_len=96,
                output_dir=str(tmp_path / "o"), overwrite_cache=True, preprocessing_num_workers=None,
                report_to="none", use_cpu=True)
    model_args, data_args, training_args, *_ = get_train_args(args)
    tok_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tok_module["tokenizer"], data_args)
    lf = get_dataset(template, model_args, data_args, training_args, stage="sft", **tok_module)["train_dataset"]

    pool = load_pool(PoolSpec(dataset="mypool", dataset_dir=str(pool_dir)))
    enc = TemplateEncoder(our_tokenizer(str(tiny_qwen_dir)), "qwen", 96)
    ours = [enc.encode(ex) for ex in pool.converted]
    assert len(lf) == len(ours) == 14
    assert any(e.truncated for e in ours) and not all(e.truncated for e in ours)
    for i, e in enumerate(ours):
        assert lf[i]["input_ids"] == e.input_ids, f"row {i}"
        assert lf[i]["labels"] == e.labels, f"row {i}"
    # the system prompt of the pool reached the template (not Qwen's default)
    assert SYSTEM[:20] in enc.tokenizer.decode(ours[0].input_ids)


def test_losses_equal_model_cross_entropy(scored, tiny_qwen_dir, pool_dir):
    from transformers import AutoModelForCausalLM

    out, summary = scored
    df = pd.read_parquet(out / "scores.parquet")
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    pool = load_pool(PoolSpec(dataset="mypool", dataset_dir=str(pool_dir)))
    enc = TemplateEncoder(our_tokenizer(str(tiny_qwen_dir)), "qwen", 96)
    worst = 0.0
    for r in df.itertuples():
        e = enc.encode(pool.converted[int(r.row)])
        with torch.no_grad():
            hf_loss = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss.item()
        worst = max(worst, abs(hf_loss - r.loss_mean))
        assert r.n_response_tokens == sum(t != -100 for t in e.labels)
        assert r.loss_sum == pytest.approx(r.loss_mean * r.n_response_tokens, rel=1e-9)
    assert worst < 1e-4
    assert summary["self_check_max_abs_diff"] < 1e-4
    assert len(df["token_losses"].iloc[0]) == min(8, int(df["n_response_tokens"].iloc[0]))
    assert df["row"].is_monotonic_increasing and df["id"].is_unique


@pytest.mark.parametrize("packing", ["off", "torch_varlen"])
def test_every_packing_path_scores_like_the_default(scored, tiny_qwen_dir, pool_dir, tmp_path, packing, monkeypatch):
    """Padded batches and the GPU varlen kernel (a CPU stand-in checking its argument contract) give the losses
    of the default run (packed, SDPA row by row on CPU), which equal the model's own (test above)."""
    if packing == "torch_varlen":
        install_varlen_stand_ins(monkeypatch)
    out, summary = scored
    assert summary["packing"] == "sdpa_rows"
    s = run_score(_opts(tiny_qwen_dir, "mypool", tmp_path / "o", dataset_dir=str(pool_dir), per_token_prefix=8,
                        packing=packing))
    assert s["packing"] == packing and s["self_check_max_abs_diff"] < 1e-4
    a, b = pd.read_parquet(out / "scores.parquet"), pd.read_parquet(tmp_path / "o" / "scores.parquet")
    assert a["id"].tolist() == b["id"].tolist()
    for col in ("loss_sum", "loss_mean", "loss_first_100", "loss_first_1000"):
        assert (a[col] - b[col]).abs().max() < 1e-4, col
    assert (a["n_response_tokens"] == b["n_response_tokens"]).all()


def test_encoding_shards_in_a_background_thread_changes_nothing(scored, tiny_qwen_dir, pool_dir, tmp_path,
                                                                monkeypatch):
    """On a GPU the next shard is encoded in a background thread (while the model loads, then while the
    previous shard is scored); forced on here, the scores are identical to the inline run's."""
    real, threads = runner.prefetch, []

    def forced(items, enabled=True, depth=1):
        it = real(items, enabled=True, depth=depth)
        threads.append(it._thread)
        return it

    monkeypatch.setattr(runner, "prefetch", forced)  # the shards' encoding
    monkeypatch.setattr(forward, "prefetch", forced)  # the batches' collation
    run_score(_opts(tiny_qwen_dir, "mypool", tmp_path / "o", dataset_dir=str(pool_dir), per_token_prefix=8))
    assert threads and all(t is not None and not t.is_alive() for t in threads)
    out, _ = scored
    a, b = pd.read_parquet(out / "scores.parquet"), pd.read_parquet(tmp_path / "o" / "scores.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_meta_records_configuration(scored):
    out, _ = scored
    meta = json.loads((out / "meta.json").read_text())
    assert meta["template"] == "qwen" and meta["cutoff_len"] == 96
    assert meta["pool"]["fingerprint"] and meta["pool"]["num_rows"] == 14
    assert meta["model"]["weights_digest"]
    assert meta["code_version"]["llamafactory"] == "0.9.5"
    assert meta["counts"]["scored"] == 14 and meta["counts"]["rejected"] == 0


def test_bad_rows_go_to_rejects_never_nan(tiny_qwen_dir, tmp_path):
    rows = make_acereason_rows(10)
    rows[1]["output"] = ""
    rows[2]["output"] = None
    rows[3]["output"] = 12345
    del rows[4]["output"]
    rows[5]["input"] = "   "
    rows[6]["output"] = "bad \ufffd bytes"
    path = tmp_path / "pool.jsonl"
    with open(path, "w") as f:  # mixed types: written by hand, as a user's broken file would be
        for r in rows:
            f.write(json.dumps(r) + "\n")
    s = run_score(_opts(tiny_qwen_dir, path, tmp_path / "out", system_prompt=SYSTEM))
    df = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["row"] for r in rejects) == [1, 2, 3, 4, 5, 6]
    reasons = {r["row"]: r["reason"] for r in rejects}
    assert "empty" in reasons[1] and "null" in reasons[2] and "not a string" in reasons[3]
    assert "undecodable" in reasons[6]
    assert sorted(df["row"]) == [0, 7, 8, 9]
    assert df[["loss_sum", "loss_mean", "loss_first_100", "loss_first_1000"]].notna().all().all()
    assert s["counts"]["rejected"] == 6


def test_gpu_packing_kernel_on_cpu_is_a_clear_error(tiny_qwen_dir, pool_dir, tmp_path):
    with pytest.raises(UserError, match="--packing torch_varlen: .*needs a CUDA GPU.*Use packing=auto"):
        run_score(_opts(tiny_qwen_dir, "mypool", tmp_path / "o", dataset_dir=str(pool_dir), packing="torch_varlen"))


def test_unknown_template_is_a_clear_error(tiny_qwen_dir, pool_dir, tmp_path):
    with pytest.raises(UserError, match="unknown template 'qwenn'"):
        run_score(_opts(tiny_qwen_dir, "mypool", tmp_path / "o", dataset_dir=str(pool_dir), template="qwenn"))


def test_dataset_missing_from_dataset_info(tiny_qwen_dir, pool_dir, tmp_path):
    with pytest.raises(UserError, match="'nope' is not an entry of .*dataset_info.json.*mypool"):
        run_score(_opts(tiny_qwen_dir, "nope", tmp_path / "o", dataset_dir=str(pool_dir)))


def test_tokenizer_not_matching_model(tmp_path, qwen_tokenizer_dir, pool_dir):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    small = tmp_path / "small"
    Qwen2ForCausalLM(Qwen2Config(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(small)
    AutoTokenizer.from_pretrained(qwen_tokenizer_dir).save_pretrained(small)
    with pytest.raises(UserError, match="do not belong together"):
        run_score(_opts(small, "mypool", tmp_path / "o", dataset_dir=str(pool_dir)))


def test_refuses_to_mix_configurations(scored, tiny_qwen_dir, pool_dir):
    out, _ = scored
    before = (out / "scores.parquet").read_bytes()
    with pytest.raises(UserError, match="different configuration.*cutoff_len: 96 -> 64"):
        run_score(_opts(tiny_qwen_dir, "mypool", out, dataset_dir=str(pool_dir), cutoff_len=64, per_token_prefix=8))
    assert (out / "scores.parquet").read_bytes() == before  # nothing lost


def test_overwrite_replaces(tiny_qwen_dir, pool_dir, tmp_path):
    out = tmp_path / "o"
    run_score(_opts(tiny_qwen_dir, "mypool", out, dataset_dir=str(pool_dir)))
    run_score(_opts(tiny_qwen_dir, "mypool", out, dataset_dir=str(pool_dir), cutoff_len=64, overwrite=True))
    assert json.loads((out / "meta.json").read_text())["cutoff_len"] == 64
    assert pd.read_parquet(out / "scores.parquet")["truncated"].sum() > 0


def test_rerun_is_a_noop_and_ranks_split_work(scored, tiny_qwen_dir, pool_dir, tmp_path, monkeypatch):
    out, _ = scored
    again = run_score(_opts(tiny_qwen_dir, "mypool", out, dataset_dir=str(pool_dir), per_token_prefix=8))
    assert again["rows_scored_now"] == 0 and again["merged"]

    two = tmp_path / "two"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    s0 = run_score(_opts(tiny_qwen_dir, "mypool", two, dataset_dir=str(pool_dir), per_token_prefix=8))
    assert not s0["merged"] and 0 < s0["rows_scored_now"] < 14
    monkeypatch.setenv("RANK", "1")
    s1 = run_score(_opts(tiny_qwen_dir, "mypool", two, dataset_dir=str(pool_dir), per_token_prefix=8))
    assert s1["merged"] and s0["rows_scored_now"] + s1["rows_scored_now"] == 14
    a, b = pd.read_parquet(out / "scores.parquet"), pd.read_parquet(two / "scores.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_score_runs_on_the_engine_and_resumes_only_the_missing_shards(scored, tiny_qwen_dir, pool_dir, tmp_path,
                                                                       monkeypatch, capsys):
    """The resumable, multi-rank machinery is the engine's (tests/data_selection/test_shards.py): here only that
    `score` runs on it, and that a run missing two shards (a killed run) recomputes exactly those."""
    out, _ = scored
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in ("meta.json", "conversion_rejects.jsonl"):
        (copy / f).write_bytes((out / f).read_bytes())
    (copy / "shards").mkdir()
    for k in (0, 2):
        (copy / "shards" / f"shard-{k:06d}.parquet").write_bytes((out / "shards" / f"shard-{k:06d}.parquet").read_bytes())
    jobs = []
    real = driver.run_sharded
    monkeypatch.setattr(runner, "run_sharded", lambda setup: jobs.append(1) or real(setup))
    opts = _opts(tiny_qwen_dir, "mypool", copy, dataset_dir=str(pool_dir), per_token_prefix=8)
    assert score_command.run(opts) == 0
    assert jobs == [1]
    progress = [json.loads(x) for x in (copy / "progress.jsonl").read_text().splitlines()]
    assert [p["shard"] for p in progress] == [1, 3]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), pd.read_parquet(copy / "scores.parquet"))
    printed = capsys.readouterr().out
    assert "6 rows scored in this run" in printed and "scored 14 of 14 rows: 0 rejected" in printed
    assert f"scores: {copy / 'scores.parquet'}" in printed and "gpu_seconds" not in printed
    summary = json.loads((copy / "summary.json").read_text())  # the full record is kept in the folder
    assert summary["rows_scored_now"] == 6 and summary["shards_done_before"] == 2 and summary["counts"]["scored"] == 14


def test_cli_help_lists_options():
    out = subprocess.run([sys.executable, "-m", "data_selection.cli", "score", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    for opt in ("--cutoff_len", "--batch_tokens", "--per_token_prefix", "--overwrite", "--system_prompt"):
        assert opt in out
    assert "resum" in out.lower() or "Score" in out


def test_the_options_of_the_sharded_commands_load_nothing_heavy():
    """The CLI parses and checks options before importing the command: those modules must stay light."""
    code = ("import sys\n"
            "for m in ('score', 'score_checkpoints', 'merge', 'verify', 'prune_steps'):\n"
            "    __import__('data_selection.options.' + m)\n"
            "print(sorted(x for x in ('torch', 'transformers', 'datasets', 'pandas', 'llamafactory') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(UserError, match="--shard_rows must be at least 1"):
        ScoreOptions(model="m", dataset="d", out="o", shard_rows=0).validate()


def test_repeated_user_ids_are_said_in_the_score_summary_and_the_selection_report(tiny_qwen_dir, tmp_path, capsys):
    """A pool whose own `id` column repeats: `score` prints one line naming the count and the first ids, and the
    selection report carries the same line (the rows stay told apart by our ids)."""
    from data_selection.reports.facts import load_selection
    from data_selection.reports.markdown import render_markdown

    rows = make_alpaca_rows(8)
    for i, r in enumerate(rows):
        r["id"] = ["a", "b", "a", "c", "b", "d", "e", "f"][i]
    write_jsonl(rows, tmp_path / "pool.jsonl")
    out = tmp_path / "scores"
    assert score_command.run(_opts(tiny_qwen_dir, tmp_path / "pool.jsonl", out)) == 0
    printed = capsys.readouterr().out
    assert "duplicate user ids: 2 value(s) of column 'id' repeat over 4 rows (first: 'a', 'b')" in printed
    info = tmp_path / "dataset_info.json"
    from data_selection.cli import main
    assert main(["select", "--scores", str(out), "--strategy", "random", "--n", "4", "--name", "dup",
                 "--dataset_info", str(info)]) == 0
    capsys.readouterr()
    text = render_markdown([load_selection(tmp_path, "dup")], [], "")
    assert "dup: duplicate user ids: 2 value(s)" in text
