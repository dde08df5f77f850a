"""The TEMP part of ``data-select report``: what a ``--strategy temp`` manifest chose, as markdown tables.

Difficulty (each Gaussian checkpoint's loss ratio, the chosen one, each source's two clusters), allocation
(per domain and source: survivors, group means, score, softmax share, before and after capping) and the
diversity pick (per source: quota, clusters, rows picked by rank and at random). docs/methods.md §3.
"""

from __future__ import annotations

from typing import Any


def difficulty_cell(manifest: dict[str, Any]) -> str:
    """"checkpoint c (ratio r×)" for a TEMP manifest, "—" for the others."""
    d = manifest.get("temp", {}).get("difficulty")
    if not d:
        return "—"
    return f"checkpoint {d['chosen_checkpoint']} ({d['chosen_ratio']:.2f}×)"


def _f(x: Any, fmt: str = ".4f") -> str:
    return "—" if x is None else format(x, fmt)


def temp_section(name: str, manifest: dict[str, Any]) -> list[str]:
    t = manifest.get("temp")
    if not t:
        return []
    d = t["difficulty"]
    per_source = "small sources kept whole, " if d.get("small_sources", {}).get("kept_whole") else ""
    lines = ["", f"## TEMP choices of {name}", "",
             f"Grouping: domains by `{t['grouping'].get('domain_column') or '—'}`, sources by "
             f"`{t['grouping'].get('source_column') or '—'}`" + (f" ({t['grouping']['note']})."
                                                               if t["grouping"].get("note") else "."), "",
             *_rules_line(t.get("rules")),
             f"**Difficulty**: base-model mean L^(100) {d['base_mean_loss_first_100']:.4f}; the Gaussian checkpoint "
             f"whose mean is {d['target_ratio'][0]:g}–{d['target_ratio'][1]:g}× that: **{d['chosen_checkpoint']}** "
             f"(ratio {d['chosen_ratio']:.3f}; {d['choice']}); {per_source}per other source 2-means on its L^(100), high cluster kept.",
             "", "| checkpoint | " + " | ".join(str(j) for j in range(1, len(d["ratios"]) + 1)) + " |",
             "|---|" + "---|" * len(d["ratios"]),
             "| mean L^(100) / base | " + " | ".join(
                 (f"**{r:.3f}**" if j == d["chosen_checkpoint"] else f"{r:.3f}") for j, r in
                 enumerate(d["ratios"], 1)) + " |",
             "", "| source | rows | kept | centres (low, high) | cluster sizes |", "|---|---|---|---|---|"]
    for src, s in d["per_source"].items():
        centres = ", ".join(f"{c:.3f}" for c in s["centres"]) if "centres" in s else s.get("note", "")
        sizes = ", ".join(str(x) for x in s.get("cluster_sizes", [])) or "—"
        lines.append(f"| {src} | {s['rows']:,} | {s['kept']:,} | {centres} | {sizes} |")
    a = t["allocation"]
    lines += ["", f"**Allocation** of n = {manifest['parameters']['n']:,}: softmax (T = {a['temperature']:g}) of "
              f"{a['score']}; capped at group size ({a['capping']}).", "",
              "| group | survivors | L̄ first | L̄ last | score | softmax | before cap | after cap |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, groups in (("domain", a["domains"]), ("source", a["sources"])):
        for g, s in groups.items():
            score = _f(s["score"]) + (" (clipped)" if s["clipped"] else "")
            lines.append(f"| {kind} {g} | {s['rows']:,} | {_f(s['mean_first'])} | {_f(s['mean_last'])} | {score} | "
                         f"{s['softmax']:.3f} | {s['before_cap']:,} | {s['after_cap']:,} |")
    v = t["diversity"]
    lines += ["", f"**Diversity**: k-means on {v['features']} per source, k = {v['k']}; {v['pick']}.", "",
              "| source | survivors | quota | clusters (k used) | single-row clusters | by rank | at random |",
              "|---|---|---|---|---|---|---|"]
    for src, s in v["per_source"].items():
        k = "all taken" if s.get("taken_whole") else str(s.get("k_used", "—"))
        lines.append(f"| {src} | {s['rows']:,} | {s['quota']:,} | {k} | {s.get('clusters_skipped', 0)} | "
                     f"{s['picked_by_rank']:,} | {s['filled_at_random']:,} |")
    for w in manifest.get("warnings", []):
        lines += ["", f"> warning: {w}"]
    return lines


def _rules_line(rules: dict[str, Any] | None) -> list[str]:
    """One line: the official method, or which steps ran one of our options (older manifests: nothing)."""
    if not rules:
        return []
    if rules["official"]:
        return ["**Method**: the official TEMP rules at every step (scale, small sources, allocation, ranking).", ""]
    off = ", ".join(f"{k} = {rules[k]['rule']}" for k in rules["deviations"])
    return [f"**Method**: not the official TEMP: {off} (docs/methods.md §3).", ""]
