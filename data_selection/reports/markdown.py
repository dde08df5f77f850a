"""``report.md`` of ``data-select report NAME…``: parameters, thresholds, funnel, query funnel, composition.

One column per selection; the TEMP choices (:mod:`.temp`) and the response-length section (:mod:`.length`)
follow, then the PNGs the report drew.
"""

from __future__ import annotations

from typing import Any

from data_selection.reports.facts import Loaded
from data_selection.reports.funnel import stages_present
from data_selection.reports.temp import difficulty_cell, temp_section
from data_selection.sources import duplicate_user_ids_line


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
    for s in selections:  # the user's own ids repeat: say so, once per selection whose pool has them
        if dup := duplicate_user_ids_line(s.manifest.get("source") or {}):
            lines += ["", f"{s.name}: {dup}."]
    lines += ["", "## Funnel", "", "| stage | " + " | ".join(s.name for s in selections) + " |",
              "|---|" + "---|" * len(selections)]
    for stage in stages_present([s.manifest["funnel"] for s in selections]):
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
    for s in selections:
        lines += temp_section(s.name, s.manifest)
    lines += length or []
    lines += ["", "## Plots", ""]
    if reference:
        lines += [reference, ""]
    lines += [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"
