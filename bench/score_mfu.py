"""Scorer model-FLOPs utilisation on a GPU, and its ratio to the cal_ppl method, with a Qwen2.5-3B-shaped model.

A random-initialised model of Qwen2.5-3B-Instruct's exact shape (36 layers, hidden 2048, MLP 11008, 16 heads /
2 KV heads, tied 151,936-row embeddings) in bf16, the real Qwen tokenizer, and a long-tail length mix up to
16K tokens. ``data-select score`` runs at its DEFAULT options (batch budget, packing, chunking, self-check);
only the device and dtype are given. Printed:

* our tokens/s and MFU = model FLOPs / time / the GPU's dense bf16 peak (target >= 45%). Model FLOPs per row of
  n tokens with r response tokens: 2·N·n (N = non-embedding matmul parameters) + 2·layers·n²·hidden (causal
  attention: QKᵀ and AV over the lower triangle) + 2·hidden·vocab·r (the lm_head, which we run at response
  positions only). Work we skip is not counted: the MFU is of the useful work. Time = the shard loop's wall
  time (progress.jsonl: encoding, batching, forward, writing), model loading excluded;
* with ``--compare-packing``, the same run with ``--packing off`` (padded batches): before/after packing;
* the cal_ppl method (``bench/score_vs_cal_ppl.py``'s faithful re-implementation: batch 4 in dataset order,
  full-vocabulary logits) on a mix it can hold in memory (``--baseline-max``): the tokens/s ratio (target >= 3x),
  and for each side in bf16 its error against an fp32 pass of the same model on the same rows (our scorer in
  fp32, exact to 3e-5 against the model's own full-logits loss: tests/data_selection/test_logprobs.py):
  max |Δ loss_mean| and the Spearman correlation of loss_mean (targets for ours: <= 1e-2 and >= 0.999);
* peak GPU memory of each;
* with ``--profile``, a torch.profiler pass over our run: the top kernels and the share of the shard loop's wall
  time the GPU is idle (bench/profile_summary.py).

A figure that needs a GPU and was not measured in this run is printed as "unmeasured".

Usage (GPU): python bench/score_mfu.py [--rows 256] [--peak-tflops 989] [--compare-packing] [--profile]
CPU run (accuracy vs fp32 is meaningful, MFU is not): python bench/score_mfu.py --shape tiny --device cpu --rows 16
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
from gpu_peaks import gpu_peak_tflops  # noqa: E402

from data_selection.tiny_model import QWEN25_3B_SHAPE, build_tiny_qwen  # noqa: E402


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


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of the ranks, ties averaged)."""
    import pandas as pd

    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def error_vs_reference(ours: list[float], ref: list[float]) -> dict:
    return {"max_abs_delta_loss_mean": max(abs(x - y) for x, y in zip(ours, ref)), "spearman": spearman(ours, ref)}


UNMEASURED = "unmeasured"


def _fmt(value, fmt: str, unit: str = "") -> str:
    return UNMEASURED if value is None else f"{value:{fmt}}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["qwen2.5-3b", "tiny"], default="qwen2.5-3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--rows", type=int, default=256, help="rows in the long-tail mix")
    ap.add_argument("--max-len", type=int, default=16384, help="longest row of our mix")
    ap.add_argument("--baseline-max", type=int, default=4096,
                    help="longest row of the mix both methods run (a batch of 4 padded to it must fit)")
    ap.add_argument("--batch-tokens", type=int, default=0,
                    help="our token budget per batch; default: data-select score's own default")
    ap.add_argument("--packing", default="auto", help="data-select score --packing (default: its default, auto)")
    ap.add_argument("--compare-packing", action="store_true", help="also run --packing off on the long-tail mix")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, help="the device's dense peak; default: looked up by GPU name")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true", help="profile one run of ours (top kernels, GPU idle share)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    from transformers import AutoConfig

    peak = args.peak_tflops
    device_name = "cpu"
    on_gpu = args.device != "cpu"
    if on_gpu:
        import torch

        device_name = torch.cuda.get_device_name(0)
        peak = peak or gpu_peak_tflops(device_name)
    work = Path(tempfile.mkdtemp(prefix="bench_mfu_"))
    shape = QWEN25_3B_SHAPE if args.shape == "qwen2.5-3b" else dict(hidden=64)
    model = str(build_tiny_qwen(work / "model", **shape, dtype="bfloat16" if args.dtype == "bf16" else "float32",
                                device="cuda" if on_gpu else "cpu"))
    config = AutoConfig.from_pretrained(model)
    results: dict = {"device": device_name, "shape": args.shape, "dtype": args.dtype, "peak_tflops": peak}

    def ours(data: Path, dtype: str = args.dtype, packing: str = args.packing, profile: str = "") -> dict | None:
        r = base.run_child("ours", model, data, 16384, args.batch_tokens, args.repeats, args.device, dtype,
                           packing, profile)
        if r:
            t = statistics.median(r["seconds"])
            flops = model_flops(config, r["seq_tokens"], r["response_tokens"])
            r.update(tokens_per_s=r["tokens"] / t, tflops_per_s=flops / t / 1e12)
            r["mfu"] = r["tflops_per_s"] / peak if (peak and on_gpu) else None
        return r

    keep = ("tokens_per_s", "tflops_per_s", "mfu", "attn", "packing", "batch_tokens", "padding_waste",
            "peak_gpu_gb", "peak_rss_gb")
    lengths = base.long_tail_lengths(args.rows, 200, args.max_len, seed=1)
    base.write_pool(base.make_rows(lengths, seed=1), work / "mix")
    r = ours(work / "mix")
    if r:
        results["ours_long_tail"] = {k: r.get(k) for k in keep}
        results["ours_long_tail"]["mix"] = {"n": len(lengths), "max": max(lengths),
                                            "median": statistics.median(lengths)}
    if args.compare_packing:
        off = ours(work / "mix", packing="off")
        if off:
            results["ours_long_tail_padded"] = {k: off.get(k) for k in keep}
            if r:
                results["packing_speedup"] = r["tokens_per_s"] / off["tokens_per_s"]
    if args.profile:
        prof_path = work / "profile.json"
        if base.run_child("ours", model, work / "mix", 16384, args.batch_tokens, 0, args.device, args.dtype,
                          args.packing, str(prof_path)):
            results["profile"] = json.loads(prof_path.read_text())
    if not args.skip_baseline:
        short = base.long_tail_lengths(max(8, args.rows // 4), 200, args.baseline_max, seed=2)
        base.write_pool(base.make_rows(short, seed=2), work / "short")
        o = ours(work / "short")
        b = base.run_child("baseline", model, work / "short", 16384, 4, args.repeats, args.device, args.dtype)
        ref = ours(work / "short", dtype="fp32") if args.dtype != "fp32" else None
        ref_b = base.run_child("baseline", model, work / "short", 16384, 4, 0, args.device, "fp32") \
            if args.dtype != "fp32" else None
        if o and b:
            tb = statistics.median(b["seconds"])
            v = results["vs_cal_ppl"] = {
                "mix": {"n": len(short), "max": max(short)},
                "ours_tokens_per_s": o["tokens_per_s"], "baseline_tokens_per_s": b["tokens"] / tb,
                "throughput_ratio": o["tokens_per_s"] / (b["tokens"] / tb),
                "max_abs_delta_loss_mean": max(abs(x - y) for x, y in zip(o["loss_mean"], b["loss_mean"])),
                "peak_gpu_gb": {"ours": o.get("peak_gpu_gb"), "baseline": b.get("peak_gpu_gb")},
                "mfu_ours": o["mfu"]}
            if ref:
                v["vs_fp32"] = {"ours": error_vs_reference(o["loss_mean"], ref["loss_mean"]),
                                "baseline": error_vs_reference(b["loss_mean"], ref["loss_mean"])}
                if ref_b:  # the two fp32 passes agree: the reference is not one method's artefact
                    v["vs_fp32"]["fp32_ours_vs_fp32_baseline"] = max(
                        abs(x - y) for x, y in zip(ref["loss_mean"], ref_b["loss_mean"]))
    print(json.dumps(results, indent=2))
    report(results, on_gpu)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: dict, on_gpu: bool) -> None:
    """The human-readable lines: each figure next to its target; GPU figures not measured say so."""
    lt = results.get("ours_long_tail")
    gpu = "" if on_gpu else " (needs a GPU: make bench-gpu)"
    if lt:
        mfu = _fmt(lt["mfu"], ".1%") + ("" if lt["mfu"] is not None or not on_gpu else " (no peak known: --peak-tflops)")
        print(f"\nours on the long-tail mix (max {lt['mix']['max']}, default options: batch_tokens "
              f"{lt['batch_tokens']}, packing {lt['packing']}): {lt['tokens_per_s']:,.0f} tok/s, "
              f"{lt['tflops_per_s']:.2f} TFLOP/s, MFU {mfu}{gpu if lt['mfu'] is None else ''} (target >= 45%), "
              f"peak GPU GB {_fmt(lt.get('peak_gpu_gb'), '.1f')}")
    pad = results.get("ours_long_tail_padded")
    if pad and lt:
        print(f"same mix with --packing off (padded): {pad['tokens_per_s']:,.0f} tok/s, MFU {_fmt(pad['mfu'], '.1%')},"
              f" padding {pad['padding_waste']:.1%}: packing = {results['packing_speedup']:.2f}x")
    prof = results.get("profile")
    if prof:
        print(f"profile: GPU idle {_fmt(prof.get('gpu_idle_share'), '.1%')}{gpu if not on_gpu else ''} of the shard "
              f"loop's {prof.get('window_s', float('nan')):.2f} s")
        for k in prof.get("top_kernels", [])[:10]:
            print(f"  {k['share_of_kernel_time']:6.1%}  {k['seconds']:8.3f} s  {k['calls']:6d}x  {k['name']}")
        if not on_gpu:
            print("  top CPU operators (self time):")
            for k in prof.get("top_cpu_ops", [])[:10]:
                print(f"  {k['share_of_cpu_op_time']:6.1%}  {k['self_cpu_s']:8.3f} s  {k['calls']:6d}x  {k['name']}")
    v = results.get("vs_cal_ppl")
    if v:
        print(f"vs cal_ppl method (batch 4, mix up to {v['mix']['max']}): {v['throughput_ratio']:.2f}x (target >= 3x)"
              f"{'' if on_gpu else ' [CPU: not the GPU figure]'}, max |Δ loss_mean| ours vs baseline "
              f"{v['max_abs_delta_loss_mean']:.2e}, peak GPU GB ours {_fmt(v['peak_gpu_gb']['ours'], '.1f')} / "
              f"baseline {_fmt(v['peak_gpu_gb']['baseline'], '.1f')}")
        f = v.get("vs_fp32")
        if f:
            for side, target in (("ours", " (target <= 1e-2, >= 0.999)"), ("baseline", "")):
                e = f[side]
                print(f"  {side} {results['dtype']} vs fp32 pass, same model and rows: max |Δ loss_mean| "
                      f"{e['max_abs_delta_loss_mean']:.2e}, Spearman {e['spearman']:.5f}{target}")
            if "fp32_ours_vs_fp32_baseline" in f:
                print(f"  (the two fp32 passes agree to {f['fp32_ours_vs_fp32_baseline']:.1e})")


if __name__ == "__main__":
    main()
