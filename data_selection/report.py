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
  selection also its checkpoints, clusters and allocations, :mod:`data_selection.report_temp`) and ``funnel.csv``.

A pass-cv selection made without ``--scores`` has no loss table: the two loss plots are left out (or drawn from
``--scores`` when given).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_selection.command_line import UserError
from data_selection.jsonl import jsonl_lines
from data_selection.report_plots import plot_funnel, plot_key_histogram, plot_loss_vs_length, plot_pass_cv

FUNNEL_STAGES = ["pool", "rejected", "scored", "verified", "no_verify_score", "verify_scored", "stage1",
                 "not_scored_by_scorer", "over_length_dropped", "non_finite_key", "no_checkpoint_scores",
                 "perplexity_dropped", "repetition_dropped", "missing_parts_dropped", "eligible", "dropped_low",
                 "dropped_high", "band", "selected"]


@dataclass
class ReportOptions:
    names: list[str] = field(default_factory=list, metadata={"help": "Selected subsets (dataset_info.json names)."})
    out: str = field(default="", metadata={"help": "Output folder (default reports/NAME or reports/A_vs_B)."})
    dataset_info: str = field(default="dataset_info.json", metadata={"help": "dataset_info.json beside data/."})
    scores: str = field(default="", metadata={"help": "Scores folder (default: the one the first manifest names)."})
    random_reference: bool = field(
        default=True, metadata={"help": "Overlay a random draw of the same size and seed when no NAME is random."}
    )
    html: bool = field(default=True, metadata={"help": "Also write report.html (charts + per-example browser, offline)."})
    html_rows: int = field(default=20000, metadata={"help": "report.html: most pool rows in its table (kept rows first)."})
    html_texts: int = field(default=1000, metadata={"help": "report.html: most rows whose prompt and response are embedded."})
    html_text_chars: int = field(default=6000, metadata={"help": "report.html: characters kept of each prompt/response."})
    html_tokenizer: str = field(
        default="", metadata={"help": "report.html: tokenizer that renders rows token by token (default: the scores' "
                              "model when it is a local folder; else the template renders the text)."}
    )

    POSITIONAL = "names"


@dataclass
class Loaded:
    name: str
    manifest: dict[str, Any]
    ids: set[str]


def load_selection(dataset_dir: Path, name: str) -> Loaded:
    from data_selection.subset import subset_paths

    paths = subset_paths(dataset_dir, name)
    if not paths["manifest"].exists():
        raise UserError(f"{paths['manifest']} not found: {name!r} is not a subset made by `data-select select` "
                        f"in {dataset_dir}")
    manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
    data = dataset_dir / manifest["file_name"]
    if not data.exists():
        raise UserError(f"{data} not found (named by {paths['manifest']})")
    ids = set()
    for _, line in jsonl_lines(data):
        ids.add(json.loads(line)["id"])
    return Loaded(name, manifest, ids)


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.items()}


def _stat(m: dict[str, Any], name: str, stage: str, what: str = "median", fmt: str = ",.0f") -> str:
    value = m.get("stats", {}).get(name, {}).get(stage, {}).get(what)
    return "—" if value is None else format(value, fmt)


def _dict(d: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in (d or {}).items()) or "—"


def render_markdown(selections: list[Loaded], images: list[str], reference: str, length: list[str] | None = None
                    ) -> str:
    lines = [f"# Selection report: {', '.join(s.name for s in selections)}", ""]
    lines += ["| | " + " | ".join(s.name for s in selections) + " |", "|---|" + "---|" * len(selections)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(str(fn(s.manifest)) for s in selections) + " |")

    row("strategy", lambda m: m["strategy"])
    row("key", lambda m: m["parameters"].get("key") or (m.get("key") or {}).get("name"))
    row("n / seed", lambda m: f"{m['parameters']['n']:,} / {m['parameters']['seed']}")
    row("band (quantiles)", lambda m: f"{m['parameters']['low']}–{m['parameters']['high']}"
        if "low" in m["parameters"] else "—")
    row("band (key values)", lambda m: f"[{m['thresholds']['low_value']:.4f}, {m['thresholds']['high_value']:.4f}]"
        if "low_value" in m["thresholds"] else ("per stratum" if "per_stratum" in m["thresholds"] else "—"))
    row("stratify", lambda m: m["parameters"].get("stratify") or "—")
    if any("temp" in s.manifest for s in selections):
        from data_selection.report_temp import difficulty_cell

        row("TEMP difficulty checkpoint (loss ratio)", difficulty_cell)
    row("over-length rows (policy)", lambda m: f"{m.get('over_length_rows', 0):,} ({m['parameters'].get('over_length')})")
    row("pool", lambda m: f"{m['source'].get('resolved_name') or m['source'].get('dataset')} "
        f"(`{m['source'].get('fingerprint')}`)")
    row("mean key (selected)", lambda m: f"{m['stats']['key']['selected'].get('mean', float('nan')):.4f}")
    row("mean key (eligible)", lambda m: f"{m['stats']['key']['eligible'].get('mean', float('nan')):.4f}")
    row("median response tokens (selected)", lambda m: _stat(m, "n_response_tokens", "selected"))
    row("median response tokens (eligible)", lambda m: _stat(m, "n_response_tokens", "eligible"))
    if any(s.manifest["strategy"] == "pass-cv" for s in selections):
        row("pass thresholds", lambda m: _dict(m["thresholds"].get("pass")))
        row("CV thresholds / CV at the cut", lambda m: f"{_dict(m['thresholds'].get('cv'))} / "
            f"{m['thresholds'].get('cut_cv')}" if "cv" in m["thresholds"] else "—")
        row("mean pass rate (selected)", lambda m: _stat(m, "pass_rate", "selected", "mean", ".3f"))
        row("perplexity filter", lambda m: (m.get("perplexity") or {}).get("source") or "—"
            if m["strategy"] == "pass-cv" else "—")
    lines += ["", "## Funnel", "", "| stage | " + " | ".join(s.name for s in selections) + " |",
              "|---|" + "---|" * len(selections)]
    for stage in FUNNEL_STAGES:
        if any(stage in s.manifest["funnel"] for s in selections):
            lines.append(f"| {stage.replace('_', ' ')} | " + " | ".join(
                f"{s.manifest['funnel'][stage]:,}" if stage in s.manifest["funnel"] else "—" for s in selections) + " |")
    with_queries = [s for s in selections if "query_funnel" in s.manifest]
    if with_queries:
        lines += ["", "## Query funnel (pass-cv)", "", "| stage | " + " | ".join(s.name for s in with_queries) + " |",
                  "|---|" + "---|" * len(with_queries)]
        for stage in dict.fromkeys(k for s in with_queries for k in s.manifest["query_funnel"]):
            lines.append(f"| {stage.replace('_', ' ')} | "
                         + " | ".join(f"{s.manifest['query_funnel'].get(stage, 0):,}" for s in with_queries) + " |")
        for s in with_queries:
            if s.manifest.get("note"):
                lines += ["", f"{s.name}: {s.manifest['note']}."]
    for s in selections:
        for col, stages in s.manifest.get("composition", {}).items():
            lines += ["", f"## Composition of {s.name} by {col} (share of rows)", "",
                      f"| {col} | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
            shares = {st: _shares(c) for st, c in stages.items()}
            for value in sorted({v for c in stages.values() for v in c}):
                lines.append(f"| {value} | " + " | ".join(
                    f"{100 * shares[st].get(value, 0):.1f}% ({stages[st].get(value, 0):,})" for st in stages) + " |")
    from data_selection.report_temp import temp_section

    for s in selections:
        lines += temp_section(s.name, s.manifest)
    lines += length or []
    lines += ["", "## Plots", ""]
    if reference:
        lines += [reference, ""]
    lines += [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"


@dataclass
class LossContext:
    """What the loss plots (PNG and report.html) draw: the eligible pool and each selection's rows in it."""

    scores: Any  # the whole scores table, normalized (pool-row order)
    elig: Any  # data_selection.selectors.common.Eligible under the first manifest's key and over-length policy
    key: str
    over_length: str
    series: list[tuple[str, np.ndarray]]  # (label, key values) per selection (+ the random reference)
    tables: list[tuple[str, Any]]  # (label, eligible rows) per selection (+ the random reference)
    reference: str
    edges: list[tuple[str, float]]
    band: tuple[float, float] | None


def loss_context(opts: ReportOptions, selections: list[Loaded], scores_dir: str) -> LossContext:
    from data_selection.select import load_scores
    from data_selection.selectors import select_random
    from data_selection.selectors.common import eligible_rows, normalized

    first = selections[0].manifest
    table, _, _ = load_scores(scores_dir)
    params = first["parameters"]
    key, over_length = params.get("key") or "loss_mean", params.get("over_length", "drop")
    scores = normalized(table)
    elig = eligible_rows(scores, key, over_length)
    pool = elig.table
    series, tables = [], []
    for s in selections:
        mask = pool["id"].isin(s.ids).to_numpy()
        if mask.sum() < len(s.ids):
            missing = len(s.ids) - int(mask.sum())
            print(f"warning: {missing} row(s) of {s.name} are not among the eligible rows of {scores_dir} "
                  f"({key}, over-length {over_length}); they are left out of the plots")
        series.append((s.name, elig.key[mask]))
        tables.append((s.name, pool.loc[mask]))
    reference = ""
    if opts.random_reference and all(s.manifest["strategy"] != "random" for s in selections):
        n = min(params["n"], len(pool))
        ref = select_random(table, n=n, seed=params["seed"], key=key, over_length=over_length)
        mask = pool["row"].isin(ref.rows).to_numpy()
        series.append((f"random reference (seed {params['seed']})", elig.key[mask]))
        tables.append((f"random reference (seed {params['seed']})", pool.loc[mask]))
        reference = (f"The random reference is a uniform draw of {n:,} eligible rows with seed {params['seed']} "
                     "(the random baseline's protocol), computed for this report.")
    th = first.get("thresholds", {})
    edges = []
    if "low_value" in th:
        edges = [(f"q{th['low_quantile']:g}", th["low_value"]), (f"q{th['high_quantile']:g}", th["high_value"])]
    band = (th["low_value"], th["high_value"]) if "low_value" in th and key == "loss_mean" else None
    return LossContext(scores, elig, key, over_length, series, tables, reference, edges, band)


def _loss_plots(ctx: LossContext, out: Path, seed: int) -> list[str]:
    """key_histogram.png and loss_vs_length.png over the scores' eligible rows."""
    plot_key_histogram(out / "key_histogram.png", ctx.key, ctx.elig.key, ctx.series, ctx.edges)
    plot_loss_vs_length(out / "loss_vs_length.png", ctx.elig.table, ctx.tables, ctx.band, seed=seed)
    return ["key_histogram.png", "loss_vs_length.png"]


def pass_cv_queries(s: Loaded):
    """(query table of the verify folder a pass-cv manifest names, mask of the queries the selection took)."""
    from data_selection.selectors.pass_cv import parse_thresholds, query_table
    from data_selection.verify.output import load_verified

    m = s.manifest
    table, _, _ = load_verified(m["verified"]["dir"])
    p = m["parameters"]
    q = query_table(table, parse_thresholds(p["pass_thresholds"], "pass_thresholds"),
                    parse_thresholds(p["cv_thresholds"], "cv_thresholds"))
    return q, q.index.isin(table.loc[table["id"].isin(s.ids), "query"].unique())


def run_report(opts: ReportOptions) -> dict[str, Any]:
    from data_selection.atomic import write_text_atomic

    if not opts.names:
        raise UserError("name at least one selected subset: data-select report NAME [NAME…]")
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
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["stage", *opts.names])
    for stage in FUNNEL_STAGES:
        if any(stage in s.manifest["funnel"] for s in selections):
            writer.writerow([stage, *(s.manifest["funnel"].get(stage, 0) for s in selections)])
    write_text_atomic(out / "funnel.csv", buf.getvalue())
    length = []
    if scores_dir:
        from data_selection.report_length import length_section
        from data_selection.select import load_scores

        length = length_section(selections, load_scores(scores_dir)[0])
    write_text_atomic(out / "report.md", render_markdown(selections, images, reference, length))
    files = [*images, "funnel.csv", "report.md"]
    if opts.html:
        from data_selection.report_html.selection import write_selection_html

        write_selection_html(opts, selections, ctx, scores_dir, out)
        files.insert(-1, "report.html")
    return {"out": str(out), "files": files}


def cli_report(opts: ReportOptions) -> int:
    res = run_report(opts)
    print(f"report: {Path(res['out']) / 'report.md'} (+ {', '.join(res['files'][:-1])})")
    if "report.html" in res["files"]:
        print(f"html: {Path(res['out']) / 'report.html'}")
    return 0
