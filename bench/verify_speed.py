"""Throughput of `data-select verify` on CPU, on AceReason-length traces, against naive full-text parsing.

The pool is synthetic but shaped like AceReason-1.1-SFT math rows: R1-style traces of several thousand Qwen
tokens (prose with inline LaTeX in ``<think>``, a LaTeX summary and a ``\\boxed{}`` answer after ``</think>``),
four responses per prompt, about one in five disagreeing and some agreeing in another form (``1/2`` for
``\\frac{1}{2}``), no reference column (so every query goes through the majority check, as on AceReason).

Measured in one run:

* ``verify, N workers``: ``data-select verify`` end to end after the pool is loaded (reading shards, worker
  processes, answer extraction, math-verify with its timeout, repetition counts, writing shards and the merge),
  rows per second and per worker;
* per core, in this process after a warm-up, on rows not seen before, median of ``--repeats`` samples: our
  per-row work (``verify_batch``) against the naive baseline, ``math_verify.parse`` of each whole response,
  in CPU time (rows per CPU-second do not depend on how busy a shared machine is);
* the extrapolation to a 4M-row pool, from the wall rate on N workers and from the workers' CPU rate
  (linear in rows and, for the CPU rate, in cores).

The naive baseline is not only slower on long traces: it reads a ``\\boxed{}`` written inside the reasoning
when the answer part has none, and a timeout inside it is indistinguishable from "no answer".

Usage: python bench/verify_speed.py [--rows 4000] [--workers 2] [--sample 120] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# after the environment above: huggingface_hub reads HF_HUB_OFFLINE when it is imported
from data_selection.embedded import qwen_tokenizer_dir  # noqa: E402
from data_selection.verify.options import VerifyOptions  # noqa: E402
from data_selection.verify.runner import run_verify  # noqa: E402
from data_selection.verify.worker import Settings, verify_batch  # noqa: E402

WORDS = ("we", "the", "so", "then", "let", "me", "check", "this", "value", "of", "and", "is", "for", "case", "that",
         "gives", "sum", "term", "now", "consider", "which", "means", "again", "total", "maybe", "hmm", "right")


def _sentence(rng: random.Random) -> str:
    a, b, c, k = (rng.randint(2, 99) for _ in range(4))
    kind = rng.random()
    prose = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
    if kind < 0.3:
        return f"{prose.capitalize()} $x^{{2}} + {a}x + {b} = 0$."
    if kind < 0.5:
        return f"So $\\frac{{{a}}}{{{b}}} \\cdot {c} = \\frac{{{a * c}}}{{{b}}}$, and {prose}."
    if kind < 0.65:
        return f"Hmm, $\\sqrt{{{k}}} \\approx {k ** 0.5:.3f}$ so {prose}."
    if kind < 0.75:
        return f"Wait, {prose}, the case $n = {k}$ gives $a_{{{k}}} = {a * k - b}$."
    return f"{prose.capitalize()}, so the total is {a + b + c}."


def synthetic_trace(rng: random.Random, answer: str, words: int) -> str:
    paras, n = [], 0
    while n < words:
        para = " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))
        n += len(para.split())
        paras.append(para)
    summary = " ".join(_sentence(rng) for _ in range(rng.randint(4, 10)))
    return (f"<think>\n{chr(10).join(paras)}\n</think>\n\n**Solution.** {summary}\n\n"
            f"Therefore, the final answer is $\\boxed{{{answer}}}$.")


def _answer(rng: random.Random) -> tuple[str, str]:
    """(a correct final answer, an equivalent way to write it). Mix: integers 65%, fractions 15%, roots 10%,
    tuples 5%, expressions 5% (AceReason's math answers are mostly integers; ours has more LaTeX, to be safe)."""
    a, b = rng.randint(1, 60), rng.randint(2, 97)
    u = rng.random()
    if u < 0.65:
        return str(a * b), str(a * b)
    if u < 0.80:
        return f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}"
    if u < 0.90:
        return f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"
    if u < 0.95:
        return f"({a}, {b})", f"({a},{b})"
    return f"{a}x + {b}", f"{b} + {a}x"


def make_pool(rows: int, seed: int, words: int) -> list[dict]:
    """Four responses per prompt: 80% give the right answer (one in ten of those writes it another way), 20% a
    different one."""
    rng = random.Random(seed)
    pool = []
    for q in range(-(-rows // 4)):
        right, other_form = _answer(rng)
        for _ in range(4):
            u = rng.random()
            ans = other_form if u < 0.08 else right if u < 0.8 else _answer(rng)[0]
            pool.append({"category": "math", "source": "OpenMathReasoning", "input": f"Problem {q}: compute it.",
                         "output": synthetic_trace(rng, ans, rng.randint(words // 2, words * 3 // 2))})
    return pool[:rows]


def _median_rate(fn, rows: int, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return rows / statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--words", type=int, default=3000, help="mean words per trace (3000 words ≈ 6K Qwen tokens)")
    ap.add_argument("--sample", type=int, default=120, help="rows in the per-core comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target_rows", type=int, default=4_000_000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    from math_verify import parse

    pool = make_pool(args.rows, 0, args.words)
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir()))
        sample = [r["output"] for r in pool[:50]]
        tokens = statistics.mean(len(tok(t)["input_ids"]) for t in sample)
    except Exception as err:  # the tokenizer only describes the pool
        print(f"(no Qwen tokenizer: {err})")
        tokens = float("nan")
    chars = statistics.mean(len(r["output"]) for r in pool)
    results: dict = {"rows": len(pool), "mean_chars": round(chars), "mean_qwen_tokens": round(tokens),
                     "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for r in pool:
                f.write(json.dumps(r) + "\n")
        t0 = time.perf_counter()
        s = run_verify(VerifyOptions(dataset=str(path), out=str(Path(tmp) / "verify"), workers=args.workers,
                                     shard_rows=max(64, args.rows // (4 * args.workers))))
        total = time.perf_counter() - t0
        c = s["counts"]
        results.update(verify_rows_per_s=s["rows_per_s"], verify_seconds=s["seconds"], total_seconds=round(total, 1),
                       scored=c["scored"], no_score=c["no_score"], rows_per_cpu_second=c["rows_per_cpu_second"],
                       worker_cpu_seconds=c["worker_cpu_seconds"], load_average=round(os.getloadavg()[0], 1))

    # per core, in this process after a warm-up (a worker's steady state: caches and math-verify's parser tables
    # warm, rows never seen before), median of --repeats samples: ours against parsing whole responses
    def batch_of(rows):
        return {"row": list(range(len(rows))), "id": [str(i) for i in range(len(rows))],
                "query": [r["input"] for r in rows], "n_prompt_turns": [1] * len(rows),
                "response": [r["output"] for r in rows], "category": ["math"] * len(rows)}

    samples = [pool[i * args.sample: (i + 1) * args.sample] for i in range(args.repeats + 1)]
    verify_batch(batch_of(samples[0]), Settings())
    for r in samples[0][:10]:
        parse(r["output"])
    ours_cpu, naive_cpu = [], []
    for rows in samples[1:]:
        b = batch_of(rows)
        c0 = time.process_time()
        verify_batch(b, Settings())
        ours_cpu.append(time.process_time() - c0)
        c0 = time.process_time()
        for r in rows:
            parse(r["output"])
        naive_cpu.append(time.process_time() - c0)
    ours_rate = args.sample / statistics.median(ours_cpu)
    naive_rate = args.sample / statistics.median(naive_cpu)
    rate = results["verify_rows_per_s"]
    cpu_rate = results["rows_per_cpu_second"]
    results.update(ours_rows_per_cpu_s=round(ours_rate, 1), naive_rows_per_cpu_s=round(naive_rate, 1),
                   speedup_vs_naive=round(ours_rate / naive_rate, 2),
                   hours_for_target_on_these_workers=round(args.target_rows / rate / 3600, 2),
                   hours_for_target_per_core_at_cpu_rate=round(args.target_rows / cpu_rate / 3600, 2))
    print(f"pool: {len(pool):,} rows, 4 responses per prompt, mean {chars:,.0f} chars ≈ {tokens:,.0f} Qwen tokens "
          f"(load average {results['load_average']} on {os.cpu_count()} cores)")
    print(f"  verify, {args.workers} workers, end to end: {rate:,.1f} rows/s wall ({results['verify_seconds']:.1f} s "
          f"verifying, {total:.1f} s with pool loading); workers' CPU: {cpu_rate:,.1f} rows per CPU-second "
          f"(worker start-up included); scored {results['scored']:,}, no score {results['no_score']:,}")
    print(f"  per core, warm, {args.sample} unseen rows, median of {args.repeats}: ours {ours_rate:,.1f} rows per "
          f"CPU-second, naive full-text math_verify.parse {naive_rate:,.1f} -> {ours_rate / naive_rate:,.2f}x")
    print(f"  {args.target_rows:,} rows: {results['hours_for_target_on_these_workers']:.2f} h at the measured wall "
          f"rate on {args.workers} workers; {results['hours_for_target_per_core_at_cpu_rate']:.2f} core-hours at the "
          f"workers' CPU rate (e.g. {results['hours_for_target_per_core_at_cpu_rate'] / 16:.2f} h on 16 cores)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
