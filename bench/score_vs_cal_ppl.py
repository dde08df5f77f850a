"""Our scorer vs the method of LLaMA-Factory's ``scripts/stat_utils/cal_ppl.py``, measured in one run.

The upstream script crashes on 0.9.5 (``get_train_args`` now returns 6 values, and the wheel ships no scripts/),
so :func:`cal_ppl_method` re-implements it faithfully against 0.9.5's APIs: LF's SFT preprocessing
(``get_dataset``), ``load_model``, a DataLoader in dataset order with ``MultiModalDataCollatorForSeq2Seq``
(padding to the longest), ``model(**batch)`` with labels (so HF also computes its own fp32 loss), full-vocabulary
logits shifted and made contiguous, ``CrossEntropyLoss(reduction="none")``, mean over label tokens.

Each variant runs in its own subprocess so its peak RSS is its own. Printed:
* throughput (response-scoring tokens/s, median of repeats after one warm-up) on a long-tail length mix, and the ratio;
* max |Δ loss_mean| between the two on the same rows (fp32);
* peak RSS for one 16K-token example with our scorer, and the baseline's peak RSS at growing lengths (it does not
  fit a 24 GiB machine at 16K: the figure there is a linear fit of the measured points, marked as such).

Usage: python bench/score_vs_cal_ppl.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_selection.jsonl import read_jsonl  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
WORDS = ("the sum of", "we need", "therefore", "so", "x =", "wait", "check", "step", "equals", "+", "-", "*",
         "12", "7", "345", "then", "because", "\\frac{1}{2}", "let", "answer")


def make_rows(target_tokens: list[int], seed: int = 0) -> list[dict]:
    """Rows whose responses are about ``target_tokens`` Qwen tokens long (one word ~ 1.3 tokens)."""
    rng = random.Random(seed)
    rows = []
    for i, n in enumerate(target_tokens):
        words = [rng.choice(WORDS) for _ in range(int(n / 1.6))]
        rows.append({"instruction": f"Problem {i}: compute {rng.randint(1, 999)} + {rng.randint(1, 999)}.",
                     "input": "", "output": "<think>\n" + " ".join(words) + "\n</think>\n\\boxed{1}",
                     "system": SYSTEM})
    return rows


def long_tail_lengths(n: int, lo: int, hi: int, seed: int = 0) -> list[int]:
    """Mostly short, a few long: log-length ~ u^2 between lo and hi, the longest pinned to hi."""
    rng = random.Random(seed)
    out = [int(lo * (hi / lo) ** (rng.random() ** 2)) for _ in range(n - 1)] + [hi]
    rng.shuffle(out)
    return out


def write_pool(rows: list[dict], d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "pool.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (d / "dataset_info.json").write_text(json.dumps({"pool": {"file_name": "pool.jsonl", "columns": {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system"}}}))


# ---------------------------------------------------------------- the two methods (run inside a child process)


def cal_ppl_method(model_dir: str, data_dir: str, cutoff: int, batch_size: int, repeats: int,
                   device: str = "cpu", dtype: str = "fp32") -> dict:
    import torch
    from llamafactory.data import (
        MultiModalDataCollatorForSeq2Seq,
        get_dataset,
        get_template_and_fix_tokenizer,
    )
    from llamafactory.extras.constants import IGNORE_INDEX
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer
    from torch.utils.data import DataLoader

    # 0.9.5 returns 5 values (upstream cal_ppl.py unpacks 6 and crashes)
    model_args, data_args, training_args, finetuning_args, *_ = get_train_args(dict(
        stage="sft", model_name_or_path=model_dir, dataset="pool", dataset_dir=data_dir, template="qwen",
        cutoff_len=cutoff, train_on_prompt=False, output_dir=tempfile.mkdtemp(), overwrite_cache=True,
        do_train=True, use_cpu=device == "cpu", bf16=dtype == "bf16", report_to="none"))
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    trainset = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)["train_dataset"]
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
    model = model.float() if dtype == "fp32" else model
    if device != "cpu":
        model = model.to(device)
    collator = MultiModalDataCollatorForSeq2Seq(template=template, tokenizer=tokenizer, label_pad_token_id=IGNORE_INDEX)
    criterion = torch.nn.CrossEntropyLoss(reduction="none")
    times, losses, tokens, positions = [], [], 0, 0
    for rep in range(repeats + 1):
        loader = DataLoader(trainset, batch_size, shuffle=False, collate_fn=collator)
        t0 = time.perf_counter()
        rep_losses, rep_tokens, rep_positions = [], 0, 0
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(model.device)
                outputs = model(**batch)
                shift_logits = outputs["logits"][..., :-1, :]
                shift_labels = batch["labels"][..., 1:]
                loss_mask = shift_labels != IGNORE_INDEX
                flat_logits = shift_logits.contiguous().view(shift_labels.size(0) * shift_labels.size(1), -1)
                token_logps = criterion(flat_logits, shift_labels.contiguous().view(-1))
                token_logps = token_logps.contiguous().view(shift_logits.size(0), -1)
                sentence = (token_logps * loss_mask).sum(-1) / loss_mask.sum(-1)
                rep_losses.extend(sentence.tolist())
                rep_tokens += int(batch["attention_mask"].sum())
                rep_positions += batch["attention_mask"].numel()
                del outputs, shift_logits, flat_logits, token_logps
        if rep:  # the first pass warms up
            times.append(time.perf_counter() - t0)
        losses, tokens, positions = rep_losses, rep_tokens, rep_positions
    return {"seconds": times, "tokens": tokens, "loss_mean": losses, "padding_waste": 1 - tokens / positions}


def our_method(model_dir: str, data_dir: str, cutoff: int, batch_tokens: int, repeats: int,
               device: str = "cpu", dtype: str = "fp32", packing: str = "auto", profile: str = "") -> dict:
    """``data-select score`` at its default options (``batch_tokens`` 0 = its default) on the pool, ``repeats``
    times after a warm-up; seconds = the shard loop's wall time (progress.jsonl). ``profile``: write a
    torch.profiler summary of the last repeat there (bench/score_mfu.py --profile)."""
    import shutil

    import pandas as pd

    from data_selection.scoring.runner import ScoreOptions, run_score

    times, summary = [], {}
    extra = {"batch_tokens": batch_tokens} if batch_tokens else {}
    for rep in range(repeats + 1):
        out = Path(tempfile.mkdtemp())
        opts = ScoreOptions(model=model_dir, dataset="pool", dataset_dir=data_dir, out=str(out / "s"),
                            template="qwen", cutoff_len=cutoff, num_proc=1, device=device, dtype=dtype,
                            packing=packing, **extra)
        if profile and rep == repeats:
            from profile_summary import profiled

            with profiled(device, profile):
                s = run_score(opts)
        else:
            s = run_score(opts)
        df = pd.read_parquet(out / "s" / "scores.parquet").sort_values("row")
        prog = read_jsonl(out / "s" / "progress.jsonl")
        if rep:
            times.append(sum(p["seconds"] for p in prog))
        summary = {"tokens": sum(p["tokens"] for p in prog), "loss_mean": df["loss_mean"].tolist(),
                   "padding_waste": s["padding_waste"], "attn": s.get("attn"), "packing": s.get("packing"),
                   "batch_tokens": opts.batch_tokens,
                   "seq_tokens": (df["n_prompt_tokens"] + df["n_response_tokens"]).tolist(),
                   "response_tokens": df["n_response_tokens"].tolist()}
        shutil.rmtree(out)
    return {"seconds": times, **summary}


def child(args) -> None:
    if args.method == "ours":
        res = our_method(args.model, args.data, args.cutoff, args.batch, args.repeats, args.device, args.dtype,
                         args.packing, args.profile_out)
    else:
        res = cal_ppl_method(args.model, args.data, args.cutoff, args.batch, args.repeats, args.device, args.dtype)
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if args.device != "cpu":
        import torch

        res["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print("RESULT " + json.dumps(res))


def run_child(method: str, model: str, data: Path, cutoff: int, batch: int, repeats: int, device: str = "cpu",
              dtype: str = "fp32", packing: str = "auto", profile_out: str = "") -> dict | None:
    """One method in its own process (its peak memory is its own). ``batch``: the baseline's batch size, our
    token budget (0 = ``data-select score``'s default)."""
    cmd = [sys.executable, __file__, "--child", method, "--model", model, "--data", str(data),
           "--cutoff", str(cutoff), "--batch", str(batch), "--repeats", str(repeats), "--device", device,
           "--dtype", dtype, "--packing", packing, "--profile-out", profile_out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(f"[{method}] failed (rc={p.returncode}): {p.stderr[-1500:]}\n")
    return None


def throughput(model: str, data: Path, lengths: list[int], baseline_batch: int, repeats: int) -> dict:
    """Both methods on the same rows: tokens/s (median of ``repeats``), the ratio and max |Δ loss_mean|."""
    write_pool(make_rows(lengths, seed=1), data)
    res: dict = {"mix_target_tokens": {"n": len(lengths), "min": min(lengths), "max": max(lengths),
                                       "median": statistics.median(lengths)}, "baseline_batch": baseline_batch}
    ours = run_child("ours", model, data, 16384, 0, repeats)
    base = run_child("baseline", model, data, 16384, baseline_batch, repeats)
    if ours and base:
        t_ours, t_base = statistics.median(ours["seconds"]), statistics.median(base["seconds"])
        res.update(
            ours_tokens_per_s=ours["tokens"] / t_ours, baseline_tokens_per_s=base["tokens"] / t_base,
            throughput_ratio=(ours["tokens"] / t_ours) / (base["tokens"] / t_base),
            max_abs_delta_loss_mean=max(abs(a - b) for a, b in zip(ours["loss_mean"], base["loss_mean"])),
            peak_rss_gb={"ours": ours["peak_rss_gb"], "baseline": base["peak_rss_gb"]},
            ours_padding_waste=ours["padding_waste"], baseline_padding_waste=base["padding_waste"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=["ours", "baseline"])
    ap.add_argument("--model"), ap.add_argument("--data"), ap.add_argument("--cutoff", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=4), ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller mix, 1 repeat (a smoke run)")
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)  # children only (bench/score_mfu.py: cuda)
    ap.add_argument("--dtype", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--packing", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-batch", type=int, default=4, help="the baseline's batch size (cal_ppl.py's default)")
    ap.add_argument("--faithful-max", type=int, default=2048,
                    help="longest row of the as-shipped mix (a batch of 4 padded to it must fit in memory)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.child:
        args.method = args.child
        return child(args)

    from data_selection.tiny_model import build_tiny_qwen

    work = Path(tempfile.mkdtemp(prefix="bench_score_"))
    model = str(build_tiny_qwen(work / "tiny_qwen", hidden=64))
    repeats = 1 if args.quick else 3
    results: dict = {}
    # 1) The method as shipped: cal_ppl.py's default batch 4, dataset order, each batch padded to its longest row.
    #    The mix stops at 2,048 tokens because that is the longest a batch of 4 can be padded to in 24 GiB (three
    #    fp32 copies of 4 x L x 151,936 logits: 7.3 MB per padded position); beyond it the baseline is killed.
    hi = 1024 if args.quick else args.faithful_max
    results["as_shipped"] = throughput(model, work / "mix_b4", long_tail_lengths(16 if args.quick else 48, 200, hi,
                                                                                 seed=1), args.baseline_batch, repeats)
    # 2) The baseline at batch 1 (no padding at all, the only batch size at which it reaches 8K): what is left
    #    is the kernel difference alone (response-only, chunked lm_head vs full logits + two cross-entropies).
    if not args.quick:
        results["batch1"] = throughput(model, work / "mix_b1", long_tail_lengths(32, 200, 8192, seed=1), 1, repeats)
    # 2) memory at 16K: ours for real; the baseline at lengths that fit, then a linear fit.
    write_pool(make_rows([16000], seed=2), work / "long16k")
    o16 = run_child("ours", model, work / "long16k", 16384, 0, 0)
    results["ours_16k_peak_rss_gb"] = o16 and o16["peak_rss_gb"]
    pts = []
    for n in ([1000, 2000] if args.quick else [1000, 2000, 4000]):
        write_pool(make_rows([n], seed=3), work / f"len{n}")
        b = run_child("baseline", model, work / f"len{n}", 16384, 1, 0)
        o = run_child("ours", model, work / f"len{n}", 16384, 0, 0)
        if b and o:
            pts.append({"target_tokens": n, "baseline_gb": b["peak_rss_gb"], "ours_gb": o["peak_rss_gb"]})
    results["rss_by_length"] = pts
    if len(pts) >= 2:
        (x0, y0), (x1, y1) = (pts[0]["target_tokens"], pts[0]["baseline_gb"]), (pts[-1]["target_tokens"],
                                                                                pts[-1]["baseline_gb"])
        slope = (y1 - y0) / (x1 - x0)
        results["baseline_16k_peak_rss_gb_extrapolated"] = y1 + slope * (16000 - x1)
        if results.get("ours_16k_peak_rss_gb"):
            results["peak_rss_ratio_16k_baseline_over_ours"] = (
                results["baseline_16k_peak_rss_gb_extrapolated"] / results["ours_16k_peak_rss_gb"])
    print(json.dumps(results, indent=2))
    for key, label in (("as_shipped", "cal_ppl as shipped (batch 4, dataset order)"),
                       ("batch1", "cal_ppl at batch 1 (no padding)")):
        r = results.get(key, {})
        if "throughput_ratio" in r:
            print(f"\nvs {label}, mix {r['mix_target_tokens']['min']}-{r['mix_target_tokens']['max']} tokens: "
                  f"{r['ours_tokens_per_s']:,.0f} vs {r['baseline_tokens_per_s']:,.0f} tok/s = "
                  f"{r['throughput_ratio']:.2f}x; max |Δ loss_mean| = {r['max_abs_delta_loss_mean']:.2e}; "
                  f"padded positions {r['baseline_padding_waste']:.0%} vs ours {r['ours_padding_waste']:.0%}")
    if results.get("ours_16k_peak_rss_gb"):
        print(f"16K-token example: ours {results['ours_16k_peak_rss_gb']:.2f} GB peak RSS (target < 3 GB); "
              f"baseline ≈ {results.get('baseline_16k_peak_rss_gb_extrapolated', math.nan):.1f} GB (extrapolated)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
