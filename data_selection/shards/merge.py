"""What every merge of a sharded run shares: one lock, and the finished shards read back in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from filelock import FileLock

from data_selection.command_line import UserError
from data_selection.shards.layout import missing_shards, read_meta, shard_path


def merge_lock(out: Path) -> FileLock:
    """The lock every merge of ``out`` holds, so two ranks finishing together write the merged files once."""
    return FileLock(str(Path(out) / ".merge.lock"))


def finished_shard_frames(out: Path, command: str) -> tuple[dict[str, Any], list]:
    """(meta.json, every shard as a DataFrame) under the merge lock; a clear error while shards are missing.

    ``command`` names the job that writes the shards (``data-select score``, ``data-select verify``), for the
    error's advice. The caller writes its merged files while ``out/.merge.lock`` is held: keep the returned frames
    in the ``with merge_lock(out)`` block of the caller.
    """
    meta = read_meta(out)
    n = int(meta["num_shards"])
    missing = missing_shards(out, n)
    if missing:
        raise UserError(f"{out}: {len(missing)} of {n} shards are not finished yet (first: shard {missing[0]}); "
                        f"re-run the same `{command}` command to finish them")
    return meta, [pq.read_table(shard_path(out, k)).to_pandas() for k in range(n)]
