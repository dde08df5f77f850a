"""Merge a scoring run's shards into ``scores.parquet`` and ``rejects.jsonl`` (idempotent, locked, atomic).

``scores.parquet`` holds one row per scored input row, sorted by source row, and never a NaN or inf: a row whose
losses are not finite (or that the template could not render) goes to ``rejects.jsonl`` with its reason,
together with the rows rejected while reading the pool.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_parquet_atomic
from data_selection.jsonl import read_jsonl
from data_selection.scores_table import SCORE_COLUMNS, STAT_COLUMNS
from data_selection.scoring.layout import SCORES
from data_selection.shards.layout import CONVERSION_REJECTS, META, REJECTS
from data_selection.shards.merge import finished_shard_frames, merge_lock
from data_selection.shards.progress import read_progress


def merge_shards(out: str | os.PathLike) -> dict[str, Any]:
    out = Path(out)
    with merge_lock(out):
        meta, frames = finished_shard_frames(out, "data-select score")
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS + ["reject_reason"])
        if "reject_reason" not in df:
            df["reject_reason"] = ""
        df["reject_reason"] = df["reject_reason"].fillna("")
        loss_cols = ["loss_sum", "loss_mean", "loss_first_100", "loss_first_1000"]
        for c in loss_cols:
            if c not in df:
                df[c] = float("nan")
        bad = (df["reject_reason"] == "") & ~df[loss_cols].apply(lambda s: s.map(_finite)).all(axis=1)
        df.loc[bad, "reject_reason"] = "non-finite loss"
        ok = df[df["reject_reason"] == ""].sort_values("row", kind="stable")
        rej = df[df["reject_reason"] != ""]
        cols = SCORE_COLUMNS + _stat_columns(ok) + [c for c in meta.get("meta_columns", []) if c in ok] + (
            ["token_losses"] if "token_losses" in ok else [])
        scores = ok[cols].reset_index(drop=True)
        for c in ("row", "n_prompt_tokens", "n_response_tokens", "n_tokens_full"):
            scores[c] = scores[c].astype("int64")
        scores["truncated"] = scores["truncated"].astype(bool)
        write_parquet_atomic(out / SCORES, scores)

        rejects = []
        conv = out / CONVERSION_REJECTS
        if conv.exists():
            rejects += read_jsonl(conv)
        rejects += [{"row": int(r.row), "id": r.id, "reason": r.reject_reason} for r in rej.itertuples()]
        rejects.sort(key=lambda r: r["row"])
        write_jsonl_atomic(out / REJECTS, rejects)

        counts = {
            "rows": int(meta["pool"]["num_rows"]),
            "scored": int(len(scores)),
            "rejected": len(rejects),
            "truncated": int(scores["truncated"].sum()),
            "response_tokens": int(scores["n_response_tokens"].sum()),
        }
        lines = read_progress(out)
        if lines:
            secs = sum(x["seconds"] for x in lines)
            toks = sum(x["tokens"] for x in lines)
            counts["gpu_seconds"] = round(secs, 2)
            counts["tokens_per_s_per_rank"] = round(toks / secs, 1) if secs else None
        meta["counts"] = counts
        write_json_atomic(out / META, meta)
    return {"counts": counts}


def _stat_columns(ok: pd.DataFrame) -> list[str]:
    """The rank/Brier columns every scored row has. Shards written before the columns existed (``data-select merge``
    of an old folder) give a table without them: a key missing for some rows would select from the others
    silently; without the columns, ``--key rsr`` says to re-score."""
    return [c for c in STAT_COLUMNS if c in ok and bool(ok[c].map(_finite).all())]


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
