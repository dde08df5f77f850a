"""``data-select report NAME…``: write the selection report and say where it is."""

from __future__ import annotations

from pathlib import Path

from data_selection.options.report import ReportOptions
from data_selection.reports.selection import run_report

__all__ = ["ReportOptions", "run"]


def run(opts: ReportOptions) -> int:
    res = run_report(opts)
    print(f"report: {Path(res['out']) / 'report.md'} (+ {', '.join(res['files'][:-1])})")
    if "report.html" in res["files"]:
        print(f"html: {Path(res['out']) / 'report.html'}")
    return 0
