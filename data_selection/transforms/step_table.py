"""The per-step PIR table: one shard file per work unit, merged into ``OUT/steps.parquet``.

One row per input row that reached the PIR job (loader rejects never do): its reason for passing through
unchanged (``""`` when PIR was computed), its token counts, and per step its character span, type, sentence
count, token count, PIR (NaN for progressive steps) and what typed it (``marker``, ``model`` for
``--step_typer``, ``unmarked``). :mod:`.runner` writes the shards and :mod:`.output`
reads the merged table; both import the schema from here, so the imports run one way
(runner → output → step_table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_selection.atomic import write_parquet_atomic
from data_selection.shards.layout import shard_path

STEPS_TABLE = "steps.parquet"


def shard_schema():
    ints, floats = pa.list_(pa.int64()), pa.list_(pa.float64())
    return pa.schema([
        ("row", pa.int64()), ("id", pa.string()), ("reason", pa.string()),
        ("n_response_tokens", pa.int64()), ("truncated", pa.bool_()),
        ("n_answer_tokens", pa.int64()), ("answer_loss", pa.float64()),
        ("step_start", ints), ("step_end", ints), ("step_type", pa.list_(pa.string())),
        ("step_sentences", ints), ("step_tokens", ints), ("step_pir", floats),
        ("step_source", pa.list_(pa.string())),
    ])  # fmt: skip


def write_shard(path: Path, records: list[dict[str, Any]]) -> None:
    """One shard's records, written atomically (temporary file and rename)."""
    write_parquet_atomic(path, pa.Table.from_pylist(records, schema=shard_schema()))


def merge_steps(out: Path, num_shards: int):
    """All shards as one table sorted by row, written to ``OUT/steps.parquet``; returned as a DataFrame."""
    tables = [pq.read_table(shard_path(out, k)) for k in range(num_shards)]
    table = pa.concat_tables(tables).sort_by("row") if tables else shard_schema().empty_table()
    write_parquet_atomic(out / STEPS_TABLE, table)
    return table.to_pandas()
