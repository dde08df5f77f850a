"""Size, build time and open time of report.html for a 100K-row pool (goal: under ~30 MB, opens in seconds).

A synthetic scores table shaped like the scorer's output (tests/score_fixtures.synthetic_scores), a zpd and a
random selection of 15K rows made by the selectors, and the page ``data-select report`` writes for them with
every pool row in the table (``--html_rows`` = the pool) and the texts at their default bound filled to the
brim (``--html_texts`` rows, prompt and response each ``--html_text_chars`` long: the worst case). Prints the
page size, the build time (median of repeats) and, when a headless chromium is there
(scripts/browser_up.sh), the time until the page has drawn its charts and table.

Usage: python bench/report_html_size.py [--rows 100000] [--n 15000] [--repeats 3] [--browser]
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
from score_fixtures import synthetic_scores  # noqa: E402  (tests/ on the path first)

from data_selection.options.report import ReportOptions  # noqa: E402
from data_selection.reports.facts import Loaded, loss_context  # noqa: E402
from data_selection.reports.html import selection as sel  # noqa: E402
from data_selection.reports.html.page import write_page  # noqa: E402
from data_selection.selectors import select_random, select_zpd  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=15_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also time opening the page in headless chromium")
    args = ap.parse_args()
    table = synthetic_scores(args.rows, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="report_html_bench_"))
    scores_dir = tmp / "scores"
    scores_dir.mkdir()
    table.to_parquet(scores_dir / "scores.parquet", index=False)
    (scores_dir / "meta.json").write_text(json.dumps({"template": "qwen", "cutoff_len": 16384}), encoding="utf-8")
    selections = []
    for name, fn in (("zpd", select_zpd), ("random", select_random)):
        s = fn(table, n=args.n, seed=42)
        selections.append(Loaded(f"bench_{name}", {**s.facts, "source": {"dataset": "synthetic"}}, set(s.ids)))
    opts = ReportOptions(names=[s.name for s in selections], html_rows=args.rows)
    filler = {"prompt": "p" * opts.html_text_chars, "response": "r" * opts.html_text_chars, "pieces": [], "note": ""}

    def fake_texts(ctx, scores_dir, shown, idx, opts):  # the worst case of the text bound, without a pool
        return {int(i): filler for i in idx}, "synthetic texts"

    sel._texts = fake_texts
    times, path = [], tmp / "report.html"
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ctx = loss_context(opts, selections, str(scores_dir))
        write_page(path, sel.selection_payload(opts, selections, ctx, str(scores_dir)))
        times.append(time.perf_counter() - t0)
    size = path.stat().st_size
    print(f"report.html for {args.rows:,} pool rows (all in the table), 2 selections of {args.n:,}, "
          f"{opts.html_texts:,} texts of 2 x {opts.html_text_chars:,} chars:")
    print(f"  size  {size / 2**20:.1f} MiB (goal < 30)")
    print(f"  build {statistics.median(times):.2f} s median of {args.repeats} (range {min(times):.2f}-{max(times):.2f}); "
          f"includes reading scores.parquet and the eligibility/band recomputation")
    if args.browser:
        from chromium_driver import BrowserUnavailable, severe_console_messages, start, stop  # lazy: selenium
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            d = start()
        except BrowserUnavailable as err:
            print(f"  open  skipped: {err}")
            return 0
        try:
            opens = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                d.get(path.as_uri())
                WebDriverWait(d, 120).until(lambda x: x.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
                opens.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            d.execute_script("const e = document.getElementById('min-loss_mean'); e.value = '0.8';"
                             "e.dispatchEvent(new Event('input'));")
            n = int(d.find_element(By.ID, "match-count").text)
            filt = time.perf_counter() - t0
            print(f"  open  {statistics.median(opens):.2f} s median of {args.repeats} in headless chromium (until "
                  f"charts and the first table page are drawn); a key range filter over {args.rows:,} rows: "
                  f"{filt:.2f} s ({n:,} match); console errors: {len(severe_console_messages(d))}")
        finally:
            stop(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
