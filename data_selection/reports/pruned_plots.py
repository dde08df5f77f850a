"""The PNG charts of a pruned subset's report (``data-select prune-steps``), drawn like the selection report's.

* ``lengths.png``: response tokens per row before and after pruning (all written rows, log scale);
* ``tokens_removed.png``: tokens of the think blocks by step type, kept vs deleted;
* ``pir.png``: the PIR of each functional step by type, deleted vs kept (the cut is per row, so the two
  distributions overlap).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_selection.reports.colors import COLORS, POOL_COLOR
from data_selection.reports.plots import log_token_axis, pyplot, save_png
from data_selection.transforms.steps import FUNCTIONAL_TYPES, STEP_TYPES


def plot_lengths(path: Path, before: list[int], after: list[int]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    lo = max(1.0, float(min(b.min(), a.min()))) if len(b) else 1.0
    hi = max(lo * 1.01, float(max(b.max(), a.max()))) if len(b) else 10.0
    bins = np.geomspace(lo, hi, 50)
    for values, label, color in ((b, "before", POOL_COLOR), (a, "after", COLORS[0])):
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
    ax.barh(y, kept, color=POOL_COLOR, label="kept")
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
            ax.hist(np.clip(k, bins[0], bins[-1]), bins=bins, color=POOL_COLOR, label=f"kept ({len(k):,})")
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
