"""One shard of a verify run, end to end: the unit of work a process runs and a re-run skips.

A shard holds whole queries (all their responses), so majority votes never span two shards. For each row:
the think/answer parts and repetition count (:mod:`data_selection.quality`), then the verify score: the
dataset's own ``verify_score`` when it has one; math-verify for rows of a math category, per query against the
reference or the majority (:mod:`~data_selection.verify.judge`); none (NaN, with a reason) for other
categories (code needs test execution, which this tool does not do). An empty or blank response is a failed
response: score 0 (method ``empty``) whatever its category or layout.

The runner calls :func:`verify_shard` in its own worker processes; with ``--checker_python PYTHON`` it runs this
module instead, in that interpreter (:mod:`~data_selection.verify.checker_env`)::

    PYTHON -m data_selection.verify.worker IN OUT   # IN: {"checker", "settings", "batch"} (JSON); OUT: the shard
    PYTHON -m data_selection.verify.worker --serve  # the same for each {"in": IN, "out": OUT} line on stdin
    PYTHON -m data_selection.verify.worker --probe  # which checker this interpreter grades with

Each answer is one ``VERIFY_RESULT {json}`` line (a shard's counters and ``checker``, or its ``error``; the
probe's checker label and versions). The runner keeps one ``--serve`` process per worker.
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from data_selection.atomic import write_parquet_atomic
from data_selection.quality import max_repeat_count
from data_selection.verify.answers import final_answer, split_response
from data_selection.verify.checker_env import RESULT_PREFIX
from data_selection.verify.judge import Verdict, judge_majority, judge_reference
from data_selection.verify.mathcheck import MathChecker, checker_label, checker_version

SHOWN_CHARS = 300  # extracted answers and targets are stored up to this length
BASE_COLUMNS = ["id", "row", "query", "n_prompt_turns", "method", "verify_score", "reason", "answer",
                "answer_found", "target", "has_think", "has_answer", "max_repeat", "n_response_chars"]


@dataclass(frozen=True)
class Settings:
    timeout: float = 5.0  # CPU seconds per math-verify call
    min_votes: int = 2
    math_categories: tuple[str, ...] = ("math",)
    has_category: bool = True  # False: the pool has no category column and every row is math
    repeat_tokens: int = 20

    def is_math(self, category: str | None) -> bool:
        """Rows of a math category, and rows without a category (a pool or row without one is math)."""
        c = (category or "").strip().lower()
        return not self.has_category or not c or c in self.math_categories


_CHECKERS: dict[float, MathChecker] = {}


def checker_for(timeout: float) -> MathChecker:
    """One checker (and parse cache) per process and timeout."""
    if timeout not in _CHECKERS:
        _CHECKERS[timeout] = MathChecker(timeout)
    return _CHECKERS[timeout]


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def verify_batch(batch: dict[str, Any], settings: Settings) -> dict[str, list]:
    """Columns of the verify table for a batch of rows (whole queries).

    ``batch``: lists ``row``, ``id``, ``query``, ``n_prompt_turns``, ``response``; optional ``category``,
    ``source``, ``reference`` (reference answers, "" for none), ``dataset_score`` (the dataset's verify scores,
    None for none) and ``extras`` ({column: values} copied through, e.g. ``pass_rate_r1``, ``ppl``).
    """
    checker = checker_for(settings.timeout)
    n = len(batch["row"])
    texts = batch["response"]
    categories = batch.get("category") or [""] * n
    references = batch.get("reference") or [""] * n
    dataset_scores = batch.get("dataset_score") or [None] * n
    parts = [split_response(t) for t in texts]
    verdicts: list[Verdict | None] = [None] * n
    by_query: dict[tuple[str, str], list[int]] = {}  # (query, reference) -> math rows
    for i in range(n):
        if not texts[i].strip():
            verdicts[i] = Verdict(score=0.0, method="empty")  # no answer at all: a failed response
        elif _finite(dataset_scores[i]):
            verdicts[i] = Verdict(score=float(dataset_scores[i]), method="dataset")
        elif settings.is_math(categories[i]):
            by_query.setdefault((batch["query"][i], (references[i] or "").strip()), []).append(i)
        else:
            verdicts[i] = Verdict(reason=f"no verifier for category {categories[i]!r} (needs the dataset's "
                                         "verify_score)")
    for (_, reference), rows in by_query.items():
        candidates = [final_answer(texts[i], parts[i]) for i in rows]
        if reference:
            out = judge_reference(candidates, reference, checker)
        else:
            out = judge_majority(candidates, checker, settings.min_votes)
        for i, v in zip(rows, out):
            verdicts[i] = v
    cols: dict[str, list] = {c: [] for c in BASE_COLUMNS}
    for i in range(n):
        v, p = verdicts[i], parts[i]
        cols["id"].append(batch["id"][i])
        cols["row"].append(int(batch["row"][i]))
        cols["query"].append(batch["query"][i])
        cols["n_prompt_turns"].append(int(batch["n_prompt_turns"][i]))
        cols["method"].append(v.method)
        cols["verify_score"].append(v.score)
        cols["reason"].append(v.reason)
        cols["answer"].append(v.answer[:SHOWN_CHARS])
        cols["answer_found"].append(v.answer_found)
        cols["target"].append(v.target[:SHOWN_CHARS])
        cols["has_think"].append(p.has_think)
        cols["has_answer"].append(p.has_answer)
        cols["max_repeat"].append(max_repeat_count(texts[i], settings.repeat_tokens))
        cols["n_response_chars"].append(len(texts[i]))
    # a pool (or row) without a category is math (docs/methods.md §4)
    cols["category"] = [c or "math" for c in categories] if settings.has_category else ["math"] * n
    for meta in ("source", "response_kind"):  # carried for the reports' composition tables
        if batch.get(meta) is not None:
            cols[meta] = list(batch[meta])
    for name, values in (batch.get("extras") or {}).items():
        cols[name] = list(values)
    return cols


def verify_shard(path: str, batch: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Verify one shard and write it atomically to ``path`` (its presence marks it done). Returns counts."""
    t0, c0 = time.perf_counter(), time.process_time()
    cols = verify_batch(batch, settings)
    df = pd.DataFrame(cols)
    df["verify_score"] = df["verify_score"].astype("float64")
    write_parquet_atomic(Path(path), df)
    return {"rows": len(df), "scored": int(df["verify_score"].notna().sum()),
            "seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(time.process_time() - c0, 3)}


USAGE = "usage: python -m data_selection.verify.worker IN OUT | --serve | --probe"


class CheckerMismatch(Exception):
    """The shard's run records another checker than this interpreter's."""


def probe_info() -> dict[str, Any]:
    """Which checker this interpreter grades with (math-verify must import: a probe that passes can grade)."""
    importlib.import_module("math_verify")  # it must import, not only be installed (grading loads it on first use)
    return {"checker": checker_label(), "version": checker_version(), "python": sys.executable,
            "python_version": platform.python_version()}


def grade_file(in_path: str, out_path: str) -> dict[str, Any]:
    """Grade the shard file ``in_path`` ({"shard", "checker", "settings", "batch"}) into ``out_path``; its counters
    and the checker that graded. Refuses (nothing written) a shard whose run records another checker."""
    payload = json.loads(Path(in_path).read_text(encoding="utf-8"))
    label = checker_label()
    if payload.get("checker") and payload["checker"] != label:
        raise CheckerMismatch(f"shard {payload.get('shard')}: this interpreter ({sys.executable}) grades with "
                              f"{label}, the run records {payload['checker']}; nothing written")
    raw = payload["settings"]
    settings = Settings(**{**raw, "math_categories": tuple(raw["math_categories"])})
    return {**verify_shard(out_path, payload["batch"], settings), "checker": label}


def serve(lines) -> None:
    """One shard per request line ({"in": IN, "out": OUT}), one result line each (an ``error`` on failure): the
    runner keeps one such process per worker, so math-verify loads once per worker, not once per shard."""
    for line in lines:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            result = grade_file(req["in"], req["out"])
        except Exception as err:
            result = {"error": f"{type(err).__name__}: {err}"[-2000:]}
        print(RESULT_PREFIX + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Grade one shard file (IN OUT), serve shards from stdin (``--serve``), or ``--probe``."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--probe"]:
        print(RESULT_PREFIX + json.dumps(probe_info()), flush=True)
        return 0
    if args == ["--serve"]:
        serve(sys.stdin)
        return 0
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        result = grade_file(*args)
    except CheckerMismatch as err:
        print(err, file=sys.stderr)
        return 3
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
