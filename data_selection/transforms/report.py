"""The report of a pruned subset: ``report.md`` with ``lengths.png``, ``tokens_removed.png`` and ``pir.png``.

* ``lengths.png``: response tokens per row before and after pruning (all written rows, log scale);
* ``tokens_removed.png``: tokens of the think blocks by step type, kept vs deleted;
* ``pir.png``: the PIR of each functional step by type, deleted vs kept (the cut is per row, so the two
  distributions overlap);
* ``report.html``: the same in one offline page, with each pruned row's deleted steps struck through
  (:mod:`data_selection.report_html.pruned`);
* ``report.md``: the counts of the manifest: rows pruned and unchanged (with why), steps found and deleted,
  tokens before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from data_selection.report_plots import COLORS, log_token_axis, pyplot, save_png
from data_selection.transforms.steps import FUNCTIONAL_TYPES, STEP_TYPES


def plot_lengths(path: Path, before: list[int], after: list[int]) -> None:

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    lo = max(1.0, float(min(b.min(), a.min()))) if len(b) else 1.0
    hi = max(lo * 1.01, float(max(b.max(), a.max()))) if len(b) else 10.0
    bins = np.geomspace(lo, hi, 50)
    for values, label, color in ((b, "before", "#bbbbbb"), (a, "after", COLORS[0])):
        med = float(np.median(values)) if len(values) else float("nan")
        ax.hist(values, bins=bins, histtype="stepfilled" if label == "before" else "step", linewidth=2,
                color=color, label=f"{label}: {int(values.sum()):,} tokens, median {med:,.0f}")
    log_token_axis(ax)
    ax.set_xlabel("response tokens per row (log scale)")
    ax.set_ylabel("rows")
    ax.set_title("Response length before and after PIR pruning")
    ax.legend(loc="best", frameon=False)
    save_png(fig, path)
    plt.close(fig)


def plot_tokens_by_type(path: Path, think_by_type: dict[str, int], removed_by_type: dict[str, int]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    y = np.arange(len(STEP_TYPES))
    removed = [removed_by_type.get(t, 0) for t in STEP_TYPES]
    kept = [think_by_type.get(t, 0) - r for t, r in zip(STEP_TYPES, removed)]
    ax.barh(y, kept, color="#bbbbbb", label="kept")
    ax.barh(y, removed, left=kept, color=COLORS[0], label="deleted")
    top = max([k + r for k, r in zip(kept, removed)] + [1])
    for yi, k, r in zip(y, kept, removed):
        ax.text(k + r + top * 0.01, yi, f"{r:,} of {k + r:,}", va="center", fontsize=9)
    ax.set_yticks(y, [t.replace("_", " ") for t in STEP_TYPES])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("think tokens (rows whose PIR was computed)")
    ax.set_title("Tokens by step type: deleted vs kept")
    ax.legend(loc="lower right", frameon=False)
    save_png(fig, path)
    plt.close(fig)


def plot_pir(path: Path, deleted: dict[str, list[float]], kept: dict[str, list[float]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(FUNCTIONAL_TYPES), figsize=(12, 3.8), sharey=False)
    for ax, t in zip(axes, FUNCTIONAL_TYPES):
        d, k = np.asarray(deleted[t], dtype=np.float64), np.asarray(kept[t], dtype=np.float64)
        both = np.concatenate([d, k])
        if len(both):
            lo, hi = np.quantile(both, [0.005, 0.995])
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 40)
            ax.hist(np.clip(k, bins[0], bins[-1]), bins=bins, color="#bbbbbb", label=f"kept ({len(k):,})")
            ax.hist(np.clip(d, bins[0], bins[-1]), bins=bins, histtype="step", linewidth=2, color=COLORS[0],
                    label=f"deleted ({len(d):,})")
            ax.legend(loc="upper right", frameon=False, fontsize=8)
        else:
            ax.text(0.5, 0.5, "no steps", ha="center", va="center", transform=ax.transAxes)
        ax.axvline(0, color="black", linewidth=0.8, linestyle=":")
        ax.set_title(t.replace("_", " "))
        ax.set_xlabel("PIR (nats)")
    axes[0].set_ylabel("steps")
    fig.suptitle("PIR of functional steps (lower = the answer needs the step less)")
    save_png(fig, path)
    plt.close(fig)


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
    from data_selection.atomic import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    plot_lengths(out / "lengths.png", facts["lengths_before"], facts["lengths_after"])
    plot_tokens_by_type(out / "tokens_removed.png", manifest["tokens"]["think_by_type"],
                        manifest["tokens"]["removed_by_type"])
    plot_pir(out / "pir.png", facts["pir_values"]["deleted"], facts["pir_values"]["kept"])
    images = ["lengths.png", "tokens_removed.png", "pir.png"]
    write_text_atomic(out / "report.md", render_markdown(manifest, images))
    from data_selection.report_html.pruned import write_pruned_html

    write_pruned_html(out, manifest, facts)
    return images
