"""Peak memory of one DFT training step: LLaMA-Factory's ``use_dft_loss`` vs our chunked ``dft_lean``.

Both compute the same loss (tests/test_losses.py checks loss and gradients). The difference is where memory
goes: LLaMA-Factory's ``dft_loss_func`` takes the model's full logits, makes them fp32 and runs a
cross-entropy over [tokens x 151,936] (plus the same again for log-softmax and for the gradient), while
``dft_lean`` keeps only the final hidden states and projects ``loss_chunk_tokens`` positions at a time under
checkpointing.

Setup: a tiny random Qwen2 (2 layers, hidden 64) with Qwen2.5's real 151,936-entry vocabulary, fp32 on CPU,
one sequence of T tokens (first 10% prompt, masked), one forward + backward. The decoder body is tiny on
purpose: what is left is the vocabulary-sized part, which is what differs between the two (with a 3B model the
body adds the same amount to both). Each measurement runs in a fresh subprocess and reports its peak RSS
(``ru_maxrss``) and the RSS just before the step; the table shows medians over ``--repeats`` runs and the
ratio LLaMA-Factory / ours, both for the whole-process peak and for the step's own increase. A variant whose
estimated need exceeds the machine's available memory is not run: the table says so with the estimate.

Usage: python bench/dft_memory.py [--tokens 4096 16384] [--repeats 3] [--chunk 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 151936
GIB = 2**30


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(variant: str, tokens: int, chunk: int) -> dict:
    """One forward + backward of one variant in this (fresh) process; returns its memory figures."""
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         tie_word_embeddings=True)  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.config._attn_implementation = "sdpa"
    model.train()
    input_ids = torch.randint(0, 151000, (1, tokens))
    labels = input_ids.clone()
    labels[:, : tokens // 10] = -100
    before = _rss_bytes()
    start = time.time()
    if variant == "llamafactory":
        from llamafactory.train.trainer_utils import dft_loss_func

        outputs = model(input_ids=input_ids)
        loss = dft_loss_func(outputs, labels)
    else:
        from llamafactory_ext.train.losses import dft_loss, label_token_cross_entropy

        outputs = model(input_ids=input_ids, output_hidden_states=True, logits_to_keep=1)
        loss = dft_loss(label_token_cross_entropy(outputs.hidden_states[-1], labels, model.lm_head, chunk))
    loss.backward()
    seconds = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"variant": variant, "tokens": tokens, "peak_gib": peak / GIB, "before_gib": before / GIB,
            "step_gib": (peak - before) / GIB, "seconds": seconds, "loss": loss.item()}  # fmt: skip


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info["MemAvailable"] * 1024 / GIB


def estimate_gib(variant: str, tokens: int, chunk: int) -> float:
    """Rough need of the step: fp32 [positions x vocab] buffers alive at once (+1 GiB for the process)."""
    per_row = VOCAB * 4 / GIB
    rows = tokens if variant == "llamafactory" else min(chunk, tokens)
    return 1.0 + 4 * rows * per_row  # logits, log-softmax, their gradient, a temporary


def measure(variant: str, tokens: int, chunk: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--tokens", str(tokens), "--chunk", str(chunk)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{variant} at {tokens} tokens failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=1024, help="loss_chunk_tokens of the lean variant")
    ap.add_argument("--headroom", type=float, default=0.8, help="share of MemAvailable a run may plan to use")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--worker", choices=["llamafactory", "lean"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.tokens[0], args.chunk)))
        return 0

    rows, results = [], []
    measured_lf: dict[int, float] = {}  # tokens -> median step increase of LLaMA-Factory's DFT
    for tokens in sorted(args.tokens):
        med = {}
        for variant in ("lean", "llamafactory"):
            need, avail = estimate_gib(variant, tokens, args.chunk), available_gib()
            if need > args.headroom * avail:
                med[variant] = None
                rows.append(
                    f"| {tokens} | {variant} | not run: needs ~{need:.1f} GiB, "
                    f"{avail:.1f} GiB available | | | |"
                )
                results.append({"variant": variant, "tokens": tokens, "skipped": True, "estimate_gib": need})
                if variant == "llamafactory" and measured_lf and med.get("lean"):
                    # its step memory is linear in tokens: scale the longest measured point
                    t0 = max(measured_lf)
                    step = measured_lf[t0] * tokens / t0
                    rows.append(f"| {tokens} | llamafactory (extrapolated from {t0}) | | ~{step:.1f} | | |")
                    rows.append(f"| {tokens} | **ratio LF / lean (extrapolated)** | | "
                                f"**~{step / max(med['lean']['step_gib'], 1e-3):.0f}x** | | |")  # fmt: skip
                    results.append({"variant": variant, "tokens": tokens, "extrapolated_step_gib": step})
                continue
            runs = [measure(variant, tokens, args.chunk) for _ in range(args.repeats)]
            results.extend(runs)
            med[variant] = {
                k: statistics.median(r[k] for r in runs) for k in ("peak_gib", "step_gib", "seconds")
            }
            m = med[variant]
            if variant == "llamafactory":
                measured_lf[tokens] = m["step_gib"]
            rows.append(f"| {tokens} | {variant} | {m['peak_gib']:.2f} | {m['step_gib']:.2f} | "
                        f"{m['seconds']:.1f} | "
                        f"{runs[0]['loss']:.3e} |")  # fmt: skip
        if med.get("lean") and med.get("llamafactory"):
            a, b = med["llamafactory"], med["lean"]
            rows.append(f"| {tokens} | **ratio LF / lean** | **{a['peak_gib'] / b['peak_gib']:.1f}x** | "
                        f"**{a['step_gib'] / max(b['step_gib'], 1e-3):.1f}x** | | |")  # fmt: skip
    print(
        f"DFT step, tiny Qwen2 with vocab {VOCAB}, fp32 CPU, chunk {args.chunk}, "
        f"median of {args.repeats} runs"
    )
    print("| tokens | variant | peak RSS GiB | step increase GiB | seconds | loss |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"chunk": args.chunk, "repeats": args.repeats, "results": results}, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
