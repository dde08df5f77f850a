"""TEMP's official rules (hjenryin/TEMP-ICML) as defaults, our variants as options (docs/methods.md §3).

Each case is built so that the rules differ and the expected numbers are worked out by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from score_fixtures import synthetic_scores
from temp_fixtures import synthetic_temp

from data_selection.command_line import UserError
from data_selection.scoring.checkpoint_layout import TempScores, feature_column
from data_selection.selectors.temp import (
    capped_softmax_allocation,
    difficulty_filter,
    pick_source,
    select_temp,
    small_sources,
)
from data_selection.selectors.temp_allocation import official_allocation, water_filling_allocation

# -- allocation -------------------------------------------------------------------------------------------------


def test_official_allocation_of_one_level_by_hand():
    # shares A .2, B .6, C .2 of 101 rows: floors 20 (20.2), 60 (60.6), 20 (20.2).
    # official, smallest first: A (30 rows >= 20) gets int(.2/1 * 101) = 20, 81 left; B (35 < 60) is capped at 35,
    # 46 left; C gets int(.2/.2 * 46) = 46. B's excess went to C only, never back to A (visited before B).
    # water-filling: B capped (60.6 >= 35), A's share of the 66 left is 33 >= 30: A capped too, C gets 36.
    share = {"A": 0.2, "B": 0.6, "C": 0.2}
    sizes = {"A": 30, "B": 35, "C": 200}
    floors, official, capped = official_allocation(share, sizes, 101)
    assert floors == {"A": 20, "B": 60, "C": 20}
    assert official == {"A": 20, "B": 35, "C": 46} and capped == ["B"]
    _, wf, wf_capped = water_filling_allocation(share, sizes, 101)
    assert wf == {"A": 30, "B": 35, "C": 36} and wf_capped == ["A", "B"]
    # leftovers of the floors go to the largest groups: shares .5/.5 of 3 rows, sizes 1 and 9 -> floors 1, 1;
    # "a" (1 row) gets int(.5 * 3) = 1, "b" int(1.0 * 2) = 2; nothing left. Of 5 rows: a 2 > 1 -> capped 1,
    # b int(1.0 * 4) = 4: 5 in all.
    assert official_allocation({"a": 0.5, "b": 0.5}, {"a": 1, "b": 9}, 3)[1] == {"a": 1, "b": 2}
    assert official_allocation({"a": 0.5, "b": 0.5}, {"a": 1, "b": 9}, 5)[1] == {"a": 1, "b": 4}
    # three equal shares of 10: floors 3, 3, 3; smallest first each gets int(1/3 * 10) = 3, int(.5 * 7) = 3,
    # int(1 * 4) = 4: the rounding leftover lands on the group visited last (the largest)
    assert official_allocation({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3}, {"x": 5, "y": 6, "z": 7}, 10)[1] == \
        {"x": 3, "y": 3, "z": 4}


@pytest.mark.parametrize("rule", ["official", "water-filling"])
@pytest.mark.parametrize("case", range(30))
def test_both_allocations_sum_to_the_budget_and_never_exceed_a_group(case, rule):
    rng = np.random.default_rng(case)
    names = [f"g{i}" for i in range(int(rng.integers(1, 7)))]
    sizes = {g: int(rng.integers(0, 60)) for g in names}
    sizes[names[0]] += 1
    scores = {g: float(rng.uniform(0, 3)) for g in names}
    budget = int(rng.integers(0, sum(sizes.values()) + 1))
    share, before, after = capped_softmax_allocation(scores, sizes, budget, rule)
    assert sum(after.values()) == budget and all(0 <= after[g] <= sizes[g] for g in names)
    assert sum(share.values()) == pytest.approx(1.0)
    if rule == "official":
        assert before == {g: int(share[g] * budget) for g in names}  # the floor shares
    with pytest.raises(UserError, match="--temp-allocation"):
        capped_softmax_allocation(scores, sizes, budget, "greedy")


def _two_level_pool() -> tuple[pd.DataFrame, TempScores]:
    """Domain D1 = sources A (30 rows), B (35), C (200); domain D2 = source E (10 rows).

    Directional L^(100) at the last checkpoint is 2 everywhere; at the first it is 2 for A and C (score 0),
    2 − (ln 3)²/2 for B (score ln 3: source shares in D1 are .2/.6/.2), and for E so that D2's score is D1's
    domain score + ln 4 (domain shares .2/.8).
    """
    sizes = {"A": 30, "B": 35, "C": 200, "E": 10}
    n = sum(sizes.values())
    scores = synthetic_scores(n, seed=4, truncated_share=0.0, sources=1)
    source = np.repeat(list(sizes), list(sizes.values()))
    scores["source"] = source
    scores["category"] = np.where(source == "E", "D2", "D1")
    first = np.full(n, 2.0)
    first[source == "B"] = 2.0 - math.log(3) ** 2 / 2
    d1 = source != "E"
    s_d1 = math.sqrt((2.0 - first[d1].mean()) * 2.0)
    first[source == "E"] = 2.0 - (s_d1 + math.log(4)) ** 2 / 2
    rng = np.random.default_rng(0)
    base = scores["loss_first_100"].to_numpy()
    gauss = {"id": scores["id"], "row": scores["row"]}
    direc = {"id": scores["id"], "row": scores["row"]}
    for j in (1, 2, 3):
        gauss[feature_column("gaussian", j, 100)] = base * (1.0 + 0.75 * j) * rng.uniform(0.9, 1.1, n)
        direc[feature_column("directional", j, 100)] = first + (2.0 - first) * (j - 1) / 2
        direc[feature_column("directional", j, 1000)] = rng.normal(1.0 + 0.1 * j, 0.3, n)
    meta = {k: {"kind": k, "num_checkpoints": 3, "perturb": {"options": {"scale": "absolute"}}, "rows": {}}
            for k in ("gaussian", "directional")}
    temp = TempScores(folder="mem", gaussian=pd.DataFrame(gauss), directional=pd.DataFrame(direc), meta=meta,
                      rejected={"gaussian": set(), "directional": set()})
    return scores, temp


def test_official_two_level_allocation_with_a_capped_domain_and_source_by_hand():
    # domains: shares .2 (D1, 265 rows) / .8 (D2, 10 rows) of 111: floors 22 (22.2), 88 (88.8). D2 is visited
    # first (smaller) and capped at 10; D1 gets int(1.0 * 101) = 101. Sources of D1 then split 101 as in
    # test_official_allocation_of_one_level_by_hand: A 20, B 35 (capped), C 46; water-filling: A 30, B 35, C 36.
    scores, temp = _two_level_pool()
    everything = 10**6  # every source kept whole by the difficulty filter: all rows survive
    expect = {"official": {"A": 20, "B": 35, "C": 46, "E": 10}, "water-filling": {"A": 30, "B": 35, "C": 36, "E": 10}}
    picks = {}
    for rule, want in expect.items():
        sel = select_temp(scores, temp_scores=temp, n=111, seed=0, temp_allocation=rule,
                          temp_init_label_num=everything)
        alloc = sel.facts["temp"]["allocation"]
        assert alloc["domains"]["D1"]["softmax"] == pytest.approx(0.2)
        assert alloc["domains"]["D2"]["before_cap"] == (88 if rule == "official" else 89)
        assert {d: g["after_cap"] for d, g in alloc["domains"].items()} == {"D1": 101, "D2": 10}
        assert {k.split("/")[1]: g["after_cap"] for k, g in alloc["sources"].items()} == want
        chosen = scores.set_index("row").loc[sel.rows, "source"].value_counts().to_dict()
        assert chosen == want  # what was picked per source is what was allocated
        rules = sel.facts["temp"]["rules"]
        assert rules["allocation"]["rule"] == rule and rules["allocation"]["official"] == (rule == "official")
        assert rules["official"] is False and "small_sources" in rules["deviations"]  # init_label_num changed
        picks[rule] = set(sel.rows.tolist())
    assert len(picks["official"] ^ picks["water-filling"]) > 0


# -- ranking inside a cluster -----------------------------------------------------------------------------------


def test_signed_ranking_follows_the_clusters_mean_change_abs_takes_the_magnitude():
    # one cluster (quota 3 -> k = 1) of 10 rows; L_last - L_first per row:
    change = np.array([-0.9, -0.8, -0.7, -0.2, -0.1, 1.0, 0.85, 0.0, 0.0, 0.0])  # mean -0.085: falling
    first = np.full(10, 2.0)
    feats = np.column_stack([first, first + change / 2, first + change])
    rows = np.arange(50, 60)
    signed, info = pick_source(feats, rows, 3, seed=0, rng=np.random.default_rng(0))
    assert info["k_used"] == 1 and signed.tolist() == [0, 1, 2]  # largest first - last: the steepest falls
    absolute, _ = pick_source(feats, rows, 3, seed=0, rng=np.random.default_rng(0), ranking="abs")
    assert absolute.tolist() == [0, 5, 6]  # |change| 1.0, 0.9, 0.85
    rising = np.column_stack([first, first - change / 2, first - change])  # mean +0.085: rising
    assert pick_source(rising, rows, 3, seed=0, rng=np.random.default_rng(0))[0].tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="--temp-ranking"):
        pick_source(feats, rows, 3, seed=0, rng=np.random.default_rng(0), ranking="square")


def test_signed_and_abs_rankings_pick_differently_on_a_pool_with_mixed_trends():
    scores = synthetic_scores(1500, seed=2, truncated_share=0.05, sources=5)
    temp = synthetic_temp(scores, seed=3)  # 20% of rows have falling directional losses
    signed = select_temp(scores, temp_scores=temp, n=300, seed=42)
    absolute = select_temp(scores, temp_scores=temp, n=300, seed=42, temp_ranking="abs")
    assert len(signed.rows) == len(absolute.rows) == 300
    differ = len(set(signed.rows.tolist()) - set(absolute.rows.tolist()))
    assert 0 < differ < 300
    assert signed.facts["temp"]["rules"]["ranking"]["official"] and not absolute.facts["temp"]["rules"]["official"]


# -- small sources ----------------------------------------------------------------------------------------------


def test_small_sources_are_kept_whole_by_the_official_rule():
    # init_label_num 100 over 4 sources, smallest first: a (5 <= 100 // 4 = 25) kept, budget 95; b (30 <= 95 // 3
    # = 31) kept, budget 65; c (300 > 65 // 2 = 32) and d (400 > 32) are k-means split.
    sources = np.repeat(["d", "a", "c", "b"], [400, 5, 300, 30])
    assert small_sources(sources, 100) == {"a": 25, "b": 31}
    assert small_sources(sources, 0) == {}
    # a bimodal small source: the official rule keeps it whole, the k-means rule keeps its high cluster
    rng = np.random.default_rng(0)
    values = {s: np.r_[rng.normal(1.0, 0.05, k - k // 2), rng.normal(3.0, 0.05, k // 2)]
              for s, k in (("d", 400), ("a", 5), ("c", 300), ("b", 30))}
    x = np.concatenate([values[s] for s in ("d", "a", "c", "b")])
    ckpt = np.column_stack([x * 0.6, x])  # checkpoint 2: ratio 2 against a base of x / 2
    official = difficulty_filter(x / 2, ckpt, sources, init_label_num=100)
    kmeans = difficulty_filter(x / 2, ckpt, sources, init_label_num=0)
    for s, k in (("a", 5), ("b", 30)):
        assert official.keep[sources == s].all() and kmeans.keep[sources == s].sum() == k // 2
        assert "small source" in official.facts["per_source"][s]["note"]
    for s, k in (("c", 300), ("d", 400)):  # split alike: the high mode only
        assert official.keep[sources == s].sum() == kmeans.keep[sources == s].sum() == k // 2
    assert official.facts["small_sources"]["kept_whole"] == ["a", "b"] and not official.facts["small_sources"][
        "official"]
    assert difficulty_filter(x / 2, ckpt, sources).facts["small_sources"]["official"]  # 1000: the default
    with pytest.raises(UserError, match="--temp-init-label-num"):
        difficulty_filter(x / 2, ckpt, sources, init_label_num=-1)


def test_the_manifest_says_which_rules_ran_and_whether_the_method_is_official():
    scores, temp = _two_level_pool()
    sel = select_temp(scores, temp_scores=temp, n=111, seed=0, temp_init_label_num=10**6)
    rules = sel.facts["temp"]["rules"]
    assert rules["scale"] == {"rule": "absolute", "official": True}
    assert rules["deviations"] == ["small_sources"]
    temp.meta["gaussian"]["perturb"]["options"]["scale"] = "relative"
    sel = select_temp(scores, temp_scores=temp, n=100, seed=0, temp_init_label_num=1000, temp_ranking="abs",
                      temp_allocation="water-filling")
    rules = sel.facts["temp"]["rules"]
    assert rules["deviations"] == ["scale", "allocation", "ranking"] and rules["official"] is False
    assert sel.facts["parameters"]["temp_allocation"] == "water-filling"
    assert sel.facts["temp"]["difficulty"]["small_sources"]["init_label_num"] == 1000


# -- fewer survivors than n -------------------------------------------------------------------------------------


def test_fewer_survivors_than_n_takes_them_all_by_default_and_fill_tops_up_at_random():
    scores = synthetic_scores(3000, seed=4, truncated_share=0.0, sources=3)  # 1000 // 3 < a source: all split
    temp = synthetic_temp(scores, seed=5)
    probe = select_temp(scores, temp_scores=temp, n=10, seed=1)
    survivors = probe.facts["temp"]["difficulty"]["survivors"]
    n = survivors + 40
    assert n <= 3000
    take = select_temp(scores, temp_scores=temp, n=n, seed=1)  # the official Selector: every group capped
    short = take.facts["temp"]["shortfall"]
    assert len(take.rows) == survivors and short == {"n": n, "survivors": survivors, "short": 40, "rule": "take",
                                                       "filled_at_random": 0}
    assert take.facts["temp"]["rules"]["shortfall"]["official"]
    assert "shortfall" not in take.facts["temp"]["rules"]["deviations"]
    assert any("it is not padded" in w for w in take.facts["warnings"])
    # every survivor is taken: the allocation of all survivors gives each source all of its survivors
    band = set(take.facts["funnel"].items())
    assert ("band", survivors) in band and ("selected", survivors) in band
    fill = select_temp(scores, temp_scores=temp, n=n, seed=1, temp_shortfall="fill")
    assert len(fill.rows) == n and len(set(fill.rows.tolist())) == n
    assert set(take.rows.tolist()) <= set(fill.rows.tolist())  # the survivors, then 40 others
    assert fill.facts["temp"]["shortfall"]["filled_at_random"] == 40
    assert fill.facts["temp"]["rules"]["deviations"] == [*take.facts["temp"]["rules"]["deviations"], "shortfall"]
    again = select_temp(scores, temp_scores=temp, n=n, seed=1, temp_shortfall="fill")
    other = select_temp(scores, temp_scores=temp, n=n, seed=2, temp_shortfall="fill")
    assert np.array_equal(fill.rows, again.rows) and not np.array_equal(fill.rows, other.rows)
    with pytest.raises(UserError, match=f"keeps {survivors} rows .* fewer than --n {n}"):
        select_temp(scores, temp_scores=temp, n=n, seed=1, temp_shortfall="error")
    enough = select_temp(scores, temp_scores=temp, n=survivors, seed=1)  # no shortfall: nothing changes
    assert enough.facts["temp"]["shortfall"]["short"] == 0 and len(enough.rows) == survivors
