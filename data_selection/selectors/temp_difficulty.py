"""TEMP step 1, the difficulty filter (docs/methods.md §3): which rows are hard at a Gaussian checkpoint.

Over the eligible rows (over-length dropped unless kept, finite base L^(100)), the ratio of each Gaussian
checkpoint's mean L^(100) to the base model's. The checkpoint whose ratio lies in [2, 3] is taken (**choice**
when several do: the one closest to 2.5, ties to the lower index; when none does: the one closest to the
interval, with a warning and the ratio recorded; ``--temp-checkpoint`` forces one).

Then per ``source``, as the official ``Selector`` does it (hjenryin/TEMP-ICML, ``selector.py``, the path
``select-high-loss.sh`` runs): sources are visited smallest first with a running budget of
``init_label_num`` (1000 in its ``default-selection-args.yml``); a source with at most
``budget // (sources not yet kept whole)`` rows is kept whole and its rows leave the budget. Every other
source is split by 1-D k-means (scikit-learn, k = 2, random_state 42, n_init 10) on L^(100) at the chosen
checkpoint and its high-centre cluster is kept whole (**choice**: a source of fewer than 2 rows or of equal
values is kept whole, as the official k-means with one effective cluster does). ``--temp-init-label-num 0``
turns the small-source rule off (every source is k-means split: this project's earlier rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.options.select import INIT_LABEL_NUM  # official default (default-selection-args.yml)
from data_selection.scoring.checkpoint_layout import TempScores, feature_column
from data_selection.selectors.common import Eligible, check_table, eligible_rows, normalized

KEY = "loss_first_100"  # base-model L^(100): the eligibility key and the difficulty reference
RATIO_RANGE = (2.0, 3.0)
DIFFICULTY_K, DIFFICULTY_SEED, DIFFICULTY_N_INIT = 2, 42, 10
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


def small_sources(sources: np.ndarray, init_label_num: int = INIT_LABEL_NUM) -> dict[str, int]:
    """Sources the official filter keeps whole, each with the per-source budget it fitted under.

    Smallest first (ties by name, as ``np.argsort`` orders a short array); budget ``init_label_num`` shrinks by
    every source kept; a source fits when its size is at most ``budget // (sources not yet kept)``.
    """
    names, counts = np.unique(sources, return_counts=True)
    order = sorted(zip(counts.tolist(), names.tolist()))
    budget, kept = int(init_label_num), {}
    for count, name in order:
        per_source = budget // (len(order) - len(kept))
        if count <= per_source:
            kept[name] = per_source
            budget -= count
    return kept


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
                      forced_checkpoint: int = 0, init_label_num: int = INIT_LABEL_NUM) -> Difficulty:
    """Choose the Gaussian checkpoint, keep small sources whole, and each other source's high-loss cluster.

    ``ckpt_l100``: rows x checkpoints, aligned with ``base_l100`` and ``sources``.
    """
    if init_label_num < 0:
        raise UserError(f"--temp-init-label-num must be >= 0, got {init_label_num}")
    means = [float(x) for x in ckpt_l100.mean(axis=0)]
    c, facts, warnings = choose_checkpoint(float(base_l100.mean()), means, forced_checkpoint)
    x = ckpt_l100[:, c - 1]
    keep = np.zeros(len(x), bool)
    whole = small_sources(sources, init_label_num)
    per_source = {}
    for s in sorted(set(sources.tolist())):
        idx = np.flatnonzero(sources == s)
        if s in whole:
            mask = np.ones(len(idx), bool)
            info = {"rows": len(idx), "kept": len(idx),
                    "note": f"kept whole: a small source (<= {whole[s]} rows, init_label_num rule)"}
        else:
            mask, info = split_high(x[idx])
        keep[idx[mask]] = True
        per_source[s] = info
    rule = (f"official: sources of <= init_label_num ({init_label_num}) // (sources left) rows kept whole, "
            "smallest first" if init_label_num else "off (--temp-init-label-num 0): every source k-means split")
    facts.update(kmeans={"k": DIFFICULTY_K, "random_state": DIFFICULTY_SEED, "n_init": DIFFICULTY_N_INIT,
                         "feature": f"gaussian_{c}_loss_first_100", "per": "source", "threads": 1},
                 small_sources={"rule": rule, "init_label_num": init_label_num, "official": init_label_num ==
                                INIT_LABEL_NUM, "kept_whole": sorted(whole)},
                 per_source=per_source, rows=len(x), survivors=int(keep.sum()))
    return Difficulty(keep=keep, checkpoint=c, facts=facts, warnings=warnings)


def aligned(elig: Eligible, other: pd.DataFrame, what: str) -> tuple[np.ndarray, pd.DataFrame]:
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


def subset(elig: Eligible, mask: np.ndarray) -> Eligible:
    return Eligible(table=elig.table.loc[mask].reset_index(drop=True), key=elig.key[mask], funnel=elig.funnel,
                    key_facts=elig.key_facts, over_length_rows=elig.over_length_rows)


def eligible_with_gaussian(scores: pd.DataFrame, temp: TempScores, over_length: str) -> tuple[Eligible, np.ndarray, int]:
    """Eligible rows that have Gaussian checkpoint scores, their rows x checkpoints L^(100), rows dropped."""
    elig = eligible_rows(scores, KEY, over_length)
    present, matched = aligned(elig, temp.gaussian, f"--temp-scores {temp.folder}/gaussian")
    cols = [feature_column("gaussian", j, 100) for j in range(1, temp.num_checkpoints("gaussian") + 1)]
    missing = [c for c in cols if c not in matched.columns]
    if missing:
        raise UserError(f"{temp.folder}/gaussian/scores.parquet lacks column(s) {missing}")
    return subset(elig, present), matched[cols].to_numpy(np.float64), int((~present).sum())


def difficulty_survivors(scores: pd.DataFrame, temp: TempScores, over_length: str = "drop",
                         forced_checkpoint: int = 0, init_label_num: int = INIT_LABEL_NUM
                         ) -> tuple[np.ndarray, Difficulty]:
    """Pool rows (ascending) that survive the difficulty filter: what the directional scorer must score."""
    check_table(scores, KEY, "")
    elig, x, _ = eligible_with_gaussian(normalized(scores), temp, over_length)
    if not len(elig.table):
        raise UserError("no eligible row has Gaussian checkpoint scores")
    _, sources, _ = group_labels(elig.table)
    diff = difficulty_filter(elig.key, x, sources, forced_checkpoint, init_label_num)
    return elig.table["row"].to_numpy(np.int64)[diff.keep], diff
