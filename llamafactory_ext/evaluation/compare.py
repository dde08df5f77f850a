"""``llamafactory-ext compare``: the base vs random vs selected table, as markdown, CSV and a bar chart.

Rows are benchmarks, columns the evaluated models (score ± stderr, in %), then the deltas in percentage
points of every model against the baseline and against the reference (the random-subset model: the
"ZPD vs random" column of the loss-band report, docs/methods.md §7). Each run's headline metric is picked per benchmark from whatever
lighteval version wrote it (lighteval_results.py); a benchmark a run lacks shows as "—", and the notes under
the table say when runs used different metrics or only part of a benchmark (``--max_samples``).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from data_selection.atomic import atomic_path, write_text_atomic
from data_selection.command_line import UserError
from llamafactory_ext.evaluation.lighteval_results import (
    RunResults,
    Score,
    display_name,
    metric_kind,
    primary_metric,
    read_run,
)
from llamafactory_ext.evaluation.presets import SUITES
from llamafactory_ext.options.compare import CompareOptions

DASH = "—"


@dataclass
class Cell:
    metric: str | None
    score: Score | None

    @property
    def value(self) -> float | None:
        return None if self.score is None or math.isnan(self.score.value) else 100 * self.score.value

    @property
    def stderr(self) -> float | None:
        return None if self.score is None or self.score.stderr is None else 100 * self.score.stderr


@dataclass
class Table:
    names: list[str]
    runs: list[RunResults]
    benchmarks: list[str]
    cells: dict[str, dict[str, Cell]]  # benchmark -> run name -> cell
    deltas: list[tuple[str, str]]  # (run, against)
    notes: list[str]


def _order(benchmarks: set[str], runs: list[RunResults]) -> list[str]:
    known = [b for b in SUITES["all"] if b in benchmarks]
    seen = []
    for run in runs:
        seen += [b for b in run.scores if b not in known and b not in seen]
    return known + seen


def _metric_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        bench, sep, metric = item.partition("=")
        if not sep or not bench or not metric:
            raise UserError(f"--metric {item!r}: expected BENCHMARK=METRIC, e.g. aime24=avg@n:n=8")
        out[bench] = metric
    return out


def build_table(
    sources: list[str], names: list[str] | None, baseline: str | None, reference: str | None, overrides: dict
) -> Table:
    if not sources:
        raise UserError(
            "give the evaluation folders to compare, e.g. compare evals/base evals/random evals/zpd"
        )
    names = names or [Path(s).name if Path(s).is_dir() else Path(s).stem for s in sources]
    if len(names) != len(sources):
        raise UserError(f"--names has {len(names)} names for {len(sources)} runs")
    if len(set(names)) != len(names):
        raise UserError(f"run names must differ: {names}; pass --names")
    runs = [read_run(Path(s)) for s in sources]
    baseline = baseline or names[0]
    if baseline not in names:
        raise UserError(f"--baseline {baseline!r} is not one of the runs {names}")
    if reference is None:
        reference = "random" if "random" in names and baseline != "random" else ""
    if reference and reference not in names:
        raise UserError(f"--reference {reference!r} is not one of the runs {names}")

    benchmarks = _order({b for r in runs for b in r.scores}, runs)
    cells: dict[str, dict[str, Cell]] = {}
    notes: list[str] = []
    for bench in benchmarks:
        row = {}
        for name, run in zip(names, runs):
            metrics = run.scores.get(bench)
            if metrics is None:
                row[name] = Cell(None, None)
                continue
            metric = overrides.get(bench) or primary_metric(bench, metrics)
            row[name] = Cell(metric, metrics.get(metric))
            if metric not in metrics:
                notes.append(
                    f"{name} has no metric {metric!r} for {display_name(bench)} (it has {sorted(metrics)})"
                )
        cells[bench] = row
        kinds = sorted({metric_kind(c.metric) for c in row.values() if c.metric})
        if len(kinds) > 1:
            notes.append(
                f"{display_name(bench)}: runs measure different things ({', '.join(kinds)}); deltas compare "
                "different protocols"
            )
        missing = [n for n, c in row.items() if c.metric is None]
        if missing:
            notes.append(f"{display_name(bench)}: not evaluated in {', '.join(missing)}")
    for name, run in zip(names, runs):
        if run.max_samples:
            notes.append(
                f"{name}: partial evaluation, {run.max_samples} problems per task "
                "(--max_samples; lighteval's seed-42 shuffle)"
            )
    deltas = [(n, baseline) for n in names if n != baseline]
    if reference:
        deltas += [(n, reference) for n in names if n not in (baseline, reference)]
    return Table(names, runs, benchmarks, cells, deltas, notes)


def _delta(table: Table, bench: str, run: str, against: str) -> float | None:
    a, b = table.cells[bench][run].value, table.cells[bench][against].value
    return None if a is None or b is None else a - b


def _fmt_score(cell: Cell) -> str:
    if cell.value is None:
        return DASH
    return f"{cell.value:.2f}" + (f" ± {cell.stderr:.2f}" if cell.stderr is not None else "")


def _resolved(table: Table, bench: str, run: str, against: str) -> bool:
    """The difference is more than 1.96 standard errors from zero (the two runs' stderrs combined); a delta
    without stderrs is taken as resolved, as before."""
    d = _delta(table, bench, run, against)
    a, b = table.cells[bench][run].stderr, table.cells[bench][against].stderr
    if d is None or a is None or b is None:
        return d is not None
    return abs(d) > 1.96 * math.hypot(a, b)


def _fmt_delta(d: float | None, resolved: bool = True) -> str:
    if d is None:
        return DASH
    if abs(d) < 5e-3:
        return "0.00"
    text = f"+{d:.2f}" if d > 0 else f"−{abs(d):.2f}"
    return text + ((" ↑" if d > 0 else " ↓") if resolved else "")


def _problems(table: Table, bench: str) -> int | None:
    """Problems behind a pass/fail score, from a run's value and lighteval's stderr sqrt(p(1-p)/(n-1))."""
    for cell in table.cells[bench].values():
        if cell.score is None or not cell.score.stderr or not 0 < cell.score.value < 1:
            continue
        p = cell.score.value
        n = round(p * (1 - p) / cell.score.stderr ** 2 + 1)
        if n > 1 and all(c.score is None or abs(c.score.value * n - round(c.score.value * n)) < 1e-6
                         for c in table.cells[bench].values()):
            return n
    return None


def _unresolved_line(table: Table) -> str:
    """" — no difference in this table is resolved (...): base 2/30, random 1/30, zpd 3/30 solved" or ""."""
    pairs = [(b, r, a) for b in table.benchmarks for r, a in table.deltas if _delta(table, b, r, a) is not None]
    if not pairs or any(_resolved(table, *pair) for pair in pairs):
        return ""
    counts = []
    for bench in table.benchmarks:
        n = _problems(table, bench)
        if n is None:
            continue
        solved = ", ".join(f"{name} {round(c.score.value * n)}/{n}" for name, c in table.cells[bench].items()
                           if c.score is not None)
        counts.append(f"{display_name(bench)}: {solved} solved" if len(table.benchmarks) > 1 else f"{solved} solved")
    return (" Arrows mark only differences beyond 1.96 standard errors: no difference in this table is resolved"
            + (f" ({'; '.join(counts)})" if counts else "") + ".")


def _pm(table: Table, bench: str, run: str, against: str) -> str:
    a, b = table.cells[bench][run].stderr, table.cells[bench][against].stderr
    return f" ± {1.96 * math.hypot(a, b):.1f}" if a is not None and b is not None else ""


def one_line(table: Table) -> str:
    """The table in a sentence a newcomer can read: each run against the baseline (in the demo: what fine-tuning
    did to the base model), and against the reference (how the strategies differ from random) (± 1.96 combined standard errors; "not resolved" when within them)."""
    parts = []
    for bench in table.benchmarks:
        against_base, between = [], []
        for run, against in table.deltas:
            d = _delta(table, bench, run, against)
            if d is None:
                continue
            text = (f"{run} {d:+.1f}{_pm(table, bench, run, against)} points"
                    + ("" if _resolved(table, bench, run, against) else " (not resolved)"))
            (against_base if against == table.deltas[0][1] else between).append((against, text))
        if not against_base and not between:
            continue
        line = f"{display_name(bench)}: " if len(table.benchmarks) > 1 else ""
        if against_base:
            line += f"against {against_base[0][0]}: " + ", ".join(t for _, t in against_base)
        if between:
            line += ("; " if against_base else "") + f"against {between[0][0]}: " + ", ".join(t for _, t in between)
        parts.append(line)
    return ("**In one line:** " + ". ".join(parts) + ".") if parts else ""


def _metric_label(table: Table, bench: str) -> str:
    used = []
    for c in table.cells[bench].values():
        if c.metric and c.metric not in used:
            used.append(c.metric)
    return " / ".join(f"`{m}`" for m in used) or DASH


def to_markdown(table: Table) -> str:
    header = ["Benchmark", "Metric", *table.names, *[f"Δ {r} vs {a}" for r, a in table.deltas]]
    headline = one_line(table)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    for bench in table.benchmarks:
        row = [display_name(bench), _metric_label(table, bench)]
        row += [_fmt_score(table.cells[bench][n]) for n in table.names]
        row += [_fmt_delta(_delta(table, bench, r, a), _resolved(table, bench, r, a)) for r, a in table.deltas]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", headline] if headline else []
    lines += [
        "",
        "Scores in %, ± lighteval's standard error; deltas in percentage points. — : not evaluated."
        + _unresolved_line(table),
    ]
    lines += ["", "Runs:"]
    for name, run in zip(table.names, table.runs):
        model = f", model `{run.model}`" if run.model else ""
        lines.append(f"- **{name}**: `{run.source}` ({len(run.files)} results file(s){model})")
    if table.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["benchmark", "name", "metric"]
    for n in table.names:
        header += [n, f"{n}_stderr"]
    header += [f"delta_{r}_vs_{a}" for r, a in table.deltas]
    writer.writerow(header)

    def num(x):
        return "" if x is None else f"{x:.4f}"

    for bench in table.benchmarks:
        row = [
            bench,
            display_name(bench),
            " / ".join(m.strip("`") for m in _metric_label(table, bench).split(" / ")),
        ]
        for n in table.names:
            row += [num(table.cells[bench][n].value), num(table.cells[bench][n].stderr)]
        row += [num(_delta(table, bench, r, a)) for r, a in table.deltas]
        writer.writerow(row)
    return buf.getvalue()


def plot(table: Table, path: Path, title: str | None) -> None:
    # lazy: matplotlib is slow to import; only the chart needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n_b, n_r = len(table.benchmarks), len(table.names)
    width = 0.8 / n_r
    x = np.arange(n_b)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 + n_b * (0.5 + 0.45 * n_r)), 4.8))
    colors = plt.get_cmap("tab10").colors
    top = 0.0
    for i, name in enumerate(table.names):
        offs = x - 0.4 + width * (i + 0.5)
        for j, bench in enumerate(table.benchmarks):
            cell = table.cells[bench][name]
            if cell.value is None:
                ax.text(offs[j], 0.5, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
                continue
            err = cell.stderr or 0.0
            ax.bar(
                offs[j],
                cell.value,
                width * 0.92,
                color=colors[i % 10],
                label=name if j == 0 else None,
                yerr=err if cell.stderr is not None else None,
                capsize=3,
                ecolor="#333333",
                linewidth=0,
            )
            ax.text(
                offs[j], cell.value + err + 0.6, f"{cell.value:.1f}", ha="center", va="bottom", fontsize=7
            )
            top = max(top, cell.value + err)
    # one legend entry per run even when its first benchmark is missing
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i % 10]) for i in range(n_r)]
    ax.legend(handles, table.names, ncols=min(n_r, 4), loc="upper right", frameon=False)
    ax.set_xticks(
        x,
        [display_name(b) for b in table.benchmarks],
        rotation=20 if n_b > 6 else 0,
        ha="right" if n_b > 6 else "center",
    )
    ax.set_ylabel("score (%) ± stderr")
    ax.set_ylim(0, max(10.0, top * 1.25 + 2))
    ax.set_xlim(-0.6, n_b - 0.4)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title or " vs ".join(table.names))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def cli_compare(opts: CompareOptions) -> int:
    names = [n.strip() for n in opts.names.split(",")] if opts.names else None
    table = build_table(opts.runs, names, opts.baseline, opts.reference, _metric_overrides(opts.metric))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table)
    write_text_atomic(out / "report.md", markdown)
    write_text_atomic(out / "report.csv", to_csv(table))
    plot(table, out / "report.png", opts.title)
    print(markdown)
    print(f"[compare] wrote {out / 'report.md'}, {out / 'report.csv'}, {out / 'report.png'}", file=sys.stderr)
    return 0
