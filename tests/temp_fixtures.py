"""Hand-built TEMP checkpoint scores (no model): tables shaped like ``score-checkpoints`` output.

``synthetic_temp(scores)`` gives Gaussian L^(100) for every row, growing with the checkpoint so that one
checkpoint's pool-mean ratio lands in [2, 3], and directional L^(100)/L^(1000) for every row (as
``--rows all`` scores them), with per-source trends. ``write_temp_dir`` lays them out on disk as
``scores/NAME_temp/{gaussian,directional}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from data_selection.scoring.checkpoint_layout import TempScores, feature_column, scores_signature

GROWTH = (0.0, 0.25, 0.6, 1.0, 1.3, 1.55, 2.2, 3.0)  # mean ratio - 1 per Gaussian checkpoint: 1.0 … 4.0


def synthetic_temp(scores: pd.DataFrame, num: int = 8, seed: int = 0, growth=GROWTH, folder: str = "mem",
                   signature: dict | None = None) -> TempScores:
    rng = np.random.default_rng(seed)
    n = len(scores)
    base = scores["loss_first_100"].to_numpy(np.float64)
    gauss = {"id": scores["id"].astype(str).to_numpy(), "row": scores["row"].to_numpy(np.int64)}
    hard = rng.uniform(0.5, 1.5, n)  # how fast a row's loss grows with noise
    for j in range(1, num + 1):
        g = growth[j - 1] if j <= len(growth) else growth[-1]
        gauss[feature_column("gaussian", j, 100)] = base * (1.0 + g * hard / hard.mean())
    direc = {"id": gauss["id"], "row": gauss["row"]}
    slope = rng.gamma(2.0, 0.05, n) * np.where(rng.random(n) < 0.8, 1.0, -0.5)
    for j in range(1, num + 1):
        direc[feature_column("directional", j, 100)] = base * (1.0 + slope * j) + rng.normal(0, 0.01, n)
        direc[feature_column("directional", j, 1000)] = (scores["loss_mean"].to_numpy(np.float64) * (1.0 + slope * j)
                                                         + rng.normal(0, 0.01, n))
    sig = signature or {}
    meta = {k: {"kind": k, "num_checkpoints": num, "scores_signature": sig, "command": f"data-select score-checkpoints "
                f"--perturb perturb/{k} --scores S --out {folder}", "perturb": {"command": f"data-select perturb --kind {k}"},
                "rows": {"mode": "all", "count": n}} for k in ("gaussian", "directional")}
    return TempScores(folder=folder, gaussian=pd.DataFrame(gauss), directional=pd.DataFrame(direc), meta=meta,
                      rejected={"gaussian": set(), "directional": set()})


def write_temp_dir(out: Path, temp: TempScores, scores_dir: Path | None = None) -> Path:
    """Write ``temp`` as a finished ``score-checkpoints`` folder (signature taken from ``scores_dir``)."""
    sig = scores_signature(json.loads((scores_dir / "meta.json").read_text())) if scores_dir else {}
    for kind in ("gaussian", "directional"):
        d = Path(out) / kind
        d.mkdir(parents=True, exist_ok=True)
        getattr(temp, kind).to_parquet(d / "scores.parquet", index=False)
        meta = {**temp.meta[kind], "scores_signature": sig}
        meta["command"] = meta["command"].replace(" mem", f" {out}")
        (d / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        (d / "rejects.jsonl").write_text("", encoding="utf-8")
    return Path(out)
