"""The work plan of a sharded run: the same shards, in the same order, whatever the number of ranks.

Rows are sorted by cost (longest first, ties by pool row) and cut into shards of ``shard_rows`` rows; shards are
dealt to ranks greedily by cost so every rank gets about the same amount of work. A shard's result depends only on
its own rows, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import numpy as np


def plan_shards(converted, shard_rows: int) -> tuple[list[list[int]], list[int]]:
    """(rows of each shard, characters of each shard) for a converted pool (``reject_reason`` == "" only)."""
    tbl = converted.select_columns(["_row", "n_chars", "reject_reason"]).to_pandas()
    ok = tbl[tbl["reject_reason"] == ""]
    order = ok.sort_values(["n_chars", "_row"], ascending=[False, True], kind="stable")
    rows = order["_row"].to_numpy()
    chars = order["n_chars"].to_numpy()
    shards = [rows[i : i + shard_rows].tolist() for i in range(0, len(rows), shard_rows)]
    shard_chars = [int(np.sum(chars[i : i + shard_rows])) for i in range(0, len(rows), shard_rows)]
    return shards, shard_chars


def plan_by_cost(rows, costs, shard_rows: int) -> tuple[list[list[int]], list[int]]:
    """Shards of ``rows`` (costliest first, ties by row) and each shard's cost."""
    order = sorted(range(len(rows)), key=lambda i: (-costs[i], rows[i]))
    shards, shard_costs = [], []
    for i in range(0, len(order), shard_rows):
        part = order[i : i + shard_rows]
        shards.append([int(rows[j]) for j in part])
        shard_costs.append(int(sum(costs[j] for j in part)))
    return shards, shard_costs


def assign_shards(shard_costs: list[int], world: int) -> list[list[int]]:
    """Greedy costliest-first assignment of shards to ranks (deterministic)."""
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for k in sorted(range(len(shard_costs)), key=lambda i: (-shard_costs[i], i)):
        r = min(range(world), key=lambda j: (loads[j], j))
        out[r].append(k)
        loads[r] += shard_costs[k]
    return [sorted(s) for s in out]
