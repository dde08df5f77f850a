"""Length-matched random baseline: uniform draws whose response-length distribution matches another subset's.

Why: the ZPD band ranks rows by mean response loss, and on long reasoning traces mean loss is tied to length,
so "zpd beats random" can mean "zpd picked shorter (or longer) traces". This baseline draws rows uniformly at
random *within* length bins, as many per bin as the target subset has, so a difference between the target
and this draw cannot come from the length distribution.

Protocol (choices recorded in the manifest under ``matching``):

* Bins: ``bins`` quantile bins of the **target's** ``n_response_tokens`` (edges ``np.quantile`` at 0, 1/b, ...,
  1, duplicate edges merged, so heavily tied lengths give fewer bins). Bin i is [edge_i, edge_i+1), the last one
  closed. Candidates outside the target's [min, max] length are never drawn (an open outer bin would admit
  lengths the target does not have).
* ``match_on`` = ``n_response_tokens,source`` (or ``category``) crosses the length bins with that column: a
  cell is (length bin, value), its target count is the number of target rows in it.
* Quotas: the target's count per cell scaled to ``n`` by largest remainder (exactly the target's counts when
  ``n`` equals the target's size).
* Candidates: the eligible pool (same over-length rule and finite-key rule as every strategy) minus the target's
  own rows, unless ``include_matched``.
* Draws: one ``numpy.random.default_rng(seed)``, cells visited in sorted order, ``rng.choice`` without
  replacement within each cell (the shared seed protocol of :mod:`data_selection.selectors.common`).
* A cell with fewer candidates than its quota is an error naming it, unless ``borrow``: then the shortfall is
  drawn from the nearest length bins (same other value; lower bin first on ties) that have spare candidates,
  and the manifest counts what was borrowed where.
* The two-sample Kolmogorov-Smirnov statistic of lengths, target vs draw (``scipy.stats.ks_2samp``), is
  recorded with its p-value. With the target's counts filled exactly it is at most the largest bin's share of
  the target (the two CDFs agree at every bin edge).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.selectors.common import (
    STRATIFY_COLUMNS,
    Selection,
    check_parameters,
    check_table,
    describe_values,
    eligible_rows,
    finish,
    largest_remainder,
    normalized,
)

LENGTH = "n_response_tokens"
MATCH_COLUMNS = (LENGTH, *STRATIFY_COLUMNS)


def parse_match_on(match_on: str) -> tuple[str, ...]:
    cols = tuple(c.strip() for c in match_on.split(",") if c.strip())
    bad = [c for c in cols if c not in MATCH_COLUMNS]
    if bad or LENGTH not in cols:
        raise UserError(f"--match-on {match_on!r}: a comma list holding {LENGTH} and optionally "
                        f"{', '.join(STRATIFY_COLUMNS)} (unknown: {bad})")
    return cols


def length_edges(lengths: np.ndarray, bins: int) -> np.ndarray:
    """Quantile edges of the target's lengths, duplicates merged (at least [min, max])."""
    edges = np.unique(np.quantile(lengths.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    return edges


def bin_of(lengths: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per length, -1 outside [edges[0], edges[-1]]."""
    x = lengths.astype(np.float64)
    idx = np.searchsorted(edges[1:-1], x, side="right")
    idx[(x < edges[0]) | (x > edges[-1])] = -1
    return idx


def _label(cell: tuple, edges: np.ndarray, others: tuple[str, ...]) -> str:
    b = cell[0]
    hi = "]" if b == len(edges) - 2 else ")"
    text = f"length bin {b} [{edges[b]:g}, {edges[b + 1]:g}{hi} tokens"
    return text + "".join(f" × {col} {val!r}" for col, val in zip(others, cell[1:]))


def _ks(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    from scipy.stats import ks_2samp

    res = ks_2samp(a.astype(np.float64), b.astype(np.float64))
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue)}


def select_matched_random(
    scores: pd.DataFrame,
    *,
    n: int,
    seed: int,
    match: dict[str, Any],
    match_on: str = LENGTH,
    match_bins: int = 10,
    borrow: bool = False,
    include_matched: bool = False,
    key: str = "loss_mean",
    over_length: str = "drop",
) -> Selection:
    """``match``: ``{"ids": [...], "source": "where they came from"}`` (see :mod:`data_selection.match_target`)."""
    check_parameters(n, key, "", over_length)
    if match_bins < 1:
        raise UserError(f"--match-bins must be at least 1, got {match_bins}")
    cols = parse_match_on(match_on)
    others = tuple(c for c in cols if c != LENGTH)
    check_table(scores, key, "")
    missing = [c for c in others if c not in scores.columns]
    if missing:
        raise UserError(f"--match-on {match_on}: the scores table has no column(s) {missing}")
    scores = normalized(scores)
    target_ids = list(dict.fromkeys(str(i) for i in match["ids"]))
    if not target_ids:
        raise UserError(f"the subset to match ({match.get('source')}) holds no rows")
    in_pool = scores["id"].astype(str).isin(set(target_ids)).to_numpy()
    if in_pool.sum() < len(target_ids):
        known = set(scores["id"].astype(str))
        absent = [i for i in target_ids if i not in known]
        raise UserError(f"{len(absent)} of the {len(target_ids)} rows of {match.get('source')} are not in these scores "
                        f"(first: {absent[0]!r}): the subset was selected from another pool or scoring")
    target = scores.loc[in_pool]
    elig = eligible_rows(scores, key, over_length)
    pool_t = elig.table
    is_target = pool_t["id"].astype(str).isin(set(target_ids)).to_numpy()
    edges = length_edges(target[LENGTH].to_numpy(), match_bins)

    def cells_of(table: pd.DataFrame) -> list[tuple]:
        b = bin_of(table[LENGTH].to_numpy(), edges)
        parts = [b.tolist()] + [table[c].astype(str).tolist() for c in others]
        return list(zip(*parts))

    target_cells = pd.Series(cells_of(target)).value_counts()
    target_counts = {c: int(v) for c, v in sorted(target_cells.items())}
    quotas = largest_remainder(n, {c: v for c, v in target_counts.items()})
    cand_mask = np.ones(len(pool_t), bool) if include_matched else ~is_target
    cand_cells = cells_of(pool_t)
    by_cell: dict[tuple, list[int]] = {}
    for pos in np.flatnonzero(cand_mask):
        by_cell.setdefault(cand_cells[pos], []).append(int(pos))
    available = {c: np.asarray(v, dtype=np.int64) for c, v in by_cell.items() if c[0] >= 0}

    short = {c: q - len(available.get(c, ())) for c, q in quotas.items() if q > len(available.get(c, ()))}
    borrowed: list[dict[str, Any]] = []
    take = {c: min(q, len(available.get(c, ()))) for c, q in quotas.items()}
    if short and not borrow:
        first = next(iter(short))
        raise UserError(
            f"cannot fill {len(short)} matching cell(s); first: {_label(first, edges, others)} needs {quotas[first]} "
            f"rows, the pool has {len(available.get(first, ()))} candidates"
            + ("" if include_matched else " outside the matched subset")
            + "; pass --borrow to take the shortfall from the neighbouring length bins, use fewer --match-bins, "
            "or lower --n")
    extra: dict[tuple, int] = {}
    n_bins = len(edges) - 1
    for cell, need in short.items():
        b, rest = cell[0], cell[1:]
        for dist in range(1, n_bins):
            for nb in (b - dist, b + dist):
                if need == 0 or not 0 <= nb < n_bins:
                    continue
                other = (nb, *rest)
                spare = len(available.get(other, ())) - take.get(other, 0) - extra.get(other, 0)
                if spare > 0:
                    k = min(spare, need)
                    extra[other] = extra.get(other, 0) + k
                    need -= k
                    borrowed.append({"cell": _label(cell, edges, others), "from": _label(other, edges, others),
                                     "rows": k})
        if need:
            raise UserError(f"cannot fill {_label(cell, edges, others)} even by borrowing: {need} row(s) short; no "
                            "length bin with the same "
                            + ("/".join(others) + " value" if others else "pool") + " has spare candidates")
    rng = np.random.default_rng(seed)
    chosen, drawn_counts = [], {}
    for cell in sorted(set(take) | set(extra)):
        k = take.get(cell, 0) + extra.get(cell, 0)
        if k:
            cand = available[cell]
            chosen.append(cand[rng.choice(len(cand), size=k, replace=False)])
        drawn_counts[cell] = k
    chosen_pos = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)

    t_len = target[LENGTH].to_numpy()
    d_len = pool_t[LENGTH].to_numpy()[chosen_pos]
    table = [{"cell": _label(c, edges, others), "bin": int(c[0]),
              **{col: val for col, val in zip(others, c[1:])},
              "target": target_counts.get(c, 0), "quota": quotas.get(c, 0), "drawn": drawn_counts.get(c, 0),
              "candidates": len(available.get(c, ()))}
             for c in sorted(set(target_counts) | set(drawn_counts))]
    funnel = dict(elig.funnel)
    funnel.update(dropped_low=0, dropped_high=0,
                  matched_subset_excluded=0 if include_matched else int(is_target.sum()),
                  outside_target_lengths=int(sum(1 for p in np.flatnonzero(cand_mask) if cand_cells[p][0] < 0)),
                  band=int(sum(len(v) for v in available.values())))
    facts = {
        "strategy": "matched-random",
        "parameters": {"n": n, "seed": seed, "key": key, "over_length": over_length, "match": match.get("source"),
                       "match_on": ",".join(cols), "match_bins": match_bins, "borrow": borrow,
                       "include_matched": include_matched, "stratify": None},
        "key": elig.key_facts,
        "thresholds": {},
        "funnel": funnel,
        "matching": {
            "target": {"source": match.get("source"), "rows": len(target_ids)},
            "length_edges": [float(e) for e in edges],
            "bin_rule": "quantile bins of the target's n_response_tokens; [edge_i, edge_i+1), last closed; "
                        "candidates outside the target's length range are not drawn",
            "cells": table,
            "borrowed": borrowed,
            "ks_lengths": _ks(t_len, d_len),
            "ks_bound_exact_fill": float(max(target_counts.values()) / len(target_ids)),
            "lengths": {"target": _describe(t_len), "drawn": _describe(d_len)},
        },
    }
    return finish(chosen_pos, elig, facts, {"pool": scores, "eligible": pool_t, "target": target})


def _describe(x: np.ndarray) -> dict[str, float]:
    return describe_values(x.astype(np.float64))
