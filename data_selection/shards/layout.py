"""The files of a sharded run's output folder, shared by every job that writes one and by its merge.

::

    OUT/
      meta.json                 configuration identity, the job's record, options, code versions, counts (after merge)
      conversion_rejects.jsonl  rows rejected while reading the pool (before any work)
      shards/shard-000042.parquet  one finished unit of work (written atomically; its presence = done)
      shards/ckpt-03/shard-000042.parquet  the same, for a job that passes over the shards once per checkpoint
      progress.jsonl            one line per finished shard (rows, seconds, the job's own counters)
      rejects.jsonl             every rejected row with its reason
      ...                       the job's merged output (scores.parquet, verified.parquet, steps.parquet)
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
REJECTS = "rejects.jsonl"
# Everything a run writes besides its merged output: what --overwrite removes (with the job's outputs).
RUN_FILES = (SHARD_DIR, REJECTS, PROGRESS, CONVERSION_REJECTS, META)


def shard_path(out: Path, k: int) -> Path:
    return Path(out) / SHARD_DIR / f"shard-{k:06d}.parquet"


def pass_shard_path(out: Path, checkpoint: int, k: int) -> Path:
    """Shard ``k`` of pass ``checkpoint`` (1-based) of a job that passes over its shards once per checkpoint."""
    return Path(out) / SHARD_DIR / f"ckpt-{checkpoint:02d}" / f"shard-{k:06d}.parquet"


def unit_path(out: Path, unit: int | tuple[int, int]) -> Path:
    """The file of a unit of work: shard ``k``, or ``(checkpoint, k)``."""
    return pass_shard_path(out, *unit) if isinstance(unit, tuple) else shard_path(out, unit)


def units(shards: list[int], passes: int = 0) -> list[int | tuple[int, int]]:
    """The units of these shards: the shards themselves, or every (checkpoint, shard), checkpoint by checkpoint."""
    return [(j, k) for j in range(1, passes + 1) for k in shards] if passes else list(shards)


def missing_units(out: Path, num_shards: int, passes: int = 0) -> list[int | tuple[int, int]]:
    return [u for u in units(list(range(num_shards)), passes) if not unit_path(out, u).exists()]


def missing_shards(out: Path, num_shards: int) -> list[int]:
    return [k for k in range(num_shards) if not shard_path(out, k).exists()]


def read_meta(out: Path) -> dict[str, Any]:
    path = Path(out) / META
    if not path.exists():
        raise UserError(f"{out}: no {META}; is this a `data-select score` output folder?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err
