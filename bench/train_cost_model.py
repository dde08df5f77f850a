"""What each way of batching computes, for a row-length mix: the cost model behind advanced_fast.yaml's design.

For every micro-batch LLaMA-Factory would build, count the FLOPs the GPU really computes (train_flops.py's
formula applied to what the kernels see) and divide by the useful FLOPs of the real tokens:

* ``padded, SDPA``: advanced.yaml without the flash-attn package. Rows in random order, ``per_device 2``,
  padded to the longest (to a multiple of 8). Matmuls run on every padded position; with any padding SDPA gets
  a mask, cannot use its FlashAttention kernel, and the masked kernel computes the whole n x n square of each
  row (2x the causal triangle) at the padded length;
* ``padded, flash-attn``: the same with the flash-attn package: attention unpadded and causal, matmuls still
  on the padding;
* ``neat_packing, SDPA``: the old advanced_fast.yaml. LLaMA-Factory's greedy knapsack packs rows into
  ``cutoff - 1`` tokens, drops longer rows, pads every pack to ``cutoff`` (processor/supervised.py) and, without
  flash-attn, hands SDPA a 4-D block-diagonal mask: full ``cutoff x cutoff`` square per pack. It also changes
  the science: 16 packs per optimizer step hold more than 16 examples;
* ``neat_packing, flash-attn``: unpadded, causal per row (LLaMA-Factory strips the padding for FA2);
* ``padding_free``: advanced_fast.yaml now: the padded run's own micro-batches, flattened; matmuls on real
  tokens, causal attention within each row. Computed = useful by construction.

Printed per scheme: computed / useful FLOPs (matmul and attention parts), the share of positions that are
padding, examples per optimizer step and optimizer steps per epoch (the science), and the epoch's compute
relative to ``padded, SDPA``, which is the predicted wall-time ratio *if every kernel ran at the same FLOP/s*
(FlashAttention runs faster per FLOP than the masked kernel, so the real gain of padding_free is larger).

``--measure-cpu`` also measures the CPU time (one thread, process time: the work done, robust to other processes
sharing the cores) of forward+backward of three layouts (padded + mask, neat_packing's 4-D mask,
padding_free) of the same rows on this CPU with a small random Qwen2, lengths scaled down ``--cpu-scale`` (8x),
median of ``--repeats`` (interleaved), and prints the measured time per useful token next to what the same count predicts for that
small shape. GPU figures are in bench/train_mfu.py.

Usage: python bench/train_cost_model.py [--mix lognormal --median 4000 --sigma 0.8 | --mix uniform]
       [--scores scores/acereason11_100k] [--measure-cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_flops import lognormal_lengths, matmul_params, shape_of, uniform_lengths  # noqa: E402

from llamafactory_ext.train.padding_free import flatten_padded_batch, use_padding_free_attention  # noqa: E402

QWEN25_3B = {"num_hidden_layers": 36, "hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16,
             "num_key_value_heads": 2, "vocab_size": 151936}  # fmt: skip
SCHEMES = ("padded, SDPA", "padded, flash-attn", "neat_packing, SDPA", "neat_packing, flash-attn", "padding_free")


def _round8(n: int) -> int:
    return -(-n // 8) * 8


def scheme_costs(config, lengths: list[int], cutoff: int = 16384, per_device: int = 2, effective: int = 16,
                 seed: int | None = 0) -> dict[str, dict]:  # fmt: skip
    """Computed and useful FLOPs of one epoch over ``lengths`` for every scheme (see the module docstring)."""
    from llamafactory.data.processor.processor_utils import greedy_knapsack

    s = shape_of(config)
    mm = 6.0 * matmul_params(config)  # per position

    def att(n: int) -> float:  # causal attention of one row of n positions
        return 6.0 * s["layers"] * n * n * s["hidden"]

    out: dict[str, dict] = {}
    rows = [min(n, cutoff) for n in lengths]  # padded training truncates
    order = rows[:]
    if seed is not None:  # the trainer's sampler shuffles; None keeps the given order
        random.Random(seed).shuffle(order)
    batches = [order[i : i + per_device] for i in range(0, len(order), per_device)]
    useful_mm, useful_att = mm * sum(rows), sum(att(n) for n in rows)
    steps = -(-len(rows) // effective)
    for name in ("padded, SDPA", "padded, flash-attn", "padding_free"):
        c_mm = c_att = positions = 0.0
        for b in batches:
            padded = _round8(max(b)) if name != "padding_free" else None
            if name == "padding_free":
                c_mm += mm * sum(b)
                c_att += sum(att(n) for n in b)
                positions += sum(b)
                continue
            c_mm += mm * padded * len(b)
            positions += padded * len(b)
            masked = any(n != padded for n in b)
            if name == "padded, flash-attn" or not masked:
                c_att += sum(att(n) for n in b) if name == "padded, flash-attn" else att(padded) * len(b)
            else:
                c_att += 2 * att(padded) * len(b)  # whole square of every row
        out[name] = dict(useful_mm=useful_mm, useful_att=useful_att, computed_mm=c_mm, computed_att=c_att,
                         positions=positions, tokens=sum(rows), rows=len(rows), examples_per_step=effective,
                         steps_per_epoch=steps)  # fmt: skip
    # neat_packing: LLaMA-Factory decrements cutoff by 1 for packing, drops longer rows, packs, pads to cutoff
    kept = [n for n in lengths if n <= cutoff - 1]
    packs = greedy_knapsack(kept[:], cutoff - 1)
    pack_len = _round8(cutoff)
    k_mm, k_att = mm * sum(kept), sum(att(n) for n in kept)
    packs_per_step = effective  # per_device 1 x accumulation 16
    for name in ("neat_packing, SDPA", "neat_packing, flash-attn"):
        if name.endswith("SDPA"):
            c_mm, c_att, positions = mm * pack_len * len(packs), 2 * att(pack_len) * len(packs), pack_len * len(packs)
        else:
            c_mm, c_att, positions = k_mm, k_att, sum(kept)
        out[name] = dict(useful_mm=k_mm, useful_att=k_att, computed_mm=c_mm, computed_att=c_att,
                         positions=positions, tokens=sum(kept), rows=len(kept),
                         examples_per_step=len(kept) / len(packs) * packs_per_step,
                         steps_per_epoch=-(-len(packs) // packs_per_step))  # fmt: skip
    base = out["padded, SDPA"]
    for r in out.values():
        r["computed_over_useful"] = (r["computed_mm"] + r["computed_att"]) / (r["useful_mm"] + r["useful_att"])
        r["matmul_overhead"] = r["computed_mm"] / r["useful_mm"]
        r["attention_overhead"] = r["computed_att"] / r["useful_att"]
        r["padding_share"] = 1 - r["tokens"] / r["positions"]
        r["epoch_compute_vs_padded_sdpa"] = (r["computed_mm"] + r["computed_att"]) / (
            base["computed_mm"] + base["computed_att"]
        )
    return out


def print_table(title: str, costs: dict[str, dict]) -> None:
    print(f"\n{title}")
    print("| scheme | computed / useful FLOPs | matmul x | attention x | padding share of positions | "
          "examples / step | steps / epoch | epoch compute vs padded SDPA |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name in SCHEMES:
        r = costs[name]
        print(f"| {name} | {r['computed_over_useful']:.2f} | {r['matmul_overhead']:.2f} | "
              f"{r['attention_overhead']:.2f} | {r['padding_share']:.1%} | {r['examples_per_step']:.1f} | "
              f"{r['steps_per_epoch']} | {r['epoch_compute_vs_padded_sdpa']:.2f} |")  # fmt: skip


def lengths_from_scores(path: str) -> list[int]:
    import pandas as pd

    p = Path(path)
    table = pd.read_parquet(p / "scores.parquet" if p.is_dir() else p, columns=["n_tokens_full"])
    return [int(n) for n in table["n_tokens_full"]]


# ------------------------------------------------------------------------------------------ CPU measurement


def measure_cpu(lengths: list[int], scale: int, repeats: int, seed: int = 0) -> dict:
    """Forward+backward time of three layouts of the same rows on this CPU (small random Qwen2, fp32)."""
    import torch
    from llamafactory.data.collator import prepare_4d_attention_mask
    from llamafactory.data.processor.processor_utils import greedy_knapsack
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cutoff = 16384 // scale
    rows = [max(16, min(n // scale, cutoff)) for n in lengths]
    config = Qwen2Config(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=cutoff + 8)  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).train()
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, 8192, (n,), generator=g) for n in rows]

    def padded(pair):
        length = _round8(max(len(x) for x in pair))
        batch = torch.zeros(len(pair), length, dtype=torch.long)
        mask = torch.zeros_like(batch)
        for i, x in enumerate(pair):
            batch[i, : len(x)], mask[i, : len(x)] = x, 1
        labels = batch.masked_fill(mask == 0, -100)
        return {"input_ids": batch, "attention_mask": mask, "labels": labels}

    pairs = [padded(ids[i : i + 2]) for i in range(0, len(ids), 2)]
    flat = [flatten_padded_batch(dict(p)) for p in pairs]
    packs, pool = [], {}
    for x in ids:
        pool.setdefault(len(x), []).append(x)
    for pack in greedy_knapsack([len(x) for x in ids if len(x) <= cutoff - 1], cutoff - 1):
        seq = torch.cat([pool[n].pop() for n in pack])
        segments = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(pack)])
        pad = _round8(cutoff) - len(seq)
        seq = torch.cat([seq, torch.zeros(pad, dtype=torch.long)])[None]
        segments = torch.cat([segments, torch.zeros(pad, dtype=torch.long)])[None]
        labels = seq.masked_fill(segments == 0, -100)
        packs.append({"input_ids": seq, "attention_mask": prepare_4d_attention_mask(segments, torch.float32),
                      "labels": labels})  # fmt: skip

    def run(batches) -> float:
        """CPU seconds of this process on one thread: the work done. Wall time on a shared machine follows the
        other processes' load, and with several threads the CPU time counts OpenMP's spin-waiting too."""
        start = time.process_time()
        for b in batches:
            model(**b).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.process_time() - start

    layouts = {"padded, SDPA": (pairs, "sdpa"), "neat_packing, SDPA": (packs, "sdpa"), "padding_free": (flat, None)}
    times = {name: [] for name in layouts}
    names = list(layouts)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for i in range(repeats):  # interleaved and rotated, so drifting load hits every layout alike
        for name in names[i % len(names) :] + names[: i % len(names)]:
            batches, attn = layouts[name]
            if attn:
                model.set_attn_implementation(attn)
            else:
                use_padding_free_attention(model, "sdpa")
            times[name].append(run(batches))
    torch.set_num_threads(threads)
    kept_tokens = sum(n for n in rows if n <= cutoff - 1)
    tokens = {"padded, SDPA": sum(rows), "neat_packing, SDPA": kept_tokens, "padding_free": sum(rows)}
    predicted = scheme_costs(config, rows, cutoff=cutoff, seed=None)  # the pairs measured above, in order
    result = {}
    base_rate = statistics.median(times["padded, SDPA"]) / tokens["padded, SDPA"]
    base_pred = predicted["padded, SDPA"]["computed_over_useful"]
    for name in layouts:
        per_token = statistics.median(times[name]) / tokens[name]
        result[name] = {"median_cpu_s": statistics.median(times[name]), "tokens": tokens[name],
                        "time_per_token_vs_padded": per_token / base_rate,
                        "predicted_vs_padded": predicted[name]["computed_over_useful"] / base_pred}  # fmt: skip
    return {"scale": scale, "rows": len(rows), "cutoff": cutoff, "repeats": repeats, "layouts": result}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mix", choices=["lognormal", "uniform"], default="lognormal")
    ap.add_argument("--median", type=float, default=4000, help="lognormal: median row length (tokens)")
    ap.add_argument("--sigma", type=float, default=0.8, help="lognormal: sigma of log length")
    ap.add_argument("--lo", type=int, default=2048, help="uniform: shortest row")
    ap.add_argument("--hi", type=int, default=16384, help="uniform: longest row")
    ap.add_argument("--rows", type=int, default=15000)
    ap.add_argument("--scores", help="use the real lengths (n_tokens_full) of a data-select score output")
    ap.add_argument("--cutoff", type=int, default=16384)
    ap.add_argument("--measure-cpu", action="store_true", help="also time three layouts on this CPU")
    ap.add_argument("--cpu-rows", type=int, default=16, help="rows of the mix timed on the CPU")
    ap.add_argument("--cpu-scale", type=int, default=8, help="CPU rows are the mix's lengths divided by this")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    if args.scores:
        lengths, title = lengths_from_scores(args.scores), f"lengths of {args.scores}"
    elif args.mix == "uniform":
        lengths = uniform_lengths(args.rows, args.lo, args.hi, seed=1)
        title = f"uniform {args.lo}-{args.hi} tokens"
    else:
        lengths = lognormal_lengths(args.rows, args.median, args.sigma, args.cutoff, seed=1)
        title = f"log-normal, median {args.median:.0f}, sigma {args.sigma}"
    over = sum(n > args.cutoff - 1 for n in lengths)
    title += (f" ({len(lengths)} rows, median {statistics.median(lengths):.0f}, {over / len(lengths):.1%} longer "
              f"than cutoff {args.cutoff}); Qwen2.5-3B shape, per-device batch 2, effective batch 16")  # fmt: skip
    costs = scheme_costs(QWEN25_3B, lengths, cutoff=args.cutoff)
    print_table(title, costs)
    results = {"title": title, "schemes": costs}
    if args.measure_cpu:
        sample = lengths[: args.cpu_rows]
        cpu = measure_cpu(sample, scale=args.cpu_scale, repeats=args.repeats)
        results["cpu"] = cpu
        print(f"\nmeasured on this CPU: {cpu['rows']} of those rows scaled down {cpu['scale']}x (cutoff {cpu['cutoff']}), "
              f"Qwen2 hidden 256 x 2 layers, fp32, forward+backward, one thread, median of {cpu['repeats']}")  # fmt: skip
        print("| layout | median CPU s | tokens | CPU time per token vs padded (measured) | same, predicted by the count |")
        print("|---|---|---|---|---|")
        for name, r in cpu["layouts"].items():
            print(f"| {name} | {r['median_cpu_s']:.2f} | {r['tokens']} | {r['time_per_token_vs_padded']:.2f} | "
                  f"{r['predicted_vs_padded']:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
