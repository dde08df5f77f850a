"""The selection report's length section: is a selection's key a proxy for response length?

For every selection: the Spearman rank correlation of its ranking key with ``n_response_tokens`` over the
eligible pool it was drawn from (its own key and over-length rule), and its response-length distribution
against that pool (quantiles and the two-sample KS statistic). A key strongly correlated with length turns a
loss band into a length band: compare with a length-matched random subset (``--strategy matched-random``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_selection.selectors.common import eligible_rows, normalized

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def length_facts(table, manifest: dict[str, Any], ids: set[str]) -> dict[str, Any]:
    """Spearman(key, length) over the eligible pool, and length quantiles of pool and subset (+ KS)."""
    from scipy.stats import ks_2samp, spearmanr  # lazy: scipy.stats takes a second to import

    params = manifest["parameters"]
    key, over_length = params.get("key") or "loss_mean", params.get("over_length", "drop")
    elig = eligible_rows(normalized(table), key, over_length)
    length = elig.table["n_response_tokens"].to_numpy(np.float64)
    rho = spearmanr(elig.key, length).statistic if len(length) > 2 else float("nan")
    chosen = table.loc[table["id"].isin(ids), "n_response_tokens"].to_numpy(np.float64)
    return {"key": key, "spearman": float(rho), "pool_rows": len(length),
            "pool": [float(q) for q in np.quantile(length, QUANTILES)],
            "subset": [float(q) for q in np.quantile(chosen, QUANTILES)] if len(chosen) else [],
            "ks": float(ks_2samp(chosen, length).statistic) if len(chosen) else float("nan")}


def length_section(selections, table) -> list[str]:
    """Markdown lines: one row per selection (``selections``: :class:`data_selection.reports.facts.Loaded`)."""
    head = " · ".join(f"p{int(100 * q)}" for q in QUANTILES)
    lines = ["", "## Response length", "",
             "Spearman ρ of the key with n_response_tokens over the eligible pool (|ρ| near 1: the key ranks by "
             "length), and the response-token quantiles of the subset against that pool; KS: two-sample "
             "Kolmogorov-Smirnov statistic, subset vs pool.", "",
             f"| selection | key | Spearman ρ (pool) | lengths: {head} (subset / pool) | KS vs pool |",
             "|---|---|---:|---|---:|"]
    for s in selections:
        f = length_facts(table, s.manifest, s.ids)
        qs = " · ".join(f"{a:,.0f} / {b:,.0f}" for a, b in zip(f["subset"], f["pool"]))
        lines.append(f"| {s.name} | {f['key']} | {f['spearman']:+.3f} | {qs} | {f['ks']:.3f} |")
    return lines
