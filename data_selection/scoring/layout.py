"""The files of a scoring output folder (``data-select score --out scores/NAME``), shared by the writer and merge.

::

    scores/NAME/
      meta.json                 configuration identity, pool record, options, code versions, counts (after merge)
      conversion_rejects.jsonl  rows rejected while reading the pool (before any model compute)
      shards/shard-000042.parquet  one finished unit of work (written atomically; its presence = done)
      progress.jsonl            one line per finished shard (rows, tokens, seconds, padding)
      scores.parquet            the merged table: one row per scored pool row
      rejects.jsonl             every rejected row with its reason
      summary.json              what the run that merged did (device, self-check, rows, tokens/s; as `score` prints)

Every file but ``scores.parquet`` is the sharded-run engine's (:mod:`data_selection.shards.layout`).
"""

from __future__ import annotations

from data_selection.shards.layout import (  # noqa: F401  (their old import path)
    CONVERSION_REJECTS,
    META,
    PROGRESS,
    REJECTS,
    SHARD_DIR,
    read_meta,
    shard_path,
)

SCORES = "scores.parquet"
SUMMARY = "summary.json"
