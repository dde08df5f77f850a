"""What re-scoring at stage boundaries (``dynamic_selection``, issue 29) costs against the training it rides on.

Calculated (default): FLOPs of the scorer's forward over the candidates (score_mfu.py's model: 2·N·n + causal
attention 2·layers·n²·hidden + the lm_head at response positions only) against one epoch of training on the
stage's ``n`` rows (train_flops.py: 6·N·n + 6·layers·n²·hidden), for Qwen2.5-3B-Instruct's shape, a pool of
``--pool`` rows with a length mix (log-normal, median ``--median`` tokens, capped at ``--cutoff``) and stages of
``--n`` rows: per boundary, for ``candidates: all`` and for each ``--candidates K``. Useful FLOPs on both sides; the
wall-time ratio equals it if the scorer and the trainer reach the same MFU (the scorer's MFU is measured by
bench/score_mfu.py, training's by bench/train_mfu.py), and training's gradient-checkpointing recompute (not
counted) makes the real ratio ~25% smaller. The formulas live in :mod:`llamafactory_ext.study.cost_model`, which
``llamafactory-ext study --dry-run`` uses for its dynamic arms.

``--measure-cpu``: a real ``llamafactory-ext train`` run with ``dynamic_selection`` on the tiny Qwen (CPU, fp32,
24 rows, 3 epochs, stages of 4 rows): the seconds each in-loop scoring took (stage manifests) against the run's
training seconds (``train_runtime`` minus the scoring), measured in the same run. On the tiny shape the fixed
costs dominate: it shows the bookkeeping works and is small, not the 3B ratio.

Usage: python bench/dynamic_selection_cost.py [--pool 100000 --n 15000 --median 4000 --sigma 0.8 --cutoff 16384]
       [--candidates 15000 30000] [--epochs 3] [--measure-cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
from train_flops import lognormal_lengths  # noqa: E402

from llamafactory_ext.study.cost_model import (  # noqa: E402  (the formulas study --dry-run uses too)
    PROMPT_TOKENS,
    QWEN25_3B,
    boundaries,
    rescoring_cost,
    score_row_flops,
    train_row_flops,
)


def score_flops(lengths: list[int]) -> float:
    return sum(score_row_flops(QWEN25_3B, n, PROMPT_TOKENS) for n in lengths)


def train_flops(lengths: list[int]) -> float:
    return sum(train_row_flops(QWEN25_3B, n) for n in lengths)


def calculated(args) -> dict:
    lengths = [min(n, args.cutoff) for n in lognormal_lengths(args.pool, args.median, args.sigma, args.cutoff)]
    per_row_score = score_flops(lengths) / len(lengths)
    per_row_train = train_flops(lengths) / len(lengths)  # the stage's n rows drawn from the same mix
    n_boundaries = boundaries(args.epochs)
    out = {"shape": "Qwen2.5-3B", "pool": args.pool, "n": args.n, "epochs": args.epochs, "boundaries": n_boundaries,
           "mean_tokens": sum(lengths) / len(lengths), "epoch_train_pflop": per_row_train * args.n / 1e15, "rows": []}
    for k in [args.pool, *args.candidates]:
        c = rescoring_cost(k, args.n, args.epochs, n_boundaries, per_row_score, per_row_train)
        out["rows"].append({"candidates": "all" if k == args.pool else k,
                            "score_pflop_per_boundary": c["per_boundary"] / 1e15,
                            "ratio_to_epoch": c["ratio_to_epoch"], "ratio_to_run": c["ratio_to_run"]})
    return out


def measured() -> dict:
    """The tiny dynamic run, through the same fixtures the tests use (tests/llamafactory_ext/dynamic_fixtures.py)."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "llamafactory_ext")]
    import dynamic_fixtures as fx  # lazy: test fixtures pull LLaMA-Factory and torch

    from data_selection.embedded import qwen_tokenizer_dir
    from data_selection.tiny_model import build_tiny_qwen

    with tempfile.TemporaryDirectory() as tmp:
        root = fx.make_pool(Path(tmp))
        model = build_tiny_qwen(root / "model", qwen_tokenizer_dir())
        fx.score(model, root, root / "scores" / "base")
        proc = fx.train(root, fx.recipe(model, root, root / "out"))
        if proc.returncode:
            raise SystemExit(proc.stderr[-4000:])
        stages = sorted((root / "out" / "selection").glob("stage-*"))
        scoring = [json.loads((d / "manifest.json").read_text())["scoring_seconds"] for d in stages[1:]]
        runtime = json.loads((root / "out" / "train_results.json").read_text())["train_runtime"]
    train_s = runtime - sum(scoring)
    return {"shape": "tiny Qwen2 (2 layers, hidden 32), CPU fp32", "stages_scored": len(scoring),
            "scoring_seconds": scoring, "train_runtime_s": runtime, "training_s": train_s,
            "ratio_scoring_to_training": sum(scoring) / train_s if train_s > 0 else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=100_000)
    p.add_argument("--n", type=int, default=15_000)
    p.add_argument("--median", type=float, default=4000)
    p.add_argument("--sigma", type=float, default=0.8)
    p.add_argument("--cutoff", type=int, default=16384)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--candidates", type=int, nargs="*", default=[15_000, 30_000])
    p.add_argument("--measure-cpu", action="store_true")
    p.add_argument("--json", default="")
    args = p.parse_args()
    result = {"calculated": calculated(args)}
    c = result["calculated"]
    print(f"Qwen2.5-3B, pool {c['pool']:,} rows (mean {c['mean_tokens']:,.0f} tokens), stages of {c['n']:,} rows, "
          f"{c['epochs']} epochs = {c['boundaries']} re-scored boundaries; one epoch of training = "
          f"{c['epoch_train_pflop']:,.0f} PFLOP")
    print(f"{'candidates':>12} {'PFLOP/boundary':>15} {'x epoch':>8} {'x whole run':>12}")
    for r in c["rows"]:
        print(f"{r['candidates']!s:>12} {r['score_pflop_per_boundary']:>15,.0f} {r['ratio_to_epoch']:>8.2f} "
              f"{r['ratio_to_run']:>12.2f}")
    if args.measure_cpu:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        m = result["measured"] = measured()
        print(f"measured ({m['shape']}): {m['stages_scored']} in-loop scorings, {sum(m['scoring_seconds']):.2f} s, "
              f"against {m['training_s']:.2f} s of training in the same run: ratio {m['ratio_scoring_to_training']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
