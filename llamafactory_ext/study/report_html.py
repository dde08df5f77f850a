"""The study's ``report.html``: arm accuracies with CIs, paired differences with verdicts, the per-problem grid.

Beside ``report.md`` in ``OUT/reports/NAME/``, drawn by the same inline script as the selection pages
(:mod:`data_selection.reports.html`). Each trained arm links to the selection page of its first seed's subset:
``data-select report`` is run on it into ``selections/ARM/``, with ``--stages`` for a dynamic arm whose training
wrote stages (a pruned arm links to the page its ``prune-steps`` step wrote). The numbers are the ones
:func:`llamafactory_ext.study.stats.bootstrap` computed for ``report.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from data_selection.options.report import ReportOptions
from data_selection.reports.colors import color
from data_selection.reports.html import charts
from data_selection.reports.html.page import write_page
from data_selection.reports.selection import run_report
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.plan import subset_name
from llamafactory_ext.study.stats import StudyStats, verdict
from llamafactory_ext.study.steps import Step


def selection_pages(cfg: StudyConfig, steps: list[Step], out: Path) -> dict[str, tuple[str, str]]:
    """arm -> (relative link or "", what it is), for the first seed's subset of every trained arm."""
    first_seed = min(cfg.seeds)
    pages: dict[str, tuple[str, str]] = {}
    trained = {(s.arm, s.seed): s.dir for s in steps if s.kind == "train"}
    for step in steps:
        if step.seed != first_seed or step.arm is None or step.kind not in ("select", "prune"):
            continue
        name = subset_name(step.arm, step.seed, step)
        if step.kind == "prune":
            page = step.dir / "report" / "report.html"
        else:
            page = out / "selections" / step.arm / "report.html"
            train_dir = trained.get((step.arm, step.seed))  # a dynamic arm's finished stages join its page
            stages = train_dir / "selection" if train_dir is not None else None
            try:
                run_report(ReportOptions(names=[name], dataset_info=str(step.dir / "dataset_info.json"),
                                         out=str(page.parent), random_reference=step.arm != "random",
                                         stages=str(stages) if stages and any(stages.glob("stage-*/manifest.json"))
                                         else ""))
            except Exception as err:  # a missing subset must not cost the study its report
                pages[step.arm] = ("", f"no selection page ({type(err).__name__}: {str(err)[:160]})")
                continue
        if page.is_file():
            pages[step.arm] = (os.path.relpath(page, out), f"subset {name} (seed {step.seed})")
    return pages


def _grid(results: pd.DataFrame, task: str, arms: list[str]) -> dict[str, Any]:
    sub = results[results["task"] == task]
    table = sub.pivot_table(index=["arm", "seed"], columns="problem", values="score", aggfunc="mean")
    order = table.mean(axis=0).sort_values(ascending=False, kind="stable").index  # easiest problems first
    labels, values = [], []
    for arm in arms:
        if arm not in table.index.get_level_values(0):
            continue
        for seed in sorted(table.loc[arm].index):
            labels.append(f"{arm} seed {seed}")
            values.append([None if pd.isna(v) else round(float(v), 3) for v in table.loc[(arm, seed), order]])
    return charts.grid(f"{task}: which arm and seed solved which problem", f"{len(order):,} problems, easiest first "
                       "(hover a cell for its problem)", labels, [str(p) for p in order], values)


def study_payload(cfg: StudyConfig, stats_by_task: dict[str, StudyStats], results: pd.DataFrame,
                  pages: dict[str, tuple[str, str]]) -> dict[str, Any]:
    arms = [a.name for a in cfg.arms]
    res = cfg.analysis.resolution
    sections = []
    for task, st in stats_by_task.items():
        rows = [{"label": f"{a} (×{st.replicates[a]})", "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                 "color": "#888888" if a in (cfg.analysis.reference, cfg.analysis.baseline) else color(1),
                 "text": f"{iv.estimate:.1f} [{iv.low:.1f}, {iv.high:.1f}]"}
                for a, iv in st.arms.items()]
        diffs = [{"label": f"{a} − {b}", "estimate": iv.estimate, "low": iv.low, "high": iv.high,
                  "color": "#2ca02c" if iv.half_width <= res else "#d62728",
                  "text": f"{iv.estimate:+.1f} ±{iv.half_width:.1f}"} for (a, b), iv in st.differences.items()]
        blocks = [charts.intervals(f"Accuracy ({100 * st.confidence:g}% CI)", "accuracy (%)", rows),
                  charts.intervals("Paired differences (green: resolved)", "points", diffs, zero=True),
                  charts.table("", ["paired difference", "points", "CI", "half-width", "excludes 0", "resolved"],
                               [[f"{a} − {b}", round(iv.estimate, 2), f"[{iv.low:+.1f}, {iv.high:+.1f}]",
                                 round(iv.half_width, 2), "yes" if iv.low > 0 or iv.high < 0 else "no",
                                 "yes" if iv.half_width <= res else "no"]
                                for (a, b), iv in st.differences.items()])]
        blocks += [charts.note(verdict(iv, res, a, b)) for (a, b), iv in st.differences.items()]
        blocks.append(_grid(results, task, arms))
        sections.append({"title": f"{task} ({st.problems:,} problems)", "blocks": blocks})
    items = [{"label": arm, "href": pages[arm][0], "text": pages[arm][1]} if arm in pages and pages[arm][0]
             else {"label": arm, "text": pages.get(arm, ("", "no subset (untrained base model)"))[1]} for arm in arms]
    sections.append({"title": "Selections", "blocks": [charts.links("Each arm's selection page", items)]})
    return {"title": f"Study {cfg.name}", "subtitle": f"llamafactory-ext study · seeds {cfg.seeds} · resolution "
            f"{res:g} points · report.md beside this page has every command", "sections": sections, "browser": None,
            "links": [{"label": "report.md", "href": "report.md"}]}


def write_study_html(cfg: StudyConfig, steps: list[Step], stats_by_task: dict[str, StudyStats],
                     results: pd.DataFrame, out: Path) -> Path:
    pages = selection_pages(cfg, steps, out)
    return write_page(out / "report.html", study_payload(cfg, stats_by_task, results, pages))
