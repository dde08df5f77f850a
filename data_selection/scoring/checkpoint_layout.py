"""The folder ``data-select score-checkpoints --out scores/NAME_temp`` writes, and its loader for ``select``.

::

    scores/NAME_temp/
      gaussian/      L^(100) of every scored row at each Gaussian checkpoint (difficulty)
      directional/   L^(100) and L^(1000) of the rows that survive the difficulty filter at each directional
                     checkpoint (diversity)

Each kind's folder is laid out like a ``score`` folder (:mod:`data_selection.scoring.layout`): ``meta.json``,
``shards/ckpt-03/shard-000042.parquet``, ``progress.jsonl``, and once every shard of every checkpoint exists,
``scores.parquet`` (one row per scored pool row: ``id``, ``row``, ``n_prompt_tokens``, ``n_response_tokens``,
``n_scored_tokens`` and one column per checkpoint and feature, e.g. ``gaussian_3_loss_first_100``) and
``rejects.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from data_selection.command_line import UserError
from data_selection.jsonl import read_jsonl
from data_selection.shards.layout import read_meta

KINDS = ("gaussian", "directional")
PREFIX = {"gaussian": 100, "directional": 1000}  # response tokens scored per row
FEATURES = {"gaussian": (100,), "directional": (100, 1000)}  # L^(K) kept per checkpoint


def feature_column(kind: str, checkpoint: int, k: int) -> str:
    return f"{kind}_{checkpoint}_loss_first_{k}"


def kind_dir(out: str | Path, kind: str) -> Path:
    return Path(out) / kind


def scores_signature(meta: dict[str, Any]) -> dict[str, Any]:
    """What a base scores folder must share with checkpoint scores built on it: pool content and encoding."""
    pool, model = meta.get("pool", {}), meta.get("model", {})
    return {"pool_fingerprint": pool.get("fingerprint"), "system_prompt": pool.get("system_prompt"),
            "template": meta.get("template"), "cutoff_len": meta.get("cutoff_len"),
            "model": model.get("name_or_path"), "weights_digest": model.get("weights_digest")}


@dataclass
class TempScores:
    """Both kinds' merged tables (pandas), their meta.json and the rows their scorers rejected."""

    folder: str
    gaussian: Any
    directional: Any
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, set[int]] = field(default_factory=dict)

    def num_checkpoints(self, kind: str) -> int:
        return int(self.meta[kind]["num_checkpoints"])


def read_kind(folder: str | Path, kind: str, hint: str = "") -> tuple[Any, dict[str, Any], set[int]]:
    """(table, meta, rejected rows) of one kind's finished folder, or a UserError saying what to run."""

    d = kind_dir(folder, kind)
    meta_path, table_path = d / "meta.json", d / "scores.parquet"
    if not meta_path.exists() or not table_path.exists():
        state = "unfinished" if meta_path.exists() else "missing"
        raise UserError(f"{d}: {kind} checkpoint scores are {state} (no {table_path.name}). Run "
                        f"`data-select score-checkpoints --perturb perturb/<{kind} perturbation> --scores ... "
                        f"--out {folder}`{hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        table = pd.read_parquet(table_path)
    except Exception as err:
        raise UserError(f"{d}: cannot read its meta.json/scores.parquet ({type(err).__name__}: {err})") from err
    rejected: set[int] = set()
    rej = d / "rejects.jsonl"
    if rej.exists():
        rejected = {r["row"] for r in read_jsonl(rej)}
    return table, meta, rejected


def load_temp_scores(folder: str | Path, scores_dir: str | Path | None = None) -> TempScores:
    """Load ``scores/NAME_temp``; with ``scores_dir``, refuse checkpoint scores of another pool or encoding."""
    if not folder:
        raise UserError("--strategy temp needs --temp-scores: the folder `data-select score-checkpoints --out` "
                        "wrote (scores/NAME_temp)")
    if not Path(folder).is_dir():
        raise UserError(f"--temp-scores {folder}: no such folder")
    temp = TempScores(folder=str(folder), gaussian=None, directional=None)
    for kind in KINDS:
        hint = " (after the gaussian one: it scores the rows that survive the difficulty filter)" \
            if kind == "directional" else ""
        table, meta, rejected = read_kind(folder, kind, hint)
        setattr(temp, kind, table)
        temp.meta[kind] = meta
        temp.rejected[kind] = rejected
    if scores_dir is not None:
        base = scores_signature(read_meta(Path(scores_dir)))
        for kind in KINDS:
            theirs = temp.meta[kind].get("scores_signature", {})
            diff = {k: (base.get(k), theirs.get(k)) for k in base if base.get(k) != theirs.get(k)}
            if diff:
                lines = "; ".join(f"{k}: {a!r} (--scores) vs {b!r}" for k, (a, b) in diff.items())
                raise UserError(f"--temp-scores {kind_dir(folder, kind)} was not scored on --scores {scores_dir}'s "
                                f"pool and encoding ({lines}); score the checkpoints with --scores {scores_dir}")
    return temp
