"""Per-problem scores of a study's evaluations, read from lighteval's own per-sample details files.

Every ``llamafactory-ext eval`` folder holds ``details/<model>/<time>/details_<task>|0_<time>.parquet`` with one
row per problem: the document (``doc.specific.id`` for our local tasks, else the query text identifies the
problem) and the sample-level metrics. The score of a problem is the task's headline sample metric:
``extractive_match`` (one answer checked by math-verify), else pass@1 over the samples (= the mean accuracy of
the problem's samples), else accuracy. ``samples`` is how many samples that score averages (read from the
metric's name, ``pass@k:k=1&n=8``): the report's variance split estimates the sampling noise from it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from data_selection.command_line import UserError

METRIC_PREFERENCE = ("extractive_match", "pass@k:k=1", "acc", "gpqa_pass@k:k=1", "codegen_pass@1")


def _problem_id(doc) -> str:
    specific = doc.get("specific") if isinstance(doc, dict) else None
    if isinstance(specific, dict) and specific.get("id"):
        return str(specific["id"])
    return hashlib.sha1(str(doc.get("query", "")).encode("utf-8")).hexdigest()[:16]


def _pick_metric(metrics: dict) -> str:
    for prefix in METRIC_PREFERENCE:
        for name in metrics:
            if name == prefix or name.startswith(prefix):
                return name
    return sorted(metrics)[0]


def samples_of(metric: str) -> int:
    """Samples per problem a metric averages: ``pass@k:k=1&n=8`` and ``math_pass@1:8_samples`` -> 8, else 1."""
    m = re.search(r"[&:]n=(\d+)", metric) or re.search(r":(\d+)_samples", metric)
    return int(m.group(1)) if m else 1


def _task_of(path: Path) -> str:
    stem = path.stem.removeprefix("details_")
    return stem.split("|")[0]


def read_eval(folder: Path) -> pd.DataFrame:
    """(task, problem, metric, score) for every problem of every task evaluated in one folder (newest run)."""
    files = sorted((folder / "details").rglob("details_*.parquet"))
    if not files:
        raise UserError(f"{folder}: no lighteval details (details/**/details_*.parquet); was the evaluation run?")
    newest: dict[str, Path] = {}
    for f in files:  # several runs of one task: the newest wins (the folder's timestamps sort)
        newest[_task_of(f)] = max(newest.get(_task_of(f), f), f, key=lambda p: p.parent.name)
    rows = []
    for task, f in sorted(newest.items()):
        df = pd.read_parquet(f, columns=["doc", "metric"])
        for doc, metrics in zip(df["doc"], df["metric"]):
            metrics = {k: v for k, v in (metrics or {}).items() if v is not None}
            if not metrics:
                raise UserError(f"{f}: a problem without metrics")
            name = _pick_metric(metrics)
            rows.append({"task": task, "problem": _problem_id(doc), "metric": name, "score": float(metrics[name]),
                         "samples": samples_of(name)})
    out = pd.DataFrame(rows)
    dup = out.duplicated(["task", "problem"])
    if dup.any():  # the same problem twice (samples are aggregated by lighteval already): average, say so
        out = out.groupby(["task", "problem", "metric", "samples"], as_index=False)["score"].mean()
    return out


def study_results(evals: list[tuple[str, int, Path]]) -> pd.DataFrame:
    """Long table arm, seed, task, problem, metric, score over the study's evaluations."""
    frames = []
    for arm, seed, folder in evals:
        df = read_eval(folder)
        df.insert(0, "seed", seed)
        df.insert(0, "arm", arm)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
