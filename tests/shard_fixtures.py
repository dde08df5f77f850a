"""A toy job for the sharded-run engine (:mod:`data_selection.shards`): no model, no pool, milliseconds a shard.

Row ``r`` costs ``r % 4 + 1``; a unit's file holds its rows and ``value = 10 * row + checkpoint`` (checkpoint 0
without passes); the merge writes ``toy.parquet``. Also a script: ``python shard_fixtures.py OUT [delay] [identity]``
runs it as one rank (``RANK``/``WORLD_SIZE`` from the environment), for kill and multi-process tests.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from data_selection.atomic import write_parquet_atomic
from data_selection.shards.driver import ShardJob, run_sharded
from data_selection.shards.layout import missing_units, unit_path
from data_selection.shards.merge import merge_lock
from data_selection.shards.plan import plan_by_cost

TOY = "toy.parquet"


def run_toy(out, n_rows: int = 10, shard_rows: int = 3, identity: dict | None = None, overwrite: bool = False,
            delay: float = 0.0, passes: int = 0, log: list | None = None):
    identity = identity or {"job": "toy", "shard_rows": shard_rows}
    out = Path(out)

    def setup(dist) -> ShardJob:
        rows = list(range(n_rows))

        def work(run):
            for u in run.pending:
                j, k = u if isinstance(u, tuple) else (0, u)
                time.sleep(delay)
                df = pd.DataFrame({"row": run.shards[k], "value": [10 * r + j for r in run.shards[k]]})
                write_parquet_atomic(run.path(u), df)
                if log is not None:
                    log.append(u)
                yield u, {"rows": len(df), "seconds": delay}

        def merge():
            with merge_lock(out):
                n = len(plan_by_cost(rows, [r % 4 + 1 for r in rows], shard_rows)[0])
                assert not missing_units(out, n, passes)
                us = [(j, k) for j in range(1, passes + 1) for k in range(n)] if passes else list(range(n))
                df = pd.concat([pd.read_parquet(unit_path(out, u)) for u in us]).sort_values(["row", "value"])
                write_parquet_atomic(out / TOY, df.reset_index(drop=True))
            return {"rows": len(df)}

        return ShardJob(out=out, identity=identity, identity_keys=tuple(identity), overwrite=overwrite,
                        plan=lambda: plan_by_cost(rows, [r % 4 + 1 for r in rows], shard_rows),
                        meta=lambda n: {"identity": identity, "num_shards": n}, work=work, merge=merge,
                        outputs=(TOY,), passes=passes)

    return run_sharded(setup)[1]


if __name__ == "__main__":
    ident = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    run = run_toy(sys.argv[1], n_rows=24, shard_rows=2, delay=float(sys.argv[2]), identity=ident,
                  overwrite=ident is not None)
    print(json.dumps({"pending": len(run.pending), "merged": run.merged}))
