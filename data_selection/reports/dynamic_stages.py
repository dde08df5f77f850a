"""The stages of a dynamic selection (``llamafactory-ext train`` with ``dynamic_selection:``) in ``data-select report``.

A training run writes ``OUTPUT_DIR/selection/stage-K/manifest.json`` per stage (llamafactory_ext's
``train/dynamic/stages.py``; this layer never imports it, the manifests are read as JSON): the stage, the global step
and epoch it was scored at, the key, the band's thresholds (``thresholds.low_value`` / ``high_value``), the
candidates re-scored, the rows drawn (``num_rows``) and the flows of the previous stage's subset under the new
weights (``flows``: learned — now below the band —, rose_above, stayed, not_rescored; kept and entered of the new
subset). ``tests/data_selection/test_reports_stages.py`` writes a stage folder through that writer and reads it here,
so the two cannot drift.

This module reads the folder and writes ``report.md``'s "Stages" section, ``stages.csv`` and ``stages.png`` (the
band's low / high thresholds per stage, and the flows as stacked bars); :mod:`.html.dynamic_stages` draws the same in
``report.html``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from data_selection.command_line import UserError
from data_selection.reports.colors import FLOW_COLORS
from data_selection.reports.plots import pyplot, save_png

MANIFEST = "manifest.json"
STAGE_RE = re.compile(r"^stage-(\d+)$")
# the previous subset's rows under the new weights (they add up to its size), then the new subset's (kept + entered)
PREVIOUS_FLOWS = (("learned", "learned (fell below)"), ("rose_above", "rose above"), ("stayed", "stayed in the band"),
                  ("not_rescored", "not re-scored"))
NEW_FLOWS = (("kept", "kept"), ("entered", "entered"))
COLUMNS = ["stage", "global step", "epoch", "key", "band low", "band high", "candidates", "selected", "learned",
           "rose above", "stayed", "not re-scored", "entered", "scoring s"]


def _stage_dirs(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for d in folder.iterdir() if folder.is_dir() else []:
        m = STAGE_RE.match(d.name)
        if m and (d / MANIFEST).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def stages_folder(path: str | Path) -> Path:
    """The folder holding ``stage-K/``: ``path`` itself (``OUTPUT_DIR/selection``) or ``path/selection``."""
    p = Path(path)
    for candidate in (p, p / "selection"):
        if _stage_dirs(candidate):
            return candidate
    raise UserError(f"--stages {path}: no finished stage there (expected stage-K/{MANIFEST} in it or in "
                    f"{p / 'selection'}: the output_dir of a `llamafactory-ext train` run with dynamic_selection)")


def load_stages(path: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """(the stages folder, each finished stage's manifest in stage order)."""
    folder = stages_folder(path)
    stages = []
    for k, d in _stage_dirs(folder):
        try:
            m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"--stages: {d / MANIFEST} is not valid JSON ({err})") from None
        stages.append({**m, "stage": int(m.get("stage", k))})
    return folder, stages


def band(m: dict[str, Any]) -> tuple[float | None, float | None]:
    """The band's key values (smallest and largest key kept); None when the stage has none (random, stratified)."""
    th = m.get("thresholds") or {}
    return th.get("low_value"), th.get("high_value")


def selected(m: dict[str, Any]) -> int | None:
    return m.get("num_rows", (m.get("funnel") or {}).get("selected"))


def stage_rows(stages: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per stage, in :data:`COLUMNS` order (None where a stage has no value: stage 0 has no flows)."""
    rows = []
    for m in stages:
        f = m.get("flows") or {}
        low, high = band(m)
        seconds = m.get("scoring_seconds") if m["stage"] > 0 else None
        rows.append([m["stage"], m.get("global_step"), m.get("epoch"), m.get("key"), low, high, m.get("candidates"),
                     selected(m), f.get("learned"), f.get("rose_above"), f.get("stayed"), f.get("not_rescored"),
                     f.get("entered"), seconds])
    return rows


def describe(folder: Path, stages: list[dict[str, Any]]) -> str:
    """One sentence: how the stages were drawn (from stage 0's manifest; every stage shares these keys)."""
    m = stages[0]
    how = (f"zpd band [{m.get('low')}, {m.get('high')}] of {m.get('key')}" if m.get("strategy") == "zpd"
           else f"{m.get('strategy')} draw")
    every = "every epoch" if m.get("every") == "epoch" else f"every {m.get('every')} optimizer steps"
    cand = m.get("candidates_setting", "all")
    cand = "all scored pool rows re-scored" if cand == "all" else f"{cand} candidates re-scored per stage (seeded)"
    return (f"{len(stages)} stage(s) in {folder}: {m.get('n')} rows per stage, {how}, {every}, {cand}; stage K draws "
            f"with seed {m.get('seed')} + K. Stage 0 is the static selection from the base model's scores.")


def _cell(v: Any, column: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}" if column.startswith("band") else f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:,}" if isinstance(v, int) else str(v)


def stages_markdown(folder: Path, stages: list[dict[str, Any]], image: str | None) -> list[str]:
    """report.md's "Stages" section."""
    lines = ["", "## Stages (dynamic selection)", "", describe(folder, stages), "",
             "Band low / high: the smallest and largest key kept among that stage's candidates. Flows, of the previous "
             "stage's subset under the new weights: learned (now below the band), rose above, stayed, not re-scored "
             "(not among the candidates); entered: rows of the new subset that were not in the previous one.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(v, c) for v, c in zip(row, COLUMNS)) + " |" for row in stage_rows(stages)]
    if image:
        lines += ["", f"![{image}]({image})"]
    return lines


def stages_csv(stages: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.replace(" ", "_") for c in COLUMNS])
    for row in stage_rows(stages):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def flow_bars(stages: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str, list[int | None]]]]:
    """Stacked bars of the flows: per stage K >= 1 a bar of the previous subset (learned, rose above, stayed, not
    re-scored) and one of the new subset (kept, entered). Returns (bar labels, [(flow key, label, values)])."""
    labels, values = [], {k: [] for k, _ in (*PREVIOUS_FLOWS, *NEW_FLOWS)}
    for m in stages:
        f = m.get("flows")
        if not f:
            continue
        k = m["stage"]
        labels += [f"stage {k}: previous subset", f"stage {k}: new subset"]
        for key, _ in PREVIOUS_FLOWS:
            values[key] += [f.get(key, 0), None]
        for key, _ in NEW_FLOWS:
            values[key] += [None, f.get(key, 0)]
    return labels, [(k, label, values[k]) for k, label in (*PREVIOUS_FLOWS, *NEW_FLOWS)]


def _x_label(m: dict[str, Any]) -> str:
    return f"{m['stage']}\nstep {m.get('global_step', '?')}"


def plot_stages(path: Path, stages: list[dict[str, Any]]) -> None:
    """Left: the band's low / high key values per stage (filled between); right: the flows as stacked bars."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.3]}, layout="constrained")
    x = np.array([m["stage"] for m in stages], dtype=np.float64)
    lows = np.array([np.nan if band(m)[0] is None else band(m)[0] for m in stages], dtype=np.float64)
    highs = np.array([np.nan if band(m)[1] is None else band(m)[1] for m in stages], dtype=np.float64)
    key = stages[0].get("key") or "key"
    if np.isfinite(lows).any():
        ax.fill_between(x, lows, highs, color="#1f77b4", alpha=0.2, label="band")
        ax.plot(x, highs, marker="o", color="#d62728", label="high (largest kept)")
        ax.plot(x, lows, marker="o", color="#2ca02c", label="low (smallest kept)")
        ax.legend(loc="best", frameon=False)
    else:
        ax.text(0.5, 0.5, "no band (not a global zpd band)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(x, [_x_label(m) for m in stages])
    ax.set_xlabel("stage (global step it was scored at)")
    ax.set_ylabel(key)
    ax.set_title(f"The band of {key} over the stages")
    labels, series = flow_bars(stages)
    if labels:
        pos = np.arange(len(labels))
        bottom = np.zeros(len(labels))
        for flow, label, vals in series:
            v = np.array([0 if x_ is None else x_ for x_ in vals], dtype=np.float64)
            bx.barh(pos, v, left=bottom, color=FLOW_COLORS[flow], label=label)  # a flow of 0 keeps its legend
            bottom += v
        bx.set_yticks(pos, labels)
        bx.invert_yaxis()
        bx.locator_params(axis="x", integer=True)
        bx.set_xlabel("rows")
        bx.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=8)
        bx.set_title("Flows at each boundary", pad=34)
    else:
        bx.text(0.5, 0.5, "one stage only: no flows yet", ha="center", va="center", transform=bx.transAxes)
        bx.set_axis_off()
    save_png(fig, path)
    plt.close(fig)
