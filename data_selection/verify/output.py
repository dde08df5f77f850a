"""A verify output folder: merging its shards, and reading it back for ``data-select select``.

::

    verify/NAME/
      meta.json                 identity (pool fingerprint, reference column, query key, timeout…), the pool
                                record ``select`` reloads the rows from, options, counts (after merge)
      conversion_rejects.jsonl  rows LLaMA-Factory's converter rejected
      shards/shard-000042.parquet  one finished group of whole queries (atomic; its presence = done)
      progress.jsonl            one line per finished shard
      verified.parquet          one row per verified pool row, sorted by row (the same ``row`` and ``id`` as
                                ``scores.parquet``)
      rejects.jsonl             every rejected row with its reason

``verified.parquet`` columns: ``id``, ``row``, ``query`` (group key), ``category`` (and ``source``, ``response_kind``),
``n_prompt_turns``, ``method`` (reference | majority | dataset | empty | ""), ``verify_score`` (NaN = no score),
``reason`` (why not), ``answer`` (the final answer extracted), ``answer_found``, ``target`` (what it was
compared with), ``has_think``, ``has_answer``, ``max_repeat`` (most occurrences of one ``repeat_tokens``-word
string inside the response), ``dataset_repeat`` (occurrences in the whole pool of the response's most frequent
such string; unless ``--dataset_repeats false``), ``n_response_chars``, and the dataset's own ``pass_rate_*``,
``ppl``, ``model_name`` when present. ``--recheck_model`` adds ``recheck.parquet`` (row, reply, model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_parquet_atomic
from data_selection.command_line import UserError
from data_selection.jsonl import read_jsonl
from data_selection.shards.layout import CONVERSION_REJECTS, META, REJECTS, read_meta
from data_selection.shards.merge import finished_shard_frames, merge_lock
from data_selection.shards.progress import read_progress

VERIFIED = "verified.parquet"


def merge_verified(out: str | Path, dataset_repeat: dict[int, int] | None = None) -> dict[str, Any]:
    """Concatenate the shards into ``verified.parquet`` and ``rejects.jsonl``; record the counts in meta.json.

    ``dataset_repeat`` ({row: count}, :func:`~data_selection.ngram_counts.dataset_repeats`) becomes a column."""
    out = Path(out)
    with merge_lock(out):
        meta, frames = finished_shard_frames(out, "data-select verify")
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"id": [], "row": [], "query": [],
                                                                                "verify_score": [], "reason": [],
                                                                                "method": []})
        df = df.sort_values("row", kind="stable").reset_index(drop=True)
        df["row"] = df["row"].astype("int64")
        df["verify_score"] = df["verify_score"].astype("float64")
        if dataset_repeat is not None:
            df["dataset_repeat"] = df["row"].map(dataset_repeat).fillna(0).astype("int64")
        write_parquet_atomic(out / VERIFIED, df)
        conv = out / CONVERSION_REJECTS
        rejects = []
        if conv.exists():
            rejects = read_jsonl(conv)
        write_jsonl_atomic(out / REJECTS, sorted(rejects, key=lambda r: r["row"]))
        scored = df["verify_score"].notna()
        per_query = df.groupby("query").size() if len(df) else pd.Series(dtype=int)
        counts: dict[str, Any] = {
            "rows": int(meta["pool"]["num_rows"]),
            "rejected": len(rejects),
            "verified_rows": len(df),
            "scored": int(scored.sum()),
            "no_score": int((~scored).sum()),
            "queries": int(len(per_query)),
            "by_method": {str(k): int(v) for k, v in df.loc[scored, "method"].value_counts().sort_index().items()},
            "no_score_reasons": {str(k): int(v) for k, v in df.loc[~scored, "reason"].value_counts().items()},
        }
        if "dataset_repeat" in df:
            counts["dataset_repeat_over_20"] = int((df["dataset_repeat"] > 20).sum())
        if "max_repeat" in df:
            counts["max_repeat_over_20"] = int((df["max_repeat"] > 20).sum())
        if len(per_query):
            counts["responses_per_query"] = {"min": int(per_query.min()), "median": float(per_query.median()),
                                             "mean": round(float(per_query.mean()), 3), "max": int(per_query.max())}
        if "answer_found" in df:
            counts["answer_found"] = int(df["answer_found"].sum())
            counts["missing_think"] = int((~df["has_think"].astype(bool)).sum())
            counts["missing_answer"] = int((~df["has_answer"].astype(bool)).sum())
        lines = read_progress(out)
        if lines:
            secs = sum(x["seconds"] for x in lines)
            counts["worker_seconds"] = round(secs, 2)
            cpu = sum(x.get("cpu_seconds", 0.0) for x in lines)
            rows = sum(x["rows"] for x in lines)
            counts["rows_per_worker_second"] = round(rows / secs, 1) if secs else None
            counts["worker_cpu_seconds"] = round(cpu, 2)
            counts["rows_per_cpu_second"] = round(rows / cpu, 1) if cpu else None
        meta["counts"] = counts
        write_json_atomic(out / META, meta)
    return {"counts": counts}


TEXT_COLUMNS = ("answer", "target", "reason", "method", "model_name")  # for people, not for selection


def load_verified(verified_dir: str | Path, text_columns: bool = False):
    """(verify table, meta dict, rejects list) of a finished ``data-select verify`` output folder.

    Without ``text_columns`` the descriptive string columns are not read (a 4M-row table stays small).
    """
    d = Path(verified_dir)
    if not d.is_dir():
        raise UserError(f"verify folder {d} not found (run `data-select verify ... --out {d}` first)")
    for p in (d / META, d / VERIFIED):
        if not p.exists():
            raise UserError(f"{p} not found: is {d} a finished `data-select verify` output? (an unfinished run: "
                            "re-run the same verify command)")
    meta = read_meta(d)
    if "pool" not in meta or "query_key" not in meta.get("identity", {}):
        raise UserError(f"{d / META}: not written by `data-select verify` (no pool record or verify identity)")
    try:
        names = pq.read_schema(d / VERIFIED).names
        columns = [c for c in names if text_columns or c not in TEXT_COLUMNS]
        table = pq.read_table(d / VERIFIED, columns=columns).to_pandas()
    except Exception as err:
        raise UserError(f"{d / VERIFIED}: cannot be read as parquet ({type(err).__name__}: {err})") from err
    rejects_path = d / REJECTS
    rejects = []
    if rejects_path.exists():
        rejects = read_jsonl(rejects_path)
    return table, meta, rejects
