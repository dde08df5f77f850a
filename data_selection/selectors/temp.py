"""TEMP: early-token difficulty at perturbed checkpoints, then loss-vector diversity (docs/methods.md §3).

*Reasoning Quality Emerges Early: Data Curation for Reasoning Models* (arXiv 2606.26797, ICML 2026). Inputs:
the base scores table (``data-select score``) and the checkpoint scores (``data-select score-checkpoints``:
L^(100) of every row at each Gaussian checkpoint; L^(100) and L^(1000) of the difficulty survivors at each
directional checkpoint). Pure functions of those tables; nothing here reads a file.

1. **Difficulty.** Over the eligible rows (over-length dropped unless kept, finite base L^(100)), the ratio of
   each Gaussian checkpoint's mean L^(100) to the base model's. The checkpoint whose ratio lies in [2, 3] is
   taken (**choice** when several do: the one closest to 2.5, ties to the lower index; when none does: the
   one closest to the interval, with a warning and the ratio recorded; ``--temp-checkpoint`` forces one).
   Per ``source``, 1-D k-means (scikit-learn, k = 2, random_state 42, n_init 10) on L^(100) at that
   checkpoint; the cluster with the higher centre is kept whole. **choice**: a source with fewer than 2 rows,
   or whose values are all equal, is kept whole.
2. **Allocation.** Domains (``category``), then the sources of each domain, get shares of the budget by a
   softmax (temperature 1) of √((L̄last − L̄first)·L̄last), the group means of L^(100) at the first and last
   directional checkpoint over the group's survivors. **choice**: a negative L̄last − L̄first is clipped to 0
   (the score is then 0) and recorded. Capping: a group whose share exceeds its size gets its size and the
   rest is re-split among the others by the same softmax, repeatedly (water-filling); the final integer
   split is by largest remainder (**choice**; the paper's code floors and hands the leftovers to the
   largest groups). Allocations sum to n and never exceed a group's size.
3. **Diversity pick**, per source with quota q: if q ≥ the source's survivors, all of them; else k-means
   (random_state = ``--seed``, n_init 1 as the paper's single faiss run) on the vectors of L^(1000) at the
   directional checkpoints with k = max(1, q // 4) (at most the number of distinct vectors). Clusters are
   visited smallest first (ties: smallest pool row), each getting ⌊remaining quota / clusters left⌋,
   clusters of fewer than 2 rows skipped; within a cluster the rows with the largest |L_last − L_first|
   (L^(1000) at the last and first directional checkpoint; ties by pool row) are taken. Any remainder is
   drawn uniformly (``numpy.random.default_rng(--seed)``, sources in sorted order) from the source's rows
   not yet picked (by construction, the skipped single-row clusters). The paper's code orients the
   difference by its cluster's mean change instead of taking |·|; this follows the method's text.

Pools without ``source``/``category`` columns are one group (recorded in the manifest); a pool with
``category`` but no ``source`` uses each category as its single source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.scoring.checkpoint_layout import TempScores, feature_column
from data_selection.selectors.common import (
    Eligible,
    Selection,
    check_parameters,
    check_table,
    eligible_rows,
    finish,
    largest_remainder,
    normalized,
)

KEY = "loss_first_100"  # base-model L^(100): the eligibility key and the difficulty reference
RATIO_RANGE = (2.0, 3.0)
DIFFICULTY_K, DIFFICULTY_SEED, DIFFICULTY_N_INIT = 2, 42, 10
ROWS_PER_CLUSTER = 4
DIVERSITY_N_INIT = 1
ALL = "(all)"
NONE = "(none)"


def one_thread():
    """k-means on one thread: the same clusters whatever the machine's core count (and no OpenMP spinning)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _labels(table: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in table.columns:
        return None
    values = table[column].astype(str).to_numpy(dtype=object)
    values[values == ""] = NONE
    return values.astype(str)


def group_labels(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(domain of each row, source of each row, what was used) for the pool's category/source columns."""
    n = len(table)
    domain, source = _labels(table, "category"), _labels(table, "source")
    note = {"domain_column": "category" if domain is not None else None,
            "source_column": "source" if source is not None else None}
    if source is None and domain is not None:
        source = domain.copy()
        note["note"] = "no source column: each category is its own single source"
    if domain is None:
        domain = np.full(n, ALL)
    if source is None:
        source = np.full(n, ALL)
        note["note"] = "no category/source columns: the whole pool is one group"
    return domain, source, note


# -- 1. difficulty ------------------------------------------------------------------------------------------------


def choose_checkpoint(base_mean: float, means: list[float], forced: int = 0) -> tuple[int, dict[str, Any], list[str]]:
    """The Gaussian checkpoint (1-based) whose mean L^(100) is 2–3x the base model's (see the module docstring)."""
    ratios = [m / base_mean if base_mean > 0 else float("inf") for m in means]
    lo, hi = RATIO_RANGE
    warnings: list[str] = []
    if forced:
        if not 1 <= forced <= len(means):
            raise UserError(f"--temp-checkpoint {forced}: the Gaussian scores have checkpoints 1..{len(means)}")
        c, how = forced, "forced by --temp-checkpoint"
        if not lo <= ratios[c - 1] <= hi:
            warnings.append(f"--temp-checkpoint {c} has a loss ratio of {ratios[c - 1]:.3f}, outside [{lo:g}, {hi:g}]")
    else:
        inside = [j for j, r in enumerate(ratios, 1) if lo <= r <= hi]
        if inside:
            c = min(inside, key=lambda j: (abs(ratios[j - 1] - (lo + hi) / 2), j))
            how = f"ratio in [{lo:g}, {hi:g}]" + (" (closest to 2.5 of several)" if len(inside) > 1 else "")
        else:
            c = min(range(1, len(means) + 1), key=lambda j: (max(lo - ratios[j - 1], ratios[j - 1] - hi), j))
            how = f"no checkpoint reaches [{lo:g}, {hi:g}]: the closest"
            warnings.append(f"no Gaussian checkpoint has a mean L^(100) 2-3x the base model's (ratios "
                            f"{', '.join(f'{r:.3f}' for r in ratios)}); using checkpoint {c} (ratio "
                            f"{ratios[c - 1]:.3f}). Consider --end/--scale of `data-select perturb`.")
    facts = {"base_mean_loss_first_100": base_mean, "checkpoint_mean_loss_first_100": means, "ratios": ratios,
             "target_ratio": list(RATIO_RANGE), "chosen_checkpoint": c, "chosen_ratio": ratios[c - 1], "choice": how}
    return c, facts, warnings


def split_high(values: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Mask of the high-loss cluster of 1-D 2-means (or everything, see the module docstring)."""
    from sklearn.cluster import KMeans

    n = len(values)
    if n < 2 or np.unique(values).size < 2:
        why = "fewer than 2 rows" if n < 2 else "all values equal"
        return np.ones(n, bool), {"rows": n, "kept": n, "note": f"kept whole: {why}"}
    km = KMeans(n_clusters=DIFFICULTY_K, random_state=DIFFICULTY_SEED, n_init=DIFFICULTY_N_INIT)
    with one_thread():
        labels = km.fit_predict(values.reshape(-1, 1).astype(np.float64))
    centres = km.cluster_centers_[:, 0]
    high = int(np.argmax(centres))
    keep = labels == high
    low_order = [1 - high, high]
    return keep, {"rows": n, "kept": int(keep.sum()), "centres": [float(centres[i]) for i in low_order],
                  "cluster_sizes": [int((labels == i).sum()) for i in low_order],
                  "lowest_kept": float(values[keep].min()), "highest_dropped": float(values[~keep].max())}


@dataclass
class Difficulty:
    keep: np.ndarray  # mask over the input rows
    checkpoint: int
    facts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def difficulty_filter(base_l100: np.ndarray, ckpt_l100: np.ndarray, sources: np.ndarray,
                      forced_checkpoint: int = 0) -> Difficulty:
    """Choose the Gaussian checkpoint, then keep each source's high-loss cluster of L^(100) there.

    ``ckpt_l100``: rows x checkpoints, aligned with ``base_l100`` and ``sources``.
    """
    means = [float(x) for x in ckpt_l100.mean(axis=0)]
    c, facts, warnings = choose_checkpoint(float(base_l100.mean()), means, forced_checkpoint)
    x = ckpt_l100[:, c - 1]
    keep = np.zeros(len(x), bool)
    per_source = {}
    for s in sorted(set(sources.tolist())):
        idx = np.flatnonzero(sources == s)
        mask, info = split_high(x[idx])
        keep[idx[mask]] = True
        per_source[s] = info
    facts.update(kmeans={"k": DIFFICULTY_K, "random_state": DIFFICULTY_SEED, "n_init": DIFFICULTY_N_INIT,
                         "feature": f"gaussian_{c}_loss_first_100", "per": "source", "threads": 1},
                 per_source=per_source, rows=len(x), survivors=int(keep.sum()))
    return Difficulty(keep=keep, checkpoint=c, facts=facts, warnings=warnings)


def _aligned(elig: Eligible, other: pd.DataFrame, what: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Mask of eligible rows present in ``other`` and ``other`` in the eligible order; ids must agree."""
    other = other.drop_duplicates("row").set_index("row")
    rows = elig.table["row"].to_numpy()
    present = np.isin(rows, other.index.to_numpy())
    matched = other.loc[rows[present]]
    ids = elig.table["id"].astype(str).to_numpy()[present]
    bad = np.flatnonzero(matched["id"].astype(str).to_numpy() != ids)
    if len(bad):
        r = int(rows[present][bad[0]])
        raise UserError(f"{what} and --scores come from different pools: pool row {r} has id "
                        f"{matched['id'].iloc[bad[0]]!r} there and {ids[bad[0]]!r} in --scores "
                        f"({len(bad)} rows differ); score the checkpoints on the same pool")
    return present, matched


def _subset(elig: Eligible, mask: np.ndarray) -> Eligible:
    return Eligible(table=elig.table.loc[mask].reset_index(drop=True), key=elig.key[mask], funnel=elig.funnel,
                    key_facts=elig.key_facts, over_length_rows=elig.over_length_rows)


def eligible_with_gaussian(scores: pd.DataFrame, temp: TempScores, over_length: str) -> tuple[Eligible, np.ndarray, int]:
    """Eligible rows that have Gaussian checkpoint scores, their rows x checkpoints L^(100), rows dropped."""
    elig = eligible_rows(scores, KEY, over_length)
    present, matched = _aligned(elig, temp.gaussian, f"--temp-scores {temp.folder}/gaussian")
    cols = [feature_column("gaussian", j, 100) for j in range(1, temp.num_checkpoints("gaussian") + 1)]
    missing = [c for c in cols if c not in matched.columns]
    if missing:
        raise UserError(f"{temp.folder}/gaussian/scores.parquet lacks column(s) {missing}")
    return _subset(elig, present), matched[cols].to_numpy(np.float64), int((~present).sum())


def difficulty_survivors(scores: pd.DataFrame, temp: TempScores, over_length: str = "drop",
                         forced_checkpoint: int = 0) -> tuple[np.ndarray, Difficulty]:
    """Pool rows (ascending) that survive the difficulty filter: what the directional scorer must score."""
    check_table(scores, KEY, "")
    elig, x, _ = eligible_with_gaussian(normalized(scores), temp, over_length)
    if not len(elig.table):
        raise UserError("no eligible row has Gaussian checkpoint scores")
    _, sources, _ = group_labels(elig.table)
    diff = difficulty_filter(elig.key, x, sources, forced_checkpoint)
    return elig.table["row"].to_numpy(np.int64)[diff.keep], diff


# -- 2. allocation ------------------------------------------------------------------------------------------------


def capped_softmax_allocation(scores: dict[str, float], sizes: dict[str, int], budget: int
                              ) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
    """(softmax shares, allocation before capping, allocation after capping) of ``budget`` across groups."""
    names = sorted(scores)
    z = np.array([scores[k] for k in names], dtype=np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    share = dict(zip(names, p.tolist()))
    before = largest_remainder(budget, share)
    if budget > sum(sizes.values()):
        raise UserError(f"cannot place {budget} rows in groups holding {sum(sizes.values())}")
    capped: dict[str, int] = {}
    while True:
        active = [k for k in names if k not in capped]
        left = budget - sum(capped.values())
        total = sum(share[k] for k in active)
        over = [k for k in active if total > 0 and left * share[k] / total >= sizes[k]]
        if not over:
            break
        for k in over:
            capped[k] = sizes[k]
    active = [k for k in names if k not in capped]
    left = budget - sum(capped.values())
    after = {**capped, **largest_remainder(left, {k: share[k] for k in active})} if active else dict(capped)
    return share, before, {k: after.get(k, 0) for k in names}


def group_score(first: float, last: float) -> tuple[float, bool]:
    """√(max(0, last − first)·last) and whether the difference was clipped."""
    diff = last - first
    return float(np.sqrt(max(0.0, diff) * max(0.0, last))), diff < 0


def allocate(budget: int, keys: np.ndarray, first: np.ndarray, last: np.ndarray) -> tuple[dict[str, int], dict]:
    """Allocation of ``budget`` over the distinct values of ``keys`` by the capped softmax of group scores."""
    stats: dict[str, dict[str, Any]] = {}
    for g in sorted(set(keys.tolist())):
        m = keys == g
        f, la = float(first[m].mean()), float(last[m].mean())
        score, clipped = group_score(f, la)
        stats[g] = {"rows": int(m.sum()), "mean_first": f, "mean_last": la, "score": score, "clipped": clipped}
    share, before, after = capped_softmax_allocation({g: s["score"] for g, s in stats.items()},
                                                     {g: s["rows"] for g, s in stats.items()}, budget)
    for g in stats:
        stats[g].update(softmax=share[g], before_cap=before[g], after_cap=after[g])
    return after, stats


# -- 3. diversity pick --------------------------------------------------------------------------------------------


def pick_source(features: np.ndarray, rows: np.ndarray, quota: int, seed: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """Positions (into ``rows``) picked from one source (see the module docstring); ``rows`` ascending."""
    from sklearn.cluster import KMeans

    m = len(rows)
    info: dict[str, Any] = {"rows": m, "quota": quota}
    if quota >= m:
        info.update(taken_whole=True, picked_by_rank=m, filled_at_random=0)
        return np.arange(m), info
    if quota == 0:
        info.update(picked_by_rank=0, filled_at_random=0)
        return np.arange(0), info
    k = max(1, quota // ROWS_PER_CLUSTER)
    k_used = min(k, len(np.unique(features, axis=0)))
    with one_thread():
        labels = KMeans(n_clusters=k_used, random_state=seed, n_init=DIVERSITY_N_INIT).fit_predict(features)
    spread = np.abs(features[:, -1] - features[:, 0])
    members = [np.flatnonzero(labels == c) for c in range(k_used)]
    members = [mm for mm in members if len(mm)]
    members.sort(key=lambda mm: (len(mm), rows[mm[0]]))
    visit = [mm for mm in members if len(mm) >= 2]
    picked, left = [], quota
    for i, mm in enumerate(visit):
        per = left // (len(visit) - i)
        take = mm if len(mm) <= per else mm[np.lexsort((rows[mm], -spread[mm]))[:per]]
        picked.append(take)
        left -= len(take)
    by_rank = int(sum(len(t) for t in picked))
    if left > 0:
        taken = np.zeros(m, bool)
        for t in picked:
            taken[t] = True
        rest = np.flatnonzero(~taken)
        picked.append(rest[np.sort(rng.choice(len(rest), size=left, replace=False))])
    centres = _centres(features, labels, members)
    info.update(k=k, k_used=k_used, cluster_sizes=[len(mm) for mm in members],
                clusters_skipped=len(members) - len(visit), picked_by_rank=by_rank, filled_at_random=max(0, left),
                centres=centres)
    return np.sort(np.concatenate(picked)), info


def _centres(features: np.ndarray, labels: np.ndarray, members: list[np.ndarray]) -> list[list[float]]:
    return [[float(f"{v:.5g}") for v in features[mm].mean(axis=0)] for mm in members]


# -- the strategy -------------------------------------------------------------------------------------------------


def select_temp(scores: pd.DataFrame, *, temp_scores: TempScores, n: int, seed: int, over_length: str = "drop",
                temp_checkpoint: int = 0) -> Selection:
    check_parameters(n, KEY, "", over_length)
    check_table(scores, KEY, "")
    temp = temp_scores
    scores = normalized(scores)
    elig, x, no_gauss = eligible_with_gaussian(scores, temp, over_length)
    if not len(elig.table):
        raise UserError(f"no eligible row of --scores has Gaussian checkpoint scores in {temp.folder}")
    domains, sources, grouping = group_labels(elig.table)
    diff = difficulty_filter(elig.key, x, sources, temp_checkpoint)
    survivors = np.flatnonzero(diff.keep)

    # directional features of the survivors
    jd = temp.num_checkpoints("directional")
    if jd < 2:
        raise UserError(f"{temp.folder}/directional has {jd} checkpoint(s); TEMP needs at least 2 (first and last)")
    dsub = _subset(elig, diff.keep)
    present, matched = _aligned(dsub, temp.directional, f"--temp-scores {temp.folder}/directional")
    rows_s = dsub.table["row"].to_numpy(np.int64)
    rejected = np.isin(rows_s, list(temp.rejected.get("directional", set())))
    unscored = ~present & ~rejected
    if unscored.any():
        rec = temp.meta["directional"].get("rows", {})
        raise UserError(
            f"{int(unscored.sum())} of the {len(rows_s)} rows that survive the difficulty filter (checkpoint "
            f"{diff.checkpoint}, over-length {over_length}) have no directional scores in {temp.folder}/directional "
            f"(it scored {rec.get('mode', '?')} rows: {rec.get('count', '?')}, filter "
            f"{rec.get('difficulty', {}).get('chosen_checkpoint', '?')}, over-length {rec.get('over_length', '?')}); "
            "re-run its `data-select score-checkpoints` with the same --over-length/--temp-checkpoint, or --rows all")
    survivors = survivors[present]
    l100 = [feature_column("directional", j, 100) for j in (1, jd)]
    l1000 = [feature_column("directional", j, 1000) for j in range(1, jd + 1)]
    first100, last100 = (matched[c].to_numpy(np.float64) for c in l100)
    feats = matched[l1000].to_numpy(np.float64)
    if len(survivors) < n:
        raise UserError(f"the difficulty filter keeps {len(survivors)} rows with directional scores (of "
                        f"{len(elig.table)} eligible), fewer than --n {n}")

    # allocation: domains, then sources within each domain
    dom, src = domains[survivors], sources[survivors]
    dom_alloc, dom_stats = allocate(n, dom, first100, last100)
    src_alloc: dict[tuple[str, str], int] = {}
    src_stats: dict[str, Any] = {}
    for d in sorted(dom_alloc):
        in_d = dom == d
        alloc, stats = allocate(dom_alloc[d], src[in_d], first100[in_d], last100[in_d])
        for s, q in alloc.items():
            src_alloc[(d, s)] = q
            src_stats[_group_name(d, s, domains)] = {"domain": d, **stats[s]}

    # diversity pick per source
    rng = np.random.default_rng(seed)
    chosen, div = [], {}
    for d, s in sorted(src_alloc):
        idx = np.flatnonzero((dom == d) & (src == s))
        pos, info = pick_source(feats[idx], elig.table["row"].to_numpy()[survivors[idx]], src_alloc[(d, s)], seed, rng)
        chosen.append(survivors[idx[pos]])
        div[_group_name(d, s, domains)] = info
    chosen_pos = np.concatenate(chosen) if chosen else np.arange(0)

    funnel = dict(elig.funnel)
    funnel = {"scored": funnel["scored"], "over_length_dropped": funnel["over_length_dropped"],
              "non_finite_key": funnel["non_finite_key"],
              "no_checkpoint_scores": no_gauss + int(rejected.sum()), "eligible": len(elig.table),
              "dropped_low": len(elig.table) - int(diff.keep.sum()), "dropped_high": 0, "band": len(survivors)}
    total_rejected = int(rejected.sum())
    warnings = list(diff.warnings)
    clipped = [g for g, st in {**dom_stats, **src_stats}.items() if st["clipped"]]
    if clipped:
        warnings.append(f"L̄last < L̄first in {', '.join(clipped)}: difficulty score clipped to 0")
    facts = {
        "strategy": "temp",
        "parameters": {"n": n, "seed": seed, "key": KEY, "over_length": over_length, "stratify": None,
                       "temp_scores": temp.folder, "temp_checkpoint": temp_checkpoint},
        "key": elig.key_facts,
        "thresholds": {},
        "funnel": funnel,
        "warnings": warnings,
        "temp": {
            "method": "TEMP (arXiv 2606.26797, ICML 2026); docs/methods.md §3",
            "grouping": grouping,
            "checkpoints": {k: {"num": temp.num_checkpoints(k), "perturbation": temp.meta[k].get("perturb", {})}
                            for k in ("gaussian", "directional")},
            "difficulty": diff.facts,
            "directional_rejected_survivors": total_rejected,
            "allocation": {"score": "sqrt(max(0, mean L100@last - mean L100@first) * mean L100@last), "
                                    "directional checkpoints, group survivors", "temperature": 1.0,
                           "capping": "water-filling, largest-remainder rounding",
                           "domains": dom_stats, "sources": src_stats},
            "diversity": {"features": f"directional_1..{jd}_loss_first_1000", "k": "max(1, quota // 4)",
                          "kmeans": {"random_state": seed, "n_init": DIVERSITY_N_INIT, "threads": 1},
                          "pick": "clusters smallest first, |L_last - L_first| of L^(1000), remainder at random",
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
