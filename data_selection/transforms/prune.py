"""Which steps of a row to delete, given their types and PIR values (docs/methods.md §5, step 4).

Per row and per functional type separately, the ``round_half_up(ratio × count)`` steps with the lowest PIR are
deleted, ties broken by position (the earlier step goes first). Progressive steps are never deleted. The count
is rounded half up in decimal arithmetic, so ratio 0.3 of 5 steps deletes 2 (1.5 rounds up) whatever the
binary representation of 0.3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from data_selection.transforms.steps import FUNCTIONAL_TYPES


def round_half_up(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_HALF_UP))


def n_to_delete(ratio: float, count: int) -> int:
    """round_half_up(ratio × count), computed on the decimal value of ``ratio`` as written."""
    return min(count, round_half_up(Decimal(repr(float(ratio))) * count))


def steps_to_delete(types: Sequence[str], pirs: Sequence[float], ratio: float) -> list[int]:
    """Indexes of the steps to delete (sorted). ``pirs[i]`` is ignored for progressive steps.

    Raises ValueError on a non-finite PIR of a functional step (the caller keeps such a row unchanged).
    """
    if len(types) != len(pirs):
        raise ValueError(f"{len(types)} step types but {len(pirs)} PIR values")
    out: list[int] = []
    for t in FUNCTIONAL_TYPES:
        idx = [i for i, ti in enumerate(types) if ti == t]
        if not idx:
            continue
        bad = [i for i in idx if not math.isfinite(float(pirs[i]))]
        if bad:
            raise ValueError(f"non-finite PIR for step(s) {bad}")
        k = n_to_delete(ratio, len(idx))
        out += sorted(idx, key=lambda i: (float(pirs[i]), i))[:k]
    return sorted(out)
