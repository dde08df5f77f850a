"""``meta.json`` of a sharded run: rank 0 writes it, every other rank waits for this run's before any shard."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from data_selection.atomic import write_json_atomic
from data_selection.command_line import UserError
from data_selection.shards.layout import META


def publish_meta(out: Path, meta: dict[str, Any], rank: int, timeout_s: float = 1800.0) -> None:
    """Rank 0 writes ``meta.json``; every other rank waits until it holds this run's identity, before any shard.

    Rank 0 refuses a folder that holds shards without a meta.json (another run's leftovers); without this wait a
    fast rank's first shard could land before a slow rank 0 had written it, and rank 0 would stop the whole job.
    Waiting for this run's ``identity`` (not just for the file) matters under ``--overwrite``: the old
    configuration's meta.json is there from the start, and a rank that went ahead on it could skip the old run's
    shards as done, or write one that rank 0 then clears with the old files.
    """
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
