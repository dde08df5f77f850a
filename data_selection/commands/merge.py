"""``data-select merge``: merge a scoring run's shards into ``scores.parquet`` (what the last rank does itself)."""

from __future__ import annotations

import json

from data_selection.options.merge import MergeOptions
from data_selection.scoring.merge import merge_shards

__all__ = ["MergeOptions", "run"]


def run(opts: MergeOptions) -> int:
    print(json.dumps(merge_shards(opts.scores), indent=2))
    return 0
