"""The last step of ``--strategy pass-cv``: which eligible queries, and how many of their responses, fill the budget.

Queries are ranked by CV, highest first; the budget ``n`` counts rows. Each query brings ``k`` of its eligible
(passing, filtered) responses: all of them (``responses_per_query all``, the paper's Stage I keeps every passing
response) or at most ``N``. Whole CV levels are taken while they fit; at the level where the budget runs out the
tied queries are drawn with ``numpy.random.default_rng(seed)`` (one response each: ``rng.choice`` of the needed
number; several: a permutation, the last query drawn bringing only what still fits); a level that exactly
fills the budget with queries left after it is drawn too (all of it is taken). The same
generator then picks each chosen query's responses (queries in key order, responses in pool-row order): all when
it brings all, else ``rng.integers`` for one and ``rng.choice`` without replacement for more.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError


def parse_responses_per_query(value: str | int, stage: int) -> int | None:
    """``all`` → None (every eligible response), ``auto`` → the paper's stage (Stage I: all; Stage II: 1), N → N."""
    text = str(value).strip().lower()
    if text == "auto":
        return None if stage == 1 else 1
    if text == "all":
        return None
    try:
        k = int(text)
    except ValueError as err:
        raise UserError(f"--responses_per_query must be auto, all or a positive number, got {value!r}") from err
    if k < 1:
        raise UserError(f"--responses_per_query must be auto, all or a positive number, got {value!r}")
    return k


def take(queries: pd.DataFrame, candidates: pd.DataFrame, n: int, per_query: int | None, seed: int
         ) -> tuple[np.ndarray, list[str], float | None, dict[str, int]]:
    """(selected pool rows ascending, chosen query keys, CV at the cut or None, tie facts).

    ``queries``: the eligible queries (index = key, column ``cv``); ``candidates``: their eligible rows
    (``query``, ``row``)."""
    options = candidates.groupby("query", sort=True)["row"].apply(lambda r: sorted(r))
    brings = {q: len(options[q]) if per_query is None else min(per_query, len(options[q])) for q in queries.index}
    order = queries.sort_values(["cv"], ascending=False, kind="stable")  # key order within equal cv
    rng = np.random.default_rng(seed)
    chosen: dict[str, int] = {}  # key -> rows it brings
    left = n
    cut: float | None = None
    tie: dict[str, int] = {}
    levels = list(order.groupby("cv", sort=False))
    for at, (cv, level) in enumerate(levels):
        keys = sorted(level.index)
        need = sum(brings[q] for q in keys)
        if need < left or (need == left and at == len(levels) - 1):
            chosen.update({q: brings[q] for q in keys})
            left -= need
            continue
        cut = float(cv)
        if all(brings[q] == 1 for q in keys):
            picked = [keys[i] for i in sorted(rng.choice(len(keys), size=left, replace=False))]
            chosen.update({q: 1 for q in picked})
        else:
            picked = []
            for i in rng.permutation(len(keys)):
                if left <= 0:
                    break
                q = keys[int(i)]
                chosen[q] = min(brings[q], left)
                left -= chosen[q]
                picked.append(q)
        tie = {"queries_at_cut": len(keys), "taken_at_cut": len(picked)}
        left = 0
        break
    rows: list[int] = []
    for q in sorted(chosen):
        opts, m = options[q], chosen[q]
        if m >= len(opts):
            rows.extend(opts)
        elif m == 1:
            rows.append(opts[int(rng.integers(len(opts)))])
        else:
            rows.extend(opts[i] for i in sorted(rng.choice(len(opts), size=m, replace=False)))
    return np.sort(np.array(rows, dtype=np.int64)), sorted(chosen), cut, tie


def take_facts(per_query: int | None, stage: int, fill_low_cv: bool) -> dict[str, Any]:
    return {"stage": stage, "responses_per_query": "all" if per_query is None else per_query,
            "fill_low_cv": fill_low_cv}
