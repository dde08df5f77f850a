"""The "Stages" section of ``report.html`` for a dynamic selection's training run (``data-select report --stages``).

The same facts as ``report.md``'s section and ``stages.png`` (:mod:`data_selection.reports.dynamic_stages`): how
the stages were drawn, the band's low / high key values per stage (an interval per stage), the flows at each
boundary as stacked bars (the previous subset: learned, rose above, stayed, not re-scored; the new one: kept,
entered) and the table of every stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_selection.reports.colors import FLOW_COLORS
from data_selection.reports.dynamic_stages import COLUMNS, band, describe, flow_bars, stage_rows
from data_selection.reports.html import charts

SECTION = "Stages"


def stages_blocks(folder: Path, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = stages[0].get("key") or "key"
    blocks = [charts.note(describe(folder, stages))]
    rows = []
    for m in stages:
        low, high = band(m)
        if low is not None and high is not None:
            rows.append({"label": f"stage {m['stage']} · step {m.get('global_step', '?')}", "estimate": None,
                         "low": low, "high": high, "text": f"[{low:.4f}, {high:.4f}]"})
    if rows:
        blocks.append(charts.intervals(f"The band of {key} per stage (smallest and largest key kept among the "
                                       "stage's candidates)", key, rows))
    labels, series = flow_bars(stages)
    if labels:
        blocks.append(charts.stack("Flows at each boundary: where the previous subset went under the new weights, "
                                   "and what the new subset kept and took in", labels,
                                   [(label, FLOW_COLORS[flow], values) for flow, label, values in series]))
    blocks.append(charts.table("Every stage", COLUMNS, stage_rows(stages)))
    return blocks


def stages_section(folder: Path, stages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": SECTION, "blocks": stages_blocks(folder, stages)}
