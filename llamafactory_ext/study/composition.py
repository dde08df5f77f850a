"""What each arm trained on: the share of each response kind (or source) in its subsets, averaged over seeds.

``data-select select`` writes a subset's composition into its manifest (``composition[column]["selected"]``:
counts per value). The study report turns them into one table per column, so a reader sees what a strategy
chose (e.g. the ZPD band dropping the demo pool's looping and truncated responses) beside what it scored.

A dynamic arm trains each stage's subset in turn (``OUTPUT_DIR/selection/stage-K/subset.jsonl``), not only the
stage-0 draw its select step made: its shares count the rows of every stage, and "distinct rows" says how many
different rows it trained on (a static arm: its subset's size).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from data_selection.jsonl import read_jsonl
from data_selection.subset import subset_paths
from llamafactory_ext.study.arm_inputs import subset_name
from llamafactory_ext.study.steps import Step

COLUMNS = ("response_kind", "source")
"""The manifest's composition columns the report shows, in this order (those present)."""


def _select_counts(step: Step) -> dict[str, dict[str, int]] | None:
    manifest = subset_paths(step.dir, subset_name(step.arm, step.seed, step))["manifest"]
    if not manifest.is_file():
        return None
    comp = json.loads(manifest.read_text(encoding="utf-8")).get("composition", {})
    return {col: {str(k): int(v) for k, v in comp[col]["selected"].items()}
            for col in COLUMNS if comp.get(col, {}).get("selected")}


def _stage_counts(step: Step) -> tuple[dict[str, dict[str, int]], int] | None:
    """(column -> value -> rows over every stage's subset, distinct rows) of a dynamic run; None for a static one."""
    subsets = sorted((step.dir / "selection").glob("stage-*/subset.jsonl"))
    if not subsets:
        return None
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ids: set[str] = set()
    for path in subsets:
        for row in read_jsonl(path):
            ids.add(str(row.get("id")))
            for col in COLUMNS:
                if col in row:
                    counts[col][str(row[col])] += 1
    return {col: dict(c) for col, c in counts.items()}, len(ids)


def arm_compositions(steps: list[Step]) -> tuple[dict[str, dict[str, list[dict[str, int]]]], dict[str, list[int]]]:
    """(column -> arm -> one {value: rows} per seed, arm -> distinct rows trained per seed): a static arm's from its
    select step's subset manifest, a dynamic arm's from its training run's stage subsets."""
    per_run: dict[tuple[str, int], tuple[dict[str, dict[str, int]], int]] = {}
    for step in steps:
        if step.kind == "select" and step.arm is not None and step.seed is not None:
            counts = _select_counts(step)
            if counts and (step.arm, step.seed) not in per_run:
                rows = max((sum(c.values()) for c in counts.values()), default=0)
                per_run[(step.arm, step.seed)] = (counts, rows)
    for step in steps:
        if step.kind == "train" and step.arm is not None and step.seed is not None:
            staged = _stage_counts(step)
            if staged:
                per_run[(step.arm, step.seed)] = staged
    out: dict[str, dict[str, list[dict[str, int]]]] = defaultdict(lambda: defaultdict(list))
    distinct: dict[str, list[int]] = defaultdict(list)
    for (arm, _seed), (counts, rows) in per_run.items():
        distinct[arm].append(rows)
        for col in COLUMNS:
            if counts.get(col):
                out[col][arm].append(counts[col])
    return {col: dict(arms) for col, arms in out.items()}, dict(distinct)


def mean_shares(per_seed: list[dict[str, int]]) -> dict[str, float]:
    """Mean over seeds of each value's share of the subset's rows (0..1)."""
    values = sorted({v for c in per_seed for v in c})
    return {v: sum(c.get(v, 0) / max(sum(c.values()), 1) for c in per_seed) / len(per_seed) for v in values}


def composition_section(steps: list[Step]) -> tuple[list[str], dict[str, Any]]:
    """(markdown lines, summary dict) of the arms' subset compositions; empty when no manifest has one."""
    comps, distinct = arm_compositions(steps)
    dynamic = sorted({s.arm for s in steps if s.kind == "train" and (s.dir / "selection").is_dir()} - {None})
    lines: list[str] = []
    summary: dict[str, Any] = {}
    for col in COLUMNS:
        arms = comps.get(col)
        if not arms:
            continue
        shares = {arm: mean_shares(seeds) for arm, seeds in arms.items()}
        values = sorted({v for s in shares.values() for v in s}, key=lambda v: (v != "correct", v))
        lines += [f"## What each arm trained on: {col.replace('_', ' ')} (share of subset rows, mean over seeds)", "",
                  f"| arm | seeds | distinct rows | {' | '.join(values)} |",
                  "|---|---:|---:|" + "---:|" * len(values)]
        for arm, s in shares.items():
            rows = distinct.get(arm) or [0]
            lines.append(f"| {arm} | {len(arms[arm])} | {sum(rows) / len(rows):.0f} | "
                         + " | ".join(f"{100 * s.get(v, 0):.1f}%" for v in values) + " |")
        if dynamic:
            lines += ["", f"{', '.join(dynamic)}: the rows of every stage's subset (each trained its stretch of the "
                      "run); distinct rows: rows trained on at least once (a static arm: its subset)."]
        lines.append("")
        summary[col] = shares
    if summary:
        summary["distinct_rows"] = {arm: sum(r) / len(r) for arm, r in distinct.items() if r}
    return lines, summary
