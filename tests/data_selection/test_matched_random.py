"""The length-matched random baseline: exact bin fill, KS bound, seeds, exclusions, unfillable bins, borrowing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from score_fixtures import synthetic_scores

from data_selection.command_line import UserError
from data_selection.match_target import load_match_target
from data_selection.selectors import select_matched_random, select_zpd
from data_selection.selectors.matched_random import bin_of


@pytest.fixture(scope="module")
def table():
    return synthetic_scores(4000, seed=3, truncated_share=0.0)


@pytest.fixture(scope="module")
def zpd(table):
    return select_zpd(table, n=400, seed=1)


def _target(sel):
    return {"ids": sel.ids, "source": "zpd test subset"}


def test_every_length_bin_is_filled_exactly_and_ks_stays_below_the_bin_bound(table, zpd):
    out = select_matched_random(table, n=len(zpd.ids), seed=7, match=_target(zpd))
    m = out.facts["matching"]
    assert len(out.ids) == len(zpd.ids)
    edges = np.asarray(m["length_edges"])
    length = table.set_index("id")["n_response_tokens"]
    target_bins = np.bincount(bin_of(length.loc[zpd.ids].to_numpy(), edges), minlength=len(edges) - 1)
    drawn_bins = np.bincount(bin_of(length.loc[out.ids].to_numpy(), edges), minlength=len(edges) - 1)
    assert (target_bins == drawn_bins).all()  # recomputed from the rows, not read from the facts
    assert all(c["target"] == c["drawn"] for c in m["cells"])
    assert len(edges) - 1 == 10
    # CDFs agree at every edge, so KS <= the largest bin's share (0.1 for deciles, + ties)
    assert m["ks_lengths"]["statistic"] <= m["ks_bound_exact_fill"] + 1e-12
    assert m["ks_bound_exact_fill"] <= 0.11
    assert not set(out.ids) & set(zpd.ids)  # the matched subset's own rows are excluded
    assert out.facts["funnel"]["matched_subset_excluded"] == len(zpd.ids)


def test_finer_bins_give_a_closer_length_distribution_than_plain_random(table):
    # a target of long rows: plain random is far off, matching is close
    long = table.sort_values("n_response_tokens").iloc[-1500:]
    target = {"ids": long.sample(300, random_state=0)["id"].tolist(), "source": "long rows"}
    matched = select_matched_random(table, n=300, seed=1, match=target, match_bins=20)
    assert matched.facts["matching"]["ks_lengths"]["statistic"] < 0.06
    from scipy.stats import ks_2samp

    plain = table.sample(300, random_state=1)
    lengths = table.set_index("id")["n_response_tokens"]
    assert ks_2samp(lengths.loc[target["ids"]], plain["n_response_tokens"]).statistic > 0.3


def test_same_seed_same_rows_other_seed_other_rows(table, zpd):
    a = select_matched_random(table, n=200, seed=5, match=_target(zpd))
    b = select_matched_random(table.sample(frac=1.0, random_state=0), n=200, seed=5, match=_target(zpd))
    c = select_matched_random(table, n=200, seed=6, match=_target(zpd))
    assert a.ids == b.ids and a.facts["matching"] == b.facts["matching"]
    assert a.ids != c.ids
    # n half the target: quotas are the target's counts halved (largest remainder), summing to n
    assert sum(cell["quota"] for cell in a.facts["matching"]["cells"]) == 200


def test_joint_matching_on_source_fills_every_length_x_source_cell(table, zpd):
    out = select_matched_random(table, n=len(zpd.ids), seed=2, match=_target(zpd), match_on="n_response_tokens,source",
                                match_bins=4)
    by = table.set_index("id")
    edges = np.asarray(out.facts["matching"]["length_edges"])

    def cells(ids):
        sub = by.loc[ids]
        return sorted(zip(bin_of(sub["n_response_tokens"].to_numpy(), edges).tolist(), sub["source"].tolist()))

    assert cells(out.ids) == cells(zpd.ids)


def _three_bin_pool():
    """Target: 20 rows in each of the length ranges 100s, 200s, 300s; other rows: 40, 40 and only 5.

    Tertile edges of the target fall in the gaps (interpolated: 173 and 246), so each bin holds one range."""
    t = synthetic_scores(145, seed=0, truncated_share=0.0)
    lengths = np.concatenate([100 + np.arange(20), 200 + np.arange(20), 300 + np.arange(20),  # target
                              100 + np.arange(40) % 20, 200 + np.arange(40) % 20, 300 + np.arange(5)])
    t["n_response_tokens"] = lengths
    return t, {"ids": t["id"].iloc[:60].tolist(), "source": "three-bin target"}


def test_an_unfillable_bin_is_a_clear_error_and_borrowing_fills_it_from_the_neighbours():
    table, target = _three_bin_pool()
    with pytest.raises(UserError, match=r"cannot fill 1 .*length bin 2 \[246, 319\] tokens needs 20 rows, the pool "
                       r"has 5 candidates outside the matched subset; pass --borrow"):
        select_matched_random(table, n=60, seed=0, match=target, match_bins=3)
    # the target's own rows allowed: every bin fills
    assert len(select_matched_random(table, n=60, seed=0, match=target, match_bins=3, include_matched=True).ids) == 60
    out = select_matched_random(table, n=60, seed=0, match=target, match_bins=3, borrow=True)
    m = out.facts["matching"]
    assert m["borrowed"] == [{"cell": "length bin 2 [246, 319] tokens", "from": "length bin 1 [173, 246) tokens",
                              "rows": 15}]
    lengths = table.set_index("id").loc[out.ids, "n_response_tokens"].to_numpy()
    assert ((lengths >= 300).sum(), ((lengths >= 200) & (lengths < 300)).sum(), (lengths < 200).sum()) == (5, 35, 20)
    assert not set(out.ids) & set(target["ids"])
    # 100 rows: bin 2 needs 34, has 5; the neighbours have 7 spare each: still 15 short
    with pytest.raises(UserError, match=r"length bin 2 .* even by borrowing: 15 row\(s\) short"):
        select_matched_random(table, n=100, seed=0, match=target, match_bins=3, borrow=True)


def test_target_rows_from_another_pool_and_bad_options_are_clear_errors(table, zpd):
    with pytest.raises(UserError, match="not in these scores"):
        select_matched_random(table, n=10, seed=0, match={"ids": ["nope"], "source": "x"})
    with pytest.raises(UserError, match="match-on"):
        select_matched_random(table, n=10, seed=0, match=_target(zpd), match_on="source")


def test_the_subset_is_found_by_name_manifest_subset_file_or_ids_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "s.jsonl").write_text("\n".join(json.dumps({"id": i, "output": "x"}) for i in ("a", "b")) + "\n")
    (data / "s.manifest.json").write_text(json.dumps({"file_name": "data/s.jsonl"}))
    (tmp_path / "ids.txt").write_text("a\nb\n")
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"s": {"file_name": "data/s.jsonl"}}))
    for subset in ("s", str(data / "s.manifest.json"), str(data / "s.jsonl"), str(tmp_path / "ids.txt")):
        assert load_match_target(subset, str(info))["ids"] == ["a", "b"]
    with pytest.raises(UserError, match="neither a file nor an entry"):
        load_match_target("t", str(info))
    (data / "bad.jsonl").write_text('{"output": 1}\n')
    with pytest.raises(UserError, match="row 1 has no 'id'"):
        load_match_target(str(data / "bad.jsonl"))


def test_select_random_with_match_writes_a_matched_subset_and_its_manifest(tmp_path):
    from score_fixtures import make_scores_dir

    from data_selection.select import SelectOptions, run_select

    scores = make_scores_dir(tmp_path, n_rows=200)
    info = str(tmp_path / "dataset_info.json")
    run_select(SelectOptions(scores=str(scores), name="z", strategy="zpd", n=30, seed=1, dataset_info=info))
    out = run_select(SelectOptions(scores=str(scores), name="zm", strategy="random", match="z", n=30, seed=1,
                                   match_bins=5, borrow=True, dataset_info=info))
    m = out["manifest"]
    assert m["strategy"] == "matched-random" and m["num_rows"] == 30
    assert "--strategy matched-random" in m["recipe"] and "--match z" in m["recipe"]
    cells = m["matching"]["cells"]
    assert sum(c["drawn"] for c in cells) == 30 and sum(c["target"] for c in cells) == 30
    assert 0 <= m["matching"]["ks_lengths"]["statistic"] <= 1
    z_ids = set(json.loads(x)["id"] for x in (tmp_path / "data" / "z.jsonl").read_text().splitlines())
    zm_ids = set(json.loads(x)["id"] for x in (tmp_path / "data" / "zm.jsonl").read_text().splitlines())
    assert len(zm_ids) == 30 and not z_ids & zm_ids
    with pytest.raises(UserError, match="--match is for"):
        run_select(SelectOptions(scores=str(scores), name="bad", strategy="zpd", match="z", n=5, dataset_info=info))
