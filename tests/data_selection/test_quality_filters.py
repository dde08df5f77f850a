"""DeepDistill's quality filters: repetition, missing think/answer part, perplexity (data_selection.quality)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from data_selection.ngram_counts import dataset_repeats
from data_selection.quality import max_repeat_count, missing_parts, perplexity_too_high, repetitive
from data_selection.verify.answers import split_response


def brute_force_max_repeat(text: str, n: int) -> int:
    words = text.split()
    grams = Counter(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
    return max(grams.values(), default=0)


@pytest.mark.parametrize("seed", range(6))
def test_max_repeat_count_equals_a_direct_count(seed):
    rng = random.Random(seed)
    vocab = ["a", "b", "so", "x", "=", "1", "the", "answer", "is", "42."]
    words = [rng.choice(vocab) for _ in range(rng.randint(0, 400))]
    if seed % 2:  # splice in a decoding loop
        loop = [rng.choice(vocab) for _ in range(rng.randint(1, 7))] * rng.randint(5, 40)
        at = rng.randint(0, len(words))
        words[at:at] = loop
    text = " ".join(words)
    for n in (1, 3, 20):
        assert max_repeat_count(text, n) == brute_force_max_repeat(text, n)


GOOD = ("<think>\nWe need 17 + 25. The ones give 12, carry 1. The tens give 4.\n\nWait, let me check. 42 - 25 = 17. "
        "So 42 is right.\n</think>\n\nThe final answer is \\boxed{42}.")
LOOP = ("<think>\nWe need 17 + 25. " + "So the sum is 42 and we are done here. " * 22
        + "\n</think>\n\nThe final answer is \\boxed{42}.")
# 20-word sentences said 21 times: repeated more than 20 times; 20 times: not
LONG_SENTENCE = " ".join(f"w{i}" for i in range(20)) + " "
BAD_21 = "<think>\n" + LONG_SENTENCE * 21 + "</think>\n\\boxed{1}"
OK_20 = "<think>\n" + LONG_SENTENCE * 20 + "</think>\n\\boxed{1}"
CUT = "<think>\nWe need 17 + 25. The ones give 12, carry"
ANSWER_ONLY = "The final answer is \\boxed{42}."
EMPTY_ANSWER = "<think>\nWe need 17 + 25 = 42.\n</think>\n\n"


def _flags(texts, require="both", max_repeats=20):
    parts = [split_response(t) for t in texts]
    rep = repetitive(np.array([max_repeat_count(t) for t in texts]), max_repeats)
    miss = missing_parts([p.has_think for p in parts], [p.has_answer for p in parts], require)
    return rep.tolist(), miss.tolist()


def test_repetition_and_missing_part_filters_catch_bad_rows_and_spare_good_ones():
    rep, miss = _flags([GOOD, LOOP, BAD_21, OK_20, CUT, ANSWER_ONLY, EMPTY_ANSWER])
    assert rep == [False, True, True, False, False, False, False]
    assert miss == [False, False, False, False, True, True, True]
    _, answer_only = _flags([GOOD, CUT, ANSWER_ONLY, EMPTY_ANSWER], require="answer")
    assert answer_only == [False, True, False, True]
    _, off = _flags([CUT, ANSWER_ONLY], require="none")
    assert off == [False, False]
    assert repetitive(np.array([500]), 0).tolist() == [False]  # 0 switches the filter off


def test_perplexity_filter_catches_only_known_high_values():
    ppl = np.array([1.5, 20.0, 20.01, np.inf, np.nan])
    assert perplexity_too_high(ppl, 20.0).tolist() == [False, False, True, True, False]
    assert not perplexity_too_high(ppl, 0).any()


def test_the_demo_pools_bad_responses_are_the_ones_caught():
    from data_selection.demo_data import DemoDataConfig, generate

    pool, _ = generate(DemoDataConfig(pool_size=300, eval_size=5, seed=3))
    rep, miss = _flags([r["output"] for r in pool])
    for r, caught_rep, caught_miss in zip(pool, rep, miss):
        assert caught_rep == (r["response_kind"] == "repetitive"), r["output"][:200]
        assert caught_miss == (r["response_kind"] in ("truncated", "no_think")), r["output"][:200]


def brute_force_dataset_repeats(texts, n):
    grams = Counter(g for t in texts for g in (tuple(t.split()[i: i + n]) for i in range(len(t.split()) - n + 1)))
    out = []
    for t in texts:
        w = t.split()
        out.append(max((grams[tuple(w[i: i + n])] for i in range(len(w) - n + 1)), default=0))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [10**9, 50])  # one pass, and many partitioned passes
def test_dataset_repeats_equal_a_direct_count_across_the_pool(seed, budget):
    rng = random.Random(seed)
    vocab = ["a", "b", "so", "x", "=", "1", "the", "answer", "is", "42."]
    template = [rng.choice(vocab) for _ in range(8)]
    texts = []
    for _ in range(40):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 60))]
        if rng.random() < 0.5:  # a shared template phrase, once per response
            at = rng.randint(0, len(words))
            words[at:at] = template
        texts.append(" ".join(words))
    for n in (1, 3, 8):
        assert dataset_repeats(lambda: iter(texts), n, budget=budget).tolist() == brute_force_dataset_repeats(texts, n)


def test_the_papers_dataset_count_catches_a_template_no_single_response_repeats():
    template = " ".join(f"t{i}" for i in range(20))
    texts = [f"<think>\nproblem {k}: {template} so {k}\n</think>\n\\boxed{{{k}}}" for k in range(21)]
    texts.append(OK_20)
    ours = repetitive(np.array([max_repeat_count(t) for t in texts]), 20)
    paper = repetitive(dataset_repeats(lambda: iter(texts), 20), 20)
    assert not ours.any()  # no response repeats anything inside itself more than 20 times
    assert paper.tolist() == [True] * 21 + [False]  # the template occurs 21 times in the pool; OK_20 only 20


def test_on_the_demo_pool_the_dataset_count_catches_every_loop_the_response_count_does():
    from data_selection.demo_data import DemoDataConfig, generate

    pool, _ = generate(DemoDataConfig(pool_size=300, eval_size=5, seed=3))
    texts = [r["output"] for r in pool]
    ours = repetitive(np.array([max_repeat_count(t) for t in texts]), 20)
    paper = repetitive(dataset_repeats(lambda: iter(texts), 20), 20)
    assert ours.any() and (paper >= ours).all()
