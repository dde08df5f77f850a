"""--strategy pass-cv on hand-built verify tables: every stage equals a direct computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_selection.command_line import UserError
from data_selection.selectors.pass_cv import join_scores, keep_draw, parse_thresholds, select_pass_cv

NAN = float("nan")
# query: (category, scores, multi-turn)
QUERIES = {
    "qa": ("math", [1, 1, 1, 1], False),  # all pass: CV 0, dropped
    "qb": ("math", [1, 0, 0, 0], False),  # CV sqrt(3)
    "qc": ("math", [1, 1, 0, 0], False),  # CV 1
    "qd": ("math", [1, 1, 1, 0], False),  # CV 1/sqrt(3)
    "qe": ("math", [0, 0, 0, 0], False),  # best fails
    "qf": ("code", [1, 0.5, 1, 0.8], False),  # code: > 0.99 passes
    "qg": ("science", [5, 4, 5, 3], False),  # science: > 4.99 passes
    "qh": ("other", [0.8, 0.8], False),  # other: > 0.7 passes; CV 0: kept with probability 0.5
    "qi": ("chat", [0.9, 0.9, 0.9], False),  # unknown category counts as other
    "qj": ("math", [1, 1], True),  # multi-turn, CV 0: probability rule
    "qk": ("math", [1, NAN, 0], False),  # NaN left out: CV 1
    "ql": ("math", [NAN, NAN], False),  # no score at all
    "qm": ("math", [1, 0, 0, 0], False),  # ties qb
    "qn": ("if", [1, 0.9], False),  # instruction following alias: 0.9 fails
}
PASS = {"math": 0.99, "code": 0.99, "science": 4.99, "other": 0.7, "chat": 0.7, "if": 0.99}


def hand_table() -> pd.DataFrame:
    rows, r = [], 0
    for q, (cat, scores, multi) in QUERIES.items():
        for s in scores:
            rows.append({"id": f"{r:08d}-x", "row": r, "query": q, "category": cat, "verify_score": float(s),
                         "n_prompt_turns": 3 if multi else 1, "has_think": True, "has_answer": True,
                         "max_repeat": 1, "n_response_chars": 100 + r})
            r += 1
    t = pd.DataFrame(rows)
    # bad text among passing responses: qb's only passing row is fine; qc's first is a loop, qd's first has no think
    t.loc[t.index[t["query"] == "qc"][0], "max_repeat"] = 25
    t.loc[t.index[t["query"] == "qd"][0], "has_think"] = False
    return t


def direct(t: pd.DataFrame, seed: int, cv_t: float = 0.0, p: float = 0.5):
    """Stage I by hand: {query: (pass_rate, cv)}, the kept queries, and the queries of each Stage I outcome."""
    stats, kept = {}, set()
    outcome: dict[str, set] = {"best_fails": set(), "kept_cv": set(), "kept_by_chance": set(), "cv_dropped": set()}
    for q, (cat, scores, multi) in QUERIES.items():
        s = np.array([x for x in scores if x == x], float)
        if not len(s):
            continue
        passed = s > PASS[cat]
        cv = s.std() / s.mean() if s.mean() > 0 else np.nan
        stats[q] = (passed.mean(), cv)
        if not passed.any():
            outcome["best_fails"].add(q)
        elif cv > cv_t + 1e-12:
            outcome["kept_cv"].add(q)
        elif (cat in ("other", "chat") or multi) and keep_draw(seed, q) < p:
            outcome["kept_by_chance"].add(q)
        else:
            outcome["cv_dropped"].add(q)
    kept = outcome["kept_cv"] | outcome["kept_by_chance"]
    return stats, kept, outcome


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7, 42])
def test_each_stage_equals_a_direct_computation(seed):
    t = hand_table()
    stats, kept, outcome = direct(t, seed)
    sel = select_pass_cv(t, n=len(kept), seed=seed, fill_low_cv=True)  # Stage I's chance-kept queries fill
    f, qf = sel.facts["funnel"], sel.facts["query_funnel"]
    assert qf["queries"] == len(QUERIES) and qf["no_score"] == 1  # ql
    for stage, queries in outcome.items():
        assert qf[stage] == len(queries), stage
    assert outcome["best_fails"] == {"qe"} and outcome["kept_cv"] == {"qb", "qc", "qd", "qf", "qg", "qk", "qm", "qn"}
    assert qf["stage1"] == len(kept)
    # rows: the passing responses of kept queries, minus qc's loop and qd's missing think
    passing = t["verify_score"] > t["category"].map(PASS)
    stage1 = t[passing & t["query"].isin(kept)]
    assert f["stage1"] == len(stage1) and f["verify_scored"] == int(t["verify_score"].notna().sum())
    assert f["no_verify_score"] == int(t["verify_score"].isna().sum()) == 3
    assert f["repetition_dropped"] == 1 and f["missing_parts_dropped"] == 1
    assert f["eligible"] == len(stage1) - 2 and f["selected"] == len(kept) == len(sel.rows)
    chosen = t.set_index("row").loc[sel.rows]
    assert sorted(chosen["query"]) == sorted(kept)  # one response per kept query
    assert (chosen["verify_score"] > chosen["category"].map(PASS)).all()
    assert chosen["max_repeat"].max() <= 20 and chosen["has_think"].all()
    assert list(chosen["id"]) == sel.ids
    assert qf["shortfall"] == 0 and "note" not in sel.facts


def test_pass_rate_and_cv_definitions():
    stats, _, _ = direct(hand_table(), 0)
    cvs = {q: cv for q, (_, cv) in stats.items()}
    assert cvs["qb"] == pytest.approx(np.sqrt(3)) and cvs["qc"] == pytest.approx(1.0)
    assert cvs["qk"] == pytest.approx(1.0) and cvs["qd"] == pytest.approx(1 / np.sqrt(3))
    assert stats["qf"][0] == 0.5 and stats["qg"][0] == 0.5 and stats["qn"][0] == 0.5 and stats["qk"][0] == 0.5
    sel = select_pass_cv(hand_table(), n=100, seed=0)
    chosen_cvs = sorted(cvs[q] for q in sorted(set(hand_table().set_index("row").loc[sel.rows, "query"])))
    assert sel.facts["stats"]["key"]["selected"]["max"] == pytest.approx(max(chosen_cvs))
    assert sel.facts["stats"]["key"]["selected"]["min"] == pytest.approx(min(chosen_cvs))


def test_stage_two_takes_the_highest_cv_and_draws_ties_at_the_cut():
    t = hand_table()
    top2 = select_pass_cv(t, n=2, seed=0)
    assert set(t.set_index("row").loc[top2.rows, "query"]) == {"qb", "qm"}  # CV sqrt(3): no draw needed
    assert top2.facts["thresholds"]["cut_cv"] == pytest.approx(np.sqrt(3))
    picks = set()
    for seed in range(30):
        sel = select_pass_cv(t, n=3, seed=seed)
        qs = set(t.set_index("row").loc[sel.rows, "query"])
        assert {"qb", "qm"} <= qs and len(qs) == 3
        picks |= qs - {"qb", "qm"}
        th = sel.facts["thresholds"]
        assert th["queries_at_cut"] == 2 and th["taken_at_cut"] == 1  # qc and qk tie at CV 1
        # the seeded draw, computed directly: one generator, the tie first, then one response per query
        rng = np.random.default_rng(seed)
        at = ["qc", "qk"]
        tied = [at[i] for i in sorted(rng.choice(2, size=1, replace=False))]
        alive = t[(t["verify_score"] > t["category"].map(PASS)) & (t["max_repeat"] <= 20) & t["has_think"]]
        want = []
        for q in sorted(["qb", "qm", *tied]):
            options = sorted(alive.loc[alive["query"] == q, "row"])
            want.append(options[int(rng.integers(len(options)))])
        assert sel.rows.tolist() == sorted(want)
        assert np.array_equal(sel.rows, select_pass_cv(t, n=3, seed=seed).rows)  # deterministic
    assert picks == {"qc", "qk"}  # the tie really is drawn


def test_fewer_eligible_queries_than_n_is_said_not_padded():
    t = hand_table()
    sel = select_pass_cv(t, n=1000, seed=0)
    qf = sel.facts["query_funnel"]
    assert len(sel.rows) == qf["eligible"] < 1000 and qf["shortfall"] == 1000 - qf["eligible"]
    assert "not padded" in sel.facts["note"]


def test_probability_rule_is_seeded_per_query():
    rows = [{"id": f"{i:08d}-x", "row": i, "query": f"o{i // 2}", "category": "other", "verify_score": 0.9,
             "n_prompt_turns": 1, "has_think": True, "has_answer": True, "max_repeat": 0} for i in range(800)]
    t = pd.DataFrame(rows)
    for seed in (0, 5):
        sel = select_pass_cv(t, n=1000, seed=seed, other_keep_prob=0.5, fill_low_cv=True)
        want = {f"o{k}" for k in range(400) if keep_draw(seed, f"o{k}") < 0.5}
        assert set(t.set_index("row").loc[sel.rows, "query"]) == want
        assert 150 < len(want) < 250
        stage1 = select_pass_cv(t, n=1000, seed=seed, other_keep_prob=0.5, stage=1)  # all their responses
        assert set(t.set_index("row").loc[stage1.rows, "query"]) == want and len(stage1.rows) == 2 * len(want)
        assert len(select_pass_cv(t, n=1000, seed=seed).rows) == 0  # Stage II keeps only CV > CV_t
    assert len(select_pass_cv(t, n=1000, seed=0, other_keep_prob=0.0, fill_low_cv=True).rows) == 0
    assert len(select_pass_cv(t, n=1000, seed=0, other_keep_prob=1.0, fill_low_cv=True).rows) == 400


def test_thresholds_are_parameters():
    t = hand_table()
    strict = select_pass_cv(t, n=100, seed=0, cv_thresholds="math=1.0,other=0")
    kept = set(t.set_index("row").loc[strict.rows, "query"])
    assert {"qb", "qm"} <= kept and not kept & {"qc", "qd", "qk"}  # math needs CV > 1 now
    assert "qf" in kept  # code keeps the default CV threshold 0 through "other"
    lenient = select_pass_cv(t, n=100, seed=0, pass_thresholds="math=0.99,if=0.8,other=0.7")
    assert lenient.facts["thresholds"]["pass"]["if"] == 0.8
    assert parse_thresholds("0.3", "x") == {"*": 0.3}
    assert parse_thresholds("IF=0.9, Science=4", "x") == {"instruction_following": 0.9, "science": 4.0}
    for bad in ("math=abc", "", "math=inf"):
        with pytest.raises(UserError, match="--x"):
            parse_thresholds(bad, "x")


def test_perplexity_and_over_length_from_the_scores_join_by_row_and_id():
    t = hand_table()
    scores = pd.DataFrame({"row": t["row"], "id": t["id"], "loss_mean": 1.0, "n_response_tokens": 50,
                           "truncated": False})
    qb_pass = int(t.index[(t["query"] == "qb") & (t["verify_score"] == 1)][0])
    scores.loc[qb_pass, "loss_mean"] = np.log(25.0)  # perplexity 25 > 20
    qm_pass = int(t.index[(t["query"] == "qm") & (t["verify_score"] == 1)][0])
    scores.loc[qm_pass, "truncated"] = True
    scores = scores.drop(index=int(t.index[t["query"] == "qg"][0]))  # the scorer rejected one row
    joined = join_scores(t, scores)
    sel = select_pass_cv(joined, n=100, seed=0)
    f = sel.facts["funnel"]
    assert f["perplexity_dropped"] == 1 and f["over_length_dropped"] == 1 and f["not_scored_by_scorer"] == 1
    assert "given the query" in sel.facts["perplexity"]["source"]
    kept = set(t.set_index("row").loc[sel.rows, "query"])
    assert not kept & {"qb", "qm"}  # their only passing response is gone
    keep = select_pass_cv(joined, n=100, seed=0, over_length="keep", max_ppl=0)
    assert {"qb", "qm"} <= set(t.set_index("row").loc[keep.rows, "query"])
    bad = scores.copy()
    bad.loc[bad.index[0], "id"] = "00000000-other"
    with pytest.raises(UserError, match="different ids"):
        join_scores(t, bad)


def test_the_datasets_own_ppl_column_is_used_directly():
    t = hand_table()
    t["ppl"] = 5.0
    t.loc[(t["query"] == "qb") & (t["verify_score"] == 1), "ppl"] = 30.0
    sel = select_pass_cv(t, n=100, seed=0)
    assert sel.facts["funnel"]["perplexity_dropped"] == 1 and "dataset" in sel.facts["perplexity"]["source"]


def test_bad_input_is_a_clear_error():
    t = hand_table()
    with pytest.raises(UserError, match="lacks column"):
        select_pass_cv(t.drop(columns=["query"]), n=3, seed=0)
    with pytest.raises(UserError, match="more than once"):
        select_pass_cv(pd.concat([t, t.iloc[:1]]), n=3, seed=0)
    with pytest.raises(UserError, match="other_keep_prob"):
        select_pass_cv(t, n=3, seed=0, other_keep_prob=1.5)
    with pytest.raises(UserError, match="--n"):
        select_pass_cv(t, n=0, seed=0)


def small_pool() -> pd.DataFrame:
    """14 rows: two contested math queries, two "other" queries every response of which passes
    (CV 0, kept by Stage I's coin or not), one all-correct math query (CV 0)."""
    spec = {"h1": ("math", [1, 0, 0, 0]), "h2": ("math", [1, 1, 0, 0]), "o1": ("other", [0.9, 0.9]),
            "o2": ("other", [0.8, 0.8]), "e1": ("math", [1, 1])}
    rows = []
    for q, (cat, scores) in spec.items():
        for s in scores:
            rows.append({"id": f"{len(rows):08d}-x", "row": len(rows), "query": q, "category": cat,
                         "verify_score": float(s), "n_prompt_turns": 1, "has_think": True, "has_answer": True,
                         "max_repeat": 1})
    return pd.DataFrame(rows)


def test_stage_two_does_not_fill_with_low_cv_queries_by_default():
    t = small_pool()
    assert len(t) == 14
    by_q = t.set_index("row")["query"]
    default = select_pass_cv(t, n=4, seed=0, other_keep_prob=1.0)  # the coin keeps both "other" queries
    assert set(by_q[default.rows]) == {"h1", "h2"}  # CV > CV_t only
    qf = default.facts["query_funnel"]
    assert qf["kept_by_chance"] == 2 and qf["low_cv_left_out"] == 2 and qf["shortfall"] == 2
    assert default.facts["funnel"]["low_cv_left_out"] == 4 and "--fill_low_cv" in default.facts["note"]
    assert default.facts["method"]["paper_default"] is True
    filled = select_pass_cv(t, n=4, seed=0, other_keep_prob=1.0, fill_low_cv=True)  # the old behaviour
    assert set(by_q[filled.rows]) == {"h1", "h2", "o1", "o2"} and filled.facts["query_funnel"]["shortfall"] == 0
    assert filled.facts["method"]["paper_default"] is False


def test_responses_per_query():
    t = small_pool()
    by_q = t.set_index("row")["query"]
    scores = t.set_index("row")["verify_score"]
    # Stage I's output (auto = all): every passing response of every kept query
    s1 = select_pass_cv(t, n=100, seed=0, other_keep_prob=1.0, stage=1)
    assert sorted(s1.rows) == sorted(t.loc[(t["verify_score"] > 0.7) & (t["query"] != "e1"), "row"])
    assert s1.facts["method"]["responses_per_query"] == "all"
    # Stage II with all passing responses: h2 (CV 1) brings 2 rows, h1 (CV sqrt 3) 1
    s2 = select_pass_cv(t, n=100, seed=0, responses_per_query="all")
    assert by_q[s2.rows].value_counts().to_dict() == {"h2": 2, "h1": 1} and (scores[s2.rows] == 1).all()
    # --n counts rows: the highest CV first, the last query brings only what still fits
    s3 = select_pass_cv(t, n=2, seed=0, responses_per_query="all")
    assert sorted(by_q[s3.rows]) == ["h1", "h2"] and s3.facts["query_funnel"]["shortfall"] == 0
    s4 = select_pass_cv(t, n=100, seed=0, other_keep_prob=1.0, stage=1, responses_per_query="1")
    assert by_q[s4.rows].value_counts().max() == 1 and len(s4.rows) == 4
    for bad in ("0", "some"):
        with pytest.raises(UserError, match="--responses_per_query"):
            select_pass_cv(t, n=3, seed=0, responses_per_query=bad)
    with pytest.raises(UserError, match="--stage"):
        select_pass_cv(t, n=3, seed=0, stage=3)


def test_repetition_is_counted_across_the_dataset_by_default():
    t = hand_table()
    t["dataset_repeat"] = t["max_repeat"]
    qb_pass = int(t.index[(t["query"] == "qb") & (t["verify_score"] == 1)][0])
    t.loc[qb_pass, "dataset_repeat"] = 30  # a template shared by 30 responses of the pool, once in each
    paper = select_pass_cv(t, n=100, seed=0)
    assert paper.facts["funnel"]["repetition_dropped"] == 2 and qb_pass not in paper.rows.tolist()
    assert paper.facts["method"]["repetition"] == {"scope": "dataset", "max_repeats": 20}
    ours = select_pass_cv(t, n=100, seed=0, repeat_scope="response")
    assert ours.facts["funnel"]["repetition_dropped"] == 1 and qb_pass in ours.rows.tolist()
    old = select_pass_cv(t.drop(columns=["dataset_repeat"]), n=100, seed=0)  # a verify output from before
    assert old.facts["method"]["repetition"]["scope_used"] == "response" and "re-run" in old.facts["warnings"][0]
