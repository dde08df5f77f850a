"""The scorer's self-check: a bounded window (so ``--verify`` never sets the memory peak) that still catches a
scorer whose losses differ from the model's own forward."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, SYSTEM, make_alpaca_rows, write_jsonl

from data_selection.scoring import varlen
from data_selection.scoring.runner import ScoreOptions, run_score
from data_selection.scoring.self_check import CHECK_TOKENS, check_window

IGNORE = -100


def test_window_is_a_bounded_prefix_with_labels():
    ids = list(range(1000))
    labels = [IGNORE] * 100 + ids[100:]
    w_ids, w_labels = check_window(ids, labels, IGNORE)
    assert len(w_ids) == len(w_labels) == CHECK_TOKENS
    assert w_ids == ids[:CHECK_TOKENS] and w_labels == labels[:CHECK_TOKENS]
    # a prompt longer than the window: every token of the window is labelled instead
    long_prompt = [IGNORE] * 600 + ids[600:]
    assert check_window(ids, long_prompt, IGNORE) == (ids[:CHECK_TOKENS], ids[:CHECK_TOKENS])
    assert check_window(ids[:10], labels[:10], IGNORE, max_tokens=64) == (ids[:10], ids[:10])


def test_self_check_catches_rows_leaking_into_each_other(tiny_qwen_dir, tmp_path, monkeypatch):
    """The check packs two rows like scoring does, so an attention that crosses row boundaries stops the run."""
    write_jsonl(make_alpaca_rows(6), tmp_path / "pool.jsonl")

    def leaky(q, k, v, cu, max_len, scale):
        import torch

        o = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1),
                                                             v.transpose(0, 1), is_causal=True, scale=scale,
                                                             enable_gqa=True)
        return o.transpose(0, 1)

    monkeypatch.setitem(varlen._KERNEL_FNS, "sdpa_rows", leaky)
    opts = ScoreOptions(model=str(tiny_qwen_dir), dataset=str(tmp_path / "pool.jsonl"), out=str(tmp_path / "o"),
                        num_proc=1, packing="sdpa_rows")
    with pytest.raises(RuntimeError, match="self-check failed"):
        run_score(opts)
    assert not list((tmp_path / "o" / "shards").glob("*.parquet"))  # nothing wrong was written


def _peak_rss_gb(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd``; its peak resident set size (os.wait4's rusage of exactly this child) in GiB."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()  # a few KB: no pipe can fill up
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 2**20, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_one_16k_token_row_with_default_options_stays_under_3gb(tiny_qwen_dir, tmp_path):
    """Default options (``--verify`` on, default batch and chunk sizes, auto packing), one row of ~16K tokens,
    the real 151,936-token vocabulary: the whole process peaks under 3 GB (a full-logits forward of the row,
    what the self-check used to run, is 16,384 x 151,936 x 4 B = 10 GB per copy)."""
    words = " ".join(f"step {i}: {i} + {i % 7} = {i + i % 7}." for i in range(2400))
    row = {"instruction": "Add the numbers.", "input": "", "output": f"<think>\n{words}\n</think>\n\\boxed{{1}}",
           "system": SYSTEM}
    write_jsonl([row], tmp_path / "pool.jsonl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "data_selection.cli", "score", "--model", str(tiny_qwen_dir), "--dataset",
           str(tmp_path / "pool.jsonl"), "--out", str(tmp_path / "scores")]
    peak, done = _peak_rss_gb(cmd, env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "scores" / "summary.json").read_text())  # `score` prints a short summary
    assert summary["tokens_now"] >= 16000 and summary["self_check_max_abs_diff"] < 1e-3
    assert peak < 3.0, f"peak RSS {peak:.2f} GB"
