"""``progress.jsonl``: one line per finished shard, appended by every rank under one lock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from filelock import FileLock

from data_selection.jsonl import read_jsonl
from data_selection.shards.layout import PROGRESS


def _lock(out: Path) -> FileLock:
    return FileLock(str(Path(out) / ".progress.lock"))


def append_progress(out: Path, record: dict[str, Any]) -> None:
    """Append one line to ``out/progress.jsonl`` under its lock, so a merging rank never reads half a line."""
    with _lock(out), open(Path(out) / PROGRESS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_progress(out: Path) -> list[dict[str, Any]]:
    """The progress lines (under the same lock), the last one per shard: a shard redone after a kill counts once."""
    path = Path(out) / PROGRESS
    if not path.exists():
        return []
    with _lock(out):
        lines = read_jsonl(path)
    return list({(x.get("checkpoint"), x.get("shard", i)): x for i, x in enumerate(lines)}.values())
