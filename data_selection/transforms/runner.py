"""``data-select prune-steps``: the resumable, sharded, multi-GPU PIR job, then the pruned subset.

Work plan (the scorer's, :mod:`data_selection.scoring.runner`):

1. The subset is loaded and converted the way LLaMA-Factory reads it (:func:`data_selection.sources.load_pool`).
2. Its rows are cut into length-sorted shards and dealt to ranks (``torchrun``: ``RANK``/``WORLD_SIZE``).
3. A rank encodes each row with LLaMA-Factory's template (:class:`data_selection.encoding.TemplateEncoder`),
   splits and types its steps (:mod:`.steps`), encodes one variant per functional step and computes every
   step's PIR (:mod:`.pir`). A shard is written as ``OUT/shards/shard-000042.parquet`` through a temporary file
   and a rename; a re-run skips finished shards, and ``meta.json``'s identity (model, template, cutoff, dtype,
   pool content, segmentation rule and phrase lists) refuses to mix configurations.
4. When every shard exists, the rank that finishes last merges them into ``OUT/steps.parquet`` and writes the
   pruned subset for ``--ratio`` (:mod:`.output`). The ratio is not part of the identity: the same PIR values
   serve any ratio and name, and a re-run with another ``--ratio`` only rewrites the subset (no model needed).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from tqdm.auto import tqdm

from data_selection.command_line import UserError
from data_selection.device import use_device
from data_selection.options.prune_steps import PruneOptions, checked_markers, dataset_info_path, work_dir
from data_selection.registry import is_ours, read_dataset_info
from data_selection.scoring.identity import encoding_identity
from data_selection.scoring.logprobs import auto_chunk_tokens
from data_selection.scoring.runner import load_model, prepare
from data_selection.scoring.self_check import check_against_full_forward, check_windows
from data_selection.shards.driver import Dist, ShardedRun, ShardJob, run_sharded
from data_selection.shards.identity import code_version
from data_selection.shards.plan import plan_shards
from data_selection.subset import subset_paths
from data_selection.transforms.output import write_pruned
from data_selection.transforms.pir import (
    ENCODING_FAILED,
    NON_FINITE,
    OVER_CUTOFF,
    _shared_prefix,
    encode_variants,
    pir_batched,
    pir_prefix_cached,
)
from data_selection.transforms.step_table import write_shard
from data_selection.transforms.step_typer import marker_sources, step_typer_for
from data_selection.transforms.steps import segment

__all__ = ["PruneOptions", "run_prune"]

PIR_VERSION = 2  # bump when the definition of the stored values changes (answer tokens, segmentation code)
_INFER_DTYPE = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
IDENTITY_KEYS = ("model", "tokenizer", "template", "cutoff_len", "dtype", "pool_fingerprint", "shard_rows",
                 "system_prompt", "column_mapping", "segmentation", "pir_version")


def identity_of(opts: PruneOptions, pool, config) -> dict[str, Any]:
    return {
        **encoding_identity(opts, pool, config),
        "segmentation": {k: getattr(opts, k) for k in PruneOptions.SEGMENTATION},
        "pir_version": PIR_VERSION,
    }


def _record(ex: dict[str, Any]) -> dict[str, Any]:
    return {"row": int(ex["_row"]), "id": ex["id"], "reason": "", "n_response_tokens": -1, "truncated": False,
            "n_answer_tokens": 0, "answer_loss": float("nan"), "step_start": [], "step_end": [], "step_type": [],
            "step_sentences": [], "step_tokens": [], "step_pir": [], "step_source": []}


def _fill(rec: dict[str, Any], rv, answer_loss: float, pirs: list[float]) -> None:
    values = [float("nan")] * len(rec["step_type"])
    for i, p in zip(rv.functional, pirs):
        values[i] = p
    rec.update(n_answer_tokens=rv.n_answer_tokens, answer_loss=answer_loss, step_tokens=rv.step_tokens,
               step_pir=values)
    if not (math.isfinite(answer_loss) and all(math.isfinite(p) for p in pirs)):
        rec["reason"] = NON_FINITE


class ShardWorker:
    """Everything one rank needs to turn a shard's rows into records (model loaded once)."""

    def __init__(self, opts: PruneOptions, encoder, markers, model, device: str, chunk_tokens: int, typer=None):
        self.opts, self.encoder, self.markers, self.typer = opts, encoder, markers, typer
        self.model, self.device, self.chunk_tokens = model, device, chunk_tokens
        tok = encoder.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def analyse(self, ex: dict[str, Any]):
        """(record, RowVariants or None): everything before the model."""
        rec = _record(ex)
        try:
            full = self.encoder.encode(ex)
        except Exception as err:  # a row the template cannot render passes through unchanged
            rec["reason"] = f"{ENCODING_FAILED}: {type(err).__name__}: {err}"
            return rec, None
        rec.update(n_response_tokens=full.n_response_tokens, truncated=full.truncated)
        if full.truncated:
            rec["reason"] = OVER_CUTOFF
            return rec, None
        seg = segment(ex["_response"][0]["content"], self.markers, self.opts.min_sentences,
                      self.opts.marker_boundaries)
        if isinstance(seg, str):
            rec["reason"] = seg
            return rec, None
        if self.typer is not None:
            seg, sources = self.typer.retype(seg, self.markers)
        else:
            sources = marker_sources(seg, self.markers)
        rec["step_source"] = sources
        rec.update(step_start=[s.start for s in seg.steps], step_end=[s.end for s in seg.steps],
                   step_type=[s.type for s in seg.steps], step_sentences=[s.sentences for s in seg.steps],
                   step_pir=[float("nan")] * len(seg.steps))
        rv = encode_variants(self.encoder, ex, seg, rec["row"], full)
        if isinstance(rv, str):
            rec["reason"] = rv
            return rec, None
        return rec, rv

    def run(self, examples, on_row=lambda: None) -> tuple[list[dict[str, Any]], dict[str, int]]:
        records: list[dict[str, Any]] = []
        group: list[tuple[dict[str, Any], Any]] = []
        stats = {"rows": 0, "pir_rows": 0, "variants": 0, "forward_tokens": 0}
        budget = 4 * self.opts.batch_tokens

        def flush() -> None:
            if not group:
                return
            res = pir_batched(self.model, [rv for _, rv in group], batch_tokens=self.opts.batch_tokens,
                              chunk_tokens=self.chunk_tokens, device=self.device, pad_id=self.pad_id)
            for rec, rv in group:
                _fill(rec, rv, *res[rv.row])
            group.clear()

        for ex in examples:
            rec, rv = self.analyse(ex)
            records.append(rec)
            stats["rows"] += 1
            if rv is not None:
                stats["pir_rows"] += 1
                stats["variants"] += len(rv.seqs)
                ids0 = rv.seqs[0][0]
                if self.opts.prefix_cache:
                    stats["forward_tokens"] += len(ids0) + sum(len(s[0]) - _shared_prefix(ids0, s[0])
                                                               for s in rv.seqs[1:])
                    _fill(rec, rv, *pir_prefix_cached(self.model, rv, self.device))
                else:
                    stats["forward_tokens"] += sum(len(s[0]) for s in rv.seqs)
                    group.append((rec, rv))
                    if sum(len(s[0]) for _, g in group for s in g.seqs) >= budget:
                        flush()
            on_row()
        flush()
        return records, stats


def _refuse_to_overwrite_the_input(opts: PruneOptions, pool, info_path: Path) -> None:
    if pool.attr.load_from != "file":
        return
    target = subset_paths(info_path.parent, opts.name)["data"].resolve()
    name = Path(pool.attr.dataset_name)
    if target in (name.resolve(), (Path(opts.dataset_dir) / name).resolve()):
        raise UserError(f"--name {opts.name!r} would write {target}, the input file itself; choose a new name, "
                        f"e.g. {opts.name}_pir30")


def run_prune(opts: PruneOptions) -> dict[str, Any]:
    """Compute (or finish computing) PIR values, then write the pruned subset. Returns a summary dict."""
    mk = checked_markers(opts)
    info_path = dataset_info_path(opts)
    if opts.register:  # fail before the slow part: corrupted file or an entry we may not replace
        existing = read_dataset_info(info_path).get(opts.name)
        if existing is not None and not is_ours(existing) and not opts.force:
            raise UserError(f"{info_path}: entry {opts.name!r} was not created by data-select; pick another "
                            "--name or pass --force to replace it")
    out = work_dir(opts)
    facts: dict[str, Any] = {}
    totals = {"rows": 0, "pir_rows": 0, "variants": 0, "forward_tokens": 0}
    clock = {"started": time.perf_counter()}

    def setup(dist: Dist) -> ShardJob:
        device = use_device(opts.device, dist.local_rank)  # before any work: this rank's GPU, or why there is none
        config, tokenizer, encoder, pool = prepare(opts)
        _refuse_to_overwrite_the_input(opts, pool, info_path)
        identity = identity_of(opts, pool, config)
        metas: list[dict[str, Any]] = []

        def meta(num_shards: int) -> dict[str, Any]:
            clock["started"] = time.perf_counter()
            metas.append({
                "identity": identity,
                "pool": pool.describe(),
                "model": identity["model"],
                "template": opts.template,
                "cutoff_len": opts.cutoff_len,
                "dtype": opts.dtype,
                "segmentation": identity["segmentation"],
                "num_shards": num_shards,
                "code_version": code_version(),
                "meta_columns": pool.meta_columns,
            })
            return metas[-1]

        def work(run: ShardedRun):
            yield from _pir_pending(run, opts, mk, encoder, pool, device, totals, facts)

        def finish() -> dict[str, Any]:
            with FileLock(str(out / ".finalize.lock")):
                return write_pruned(opts, mk, pool, encoder, out, metas[-1]["num_shards"], metas[-1])

        return ShardJob(out=out, identity=identity, identity_keys=IDENTITY_KEYS, overwrite=opts.overwrite,
                        plan=lambda: plan_shards(pool.converted, opts.shard_rows), meta=meta, work=work, merge=finish)

    _, run = run_sharded(setup)
    summary: dict[str, Any] = {"rank": run.rank, "world_size": run.world, "work_dir": str(out),
                               "shards_total": len(run.shards), "shards_mine": len(run.mine),
                               "shards_done_before": len(run.mine) - len(run.pending), **facts}
    elapsed = time.perf_counter() - clock["started"]
    summary.update({f"{k}_now": v for k, v in totals.items()}, seconds=round(elapsed, 2))
    if totals["rows"]:
        summary["seconds_per_row"] = round(elapsed / totals["rows"], 4)
    if run.missing:
        summary.update(finished=False, waiting_for_shards=len(run.missing))
        return summary
    summary.update(finished=True, **run.merged)
    return summary


def _pir_pending(run: ShardedRun, opts: PruneOptions, mk, encoder, pool, device: str, totals: dict[str, int],
                 facts: dict[str, Any]):
    """PIR of this rank's pending shards, yielding (shard, progress counters) as each is written."""
    model, dtype, attn = load_model(opts, device)
    chunk = opts.chunk_tokens or auto_chunk_tokens(model.get_output_embeddings().weight.shape[0])
    facts.update(device=device, dtype=str(dtype).replace("torch.", ""), attn=attn, chunk_tokens=chunk,
                 prefix_cache=opts.prefix_cache)
    if opts.verify:
        facts["self_check_max_abs_diff"] = check_against_full_forward(
            model, check_windows(encoder, pool.converted, run.shards[run.pending[0]]), device, chunk, dtype)
    typer = None
    if opts.step_typer:
        typer = step_typer_for(opts.step_typer, opts.step_typer_template or opts.template, opts.step_typer_backend,
                               opts.trust_remote_code, _INFER_DTYPE[opts.dtype])
    worker = ShardWorker(opts, encoder, mk, model, device, chunk, typer)
    bar = tqdm(total=sum(len(run.shards[k]) for k in run.pending), unit="row", desc=f"PIR (rank {run.rank})",
               disable=run.rank != 0)
    t0 = time.perf_counter()
    for k in run.pending:
        ts = time.perf_counter()
        records, stats = worker.run(pool.converted.select(run.shards[k]), on_row=lambda: bar.update(1))
        write_shard(run.path(k), records)
        dt = time.perf_counter() - ts
        for key in totals:
            totals[key] += stats[key]
        yield k, {**stats, "seconds": round(dt, 3)}
        el = time.perf_counter() - t0
        bar.set_postfix(rows_s=f"{totals['rows'] / el:,.2f}", tok_s=f"{totals['forward_tokens'] / el:,.0f}")
    bar.close()
    if typer is not None:
        facts["step_typer"] = dict(typer.counts)
