"""``data-select score``: the resumable, sharded, multi-GPU response-loss scorer.

Work plan (deterministic for a given pool and configuration, whatever the number of GPUs):

1. The pool is loaded and converted the way LLaMA-Factory reads it (:mod:`data_selection.sources`); rows that
   LLaMA-Factory could not train on go to ``rejects.jsonl`` with their reason.
2. Eligible rows are cut into shards and dealt to ranks (``torchrun``: ``RANK``/``WORLD_SIZE``) by
   :mod:`data_selection.shards.plan`; the sequence (identity check, ``meta.json``, progress, resume, merge) is
   the sharded-run engine's (:func:`data_selection.shards.driver.run_sharded`).
3. A rank encodes each of its shards with LLaMA-Factory's template code (:mod:`data_selection.encoding`) and
   scores it (:func:`data_selection.scoring.forward.score_sequences`: token-budget batches, each packed into
   one sequence with variable-length attention, chunked response-only log-probs); on a GPU the next shard is
   encoded in a background thread meanwhile. The shard is written as
   ``shards/shard-000042.parquet`` through a temporary file and a rename, and a line is appended to
   ``progress.jsonl``. A shard file on disk is finished work: a re-run skips it.
4. When every shard exists, the rank that finishes last merges them into ``scores.parquet`` (see
   :mod:`data_selection.scoring.merge`; also ``data-select merge``) and writes this run's summary to
   ``summary.json``.

Killing the job at any moment loses at most the shards in flight; re-running the same command finishes the
rest and the result equals an uninterrupted run (a shard's batches do not depend on what ran before).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.profiler import record_function
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_parquet_atomic
from data_selection.command_line import UserError, json_object_option
from data_selection.device import use_device
from data_selection.encoding import TemplateEncoder, check_tokenizer_matches_model, load_tokenizer
from data_selection.options.score import ScoreOptions
from data_selection.scores_table import STAT_COLUMNS
from data_selection.scoring.forward import score_sequences, token_features
from data_selection.scoring.identity import IDENTITY_KEYS, run_identity
from data_selection.scoring.layout import SCORES, SUMMARY
from data_selection.scoring.logprobs import auto_chunk_tokens
from data_selection.scoring.merge import merge_shards
from data_selection.scoring.options import resolve_attn, resolve_dtype
from data_selection.scoring.prefetch import prefetch
from data_selection.scoring.self_check import check_against_full_forward, check_windows
from data_selection.scoring.varlen import resolve_packing
from data_selection.shards.driver import Dist, ShardedRun, ShardJob, run_sharded
from data_selection.shards.identity import code_version
from data_selection.shards.layout import CONVERSION_REJECTS
from data_selection.shards.plan import plan_shards
from data_selection.sources import PoolSpec, default_num_proc, load_pool, resolve_attr

__all__ = ["ScoreOptions", "run_score", "load_model", "prepare", "encode_rows"]


def prepare(opts: ScoreOptions):
    """Everything that can fail on bad input, before any model compute: (config, tokenizer, encoder, pool)."""
    columns: dict[str, str] = json_object_option("--columns", opts.columns)
    spec = PoolSpec(
        dataset=opts.dataset,
        dataset_dir=opts.dataset_dir,
        columns=columns,
        split=opts.split,
        system_prompt=opts.system_prompt,
        max_samples=opts.max_samples,
    )
    resolve_attr(spec)  # unknown dataset name / missing file: fail before loading anything heavy
    try:
        config = AutoConfig.from_pretrained(opts.model, trust_remote_code=opts.trust_remote_code)
    except OSError as err:
        raise UserError(f"cannot load model config from {opts.model!r}: {err}") from err
    try:
        tokenizer = load_tokenizer(opts.model, opts.tokenizer or None, opts.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load tokenizer from {opts.tokenizer or opts.model!r}: {err}") from err
    check_tokenizer_matches_model(tokenizer, config, opts.model, opts.tokenizer or None)
    encoder = TemplateEncoder(tokenizer, opts.template, opts.cutoff_len)
    pool = load_pool(spec, num_proc=opts.num_proc or default_num_proc())
    return config, tokenizer, encoder, pool


def load_model(opts, device: str):
    """The model in inference mode (``opts``: any options with model, dtype, attn, trust_remote_code)."""
    dtype = resolve_dtype(opts.dtype, device)
    attn = resolve_attn(opts.attn, device, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        opts.model, dtype=dtype, attn_implementation=attn, trust_remote_code=opts.trust_remote_code
    )
    model.to(device).eval()
    model.requires_grad_(False)  # not torch.set_grad_enabled(False): a global switch leaks into the caller
    return model, dtype, attn


def encode_rows(encoder, converted, rows: list[int], meta_cols) -> tuple[dict[int, dict[str, Any]], dict[int, Any]]:
    """Encode pool rows with LLaMA-Factory's template: ({row: record}, {row: Encoded} for the scorable ones).

    A row the template cannot render, or that keeps no response token, gets a ``reject_reason`` in its record.
    """
    encoded: dict[int, Any] = {}
    records: dict[int, dict[str, Any]] = {}
    for ex in converted.select(rows):
        row = ex["_row"]
        rec = {"id": ex["id"], "row": row, **{c: ex.get(c, "") for c in meta_cols}}
        records[row] = rec
        try:
            enc = encoder.encode(ex)
        except Exception as err:  # a row the template cannot render must not stop the run
            rec["reject_reason"] = f"template encoding failed: {type(err).__name__}: {err}"
            continue
        rec.update(n_prompt_tokens=enc.n_prompt_tokens, n_response_tokens=enc.n_response_tokens,
                   n_tokens_full=enc.n_tokens_full, truncated=enc.truncated, reject_reason="")
        if enc.n_response_tokens == 0:
            rec["reject_reason"] = "no response tokens after templating/truncation"
        else:
            encoded[row] = enc
    return records, encoded


def _score_shard(model, records, encoded, opts, device: str, chunk_tokens: int, pad_id: int):
    """Score one encoded shard (see :func:`encode_rows`). Returns (records, stats)."""
    losses, stats = score_sequences(
        model, {r: (e.input_ids, e.labels) for r, e in encoded.items()},
        batch_tokens=opts.batch_tokens, chunk_tokens=chunk_tokens, device=device, pad_id=pad_id,
        packing=opts.packing, top_k=opts.brier_top_k,
    )
    for r, per_token in losses.items():
        rec = records[r]
        tok = per_token[:, 0]  # the NLL; beside it each token's rank and top-K Brier score
        if not bool(torch.isfinite(tok).all()):
            rec["reject_reason"] = "non-finite loss"
            continue
        rec.update(token_features(per_token))
        if opts.per_token_prefix:
            rec["token_losses"] = tok[: opts.per_token_prefix].float().tolist()
    return [records[r] for r in sorted(records)], stats


def _write_shard(path: Path, records: list[dict[str, Any]], per_token_prefix: int) -> None:
    df = pd.DataFrame.from_records(records)
    for col in ("loss_sum", "loss_mean", "loss_first_100", "loss_first_1000", *STAT_COLUMNS):
        if col not in df:
            df[col] = float("nan")
    if per_token_prefix and "token_losses" not in df:
        df["token_losses"] = None
    write_parquet_atomic(path, df)


@dataclass
class _Tally:
    """What this rank did in this run (for the summary)."""

    started: float = field(default_factory=time.perf_counter)
    rows: int = 0
    tokens: int = 0
    wastes: list[float] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # device, dtype, attn, chunk_tokens, packing, self-check


def run_score(opts: ScoreOptions) -> dict[str, Any]:
    """Score (or finish scoring) a pool. Returns a summary dict; see the module docstring."""
    opts.validate()
    tally = _Tally()

    def setup(dist: Dist) -> ShardJob:
        device = use_device(opts.device, dist.local_rank)  # before any work: this rank's GPU, or why there is none
        config, tokenizer, encoder, pool = prepare(opts)
        identity = run_identity(opts, pool, config)

        def meta(num_shards: int) -> dict[str, Any]:
            tally.started = time.perf_counter()
            return {
                "identity": identity,
                "pool": pool.describe(),
                "model": identity["model"],
                "template": opts.template,
                "cutoff_len": opts.cutoff_len,
                "dtype": opts.dtype,
                "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
                "num_shards": num_shards,
                "code_version": code_version(),
                "meta_columns": pool.meta_columns,
            }

        def write_conversion_rejects() -> None:
            rejects = pool.converted.filter(lambda r: r["reject_reason"] != "", desc="Collecting rejects")
            write_jsonl_atomic(Path(opts.out) / CONVERSION_REJECTS,
                               ({"row": r["_row"], "id": r["id"], "reason": r["reject_reason"]} for r in rejects))

        return ShardJob(out=Path(opts.out), identity=identity, identity_keys=IDENTITY_KEYS, overwrite=opts.overwrite,
                        plan=lambda: plan_shards(pool.converted, opts.shard_rows), meta=meta,
                        work=lambda run: _score_pending(run, opts, device, tokenizer, encoder, pool, tally),
                        merge=lambda: merge_shards(opts.out), outputs=(SCORES, SUMMARY),
                        after_publish=write_conversion_rejects)

    _, run = run_sharded(setup)
    elapsed = time.perf_counter() - tally.started
    summary: dict[str, Any] = {"rank": run.rank, "world_size": run.world, "shards_total": len(run.shards),
                               "shards_mine": len(run.mine), "shards_done_before": len(run.mine) - len(run.pending),
                               **tally.facts}
    summary.update(rows_scored_now=tally.rows, tokens_now=tally.tokens, seconds=round(elapsed, 2),
                   tokens_per_s=round(tally.tokens / elapsed, 1) if elapsed > 0 and tally.tokens else None,
                   padding_waste=round(sum(tally.wastes) / len(tally.wastes), 4) if tally.wastes else None)
    if run.missing:
        summary["merged"] = False
        summary["waiting_for_shards"] = len(run.missing)
    else:
        summary["merged"] = True
        summary.update(run.merged)
        write_json_atomic(Path(opts.out) / SUMMARY, summary)  # the full record; `score` prints a short one
    return summary


def _score_pending(run: ShardedRun, opts: ScoreOptions, device: str, tokenizer, encoder, pool, tally: _Tally):
    """Score this rank's pending shards, yielding (shard, progress counters) as each is written."""
    shards, pending, facts = run.shards, run.pending, tally.facts
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    windows = check_windows(encoder, pool.converted, shards[pending[0]]) if opts.verify else {}
    # On a GPU, shards are encoded (template + tokenizer, on the host) in a background thread from now on:
    # the first while the model loads, each next one while the previous one is scored.
    with prefetch(((k, encode_rows(encoder, pool.converted, shards[k], pool.meta_columns)) for k in pending),
                  enabled=device.startswith("cuda")) as encoded_shards:
        model, dtype, attn = load_model(opts, device)
        try:
            packing = resolve_packing(opts.packing, model)
        except ValueError as err:
            raise UserError(f"--packing {opts.packing}: {err}") from err
        chunk = opts.chunk_tokens or auto_chunk_tokens(model.get_output_embeddings().weight.shape[0])
        facts.update(device=device, dtype=str(dtype).replace("torch.", ""), attn=attn, chunk_tokens=chunk,
                     packing=packing)
        if opts.verify:
            facts["self_check_max_abs_diff"] = check_against_full_forward(
                model, windows, device, chunk, dtype, opts.packing)
        bar = tqdm(total=sum(len(shards[k]) for k in pending), unit="row", desc=f"scoring (rank {run.rank})",
                   disable=run.rank != 0)
        ts = time.perf_counter()
        with record_function("data-select score: shards"):  # the window bench/score_mfu.py --profile reads
            for k, (records, encoded) in encoded_shards:
                records, stats = _score_shard(model, records, encoded, opts, device, chunk, pad_id)
                facts["packing"] = stats["packing"]
                _write_shard(run.path(k), records, opts.per_token_prefix)
                now = time.perf_counter()
                dt, ts = now - ts, now  # since the previous shard was written: sums to the loop's wall time
                tally.tokens += stats["tokens"]
                tally.rows += len(records)
                tally.wastes.append(stats["padding_waste"])
                yield k, {"rows": len(records), "tokens": stats["tokens"], "seconds": round(dt, 3),
                          "padding_waste": round(stats["padding_waste"], 4), "packing": stats["packing"]}
                bar.update(len(records))
                el = time.perf_counter() - tally.started
                bar.set_postfix(tok_s=f"{tally.tokens / el:,.0f}", rows_s=f"{tally.rows / el:,.1f}")
        bar.close()
