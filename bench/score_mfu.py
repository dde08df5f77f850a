"""Scorer model-FLOPs utilisation on a GPU, and its ratio to the cal_ppl method, with a Qwen2.5-3B-shaped model.

A random-initialised model of Qwen2.5-3B-Instruct's exact shape (36 layers, hidden 2048, MLP 11008, 16 heads /
2 KV heads, tied 151,936-row embeddings) in bf16, the real Qwen tokenizer, and a long-tail length mix up to
16K tokens. Printed:

* our tokens/s and MFU = model FLOPs / time / the GPU's dense bf16 peak. Model FLOPs per row of n tokens with r
  response tokens: 2·N·n (N = non-embedding matmul parameters) + 2·layers·n²·hidden (causal attention: QKᵀ and
  AV over the lower triangle) + 2·hidden·vocab·r (the lm_head, which we run at response positions only). Work we
  skip is not counted: the MFU is of the useful work;
* the cal_ppl method (``bench/score_vs_cal_ppl.py``'s faithful re-implementation: batch 4 in dataset order,
  full-vocabulary logits) on a mix it can hold in memory (``--baseline-max``), the tokens/s ratio and
  max |Δ loss_mean| (bf16: both sides differ from exact by bf16 rounding);
* peak GPU memory of each.

Usage (GPU): python bench/score_mfu.py [--rows 256] [--peak-tflops 989]
Smoke run on CPU (MFU is then meaningless): python bench/score_mfu.py --shape tiny --device cpu --rows 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score_vs_cal_ppl as base  # noqa: E402

# dense bf16 peak, TFLOP/s (vendor datasheets, without sparsity)
PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0}


def gpu_peak_tflops(name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():  # insertion order: the more specific names first
        if key in name:
            return value
    return None


def model_flops(config, seq_tokens: list[int], response_tokens: list[int]) -> float:
    """Forward FLOPs of the useful work (see the module docstring)."""
    d, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * inter  # q, k, v, o, gate/up/down
    n_body = layers * per_layer
    total = 0.0
    for n, r in zip(seq_tokens, response_tokens):
        total += 2 * n_body * n + 2 * layers * n * n * d + 2 * d * config.vocab_size * r
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["qwen2.5-3b", "tiny"], default="qwen2.5-3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--rows", type=int, default=256, help="rows in the long-tail mix")
    ap.add_argument("--max-len", type=int, default=16384, help="longest row of our mix")
    ap.add_argument("--baseline-max", type=int, default=4096,
                    help="longest row of the mix both methods run (a batch of 4 padded to it must fit)")
    ap.add_argument("--batch-tokens", type=int, default=65536, help="our token budget per batch")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, help="the device's dense peak; default: looked up by GPU name")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    from transformers import AutoConfig

    from data_selection.tiny_model import QWEN25_3B_SHAPE, build_tiny_qwen

    peak = args.peak_tflops
    device_name = "cpu"
    if args.device != "cpu":
        import torch

        device_name = torch.cuda.get_device_name(0)
        peak = peak or gpu_peak_tflops(device_name)
    work = Path(tempfile.mkdtemp(prefix="bench_mfu_"))
    shape = QWEN25_3B_SHAPE if args.shape == "qwen2.5-3b" else dict(hidden=64)
    model = str(build_tiny_qwen(work / "model", **shape, dtype="bfloat16" if args.dtype == "bf16" else "float32",
                                device="cuda" if args.device != "cpu" else "cpu"))
    config = AutoConfig.from_pretrained(model)
    results: dict = {"device": device_name, "shape": args.shape, "dtype": args.dtype, "peak_tflops": peak}

    def ours(data: Path) -> dict | None:
        r = base.run_child("ours", model, data, 16384, args.batch_tokens, args.repeats, args.device, args.dtype)
        if r:
            t = statistics.median(r["seconds"])
            flops = model_flops(config, r["seq_tokens"], r["response_tokens"])
            r.update(tokens_per_s=r["tokens"] / t, tflops_per_s=flops / t / 1e12)
            r["mfu"] = r["tflops_per_s"] / peak if peak else None
        return r

    lengths = base.long_tail_lengths(args.rows, 200, args.max_len, seed=1)
    base.write_pool(base.make_rows(lengths, seed=1), work / "mix")
    r = ours(work / "mix")
    if r:
        results["ours_long_tail"] = {k: r.get(k) for k in ("tokens_per_s", "tflops_per_s", "mfu", "attn",
                                                           "padding_waste", "peak_gpu_gb", "peak_rss_gb")}
        results["ours_long_tail"]["mix"] = {"n": len(lengths), "max": max(lengths),
                                            "median": statistics.median(lengths)}
    if not args.skip_baseline:
        short = base.long_tail_lengths(max(8, args.rows // 4), 200, args.baseline_max, seed=2)
        base.write_pool(base.make_rows(short, seed=2), work / "short")
        o = ours(work / "short")
        b = base.run_child("baseline", model, work / "short", 16384, 4, args.repeats, args.device, args.dtype)
        if o and b:
            tb = statistics.median(b["seconds"])
            results["vs_cal_ppl"] = {
                "mix": {"n": len(short), "max": max(short)},
                "ours_tokens_per_s": o["tokens_per_s"], "baseline_tokens_per_s": b["tokens"] / tb,
                "throughput_ratio": o["tokens_per_s"] / (b["tokens"] / tb),
                "max_abs_delta_loss_mean": max(abs(x - y) for x, y in zip(o["loss_mean"], b["loss_mean"])),
                "peak_gpu_gb": {"ours": o.get("peak_gpu_gb"), "baseline": b.get("peak_gpu_gb")},
                "mfu_ours": o["mfu"]}
    print(json.dumps(results, indent=2))
    lt = results.get("ours_long_tail")
    if lt:
        mfu = f"{lt['mfu']:.1%}" if lt["mfu"] is not None else "n/a (no peak known: --peak-tflops)"
        print(f"\nours on the long-tail mix (max {lt['mix']['max']}): {lt['tokens_per_s']:,.0f} tok/s, "
              f"{lt['tflops_per_s']:.1f} TFLOP/s, MFU {mfu} (target >= 40%), attn={lt['attn']}")
    v = results.get("vs_cal_ppl")
    if v:
        print(f"vs cal_ppl method (batch 4, mix up to {v['mix']['max']}): {v['throughput_ratio']:.2f}x, "
              f"max |Δ loss_mean| {v['max_abs_delta_loss_mean']:.2e}, peak GPU GB {v['peak_gpu_gb']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
