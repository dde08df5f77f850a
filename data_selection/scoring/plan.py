"""The work plan of a scoring run: the same shards, in the same order, whatever the number of GPUs.

Eligible rows are sorted by character length (longest first, ties by pool row) and cut into shards of
``shard_rows`` rows; shards are dealt to ranks greedily by character count so every rank gets about the same
number of tokens. A shard's batches depend only on its own rows, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations


def plan_shards(converted, shard_rows: int) -> tuple[list[list[int]], list[int]]:
    """(rows of each shard, characters of each shard) for a converted pool (``reject_reason`` == "" only)."""
    import numpy as np

    tbl = converted.select_columns(["_row", "n_chars", "reject_reason"]).to_pandas()
    ok = tbl[tbl["reject_reason"] == ""]
    order = ok.sort_values(["n_chars", "_row"], ascending=[False, True], kind="stable")
    rows = order["_row"].to_numpy()
    chars = order["n_chars"].to_numpy()
    shards = [rows[i : i + shard_rows].tolist() for i in range(0, len(rows), shard_rows)]
    shard_chars = [int(np.sum(chars[i : i + shard_rows])) for i in range(0, len(rows), shard_rows)]
    return shards, shard_chars


def assign_shards(shard_chars: list[int], world: int) -> list[list[int]]:
    """Greedy longest-first assignment of shards to ranks by character count (deterministic)."""
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for k in sorted(range(len(shard_chars)), key=lambda i: (-shard_chars[i], i)):
        r = min(range(world), key=lambda j: (loads[j], j))
        out[r].append(k)
        loads[r] += shard_chars[k]
    return [sorted(s) for s in out]
