"""``data-select report NAME…``: plots and a markdown summary of one or more selections.

For the first NAME's scores (its manifest records the folder, key and eligibility) the report draws:

* ``key_histogram.png``: the ranking key over the eligible pool, the band edges, and the distribution of
  every selection given, plus a random reference of the same size and seed when no random selection is;
* ``loss_vs_length.png``: mean loss against response length (log scale), pool vs selected rows, with the OLS
  trend on log length (the length confound the length-aware keys address);
* ``funnel.png``: pool → rejected → over-length → band → selected, one bar group per selection;
* ``pass_cv.png`` for pass-cv selections: the CV and pass rate of the queries it saw and of those it took
  (read from the ``data-select verify`` folder its manifest names);
* ``report.md`` (tables: parameters, thresholds, funnel, the query funnel of pass-cv, composition; for a TEMP
  selection also its checkpoints, clusters and allocations, :mod:`data_selection.reports.temp`) and
  ``funnel.csv``;
* ``report.html`` (:mod:`data_selection.reports.html.selection`) unless ``--no-html``.

``--stages OUTPUT_DIR`` (a ``llamafactory-ext train`` run with ``dynamic_selection``) adds a "Stages" section
(:mod:`data_selection.reports.dynamic_stages`): ``stages.png`` (the band per stage, the flows at each boundary),
``stages.csv``, a table in ``report.md`` and the same in ``report.html``; without NAME the report holds that
section alone.

A pass-cv selection made without ``--scores`` has no loss table: the two loss plots are left out (or drawn from
``--scores`` when given).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from data_selection.atomic import write_text_atomic
from data_selection.command_line import UserError
from data_selection.options.report import ReportOptions
from data_selection.reports.dynamic_stages import load_stages, plot_stages, stages_csv, stages_markdown
from data_selection.reports.facts import LossContext, load_selection, loss_context, pass_cv_queries
from data_selection.reports.funnel import FUNNEL_STAGES, stages_present
from data_selection.reports.html.dynamic_stages import stages_section
from data_selection.reports.html.page import write_page
from data_selection.reports.html.selection import write_selection_html
from data_selection.reports.length import length_section
from data_selection.reports.markdown import render_markdown
from data_selection.reports.plots import plot_funnel, plot_key_histogram, plot_loss_vs_length, plot_pass_cv
from data_selection.scores_table import SELECT_READ_COLUMNS, load_scores


def _loss_plots(ctx: LossContext, out: Path, seed: int) -> list[str]:
    """key_histogram.png and loss_vs_length.png over the scores' eligible rows."""
    plot_key_histogram(out / "key_histogram.png", ctx.key, ctx.elig.key, ctx.series, ctx.edges)
    plot_loss_vs_length(out / "loss_vs_length.png", ctx.elig.table, ctx.tables, ctx.band, seed=seed)
    return ["key_histogram.png", "loss_vs_length.png"]


def _funnel_csv(names: list[str], selections) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["stage", *names])
    for stage in stages_present([s.manifest["funnel"] for s in selections]):
        writer.writerow([stage, *(s.manifest["funnel"].get(stage, 0) for s in selections)])
    return buf.getvalue()


def _stages_files(folder: Path, stages: list[dict[str, Any]], out: Path) -> list[str]:
    """stages.png and stages.csv of a dynamic run's stages."""
    plot_stages(out / "stages.png", stages)
    write_text_atomic(out / "stages.csv", stages_csv(stages))
    return ["stages.png", "stages.csv"]


def _stages_report(opts: ReportOptions, folder: Path, stages: list[dict[str, Any]]) -> dict[str, Any]:
    """``--stages`` without NAME: report.md, stages.png, stages.csv and report.html of the stages alone."""
    run = folder.parent.name if folder.name == "selection" else folder.name
    out = Path(opts.out or Path("reports") / f"{run}_stages")
    out.mkdir(parents=True, exist_ok=True)
    files = _stages_files(folder, stages, out)
    lines = [f"# Stages of a dynamic selection: {folder}", *stages_markdown(folder, stages, "stages.png")]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    files.append("report.md")
    if opts.html:
        write_page(out / "report.html", {"title": f"Stages of a dynamic selection: {run}",
                                         "subtitle": f"data-select report --stages {opts.stages}",
                                         "sections": [stages_section(folder, stages)], "browser": None})
        files.insert(-1, "report.html")
    return {"out": str(out), "files": files}


def run_report(opts: ReportOptions) -> dict[str, Any]:
    opts.validate()
    folder, stages = load_stages(opts.stages) if opts.stages else (None, [])
    if not opts.names:
        return _stages_report(opts, folder, stages)
    dataset_dir = Path(opts.dataset_info).parent
    selections = [load_selection(dataset_dir, n) for n in opts.names]
    edited = [s.name for s in selections if s.manifest.get("transform")]
    if edited:
        raise UserError(f"{', '.join(edited)}: made by `data-select prune-steps`, not by select; its report was "
                        f"written with it (reports/{edited[0]}/report.md unless --report_dir was given)")
    first = selections[0].manifest
    scores_dir = opts.scores or (first.get("scores") or {}).get("dir")
    out = Path(opts.out or Path("reports") / "_vs_".join(opts.names))
    out.mkdir(parents=True, exist_ok=True)
    ctx = loss_context(opts, selections, scores_dir) if scores_dir else None
    images = _loss_plots(ctx, out, first["parameters"]["seed"]) if ctx else []
    reference = ctx.reference if ctx else ""
    pass_cv = [s for s in selections if s.manifest["strategy"] == "pass-cv"]
    if pass_cv:
        plot_pass_cv(out / "pass_cv.png", [(s.name, *pass_cv_queries(s)) for s in pass_cv])
        images.append("pass_cv.png")
    plot_funnel(out / "funnel.png", [(s.name, s.manifest["funnel"]) for s in selections], FUNNEL_STAGES)
    images.append("funnel.png")
    write_text_atomic(out / "funnel.csv", _funnel_csv(opts.names, selections))
    length = length_section(selections, load_scores(scores_dir, SELECT_READ_COLUMNS)[0]) if scores_dir else []
    stage_files = _stages_files(folder, stages, out) if stages else []
    if stages:
        length += stages_markdown(folder, stages, "stages.png")
    write_text_atomic(out / "report.md", render_markdown(selections, images, reference, length))
    files = [*images, *stage_files, "funnel.csv", "report.md"]
    if opts.html:
        extra = [stages_section(folder, stages)] if stages else []
        write_selection_html(opts, selections, ctx, scores_dir, out, extra)
        files.insert(-1, "report.html")
    return {"out": str(out), "files": files}
