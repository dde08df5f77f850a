"""The one driver of a resumable sharded run: a job says what its shards are and how to do, write and merge them.

:func:`run_sharded` runs the sequence every sharded command shares::

    dist env -> job setup -> output folder identity -> plan + assignment -> rank 0 publishes meta.json, the
    others wait -> this rank's pending units -> per-unit work + one progress line each -> missing units -> merge

A unit is a shard ``k``, or ``(checkpoint, k)`` for a job that passes over its shards once per checkpoint
(``ShardJob.passes``). A unit's file on disk is finished work: a re-run skips it, so killing the job at any
moment loses at most the units in flight, and re-running the same command finishes the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from data_selection.shards.identity import check_out_dir
from data_selection.shards.layout import SHARD_DIR, missing_units, unit_path, units
from data_selection.shards.meta import publish_meta
from data_selection.shards.plan import assign_shards
from data_selection.shards.progress import append_progress

Unit = Any  # int (shard k) or tuple[int, int] (checkpoint j, shard k)


class Dist(NamedTuple):
    rank: int
    world: int
    local_rank: int


def dist_env() -> Dist:
    """(rank, world size, local rank) under torchrun; (0, 1, 0) otherwise."""
    return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))


@dataclass
class ShardedRun:
    """Where a run stands on this rank; handed to the job's ``work`` and returned by :func:`run_sharded`."""

    out: Path
    rank: int
    world: int
    shards: list[list[int]]
    passes: int = 0
    mine: list[int] = field(default_factory=list)  # this rank's shards
    pending: list[Unit] = field(default_factory=list)  # this rank's units without a file, in work order
    missing: list[Unit] = field(default_factory=list)  # every rank's units without a file, after the work
    merged: dict[str, Any] | None = None  # the merge hook's result; None while units are missing

    def path(self, unit: Unit) -> Path:
        return unit_path(self.out, unit)


@dataclass
class ShardJob:
    """A job's part of a sharded run (built by the job's setup, once the rank and device are known).

    ``plan()`` -> (rows of each shard, cost of each shard: what assignment balances); ``meta(num_shards)`` ->
    meta.json's content (its ``identity`` is what other ranks wait for); ``work(run)`` does the pending units in
    ``run.pending``, writes each to ``run.path(unit)`` and yields ``(unit, progress counters)`` after each (the
    driver appends the progress line); ``merge()`` runs on the rank that finds no unit missing.
    """

    out: Path
    identity: dict[str, Any]
    identity_keys: tuple[str, ...]
    overwrite: bool
    plan: Callable[[], tuple[list[list[int]], list[int]]]
    meta: Callable[[int], dict[str, Any]]
    work: Callable[[ShardedRun], Iterable[tuple[Unit, dict[str, Any]]]]
    merge: Callable[[], dict[str, Any]]
    outputs: tuple[str, ...] = ()  # merged files --overwrite removes with the run's own
    passes: int = 0
    before_check: Callable[[], Any] | None = None  # rank 0, after the folder exists and before its identity check
    after_publish: Callable[[], Any] | None = None  # rank 0, once meta.json is written


def run_sharded(setup: Callable[[Dist], ShardJob]) -> tuple[ShardJob, ShardedRun]:
    """Run (or finish) a sharded job on this rank; see the module docstring."""
    dist = dist_env()
    job = setup(dist)  # device, pool, identity: everything that can fail on bad input, before any file is written
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    if dist.rank == 0 and job.before_check is not None:
        job.before_check()
    check_out_dir(out, job.identity, job.overwrite, dist.rank, job.identity_keys, job.outputs)
    (out / SHARD_DIR).mkdir(exist_ok=True)
    shards, costs = job.plan()
    publish_meta(out, job.meta(len(shards)), dist.rank)  # rank 0 writes it; the others wait for it before any shard
    if dist.rank == 0 and job.after_publish is not None:
        job.after_publish()
    mine = assign_shards(costs, dist.world)[dist.rank]
    run = ShardedRun(out=out, rank=dist.rank, world=dist.world, shards=shards, passes=job.passes, mine=mine)
    run.pending = [u for u in units(mine, job.passes) if not run.path(u).exists()]
    for unit, counters in job.work(run) if run.pending else ():
        where = {"checkpoint": unit[0], "shard": unit[1]} if isinstance(unit, tuple) else {"shard": unit}
        append_progress(out, {**where, "rank": dist.rank, **counters, "time": time.time()})
    run.missing = missing_units(out, len(shards), job.passes)
    if not run.missing:
        run.merged = job.merge()
    return job, run
