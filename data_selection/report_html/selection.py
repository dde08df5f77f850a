"""``report.html`` of ``data-select report NAME…``: the markdown report's facts as charts, plus the browser.

Sections: overview, funnel, key and length (the key's histogram with the band's cut points, response length
pool vs selections, loss vs length with the OLS trend), composition (pool share, selected share, mean key per
source / category), overlap (counts, Jaccard), each strategy's own stages (zpd band, random draw, TEMP's
checkpoint, clusters and allocation, pass-cv's pass-rate / CV plane), and the per-example browser. The numbers
come from :func:`data_selection.report.loss_context` and the manifests, the same ones the PNGs and
``report.md`` show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_selection.report_html import charts


def _overview(selections) -> dict[str, Any]:
    from data_selection.report_temp import difficulty_cell

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
    from data_selection.report import FUNNEL_STAGES

    stages = [st for st in FUNNEL_STAGES if any(st in s.manifest["funnel"] for s in selections)]
    series = [(s.name, [s.manifest["funnel"].get(st) for st in stages]) for s in selections]
    return [charts.hbar("pool → eligible → band / filters → selected", [st.replace("_", " ") for st in stages], series),
            charts.table("", ["stage", *(s.name for s in selections)],
                         [[st.replace("_", " "), *(s.manifest["funnel"].get(st) for s in selections)] for st in stages])]


def _loss_blocks(ctx, seed: int) -> list[dict[str, Any]]:
    from data_selection.selectors.common import fit_length_trend

    pool = ctx.elig.table
    blocks = [charts.hist(f"{ctx.key}: eligible pool, band cut points, selections", ctx.key,
                          ("eligible pool", ctx.elig.key), ctx.series, charts.key_bins(ctx.elig.key), ctx.edges)]
    length = pool["n_response_tokens"].to_numpy(np.float64)
    blocks.append(charts.hist("Response length: pool vs selections", "response tokens (log scale)",
                              ("eligible pool", length),
                              [(n, t["n_response_tokens"].to_numpy(np.float64)) for n, t in ctx.tables],
                              charts.log_bins(length), log_x=True, density_per_log=True))
    loss = pool["loss_mean"].to_numpy(np.float64)
    pick = charts.sample(len(pool), 20_000, seed)
    groups = [{"label": f"eligible pool ({len(pick):,} of {len(pool):,} shown)", "color": charts.POOL_COLOR,
               "x": length[pick], "y": loss[pick], "opacity": 0.5}]
    for i, (name, t) in reversed(list(enumerate(ctx.tables))):  # the first selection on top
        p = charts.sample(len(t), 5_000, seed + 1 + i)
        groups.append({"label": f"{name} (n={len(t):,})", "color": charts.color(i), "r": 2.0,
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
    return blocks


def _composition(ctx) -> list[dict[str, Any]]:
    pool = ctx.elig.table
    blocks = []
    for col in ("source", "category"):
        if col not in pool.columns:
            continue
        frame = pd.DataFrame({"v": pool[col].astype(str).to_numpy(), "k": ctx.elig.key})
        g = frame.groupby("v")["k"]
        base_n, base_mean = g.size(), g.mean()
        cols = [col, "pool rows", "pool share", f"pool mean {ctx.key}"]
        per = []
        for (name, t), (_, keys) in zip(ctx.tables, ctx.series):
            sg = pd.DataFrame({"v": t[col].astype(str).to_numpy(), "k": keys}).groupby("v")["k"]
            per.append((sg.size(), sg.mean(), len(t)))
            cols += [f"{name} share", f"{name} mean {ctx.key}"]
        rows = []
        for v in base_n.index:
            row = [v, int(base_n[v]), f"{100 * base_n[v] / len(pool):.1f}%", float(base_mean[v])]
            for n_, m_, total in per:
                row += [f"{100 * n_.get(v, 0) / (total or 1):.1f}%", float(m_[v]) if v in m_ else None]
            rows.append(row)
        blocks.append(charts.table(f"By {col}", cols, rows))
    return blocks


def _overlap(selections) -> list[dict[str, Any]]:
    rows = []
    for i, a in enumerate(selections):
        for b in selections[i + 1:]:
            both, either = len(a.ids & b.ids), len(a.ids | b.ids)
            rows.append([f"{a.name} ∩ {b.name}", len(a.ids), len(b.ids), both, round(both / (either or 1), 4)])
    return [charts.table("", ["pair", "rows A", "rows B", "in both", "Jaccard"], rows)] if rows else []


def _zpd(s) -> list[dict[str, Any]]:
    th, f = s.manifest["thresholds"], s.manifest["funnel"]
    blocks = [charts.note(f"{s.name}: the eligible rows ranked by {s.manifest['parameters'].get('key')}; the lowest "
                          f"{f.get('dropped_low', 0):,} dropped as too easy, the highest {f.get('dropped_high', 0):,} "
                          f"as too hard; {f.get('selected', 0):,} drawn uniformly (seed "
                          f"{s.manifest['parameters']['seed']}) from the {f.get('band', 0):,} in the band.")]
    if "per_stratum" in th:
        rows = [[k, v["eligible"], v["band"], v["quota"], v.get("low_value"), v.get("high_value")]
                for k, v in th["per_stratum"].items()]
        blocks.append(charts.table(f"{s.name}: band per stratum", ["stratum", "eligible", "band", "quota",
                                                                   "low value", "high value"], rows))
    return blocks


def _temp(s) -> list[dict[str, Any]]:
    t = s.manifest["temp"]
    d, a, v = t["difficulty"], t["allocation"], t["diversity"]
    blocks = [charts.hbar(f"{s.name}: mean L^(100) of each Gaussian checkpoint / base (chosen: "
                          f"{d['chosen_checkpoint']}, target {d['target_ratio'][0]:g}–{d['target_ratio'][1]:g}×)",
                          [f"checkpoint {j}" + (" ◀ chosen" if j == d["chosen_checkpoint"] else "")
                           for j in range(1, len(d["ratios"]) + 1)], [("ratio", [round(r, 4) for r in d["ratios"]])]),
              charts.table(f"{s.name}: difficulty clusters per source (high cluster kept)",
                           ["source", "rows", "kept", "centres (low, high)", "cluster sizes"],
                           [[src, x["rows"], x["kept"], ", ".join(f"{c:.3f}" for c in x.get("centres", [])) or
                             x.get("note", ""), ", ".join(str(c) for c in x.get("cluster_sizes", [])) or "—"]
                            for src, x in d["per_source"].items()])]
    rows = [[f"{kind} {g}", x["rows"], x["mean_first"], x["mean_last"], x["score"], round(x["softmax"], 4),
             x["before_cap"], x["after_cap"]] for kind, groups in (("domain", a["domains"]), ("source", a["sources"]))
            for g, x in groups.items()]
    blocks.append(charts.table(f"{s.name}: allocation (softmax T = {a['temperature']:g} of {a['score']})",
                               ["group", "survivors", "L̄ first", "L̄ last", "score", "softmax", "before cap",
                                "after cap"], rows))
    blocks.append(charts.table(f"{s.name}: diversity pick (k-means on {v['features']}, k = {v['k']})",
                               ["source", "survivors", "quota", "k used", "by rank", "at random"],
                               [[src, x["rows"], x["quota"], "all" if x.get("taken_whole") else x.get("k_used"),
                                 x["picked_by_rank"], x["filled_at_random"]] for src, x in v["per_source"].items()]))
    return blocks


def _pass_cv(s) -> list[dict[str, Any]]:
    from data_selection.report import pass_cv_queries

    q, taken = pass_cv_queries(s)
    x, y = q["pass_rate"].to_numpy(np.float64), q["cv"].to_numpy(np.float64)
    pick = charts.sample(len(q), 20_000, 0)
    groups = [{"label": f"queries ({len(q):,})", "color": charts.POOL_COLOR, "x": x[pick], "y": y[pick]},
              {"label": f"taken by {s.name} ({int(taken.sum()):,})", "color": charts.color(0), "r": 2.2,
               "x": x[taken], "y": y[taken]}]
    blocks = [charts.scatter(f"{s.name}: pass rate / CV plane of the verified queries", "pass rate", "CV of verify scores",
                             groups)]
    qf = s.manifest.get("query_funnel")
    if qf:
        blocks.append(charts.table(f"{s.name}: query funnel", ["stage", "queries"],
                                   [[k.replace("_", " "), v] for k, v in qf.items()]))
    return blocks


def _strategy_blocks(selections) -> list[dict[str, Any]]:
    blocks = []
    for s in selections:
        st = s.manifest["strategy"]
        if st == "zpd":
            blocks += _zpd(s)
        elif st == "random":
            blocks.append(charts.note(f"{s.name}: a uniform draw of {len(s.ids):,} eligible rows (seed "
                                      f"{s.manifest['parameters']['seed']}), the baseline's protocol."))
        elif st == "temp" and "temp" in s.manifest:
            blocks += _temp(s)
        elif st == "pass-cv" and "verified" in s.manifest:
            blocks += _pass_cv(s)
        for w in s.manifest.get("warnings", []):
            blocks.append(charts.note(f"{s.name} warning: {w}"))
    return blocks


def _texts(ctx, scores_dir: str, shown: np.ndarray, idx: np.ndarray, opts) -> tuple[dict[int, dict], str]:
    """Rendered texts of the shown rows ``idx`` (indices into ``shown``, positions of ``ctx.scores``)."""
    import pyarrow.parquet as pq

    from data_selection.report_html.texts import Renderer
    from data_selection.select import load_scored_pool

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


def selection_payload(opts, selections, ctx, scores_dir: str) -> dict[str, Any]:
    from data_selection.report_html.browser import attach_texts, build_browser, text_positions

    seed = selections[0].manifest["parameters"]["seed"]
    sections = [{"title": "Overview", "blocks": [_overview(selections)]},
                {"title": "Funnel", "blocks": _funnel(selections)}]
    if ctx is not None:
        sections += [{"title": "Key and length", "blocks": _loss_blocks(ctx, seed)},
                     {"title": "Composition", "blocks": _composition(ctx)}]
    overlap = _overlap(selections)
    if overlap:
        sections.append({"title": "Overlap", "blocks": overlap})
    sections.append({"title": "Strategy stages", "blocks": _strategy_blocks(selections)})
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


def write_selection_html(opts, selections, ctx, scores_dir: str, out: Path) -> Path:
    from data_selection.report_html.page import write_page

    return write_page(out / "report.html", selection_payload(opts, selections, ctx, scores_dir))
