"""Cost of PIR per row (``data-select prune-steps``): whole variants batched through ``score_sequences`` (the
baseline) vs the KV-cache prefix path, on CPU; then the extrapolation to 15K rows on a 3B model.

Traces are synthetic and R1-shaped: ``--paragraphs`` blank-line-separated paragraphs of 3 sentences, a share
``--functional-share`` of them functional ("Wait, let me check…", "Alternatively…", "Wait, no…") at random
positions, each row its own draw (seed 0). Each model encodes the variants once (timed apart), then both paths
run on all rows, interleaved, ``--repeats`` times; the medians of process CPU seconds are reported (CPU time is
less disturbed than wall time when other jobs share the machine) together with the forward tokens each path
computes, which do not depend on the machine.

Extrapolation (printed): per row, the forward FLOPs of a decoder without its lm_head (the head runs on the few
answer tokens only) are 2·N·T + 2·L·d·T² for a full variant of T tokens (dense matmuls + causal attention), and
2·N·S + 2·L·d·((P+S)² − P²) for a suffix of S tokens on a cached prefix of P. Summed over the variants of rows
with ``--target-tokens`` tokens and ``--target-functional`` functional steps at uniform random positions,
× ``--target-rows``, divided by a GPU's dense bf16 peak × an assumed MFU, gives GPU-hours. Qwen2.5-3B:
N = 2.77e9 non-embedding parameters, L = 36 layers, d = 2048; H100 SXM peak 989 TFLOP/s.

On a GPU (``--device cuda --models qwen3b --paragraphs 200``: a random-weight Qwen2.5-3B-shaped model in bf16,
~8K-token rows) the times are wall seconds after a CUDA synchronize instead of CPU seconds.

Usage: python bench/pir_cost.py [--models tiny smollm2 qwen3b] [--rows 4] [--paragraphs 12] [--repeats 3]
       [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_selection.embedded import prepare_smollm2, qwen_tokenizer_dir  # noqa: E402
from data_selection.encoding import TemplateEncoder, load_tokenizer  # noqa: E402
from data_selection.tiny_model import QWEN25_3B_SHAPE, build_tiny_qwen  # noqa: E402
from data_selection.transforms.pir import _shared_prefix, encode_variants, pir_batched, pir_prefix_cached  # noqa: E402
from data_selection.transforms.steps import DEFAULT_PHRASES, MarkerTable, segment  # noqa: E402

PROGRESSIVE = "Next we compute the product of {a} and {b}. It equals {p}. Adding {a} gives {q}."
FUNCTIONAL = [
    "Wait, let me check this. Recomputing {a} times {b} gives {p} again. So {q} holds.",
    "Alternatively, we could add {a} to itself {b} times. That also reaches {p}. Then {q} follows.",
    "Wait, no, that is wrong. The product of {a} and {b} is {p}, not {q}. Let me redo it.",
]
QWEN25_3B = {"params": 2.77e9, "layers": 36, "hidden": 2048}


def make_rows(n: int, paragraphs: int, share: float, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        paras = []
        for _ in range(paragraphs):
            a, b = rng.randint(11, 99), rng.randint(11, 99)
            tpl = rng.choice(FUNCTIONAL) if rng.random() < share else PROGRESSIVE
            paras.append(tpl.format(a=a, b=b, p=a * b, q=a * b + a))
        paras[0] = PROGRESSIVE.format(a=3, b=4, p=12, q=15)  # a trace starts with progress
        response = "<think>\n" + "\n\n".join(paras) + "\n</think>\n\nThe final answer is \\boxed{42}."
        rows.append({"_prompt": [{"role": "user", "content": f"Compute the total ({i})."}],
                     "_response": [{"role": "assistant", "content": response}], "_system": "Reason step by step."})
    return rows


def flops_row(tokens: int, starts: list[int], cached: bool, m: dict) -> float:
    """Forward FLOPs of one row's variants (full + one per functional step starting at token ``starts[i]``)."""
    n, layers, d = m["params"], m["layers"], m["hidden"]
    full = 2 * n * tokens + 2 * layers * d * tokens**2
    total = full
    for p in starts:
        t = tokens - 60  # a deleted step is ~60 tokens
        if cached:
            s = t - p
            total += 2 * n * s + 2 * layers * d * (t**2 - p**2)
        else:
            total += 2 * n * t + 2 * layers * d * t**2
    return total


def extrapolate(args) -> None:
    rng = random.Random(1)
    per_row = {False: 0.0, True: 0.0}
    samples = 200
    for _ in range(samples):
        starts = [rng.randint(0, args.target_tokens - 60) for _ in range(args.target_functional)]
        for cached in per_row:
            per_row[cached] += flops_row(args.target_tokens, starts, cached, QWEN25_3B) / samples
    print(f"\nextrapolation: {args.target_rows:,} rows x {args.target_tokens:,} tokens, {args.target_functional} "
          f"functional steps per row at uniform positions, Qwen2.5-3B shape, {args.peak_tflops:g} TFLOP/s peak "
          f"x MFU {args.mfu:g}")
    for cached, f in per_row.items():
        total = f * args.target_rows
        hours = total / (args.peak_tflops * 1e12 * args.mfu) / 3600
        print(f"  {'prefix-cache' if cached else 'batched     '}: {f / 1e12:,.1f} TFLOP per row, "
              f"{total / 1e18:,.1f} EFLOP in all = {hours:,.1f} GPU-hours ({hours / 8:,.2f} h on 8 GPUs)")


def prepare_model(name: str, tmp: Path, device: str):
    if name == "tiny":
        return build_tiny_qwen(tmp / "tiny", qwen_tokenizer_dir()), "qwen"
    if name == "qwen3b":
        return build_tiny_qwen(tmp / "qwen3b", qwen_tokenizer_dir(), dtype="bfloat16", device=device,
                               **QWEN25_3B_SHAPE), "qwen"
    return prepare_smollm2(), "smollm2"


def clock(device: str):
    """CPU seconds of this process on CPU; wall seconds after a synchronize on CUDA."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def bench_model(name: str, args, tmp: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    device = args.device
    path, template = prepare_model(name, tmp, device)
    encoder = TemplateEncoder(load_tokenizer(str(path)), template, 100_000)
    markers = MarkerTable(DEFAULT_PHRASES)
    rows = make_rows(args.rows, args.paragraphs, args.functional_share)
    t0 = time.process_time()
    rvs = []
    for i, ex in enumerate(rows):
        rv = encode_variants(encoder, ex, segment(ex["_response"][0]["content"], markers), row=i)
        assert not isinstance(rv, str), rv
        rvs.append(rv)
    t_encode = (time.process_time() - t0) / len(rows)
    dtype = torch.bfloat16 if name == "qwen3b" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    pad = encoder.tokenizer.pad_token_id or 0
    times = {"batched": [], "prefix-cache": []}
    results = {}
    for _ in range(args.repeats):
        for mode in times:
            t = clock(device)
            if mode == "batched":
                results[mode] = pir_batched(model, rvs, batch_tokens=args.batch_tokens, chunk_tokens=512,
                                            device=device, pad_id=pad)
            else:
                results[mode] = {rv.row: pir_prefix_cached(model, rv, device) for rv in rvs}
            times[mode].append((clock(device) - t) / len(rvs))
    worst = max(abs(a - b) for r in results["batched"] for a, b in
                zip(results["batched"][r][1], results["prefix-cache"][r][1]))
    tokens = statistics.mean(len(rv.seqs[0][0]) for rv in rvs)
    functional = statistics.mean(len(rv.functional) for rv in rvs)
    fwd = {"batched": statistics.mean(sum(len(s[0]) for s in rv.seqs) for rv in rvs),
           "prefix-cache": statistics.mean(len(rv.seqs[0][0]) + sum(len(s[0]) - _shared_prefix(rv.seqs[0][0], s[0])
                                                                    for s in rv.seqs[1:]) for rv in rvs)}
    print(f"\n{name}: {len(rvs)} rows, {tokens:,.0f} tokens per row (prompt included), {functional:.1f} functional "
          f"steps per row; encoding the variants {t_encode:.3f} s/row")
    base = statistics.median(times["batched"])
    for mode, ts in times.items():
        med = statistics.median(ts)
        unit = "s" if device.startswith("cuda") else "CPU s"
        print(f"  {mode:13s} {med:7.3f} {unit}/row (runs {', '.join(f'{x:.2f}' for x in ts)}), "
              f"{fwd[mode]:,.0f} forward tokens/row, {fwd[mode] / med:,.0f} tok/s, {base / med:.2f}x the baseline")
    print(f"  max |PIR batched - PIR prefix-cache| = {worst:.2e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2", "qwen3b"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--paragraphs", type=int, default=12)
    ap.add_argument("--functional-share", type=float, default=0.4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--target-rows", type=int, default=15_000)
    ap.add_argument("--target-tokens", type=int, default=6_000)
    ap.add_argument("--target-functional", type=int, default=16)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--mfu", type=float, default=0.4)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            bench_model(name, args, Path(tmp))
    extrapolate(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
