"""TEMP: early-token difficulty at perturbed checkpoints, then loss-vector diversity (docs/methods.md §3).

*Reasoning Quality Emerges Early: Data Curation for Reasoning Models* (arXiv 2606.26797, ICML 2026; official
code hjenryin/TEMP-ICML). Inputs: the base scores table (``data-select score``) and the checkpoint scores
(``data-select score-checkpoints``: L^(100) of every row at each Gaussian checkpoint; L^(100) and L^(1000) of
the difficulty survivors at each directional checkpoint). Pure functions of those tables; nothing here reads a
file. One module per step, each documenting its rule, the official one by default and ours as options:

1. :mod:`~data_selection.selectors.temp_difficulty`: the Gaussian checkpoint at 2–3x loss, small sources kept
   whole (``--temp-init-label-num``), each other source's high-loss k-means cluster;
2. :mod:`~data_selection.selectors.temp_allocation`: softmax budget split over domains, then sources
   (``--temp-allocation official | water-filling``);
3. :mod:`~data_selection.selectors.temp_diversity`: k-means on the directional L^(1000) vectors, ranked inside a
   cluster (``--temp-ranking signed | abs``).

The manifest's ``temp.rules`` says which rule ran at each step (and the perturbation's σ scale) and whether
the whole selection is the official method. Pools without ``source``/``category`` columns are one group
(recorded in the manifest); a pool with ``category`` but no ``source`` uses each category as its single source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.options.perturb import OFFICIAL_SCALE
from data_selection.options.select import SHORTFALLS
from data_selection.scoring.checkpoint_layout import TempScores, feature_column
from data_selection.selectors import temp_allocation as allocation_rules
from data_selection.selectors import temp_diversity as diversity_rules
from data_selection.selectors.common import Selection, check_parameters, check_table, finish, normalized
from data_selection.selectors.temp_allocation import (  # noqa: F401  (re-exported: the old single module's names)
    ALLOCATIONS,
    allocate,
    capped_softmax_allocation,
    group_score,
)
from data_selection.selectors.temp_difficulty import (  # noqa: F401
    INIT_LABEL_NUM,
    KEY,
    Difficulty,
    aligned,
    choose_checkpoint,
    difficulty_filter,
    difficulty_survivors,
    eligible_with_gaussian,
    group_labels,
    small_sources,
    split_high,
    subset,
)
from data_selection.selectors.temp_diversity import DIVERSITY_N_INIT, RANKINGS, pick_source  # noqa: F401

# fewer difficulty survivors than n: the official Selector caps every group at its size (all survivors, a smaller
# subset); fill and error are ours
SHORTFALL_DESCRIPTIONS = {
    "take": "fewer survivors than n: all of them (the official Selector caps every group at its size)",
    "fill": "fewer survivors than n: all of them plus a uniform draw of the rest from the other eligible rows",
    "error": "fewer survivors than n: stop, writing nothing",
}


def rules(temp: TempScores, allocation: str, ranking: str, init_label_num: int,
          shortfall: str = "take") -> dict[str, Any]:
    """Which rule ran at each step, and whether the selection is the official method."""
    scale = (temp.meta.get("gaussian", {}).get("perturb", {}).get("options") or {}).get("scale")
    steps = {
        "scale": {"rule": scale or "unknown (the Gaussian scores' meta.json does not say)",
                  "official": scale == OFFICIAL_SCALE},
        "small_sources": {"rule": f"init_label_num {init_label_num}" + (" (off)" if not init_label_num else ""),
                          "official": init_label_num == INIT_LABEL_NUM},
        "allocation": {"rule": allocation, "description": allocation_rules.DESCRIPTIONS[allocation],
                       "official": allocation == "official"},
        "ranking": {"rule": ranking, "description": diversity_rules.DESCRIPTIONS[ranking],
                    "official": ranking == "signed"},
        "shortfall": {"rule": shortfall, "description": SHORTFALL_DESCRIPTIONS[shortfall],
                      "official": shortfall == "take"},
    }
    off = [k for k, v in steps.items() if not v["official"]]
    return {**steps, "official": not off, "deviations": off}


# -- the strategy -------------------------------------------------------------------------------------------------


def select_temp(scores: pd.DataFrame, *, temp_scores: TempScores, n: int, seed: int, over_length: str = "drop",
                temp_checkpoint: int = 0, temp_allocation: str = "official", temp_ranking: str = "signed",
                temp_init_label_num: int = INIT_LABEL_NUM, temp_shortfall: str = "take") -> Selection:
    check_parameters(n, KEY, "", over_length)
    if temp_shortfall not in SHORTFALLS:
        raise UserError(f"--temp-shortfall must be one of {', '.join(SHORTFALLS)}, got {temp_shortfall!r}")
    if temp_allocation not in ALLOCATIONS:
        raise UserError(f"--temp-allocation must be one of {', '.join(ALLOCATIONS)}, got {temp_allocation!r}")
    if temp_ranking not in RANKINGS:
        raise UserError(f"--temp-ranking must be one of {', '.join(RANKINGS)}, got {temp_ranking!r}")
    check_table(scores, KEY, "")
    temp = temp_scores
    scores = normalized(scores)
    elig, x, no_gauss = eligible_with_gaussian(scores, temp, over_length)
    if not len(elig.table):
        raise UserError(f"no eligible row of --scores has Gaussian checkpoint scores in {temp.folder}")
    domains, sources, grouping = group_labels(elig.table)
    diff = difficulty_filter(elig.key, x, sources, temp_checkpoint, temp_init_label_num)
    survivors = np.flatnonzero(diff.keep)

    # directional features of the survivors
    jd = temp.num_checkpoints("directional")
    if jd < 2:
        raise UserError(f"{temp.folder}/directional has {jd} checkpoint(s); TEMP needs at least 2 (first and last)")
    dsub = subset(elig, diff.keep)
    present, matched = aligned(dsub, temp.directional, f"--temp-scores {temp.folder}/directional")
    rows_s = dsub.table["row"].to_numpy(np.int64)
    rejected = np.isin(rows_s, list(temp.rejected.get("directional", set())))
    unscored = ~present & ~rejected
    if unscored.any():
        rec = temp.meta["directional"].get("rows", {})
        raise UserError(
            f"{int(unscored.sum())} of the {len(rows_s)} rows that survive the difficulty filter (checkpoint "
            f"{diff.checkpoint}, over-length {over_length}) have no directional scores in {temp.folder}/directional "
            f"(it scored {rec.get('mode', '?')} rows: {rec.get('count', '?')}, filter "
            f"{rec.get('difficulty', {}).get('chosen_checkpoint', '?')}, over-length {rec.get('over_length', '?')}, "
            f"init_label_num {rec.get('temp_init_label_num', '?')}); re-run its `data-select score-checkpoints` with "
            "the same --over-length/--temp-checkpoint/--temp-init-label-num, or --rows all")
    survivors = survivors[present]
    l100 = [feature_column("directional", j, 100) for j in (1, jd)]
    l1000 = [feature_column("directional", j, 1000) for j in range(1, jd + 1)]
    first100, last100 = (matched[c].to_numpy(np.float64) for c in l100)
    feats = matched[l1000].to_numpy(np.float64)
    short = max(0, n - len(survivors))
    if short and (temp_shortfall == "error" or not len(survivors)):
        raise UserError(f"the difficulty filter keeps {len(survivors)} rows with directional scores (of "
                        f"{len(elig.table)} eligible), fewer than --n {n} (--temp-shortfall take: all of them, "
                        "as the official code does; fill: topped up at random)")
    if short and len(elig.table) < n and temp_shortfall == "fill":
        raise UserError(f"--temp-shortfall fill: the pool has {len(elig.table)} eligible rows, fewer than --n {n}")

    # allocation: domains, then sources within each domain (of all survivors when they are fewer than n)
    dom, src = domains[survivors], sources[survivors]
    dom_alloc, dom_stats = allocate(n - short, dom, first100, last100, temp_allocation)
    src_alloc: dict[tuple[str, str], int] = {}
    src_stats: dict[str, Any] = {}
    for d in sorted(dom_alloc):
        in_d = dom == d
        alloc, stats = allocate(dom_alloc[d], src[in_d], first100[in_d], last100[in_d], temp_allocation)
        for s, q in alloc.items():
            src_alloc[(d, s)] = q
            src_stats[_group_name(d, s, domains)] = {"domain": d, **stats[s]}

    # diversity pick per source
    rng = np.random.default_rng(seed)
    chosen, div = [], {}
    for d, s in sorted(src_alloc):
        idx = np.flatnonzero((dom == d) & (src == s))
        pos, info = pick_source(feats[idx], elig.table["row"].to_numpy()[survivors[idx]], src_alloc[(d, s)], seed, rng,
                                temp_ranking)
        chosen.append(survivors[idx[pos]])
        div[_group_name(d, s, domains)] = info
    chosen_pos = np.concatenate(chosen) if chosen else np.arange(0)
    filled = np.arange(0)
    if short and temp_shortfall == "fill":  # the rest uniformly from the eligible rows that did not survive
        others = np.setdiff1d(np.arange(len(elig.table)), survivors)
        filled = np.sort(rng.choice(others, size=short, replace=False))
        chosen_pos = np.concatenate([chosen_pos, filled])

    funnel = dict(elig.funnel)
    funnel = {"scored": funnel["scored"], "over_length_dropped": funnel["over_length_dropped"],
              "non_finite_key": funnel["non_finite_key"],
              "no_checkpoint_scores": no_gauss + int(rejected.sum()), "eligible": len(elig.table),
              "dropped_low": len(elig.table) - int(diff.keep.sum()), "dropped_high": 0, "band": len(survivors)}
    total_rejected = int(rejected.sum())
    warnings = list(diff.warnings)
    if short:
        warnings.append(f"the difficulty filter keeps {len(survivors)} rows with directional scores, fewer than --n "
                        f"{n}: " + (f"all of them and {short} drawn at random from the other eligible rows "
                                    "(--temp-shortfall fill)" if temp_shortfall == "fill" else
                                    f"the subset is all {len(survivors)} (--temp-shortfall take, the official "
                                    "Selector); it is not padded"))
    clipped = [g for g, st in {**dom_stats, **src_stats}.items() if st["clipped"]]
    if clipped:
        warnings.append(f"L̄last < L̄first in {', '.join(clipped)}: difficulty score clipped to 0")
    facts = {
        "strategy": "temp",
        "parameters": {"n": n, "seed": seed, "key": KEY, "over_length": over_length, "stratify": None,
                       "temp_scores": temp.folder, "temp_checkpoint": temp_checkpoint,
                       "temp_allocation": temp_allocation, "temp_ranking": temp_ranking,
                       "temp_init_label_num": temp_init_label_num, "temp_shortfall": temp_shortfall},
        "key": elig.key_facts,
        "thresholds": {},
        "funnel": funnel,
        "warnings": warnings,
        "temp": {
            "method": "TEMP (arXiv 2606.26797, ICML 2026; official code hjenryin/TEMP-ICML); docs/methods.md §3",
            "rules": rules(temp, temp_allocation, temp_ranking, temp_init_label_num, temp_shortfall),
            "shortfall": {"n": n, "survivors": len(survivors), "short": short, "rule": temp_shortfall,
                          "filled_at_random": len(filled)},
            "grouping": grouping,
            "checkpoints": {k: {"num": temp.num_checkpoints(k), "perturbation": temp.meta[k].get("perturb", {})}
                            for k in ("gaussian", "directional")},
            "difficulty": diff.facts,
            "directional_rejected_survivors": total_rejected,
            "allocation": {"score": "sqrt(max(0, mean L100@last - mean L100@first) * mean L100@last), "
                                    "directional checkpoints, group survivors", "temperature": 1.0,
                           "capping": allocation_rules.DESCRIPTIONS[temp_allocation],
                           "domains": dom_stats, "sources": src_stats},
            "diversity": {"features": f"directional_1..{jd}_loss_first_1000", "k": "max(1, quota // 4)",
                          "kmeans": {"random_state": seed, "n_init": DIVERSITY_N_INIT, "threads": 1},
                          "pick": "clusters smallest first, ranked by " + diversity_rules.DESCRIPTIONS[temp_ranking]
                                  + " of L^(1000), remainder at random",
                          "per_source": div},
        },
        "upstream_commands": [c for k in ("gaussian", "directional") for c in
                              (temp.meta[k].get("perturb", {}).get("command"), temp.meta[k].get("command")) if c],
    }
    stages = {"pool": scores, "eligible": elig.table, "band": elig.table.iloc[survivors]}
    return finish(chosen_pos, elig, facts, stages)


def _group_name(domain: str, source: str, domains: np.ndarray) -> str:
    """A source's name in the manifest ("source", or "domain/source" when the pool has several domains)."""
    return source if len(set(domains.tolist())) <= 1 else f"{domain}/{source}"
