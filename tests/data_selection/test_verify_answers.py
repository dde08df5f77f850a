"""Final-answer extraction, math-verify equivalence, majority voting and the per-call timeout (no files)."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from data_selection.verify.answers import final_answer, last_boxed, split_response
from data_selection.verify.judge import (
    NO_ANSWER,
    NO_MAJORITY,
    TIE,
    TIMEOUT_ANSWER,
    TIMEOUT_COMPARE,
    judge_majority,
    judge_reference,
)
from data_selection.verify.mathcheck import MathChecker
from data_selection.verify.timeout import CallTimeout, call_with_timeout

HUGE = "2^{2^{30}}"  # sympy needs seconds of CPU to compare this with anything


def trace(answer: str, think: str = "We compute it.") -> str:
    return f"<think>\n{think}\n</think>\n\nThe final answer is \\boxed{{{answer}}}."


@pytest.fixture(scope="module")
def checker():
    return MathChecker(timeout=5.0)


def test_parts_of_a_trace():
    p = split_response(trace("42", think="Try \\boxed{7} first."))
    assert p.think.strip() == "Try \\boxed{7} first." and p.has_think and p.has_answer
    cut = split_response("<think>\nWe start, and then")
    assert cut.has_think and cut.answer is None and not cut.has_answer
    no_open = split_response("reasoning without the opening tag</think>Answer: 3")
    assert no_open.think == "reasoning without the opening tag" and no_open.answer == "Answer: 3"
    plain = split_response("The answer is 5.")
    assert plain.think is None and not plain.has_think and plain.answer == "The answer is 5."
    am = split_response("<think>x</think>\n<answer>\nIt is \\boxed{9}\n</answer>")
    assert am.answer.strip() == "It is \\boxed{9}"
    assert not split_response("<think>x</think>\n   \n").has_answer


def test_the_last_complete_box_of_the_answer_part_is_the_final_answer():
    assert last_boxed("first \\boxed{1} then \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{a_{n}} and \\fbox{ {3,4} }") == "{3,4}"
    assert last_boxed("ok \\boxed{5} then cut \\boxed{\\frac{1}{") == "5"  # an unclosed box is skipped
    assert last_boxed("no box here") is None
    # a box inside the reasoning is never the final answer
    fa = final_answer(trace("12", think="Maybe \\boxed{13}? No."))
    assert fa.boxed == "12" and fa.candidate == "\\boxed{12}"
    assert final_answer("<think>\ncut off \\boxed{13}") is None
    assert final_answer("<think>x</think>The final answer is 7.").boxed == ""  # the tail goes to math-verify


@pytest.mark.parametrize(("a", "b", "same"), [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "1/2", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("42", "42.0", True),
    ("\\{1, 2\\}", "\\{2, 1\\}", True),
    ("\\frac{1}{2}", "0.51", False),
    ("42", "41", False),
])
def test_math_verify_decides_equivalence(checker, a, b, same):
    ga, gb = checker.parse(f"\\boxed{{{a}}}"), checker.parse(f"\\boxed{{{b}}}")
    assert ga and gb
    assert checker.equal(ga, gb) is same


@pytest.mark.parametrize("number", ["0", "7", "-7", "007", " 12 ", "123456789012345678901234567890"])
def test_the_integer_shortcut_gives_what_math_verify_gives(checker, number):
    from math_verify import parse

    ours, theirs = checker.parse(f"\\boxed{{{number}}}"), parse(f"\\boxed{{{number}}}")
    assert ours == theirs and [type(x) for x in ours] == [type(x) for x in theirs]


def test_identical_answers_need_no_parsing_and_different_ones_are_parsed_once(monkeypatch):
    calls = []
    counting = MathChecker(timeout=5.0)
    real = counting.parse
    monkeypatch.setattr(counting, "parse", lambda text: calls.append(text) or real(text))
    agree = judge_majority([final_answer(trace("\\frac{1}{3}")) for _ in range(4)], counting)
    assert [v.score for v in agree] == [1.0] * 4 and calls == []
    judge_majority([final_answer(trace(a)) for a in ("\\frac{1}{3}",) * 3 + ("0.5",)], counting)
    assert sorted(calls) == sorted(["\\boxed{0.5}", "\\boxed{\\frac{1}{3}}"])


def test_reference_check_scores_each_response(checker):
    cands = [final_answer(t) for t in (trace("0.5"), trace("\\frac{2}{4}"), trace("3"), "<think>\ncut",
                                       "<think>x</think>So the answer is $\\frac{1}{2}$.")]
    v = judge_reference(cands, "\\frac{1}{2}", checker)
    assert [x.score for x in v] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert [x.method for x in v] == ["reference"] * 5
    assert [x.answer_found for x in v] == [True, True, True, False, True]
    assert all(x.reason == "" for x in v)  # a response without an answer is simply wrong
    assert v[0].answer == "0.5" and v[0].target == "\\frac{1}{2}"
    plain = judge_reference([final_answer(trace("1/2"))], "1/2", checker)  # a reference written without LaTeX
    assert plain[0].score == 1.0


def test_majority_of_three_agreeing_answers_beats_one(checker):
    cands = [final_answer(t) for t in (trace("\\frac{1}{2}"), trace("0.5"), trace("1/2"), trace("3"))]
    v = judge_majority(cands, checker)
    assert [x.score for x in v] == [1.0, 1.0, 1.0, 0.0]
    assert all(x.method == "majority" and x.reason == "" for x in v)
    assert {x.target for x in v} == {"\\frac{1}{2}"}  # the majority answer as the first of its class wrote it


def test_ties_missing_answers_and_thin_majorities_get_no_score(checker):
    tie = judge_majority([final_answer(t) for t in (trace("1"), trace("2"), trace("1"), trace("2"))], checker)
    assert all(math.isnan(x.score) and x.reason == TIE for x in tie)
    mixed = judge_majority([final_answer(t) for t in (trace("7"), trace("7"), "<think>\ncut", trace("8"))], checker)
    assert [x.score for x in mixed][:2] == [1.0, 1.0] and mixed[3].score == 0.0
    assert math.isnan(mixed[2].score) and mixed[2].reason == NO_ANSWER
    lone = judge_majority([final_answer(trace("7")), None, None], checker)
    assert math.isnan(lone[0].score) and lone[0].reason == NO_MAJORITY
    assert judge_majority([final_answer(trace("7")), None], checker, min_votes=1)[0].score == 1.0


def test_a_call_over_its_cpu_budget_raises_a_timeout_that_library_code_cannot_swallow():
    def swallowing():
        try:
            while True:
                pass
        except Exception:  # math-verify catches Exception around its own timeouts
            return "swallowed"

    with pytest.raises(CallTimeout):
        call_with_timeout(swallowing, seconds=0.2)
    assert call_with_timeout(lambda x: x + 1, 1, seconds=0.2) == 2


def test_a_timeout_is_a_reason_not_a_crash():
    quick = MathChecker(timeout=0.3)
    v = judge_reference([final_answer(trace("3"))], HUGE, quick)
    assert math.isnan(v[0].score) and v[0].reason == TIMEOUT_COMPARE
    votes = judge_majority([final_answer(trace(HUGE)), final_answer(trace(HUGE)), final_answer(trace("3"))], quick)
    assert votes[2].reason == TIMEOUT_COMPARE and math.isnan(votes[2].score)
    assert TIMEOUT_ANSWER.startswith("timeout")


def _timed_reference_check(_):
    return judge_reference([final_answer(trace("3"))], HUGE, MathChecker(timeout=0.3))[0].reason


def test_the_timeout_works_in_worker_processes_and_refuses_threads():
    import multiprocessing as mp

    with ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver")) as ex:
        assert list(ex.map(_timed_reference_check, [0])) == [TIMEOUT_COMPARE]
    errors = []

    def in_thread():
        try:
            call_with_timeout(lambda: 1, seconds=1.0)
        except RuntimeError as err:
            errors.append(str(err))

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert errors and "main thread" in errors[0]
