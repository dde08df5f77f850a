"""TEMP step 2, the budget split (docs/methods.md §3): domains (``category``), then the sources of each domain.

A group's score is √((L̄last − L̄first)·L̄last), the group means of L^(100) at the first and last directional
checkpoint over the group's difficulty survivors (**choice**: a negative L̄last − L̄first is clipped to 0 and
recorded; the official code would take the square root of a negative number). Shares are a softmax
(temperature 1) of the scores. Two ways to turn shares into integer allocations capped by group sizes:

* ``official`` (default): hjenryin/TEMP-ICML's ``compute_softmax_allocation``. Each group's floor share
  ⌊p·B⌋; one pass over the groups smallest first: a group whose size is below its floor share gets its size;
  any other gets ⌊p / Σp(groups not yet visited) · budget left⌋ (at most its size); what is left after the
  pass goes to the largest groups first, each up to its size. A capped group's excess is re-split only among
  the groups visited after it (larger ones), never handed back to the smaller groups already visited.
* ``water-filling`` (this project's earlier rule, an option): a group whose share of what is left exceeds its
  size gets its size and the rest is re-split by the same softmax among all uncapped groups, repeatedly; the
  final integer split is by largest remainder. Every uncapped group then gets its softmax share of the rest.

Both sum to the budget (when the groups hold it) and never exceed a group's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_selection.command_line import UserError
from data_selection.options.select import ALLOCATIONS
from data_selection.selectors.common import largest_remainder

DESCRIPTIONS = {
    "official": "official Selector: floor shares, one smallest-first pass capping a group below its floor share, "
                "leftovers to the largest groups",
    "water-filling": "option: water-filling (capped excess re-split by softmax among all uncapped groups), "
                     "largest-remainder rounding",
}


def softmax(scores: dict[str, float]) -> dict[str, float]:
    """Softmax over ``scores`` in sorted name order, computed as the official code does (exp / Σ exp)."""
    names = sorted(scores)
    z = np.array([scores[k] for k in names], dtype=np.float64)
    with np.errstate(over="ignore"):
        e = np.exp(z)
    if not np.isfinite(e).all():  # only for scores > ~709, far from losses; same shares up to rounding
        e = np.exp(z - z.max())
    p = e / np.sum(e)
    return {k: float(v) for k, v in zip(names, p)}


def official_allocation(share: dict[str, float], sizes: dict[str, int], budget: int
                        ) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(floor shares, allocation, capped groups) by the official ``compute_softmax_allocation``."""
    names = sorted(share)
    initial = {k: int(share[k] * budget) for k in names}
    order = sorted(names, key=lambda k: sizes[k])  # smallest first, ties in name order (a stable sort)
    final: dict[str, int] = {}
    left = budget
    probs = {k: share[k] for k in names}
    capped = []
    for k in order:
        if sizes[k] < initial[k]:
            final[k] = sizes[k]
            capped.append(k)
        else:
            proportion = probs[k] / sum(probs.values())
            final[k] = min(int(proportion * left), sizes[k])
        left -= final[k]
        del probs[k]
    for k in reversed(order):  # leftovers of the floors: the largest groups first
        if left <= 0:
            break
        add = min(left, sizes[k] - final[k])
        final[k] += add
        left -= add
    return initial, {k: final[k] for k in names}, capped


def water_filling_allocation(share: dict[str, float], sizes: dict[str, int], budget: int
                             ) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(largest-remainder shares, allocation, capped groups) by water-filling (the module docstring)."""
    names = sorted(share)
    before = largest_remainder(budget, share)
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
    return before, {k: after.get(k, 0) for k in names}, sorted(capped)


def capped_softmax_allocation(scores: dict[str, float], sizes: dict[str, int], budget: int,
                              rule: str = "official") -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
    """(softmax shares, allocation before capping, allocation after capping) of ``budget`` across groups."""
    if rule not in ALLOCATIONS:
        raise UserError(f"--temp-allocation must be one of {', '.join(ALLOCATIONS)}, got {rule!r}")
    if budget > sum(sizes.values()):
        raise UserError(f"cannot place {budget} rows in groups holding {sum(sizes.values())}")
    share = softmax(scores)
    split = official_allocation if rule == "official" else water_filling_allocation
    before, after, _ = split(share, sizes, budget)
    return share, before, after


def group_score(first: float, last: float) -> tuple[float, bool]:
    """√(max(0, last − first)·last) and whether the difference was clipped."""
    diff = last - first
    return float(np.sqrt(max(0.0, diff) * max(0.0, last))), diff < 0


def allocate(budget: int, keys: np.ndarray, first: np.ndarray, last: np.ndarray, rule: str = "official"
             ) -> tuple[dict[str, int], dict]:
    """Allocation of ``budget`` over the distinct values of ``keys`` by the capped softmax of group scores."""
    stats: dict[str, dict[str, Any]] = {}
    for g in sorted(set(keys.tolist())):
        m = keys == g
        f, la = float(first[m].mean()), float(last[m].mean())
        score, clipped = group_score(f, la)
        stats[g] = {"rows": int(m.sum()), "mean_first": f, "mean_last": la, "score": score, "clipped": clipped}
    share, before, after = capped_softmax_allocation({g: s["score"] for g, s in stats.items()},
                                                     {g: s["rows"] for g, s in stats.items()}, budget, rule)
    for g in stats:
        stats[g].update(softmax=share[g], before_cap=before[g], after_cap=after[g])
    return after, stats
