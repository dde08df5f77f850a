"""``data-select verify``: verify scores for a multi-response pool (resumable, multi-process, multi-node).

Work plan:

1. The pool is loaded and converted exactly as ``data-select score`` loads it (:func:`data_selection.sources.
   load_pool`), so rows carry the same ``row`` and ``id``; rejected rows go to ``rejects.jsonl``.
2. Rows are grouped by query (:mod:`~data_selection.verify.grouping`) and whole queries are packed, in order
   of their first row, into shards of about ``shard_rows`` rows. Ranks (``RANK``/``WORLD_SIZE``, e.g. a job
   array over machines) split the shards as the scorer's ranks do.
3. The main process reads a shard's text and hands it to a worker process (``forkserver``: workers start
   from a clean process with math-verify loaded, and run checks in their main thread, where math-verify's
   signal-based timeouts work); the worker writes ``shards/shard-K.parquet`` atomically. At most two shards
   per worker are in flight, so memory stays bounded on 4M-row pools.
4. When every shard exists, ``verified.parquet`` is merged (:mod:`~data_selection.verify.output`).

With ``--checker_python PYTHON`` (or ``$DATA_SELECT_CHECKER_PYTHON``) step 3 runs ``PYTHON -m
data_selection.verify.worker`` subprocesses instead, so another environment's math-verify grades
(:mod:`~data_selection.verify.checker_env`). The checker (math-verify and parser versions) is part of the identity.

Killing the job loses at most the shards in flight; re-running the same command finishes the others and
gives the same table. A different configuration in the same ``--out`` is refused (``--overwrite`` replaces it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_parquet_atomic
from data_selection.command_line import UserError, json_object_option
from data_selection.ngram_counts import dataset_repeats
from data_selection.options.verify import (
    REFERENCE_CANDIDATES,
    VerifyOptions,
    check_interpreter,
    checker_python_of,
)
from data_selection.shards.driver import Dist, ShardedRun, ShardJob, run_sharded
from data_selection.shards.identity import code_version
from data_selection.shards.layout import CONVERSION_REJECTS, META, read_meta
from data_selection.sources import PoolSpec, default_num_proc, empty_response_only, load_pool, resolve_attr
from data_selection.verify.checker_env import check_same_checker, probe, run_in_subprocesses
from data_selection.verify.grouping import query_keys
from data_selection.verify.mathcheck import checker_label
from data_selection.verify.output import VERIFIED, merge_verified
from data_selection.verify.recheck import recheck
from data_selection.verify.worker import Settings, verify_shard

__all__ = ["VerifyOptions", "run_verify"]

IDENTITY_KEYS = ("pool_fingerprint", "column_mapping", "system_prompt", "reference_column", "query_key",
                 "math_categories", "min_votes", "timeout", "repeat_tokens", "shard_rows", "dataset_score_column",
                 "checker")
DATASET_SCORE_COLUMN = "verify_score"
PASSTHROUGH = ("ppl", "model_name")  # plus every pass_rate_* column


def _spec(opts: VerifyOptions):
    columns: dict[str, str] = json_object_option("--columns", opts.columns)
    return PoolSpec(dataset=opts.dataset, dataset_dir=opts.dataset_dir, columns=columns, split=opts.split,
                    system_prompt=opts.system_prompt, max_samples=opts.max_samples)


def resolve_reference_column(opts: VerifyOptions, pool) -> str:
    """The reference column actually used ("" for none)."""
    columns = pool.raw.column_names
    mapped = set(pool.describe()["column_mapping"].values())
    if opts.reference_column == "none":
        return ""
    if opts.reference_column != "auto":
        if opts.reference_column not in columns:
            raise UserError(f"--reference_column {opts.reference_column!r}: no such column in {opts.dataset!r} "
                            f"(columns: {', '.join(columns)}); use none to check against the majority answer")
        if opts.reference_column in mapped:
            raise UserError(f"--reference_column {opts.reference_column!r} is the pool's prompt/response column")
        return opts.reference_column
    return next((c for c in REFERENCE_CANDIDATES if c in columns and c not in mapped), "")


def plan_query_shards(keys: list[str], ok: list[bool], shard_rows: int) -> list[list[int]]:
    """Whole queries, in order of their first row, packed into shards of at least ``shard_rows`` rows (the last
    may be smaller). Rows inside a shard are ascending."""
    groups: dict[str, list[int]] = {}
    for row, (key, good) in enumerate(zip(keys, ok)):
        if good:
            groups.setdefault(key, []).append(row)
    shards, current = [], []
    for rows in groups.values():
        current.extend(rows)
        if len(current) >= shard_rows:
            shards.append(sorted(current))
            current = []
    if current:
        shards.append(sorted(current))
    return shards


def read_batch(pool, rows: list[int], keys: list[str], reference: str, dataset_score: bool, extras: list[str]
               ) -> dict[str, Any]:
    """What a worker needs for these pool rows (texts, keys, references, the dataset's own scores)."""
    conv_cols = ["_row", "id", "_prompt", "_response", *pool.meta_columns]
    conv = pool.converted.select_columns(conv_cols).select(rows).to_dict()
    batch: dict[str, Any] = {
        "row": conv["_row"], "id": conv["id"], "query": [keys[r] for r in rows],
        "n_prompt_turns": [len(p or []) for p in conv["_prompt"]],
        "response": [(r[0]["content"] if r else "") or "" for r in conv["_response"]],
    }
    for c in pool.meta_columns:
        batch[c] = conv[c]
    raw_cols = [c for c in ([reference] if reference else []) + ([DATASET_SCORE_COLUMN] if dataset_score else [])
                + extras]
    if raw_cols:
        raw = pool.raw.select_columns(raw_cols).select(rows).to_dict()
        if reference:
            batch["reference"] = ["" if v is None else str(v) for v in raw[reference]]
        if dataset_score:
            batch["dataset_score"] = raw[DATASET_SCORE_COLUMN]
        batch["extras"] = {c: raw[c] for c in extras}
    return batch


def _executor(workers: int):
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["data_selection.verify.worker", "math_verify"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def run_verify(opts: VerifyOptions) -> dict[str, Any]:
    """Verify (or finish verifying) a pool. Returns a summary dict; see the module docstring."""
    opts.validate()
    python, named = checker_python_of(opts)
    if python:  # before any work: the interpreter runs and has math-verify
        python = check_interpreter(python, named)
        found = probe(python, named)
        checker, where = found["checker"], f"{named} {python}"
    else:
        checker, where = checker_label(), "in process"
    summary: dict[str, Any] = {"checker": checker}
    done = {"rows": 0, "started": time.perf_counter()}

    def setup(dist: Dist) -> ShardJob:
        spec = _spec(opts)
        resolve_attr(spec)  # unknown dataset / missing file: fail before loading anything
        pool = load_pool(spec, num_proc=opts.num_proc or default_num_proc())
        reference = resolve_reference_column(opts, pool)
        columns = pool.raw.column_names
        dataset_score = DATASET_SCORE_COLUMN in columns
        extras = [c for c in columns if c.startswith("pass_rate") or c in PASSTHROUGH]
        math_categories = tuple(sorted({c.strip().lower() for c in opts.math_categories.split(",") if c.strip()}))
        settings = Settings(timeout=opts.timeout, min_votes=opts.min_votes, math_categories=math_categories,
                            has_category="category" in pool.meta_columns, repeat_tokens=opts.repeat_tokens)
        desc = pool.describe()
        identity = {"pool_fingerprint": desc["fingerprint"], "column_mapping": desc["column_mapping"],
                    "system_prompt": opts.system_prompt, "reference_column": reference, "query_key": opts.query_key,
                    "math_categories": list(math_categories), "min_votes": opts.min_votes, "timeout": opts.timeout,
                    "repeat_tokens": opts.repeat_tokens, "shard_rows": opts.shard_rows,
                    "dataset_score_column": DATASET_SCORE_COLUMN if dataset_score else None, "checker": checker}
        keys = query_keys(pool, opts.query_key)
        # an empty or blank response is a failed answer, verified (score 0) in every layout, not rejected
        reasons = ["" if empty_response_only(r) else r for r in pool.converted["reject_reason"]]
        shards: list[list[int]] = []

        def plan() -> tuple[list[list[int]], list[int]]:
            shards.extend(plan_query_shards(keys, [r == "" for r in reasons], opts.shard_rows))
            return shards, [len(s) for s in shards]

        def meta(num_shards: int) -> dict[str, Any]:
            verifier = {"math": "math-verify (final answer after </think>, last \\boxed{} first)",
                        "checker": checker, "checker_python": python or None,
                        "grading_python": python or sys.executable,
                        "reference_column": reference or None,
                        "query_key": opts.query_key or "normalised prompt hash", "dataset_verify_score": dataset_score,
                        "passthrough_columns": extras, "math_categories": list(math_categories),
                        "has_category_column": settings.has_category}
            return {"identity": identity, "pool": desc, "verifier": verifier,
                    "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__}, "num_shards": num_shards,
                    "code_version": code_version(), "meta_columns": pool.meta_columns}

        def write_conversion_rejects() -> None:
            rejected = [(i, r) for i, r in enumerate(reasons) if r]
            ids = pool.converted.select([i for i, _ in rejected])["id"] if rejected else []
            write_jsonl_atomic(Path(opts.out) / CONVERSION_REJECTS, ({"row": i, "id": rid, "reason": r}
                                                                     for (i, r), rid in zip(rejected, ids)))

        def work(run: ShardedRun):
            workers = max(1, min(opts.workers or (os.cpu_count() or 1), len(run.pending)))
            summary["workers"] = workers
            bar = tqdm(total=sum(len(shards[k]) for k in run.pending), unit="row",
                       desc=f"verifying (rank {run.rank})", disable=run.rank != 0)

            def batch_of(k: int) -> dict[str, Any]:
                return read_batch(pool, shards[k], keys, reference, dataset_score, extras)

            if python:
                finished = run_in_subprocesses(python, run.pending, workers, batch_of, lambda k: str(run.path(k)),
                                               settings, checker)
            elif workers == 1:
                finished = ((k, verify_shard(str(run.path(k)), batch_of(k), settings)) for k in run.pending)
            else:
                finished = _run_in_processes(run.pending, workers, batch_of, lambda k: str(run.path(k)), settings)
            for k, res in finished:
                done["rows"] += res["rows"]
                yield k, res
                bar.update(res["rows"])
                bar.set_postfix(rows_s=f"{done['rows'] / max(time.perf_counter() - done['started'], 1e-9):,.0f}")
            bar.close()

        def merge() -> dict[str, Any]:
            merged: dict[str, Any] = {}
            repeats = None
            if opts.dataset_repeats:
                t1 = time.perf_counter()
                repeats = pool_repeats(pool, [r for shard in shards for r in shard], opts.repeat_tokens)
                merged["dataset_repeat_seconds"] = round(time.perf_counter() - t1, 2)
            merged.update(merge_verified(opts.out, dataset_repeat=repeats))
            if opts.recheck_model:
                merged["recheck"] = recheck_verified(Path(opts.out), opts)
            return merged

        summary.update(reference_column=reference or None, dataset_verify_score=dataset_score)
        return ShardJob(out=Path(opts.out), identity=identity, identity_keys=IDENTITY_KEYS, overwrite=opts.overwrite,
                        plan=plan, meta=meta, work=work, merge=merge, outputs=(VERIFIED,),
                        before_check=lambda: check_same_checker(Path(opts.out), checker, where, opts.overwrite),
                        after_publish=write_conversion_rejects)

    _, run = run_sharded(setup)
    elapsed = time.perf_counter() - done["started"]
    summary = {"rank": run.rank, "world_size": run.world, "shards_total": len(run.shards),
               "shards_mine": len(run.mine), "shards_done_before": len(run.mine) - len(run.pending),
               "workers": summary.pop("workers", 1), **summary}
    summary.update(rows_verified_now=done["rows"], seconds=round(elapsed, 2),
                   rows_per_s=round(done["rows"] / elapsed, 1) if done["rows"] and elapsed > 0 else None)
    if run.missing:
        summary.update(merged=False, waiting_for_shards=len(run.missing))
    else:
        summary.update(merged=True, **run.merged)
    return summary


def recheck_verified(out: Path, opts: VerifyOptions) -> dict[str, Any]:
    """Re-check math-verify's 'wrong' verdicts with ``--recheck_model`` and rewrite ``verified.parquet``."""
    table = pd.read_parquet(out / VERIFIED)
    if "reference" not in set(table["method"]) and "reference+model" not in set(table["method"]):
        return {"note": "no reference-checked rows: nothing to re-check"}
    base = table.assign(method=table["method"].replace("reference+model", "reference"))
    base.loc[table["method"] == "reference+model", "verify_score"] = 0.0  # re-checks start from math-verify's verdict
    table, facts = recheck(out, base, opts.recheck_model, opts.recheck_template, opts.recheck_batch)
    write_parquet_atomic(out / VERIFIED, table)
    meta = read_meta(out)
    meta["recheck"] = facts
    write_json_atomic(out / META, meta)
    return facts


def pool_repeats(pool, rows: list[int], n: int, batch_size: int = 2_000) -> dict[int, int]:
    """{pool row: occurrences in these rows' responses of the row's most frequent n-word string}."""
    rows = sorted(rows)

    def texts():
        col = pool.converted.select_columns(["_response"])
        for start in range(0, len(rows), batch_size):
            for r in col.select(rows[start: start + batch_size])["_response"]:
                yield (r[0]["content"] if r else "") or ""

    return dict(zip(rows, dataset_repeats(texts, n).tolist()))


def _run_in_processes(pending, workers, batch_of, path_of, settings):
    """Verify the pending shards in worker processes, at most two per worker in flight; yield (shard, result)."""
    todo = iter(pending)
    with _executor(workers) as ex:
        futures: dict[Any, int] = {}

        def submit_next() -> None:
            k = next(todo, None)
            if k is not None:
                futures[ex.submit(verify_shard, path_of(k), batch_of(k), settings)] = k

        for _ in range(2 * workers):
            submit_next()
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in done:
                k = futures.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool as err:
                    raise UserError(f"a verify worker process died (out of memory?) while on shard {k}; the "
                                    "finished shards are kept: re-run the same command to continue") from err
                yield k, res
                submit_next()
