"""The study's statistics on hand-built per-problem results whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llamafactory_ext.study.stats import Interval, bootstrap, verdict


def results(arms: dict[str, list[list[float]]]) -> pd.DataFrame:
    """{arm: [replicate][problem] scores} -> the long table the study reads from its evaluations."""
    rows = [
        {"arm": arm, "seed": r + 1, "problem": f"p{p:04d}", "score": s}
        for arm, reps in arms.items() for r, rep in enumerate(reps) for p, s in enumerate(rep)
    ]
    return pd.DataFrame(rows)


def test_certain_difference_has_zero_width_and_is_resolved():
    st = bootstrap(results({"zpd": [[1.0] * 50] * 2, "random": [[0.0] * 50] * 2}), [("zpd", "random")], draws=500)
    d = st.differences[("zpd", "random")]
    assert (d.estimate, d.low, d.high, d.half_width) == (100.0, 100.0, 100.0, 0.0)
    assert "resolved" in verdict(d, 2.5, "zpd", "random") and "zpd is better than random" in verdict(
        d, 2.5, "zpd", "random")


def test_single_replicate_interval_matches_the_binomial_standard_error():
    p, n = 0.3, 2000
    scores = [1.0] * int(p * n) + [0.0] * int((1 - p) * n)
    st = bootstrap(results({"base": [scores]}), [], draws=20_000, seed=1)
    iv = st.arms["base"]
    assert iv.estimate == pytest.approx(30.0)
    expected = 100 * 1.959964 * math.sqrt(p * (1 - p) / n)  # 2.008 points
    assert iv.half_width == pytest.approx(expected, rel=0.05)


def test_paired_difference_uses_only_discordant_problems():
    """Two arms agree on 920 of 1000 problems; A alone solves 50, B alone 30: diff 2 points, McNemar SE."""
    n = 1000
    a = [1.0] * 50 + [0.0] * 30 + [1.0] * 400 + [0.0] * 520
    b = [0.0] * 50 + [1.0] * 30 + [1.0] * 400 + [0.0] * 520
    st = bootstrap(results({"a": [a], "b": [b]}), [("a", "b")], draws=20_000, seed=2)
    d = st.differences[("a", "b")]
    assert d.estimate == pytest.approx(2.0)
    var = (80 / n) - 0.02**2  # variance of the per-problem difference in {-1, 0, 1}
    expected = 100 * 1.959964 * math.sqrt(var / n)  # 1.75 points
    assert d.half_width == pytest.approx(expected, rel=0.06)
    # unpaired, the same two accuracies would be far less certain (sqrt(2 p (1-p) / n) ~ 3 points)
    assert d.half_width < 0.7 * 100 * 1.96 * math.sqrt(2 * 0.45 * 0.55 / n)


def test_replicates_are_resampled_too():
    """Replicate 1 solves everything, replicate 2 nothing: the seed noise must widen the interval."""
    st = bootstrap(results({"zpd": [[1.0] * 200, [0.0] * 200], "random": [[0.5] * 200] * 2}),
                   [("zpd", "random")], draws=4000, seed=3)
    iv = st.arms["zpd"]
    assert iv.estimate == pytest.approx(50.0)
    assert iv.low == pytest.approx(0.0) and iv.high == pytest.approx(100.0)  # draws {1,1}, {1,2}, {2,2}
    assert "NOT resolved" in verdict(st.differences[("zpd", "random")], 2.5, "zpd", "random")


def test_single_replicate_arm_pairs_with_every_replicate_and_order_does_not_matter():
    rng = np.random.default_rng(0)
    base = (rng.random(300) < 0.2).astype(float).tolist()
    reps = [(rng.random(300) < 0.4).astype(float).tolist() for _ in range(3)]
    df = results({"base": [base], "zpd": reps})
    st = bootstrap(df, [("zpd", "base")], draws=2000, seed=4)
    st2 = bootstrap(df.sample(frac=1.0, random_state=1), [("zpd", "base")], draws=2000, seed=4)
    assert st.differences == st2.differences  # row order of the input is irrelevant
    d = st.differences[("zpd", "base")]
    assert d.estimate == pytest.approx(100 * (np.mean(reps) - np.mean(base)))
    assert d.low < d.estimate < d.high
    assert st.replicates == {"base": 1, "zpd": 3} and st.problems == 300


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="same problems"):
        bootstrap(results({"a": [[1.0, 0.0]], "b": [[1.0]]}), [("a", "b")], draws=10)
    with pytest.raises(ValueError, match="different numbers of replicates"):
        bootstrap(results({"a": [[1.0]] * 2, "b": [[1.0]] * 3}), [("a", "b")], draws=10)
    with pytest.raises(ValueError, match="no such arm"):
        bootstrap(results({"a": [[1.0]]}), [("a", "zz")], draws=10)


def test_a_wide_interval_that_excludes_zero_still_says_which_arm_is_better():
    wide_positive = verdict(Interval(19.3, 14.1, 24.4), 2.5, "zpd", "base")
    assert "zpd is better than base (the interval excludes 0)" in wide_positive and "NOT resolved" in wide_positive
    assert "base is worse than random" in verdict(Interval(-18.3, -23.5, -13.4), 2.5, "base", "random")
    assert "the sign is open" in verdict(Interval(0.9, -4.6, 6.9), 2.5, "zpd", "random")
