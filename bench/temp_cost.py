"""What TEMP's checkpoint scoring costs next to one full ``data-select score`` pass: measured on CPU, then
extrapolated to GPU-hours for a 100K-row pool on a Qwen2.5-3B-shaped model.

Measured, all in this run on the same machine (a tiny random Qwen2, hidden 64, with the real 151,936-entry
vocabulary and Qwen tokenizer; fp32 CPU; a long-tail pool of ``--rows`` rows, responses ``--min-len`` to
``--max-len`` tokens): one full ``score`` pass; ``perturb`` of both kinds; ``score-checkpoints`` for the 8
Gaussian checkpoints (L^(100) of every row: the prompt plus 100 response tokens per forward pass) and for the 8
directional ones (L^(1000) of the rows that survive the difficulty filter). Printed: wall seconds, tokens
forwarded and both as multiples of the full pass.

Extrapolated: forward FLOPs of the three jobs (``bench/score_mfu.model_flops``: 2·N·n + causal attention
2·L·n²·d + the lm_head at response positions, Qwen2.5-3B shape) summed over a pool's rows, divided by an
assumed throughput of MFU x peak (default 40% of an H100's 989 TFLOP/s dense bf16: the scorer's target,
**not measured**: no GPU was lent to this work). Row lengths come from ``--scores`` (a real scores folder:
its n_prompt_tokens / n_response_tokens, scaled to ``--pool-rows``) or, without one, from the stated
assumption: 150 prompt tokens, responses log-normal with median ``--median-response`` and σ 0.7 in log space,
capped at cutoff_len 16,384. The survivor share of the difficulty filter is ``--survivors`` (default: the one
measured on the CPU pool). The CPU time to regenerate the checkpoints (float64 draws, about 35M/s per core
here) is estimated for 16 cores.

Usage: python bench/temp_cost.py [--rows 24] [--scores scores/acereason11_100k] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import score_vs_cal_ppl as base  # noqa: E402
from score_mfu import model_flops  # noqa: E402

from data_selection.perturb.build import PerturbOptions, run_perturb  # noqa: E402
from data_selection.scoring.checkpoints import CheckpointScoreOptions, run_score_checkpoints  # noqa: E402
from data_selection.scoring.runner import ScoreOptions, run_score  # noqa: E402
from data_selection.tiny_model import (  # noqa: E402
    QWEN25_3B_SHAPE,
    QWEN_VOCAB,
    build_tiny_qwen,  # noqa: E402
)

NUM = 8
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def measure_cpu(rows: int, lo: int, hi: int, work: Path) -> dict:
    model = str(build_tiny_qwen(work / "model", hidden=64))
    target = str(build_tiny_qwen(work / "target", hidden=64, seed=1))
    lengths = base.long_tail_lengths(rows, lo, hi, seed=3)
    base.write_pool(base.make_rows(lengths, seed=3), work / "data")
    scores, temp = work / "scores", work / "temp"
    full, t_full = timed(run_score, ScoreOptions(model=model, dataset="pool", dataset_dir=str(work / "data"),
                                                 out=str(scores), template="qwen", cutoff_len=16384,
                                                 batch_tokens=16384, shard_rows=64))
    res = {"rows": rows, "response_tokens": {"min": min(lengths), "max": max(lengths),
                                             "median": sorted(lengths)[len(lengths) // 2]},
           "full": {"seconds": t_full, "tokens": full["tokens_now"]}}
    for kind, extra in (("gaussian", {}), ("directional", {"target": target})):
        _, t = timed(run_perturb, PerturbOptions(kind=kind, model=model, out=str(work / kind), num=NUM,
                                                 verify=False, **extra))
        res[f"perturb_{kind}_seconds"] = t
        s, t = timed(run_score_checkpoints, CheckpointScoreOptions(
            perturb=str(work / kind), scores=str(scores), out=str(temp), batch_tokens=16384, shard_rows=64,
            verify=False))
        res[kind] = {"seconds": t, "tokens": s["counts"]["tokens_forwarded"], "rows": s["rows"],
                     "regenerate_seconds": s.get("regenerate_seconds")}
    res["survivor_share"] = res["directional"]["rows"] / rows
    return res


def lengths_for(args) -> tuple[list[int], list[int]]:
    import numpy as np

    if args.scores:
        import pandas as pd

        t = pd.read_parquet(Path(args.scores) / "scores.parquet", columns=["n_prompt_tokens", "n_response_tokens"])
        idx = np.random.default_rng(0).choice(len(t), size=args.pool_rows, replace=len(t) < args.pool_rows)
        return t["n_prompt_tokens"].to_numpy()[idx].tolist(), t["n_response_tokens"].to_numpy()[idx].tolist()
    rng = np.random.default_rng(0)
    resp = np.clip(rng.lognormal(math.log(args.median_response), 0.7, args.pool_rows), 50, 16384 - 150)
    return [150] * args.pool_rows, resp.astype(int).tolist()


def extrapolate(args, survivors: float) -> dict:
    from transformers import Qwen2Config

    s = QWEN25_3B_SHAPE
    cfg = Qwen2Config(vocab_size=QWEN_VOCAB, hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                      num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"])
    prompt, resp = lengths_for(args)
    full = model_flops(cfg, [p + r for p, r in zip(prompt, resp)], resp)

    def prefix(k: int, share: float) -> float:
        f = model_flops(cfg, [p + min(k, r) for p, r in zip(prompt, resp)], [min(k, r) for r in resp])
        return NUM * share * f

    gauss, direc = prefix(100, 1.0), prefix(1000, survivors)
    rate = args.mfu * args.peak_tflops * 1e12
    hours = {k: v / rate / 3600 for k, v in (("full", full), ("gaussian", gauss), ("directional", direc))}
    n_params = 3.09e9  # Qwen2.5-3B; the Gaussian checkpoints skip its 0.31B tied embedding
    regen = {"gaussian": NUM * (n_params - 0.31e9), "directional": NUM * n_params}
    return {"pool_rows": args.pool_rows, "lengths": "from " + (args.scores or "the assumption in the docstring"),
            "mean_prompt": sum(prompt) / len(prompt), "mean_response": sum(resp) / len(resp),
            "survivor_share": survivors, "assumed_mfu": args.mfu, "peak_tflops": args.peak_tflops,
            "gpu_hours": hours, "ratio_to_full": {k: hours[k] / hours["full"] for k in ("gaussian", "directional")},
            "regenerate_cpu_minutes_16_cores": {k: v / 35e6 / 16 / 60 for k, v in regen.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=24, help="rows of the measured CPU pool")
    ap.add_argument("--min-len", type=int, default=300)
    ap.add_argument("--max-len", type=int, default=6000)
    ap.add_argument("--skip-cpu", action="store_true", help="only the extrapolation")
    ap.add_argument("--scores", default="", help="a real scores folder for the extrapolation's row lengths")
    ap.add_argument("--pool-rows", type=int, default=100_000)
    ap.add_argument("--median-response", type=int, default=5000)
    ap.add_argument("--survivors", type=float, default=0.0, help="difficulty survivor share (0 = measured)")
    ap.add_argument("--mfu", type=float, default=0.40)
    ap.add_argument("--peak-tflops", type=float, default=989.4)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    out: dict = {}
    if not args.skip_cpu:
        with tempfile.TemporaryDirectory(prefix="bench_temp_") as d:
            cpu = measure_cpu(args.rows, args.min_len, args.max_len, Path(d))
        out["cpu"] = cpu
        f = cpu["full"]
        print(f"\nCPU, tiny Qwen2 (hidden 64, 151,936 vocab), {cpu['rows']} rows, responses "
              f"{cpu['response_tokens']['min']}–{cpu['response_tokens']['max']} tokens "
              f"(median {cpu['response_tokens']['median']}):")
        print(f"  full score pass        {f['seconds']:8.1f} s  {f['tokens']:>9,} tokens  1.00x")
        for kind in ("gaussian", "directional"):
            k = cpu[kind]
            print(f"  {kind:<11} 8 ckpts  {k['seconds']:8.1f} s  {k['tokens']:>9,} tokens  "
                  f"{k['seconds'] / f['seconds']:.2f}x time, {k['tokens'] / f['tokens']:.2f}x tokens "
                  f"({k['rows']} rows; regenerating {k['regenerate_seconds']:.1f} s; perturb "
                  f"{cpu[f'perturb_{kind}_seconds']:.1f} s)")
    survivors = args.survivors or out.get("cpu", {}).get("survivor_share", 0.5)
    ex = extrapolate(args, survivors)
    out["gpu_extrapolation"] = ex
    h = ex["gpu_hours"]
    print(f"\nExtrapolation, Qwen2.5-3B shape, {ex['pool_rows']:,} rows (mean prompt {ex['mean_prompt']:.0f}, mean "
          f"response {ex['mean_response']:.0f} tokens; {ex['lengths']}), survivors {survivors:.0%}, assumed "
          f"{ex['assumed_mfu']:.0%} MFU of {ex['peak_tflops']:g} TFLOP/s:")
    print(f"  full score pass   {h['full']:6.2f} GPU-h")
    for kind in ("gaussian", "directional"):
        print(f"  {kind:<11} x8    {h[kind]:6.2f} GPU-h  ({ex['ratio_to_full'][kind]:.2f}x the full pass; regenerating"
              f" ~{ex['regenerate_cpu_minutes_16_cores'][kind]:.1f} CPU-min per rank on 16 cores)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
