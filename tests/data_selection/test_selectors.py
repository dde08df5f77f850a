"""Selectors: pure functions from a scores table to chosen rows (no files, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from score_fixtures import synthetic_scores

from data_selection.command_line import UserError
from data_selection.select import SelectOptions, run_strategy
from data_selection.selectors import select_random, select_zpd
from data_selection.selectors.common import largest_remainder


@pytest.fixture(scope="module")
def table():
    return synthetic_scores(2000, seed=1, truncated_share=0.05)


def test_zpd_cuts_the_band_by_rank_and_samples_inside_it(table):
    sel = select_zpd(table, n=300, seed=42)
    f = sel.facts["funnel"]
    eligible = table[~table["truncated"]]
    assert f["eligible"] == len(eligible)
    assert f["dropped_low"] == int(np.floor(0.25 * len(eligible)))
    assert f["dropped_high"] == int(np.floor(0.25 * len(eligible)))
    assert f["band"] == f["eligible"] - f["dropped_low"] - f["dropped_high"]
    th = sel.facts["thresholds"]
    keys = eligible["loss_mean"].to_numpy()
    assert (keys < th["low_value"]).sum() == f["dropped_low"]
    assert (keys > th["high_value"]).sum() == f["dropped_high"]
    chosen = table.set_index("row").loc[sel.rows]
    assert len(set(sel.rows)) == 300 and list(sel.rows) == sorted(sel.rows)
    assert chosen["loss_mean"].between(th["low_value"], th["high_value"]).all()
    assert not chosen["truncated"].any()
    assert list(chosen["id"]) == sel.ids
    assert sel.facts["funnel"]["selected"] == 300


def test_same_seed_same_rows_other_seed_other_rows_and_row_order_does_not_matter(table):
    a = select_zpd(table, n=200, seed=7)
    b = select_zpd(table.sample(frac=1.0, random_state=3), n=200, seed=7)  # shuffled input
    c = select_zpd(table, n=200, seed=8)
    assert np.array_equal(a.rows, b.rows)
    assert a.facts == b.facts
    assert not np.array_equal(a.rows, c.rows)


def test_zpd_draw_is_uniform_over_the_band():
    t = synthetic_scores(200, seed=3, truncated_share=0.0)
    band = None
    hits = {}
    draws = 150
    for seed in range(draws):
        sel = select_zpd(t, n=50, seed=seed)
        band = band or sel.facts["funnel"]["band"]
        for r in sel.rows:
            hits[r] = hits.get(r, 0) + 1
    assert band == 100 and len(hits) == band  # every band row gets picked, nothing outside the band
    counts = np.array(list(hits.values()))
    expected = draws * 50 / band  # 75, binomial sd ~6.1
    assert abs(counts.mean() - expected) < 1e-9
    assert counts.min() > expected - 35 and counts.max() < expected + 35


def test_random_draws_from_the_whole_eligible_pool(table):
    sel = select_random(table, n=600, seed=42)
    zpd = select_zpd(table, n=600, seed=42)
    th = zpd.facts["thresholds"]
    chosen = table.set_index("row").loc[sel.rows]
    assert not chosen["truncated"].any()
    outside = ~chosen["loss_mean"].between(th["low_value"], th["high_value"])
    assert outside.mean() > 0.3  # about half of a uniform draw lies outside the middle 50%
    assert sel.facts["funnel"]["band"] == sel.facts["funnel"]["eligible"]
    assert set(sel.rows).isdisjoint(set(table.loc[table["truncated"], "row"]))


def test_over_length_rows_are_dropped_by_default_and_counted(table):
    n_trunc = int(table["truncated"].sum())
    dropped = select_random(table, n=len(table) - n_trunc, seed=0)
    assert dropped.facts["funnel"]["over_length_dropped"] == n_trunc
    assert dropped.facts["over_length_rows"] == n_trunc
    kept = select_random(table, n=len(table), seed=0, over_length="keep")
    assert kept.facts["funnel"]["over_length_dropped"] == 0
    assert kept.facts["over_length_rows"] == n_trunc
    assert len(kept.rows) == len(table)


def test_largest_remainder_allocation():
    assert largest_remainder(2, {"a": 1, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 0}
    assert largest_remainder(10, {"math": 7, "code": 3}) == {"math": 7, "code": 3}
    sizes = {"a": 5, "b": 333, "c": 1000, "d": 1}
    for n in (1, 7, 100, 1339):
        q = largest_remainder(n, sizes)
        assert sum(q.values()) == n
        for k, v in sizes.items():
            assert abs(q[k] - n * v / sum(sizes.values())) < 1


@pytest.mark.parametrize("strategy", ["zpd", "random"])
@pytest.mark.parametrize("column", ["category", "source"])
def test_stratified_selection_keeps_pool_proportions(table, strategy, column):
    sel = run_strategy(table, _options(strategy=strategy, n=500, seed=5, stratify=column))
    eligible = table[~table["truncated"]]
    want = largest_remainder(500, eligible[column].value_counts().to_dict())
    got = table.set_index("row").loc[sel.rows][column].value_counts().to_dict()
    assert got == {k: v for k, v in want.items() if v}
    assert sel.facts["composition"][column]["selected"] == dict(sorted(got.items()))


def test_stratified_zpd_band_is_per_stratum(table):
    sel = select_zpd(table, n=400, seed=1, stratify="source")
    per = sel.facts["thresholds"]["per_stratum"]
    chosen = table.set_index("row").loc[sel.rows]
    for name, group in chosen.groupby("source"):
        assert group["loss_mean"].between(per[name]["low_value"], per[name]["high_value"]).all()
        assert len(group) == per[name]["quota"]
    assert sum(p["band"] for p in per.values()) == sel.facts["funnel"]["band"]


def test_length_adjusted_key_removes_the_length_trend():
    t = synthetic_scores(5000, seed=2, truncated_share=0.0)  # loss = 0.25 + 0.04 ln T + noise
    sel = select_zpd(t, n=1000, seed=0, key="loss_length_adjusted")
    ols = sel.facts["key"]["ols"]
    assert ols["slope"] == pytest.approx(0.04, abs=0.01)
    log_t = np.log(t["n_response_tokens"].to_numpy(float))
    resid = t["loss_mean"].to_numpy() - (ols["intercept"] + ols["slope"] * log_t)
    assert abs(np.corrcoef(resid, log_t)[0, 1]) < 1e-8
    assert abs(np.corrcoef(t["loss_mean"], log_t)[0, 1]) > 0.2  # the raw key does depend on length
    chosen = resid[sel.rows]
    th = sel.facts["thresholds"]
    assert ((chosen >= th["low_value"] - 1e-12) & (chosen <= th["high_value"] + 1e-12)).all()


@pytest.mark.parametrize("key", ["loss_first_100", "loss_first_1000"])
def test_first_k_keys_rank_by_their_column(table, key):
    sel = select_zpd(table, n=300, seed=0, key=key)
    th = sel.facts["thresholds"]
    assert table.set_index("row").loc[sel.rows][key].between(th["low_value"], th["high_value"]).all()
    assert sel.facts["key"]["name"] == key


def test_rows_with_a_non_finite_key_are_not_eligible(table):
    t = table.copy()
    t.loc[t.index[:10], "loss_first_100"] = np.nan
    sel = select_random(t, n=100, seed=0, key="loss_first_100", over_length="keep")
    assert sel.facts["funnel"]["non_finite_key"] == 10
    assert set(sel.rows).isdisjoint(set(t["row"].iloc[:10]))


def test_band_smaller_than_n_is_a_clear_error(table):
    with pytest.raises(UserError, match=r"holds \d+ rows .* fewer than --n 1500"):
        select_zpd(table, n=1500, seed=0)
    with pytest.raises(UserError, match="too small for the proportional quotas"):
        select_zpd(table, n=1500, seed=0, stratify="category")
    with pytest.raises(UserError, match="fewer than --n"):
        select_random(table, n=len(table), seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "loss_median"}, "unknown key 'loss_median'"),
        ({"stratify": "domain"}, "unknown --stratify 'domain'"),
        ({"over_length": "truncate"}, "unknown --over-length 'truncate'"),
        ({"n": 0}, "positive number"),
        ({"low": 0.8, "high": 0.2}, "0 <= low < high <= 1"),
    ],
)
def test_bad_parameters_are_clear_errors(table, kwargs, message):
    with pytest.raises(UserError, match=message):
        run_strategy(table, _options(**{"strategy": "zpd", "n": 10, "seed": 0, **kwargs}))


def test_unknown_strategy_and_bad_tables(table):
    with pytest.raises(UserError, match="unknown strategy 'best'; choose one of zpd, random"):
        run_strategy(table, _options(strategy="best", n=10))
    with pytest.raises(UserError, match="no such metadata column"):
        select_zpd(table.drop(columns=["category"]), n=10, seed=0, stratify="category")
    with pytest.raises(UserError, match="more than once"):
        select_random(table.iloc[[0, 0, 1, 2]], n=1, seed=0)


def test_selecting_15k_from_100k_scores_keeps_the_band():  # speed: bench/select_speed.py
    t = synthetic_scores(100_000, seed=0)
    sel = select_zpd(t, n=15_000, seed=42)
    assert len(sel.rows) == len(set(sel.rows)) == 15_000
    f = sel.facts["funnel"]
    assert (f["dropped_low"], f["band"]) == (f["eligible"] // 4, f["eligible"] - 2 * (f["eligible"] // 4))
    th = sel.facts["thresholds"]
    assert t.set_index("row").loc[sel.rows]["loss_mean"].between(th["low_value"], th["high_value"]).all()


def _options(**kw) -> SelectOptions:
    return SelectOptions(scores="unused", name="unused", **kw)
