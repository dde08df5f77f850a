"""What the rank and top-K Brier statistics (the ``rsr`` / ``lark`` keys, docs/methods.md §1) cost the scorer.

The scorer's model work (:func:`data_selection.scoring.forward.score_sequences`: packed batches, chunked
response-only head) runs on the same rows with ``top_k=0`` (the loss alone, the scorer before the statistics) and
with ``top_k=K`` (loss, target rank and top-K Brier score from the same chunks of logits), alternating, ``--repeats``
times after one warm-up each. Reported: the median seconds per row of each and their ratio (the issue's budget:
at most 1.10). Times are process CPU seconds (less disturbed than wall time when other jobs share the machine;
pass ``--wall`` for wall seconds), on ``--threads`` threads.

Models: ``smollm2`` (the embedded SmolLM2-135M-Instruct, 49,152-entry vocabulary: a real model whose lm_head is a
realistic share of the work) and ``tiny`` (the 2-layer random Qwen with the real 151,936-entry vocabulary: the head
and the per-logit passes are nearly all of the work, the worst case for the ratio). Rows: ``--rows`` random token
sequences of ``--tokens`` tokens, the first ``--prompt`` of them not labels.

Usage: python bench/score_keys_cost.py [--models smollm2 tiny] [--rows 8] [--tokens 512] [--repeats 5] [--k 10]
       [--threads 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_selection.embedded import prepare_smollm2  # noqa: E402
from data_selection.scoring.forward import score_sequences  # noqa: E402
from data_selection.scoring.logprobs import IGNORE_INDEX, auto_chunk_tokens  # noqa: E402
from data_selection.tiny_model import build_tiny_qwen  # noqa: E402

BUDGET = 1.10  # the statistics may cost at most 10% of the scorer's time


def make_rows(n: int, tokens: int, prompt: int, vocab: int, seed: int = 0) -> dict[int, tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    rows = {}
    for i in range(n):
        ids = torch.randint(0, vocab, (tokens,), generator=g).tolist()
        rows[i] = (ids, [IGNORE_INDEX] * prompt + ids[prompt:])
    return rows


def time_scorer(model, rows, top_k: int, batch_tokens: int, wall: bool) -> float:
    """Seconds per row of one ``score_sequences`` pass over ``rows``."""
    clock = time.perf_counter if wall else time.process_time
    chunk = auto_chunk_tokens(model.get_output_embeddings().weight.shape[0])
    t0 = clock()
    score_sequences(model, rows, batch_tokens=batch_tokens, chunk_tokens=chunk, device="cpu", pad_id=0, top_k=top_k)
    return (clock() - t0) / len(rows)


def measure(model, rows, k: int, repeats: int, batch_tokens: int, wall: bool) -> dict:
    """Alternating passes without and with the statistics, one warm-up each; medians and their ratio."""
    for top_k in (0, k):
        time_scorer(model, rows, top_k, batch_tokens, wall)
    base, stats = [], []
    for _ in range(repeats):
        base.append(time_scorer(model, rows, 0, batch_tokens, wall))
        stats.append(time_scorer(model, rows, k, batch_tokens, wall))
    b, s = statistics.median(base), statistics.median(stats)
    return {"loss_only_s_per_row": b, "with_rank_brier_s_per_row": s, "ratio": s / b,
            "loss_only_runs": base, "with_rank_brier_runs": stats}


def load(name: str, tmp: Path):
    path = prepare_smollm2() if name == "smollm2" else build_tiny_qwen(tmp / "tiny")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    model.requires_grad_(False)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "tiny"], choices=["smollm2", "tiny"])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--k", type=int, default=10, help="top-K of the Brier score (score --brier_top_k)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wall", action="store_true", help="wall seconds instead of process CPU seconds")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = load(name, Path(tmp))
            rows = make_rows(args.rows, args.tokens, args.prompt, model.config.vocab_size)
            res = {"model": name, "vocab": model.config.vocab_size, "rows": args.rows, "tokens": args.tokens,
                   "k": args.k, "threads": args.threads, "clock": "wall" if args.wall else "process_cpu",
                   **measure(model, rows, args.k, args.repeats, args.batch_tokens, args.wall)}
            results.append(res)
            verdict = "within" if res["ratio"] <= BUDGET else "OVER"
            print(f"{name:8s} vocab {res['vocab']:>7,}: loss only {res['loss_only_s_per_row'] * 1e3:8.1f} ms/row, "
                  f"+ rank & top-{args.k} Brier {res['with_rank_brier_s_per_row'] * 1e3:8.1f} ms/row, "
                  f"ratio {res['ratio']:.3f} ({verdict} the {BUDGET:.2f} budget; medians of {args.repeats})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
