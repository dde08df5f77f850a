"""Confidence intervals for a selection study: arm means and paired differences, by a crossed bootstrap.

The data are per-problem scores: for arm a, replicate r (one subset draw + one training run, named by its
seed) and held-out problem p, ``y[a, r, p]`` in [0, 1] (1/0 for one greedy answer, the share of correct
samples with several). An arm's accuracy is the mean over its replicates and problems.

Two sources of noise matter and both are resampled, together: which problems happen to be in the held-out
set, and which training runs happen to have been made. Each bootstrap draw takes P problems with replacement
and R replicate indices with replacement (a crossed, two-way bootstrap) and recomputes every arm mean from
the same draw, so a difference between two arms is *paired*: it is computed on the same problems and on
the same replicate indices (replicate k of every arm used seed k). An arm with a single replicate (the
untrained base model) is the same in every replicate draw. The interval is the percentile interval of the
draws. With very few replicates the seed component is estimated from very few values (resampling R values
with replacement shrinks their variance by (R - 1)/R): the report states R.

"Resolved" (the study's own definition): the 95% interval of a paired difference has a half-width of at
most ``resolution`` points, i.e. the study can tell that difference apart from anything more than
``resolution`` points away, whichever sign it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Interval:
    estimate: float  # on the full data, not the bootstrap mean
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class StudyStats:
    arms: dict[str, Interval]  # accuracy in points (0-100)
    differences: dict[tuple[str, str], Interval]  # (arm, against) -> difference in points
    replicates: dict[str, int]
    problems: int
    draws: int
    confidence: float


def score_matrix(results: pd.DataFrame, arm: str, problems: list[str]) -> np.ndarray:
    """(replicates x problems) scores of one arm, replicates in seed order; every problem must be present."""
    sub = results[results["arm"] == arm]
    table = sub.pivot_table(index="seed", columns="problem", values="score", aggfunc="mean")
    missing = [p for p in problems if p not in table.columns]
    if missing or table.isna().any().any():
        raise ValueError(f"arm {arm!r} lacks scores for {len(missing) or int(table.isna().sum().sum())} "
                         f"problem(s) (first: {missing[:3] or 'a NaN'}): every arm must see the same problems")
    return table.sort_index()[problems].to_numpy(np.float64)


def bootstrap(results: pd.DataFrame, pairs: list[tuple[str, str]], draws: int = 10_000,
              confidence: float = 0.95, seed: int = 0) -> StudyStats:
    """Arm means and paired differences with crossed-bootstrap percentile intervals, in points.

    ``results``: columns arm, seed, problem, score. Arms with more than one replicate must share the same
    number of replicates R (replicate k = the k-th seed in sorted order, the pairing of arms).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arms = list(dict.fromkeys(results["arm"]))
    problems = sorted(results["problem"].unique())
    matrices = {a: score_matrix(results, a, problems) for a in arms}
    counts = {a: m.shape[0] for a, m in matrices.items()}
    multi = {r for r in counts.values() if r > 1}
    if len(multi) > 1:
        raise ValueError(f"arms have different numbers of replicates {counts}; pairing needs the same seeds")
    n_rep = multi.pop() if multi else 1
    n_prob = len(problems)
    rng = np.random.default_rng(seed)
    # problem weights: how often each problem is drawn (multinomial = sampling P with replacement)
    w_prob = rng.multinomial(n_prob, np.full(n_prob, 1 / n_prob), size=draws).astype(np.float64)  # (B, P)
    w_rep = rng.multinomial(n_rep, np.full(n_rep, 1 / n_rep), size=draws).astype(np.float64)  # (B, R)
    boot: dict[str, np.ndarray] = {}
    for arm, m in matrices.items():
        per_rep = m @ w_prob.T / n_prob  # (R_arm, B): each replicate's mean over the drawn problems
        boot[arm] = (w_rep * per_rep.T).sum(axis=1) / n_rep if m.shape[0] > 1 else per_rep[0]
    alpha = (1 - confidence) / 2

    def interval(point: float, samples: np.ndarray) -> Interval:
        lo, hi = np.quantile(samples, [alpha, 1 - alpha])
        return Interval(100 * point, 100 * float(lo), 100 * float(hi))

    arm_iv = {a: interval(float(matrices[a].mean()), boot[a]) for a in arms}
    diff_iv = {}
    for a, b in pairs:
        if a not in matrices or b not in matrices:
            raise ValueError(f"difference {a} - {b}: no such arm among {arms}")
        diff_iv[(a, b)] = interval(float(matrices[a].mean() - matrices[b].mean()), boot[a] - boot[b])
    return StudyStats(arm_iv, diff_iv, counts, n_prob, draws, confidence)


def verdict(diff: Interval, resolution: float, a: str, b: str) -> str:
    """One sentence on a paired difference, by the resolution definition above."""
    level = f"[{diff.low:+.1f}, {diff.high:+.1f}]"
    if diff.half_width > resolution:
        sign = (f"{a} is {'better' if diff.low > 0 else 'worse'} than {b} (the interval excludes 0), but the size is"
                if diff.low > 0 or diff.high < 0 else "the sign is open (the interval holds 0) and the size is")
        return (f"{a} − {b} = {diff.estimate:+.1f} points, 95% CI {level}: {sign} NOT resolved to the study's "
                f"precision (half-width {diff.half_width:.1f} > {resolution:g} points; more problems or seeds "
                "narrow it).")
    if diff.low > 0:
        where = f"{a} is better than {b}"
    elif diff.high < 0:
        where = f"{a} is worse than {b}"
    else:
        where = f"no difference larger than {max(abs(diff.low), abs(diff.high)):.1f} points either way"
    return (f"{a} − {b} = {diff.estimate:+.1f} points, 95% CI {level}: resolved (half-width "
            f"{diff.half_width:.1f} ≤ {resolution:g}); {where}.")
