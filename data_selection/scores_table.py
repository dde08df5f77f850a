"""The scores table: ``scores/NAME/`` as ``data-select score`` writes it, read back in one place.

A finished scoring folder holds ``scores.parquet`` (one row per scored pool row, :data:`SCORE_COLUMNS` plus, when
scored with them, :data:`STAT_COLUMNS`, the pool's meta columns and, with ``--per_token_prefix``,
``token_losses``), ``meta.json`` (the run: model, template, cutoff_len, the pool record) and ``rejects.jsonl`` (rows not scored, with row and reason). Everything that reads
it (the selectors through ``select``, ``score-checkpoints``, the reports, the study) goes through
:func:`load_scores` and :func:`load_scored_pool`; the writer (``data_selection.scoring.merge``) should take its
column lists from :data:`SCORE_COLUMNS` and :data:`STAT_COLUMNS` here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from data_selection.command_line import UserError
from data_selection.jsonl import read_jsonl
from data_selection.sources import PoolSpec, default_num_proc, load_pool

SCORE_COLUMNS = ["id", "row", "n_prompt_tokens", "n_response_tokens", "n_tokens_full", "loss_sum", "loss_mean",
                 "loss_first_100", "loss_first_1000", "truncated"]
"""The columns every ``scores.parquet`` has, in the order the merge writes them."""

STAT_COLUMNS = ["rank_mean", "rank_first_100", "rank_first_1000", "brier_topk_mean", "brier_topk_first_100",
                "brier_topk_first_1000"]
"""Optional columns, written after :data:`SCORE_COLUMNS` by ``data-select score`` since the rank and top-K Brier
statistics (docs/methods.md §1): the mean target-token rank and top-K Brier score per row, and over the first 100
and 1,000 response tokens. Tables scored before lack them; they load all the same."""

SCORE_READ_COLUMNS = ("id", "row", "n_prompt_tokens", "n_response_tokens", "loss_sum", "loss_mean",
                      "loss_first_100", "loss_first_1000", "truncated", "category", "source", "response_kind")
"""The columns the selectors and reports read (``category``/``source``/``response_kind`` when the pool has them)."""

SELECT_READ_COLUMNS = (*SCORE_READ_COLUMNS, *STAT_COLUMNS)
"""What ``data-select select`` reads: also the :data:`STAT_COLUMNS` (when the table has them), for the ``rsr`` and
``lark`` keys. Not the default of :func:`load_scores`: a reader that replaces the loss columns with another
model's (the in-loop stages of dynamic selection) must not carry the base model's ranks beside them."""


def load_scores(scores_dir: str | Path, columns: tuple[str, ...] = SCORE_READ_COLUMNS):
    """(scores DataFrame without per-token losses, meta dict, rejects list) of a scoring output folder."""
    d = Path(scores_dir)
    if not d.is_dir():
        raise UserError(f"scores folder {d} not found (run `data-select score ... --out {d}` first)")
    parquet, meta_path = d / "scores.parquet", d / "meta.json"
    for p in (meta_path, parquet):
        if not p.exists():
            raise UserError(f"{p} not found: is {d} a finished `data-select score` output? "
                            f"(unfinished runs: re-run the score command or `data-select merge --scores {d}`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{meta_path}: not valid JSON ({err})") from err
    try:
        names = pq.read_schema(parquet).names
        table = pq.read_table(parquet, columns=[c for c in columns if c in names]).to_pandas()
    except Exception as err:
        raise UserError(f"{parquet}: cannot be read as parquet ({type(err).__name__}: {err})") from err
    rejects_path = d / "rejects.jsonl"
    rejects = []
    if rejects_path.exists():
        rejects = read_jsonl(rejects_path)
    return table, meta, rejects


def load_scored_pool(meta: dict[str, Any], scores_dir: str | Path):
    """The pool the scorer read, loaded again the same way (spec recorded in meta.json)."""
    if "pool" not in meta:
        raise UserError(f"{Path(scores_dir) / 'meta.json'}: no 'pool' record; cannot find the rows' text")
    record = dict(meta["pool"])
    if not record.get("columns"):
        # Pool.describe() reports the *resolved* formatting under the spec's "formatting" key; a spec that
        # gave no columns had its formatting detected, so it must be detected again.
        record["formatting"] = ""
    spec = PoolSpec.from_dict(record)
    try:
        return load_pool(spec, num_proc=default_num_proc())
    except UserError as err:
        raise UserError(f"cannot reload the scored pool ({spec.dataset!r}, dataset_dir {spec.dataset_dir!r}, as "
                        f"recorded in {Path(scores_dir) / 'meta.json'}): {err}") from err
