"""How long selection takes on a 100K-row scores table (goal: under 2 s per selection).

Times the selectors alone (the pure functions ``data-select select`` runs on ``scores.parquet``), plus reading
a 100K-row ``scores.parquet`` from disk, on a synthetic table shaped like the scorer's output (log-normal
lengths, mean loss rising with log length, 5% over-length, 4 sources in 2 categories). Prints the median and
the range of several runs per configuration. Writing the subset file is not included: it depends on the pool
(text size), not on the selection.

Usage: python bench/select_speed.py [--rows 100000] [--n 15000] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from score_fixtures import synthetic_scores  # noqa: E402

from data_selection.options.select import SelectOptions  # noqa: E402
from data_selection.scores_table import load_scores  # noqa: E402
from data_selection.select import run_strategy  # noqa: E402

CONFIGS = [
    ("zpd", {}),
    ("zpd", {"key": "loss_length_adjusted"}),
    ("zpd", {"key": "loss_first_100"}),
    ("zpd", {"stratify": "source"}),
    ("random", {}),
    ("random", {"stratify": "category"}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=15_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    table = synthetic_scores(args.rows, seed=0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "meta.json").write_text("{}", encoding="utf-8")
        table.to_parquet(Path(tmp) / "scores.parquet", index=False)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            load_scores(tmp)
            times.append(time.perf_counter() - t0)
        results.append({"what": "read scores.parquet", "median_s": statistics.median(times), "min_s": min(times),
                        "max_s": max(times)})
    for strategy, extra in CONFIGS:
        opts = SelectOptions(scores=".", name="bench", strategy=strategy, n=args.n, seed=42, **extra)
        run_strategy(table, opts)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sel = run_strategy(table, opts)
            times.append(time.perf_counter() - t0)
        assert len(sel.rows) == args.n
        label = strategy + "".join(f" {k}={v}" for k, v in extra.items())
        results.append({"what": label, "median_s": statistics.median(times), "min_s": min(times),
                        "max_s": max(times)})
    print(f"{args.rows:,} scored rows, n={args.n:,}, {args.repeats} runs each (after one warm-up)")
    width = max(len(r["what"]) for r in results)
    for r in results:
        flag = "" if r["median_s"] < 2 else "  (over the 2 s goal)"
        print(f"  {r['what'].ljust(width)}  median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, "
              f"max {r['max_s']:.3f}){flag}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
