"""``data-select select``: the entry (options: :mod:`data_selection.options.select`; the work:
:func:`data_selection.select.run_select`)."""

from __future__ import annotations

import sys

from data_selection.options.select import SelectOptions
from data_selection.select import run_select

BANDLESS = ("random", "matched-random")
BAND_STAGES = ("dropped_low", "dropped_high", "band")


def run(opts: SelectOptions) -> int:
    """Select, write and register the subset; print the funnel and where everything went."""
    out = run_select(opts)
    m = out["manifest"]
    for w in m.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    f = m["funnel"]
    if m["strategy"] in BANDLESS:  # the manifest keeps the shared funnel keys; a draw without a band names none
        f = {k: v for k, v in f.items() if k not in BAND_STAGES}
    print(" → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in f.items()))
    if "query_funnel" in m:
        print("queries: " + " → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in m["query_funnel"].items()))
    if m.get("note"):
        print(f"note: {m['note']}", file=sys.stderr)
    if "matching" in m:
        mt = m["matching"]
        print(f"matched {mt['target']['source']}: {len(mt['cells'])} cells, borrowed "
              f"{sum(b['rows'] for b in mt['borrowed'])} row(s); KS of lengths {mt['ks_lengths']['statistic']:.3f}")
    th = m["thresholds"]
    if "low_value" in th:
        print(f"band of {m['parameters']['key']}: [{th['low_value']:.4f}, {th['high_value']:.4f}]")
    print(f"subset: {out['paths']['data']} ({m['num_rows']:,} rows, {m['formatting']})\n"
          f"manifest: {out['paths']['manifest']}\ncard: {out['paths']['card']}\n"
          f"{opts.dataset_info}: {out['registered']} entry {opts.name!r}")
    return 0
