"""Loss-band ("zone of proximal development") selection: drop the easiest and hardest rows, sample the middle.

methods.md §1: rank the eligible pool by the key (default the mean response NLL of the base model), drop the
bottom ``low`` share (too easy) and the top ``1 - high`` share (too hard / noisy), then draw ``n`` rows
uniformly without replacement from the band, seeded.

Choices the method leaves open, made here and recorded in the manifest:

* The band is cut by rank, not by comparing with an interpolated quantile value: the ``floor(low * N)``
  lowest rows and the ``floor((1 - high) * N)`` highest rows are dropped, ties broken by pool row. Counts are
  therefore exact (100,000 rows at 0.25/0.75 give 25,000 / 50,000 / 25,000) and the thresholds reported are
  the smallest and largest key values inside the band.
* With ``stratify`` the band is computed **per stratum** (each category/source keeps its own middle band, as
  Cherry-LLM's pre-experience step does per cluster) and the budget is split in proportion to the eligible
  pool's strata (largest remainder). A global band would let a stratum whose losses sit mostly outside it
  (code traces are typically lower-loss than math ones) fall short of its proportional quota.
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


def band_positions(key: np.ndarray, low: float, high: float) -> tuple[np.ndarray, int, int, dict[str, float]]:
    """Positions (ascending) of the rows inside the rank band, how many fell below / above, and thresholds.

    ``key`` must be ordered by pool row: ties in the key are broken by that order.
    """
    n = len(key)
    order = np.lexsort((np.arange(n), key))  # by key, then by pool row
    drop_low = int(np.floor(low * n + 1e-9))
    drop_high = int(np.floor((1.0 - high) * n + 1e-9))
    inside = order[drop_low : n - drop_high]
    thresholds: dict[str, float] = {}
    if len(inside):
        thresholds = {
            "low_value": float(key[inside[0]]),  # smallest key kept
            "high_value": float(key[inside[-1]]),  # largest key kept
            "low_quantile_value": float(np.quantile(key, low)),
            "high_quantile_value": float(np.quantile(key, high)),
        }
    return np.sort(inside), drop_low, drop_high, thresholds


def select_zpd(
    scores: pd.DataFrame,
    *,
    n: int,
    seed: int,
    low: float = 0.25,
    high: float = 0.75,
    key: str = "loss_mean",
    stratify: str = "",
    over_length: str = "drop",
) -> Selection:
    check_parameters(n, key, stratify, over_length)
    if not (0.0 <= low < high <= 1.0):
        raise UserError(f"the band needs 0 <= low < high <= 1, got low={low}, high={high}")
    check_table(scores, key, stratify)
    scores = normalized(scores)
    elig = eligible_rows(scores, key, over_length)
    rng = np.random.default_rng(seed)
    funnel = elig.funnel
    parameters = {"n": n, "seed": seed, "key": key, "low": low, "high": high, "stratify": stratify or None,
                  "over_length": over_length, "band_scope": "stratum" if stratify else "global"}

    if not stratify:
        band, d_low, d_high, thresholds = band_positions(elig.key, low, high)
        funnel.update(dropped_low=d_low, dropped_high=d_high, band=len(band))
        if len(band) < n:
            raise UserError(
                f"the band [{low}, {high}] of {key} holds {len(band)} rows (of {funnel['eligible']} eligible), "
                f"fewer than --n {n}; widen the band, lower --n, or keep over-length rows (--over-length keep)"
            )
        chosen = draw(rng, band, n)
        thresholds = {"low_quantile": low, "high_quantile": high, **thresholds}
    else:
        groups = strata_of(elig.table, stratify)
        quotas = largest_remainder(n, {k: len(v) for k, v in groups.items()})
        bands, per_stratum, short = {}, {}, []
        d_low_total = d_high_total = 0
        for name, positions in groups.items():
            inside, d_low, d_high, th = band_positions(elig.key[positions], low, high)
            band = positions[inside]
            bands[name] = band
            d_low_total += d_low
            d_high_total += d_high
            per_stratum[name] = {"eligible": len(positions), "band": len(band), "quota": quotas[name], **th}
            if len(band) < quotas[name]:
                short.append(f"{name!r}: band {len(band)} < quota {quotas[name]}")
        band = np.sort(np.concatenate(list(bands.values())))
        funnel.update(dropped_low=d_low_total, dropped_high=d_high_total, band=len(band))
        if short:
            raise UserError(
                f"stratified by {stratify}, the per-{stratify} band [{low}, {high}] of {key} is too small for the "
                f"proportional quotas of --n {n}: {'; '.join(short)}; widen the band, lower --n or drop --stratify"
            )
        chosen = np.concatenate([draw(rng, bands[name], quotas[name]) for name in groups])
        thresholds = {"low_quantile": low, "high_quantile": high, "per_stratum": per_stratum}

    facts = {"strategy": "zpd", "parameters": parameters, "key": elig.key_facts, "thresholds": thresholds,
             "funnel": funnel}
    stages = {"pool": scores, "eligible": elig.table, "band": elig.table.iloc[band]}
    return finish(chosen, elig, facts, stages)
