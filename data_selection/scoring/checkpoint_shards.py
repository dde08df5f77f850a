"""Work units of ``data-select score-checkpoints``: (checkpoint, shard) files and the final merge (the plan and
the run are the sharded-run engine's, :mod:`data_selection.shards`).

``shards/ckpt-03/shard-000042.parquet`` written atomically is finished work; once every shard of every
checkpoint exists, :func:`merge_checkpoint_shards` writes ``scores.parquet`` (one row per scored pool row, one
column per checkpoint and feature) and ``rejects.jsonl`` (:mod:`data_selection.scoring.checkpoint_layout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_parquet_atomic
from data_selection.command_line import UserError
from data_selection.scoring.checkpoint_layout import feature_column
from data_selection.scoring.layout import SCORES
from data_selection.shards.layout import META, REJECTS, missing_units, pass_shard_path, read_meta
from data_selection.shards.merge import merge_lock
from data_selection.shards.progress import read_progress


def shard_file(out: Path, checkpoint: int, k: int) -> Path:
    return pass_shard_path(out, checkpoint, k)


def shard_frame(records: list[dict], features: tuple[int, ...]):
    df = pd.DataFrame.from_records(records)
    for f in features:
        if f"loss_first_{f}" not in df:
            df[f"loss_first_{f}"] = float("nan")
    df["reject_reason"] = df["reject_reason"].fillna("")
    return df


def merge_checkpoint_shards(out: str | Path) -> dict[str, Any]:
    """One table, one row per scored row and one column per checkpoint and feature; rejects; counts."""
    out = Path(out)
    meta = read_meta(out)
    kind, num, nshards = meta["kind"], int(meta["num_checkpoints"]), int(meta["num_shards"])
    left = missing_units(out, nshards, num)
    if left:
        raise UserError(f"{out}: {len(left)} (checkpoint, shard) units are not finished (first: checkpoint "
                        f"{left[0][0]}, shard {left[0][1]}); re-run the same score-checkpoints command")
    with merge_lock(out):
        wide = None
        reasons: dict[int, str] = {}
        for j in range(1, num + 1):
            frames = [pd.read_parquet(shard_file(out, j, k)) for k in range(nshards)]
            df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
                columns=["id", "row", "n_prompt_tokens", "n_response_tokens", "n_scored_tokens", "reject_reason"])
            for f in meta["features"]:
                col = f"loss_first_{f}"
                if col not in df:
                    df[col] = np.nan
                bad = (df["reject_reason"] == "") & ~np.isfinite(df[col].to_numpy(np.float64))
                df.loc[bad, "reject_reason"] = "non-finite loss"
            for r in df.loc[df["reject_reason"] != "", ["row", "reject_reason"]].itertuples(index=False):
                reasons.setdefault(int(r.row), f"checkpoint {j}: {r.reject_reason}")
            cols = {f"loss_first_{f}": feature_column(kind, j, f) for f in meta["features"]}
            part = df[["row", *cols]].rename(columns=cols)
            if wide is None:
                wide = df[["id", "row", "n_prompt_tokens", "n_response_tokens", "n_scored_tokens"]].merge(part, on="row")
            else:
                wide = wide.merge(part, on="row", how="outer")
        ok = ~wide["row"].isin(list(reasons))
        rejects = wide.loc[~ok, ["row", "id"]]
        table = wide.loc[ok].sort_values("row", kind="stable").reset_index(drop=True)
        for c in ("row", "n_prompt_tokens", "n_response_tokens", "n_scored_tokens"):
            table[c] = table[c].astype("int64")
        write_parquet_atomic(out / SCORES, table)
        write_jsonl_atomic(out / REJECTS, sorted(({"row": int(r.row), "id": r.id, "reason": reasons[int(r.row)]}
                                                  for r in rejects.itertuples()), key=lambda x: x["row"]))
        counts = {"rows": int(len(wide)), "scored": int(len(table)), "rejected": int((~ok).sum()),
                  "scored_tokens_per_checkpoint": int(table["n_scored_tokens"].sum())}
        lines = read_progress(out)
        if lines:
            secs = sum(x["seconds"] for x in lines)
            counts["score_seconds"] = round(secs, 2)
            counts["tokens_forwarded"] = int(sum(x["tokens"] for x in lines))
            counts["tokens_per_s_per_rank"] = round(counts["tokens_forwarded"] / secs, 1) if secs else None
        meta["counts"] = counts
        write_json_atomic(out / META, meta)
    return {"counts": counts}
