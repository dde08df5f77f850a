"""Training throughput, MFU and peak GPU memory of the recipes, with the real launchers on a 3B-shaped model.

For each recipe, ``llamafactory-cli train`` (advanced, dft) or ``llamafactory-ext train`` (advanced_fast,
dft_lean) runs the recipe as written -- DeepSpeed ZeRO-3, its batch sizes, its kernels -- with only the model
(a random-initialised Qwen2.5-3B shape, bf16), the data (rows of ``--min-tokens``..``--max-tokens`` tokens,
uniform), the output folder and ``max_steps = warmup + steps`` overridden. Every recipe sees the same rows in
the same order (same seed), so tokens/s ratios are epoch wall-time ratios. ``bench/train_probe.py`` records,
inside the trainer, each optimizer step's end time and the real length of every row it trained on.

Printed per recipe, over the steps after ``--warmup``:

* tokens/s of real (non-padding) tokens, and the share of computed positions that were padding;
* MFU exactly as issue 14 defines it (bench/train_flops.py): 6·N per token (N = every matmul parameter, the
  lm_head included) + 6·layers·n·d per token of a length-n row (causal attention), no recomputation, over
  wall time and the GPU's dense bf16 peak (``--peak-tflops`` or looked up by name);
* peak GPU memory: torch's max allocated / reserved on rank 0 and nvidia-smi's peak (what the issue reported);
* the loss and gradient norm of every step: recipes with the same science (advanced / advanced_fast) must
  agree up to bf16 rounding (dft / dft_lean likewise).

GPU: FORCE_TORCHRUN=1 python bench/train_mfu.py [--recipes advanced advanced_fast dft dft_lean]
     [--steps 3 --warmup 1] [--gpus 1] [--json out.json]   (estimated 3-4 min per recipe on one H200)
CPU smoke run (tiny model, 2 steps, no DeepSpeed / Liger; its numbers are not GPU figures):
     python bench/train_mfu.py --smoke --recipes advanced advanced_fast
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
from gpu_peaks import gpu_peak_tflops  # noqa: E402
from train_flops import mfu, training_flops, uniform_lengths  # noqa: E402

from data_selection.jsonl import read_jsonl  # noqa: E402
from data_selection.tiny_model import QWEN25_3B_SHAPE, build_tiny_qwen  # noqa: E402

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# name -> (recipe, launcher, extra overrides); the first four are the issue's, the last two attribute the gain
VARIANTS = {
    "advanced": ("advanced.yaml", "llamafactory-cli", []),
    "advanced_fast": ("advanced_fast.yaml", "llamafactory-ext", []),
    "dft": ("dft.yaml", "llamafactory-cli", []),
    "dft_lean": ("dft_lean.yaml", "llamafactory-ext", []),
    "advanced_fast_no_liger": ("advanced_fast.yaml", "llamafactory-ext", ["enable_liger_kernel=false"]),
    "advanced_liger": ("advanced.yaml", "llamafactory-cli", ["enable_liger_kernel=true"]),
}
DEFAULT = ["advanced", "advanced_fast", "dft", "dft_lean"]
SMOKE = ["use_cpu=true", "bf16=false", "deepspeed=null", "enable_liger_kernel=false", "cutoff_len=256",
         "preprocessing_num_workers=1", "dataloader_num_workers=0"]  # fmt: skip


def make_rows(lengths: list[int], tokenizer, seed: int = 0) -> list[dict]:
    """Alpaca rows whose responses are about ``n`` Qwen tokens long: windows of one random token stream."""
    rng = random.Random(seed)
    words = ("we", "need", "the", "sum", "of", "so", "x", "=", "wait", "check", "therefore", "12", "7", "+", "\\frac",
             "{1}{2}", "then", "because", "let", "answer", "step", "is", "3", "squared", "root", "and")  # fmt: skip
    stream = tokenizer(" ".join(rng.choice(words) for _ in range(30000)))["input_ids"]
    rows = []
    for i, n in enumerate(lengths):
        n = max(8, n - 60)  # the template, system prompt and question take ~60 tokens
        start = rng.randrange(0, max(1, len(stream) - n))
        body = tokenizer.decode((stream * (1 + n // len(stream)))[start : start + n])
        rows.append({"instruction": f"Problem {i}: compute {rng.randint(1, 999)} + {rng.randint(1, 999)}.",
                     "input": "", "output": body + "\n\\boxed{1}", "system": SYSTEM})  # fmt: skip
    return rows


def write_dataset(rows: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "bench.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    columns = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    info = {"bench": {"file_name": "bench.jsonl", "formatting": "alpaca", "columns": columns}}
    (folder / "dataset_info.json").write_text(json.dumps(info))


class GpuMemoryPoller:
    """Peak of nvidia-smi's memory.used over all GPUs while a run lasts (what the issue's 121.5 GB was)."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak_mib, self._stop = interval, None, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
                used = max(int(x) for x in out.split())
                self.peak_mib = max(self.peak_mib or 0, used)
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def summarise(probe_files: list[Path], warmup: int) -> dict:
    """Steps after ``warmup``: wall time (rank 0's clock), rows and positions of every rank."""
    per_rank = []
    for path in probe_files:
        records = read_jsonl(path)
        per_rank.append({r["step"]: r for r in records if r["event"] == "step"})
    steps = sorted(per_rank[0])
    if len(steps) <= warmup:
        raise RuntimeError(f"only {len(steps)} optimizer steps recorded; need more than --warmup {warmup}")
    t0, t1 = per_rank[0][steps[warmup - 1]]["t"] if warmup else None, per_rank[0][steps[-1]]["t"]
    if t0 is None:
        begin = [r for r in read_jsonl(probe_files[0]) if r.get("event") == "begin"]
        t0 = begin[0]["t"]
    measured = steps[warmup:]
    rows = [n for rank in per_rank for s in measured for n in rank[s]["rows"]]
    positions = sum(rank[s]["positions"] for rank in per_rank for s in measured)
    last = per_rank[0][steps[-1]]
    return {"seconds": t1 - t0, "steps": len(measured), "rows": rows, "tokens": sum(rows), "positions": positions,
            "max_allocated_gib": last.get("max_allocated_gib"), "max_reserved_gib": last.get("max_reserved_gib")}  # fmt: skip


def step_logs(out_dir: Path) -> list[dict]:
    """Loss and grad norm per optimizer step (trainer_state.json's log history, else trainer_log.jsonl)."""
    state = out_dir / "trainer_state.json"
    if state.is_file():
        history = json.loads(state.read_text()).get("log_history", [])
        return [{"step": h["step"], "loss": h["loss"], "grad_norm": h.get("grad_norm")} for h in history
                if "loss" in h]  # fmt: skip
    log = out_dir / "trainer_log.jsonl"
    if not log.is_file():
        return []
    lines = read_jsonl(log)
    return [{"step": x["current_steps"], "loss": x["loss"], "grad_norm": None} for x in lines if "loss" in x]


def run_variant(name: str, args, model_dir: Path, data_dir: Path, work: Path, accumulation_divisor: int) -> dict:
    recipe, launcher, extra = VARIANTS[name]
    import yaml

    recipe_args = yaml.safe_load((ROOT / "yaml_recipes" / recipe).read_text())
    out_dir = work / f"out_{name}"
    probe = work / f"probe_{name}"
    overrides = [f"model_name_or_path={model_dir}", f"dataset_dir={data_dir}", "dataset=bench",
                 f"output_dir={out_dir}", f"max_steps={args.warmup + args.steps}", "logging_steps=1",
                 "save_strategy='no'", "overwrite_cache=true", "report_to=none", "plot_loss=false",
                 f"gradient_accumulation_steps={recipe_args['gradient_accumulation_steps'] // accumulation_divisor}",
                 *extra, *(SMOKE if args.smoke else [])]  # fmt: skip
    site = work / "site"
    env = {**os.environ, "TRAIN_MFU_PROBE": str(probe), "TRAIN_MFU_SKIP_SAVE": "0" if args.keep_save else "1",
           "PYTHONPATH": os.pathsep.join([str(site), str(BENCH), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    if not args.smoke:
        env.setdefault("FORCE_TORCHRUN", "1")
        env["NPROC_PER_NODE"] = str(args.gpus)
    else:
        env.pop("FORCE_TORCHRUN", None)
    # `python -m` works where the package is on PYTHONPATH but not installed (the GPU images); llamafactory-cli
    # starts `torchrun` from PATH, so this interpreter's folder goes first
    module = "llamafactory.cli" if launcher == "llamafactory-cli" else "llamafactory_ext.cli"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    cmd = [sys.executable, "-m", module, "train", str(ROOT / "yaml_recipes" / recipe), *overrides]
    print(f"[{name}] {launcher} train yaml_recipes/{recipe} {' '.join(extra)}", flush=True)
    start = time.time()
    with GpuMemoryPoller() as poller:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    result = {"recipe": recipe, "launcher": launcher, "overrides": extra, "rc": proc.returncode,
              "wall_s": time.time() - start, "nvidia_smi_peak_gb": poller.peak_mib * 2**20 / 1e9 if poller.peak_mib else None}  # fmt: skip
    (work / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        result["error"] = "out of memory" if "out of memory" in tail.lower() else tail
        return result
    files = sorted(work.glob(f"probe_{name}.rank*.jsonl"))
    result.update(summarise(files, args.warmup))
    result["step_logs"] = step_logs(out_dir)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=DEFAULT, choices=sorted(VARIANTS))
    ap.add_argument("--steps", type=int, help="measured optimizer steps (default 3; 1 with --smoke)")
    ap.add_argument("--warmup", type=int, default=1, help="optimizer steps run first and not measured")
    ap.add_argument("--min-tokens", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--gpus", type=int, default=1, help="NPROC_PER_NODE; accumulation is divided to keep 16")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of one GPU (default: by GPU name)")
    ap.add_argument("--smoke", action="store_true", help="CPU: tiny model, short rows, no DeepSpeed / Liger")
    ap.add_argument("--keep-save", action="store_true", help="let the final save_model run (not timed anyway)")
    ap.add_argument("--work", help="working folder (default: a new temporary one)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    args.steps = args.steps or (1 if args.smoke else 3)

    import torch
    from transformers import AutoConfig, AutoTokenizer

    work = Path(args.work or tempfile.mkdtemp(prefix="train_mfu_"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "site").mkdir(exist_ok=True)
    (work / "site" / "sitecustomize.py").write_text("import train_probe\n\ntrain_probe.activate()\n")
    on_gpu = torch.cuda.is_available() and not args.smoke
    device_name = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    peak = args.peak_tflops or (gpu_peak_tflops(device_name) if on_gpu else None)
    if args.smoke:
        lo, hi = 32, 96
        model_dir = build_tiny_qwen(work / "model")
    else:
        lo, hi = args.min_tokens, args.max_tokens
        model_dir = build_tiny_qwen(work / "model", **QWEN25_3B_SHAPE, dtype="bfloat16",
                                    device="cuda" if on_gpu else "cpu")  # fmt: skip
    config = AutoConfig.from_pretrained(model_dir)
    n_rows = (args.warmup + args.steps) * 16
    lengths = uniform_lengths(n_rows, lo, hi, seed=1)
    write_dataset(make_rows(lengths, AutoTokenizer.from_pretrained(model_dir)), work / "data")
    divisor = args.gpus if not args.smoke else 1
    results = {"device": device_name, "peak_tflops": peak, "smoke": args.smoke, "rows": n_rows,
               "row_tokens": [lo, hi], "steps": args.steps, "warmup": args.warmup, "gpus": args.gpus,
               "work": str(work), "recipes": {}}  # fmt: skip
    for name in args.recipes:
        r = run_variant(name, args, model_dir, work / "data", work, divisor)
        if "rows" in r:
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            r["padding_share"] = 1 - r["tokens"] / r["positions"] if r["positions"] else None
            r["tflops_per_s"] = training_flops(config, r["rows"]) / r["seconds"] / 1e12
            r["mfu"] = mfu(config, r["rows"], r["seconds"], peak * args.gpus if peak else None)
            r["row_lengths"] = r.pop("rows")
        results["recipes"][name] = r
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r["rc"] == 0 for r in results["recipes"].values()) else 1


def _fmt(x, spec: str, missing: str = "n/a") -> str:
    return format(x, spec) if x is not None else missing


def report(results: dict) -> None:
    gpu = not results["smoke"] and results["device"] != "cpu"
    label = "" if gpu else " (CPU smoke run: not GPU figures; every GPU figure stays unmeasured)"
    print(f"\n{results['device']}, {results['rows']} rows of {results['row_tokens'][0]}-{results['row_tokens'][1]} "
          f"tokens, {results['steps']} measured steps after {results['warmup']}{label}")  # fmt: skip
    print("| recipe | launcher | tokens/s | MFU | TFLOP/s | padding | peak alloc / reserved GiB | nvidia-smi GB | "
          "losses |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results["recipes"].items():
        if r["rc"] != 0:
            print(f"| {name} | {r['launcher']} | failed: {r['error'][:80]!r} | | | | | | |")
            continue
        losses = ", ".join(f"{x['loss']:.4f}" for x in r["step_logs"])
        mfu_cell = _fmt(r["mfu"], ".1%", "unmeasured" if not gpu else "n/a (--peak-tflops)")
        print(f"| {name} | {r['launcher']} | {r['tokens_per_s']:,.0f} | {mfu_cell} | {r['tflops_per_s']:.1f} | "
              f"{_fmt(r['padding_share'], '.1%')} | {_fmt(r['max_allocated_gib'], '.1f')} / "
              f"{_fmt(r['max_reserved_gib'], '.1f')} | {_fmt(r['nvidia_smi_peak_gb'], '.1f')} | {losses} |")  # fmt: skip
    recipes = results["recipes"]
    for fast, base in (("advanced_fast", "advanced"), ("dft_lean", "dft")):
        a, b = recipes.get(fast), recipes.get(base)
        if a and b and a["rc"] == 0 and b["rc"] == 0:
            speed = a["tokens_per_s"] / b["tokens_per_s"]
            diffs = [abs(x["loss"] - y["loss"]) / max(abs(y["loss"]), 1e-12)
                     for x, y in zip(a["step_logs"], b["step_logs"])]  # fmt: skip
            print(f"{fast} vs {base}: {speed:.2f}x tokens/s (epoch wall time x{1 / speed:.2f}); step losses "
                  f"max relative difference {max(diffs, default=float('nan')):.1e}")  # fmt: skip
    if gpu:
        fast = recipes.get("advanced_fast")
        if fast and fast["rc"] == 0:
            ok = fast["mfu"] is not None and fast["mfu"] >= 0.35
            print(f"target: advanced_fast >= 35% MFU and faster than advanced -> MFU {_fmt(fast['mfu'], '.1%')} "
                  f"({'met' if ok else 'NOT met'})")  # fmt: skip
        for name, r in recipes.items():
            if r["rc"] == 0 and r.get("max_reserved_gib") is not None:
                print(f"{name}: peak reserved {r['max_reserved_gib']:.1f} GiB "
                      f"({'below' if r['max_reserved_gib'] < 78 else 'ABOVE'} 78 GiB, one 80 GB GPU)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
