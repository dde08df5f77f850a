"""``data-select score-checkpoints``: the early-token losses TEMP reads, at every perturbed checkpoint.

Two runs into one folder (:mod:`data_selection.scoring.checkpoint_layout`), the second after the first::

    data-select score-checkpoints --perturb perturb/qwen3b_gaussian    --scores scores/POOL --out scores/POOL_temp
    data-select score-checkpoints --perturb perturb/qwen3b_directional --scores scores/POOL --out scores/POOL_temp

* Gaussian checkpoints: L^(100) of every row ``--scores`` scored. Each row is encoded exactly as ``score``
  encoded it (LLaMA-Factory's template, the same template/cutoff_len/system prompt/tokenizer, read from
  ``--scores``'s meta.json), then cut after its 100th label token **before** the forward pass: the prompt stays
  whole, the response keeps 100 tokens. In a causal model those 100 losses equal the first 100 of a full pass.
* Directional checkpoints: L^(100) and L^(1000) (1,000-token prefixes) of the rows that survive the difficulty
  filter (:func:`data_selection.selectors.temp.difficulty_survivors` on ``--scores`` and the Gaussian results in
  ``--out``; ``--rows all`` scores every row instead).

Checkpoints are regenerated from the perturbation manifest (:mod:`data_selection.perturb.sequence`), never
read from disk. Work = (checkpoint, shard): each rank walks checkpoints 1..J in order, regenerating each once,
and scores its shards of it; ``shards/ckpt-03/shard-000042.parquet`` written atomically is finished work, so a
re-run skips it; torchrun ranks share the shards; an identity check in meta.json refuses to mix
configurations; the rank that finishes last merges everything into ``scores.parquet``.

Batches go through :func:`data_selection.scoring.forward.score_sequences` with ``score``'s ``--packing``
(packed rows, variable-length attention), and ``--verify`` runs ``score``'s bounded self-check
(:mod:`data_selection.scoring.self_check`) on the first checkpoint this rank scores, i.e. on perturbed weights.
A prefix is a prefix of the full encoding, so in a causal model its losses are the full run's first positions
(tests/data_selection/test_score_checkpoints.py checks this against full-length runs).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from llamafactory.extras.constants import IGNORE_INDEX
from tqdm.auto import tqdm

from data_selection.atomic import atomic_directory, write_parquet_atomic
from data_selection.command_line import UserError
from data_selection.device import use_device
from data_selection.encoding import TemplateEncoder, load_tokenizer
from data_selection.options.score_checkpoints import ROWS, CheckpointScoreOptions, command_line
from data_selection.perturb.manifest import read_manifest
from data_selection.perturb.noise import default_threads
from data_selection.perturb.sequence import open_sequence
from data_selection.scores_table import SCORE_READ_COLUMNS, load_scored_pool, load_scores
from data_selection.scoring.checkpoint_layout import (
    FEATURES,
    PREFIX,
    TempScores,
    feature_column,
    kind_dir,
    read_kind,
    scores_signature,
)
from data_selection.scoring.checkpoint_shards import merge_checkpoint_shards, shard_file, shard_frame
from data_selection.scoring.forward import score_sequences
from data_selection.scoring.layout import SCORES
from data_selection.scoring.logprobs import auto_chunk_tokens
from data_selection.scoring.runner import encode_rows, load_model
from data_selection.scoring.self_check import check_against_full_forward, check_windows
from data_selection.scoring.varlen import resolve_packing
from data_selection.selectors.temp import difficulty_survivors
from data_selection.shards.driver import Dist, ShardedRun, ShardJob, run_sharded
from data_selection.shards.identity import code_version
from data_selection.shards.layout import META, REJECTS, read_meta
from data_selection.shards.plan import plan_by_cost

__all__ = ["ROWS", "CheckpointScoreOptions", "run_score_checkpoints", "shard_file", "merge_checkpoint_shards",
           "prefix_encoding", "adopt_gaussian"]


def prefix_encoding(input_ids, labels, k: int):
    """(input_ids, labels) cut right after the ``k``-th label token (unchanged when there are fewer)."""
    lab = np.asarray(labels, dtype=np.int64)
    pos = np.flatnonzero(lab != IGNORE_INDEX)
    cut = int(pos[k - 1]) + 1 if len(pos) > k else len(lab)
    return np.asarray(input_ids[:cut], dtype=np.int64), lab[:cut]


def _rows_to_score(opts, kind: str, table, manifest) -> tuple[list[int], dict[str, Any]]:
    mode = opts.rows if opts.rows != "auto" else ("all" if kind == "gaussian" else "survivors")
    if mode == "survivors" and kind == "gaussian":
        raise UserError("--rows survivors is for directional checkpoints: the Gaussian scores define the survivors")
    if mode == "all":
        return sorted(int(r) for r in table["row"]), {"mode": "all", "count": len(table)}
    source = opts.gaussian or opts.out
    gauss, gmeta, grej = read_kind(source, "gaussian", " first: the directional rows are its survivors")
    if gmeta.get("scores_signature") != scores_signature(read_meta(Path(opts.scores))):
        raise UserError(f"{kind_dir(source, 'gaussian')} was scored on another --scores than {opts.scores}")
    temp = TempScores(folder=source, gaussian=gauss, directional=None, meta={"gaussian": gmeta},
                      rejected={"gaussian": grej})
    rows, diff = difficulty_survivors(table, temp, opts.over_length, opts.temp_checkpoint, opts.temp_init_label_num)
    for w in diff.warnings:
        print(f"warning: {w}")
    facts = {k: diff.facts[k] for k in ("chosen_checkpoint", "chosen_ratio", "ratios", "choice", "survivors")}
    return [int(r) for r in rows], {"mode": "survivors", "count": len(rows), "over_length": opts.over_length,
                                    "temp_checkpoint": opts.temp_checkpoint,
                                    "temp_init_label_num": opts.temp_init_label_num, "difficulty": facts}


GAUSSIAN_RESULTS = (META, SCORES, REJECTS)  # what select and the survivors read of OUT/gaussian


def adopt_gaussian(source: str | Path, out: str | Path, overwrite: bool) -> bool:
    """Copy the finished Gaussian results of ``source`` into ``out``/gaussian (byte for byte, atomically as one
    folder); ``True`` when copied, ``False`` when ``out`` already holds the same bytes."""
    src, dst = kind_dir(source, "gaussian"), kind_dir(out, "gaussian")
    if src.resolve() == dst.resolve():
        return False
    read_kind(source, "gaussian", " first (--gaussian names its folder)")  # finished, or a clear error
    files = [f for f in GAUSSIAN_RESULTS if (src / f).exists()]
    if dst.exists():
        same = all((dst / f).exists() and (dst / f).read_bytes() == (src / f).read_bytes() for f in files)
        if same:
            return False
        if not overwrite:
            raise UserError(f"{dst} holds other Gaussian results than --gaussian {src}; pass --overwrite to replace "
                            "them (or choose another --out)")
    with atomic_directory(dst) as tmp:
        for f in files:
            (tmp / f).write_bytes((src / f).read_bytes())
    return True


def _score_shard(model, encoder, pool, cache: dict, k: int, rows: list[int], table, opts, prefix: int,
                 features: tuple[int, ...], device: str, chunk: int, packing: str) -> tuple[list[dict], dict]:
    if k not in cache:
        cache[k] = _encode(encoder, pool, rows, table, prefix)
    records, seqs = cache[k]
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    losses, stats = score_sequences(model, seqs, batch_tokens=opts.batch_tokens, chunk_tokens=chunk, device=device,
                                    pad_id=pad_id, packing=packing)
    out = []
    for r in rows:
        rec = dict(records[r])
        tok = losses.get(r)
        if tok is not None:
            if not bool(torch.isfinite(tok).all()):
                rec["reject_reason"] = "non-finite loss"
            for f in features:
                rec[f"loss_first_{f}"] = float(tok[:f].double().mean())
        out.append(rec)
    return out, stats


def _encode(encoder, pool, rows: list[int], table, prefix: int):
    records, encoded = encode_rows(encoder, pool.converted, rows, [])
    seqs = {}
    for r, enc in encoded.items():
        rec = records[r]
        if rec["id"] != table.at[r, "id"]:
            raise UserError(f"pool row {r} has id {rec['id']!r} now but {table.at[r, 'id']!r} when it was scored: "
                            "the pool changed since `data-select score`")
        ids, labels = prefix_encoding(enc.input_ids, enc.labels, prefix)
        seqs[r] = (ids, labels)
        rec["n_scored_tokens"] = min(prefix, enc.n_response_tokens)
    keep = ("id", "row", "n_prompt_tokens", "n_response_tokens", "n_scored_tokens", "reject_reason")
    return {r: {c: rec.get(c) for c in keep} for r, rec in records.items()}, seqs


def run_score_checkpoints(opts: CheckpointScoreOptions) -> dict[str, Any]:
    """Score (or finish scoring) one perturbation's checkpoints. Returns a summary dict; see the module docstring."""
    opts.validate()
    jobs: list[_Checkpoints] = []

    def setup(dist: Dist) -> ShardJob:
        device = use_device(opts.device, dist.local_rank)  # before any work: this rank's GPU, or why there is none
        manifest = read_manifest(opts.perturb)
        kind = manifest["kind"]
        prefix = opts.prefix or PREFIX[kind]
        features = tuple(f for f in FEATURES[kind] if f <= prefix) or (prefix,)
        table, smeta, _ = load_scores(opts.scores, SCORE_READ_COLUMNS)
        signature = scores_signature(smeta)
        _check_same_model(manifest, smeta, opts)
        table = table.set_index(table["row"].to_numpy(), drop=False)  # .at[row, column]
        if opts.gaussian and kind != "directional":
            raise UserError("--gaussian names the Gaussian results a directional run builds on; this perturbation "
                            f"is {kind}")
        rows, rows_facts = _rows_to_score(opts, kind, table.reset_index(drop=True), manifest)
        num = int(manifest["num_checkpoints"])
        identity = {"kind": kind, "perturb_digest": manifest["digest"], "scores_signature": signature,
                    "prefix": prefix, "rows_digest": hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16],
                    "dtype": opts.dtype, "shard_rows": opts.shard_rows}
        costs = [int(table.at[r, "n_prompt_tokens"]) + min(prefix, int(table.at[r, "n_response_tokens"]))
                 for r in rows]

        def meta(num_shards: int) -> dict[str, Any]:
            return {
                "identity": identity, "kind": kind, "num_checkpoints": num, "prefix": prefix,
                "features": list(features),
                "columns": [feature_column(kind, j, f) for j in range(1, num + 1) for f in features],
                "scores_dir": str(opts.scores), "scores_signature": signature, "pool": smeta.get("pool"),
                "template": smeta.get("template"), "cutoff_len": smeta.get("cutoff_len"),
                "perturb": {"dir": str(opts.perturb), "digest": manifest["digest"], "command": manifest.get("command"),
                            "kind": kind, "options": manifest.get("options")},
                "rows": rows_facts, "gaussian_from": str(opts.gaussian) if opts.gaussian else None,
                "num_shards": num_shards, "tokens_planned_per_checkpoint": int(sum(costs)),
                "options": {f.name: getattr(opts, f.name) for f in fields(opts)}, "command": command_line(opts),
                "code_version": code_version(),
            }

        job = _Checkpoints(opts, manifest, prefix, features, table, smeta, device, len(rows))
        jobs.append(job)
        out = kind_dir(opts.out, kind)
        return ShardJob(out=out, identity=identity, identity_keys=tuple(identity), overwrite=opts.overwrite,
                        plan=lambda: plan_by_cost(rows, costs, opts.shard_rows), meta=meta, work=job.work,
                        merge=lambda: merge_checkpoint_shards(out), outputs=(SCORES,), passes=num,
                        before_check=(lambda: adopt_gaussian(opts.gaussian, opts.out, opts.overwrite))
                        if opts.gaussian else None)

    t0 = time.perf_counter()
    _, run = run_sharded(setup)
    job = jobs[0]
    summary: dict[str, Any] = {"kind": job.kind, "rank": run.rank, "world_size": run.world, "rows": job.num_rows,
                               "checkpoints": run.passes, "shards": len(run.shards), "prefix": job.prefix,
                               "units_pending": len(run.pending), **job.facts,
                               "seconds": round(time.perf_counter() - t0, 2), "tokens_now": job.tokens,
                               "merged": not run.missing}
    if run.missing:
        summary["waiting_for_units"] = len(run.missing)
    else:
        summary.update(run.merged)
    return summary


class _Checkpoints:
    """One rank's (checkpoint, shard) units: the model loaded once, each checkpoint regenerated once, in order."""

    def __init__(self, opts: CheckpointScoreOptions, manifest, prefix: int, features: tuple[int, ...], table, smeta,
                 device: str, num_rows: int):
        self.opts, self.manifest, self.kind, self.prefix = opts, manifest, manifest["kind"], prefix
        self.features, self.table, self.smeta, self.device, self.num_rows = features, table, smeta, device, num_rows
        self.tokens = 0
        self.facts: dict[str, Any] = {}  # device, dtype, attn, chunk_tokens, packing, self-check, regeneration time

    def work(self, run: ShardedRun):
        opts, manifest, smeta, device, facts = self.opts, self.manifest, self.smeta, self.device, self.facts
        todo: dict[int, list[int]] = {}
        for j, k in run.pending:
            todo.setdefault(j, []).append(k)
        model_opts = _ModelOpts(opts.model or manifest["base_model"]["name_or_path"], opts.dtype, opts.attn,
                                opts.trust_remote_code)
        model, dtype, attn = load_model(model_opts, device)
        try:
            packing = resolve_packing(opts.packing, model)
        except ValueError as err:
            raise UserError(f"--packing {opts.packing}: {err}") from err
        chunk = opts.chunk_tokens or auto_chunk_tokens(model.get_output_embeddings().weight.shape[0])
        tokenizer = load_tokenizer(model_opts.model, smeta.get("options", {}).get("tokenizer") or None,
                                   opts.trust_remote_code)
        encoder = TemplateEncoder(tokenizer, smeta["template"], int(smeta["cutoff_len"]))
        pool = load_scored_pool(smeta, opts.scores)
        windows = check_windows(encoder, pool.converted, run.shards[run.pending[0][1]]) if opts.verify else {}
        threads = opts.threads or max(1, default_threads() // run.world)
        master = device if opts.master_device == "auto" else opts.master_device
        seq = open_sequence(manifest, master, opts.model, opts.target, threads, opts.trust_remote_code)
        facts.update(device=device, dtype=str(dtype).replace("torch.", ""), attn=attn, chunk_tokens=chunk,
                     packing=packing)
        cache: dict[int, Any] = {}
        t0 = time.perf_counter()
        bar = tqdm(total=sum(len(run.shards[k]) for _, k in run.pending), unit="row",
                   desc=f"{self.kind} checkpoints (rank {run.rank})", disable=run.rank != 0)
        regen = 0.0
        for j in range(1, run.pending[-1][0] + 1):
            tr = time.perf_counter()
            seq.advance()
            if j not in todo:
                regen += time.perf_counter() - tr
                continue
            seq.load_into(model)
            regen += time.perf_counter() - tr
            if opts.verify and "self_check_max_abs_diff" not in facts:  # on the perturbed weights
                facts["self_check_max_abs_diff"] = check_against_full_forward(model, windows, device, chunk, dtype,
                                                                              opts.packing)
            for k in todo[j]:
                ts = time.perf_counter()
                records, stats = _score_shard(model, encoder, pool, cache, k, run.shards[k], self.table, opts,
                                              self.prefix, self.features, device, chunk, packing)
                write_parquet_atomic(run.path((j, k)), shard_frame(records, self.features))
                dt = time.perf_counter() - ts
                self.tokens += stats["tokens"]
                yield (j, k), {"rows": len(records), "tokens": stats["tokens"], "seconds": round(dt, 3),
                               "padding_waste": round(stats["padding_waste"], 4), "packing": stats["packing"]}
                bar.update(len(records))
                bar.set_postfix(ckpt=j, tok_s=f"{self.tokens / (time.perf_counter() - t0):,.0f}")
        bar.close()
        facts["regenerate_seconds"] = round(regen, 2)


@dataclass
class _ModelOpts:  # what scoring.runner.load_model reads
    model: str
    dtype: str
    attn: str
    trust_remote_code: bool


def _check_same_model(manifest: dict, smeta: dict, opts) -> None:
    base = manifest["base_model"]
    scored = smeta.get("model", {})
    a, b = base.get("weights_digest"), scored.get("weights_digest")
    if (a and b and a != b) or (not (a and b) and base.get("name_or_path") != scored.get("name_or_path")):
        raise UserError(f"--perturb {opts.perturb} perturbs {base.get('name_or_path')} but --scores {opts.scores} was "
                        f"scored by {scored.get('name_or_path')} (weights digest {b} vs {a}): TEMP compares "
                        "checkpoints with the model that scored the pool")

