"""The procedural demo pool: several responses per problem, paragraph-structured traces, varied kinds."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from data_selection.demo_data import KINDS, DemoDataConfig, generate
from data_selection.verify.answers import final_answer, split_response

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def test_pool_shape_is_deterministic_and_disjoint_from_eval():
    cfg = DemoDataConfig(pool_size=400, eval_size=30, seed=0)
    pool, evals = generate(cfg)
    assert (pool, evals) == generate(cfg) and pool != generate(DemoDataConfig(pool_size=400, eval_size=30, seed=1))[0]
    assert len(pool) == 400 and len(evals) == 30
    assert {e["problem"] for e in evals}.isdisjoint({r["input"] for r in pool})
    for r in pool:
        assert set(r) >= {"category", "source", "input", "output", "answer", "corrupted", "query_id", "response_kind"}
        assert r["corrupted"] == (r["response_kind"] != "correct")
    by_query = defaultdict(list)
    for r in pool:
        by_query[r["query_id"]].append(r)
    assert max(len(v) for v in by_query.values()) == 3
    for rows in by_query.values():  # one problem per query id
        assert len({(r["input"], r["answer"], r["source"]) for r in rows}) == 1
    kinds = Counter(r["response_kind"] for r in pool)
    assert set(kinds) == set(KINDS) and kinds["correct"] > len(pool) / 2
    fail = {"wrong", "truncated"}
    contested = [q for q, rows in by_query.items() if {r["response_kind"] in fail for r in rows} == {True, False}]
    assert 20 <= len(contested) <= 60  # the default pool: some disagreement, mostly clean


def test_a_900_row_pool_has_enough_contested_queries_for_an_80_row_pass_cv_arm():
    pool, _ = generate(DemoDataConfig(pool_size=900, eval_size=0, seed=0))
    by_query = defaultdict(set)
    for r in pool:
        by_query[r["query_id"]].add(r["response_kind"] in ("wrong", "truncated"))
    assert sum(1 for kinds in by_query.values() if kinds == {True, False}) >= 80


def test_traces_are_paragraphs_of_three_sentences_with_functional_steps():
    pool, _ = generate(DemoDataConfig(pool_size=600, eval_size=0, seed=0))
    starts = Counter()
    for r in pool:
        if r["response_kind"] not in ("correct", "wrong"):
            continue
        parts = split_response(r["output"])
        paragraphs = [p for p in parts.think.strip().split("\n\n")]
        for p in paragraphs:
            assert len(SENTENCE_END.split(p.strip())) >= 3, p
            starts[p.split(",")[0].split(" ")[0]] += 1
        fa = final_answer(r["output"])
        assert (fa.boxed == r["answer"]) == (r["response_kind"] == "correct")
    assert starts["Wait"] > 50 and starts["Alternatively"] > 25
