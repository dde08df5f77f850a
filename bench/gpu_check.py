"""One GPU check that fits the time a GPU is lent: every GPU figure the README lists as unmeasured, in <= 8 min.

BUDGET (one H100/H200, bare image, wheels carried: scripts/gpu_setup.sh install ~20 s first): 450 s in all,
per part (estimates, not yet measured on a GPU):

  part              budget  what
  model               35 s  a random-initialised Qwen2.5-3B shape, bf16, saved once for the scorer parts
  doctor              60 s  llamafactory_ext.doctor.run_checks(): its table (ok / warn / blocker, fix)
  scorer             100 s  data-select score at default options (packed) and --packing off (padded) on the
                            long-tail mix (128 rows up to 16K tokens): tokens/s, MFU (bench/score_mfu.py's FLOPs)
  scorer_fp32         45 s  bf16 vs an fp32 pass on a short mix: max |Δ loss_mean|, Spearman
  memory_16k          25 s  one 16K-token row at default options: peak GPU memory
  two_rank            45 s  only with >= 2 GPUs: torchrun 2-rank scoring == 1-rank scoring, bit for bit
  dynamic_zero3       60 s  dynamic_selection under DeepSpeed ZeRO-3 (ds_z3.json), tiny fp32 model: stage-1
                            in-loop scores == data-select score on the boundary's weights (max |Δ loss_mean|)
  train_advanced      85 s  yaml_recipes/advanced.yaml, 1 warm-up + 3 measured steps, 3B shape, rows of
  train_advanced_fast 85 s  1K-4K tokens: tokens/s, MFU, peak memory (bench/train_mfu.py; ratio printed)

One GPU: 495 s of parts, more than the 450 s: the last training part is skipped when time is short (run it alone
with --parts model,train_advanced_fast); with two, two_rank runs too and both training parts may be skipped.

Every part runs as its own subprocess with its budget as a timeout (a hung part is killed, never waited
for), prints its elapsed time, and is skipped with a note when less time is left than it needs. Results:
printed, and written as one JSON (``--out``).

GPU:  make gpu-check   (= bash scripts/gpu_setup.sh install; PYTHONPATH=/tmp/site:$PWD python3 bench/gpu_check.py)
CPU:  python bench/gpu_check.py --dry-run --out /tmp/gpu_check.json   (every part's logic with tiny shapes on
      CPU; its numbers are not GPU figures; tests/bench/test_gpu_check.py runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

TOTAL_BUDGET_S = 450.0
# name -> (budget on a GPU, budget for --dry-run on CPU), seconds
# The CPU budgets are 4-10x what each part took on a quiet 2-core machine (10-46 s): a busy CI runner or a
# loaded laptop must not turn the dry path's logic check into a timeout.
BUDGETS = {"model": (35, 150), "doctor": (60, 150), "scorer": (100, 400), "scorer_fp32": (45, 240),
           "memory_16k": (25, 180), "two_rank": (45, 300), "dynamic_zero3": (60, 600), "train_advanced": (85, 300),
           "train_advanced_fast": (85, 300)}  # fmt: skip
SIZES = {  # GPU sizes / CPU dry-run sizes
    "gpu": {"rows": 128, "max_len": 16384, "short_rows": 32, "short_max": 4096, "long": 16000, "repeats": 1,
            "train_tokens": (1024, 4096), "two_rank_rows": 32},
    "cpu": {"rows": 8, "max_len": 512, "short_rows": 6, "short_max": 256, "long": 2000, "repeats": 1,
            "train_tokens": (32, 96), "two_rank_rows": 8},
}  # fmt: skip


# ------------------------------------------------------------------------------------------ the parts (children)
def part_model(ctx: dict) -> dict:
    from data_selection.tiny_model import QWEN25_3B_SHAPE, build_tiny_qwen

    shape = {"hidden": 64} if ctx["dry_run"] else QWEN25_3B_SHAPE
    dtype = "float32" if ctx["dry_run"] else "bfloat16"
    path = build_tiny_qwen(Path(ctx["work"]) / "model", **shape, dtype=dtype, device=ctx["device"])
    return {"model": str(path), "shape": "tiny (hidden 64)" if ctx["dry_run"] else "Qwen2.5-3B"}


def part_doctor(ctx: dict) -> dict:
    try:
        from llamafactory_ext.doctor import run_checks
    except ImportError as e:
        return {"status": "doctor unavailable", "detail": f"{type(e).__name__}: {e}"}
    rows = run_checks(config_path=None)
    return {"checks": [asdict(r) if is_dataclass(r) else dict(r) for r in rows]}


def _scorer_run(ctx, data: Path, dtype: str, packing: str = "auto", repeats: int | None = None) -> dict | None:
    import score_vs_cal_ppl as base

    reps = ctx["sizes"]["repeats"] if repeats is None else repeats
    return base.run_child("ours", ctx["model"], data, 16384, 0, reps, ctx["device"], dtype, packing)


def part_scorer(ctx: dict) -> dict:
    import score_vs_cal_ppl as base
    from score_mfu import model_flops
    from transformers import AutoConfig

    config, s, work = AutoConfig.from_pretrained(ctx["model"]), ctx["sizes"], Path(ctx["work"])
    out: dict = {}
    lengths = base.long_tail_lengths(s["rows"], 200 if not ctx["dry_run"] else 40, s["max_len"], seed=1)
    base.write_pool(base.make_rows(lengths, seed=1), work / "mix")
    out["mix"] = {"n": len(lengths), "max": max(lengths), "median": statistics.median(lengths)}
    for label, packing in (("packed", "auto"), ("padded", "off")):
        r = _scorer_run(ctx, work / "mix", "bf16", packing)
        if r is None:
            out[label] = {"error": "run failed (see stderr)"}
            continue
        t = statistics.median(r["seconds"]) if r["seconds"] else None
        flops = model_flops(config, r["seq_tokens"], r["response_tokens"])
        out[label] = {"tokens_per_s": r["tokens"] / t if t else None, "tflops_per_s": flops / t / 1e12 if t else None,
                      "mfu": flops / t / 1e12 / ctx["peak"] if t and ctx["peak"] else None,
                      "packing": r.get("packing"), "attn": r.get("attn"), "padding_waste": r.get("padding_waste"),
                      "peak_gpu_gb": r.get("peak_gpu_gb")}  # fmt: skip
    if out.get("packed", {}).get("tokens_per_s") and out.get("padded", {}).get("tokens_per_s"):
        out["packing_speedup"] = out["packed"]["tokens_per_s"] / out["padded"]["tokens_per_s"]
    return out


def part_scorer_fp32(ctx: dict) -> dict:
    import score_vs_cal_ppl as base
    from score_mfu import error_vs_reference

    s, work, out = ctx["sizes"], Path(ctx["work"]), {}
    short = base.long_tail_lengths(s["short_rows"], 200 if not ctx["dry_run"] else 40, s["short_max"], seed=2)
    base.write_pool(base.make_rows(short, seed=2), work / "short")
    bf16 = _scorer_run(ctx, work / "short", "bf16", repeats=0)
    fp32 = _scorer_run(ctx, work / "short", "fp32", repeats=0)
    if not (bf16 and fp32):
        return {"error": f"the {'bf16' if not bf16 else 'fp32'} run failed (see stderr)"}
    out["bf16_vs_fp32"] = {"mix": {"n": len(short), "max": max(short)},
                           **error_vs_reference(bf16["loss_mean"], fp32["loss_mean"])}  # fmt: skip
    return out


def part_memory_16k(ctx: dict) -> dict:
    import score_vs_cal_ppl as base

    n = ctx["sizes"]["long"]
    base.write_pool(base.make_rows([n], seed=3), Path(ctx["work"]) / "long")
    r = _scorer_run(ctx, Path(ctx["work"]) / "long", "bf16", repeats=0)
    if r is None:
        return {"error": "run failed (see stderr)"}
    return {"row_target_tokens": n, "row_tokens": r["seq_tokens"][0], "peak_gpu_gb": r.get("peak_gpu_gb"),
            "peak_rss_gb": r.get("peak_rss_gb")}


def part_train(ctx: dict, recipe: str) -> dict:
    lo, hi = ctx["sizes"]["train_tokens"]
    report = Path(ctx["work"]) / f"train_{recipe}.json"
    cmd = [sys.executable, str(BENCH / "train_mfu.py"), "--recipes", recipe, "--json", str(report),
           "--work", str(Path(ctx["work"]) / f"train_{recipe}"), "--min-tokens", str(lo), "--max-tokens", str(hi)]
    cmd += ["--smoke", "--steps", "1"] if ctx["dry_run"] else ["--steps", "3", "--warmup", "1"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if not report.is_file():
        return {"error": f"train_mfu.py exited {p.returncode}: {failure_text(p.stdout + p.stderr)}"}
    r = json.loads(report.read_text())["recipes"][recipe]
    keep = ("rc", "tokens_per_s", "mfu", "tflops_per_s", "padding_share", "max_allocated_gib", "max_reserved_gib",
            "nvidia_smi_peak_gb", "steps", "step_logs", "error", "wall_s")  # fmt: skip
    return {k: r.get(k) for k in keep if k in r}


def failure_text(output: str, limit: int = 1500) -> str:
    """What a failed command printed that says why: its first Python traceback when it has one (torchrun prints
    its own summary after the rank's traceback, which a plain tail keeps instead), else its last lines."""
    start = output.find("Traceback (most recent call last)")
    return output[start:start + limit] if start >= 0 else output[-limit:]


def part_two_rank(ctx: dict) -> dict:
    import pandas as pd
    import score_vs_cal_ppl as base

    work = Path(ctx["work"])
    lengths = base.long_tail_lengths(ctx["sizes"]["two_rank_rows"], 64, 2048 if not ctx["dry_run"] else 256, seed=4)
    base.write_pool(base.make_rows(lengths, seed=4), work / "ranks")
    args = ["--model", ctx["model"], "--dataset", "pool", "--dataset_dir", str(work / "ranks"), "--template", "qwen",
            "--shard_rows", "4", "--num_proc", "1", "--dtype", "bf16", "--device", "auto"]  # fmt: skip
    # One CPU thread per process in both runs: torchrun sets OMP_NUM_THREADS=1 for 2 ranks only, and a CPU
    # reduction's order (so its last bit) depends on the thread count; GPU kernels do not read it.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    frames = {}
    for ranks in (1, 2):
        out = work / f"scores_{ranks}rank"
        # --standalone: torchrun's store on a free port (the default 29500 may be taken on a shared CI host)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               "-m", "data_selection.cli", "score", *args, "--out", str(out)]  # fmt: skip
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            return {"error": f"{ranks}-rank scoring exited {p.returncode}: {failure_text(p.stdout + p.stderr)}"}
        frames[ranks] = pd.read_parquet(out / "scores.parquet").sort_values("row").reset_index(drop=True)
    one, two = frames[1], frames[2]
    cols = [c for c in one.columns if c.startswith("loss") and one[c].dtype.kind == "f"]
    same_rows = one["row"].tolist() == two["row"].tolist()
    diffs = {c: float((one[c] - two[c]).abs().max()) for c in cols} if same_rows else {}
    equal = same_rows and all(one[c].equals(two[c]) for c in cols)
    result = {"rows": len(one), "columns": cols, "bit_for_bit": equal, "max_abs_diff": diffs}
    if not equal:
        result["error"] = f"2-rank scores differ from 1-rank ones: same rows {same_rows}, max |diff| {diffs}"
    return result


def part_dynamic_zero3(ctx: dict) -> dict:
    """A dynamic_selection run (2 epochs, a stage per epoch, its stage weights kept) under DeepSpeed ZeRO-3 on one GPU,
    then `data-select score` on stage 1's weights: the in-loop scores must equal it. A tiny fp32 model: what is
    checked is the partitioned head and the ranks' forwards, not speed. The CPU dry path runs it without DeepSpeed."""
    import pandas as pd
    import score_vs_cal_ppl as base
    import yaml

    from data_selection.tiny_model import build_tiny_qwen

    work = Path(ctx["work"]) / "dynamic"
    model = build_tiny_qwen(work / "model", hidden=64, dtype="float32", device=ctx["device"])
    base.write_pool(base.make_rows(base.long_tail_lengths(24, 64, 256, seed=5), seed=5), work / "pool")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    def score(weights: Path, out: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "data_selection.cli", "score", "--model", str(weights), "--dataset", "pool",
               "--dataset_dir", str(work / "pool"), "--template", "qwen", "--cutoff_len", "512", "--dtype", "fp32",
               "--num_proc", "1", "--out", str(out)]  # fmt: skip
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)

    if (p := score(model, work / "scores_base")).returncode != 0:
        return {"error": f"base scoring exited {p.returncode}: {failure_text(p.stdout + p.stderr)}"}
    recipe = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
              "dataset": "pool", "dataset_dir": str(work / "pool"), "template": "qwen", "cutoff_len": 512,
              "output_dir": str(work / "out"), "overwrite_output_dir": True, "per_device_train_batch_size": 2,
              "gradient_accumulation_steps": 1, "learning_rate": 1.0e-3, "num_train_epochs": 2,
              "lr_scheduler_type": "cosine", "bf16": False, "report_to": "none", "save_strategy": "no",
              "logging_steps": 1, "preprocessing_num_workers": 1, "seed": 7,
              "dynamic_selection": {"pool": "pool", "scores": str(work / "scores_base"), "strategy": "zpd", "n": 4,
                                    "every": "epoch", "save_stage_checkpoints": True}}  # fmt: skip
    if not ctx["dry_run"]:
        recipe["deepspeed"] = str(ROOT / "ds_configs" / "ds_z3.json")
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    train_env = env if ctx["dry_run"] else dict(env, FORCE_TORCHRUN="1")
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "llamafactory_ext.cli", "train", str(work / "recipe.yaml")], cwd=ROOT,
                       env=train_env, capture_output=True, text=True)
    train_s = time.monotonic() - start
    stage = work / "out" / "selection" / "stage-1"
    if p.returncode != 0 or not (stage / "model").is_dir():
        return {"error": f"the ZeRO-3 dynamic run exited {p.returncode}: {failure_text(p.stdout + p.stderr)}"}
    if (p := score(stage / "model", work / "scores_stage1")).returncode != 0:
        return {"error": f"scoring stage 1's weights exited {p.returncode}: {failure_text(p.stdout + p.stderr)}"}
    ours = pd.read_parquet(stage / "scores.parquet").set_index("id")
    theirs = pd.read_parquet(work / "scores_stage1" / "scores.parquet").set_index("id").loc[ours.index]
    base_losses = pd.read_parquet(work / "scores_base" / "scores.parquet").set_index("id").loc[ours.index]
    delta = float((ours["loss_mean"] - theirs["loss_mean"]).abs().max())
    moved = float((ours["loss_mean"] - base_losses["loss_mean"]).abs().max())
    manifest = json.loads((stage / "manifest.json").read_text())
    result = {"zero3": not ctx["dry_run"], "rows": len(ours), "max_abs_delta_loss_mean": delta,
              "moved_from_base": moved, "stage1_global_step": manifest.get("global_step"),
              "stage1_scoring_s": manifest.get("scoring_seconds"), "train_wall_s": train_s}  # fmt: skip
    if not delta <= 1e-4 or not moved > 1e-3:
        result["error"] = f"in-loop vs offline max |Δ loss_mean| {delta:.2e} (bound 1e-4), moved from base {moved:.2e}"
    return result


PARTS = {"model": part_model, "doctor": part_doctor, "scorer": part_scorer, "scorer_fp32": part_scorer_fp32,
         "memory_16k": part_memory_16k, "two_rank": part_two_rank, "dynamic_zero3": part_dynamic_zero3,
         "train_advanced": lambda c: part_train(c, "advanced"),
         "train_advanced_fast": lambda c: part_train(c, "advanced_fast")}  # fmt: skip


def child(name: str, ctx_path: Path) -> None:
    ctx = json.loads(ctx_path.read_text())
    result = PARTS[name](ctx)
    (Path(ctx["work"]) / f"part_{name}.json").write_text(json.dumps(result, indent=1, default=str))


# ---------------------------------------------------------------------------------------------- the parent
def run_part(name: str, ctx: dict, ctx_path: Path, budget: float, left: float) -> dict:
    """Run one part in a subprocess with ``min(budget, left)`` as its timeout; skip it when ``left`` < ``budget``."""
    if left < budget:
        return {"status": "skipped", "note": f"would overrun: budget {budget:.0f} s, {left:.0f} s left"}
    start = time.monotonic()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--ctx", str(ctx_path)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"killed after its budget of {budget:.0f} s",
                "elapsed_s": time.monotonic() - start}  # fmt: skip
    elapsed = time.monotonic() - start
    result_file = Path(ctx["work"]) / f"part_{name}.json"
    if p.returncode != 0 or not result_file.is_file():
        return {"status": "failed", "elapsed_s": elapsed, "note": (p.stdout + p.stderr)[-2000:]}
    result = json.loads(result_file.read_text())
    if "error" in result:
        return {"status": "failed", "elapsed_s": elapsed, "result": result, "note": str(result["error"])[-2000:]}
    return {"status": "ok", "elapsed_s": elapsed, "result": result}


def environment(dry_run: bool) -> dict:
    import torch
    from gpu_peaks import gpu_peak_tflops

    gpus = 0 if dry_run else torch.cuda.device_count()
    name = torch.cuda.get_device_name(0) if gpus else "cpu"
    return {"device": "cuda" if gpus else "cpu", "gpus": gpus, "gpu_name": name,
            "peak": gpu_peak_tflops(name) if gpus else None, "torch": torch.__version__,
            "torch_cuda": torch.version.cuda}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: every part's logic, no GPU figures")
    ap.add_argument("--out", default="outputs/gpu_check/gpu_check.json", help="the JSON with every figure")
    ap.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for all parts together")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: " + ", ".join(PARTS))
    ap.add_argument("--work", help="scratch folder (default: a new temporary one, removed at the end)")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.part:
        child(args.part, Path(args.ctx))
        return 0
    t0 = time.monotonic()
    deadline = t0 + args.budget
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    env = environment(args.dry_run)
    on_gpu = env["gpus"] > 0
    if not on_gpu and not args.dry_run:
        print("gpu_check: no GPU visible to torch; running the CPU dry path instead (--dry-run)", file=sys.stderr)
    dry = not on_gpu
    ctx = {"work": str(work), "dry_run": dry, "device": env["device"], "peak": env["peak"],
           "sizes": SIZES["cpu" if dry else "gpu"], "model": str(work / "model")}  # fmt: skip
    ctx_path = work / "ctx.json"
    ctx_path.write_text(json.dumps(ctx))
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": dry, "environment": env,
               "budget_s": args.budget, "parts": {}}  # fmt: skip
    wanted = [p for p in args.parts.split(",") if p]
    for name in PARTS:
        if name not in wanted:
            continue
        budget = BUDGETS[name][1 if dry else 0]
        if name == "two_rank" and not dry and env["gpus"] < 2:
            r = {"status": "skipped", "note": f"needs 2 GPUs, {env['gpus']} visible"}
        elif name != "model" and name != "doctor" and results["parts"].get("model", {}).get("status") not in (None, "ok"):
            r = {"status": "skipped", "note": "no model (the model part did not finish)"}
        else:
            r = run_part(name, ctx, ctx_path, budget, deadline - time.monotonic())
        results["parts"][name] = r
        elapsed = f"{r['elapsed_s']:.1f} s" if "elapsed_s" in r else "-"
        print(f"[gpu_check] {name:<20} {r['status']:<8} {elapsed:>8}  (total {time.monotonic() - t0:.0f} s)"
              + (f"\n{r['note']}" if r.get("note") else ""), flush=True)  # fmt: skip
    results["total_s"] = time.monotonic() - t0
    report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out)
    print(f"[gpu_check] {out} ({results['total_s']:.0f} s)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(p["status"] in ("ok", "skipped") for p in results["parts"].values()) else 1


def _f(x, spec: str) -> str:
    return "unmeasured" if x is None else format(x, spec)


def report(results: dict) -> None:
    """The figures, one line each, next to what they stand for."""
    parts = {k: v.get("result", {}) for k, v in results["parts"].items()}
    env = results["environment"]
    tag = " [CPU dry run: not GPU figures]" if results["dry_run"] else ""
    print(f"\n== gpu_check on {env['gpu_name']} (torch {env['torch']}, CUDA {env['torch_cuda']}){tag}")
    for check in parts.get("doctor", {}).get("checks", []):
        print(f"doctor  {check.get('status', ''):<8} {check.get('name', '')}: {check.get('detail', '')}")
    if "status" in parts.get("doctor", {}):
        print(f"doctor  {parts['doctor']['status']}")
    sc = parts.get("scorer", {})
    for label in ("packed", "padded"):
        r = sc.get(label)
        if r and "error" not in r:
            print(f"scorer {label} (long-tail mix, max {sc['mix']['max']}): {_f(r['tokens_per_s'], ',.0f')} tok/s, MFU "
                  f"{_f(r['mfu'], '.1%')}, attn {r['attn']}, peak GPU {_f(r['peak_gpu_gb'], '.1f')} GiB")  # fmt: skip
    if "packing_speedup" in sc:
        print(f"scorer packing speed-up: {sc['packing_speedup']:.2f}x")
    if "bf16_vs_fp32" in parts.get("scorer_fp32", {}):
        e = parts["scorer_fp32"]["bf16_vs_fp32"]
        print(f"scorer bf16 vs fp32: max |Δ loss_mean| {e['max_abs_delta_loss_mean']:.2e}, Spearman {e['spearman']:.5f} "
              "(targets <= 1e-2, >= 0.999)")  # fmt: skip
    m = parts.get("memory_16k", {})
    if "peak_gpu_gb" in m:
        print(f"one {m['row_tokens']}-token row, default options: peak GPU {_f(m['peak_gpu_gb'], '.2f')} GiB "
              f"(peak RSS {_f(m.get('peak_rss_gb'), '.2f')} GB)")
    tr = {k: parts.get(f"train_{k}", {}) for k in ("advanced", "advanced_fast")}
    for k, r in tr.items():
        if r.get("rc") == 0:
            print(f"train {k}: {_f(r.get('tokens_per_s'), ',.0f')} tok/s, MFU {_f(r.get('mfu'), '.1%')}, peak "
                  f"allocated/reserved {_f(r.get('max_allocated_gib'), '.1f')}/{_f(r.get('max_reserved_gib'), '.1f')} "
                  f"GiB, nvidia-smi {_f(r.get('nvidia_smi_peak_gb'), '.1f')} GB")  # fmt: skip
    if all(r.get("tokens_per_s") for r in tr.values()):
        print(f"train advanced_fast vs advanced: {tr['advanced_fast']['tokens_per_s'] / tr['advanced']['tokens_per_s']:.2f}x")
    t = parts.get("two_rank", {})
    if "bit_for_bit" in t:
        print(f"2-rank vs 1-rank scoring ({t['rows']} rows): {'bit for bit' if t['bit_for_bit'] else 'DIFFERENT'}"
              f" (max |diff| {t['max_abs_diff']})")
    d = parts.get("dynamic_zero3", {})
    if "max_abs_delta_loss_mean" in d:
        print(f"dynamic_selection {'under ZeRO-3' if d['zero3'] else 'without DeepSpeed'} ({d['rows']} rows): in-loop vs "
              f"offline max |Δ loss_mean| {d['max_abs_delta_loss_mean']:.2e} (target <= 1e-4), stage 1 scored in "
              f"{_f(d.get('stage1_scoring_s'), '.1f')} s")


if __name__ == "__main__":
    raise SystemExit(main())
