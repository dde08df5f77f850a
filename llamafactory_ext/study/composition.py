"""What each arm trained on: the share of each response kind (or source) in its subsets, averaged over seeds.

``data-select select`` writes a subset's composition into its manifest (``composition[column]["selected"]``:
counts per value). The study report turns them into one table per column, so a reader sees what a strategy
chose (e.g. the ZPD band dropping the demo pool's looping and truncated responses) beside what it scored.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from data_selection.subset import subset_paths
from llamafactory_ext.study.arm_inputs import subset_name
from llamafactory_ext.study.steps import Step

COLUMNS = ("response_kind", "source")
"""The manifest's composition columns the report shows, in this order (those present)."""


def arm_compositions(steps: list[Step]) -> dict[str, dict[str, list[dict[str, int]]]]:
    """column -> arm -> one {value: rows} per seed, from each finished select step's subset manifest."""
    out: dict[str, dict[str, list[dict[str, int]]]] = defaultdict(lambda: defaultdict(list))
    for step in steps:
        if step.kind != "select" or step.arm is None or step.seed is None:
            continue
        manifest = subset_paths(step.dir, subset_name(step.arm, step.seed, step))["manifest"]
        if not manifest.is_file():
            continue
        comp = json.loads(manifest.read_text(encoding="utf-8")).get("composition", {})
        for col in COLUMNS:
            selected = comp.get(col, {}).get("selected")
            if selected:
                out[col][step.arm].append({str(k): int(v) for k, v in selected.items()})
    return {col: dict(arms) for col, arms in out.items()}


def mean_shares(per_seed: list[dict[str, int]]) -> dict[str, float]:
    """Mean over seeds of each value's share of the subset's rows (0..1)."""
    values = sorted({v for c in per_seed for v in c})
    return {v: sum(c.get(v, 0) / max(sum(c.values()), 1) for c in per_seed) / len(per_seed) for v in values}


def composition_section(steps: list[Step]) -> tuple[list[str], dict[str, Any]]:
    """(markdown lines, summary dict) of the arms' subset compositions; empty when no manifest has one."""
    comps = arm_compositions(steps)
    lines: list[str] = []
    summary: dict[str, Any] = {}
    for col in COLUMNS:
        arms = comps.get(col)
        if not arms:
            continue
        shares = {arm: mean_shares(seeds) for arm, seeds in arms.items()}
        values = sorted({v for s in shares.values() for v in s}, key=lambda v: (v != "correct", v))
        lines += [f"## What each arm trained on: {col.replace('_', ' ')} (share of subset rows, mean over seeds)", "",
                  f"| arm | seeds | {' | '.join(values)} |", "|---|---:|" + "---:|" * len(values)]
        for arm, s in shares.items():
            lines.append(f"| {arm} | {len(arms[arm])} | " + " | ".join(f"{100 * s.get(v, 0):.1f}%" for v in values)
                         + " |")
        lines.append("")
        summary[col] = shares
    return lines, summary

