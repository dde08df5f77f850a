"""The PNG charts of ``data-select report`` (and of ``prune-steps``' report): matplotlib, headless, no timestamps.

Each function draws one figure from arrays and tables it is given; reading selections, scores and manifests is
:mod:`data_selection.reports.facts`' job. The pruned subset's charts are :mod:`data_selection.reports.pruned_plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from data_selection.atomic import atomic_path
from data_selection.reports.bins import key_bins
from data_selection.reports.colors import COLORS, POOL_COLOR
from data_selection.selectors.common import fit_length_trend


def pyplot():
    import matplotlib  # lazy: matplotlib loads only when a PNG is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 10, "axes.titlesize": 12, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def log_token_axis(ax) -> None:
    """A log-scale x axis of token counts, ticked at 1, 2, 5 per decade and labelled in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # lazy: matplotlib, as in pyplot()

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def save_png(fig, path: Path) -> None:
    """PNG without a creation timestamp, written atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", metadata={"Software": None})


def plot_key_histogram(path: Path, key_name: str, pool_key: np.ndarray, series: list[tuple[str, np.ndarray]],
                       edges: list[tuple[str, float]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    bins = key_bins(pool_key)
    ax.hist(np.clip(pool_key, bins[0], bins[-1]), bins=bins, density=True, color=POOL_COLOR,
            label=f"eligible pool (n={len(pool_key):,})")
    for i, (label, values) in enumerate(series):
        ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, density=True, histtype="step", linewidth=2,
                color=COLORS[i % len(COLORS)], label=f"{label} (n={len(values):,})")
    for label, x in edges:
        ax.axvline(x, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"{label}\n{x:.3f}", xy=(x, 1), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                    fontsize=9)
    ax.set_xlabel(key_name)
    ax.set_ylabel("density")
    ax.set_title(f"Distribution of {key_name}: pool, band edges and selections", pad=28)
    ax.legend(loc="upper right", frameon=False)
    save_png(fig, path)
    plt.close(fig)


def plot_loss_vs_length(path: Path, pool, series: list[tuple[str, Any]], band: tuple[float, float] | None,
                        seed: int = 0) -> None:
    plt = pyplot()
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(9, 5.2))
    x, y = pool["n_response_tokens"].to_numpy(np.float64), pool["loss_mean"].to_numpy(np.float64)
    show = rng.choice(len(x), size=min(len(x), 20_000), replace=False) if len(x) else np.array([], int)
    ax.scatter(x[show], y[show], s=4, color=POOL_COLOR, alpha=0.5, linewidths=0, label=f"eligible pool (n={len(x):,})")
    for i, (label, t) in enumerate(series):  # the first selection is drawn on top
        sx, sy = t["n_response_tokens"].to_numpy(np.float64), t["loss_mean"].to_numpy(np.float64)
        pick = rng.choice(len(sx), size=min(len(sx), 5_000), replace=False) if len(sx) else np.array([], int)
        ax.scatter(sx[pick], sy[pick], s=7, color=COLORS[i % len(COLORS)], alpha=0.7, linewidths=0,
                   label=f"{label} (n={len(sx):,})", zorder=3 + len(series) - i)
    ok = (x > 0) & np.isfinite(y)
    if ok.sum() >= 2:
        a, b = fit_length_trend(y[ok], x[ok])
        grid = np.geomspace(x[ok].min(), x[ok].max(), 100)
        ax.plot(grid, a + b * np.log(grid), color="black", linewidth=1.5, zorder=10,
                label=f"OLS: loss = {a:.3f} {'+' if b >= 0 else '-'} {abs(b):.3f}·ln(tokens)")
    if band is not None:
        for v in band:
            ax.axhline(v, color="black", linestyle="--", linewidth=1)
    log_token_axis(ax)
    ax.set_xlabel("response tokens (log scale)")
    ax.set_ylabel("mean response loss (nats/token)")
    ax.set_title("Mean loss vs response length" + (" (dashed: loss_mean band)" if band else ""))
    ax.legend(loc="best", frameon=False, markerscale=3)
    save_png(fig, path)
    plt.close(fig)


def plot_funnel(path: Path, funnels: list[tuple[str, dict[str, int]]], order: list[str]) -> None:
    """One bar group per selection: the row count at each funnel stage it has, stages in ``order``."""
    from matplotlib.ticker import FuncFormatter  # lazy: matplotlib, as in pyplot()

    plt = pyplot()
    stages = [s for s in order if any(s in f for _, f in funnels)]
    k = len(funnels)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(stages) * max(1, k * 0.7) + 1.2))
    height = 0.8 / k
    ypos = np.arange(len(stages))
    top = max((v for _, f in funnels for v in f.values()), default=1) or 1
    for i, (label, f) in enumerate(funnels):
        vals = [f.get(s, 0) for s in stages]
        pos = ypos + (i - (k - 1) / 2) * height
        ax.barh(pos, vals, height=height * 0.95, color=COLORS[i % len(COLORS)], label=label)
        for p, v in zip(pos, vals):
            ax.text(v + top * 0.01, p, f"{v:,}", va="center", fontsize=9)
    ax.set_yticks(ypos, [s.replace("_", " ") for s in stages])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("rows")
    ax.set_title("Selection funnel")
    if k > 1:
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=k, frameon=False)
        ax.set_title("Selection funnel", pad=24)
    save_png(fig, path)
    plt.close(fig)


def plot_pass_cv(path: Path, selections: list[tuple[str, Any, Any]]) -> None:
    """CV and pass rate of the queries a pass-cv selection saw (best response passing) and of those it took.

    ``selections``: (name, query table, mask of the queries taken), as :func:`data_selection.reports.facts.pass_cv_queries`
    returns them.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn_pool = False
    for i, (name, q, taken) in enumerate(selections):
        for ax, col, bins in ((axes[0], "cv", np.linspace(0, max(2.0, float(np.nanmax(q["cv"])) if len(q) else 2), 41)),
                              (axes[1], "pass_rate", np.linspace(0, 1, 21))):
            base = q.loc[q["best_passes"], col].dropna().to_numpy() if col == "cv" else q[col].dropna().to_numpy()
            if not drawn_pool:
                label = "queries whose best response passes" if col == "cv" else "all scored queries"
                ax.hist(base, bins=bins, color=POOL_COLOR, label=f"{label} (n={len(base):,})")
            sel = q.loc[taken, col].dropna().to_numpy()
            ax.hist(sel, bins=bins, histtype="step", linewidth=2, color=COLORS[i % len(COLORS)],
                    label=f"{name} (n={len(sel):,})")
        drawn_pool = True
    axes[0].set_xlabel("CV of the query's verify scores (population σ/μ)")
    axes[1].set_xlabel("pass rate of the query's responses")
    for ax in axes:
        ax.set_ylabel("queries")
        ax.legend(loc="upper right", frameon=False, fontsize=8)
    fig.suptitle("pass-cv: what the queries looked like, and which were taken")
    save_png(fig, path)
    plt.close(fig)
