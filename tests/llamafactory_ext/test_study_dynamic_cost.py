"""``llamafactory-ext study --dry-run`` states, per dynamic arm, what re-scoring at its stage boundaries costs against
the training it rides on, and what ``candidates: K`` saves (study/dynamic_cost.py on study/cost_model.py, the
formulas bench/dynamic_selection_cost.py uses too). Each test's study holds zpd and zpd_dynamic, whose stage-0 select
steps share a hash: the dry run's schedule keeps them apart (it raised IndexError before)."""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import REPO_ROOT, SYSTEM

from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.study.cost_model import QWEN25_3B, rescoring_cost, score_row_flops, train_row_flops

POOL, N = 40, 8
STUDY = {
    "name": "mini", "template": "qwen", "cutoff_len": 256, "system_prompt": SYSTEM, "model": "some/model",
    "pool": {"demo_data": {"pool_size": POOL, "eval_size": 5, "seed": 0}}, "subset_size": N, "seeds": [1],
    "arms": {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd"}},
    "train": {"recipe": "yaml_recipes/demo_zpd.yaml", "overrides": {"num_train_epochs": 3}},
    "eval": {"suite": "heldout", "max_new_tokens": 4, "temperature": 0.0},
    "analysis": {"reference": "random", "baseline": "", "draws": 500},
}


def _dry_run(tmp_path, monkeypatch, capsys, candidates, estimate=None, every="epoch") -> str:
    monkeypatch.chdir(REPO_ROOT)  # the recipe is named relative to the repository root
    try:
        import data_selection.options.score  # noqa: F401
    except ModuleNotFoundError:  # score's options module is being moved (the sharded-run refactor): skip its check
        monkeypatch.setattr("llamafactory_ext.study.plan.check_plan", lambda cfg, steps: None)
    arms = {**STUDY["arms"], "zpd_dynamic": {"strategy": "zpd", "dynamic": {"every": every, "candidates": candidates}}}
    study = {**STUDY, "arms": arms, "out": str(tmp_path / "out"), **({"estimate": estimate} if estimate else {})}
    path = tmp_path / f"study_{candidates}.yaml"
    path.write_text(yaml.safe_dump(study), encoding="utf-8")
    assert lfx_main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("dynamic arms:"):]
    return block[:block.index("\n\n")]  # the dynamic arms' block, up to the power statement


def _ratios(block: str) -> tuple[float, float]:
    m = re.search(r"re-scoring [\d,]+ rows: ([\d.]+)x one epoch of training per boundary, ([\d.]+)x the run", block)
    return float(m.group(1)), float(m.group(2))


def test_the_dry_run_states_the_flop_ratio_and_what_k_saves(tmp_path, monkeypatch, capsys):
    block = _dry_run(tmp_path, monkeypatch, capsys, 20)
    assert "Qwen2.5-3B's (the model has no local config.json) shape, rows of 256 tokens (cutoff_len" in block
    assert f"zpd_dynamic: {N:,} rows per stage, every epoch, 3 epoch(s) = 2 re-scored boundaries; candidates: 20 of " \
           f"{POOL} pool rows" in block
    score, train = score_row_flops(QWEN25_3B, 256, 128), train_row_flops(QWEN25_3B, 256)
    want = rescoring_cost(20, N, 3, 2, score, train)
    assert _ratios(block) == (round(want["ratio_to_epoch"], 2), round(want["ratio_to_run"], 2))
    full = rescoring_cost(POOL, N, 3, 2, score, train)
    assert (f"candidates: all would re-score {POOL} rows: {full['ratio_to_epoch']:.2f}x one epoch of training per "
            f"boundary, {full['ratio_to_run']:.2f}x the run's training; candidates: 20 saves 50% of the re-scoring"
            in block)
    assert "random:" not in block and "  zpd:" not in block  # static arms have no stages


def test_the_numbers_move_with_candidates_k(tmp_path, monkeypatch, capsys):
    by_k = {k: _ratios(_dry_run(tmp_path, monkeypatch, capsys, k)) for k in (10, 20, 30)}
    assert by_k[10][0] < by_k[20][0] < by_k[30][0]
    assert by_k[20][0] == pytest.approx(2 * by_k[10][0], abs=0.02)  # linear in the candidates re-scored (2 decimals)
    assert "saves 75% of the re-scoring" in _dry_run(tmp_path, monkeypatch, capsys, 10)
    everything = _dry_run(tmp_path, monkeypatch, capsys, "all")
    assert _ratios(everything)[0] == pytest.approx(2 * by_k[20][0], abs=0.02)
    # candidates: all: what K = n and K = 2n would save
    assert f"candidates: {N} would cost" in everything and "it saves 80% of the re-scoring" in everything
    assert f"candidates: {2 * N} would cost" in everything and "it saves 60% of the re-scoring" in everything


def test_with_throughputs_the_ratio_is_gpu_time(tmp_path, monkeypatch, capsys):
    est = {"pool_rows": POOL, "tokens_per_row": 1000, "score_tokens_per_s": 30_000, "train_tokens_per_s": 7_500,
           "eval_gpu_hours": 1}
    block = _dry_run(tmp_path, monkeypatch, capsys, 20, estimate=est)
    assert "GPU-seconds from the study's estimate (scoring 30,000 tokens/s, training 7,500 tokens/s)" in block
    # 20 rows at 1/30,000 s per token against 8 rows at 1/7,500: 20/8 x 1/4 = 0.625 of an epoch per boundary
    assert _ratios(block) == (pytest.approx(0.62, abs=0.011), pytest.approx(2 * 0.625 / 3, abs=0.011))
    hours = 2 * 20 * 1000 / 30_000 / 3600
    assert f"≈ {hours:,.2f} GPU-hours of re-scoring per run" in block


def test_every_n_steps_counts_its_boundaries(tmp_path, monkeypatch, capsys):
    # 8 rows, 4 per device x 2 accumulation: 1 step per epoch; a stage every 2 steps over 3 epochs = 2 stages
    block = _dry_run(tmp_path, monkeypatch, capsys, 20, every=2)
    assert "every 2 steps (epochs of 1 steps), 3 epoch(s) = 1 re-scored boundary" in block
    assert _ratios(block)[1] == pytest.approx(_ratios(block)[0] / 3, abs=0.011)
    # a stage after every step: boundaries after steps 1 and 2 (stages need not align with epochs)
    (tmp_path / "b").mkdir()
    every_step = _dry_run(tmp_path / "b", monkeypatch, capsys, 20, every=1)
    assert "every 1 steps (epochs of 1 steps), 3 epoch(s) = 2 re-scored boundaries" in every_step
