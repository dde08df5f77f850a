"""A registered tiny pool, its base scores from the real scorer on the tiny model, and a dynamic recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO_ROOT, SYSTEM, make_acereason_rows, write_jsonl

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
CUTOFF = 128


def make_pool(root: Path, n_rows: int = 24) -> Path:
    """root/pool.jsonl registered as ``tiny_pool`` in root/dataset_info.json; returns root."""
    write_jsonl(make_acereason_rows(n_rows), root / "pool.jsonl")
    info = {"tiny_pool": {"file_name": "pool.jsonl", "columns": {"prompt": "input", "response": "output"}}}
    (root / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return root


def score(model: Path | str, root: Path, out: Path) -> Path:
    """``data-select score`` of the tiny pool with ``model`` (fp32, the recipe's template and cutoff): its engine,
    called with the options the command line would build."""
    from data_selection.scoring.runner import ScoreOptions, run_score

    run_score(ScoreOptions(model=str(model), dataset="tiny_pool", dataset_dir=str(root), template="qwen",
                           cutoff_len=CUTOFF, num_proc=1, dtype="fp32", system_prompt=SYSTEM, out=str(out)))
    return out


def recipe(model: Path | str, root: Path, out: Path, **dynamic) -> dict:
    return {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "tiny_pool", "dataset_dir": str(root), "template": "qwen", "cutoff_len": CUTOFF,
        "output_dir": str(out), "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3, "num_train_epochs": 3, "lr_scheduler_type": "cosine", "warmup_ratio": 0.0,
        "bf16": False, "report_to": "none", "logging_steps": 1, "save_strategy": "no", "seed": 7,
        "preprocessing_num_workers": 1, "dataloader_num_workers": 0, "overwrite_output_dir": True,
        "dynamic_selection": {"pool": "tiny_pool", "scores": str(root / "scores" / "base"), "strategy": "zpd",
                              "n": 4, "every": "epoch", **dynamic},
    }


def train(root: Path, args: dict, name: str = "recipe.yaml", *overrides: str, env: dict | None = None
          ) -> subprocess.CompletedProcess:
    """``llamafactory-ext train`` of ``args`` written as root/NAME (``env``: extra variables, e.g. torchrun's)."""
    import yaml

    path = root / name
    path.write_text(yaml.safe_dump(args), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "llamafactory_ext.cli", "train", str(path), *overrides],
                          cwd=root, env={**ENV, **(env or {})}, capture_output=True, text=True, check=False,
                          timeout=900)
    return proc


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The process, after asserting it succeeded (its output's tail in the message otherwise)."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def stage_of(out: Path, k: int) -> dict:
    """Stage k's manifest merged with its subset ids, as the trainer wrote them under OUTPUT_DIR/selection."""
    d = out / "selection" / f"stage-{k}"
    return {**json.loads((d / "manifest.json").read_text()), **json.loads((d / "subset_ids.json").read_text())}


def trainer_log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
