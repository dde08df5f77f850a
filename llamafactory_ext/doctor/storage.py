"""Disk probe: free space where the config writes, against what it will write (an upper bound).

Checkpoints dominate: with ``save_only_model: false`` (LLaMA-Factory's default) every save holds the optimizer
state, 16 bytes per parameter under ZeRO (fp32 master weights, Adam's two moments, bf16 weights) — 49 GB for a
3B model — and ``save_total_limit`` of them are kept per training run, plus the final bf16 model (2 B/param).
A study adds its scores (about 1 KB per pool row, shards included) and subsets (``tokens_per_row`` x 4 bytes
of JSON text per row), from the ``estimate`` section.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from llamafactory_ext.doctor.target import Check, Target, _truthy

STATE_BYTES_PER_PARAM = 16
WEIGHT_BYTES_PER_PARAM = 2
SCORE_BYTES_PER_ROW = 1000
SUBSET_BYTES_PER_TOKEN = 4
GB = 1e9


def count_parameters(model: str) -> int | None:
    """Parameters of ``model`` from its config alone (local folder or the hub cache; never the network)."""
    # lazy: torch/transformers take seconds; only sizing a cached model needs them
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model, local_files_only=True)
        with torch.device("meta"):
            net = AutoModelForCausalLM.from_config(config)
    except Exception:
        return None
    return sum(p.numel() for p in net.parameters())


def kept_checkpoints(recipe: dict) -> tuple[int, str]:
    """(checkpoints on disk at the end of one run, why) from the recipe's save settings (Trainer's defaults:
    save_strategy steps, save_steps 500, num_train_epochs 3); 3 assumed when the count cannot be known."""
    strategy = str(recipe.get("save_strategy", "steps")).lower()
    if strategy == "no":
        return 0, "save_strategy: no"
    saves, why = None, ""
    if strategy == "epoch":
        epochs = math.ceil(float(recipe.get("num_train_epochs", 3.0)))
        saves, why = epochs, f"{epochs} epochs"
    elif strategy == "steps" and int(recipe.get("max_steps") or -1) > 0:
        steps, every = int(recipe["max_steps"]), float(recipe.get("save_steps", 500))
        every = every * steps if every < 1 else every  # a fraction < 1 is a ratio of the total steps
        saves, why = math.ceil(steps / every), f"max_steps {steps} / save_steps {recipe.get('save_steps', 500)}"
    limit = int(recipe.get("save_total_limit") or 0)
    if limit and (saves is None or limit < saves):
        return limit, "save_total_limit"
    if saves is None:
        return 3, "no save_total_limit: assumed"
    return saves, why


def planned_bytes(t: Target, params: int | None) -> tuple[float, list[str]]:
    """(bytes, what they are) the config will write."""
    parts: list[tuple[str, float]] = []
    if params:
        states = not _truthy(t.recipe.get("save_only_model"))
        per_save = params * (STATE_BYTES_PER_PARAM if states else WEIGHT_BYTES_PER_PARAM)
        kept, why = kept_checkpoints(t.recipe)
        per_run = kept * per_save + params * WEIGHT_BYTES_PER_PARAM
        saves = (f"{kept} checkpoints ({why}) x {per_save / GB:.1f} GB{' with optimizer state' if states else ''}"
                 if kept else f"no checkpoints ({why})")
        parts.append((f"{t.train_runs} training run(s) x ({saves} + final model)", t.train_runs * per_run))
    est = t.study.estimate if t.study is not None else {}
    if est.get("pool_rows"):
        parts.append((f"scores of {est['pool_rows']:,} rows", est["pool_rows"] * SCORE_BYTES_PER_ROW))
        if est.get("tokens_per_row") and t.study is not None:
            n = len(t.study.trained_arms) * len(t.study.seeds)
            parts.append((f"{n} subsets of {t.study.subset_size:,} rows",
                          n * t.study.subset_size * est["tokens_per_row"] * SUBSET_BYTES_PER_TOKEN))
    return sum(b for _, b in parts), [f"{what}: {b / GB:,.1f} GB" for what, b in parts]


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(t: Target) -> Check:
    if t.kind is None:
        return Check("free disk", "skip", "no recipe or study given: nothing to size")
    where = _existing(Path(t.out or "."))
    free = shutil.disk_usage(where).free
    params = count_parameters(t.model) if t.model else None
    need, parts = planned_bytes(t, params)
    unknown = "" if params or not t.model else f"; {t.model}'s config is not cached: checkpoints not sized"
    planned = f"will write up to {need / GB:,.1f} GB ({'; '.join(parts)})" if parts else "nothing sized"
    detail = f"{free / GB:,.1f} GB free at {where}; {planned}{unknown}"
    if need > free:
        return Check("free disk", "blocker", detail, "free space, point out/output_dir at a larger disk, lower "
                     "save_total_limit, or set save_only_model: true (no optimizer state: no exact resume)")
    if need > 0.8 * free or unknown:
        return Check("free disk", "warn", detail, "keep 20% headroom" if not unknown else
                     "download the model first (hf download MODEL) to size its checkpoints")
    return Check("free disk", "ok", detail)


PROBES = (check_disk,)
