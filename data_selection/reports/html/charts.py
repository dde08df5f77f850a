"""Chart blocks for ``report.html``: numbers binned here (numpy), drawn as SVG by ``assets/report.js``.

Each function returns one JSON-ready block (``kind`` ``hist``, ``hbar``, ``stack``, ``scatter``, ``table``,
``note``, ``intervals``, ``grid`` or ``links``).
Colours and bins are the PNG reports' (:mod:`data_selection.reports.colors`, :mod:`data_selection.reports.bins`),
the pool is grey.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_selection.reports.colors import POOL_COLOR, color


def _density(values: np.ndarray, edges: np.ndarray) -> list[float]:
    values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
    counts, _ = np.histogram(values, bins=edges)
    total = counts.sum()
    width = np.diff(edges)
    return [round(float(x), 6) for x in (counts / (total * width) if total else counts * 0.0)]


def hist(title: str, xlabel: str, pool: tuple[str, np.ndarray], series: list[tuple[str, np.ndarray]],
         edges: np.ndarray, cuts: list[tuple[str, float]] = (), log_x: bool = False, ylabel: str = "density",
         density_per_log: bool = False) -> dict[str, Any]:
    """The pool filled in grey, every series as a step line, ``cuts`` as dashed vertical lines."""
    def dens(v):
        if density_per_log:  # density per unit of log10(x): equal-width bars on a log axis
            le = np.log10(edges)
            return _density(np.log10(np.clip(v[v > 0], edges[0], edges[-1])), le)
        return _density(v, edges)

    label, values = pool
    out = [{"label": f"{label} (n={len(values):,})", "color": POOL_COLOR, "fill": True, "values": dens(values)}]
    out += [{"label": f"{name} (n={len(v):,})", "color": color(i), "values": dens(v)} for i, (name, v) in
            enumerate(series)]
    return {"kind": "hist", "title": title, "xlabel": xlabel, "ylabel": ylabel + (" per log10" if density_per_log else ""),
            "edges": [float(e) for e in edges], "log_x": log_x, "series": out,
            "cuts": cut_marks(cuts)}


def cut_marks(cuts: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Cut points and where each label sits: with two or more, the lowest label ends left of its line and the
    highest starts right of it, so a band's two labels never overlap however close its edges are; one is centred."""
    order = sorted(range(len(cuts)), key=lambda i: cuts[i][1])
    anchor = dict.fromkeys(order, "middle")
    if len(order) >= 2:
        anchor[order[0]], anchor[order[-1]] = "end", "start"
    return [{"label": c, "value": float(v), "anchor": anchor[i]} for i, (c, v) in enumerate(cuts)]



def hbar(title: str, categories: list[str], series: list[tuple[str, list[float | None]]]) -> dict[str, Any]:
    return {"kind": "hbar", "title": title, "categories": categories,
            "series": [{"label": name, "color": color(i), "values": values} for i, (name, values) in enumerate(series)]}


def stack(title: str, categories: list[str], series: list[tuple[str, str, list[float | None]]]) -> dict[str, Any]:
    """Horizontal stacked bars: one bar per category, ``series`` (label, colour, values) stacked left to right; a
    None value is no segment."""
    return {"kind": "stack", "title": title, "categories": categories,
            "series": [{"label": name, "color": c, "values": values} for name, c, values in series]}


def scatter(title: str, xlabel: str, ylabel: str, groups: list[dict[str, Any]], log_x: bool = False,
            hlines: list[tuple[str, float]] = (), line: dict[str, Any] | None = None) -> dict[str, Any]:
    """``groups``: dicts with label, color, x, y (arrays; drawn in order, the last on top)."""
    xs = np.concatenate([np.asarray(g["x"], np.float64) for g in groups]) if groups else np.array([1.0])
    ys = np.concatenate([np.asarray(g["y"], np.float64) for g in groups]) if groups else np.array([0.0])
    ok = np.isfinite(xs) & np.isfinite(ys) & ((xs > 0) if log_x else True)
    xs, ys = (xs[ok], ys[ok]) if ok.any() else (np.array([1.0]), np.array([0.0]))
    y_lo, y_hi = np.quantile(ys, [0.001, 0.999])
    pad = (y_hi - y_lo) * 0.04 or 0.5
    x_lo, x_hi = float(xs.min()), float(xs.max())
    if x_hi <= x_lo:
        x_hi = x_lo * 2 if log_x else x_lo + 1
    out = []
    for g in groups:
        x, y = np.asarray(g["x"], np.float64), np.asarray(g["y"], np.float64)
        keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log_x else True)
        out.append({**g, "x": np.round(x[keep], 4).tolist(), "y": np.round(y[keep], 4).tolist()})
    return {"kind": "scatter", "title": title, "xlabel": xlabel, "ylabel": ylabel, "log_x": log_x, "groups": out,
            "x_range": [x_lo, x_hi], "y_range": [float(y_lo - pad), float(y_hi + pad)],
            "hlines": [{"label": c, "value": float(v)} for c, v in hlines], "line": line}


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"kind": "table", "title": title, "columns": columns, "rows": rows}


def note(text: str) -> dict[str, Any]:
    return {"kind": "note", "text": text}


def sample(n: int, k: int, seed: int) -> np.ndarray:
    """At most ``k`` of ``range(n)``, ascending, seeded."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def intervals(title: str, xlabel: str, rows: list[dict[str, Any]], zero: bool = False) -> dict[str, Any]:
    """``rows``: label, estimate, low, high (and optionally color, text); an estimate of None draws the interval
    alone (a band)."""
    return {"kind": "intervals", "title": title, "xlabel": xlabel, "rows": rows, "zero": zero}


def grid(title: str, xlabel: str, rows: list[str], columns: list[str], values: list[list[float | None]]) -> dict[str, Any]:
    return {"kind": "grid", "title": title, "xlabel": xlabel, "rows": rows, "columns": columns, "values": values}


def links(title: str, items: list[dict[str, str]]) -> dict[str, Any]:
    """``items``: label, href (optional), text (optional)."""
    return {"kind": "links", "title": title, "items": items}
