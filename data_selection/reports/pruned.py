"""The report of a pruned subset (``data-select prune-steps``): ``report.md``, its PNGs and ``report.html``.

* the PNGs: :mod:`data_selection.reports.pruned_plots` (``lengths.png``, ``tokens_removed.png``, ``pir.png``);
* ``report.html``: the same in one offline page, with each pruned row's deleted steps struck through
  (:mod:`data_selection.reports.html.pruned`);
* ``report.md``: the counts of the manifest: rows pruned and unchanged (with why), steps found and deleted,
  tokens before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_selection.atomic import write_text_atomic
from data_selection.reports.html.pruned import write_pruned_html
from data_selection.reports.pruned_plots import plot_lengths, plot_pir, plot_tokens_by_type


def render_markdown(manifest: dict[str, Any], images: list[str]) -> str:
    rows, tok, p = manifest["rows"], manifest["tokens"], manifest["parameters"]
    lines = [f"# PIR pruning report: {manifest['name']}", "",
             f"Input `{manifest['source'].get('dataset')}`, ratio {p['ratio']}, model "
             f"`{manifest['scorer']['model'].get('name_or_path')}` (template `{manifest['scorer']['template']}`, "
             f"cutoff_len {manifest['scorer']['cutoff_len']}). Re-make: `{manifest['recipe']}`", "",
             "| rows | |", "|---|---|", f"| input | {rows['input']:,} |",
             f"| rejected by the loader (left out) | {rows['rejected']:,} |", f"| written | {rows['written']:,} |",
             f"| pruned | {rows['changed']:,} |", f"| unchanged | {rows['unchanged_total']:,} |", "",
             "| unchanged because | rows |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in rows["unchanged"].items()] or ["| — | 0 |"]
    if rows.get("rejected"):
        lines += ["", f"Rows rejected by the loader, each with its row number and reason: `{rows['rejects_file']}`.", "",
                  "| rejected because | rows |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in rows.get("rejected_by_reason", {}).items()]
    lines += ["", "| step type | found | PIR computed | deleted | tokens removed | mean PIR deleted | mean PIR kept |",
              "|---|---|---|---|---|---|---|"]
    for t, v in manifest["steps"].items():
        pir = manifest["pir"].get(t, {})
        md, mk = pir.get("deleted", {}).get("mean"), pir.get("kept", {}).get("mean")
        lines.append(f"| {t.replace('_', ' ')} | {v['found']:,} | {v['scored']:,} | {v['deleted']:,} | "
                     f"{tok['removed_by_type'].get(t, 0):,} | {'—' if md is None else f'{md:.4f}'} | "
                     f"{'—' if mk is None else f'{mk:.4f}'} |")
    lb, la = tok["lengths_before"], tok["lengths_after"]
    lines += ["", "| response tokens | before | after |", "|---|---|---|",
              f"| total | {tok['response_before']:,} | {tok['response_after']:,} |",
              f"| mean per row | {lb.get('mean', 0):,.1f} | {la.get('mean', 0):,.1f} |",
              f"| median per row | {lb.get('median', 0):,.0f} | {la.get('median', 0):,.0f} |",
              f"| removed | {tok['removed']:,} ({100 * tok['removed_share']:.1f}%) | |", "",
              f"Token counts: {tok['note']}.", ""]
    lines += [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"


def write_report(out: Path, manifest: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    plot_lengths(out / "lengths.png", facts["lengths_before"], facts["lengths_after"])
    plot_tokens_by_type(out / "tokens_removed.png", manifest["tokens"]["think_by_type"],
                        manifest["tokens"]["removed_by_type"])
    plot_pir(out / "pir.png", facts["pir_values"]["deleted"], facts["pir_values"]["kept"])
    images = ["lengths.png", "tokens_removed.png", "pir.png"]
    write_text_atomic(out / "report.md", render_markdown(manifest, images))
    write_pruned_html(out, manifest, facts)
    return images
