"""The "Strategy stages" section of a selection's ``report.html``: each selection's own stages, from its manifest.

zpd: the band (and per stratum); random: the draw; matched-random: its length bins (target, drawn, candidates)
and the KS of the lengths; TEMP: checkpoint ratios, difficulty clusters, allocation and
diversity pick; pass-cv: the pass-rate / CV plane of the verified queries and the query funnel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_selection.reports.colors import POOL_COLOR, color
from data_selection.reports.facts import pass_cv_queries
from data_selection.reports.html import charts


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
    q, taken = pass_cv_queries(s)
    x, y = q["pass_rate"].to_numpy(np.float64), q["cv"].to_numpy(np.float64)
    pick = charts.sample(len(q), 20_000, 0)
    groups = [{"label": f"queries ({len(q):,})", "color": POOL_COLOR, "x": x[pick], "y": y[pick]},
              {"label": f"taken by {s.name} ({int(taken.sum()):,})", "color": color(0), "r": 2.2,
               "x": x[taken], "y": y[taken]}]
    blocks = [charts.scatter(f"{s.name}: pass rate / CV plane of the verified queries", "pass rate", "CV of verify scores",
                             groups)]
    qf = s.manifest.get("query_funnel")
    if qf:
        blocks.append(charts.table(f"{s.name}: query funnel", ["stage", "queries"],
                                   [[k.replace("_", " "), v] for k, v in qf.items()]))
    return blocks


def _matched(s) -> list[dict[str, Any]]:
    """matched-random: the length bins of the subset it matches, each bin's target / drawn / candidates, and the KS."""
    m, p = s.manifest["matching"], s.manifest["parameters"]
    cells = m.get("cells", [])
    ks = m.get("ks_lengths") or {}
    bound = m.get("ks_bound_exact_fill")
    text = (f"{s.name}: a uniform draw (seed {p['seed']}) matched to {m['target']['source']} ({m['target']['rows']:,} "
            f"rows) on {p.get('match_on', 'n_response_tokens')}, {len(cells)} cell(s): {m.get('bin_rule', '')}.")
    if ks:
        text += (f" Two-sample KS of the lengths, drawn vs target: {ks['statistic']:.3f} (p = {ks['pvalue']:.3g})"
                 + (f"; an exact fill of these bins can reach {bound:.3f}." if bound is not None else "."))
    blocks = [charts.note(text),
              charts.hbar(f"{s.name}: rows per length bin, target vs drawn", [c["cell"] for c in cells],
                          [("target", [c["target"] for c in cells]), ("drawn", [c["drawn"] for c in cells])]),
              charts.table(f"{s.name}: length bins", ["bin", "target", "quota", "drawn", "candidates"],
                           [[c["cell"], c["target"], c["quota"], c["drawn"], c["candidates"]] for c in cells])]
    if m.get("borrowed"):
        blocks.append(charts.table(f"{s.name}: rows borrowed from neighbouring bins", ["bin", "from", "rows"],
                                   [[b["cell"], b["from"], b["rows"]] for b in m["borrowed"]]))
    lengths = m.get("lengths") or {}
    if lengths:
        stats = ["mean", "min", "p25", "median", "p75", "max"]
        blocks.append(charts.table(f"{s.name}: response tokens, target vs drawn", ["", *stats],
                                   [[who, *(lengths[who].get(k) for k in stats)] for who in ("target", "drawn")
                                    if who in lengths]))
    return blocks


def strategy_blocks(selections) -> list[dict[str, Any]]:
    blocks = []
    for s in selections:
        st = s.manifest["strategy"]
        if st == "zpd":
            blocks += _zpd(s)
        elif st == "random":
            blocks.append(charts.note(f"{s.name}: a uniform draw of {len(s.ids):,} eligible rows (seed "
                                      f"{s.manifest['parameters']['seed']}), the baseline's protocol."))
        elif st == "matched-random" and "matching" in s.manifest:
            blocks += _matched(s)
        elif st == "temp" and "temp" in s.manifest:
            blocks += _temp(s)
        elif st == "pass-cv" and "verified" in s.manifest:
            blocks += _pass_cv(s)
        for w in s.manifest.get("warnings", []):
            blocks.append(charts.note(f"{s.name} warning: {w}"))
    return blocks
