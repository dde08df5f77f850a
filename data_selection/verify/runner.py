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

Killing the job loses at most the shards in flight; re-running the same command finishes the others and
gives the same table. A different configuration in the same ``--out`` is refused (``--overwrite`` replaces it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from data_selection.atomic import write_json_atomic, write_jsonl_atomic
from data_selection.command_line import UserError, json_object_option
from data_selection.scoring.identity import check_out_dir, code_version
from data_selection.scoring.layout import (
    CONVERSION_REJECTS,
    META,
    REJECTS,
    SHARD_DIR,
    append_progress,
    missing_shards,
    publish_meta,
    read_meta,
    shard_path,
)
from data_selection.scoring.options import dist_env
from data_selection.scoring.plan import assign_shards
from data_selection.verify.options import REFERENCE_CANDIDATES, VerifyOptions
from data_selection.verify.output import VERIFIED, merge_verified
from data_selection.verify.worker import Settings, verify_shard

__all__ = ["VerifyOptions", "run_verify", "cli_verify"]

IDENTITY_KEYS = ("pool_fingerprint", "column_mapping", "system_prompt", "reference_column", "query_key",
                 "math_categories", "min_votes", "timeout", "repeat_tokens", "shard_rows", "dataset_score_column")
DATASET_SCORE_COLUMN = "verify_score"
PASSTHROUGH = ("ppl", "model_name")  # plus every pass_rate_* column


def _spec(opts: VerifyOptions):
    from data_selection.sources import PoolSpec

    columns: dict[str, str] = json_object_option("--columns", opts.columns)
    return PoolSpec(dataset=opts.dataset, dataset_dir=opts.dataset_dir, columns=columns, split=opts.split,
                    system_prompt=opts.system_prompt, max_samples=opts.max_samples)


def check_options(opts: VerifyOptions) -> None:
    if opts.min_votes < 1:
        raise UserError(f"--min_votes must be at least 1, got {opts.min_votes}")
    if opts.timeout < 0:
        raise UserError(f"--timeout must be >= 0 seconds, got {opts.timeout}")
    if opts.repeat_tokens < 1:
        raise UserError(f"--repeat_tokens must be at least 1, got {opts.repeat_tokens}")
    if opts.shard_rows < 1:
        raise UserError(f"--shard_rows must be at least 1, got {opts.shard_rows}")
    if opts.workers < 0:
        raise UserError(f"--workers must be >= 0, got {opts.workers}")
    if opts.recheck_model and not opts.recheck_template:
        raise UserError("--recheck_model needs --recheck_template (its LLaMA-Factory chat template, e.g. qwen)")


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
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["data_selection.verify.worker", "math_verify"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def run_verify(opts: VerifyOptions) -> dict[str, Any]:
    """Verify (or finish verifying) a pool. Returns a summary dict; see the module docstring."""
    import os

    from tqdm.auto import tqdm

    from data_selection.sources import default_num_proc, empty_response_only, load_pool, resolve_attr
    from data_selection.verify.grouping import query_keys

    check_options(opts)
    rank, world, _ = dist_env()
    out = Path(opts.out)
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
                "dataset_score_column": DATASET_SCORE_COLUMN if dataset_score else None}
    out.mkdir(parents=True, exist_ok=True)
    if opts.overwrite and rank == 0 and (out / META).exists():
        old = read_meta(out).get("identity", {})
        if any(old.get(k) != identity.get(k) for k in IDENTITY_KEYS):
            (out / VERIFIED).unlink(missing_ok=True)
    check_out_dir(out, identity, opts.overwrite, rank, keys=IDENTITY_KEYS)
    (out / SHARD_DIR).mkdir(exist_ok=True)

    keys = query_keys(pool, opts.query_key)
    # an empty or blank response is a failed answer, verified (score 0) in every layout, not rejected
    reasons = ["" if empty_response_only(r) else r for r in pool.converted["reject_reason"]]
    ok = [r == "" for r in reasons]
    shards = plan_query_shards(keys, ok, opts.shard_rows)
    meta = {
        "identity": identity,
        "pool": desc,
        "verifier": {"math": "math-verify (final answer after </think>, last \\boxed{} first)",
                     "reference_column": reference or None, "query_key": opts.query_key or "normalised prompt hash",
                     "dataset_verify_score": dataset_score, "passthrough_columns": extras,
                     "math_categories": list(math_categories), "has_category_column": settings.has_category},
        "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
        "num_shards": len(shards),
        "code_version": code_version(),
        "meta_columns": pool.meta_columns,
    }
    publish_meta(out, meta, rank)  # rank 0 writes it; the others wait for it before any shard
    if rank == 0:
        rejected = [(i, r) for i, r in enumerate(reasons) if r]
        ids = pool.converted.select([i for i, _ in rejected])["id"] if rejected else []
        write_jsonl_atomic(out / CONVERSION_REJECTS, ({"row": i, "id": rid, "reason": r}
                                                      for (i, r), rid in zip(rejected, ids)))

    mine = assign_shards([len(s) for s in shards], world)[rank]
    pending = [k for k in mine if not shard_path(out, k).exists()]
    workers = opts.workers or (os.cpu_count() or 1)
    workers = max(1, min(workers, len(pending)))
    summary: dict[str, Any] = {"rank": rank, "world_size": world, "shards_total": len(shards),
                               "shards_mine": len(mine), "shards_done_before": len(mine) - len(pending),
                               "workers": workers, "reference_column": reference or None,
                               "dataset_verify_score": dataset_score}
    t0 = time.perf_counter()
    rows_done = 0
    bar = tqdm(total=sum(len(shards[k]) for k in pending), unit="row", desc=f"verifying (rank {rank})",
               disable=rank != 0 or not pending)

    def finished(k: int, res: dict[str, Any]) -> None:
        nonlocal rows_done
        rows_done += res["rows"]
        append_progress(out, {"shard": k, "rank": rank, **res, "time": time.time()})
        bar.update(res["rows"])
        bar.set_postfix(rows_s=f"{rows_done / max(time.perf_counter() - t0, 1e-9):,.0f}")

    def batch_of(k: int) -> dict[str, Any]:
        return read_batch(pool, shards[k], keys, reference, dataset_score, extras)

    if pending and workers == 1:
        for k in pending:
            finished(k, verify_shard(str(shard_path(out, k)), batch_of(k), settings))
    elif pending:
        _run_in_processes(pending, workers, batch_of, lambda k: str(shard_path(out, k)), settings, finished)
    bar.close()
    elapsed = time.perf_counter() - t0
    summary.update(rows_verified_now=rows_done, seconds=round(elapsed, 2),
                   rows_per_s=round(rows_done / elapsed, 1) if rows_done and elapsed > 0 else None)
    missing = missing_shards(out, len(shards))
    if missing:
        summary.update(merged=False, waiting_for_shards=len(missing))
    else:
        summary["merged"] = True
        repeats = None
        if opts.dataset_repeats:
            t1 = time.perf_counter()
            repeats = pool_repeats(pool, [r for shard in shards for r in shard], opts.repeat_tokens)
            summary["dataset_repeat_seconds"] = round(time.perf_counter() - t1, 2)
        summary.update(merge_verified(out, dataset_repeat=repeats))
        if opts.recheck_model:
            summary["recheck"] = recheck_verified(out, opts)
    return summary


def recheck_verified(out: Path, opts: VerifyOptions) -> dict[str, Any]:
    """Re-check math-verify's 'wrong' verdicts with ``--recheck_model`` and rewrite ``verified.parquet``."""
    import pandas as pd

    from data_selection.atomic import write_parquet_atomic
    from data_selection.verify.recheck import recheck

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
    from data_selection.ngram_counts import dataset_repeats

    rows = sorted(rows)

    def texts():
        col = pool.converted.select_columns(["_response"])
        for start in range(0, len(rows), batch_size):
            for r in col.select(rows[start: start + batch_size])["_response"]:
                yield (r[0]["content"] if r else "") or ""

    return dict(zip(rows, dataset_repeats(texts, n).tolist()))


def _run_in_processes(pending, workers, batch_of, path_of, settings, finished) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

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
                finished(k, res)
                submit_next()


def cli_verify(opts: VerifyOptions) -> int:
    s = run_verify(opts)
    if s.get("rank", 0) == 0 or s.get("merged"):
        print(json.dumps(s, indent=2))
        if s.get("merged"):
            print(f"verified: {Path(opts.out) / VERIFIED}\nrejects: {Path(opts.out) / REJECTS}")
        else:
            print(f"{s['waiting_for_shards']} shard(s) still running on other ranks; the last rank merges "
                  f"(re-run the same command once they are done)")
    return 0
