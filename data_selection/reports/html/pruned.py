"""``report.html`` of a pruned subset (``data-select prune-steps``): what PIR pruning removed, row by row.

Charts from the same facts as ``report.md``'s PNGs (lengths before / after, think tokens by step type kept vs
deleted, PIR of deleted vs kept functional steps) and a browser over the rows, where a pruned row's response
shows its deleted steps struck through between the kept ones (the pieces
:func:`data_selection.transforms.struck_steps.struck_steps` made while the subset was written).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_selection.reports.bins import key_bins, log_bins
from data_selection.reports.html import charts
from data_selection.reports.html.page import write_page
from data_selection.transforms.steps import FUNCTIONAL_TYPES, STEP_TYPES
from data_selection.transforms.struck_steps import MAX_ROWS_SHOWN


def pruned_payload(manifest: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    rows, tok = manifest["rows"], manifest["tokens"]
    before = np.asarray(facts["lengths_before"], np.float64)
    after = np.asarray(facts["lengths_after"], np.float64)
    summary = charts.table("", ["", "value"], [
        ["input rows", rows["input"]], ["rejected by the loader", rows["rejected"]], ["written", rows["written"]],
        ["pruned", rows["changed"]], ["unchanged", rows["unchanged_total"]],
        *[[f"unchanged: {k}", v] for k, v in rows["unchanged"].items()],
        ["response tokens before", tok["response_before"]], ["response tokens after", tok["response_after"]],
        ["tokens removed", f"{tok['removed']:,} ({100 * tok['removed_share']:.1f}%)"]])
    removed = [tok["removed_by_type"].get(t, 0) for t in STEP_TYPES]
    kept = [tok["think_by_type"].get(t, 0) - r for t, r in zip(STEP_TYPES, removed)]
    blocks = [summary,
              charts.hist("Response length before and after pruning", "response tokens per row (log scale)",
                          ("before", before), [("after", after)], log_bins(np.concatenate([before, after])),
                          log_x=True, ylabel="rows' density", density_per_log=True),
              charts.hbar("Think tokens by step type", [t.replace("_", " ") for t in STEP_TYPES],
                          [("kept", kept), ("deleted", removed)])]
    for t in FUNCTIONAL_TYPES:
        d = np.asarray(facts["pir_values"]["deleted"][t], np.float64)
        k = np.asarray(facts["pir_values"]["kept"][t], np.float64)
        both = np.concatenate([d, k])
        if len(both):
            blocks.append(charts.hist(f"PIR of {t.replace('_', ' ')} steps", "PIR (nats; lower = needed less)",
                                      ("kept", k), [("deleted", d)], key_bins(both, 30), ylabel="density"))
    shown = facts.get("shown_rows", [])
    browser = None
    if shown:
        cols = [("row", "num"), ("id", "str"), ("tokens_before", "num"), ("tokens_after", "num"),
                ("steps_deleted", "num"), ("steps", "num")]
        browser = {"n_pool": rows["written"], "columns": [{"key": k, "label": k.replace("_", " "), "type": t}
                                                           for k, t in cols],
                   "data": {k: [r[k] for r in shown] for k, _ in cols}, "status_legend": [],
                   "note": f"The {len(shown):,} pruned rows (of {rows['changed']:,}; bound {MAX_ROWS_SHOWN:,}). "
                           "Click a row: its deleted steps are struck through next to the kept ones.",
                   "texts": {str(i): {"prompt": r["prompt"], "prompt_label": "Prompt (user turns)", "steps": r["pieces"],
                                             "note": ""}
                             for i, r in enumerate(shown)}, "text_note": ""}
    return {"title": f"PIR pruning report: {manifest['name']}",
            "subtitle": f"ratio {manifest['parameters']['ratio']} · re-make: {manifest['recipe']}",
            "sections": [{"title": "Pruned steps and token savings", "blocks": blocks}], "browser": browser}


def write_pruned_html(out, manifest: dict[str, Any], facts: dict[str, Any]):
    return write_page(out / "report.html", pruned_payload(manifest, facts))
