"""One stage of a dynamic selection: its draw (the selector of ``data-select select``), its flows against the previous
stage, and its folder ``OUTPUT_DIR/selection/stage-K/`` (written through a temporary folder and one rename: a folder
that exists is a finished stage, and a resumed run reads it instead of scoring again).

Files of a stage: ``scores.parquet`` (the table the selector ran on: the base scores for stage 0, the in-loop scores
of the candidates after), ``subset.jsonl`` (the rows, written exactly as ``data-select select`` writes
``data/NAME.jsonl``), ``subset_ids.json`` and ``manifest.json`` (strategy, seed, thresholds of the band, funnel, the
global step the scores were computed at, the flows).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_selection.atomic import write_json_atomic
from data_selection.options.select import SelectOptions
from data_selection.select import run_strategy
from data_selection.selectors.common import eligible_rows, normalized
from data_selection.selectors.zpd import band_positions
from data_selection.subset import selected_examples, write_subset
from llamafactory_ext.train.dynamic.options import DynamicSelection

SELECTION_DIR = "selection"
MANIFEST = "manifest.json"


def stage_dir(output_dir: str | Path, stage: int) -> Path:
    return Path(output_dir) / SELECTION_DIR / f"stage-{stage}"


def select_options(dyn: DynamicSelection, stage: int) -> SelectOptions:
    """The ``data-select select`` options stage ``stage`` draws with (seed + stage)."""
    return SelectOptions(name=f"stage-{stage}", scores=dyn.scores, strategy=dyn.strategy, n=dyn.n,
                         seed=dyn.seed + stage, low=dyn.low, high=dyn.high, key=dyn.key, stratify=dyn.stratify,
                         over_length=dyn.over_length)


def candidate_rows(base: pd.DataFrame, dyn: DynamicSelection, stage: int) -> np.ndarray:
    """Pool rows re-scored at stage ``stage`` (>= 1): every scored row, or K drawn with seed + stage."""
    rows = np.sort(base["row"].to_numpy(np.int64))
    k = dyn.candidate_rows
    if k is None or k >= len(rows):
        return rows
    return np.sort(np.random.default_rng(dyn.seed + stage).choice(rows, size=k, replace=False))


def draw(table: pd.DataFrame, dyn: DynamicSelection, stage: int):
    """The selector on ``table`` exactly as ``data-select select`` runs it (a Selection)."""
    return run_strategy(table, select_options(dyn, stage))


def band_status(table: pd.DataFrame, dyn: DynamicSelection) -> dict[int, str]:
    """pool row -> below / band / above (the global rank band of ``dyn.key``; ``ineligible`` rows are left out)."""
    elig = eligible_rows(normalized(table), dyn.key, dyn.over_length)
    rows = elig.table["row"].to_numpy(np.int64)
    low, high = (dyn.low, dyn.high) if dyn.strategy == "zpd" else (0.0, 1.0)
    inside, d_low, d_high, _ = band_positions(elig.key, low, high)
    order = np.lexsort((np.arange(len(rows)), elig.key))  # band_positions' own order: by key, then pool row
    status = np.full(len(rows), "band", dtype=object)
    status[order[:d_low]] = "below"
    status[order[len(rows) - d_high:]] = "above"
    return dict(zip(rows.tolist(), status.tolist()))


def flows(prev_rows: list[int], prev_status: dict[int, str], new_rows: list[int], new_status: dict[int, str]
          ) -> dict[str, int]:
    """Where the previous stage's subset went under the new weights, and what entered.

    ``learned``: a previous subset row now below the band; ``rose_above``: now above it; ``stayed``: still in the band;
    ``not_rescored``: not among this stage's candidates (or no longer eligible); ``kept``: drawn again; ``entered``:
    rows of the new subset that were not in the previous one; ``entered_band``: band rows that were outside the
    previous stage's band (or not scored there).
    """
    prev, new = set(prev_rows), set(new_rows)
    counts = {"learned": 0, "rose_above": 0, "stayed": 0, "not_rescored": 0}
    for r in prev:
        s = new_status.get(r)
        key = {"below": "learned", "above": "rose_above", "band": "stayed"}.get(s, "not_rescored")
        counts[key] += 1
    counts["kept"] = len(prev & new)
    counts["entered"] = len(new - prev)
    counts["entered_band"] = sum(1 for r, s in new_status.items() if s == "band" and prev_status.get(r) != "band")
    return counts


def write_stage(output_dir: str | Path, stage: int, table: pd.DataFrame, selection, pool, manifest: dict[str, Any],
                before_rename=None) -> Path:
    """Write the stage folder atomically (temporary folder + rename). ``before_rename(tmp)`` may add files."""
    final = stage_dir(output_dir, stage)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    table.to_parquet(tmp / "scores.parquet", index=False)
    examples = selected_examples(pool, selection.rows, selection.ids)
    _, _, sha = write_subset(tmp / "subset.jsonl", examples, pool.meta_columns)
    (tmp / "subset_ids.json").write_text(json.dumps({"rows": [int(r) for r in selection.rows],
                                                     "ids": list(selection.ids)}), encoding="utf-8")
    if before_rename is not None:
        before_rename(tmp)
    write_json_atomic(tmp / MANIFEST, {**manifest, "subset_sha256": sha, "num_rows": len(selection.ids)})
    if final.exists():  # an unfinished earlier attempt cannot exist (rename is atomic): a stale copy is replaced
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def read_stage(output_dir: str | Path, stage: int) -> dict[str, Any] | None:
    """A finished stage's manifest plus its subset rows, or None."""
    d = stage_dir(output_dir, stage)
    if not (d / MANIFEST).is_file():
        return None
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    ids = json.loads((d / "subset_ids.json").read_text(encoding="utf-8"))
    return {**manifest, "rows": ids["rows"], "ids": ids["ids"]}


def stage_manifest(dyn: DynamicSelection, stage: int, selection, global_step: int, epoch: float | None,
                   candidates: int, scored_with: str, flow: dict[str, int] | None, seconds: float | None,
                   forwards: dict[str, Any] | None = None) -> dict[str, Any]:
    """``forwards``: how the ranks ran the in-loop scoring (:func:`runtime.score_rows`'s second result)."""
    facts = selection.facts
    return {"stage": stage, "strategy": dyn.strategy, "n": dyn.n, "seed": dyn.seed + stage, "key": dyn.key,
            "low": dyn.low, "high": dyn.high, "stratify": dyn.stratify, "over_length": dyn.over_length,
            "every": dyn.every, "candidates_setting": dyn.candidates, "global_step": global_step, "epoch": epoch, "candidates": candidates,
            "scored_with": scored_with, "thresholds": facts.get("thresholds"), "funnel": facts.get("funnel"),
            "flows": flow, "scoring_seconds": seconds, "scoring_forwards": forwards}
