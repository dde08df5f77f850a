"""``data-select verify``: verify every response of a multi-response pool (:func:`data_selection.verify.runner.
run_verify`)."""

from __future__ import annotations

import json
from pathlib import Path

from data_selection.options.verify import VerifyOptions
from data_selection.shards.layout import REJECTS
from data_selection.verify.output import VERIFIED
from data_selection.verify.runner import run_verify

__all__ = ["VerifyOptions", "run"]


def run(opts: VerifyOptions) -> int:
    s = run_verify(opts)
    if s.get("rank", 0) == 0 or s.get("merged"):
        print(json.dumps(s, indent=2))
        if s.get("merged"):
            print(f"verified: {Path(opts.out) / VERIFIED}\nrejects: {Path(opts.out) / REJECTS}")
        else:
            print(f"{s['waiting_for_shards']} shard(s) still running on other ranks; the last rank merges "
                  f"(re-run the same command once they are done)")
    return 0
