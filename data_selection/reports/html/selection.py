"""``report.html`` of ``data-select report NAME…``: the markdown report's facts as charts, plus the browser.

Sections: overview, funnel, key and length (the key's histogram with the band's cut points, response length
pool vs selections, loss vs length with the OLS trend), composition (pool share, selected share, mean key per
source / category), overlap (counts, Jaccard), each strategy's own stages (zpd band, random draw, TEMP's
checkpoint, clusters and allocation, pass-cv's pass-rate / CV plane: :mod:`.stages`), and the per-example browser. The numbers
come from :func:`data_selection.reports.facts.loss_context` and the manifests, the same ones the PNGs and
``report.md`` show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from data_selection.reports.bins import integer_log_bins, key_bins
from data_selection.reports.colors import POOL_COLOR, color
from data_selection.reports.funnel import stages_present
from data_selection.reports.html import charts
from data_selection.reports.html.browser import attach_texts, build_browser, text_positions
from data_selection.reports.html.page import write_page
from data_selection.reports.html.stages import strategy_blocks
from data_selection.reports.html.texts import Renderer
from data_selection.reports.length import QUANTILES, length_facts
from data_selection.reports.temp import difficulty_cell
from data_selection.scores_table import load_scored_pool
from data_selection.selectors.common import fit_length_trend


def _overview(selections) -> dict[str, Any]:
    def band(m):
        th = m.get("thresholds", {})
        if "low_value" in th:
            return f"q{th['low_quantile']:g}–q{th['high_quantile']:g}: [{th['low_value']:.4f}, {th['high_value']:.4f}]"
        return "per stratum" if "per_stratum" in th else "—"

    rows = [
        ["strategy", *(s.manifest["strategy"] for s in selections)],
        ["key", *((s.manifest["parameters"].get("key") or "—") for s in selections)],
        ["n / seed", *(f"{s.manifest['parameters']['n']:,} / {s.manifest['parameters']['seed']}" for s in selections)],
        ["band", *(band(s.manifest) for s in selections)],
        ["stratify", *((s.manifest["parameters"].get("stratify") or "—") for s in selections)],
        ["over-length rows (policy)", *(f"{s.manifest.get('over_length_rows', 0):,} "
                                        f"({s.manifest['parameters'].get('over_length', '—')})" for s in selections)],
        ["TEMP checkpoint", *(difficulty_cell(s.manifest) for s in selections)],
        ["pool", *((s.manifest["source"].get("resolved_name") or s.manifest["source"].get("dataset") or "—")
                   for s in selections)],
        ["selected rows", *(len(s.ids) for s in selections)],
    ]
    return charts.table("", ["", *(s.name for s in selections)], rows)


def _funnel(selections) -> list[dict[str, Any]]:
    stages = stages_present([s.manifest["funnel"] for s in selections])
    series = [(s.name, [s.manifest["funnel"].get(st) for st in stages]) for s in selections]
    return [charts.hbar("pool → eligible → band / filters → selected", [st.replace("_", " ") for st in stages], series),
            charts.table("", ["stage", *(s.name for s in selections)],
                         [[st.replace("_", " "), *(s.manifest["funnel"].get(st) for s in selections)] for st in stages])]


def _loss_blocks(ctx, selections, seed: int) -> list[dict[str, Any]]:
    pool = ctx.elig.table
    blocks = [charts.hist(f"{ctx.key}: eligible pool, band cut points, selections", ctx.key,
                          ("eligible pool", ctx.elig.key), ctx.series, key_bins(ctx.elig.key), ctx.edges)]
    length = pool["n_response_tokens"].to_numpy(np.float64)
    blocks.append(charts.hist("Response length: pool vs selections", "response tokens (log scale)",
                              ("eligible pool", length),
                              [(n, t["n_response_tokens"].to_numpy(np.float64)) for n, t in ctx.tables],
                              integer_log_bins(length), log_x=True, density_per_log=True))
    loss = pool["loss_mean"].to_numpy(np.float64)
    pick = charts.sample(len(pool), 20_000, seed)
    groups = [{"label": f"eligible pool ({len(pick):,} of {len(pool):,} shown)", "color": POOL_COLOR,
               "x": length[pick], "y": loss[pick], "opacity": 0.5}]
    for i, (name, t) in reversed(list(enumerate(ctx.tables))):  # the first selection on top
        p = charts.sample(len(t), 5_000, seed + 1 + i)
        groups.append({"label": f"{name} (n={len(t):,})", "color": color(i), "r": 2.0,
                       "x": t["n_response_tokens"].to_numpy(np.float64)[p], "y": t["loss_mean"].to_numpy(np.float64)[p]})
    line = None
    ok = (length > 0) & np.isfinite(loss)
    if ok.sum() >= 2:
        a, b = fit_length_trend(loss[ok], length[ok])
        grid = np.geomspace(length[ok].min(), length[ok].max(), 60)
        line = {"x": grid.round(2).tolist(), "y": (a + b * np.log(grid)).round(4).tolist(),
                "label": f"OLS: loss = {a:.3f} {'+' if b >= 0 else '-'} {abs(b):.3f}·ln(tokens)"}
    hlines = [("band", v) for v in ctx.band] if ctx.band else []
    blocks.append(charts.scatter("Mean loss vs response length (selected rows highlighted)",
                                 "response tokens (log scale)", "mean response loss (nats/token)", groups, log_x=True,
                                 hlines=hlines, line=line))
    if ctx.reference:
        blocks.append(charts.note(ctx.reference))
    blocks.append(_lengths(ctx, selections))
    return blocks


def _composition(ctx) -> list[dict[str, Any]]:
    """Per source / category: the share of rows, then the mean key, of the pool and each selection (one column
    per selection in each table, so three selections still fit a laptop's width)."""
    pool = ctx.elig.table
    blocks = []
    for col in ("source", "category"):
        if col not in pool.columns:
            continue
        g = pd.DataFrame({"v": pool[col].astype(str).to_numpy(), "k": ctx.elig.key}).groupby("v")["k"]
        base_n, base_mean = g.size(), g.mean()
        per = []
        for (_, t), (_, keys) in zip(ctx.tables, ctx.series):
            sg = pd.DataFrame({"v": t[col].astype(str).to_numpy(), "k": keys}).groupby("v")["k"]
            per.append((sg.size(), sg.mean(), len(t)))
        names = [name for name, _ in ctx.tables]
        shares = [[v, int(base_n[v]), f"{100 * base_n[v] / len(pool):.1f}%",
                   *(f"{100 * n_.get(v, 0) / (total or 1):.1f}%" for n_, _, total in per)] for v in base_n.index]
        means = [[v, float(base_mean[v]), *((float(m_[v]) if v in m_ else None) for _, m_, _ in per)]
                 for v in base_n.index]
        blocks += [charts.table(f"By {col}: share of rows", [col, "pool rows", "pool", *names], shares),
                   charts.table(f"By {col}: mean {ctx.key}", [col, "pool", *names], means)]
    return blocks


def _lengths(ctx, selections) -> dict[str, Any]:
    """report.md's response-length table: Spearman(key, length) over each selection's eligible pool, length
    quantiles of subset and pool, KS (:func:`data_selection.reports.length.length_facts`)."""
    head = " · ".join(f"p{int(100 * q)}" for q in QUANTILES)
    rows = []
    for s in selections:
        f = length_facts(ctx.scores, s.manifest, s.ids)
        rows.append([s.name, f["key"], round(f["spearman"], 3),
                     " · ".join(f"{a:,.0f} / {b:,.0f}" for a, b in zip(f["subset"], f["pool"])), round(f["ks"], 3)])
    return charts.table("Response length per selection (|ρ| near 1: the key ranks by length)",
                        ["selection", "key", "Spearman ρ (pool)", f"lengths {head} (subset / pool)", "KS vs pool"],
                        rows)


def _overlap(selections) -> list[dict[str, Any]]:
    rows = []
    for i, a in enumerate(selections):
        for b in selections[i + 1:]:
            both, either = len(a.ids & b.ids), len(a.ids | b.ids)
            rows.append([f"{a.name} ∩ {b.name}", len(a.ids), len(b.ids), both, round(both / (either or 1), 4)])
    return [charts.table("", ["pair", "rows A", "rows B", "in both", "Jaccard"], rows)] if rows else []


def _texts(ctx, scores_dir: str, shown: np.ndarray, idx: np.ndarray, opts) -> tuple[dict[int, dict], str]:
    """Rendered texts of the shown rows ``idx`` (indices into ``shown``, positions of ``ctx.scores``)."""
    meta = json.loads((Path(scores_dir) / "meta.json").read_text(encoding="utf-8"))
    model = (meta.get("model") or {}).get("name_or_path", "")
    tokenizer = opts.html_tokenizer or (model if model and Path(model).is_dir() else "")
    renderer = Renderer(meta.get("template", "empty"), int(meta.get("cutoff_len", 2**31 - 1)), tokenizer,
                        opts.html_text_chars)
    try:
        pool = load_scored_pool(meta, scores_dir)
    except Exception as err:  # the charts and the table stay useful without the texts
        return {}, f"Texts not embedded: {err}"
    rows = ctx.scores["row"].to_numpy()[shown[idx]]
    ids = ctx.scores["id"].to_numpy()[shown[idx]]
    losses: dict[int, list] = {}
    parquet = Path(scores_dir) / "scores.parquet"
    if "token_losses" in pq.read_schema(parquet).names:
        t = pq.read_table(parquet, columns=["row", "token_losses"]).to_pandas()
        t = t[t["row"].isin(set(rows.tolist()))]
        losses = {int(r): v for r, v in zip(t["row"], t["token_losses"]) if v is not None}
    examples = pool.converted.select([int(r) for r in rows])
    out, mismatched = {}, 0
    for i, want, ex in zip(idx, ids, examples):
        if ex["id"] != want:
            mismatched += 1
            continue
        lv = losses.get(int(ex["_row"]))
        out[int(i)] = renderer.render(ex, None if lv is None else list(lv))
    note = (f"Texts of {len(out):,} rows embedded (kept rows first; bound --html_texts {opts.html_texts:,}), "
            f"{renderer.description}" + (", response tokens coloured by their loss (token_losses)" if losses else "")
            + "." + (f" {mismatched} row(s) left out: the pool changed since scoring." if mismatched else ""))
    return out, note


def selection_payload(opts, selections, ctx, scores_dir: str, extra: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The page's payload; ``extra``: sections added after the strategy stages (a dynamic run's Stages)."""
    seed = selections[0].manifest["parameters"]["seed"]
    sections = [{"title": "Overview", "blocks": [_overview(selections)]},
                {"title": "Funnel", "blocks": _funnel(selections)}]
    if ctx is not None:
        sections += [{"title": "Key and length", "blocks": _loss_blocks(ctx, selections, seed)},
                     {"title": "Composition", "blocks": _composition(ctx)}]
    overlap = _overlap(selections)
    if overlap:
        sections.append({"title": "Overlap", "blocks": overlap})
    sections.append({"title": "Strategy stages", "blocks": strategy_blocks(selections)})
    sections += list(extra)
    browser = None
    if ctx is not None:
        browser, shown, kept_shown = build_browser(ctx.scores, selections, max_rows=opts.html_rows, seed=seed)
        idx = text_positions(kept_shown, opts.html_texts)
        texts, note = _texts(ctx, scores_dir, shown, idx, opts) if len(idx) else ({}, "No texts embedded.")
        scale = float(np.nanquantile(ctx.scores["loss_mean"], 0.95) * 2) if len(ctx.scores) else 5.0
        attach_texts(browser, texts, note + " Other rows: raise --html_texts.", scale)
    return {"title": f"Selection report: {', '.join(s.name for s in selections)}",
            "subtitle": f"data-select report {' '.join(s.name for s in selections)} · scores {scores_dir or '—'}",
            "sections": sections, "browser": browser}


def write_selection_html(opts, selections, ctx, scores_dir: str, out: Path, extra: list[dict[str, Any]] = ()) -> Path:
    return write_page(out / "report.html", selection_payload(opts, selections, ctx, scores_dir, extra))
