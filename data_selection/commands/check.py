"""``data-select check``: every entry of a dataset_info.json through LLaMA-Factory's own loader."""

from __future__ import annotations

import sys

from data_selection.options.check import CheckOptions
from data_selection.registry import check_dataset_info

__all__ = ["CheckOptions", "run"]


def run(opts: CheckOptions) -> int:
    opts.validate()
    results = check_dataset_info(opts.dataset_info, opts.names or None, opts.rows)
    bad = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            print(f"ok       {r.name}: {'; '.join(r.notes)}")
        else:
            for p in r.problems:
                print(f"PROBLEM  {r.name}: {p}")
    print(f"{opts.dataset_info}: {len(results)} entr{'y' if len(results) == 1 else 'ies'} checked, "
          f"{len(bad)} with problems" + (f" ({', '.join(r.name for r in bad)})" if bad else ""))
    sys.stdout.flush()
    return 1 if bad else 0
