"""Random baseline: ``n`` rows uniformly without replacement from the whole eligible pool (methods.md §1).

Same eligibility (over-length rows dropped by default) and the same seed protocol as ``zpd``
(:mod:`data_selection.selectors.common`), so a random and a ZPD subset drawn with one seed differ only in
the band. With ``stratify`` the budget is split by largest remainder in proportion to the eligible pool's
strata and each stratum is sampled uniformly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.selectors.common import (
    Selection,
    check_parameters,
    check_table,
    draw,
    eligible_rows,
    finish,
    largest_remainder,
    normalized,
    strata_of,
)


def select_random(
    scores: pd.DataFrame,
    *,
    n: int,
    seed: int,
    key: str = "loss_mean",
    stratify: str = "",
    over_length: str = "drop",
) -> Selection:
    """``key`` only decides which rows count as eligible (finite key) and what the report plots."""
    check_parameters(n, key, stratify, over_length)
    check_table(scores, key, stratify)
    scores = normalized(scores)
    elig = eligible_rows(scores, key, over_length)
    funnel = elig.funnel
    funnel.update(dropped_low=0, dropped_high=0, band=funnel["eligible"])
    if funnel["eligible"] < n:
        raise UserError(f"the pool holds {funnel['eligible']} eligible rows, fewer than --n {n} ({funnel})")
    rng = np.random.default_rng(seed)
    everything = np.arange(len(elig.table))
    if not stratify:
        chosen = draw(rng, everything, n)
    else:
        groups = strata_of(elig.table, stratify)
        quotas = largest_remainder(n, {k: len(v) for k, v in groups.items()})
        chosen = np.concatenate([draw(rng, positions, quotas[name]) for name, positions in groups.items()])
    facts = {
        "strategy": "random",
        "parameters": {"n": n, "seed": seed, "key": key, "stratify": stratify or None, "over_length": over_length},
        "key": elig.key_facts,
        "thresholds": {},
        "funnel": funnel,
    }
    return finish(chosen, elig, facts, {"pool": scores, "eligible": elig.table})
