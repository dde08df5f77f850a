"""The files of a scoring output folder (``data-select score --out scores/NAME``), shared by the writer and merge.

::

    scores/NAME/
      meta.json                 configuration identity, pool record, options, code versions, counts (after merge)
      conversion_rejects.jsonl  rows rejected while reading the pool (before any model compute)
      shards/shard-000042.parquet  one finished unit of work (written atomically; its presence = done)
      progress.jsonl            one line per finished shard (rows, tokens, seconds, padding)
      scores.parquet            the merged table: one row per scored pool row
      rejects.jsonl             every rejected row with its reason
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError

SHARD_DIR = "shards"
META = "meta.json"
CONVERSION_REJECTS = "conversion_rejects.jsonl"
PROGRESS = "progress.jsonl"
SCORES = "scores.parquet"
REJECTS = "rejects.jsonl"
# Everything a run writes: what --overwrite removes.
RUN_FILES = (SHARD_DIR, SCORES, REJECTS, PROGRESS, CONVERSION_REJECTS, META)


def shard_path(out: Path, k: int) -> Path:
    return Path(out) / SHARD_DIR / f"shard-{k:06d}.parquet"


def read_meta(out: Path) -> dict[str, Any]:
    path = Path(out) / META
    if not path.exists():
        raise UserError(f"{out}: no {META}; is this a `data-select score` output folder?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err


def publish_meta(out: Path, meta: dict[str, Any], rank: int, timeout_s: float = 1800.0) -> None:
    """Rank 0 writes ``meta.json``; every other rank waits until it holds this run's identity, before any shard.

    Rank 0 refuses a folder that holds shards without a meta.json (another run's leftovers); without this wait a
    fast rank's first shard could land before a slow rank 0 had written it, and rank 0 would stop the whole job.
    Waiting for this run's ``identity`` (not just for the file) matters under ``--overwrite``: the old
    configuration's meta.json is there from the start, and a rank that went ahead on it could skip the old run's
    shards as done, or write one that rank 0 then clears with the old files.
    """
    import time

    from data_selection.atomic import write_json_atomic

    if rank == 0:
        write_json_atomic(Path(out) / META, meta)
        return
    wanted = json.loads(json.dumps(meta.get("identity"), default=str))  # as it reads back from the file
    path = Path(out) / META
    deadline = time.monotonic() + timeout_s
    while True:
        found = _identity_in(path)
        if found == wanted:
            return
        if time.monotonic() > deadline:
            what = "no meta.json" if found is _MISSING else "another configuration's meta.json"
            raise UserError(f"{out}: rank {rank} waited {timeout_s:.0f} s for rank 0 to write {META} of this run "
                            f"(found {what}); did rank 0 fail?")
        time.sleep(0.2)


_MISSING = object()


def _identity_in(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("identity")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return _MISSING


def missing_shards(out: Path, num_shards: int) -> list[int]:
    return [k for k in range(num_shards) if not shard_path(out, k).exists()]


def finished_shard_frames(out: Path, command: str) -> tuple[dict[str, Any], list]:
    """(meta.json, every shard as a DataFrame) under the merge lock; a clear error while shards are missing.

    ``command`` names the job that writes the shards (``data-select score``, ``data-select verify``), for the
    error's advice. The caller writes its merged files while ``out/.merge.lock`` is held: keep the returned frames
    in the ``with merge_lock(out)`` block of the caller.
    """
    import pyarrow.parquet as pq

    meta = read_meta(out)
    n = int(meta["num_shards"])
    missing = missing_shards(out, n)
    if missing:
        raise UserError(f"{out}: {len(missing)} of {n} shards are not finished yet (first: shard {missing[0]}); "
                        f"re-run the same `{command}` command to finish them")
    return meta, [pq.read_table(shard_path(out, k)).to_pandas() for k in range(n)]


def append_progress(out: Path, record: dict[str, Any]) -> None:
    """Append one line to ``out/progress.jsonl`` under its lock, so a merging rank never reads half a line."""
    from filelock import FileLock

    with FileLock(str(Path(out) / ".progress.lock")), open(Path(out) / PROGRESS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_progress(out: Path) -> list[dict[str, Any]]:
    """The progress lines (under the same lock), the last one per shard: a shard redone after a kill counts once."""
    from filelock import FileLock

    from data_selection.jsonl import read_jsonl

    path = Path(out) / PROGRESS
    if not path.exists():
        return []
    with FileLock(str(Path(out) / ".progress.lock")):
        lines = read_jsonl(path)
    return list({(x.get("checkpoint"), x.get("shard", i)): x for i, x in enumerate(lines)}.values())


def merge_lock(out: Path):
    """The lock every merge of ``out`` holds, so two ranks finishing together write the merged files once."""
    from filelock import FileLock

    return FileLock(str(out / ".merge.lock"))
