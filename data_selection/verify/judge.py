"""One query's verify scores: against its reference answer, or against the majority of its responses.

* **Reference** (DeepDistill's math check, arXiv 2504.17565): score 1.0 when math-verify finds the response's
  final answer equivalent to the reference, else 0.0. A response without a final answer (cut off, or no
  answer) scores 0.0: it did not answer.
* **Majority** (our extension, docs/methods.md §4): the query's final answers are grouped into classes of
  math-verify-equivalent answers (identical strings first, then one comparison against each class's first
  answer, classes visited by size). The largest class is the majority when it holds at least ``min_votes``
  answers and strictly more than any other class; its responses score 1.0, the other answers 0.0. A tie, a
  majority of fewer than ``min_votes``, and a response with no extractable answer get no score (NaN) and a
  reason: nothing says whether they are right.

Answers that are the same string (up to spaces and ``$``) are equal without parsing: math-verify only runs when
two different strings meet, so a query whose responses agree costs no parse at all. Every math-verify call has a
CPU-time limit; a response whose parse or comparison runs out of time gets NaN
and a ``timeout`` reason. Scores that are NaN are left out of pass rates and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_selection.verify.answers import FinalAnswer
from data_selection.verify.mathcheck import MathChecker, shown
from data_selection.verify.timeout import CallTimeout

NAN = float("nan")
NO_ANSWER = "no final answer"
TIE = "majority tie"
NO_MAJORITY = "no majority answer (too few responses agree)"
TIMEOUT_ANSWER = "timeout: parsing the answer"
TIMEOUT_REFERENCE = "timeout: parsing the reference"
TIMEOUT_COMPARE = "timeout: comparing answers"
BAD_REFERENCE = "reference could not be parsed"


@dataclass
class Verdict:
    score: float = NAN
    method: str = ""  # reference | majority | dataset | "" (not verified)
    reason: str = ""  # why there is no score ("" when there is one)
    answer: str = ""  # the response's final answer as extracted
    answer_found: bool = False
    target: str = ""  # what it was compared with (reference or majority answer)


_TIMED_OUT = object()


def _key(text: str) -> str:
    """Answers that are the same string up to whitespace and ``$`` are the same answer (no parsing needed)."""
    return "".join(text.replace("$", "").split())


class _Answers:
    """The query's candidates, parsed lazily: a boxed answer is an answer without parsing it; math-verify runs only
    when two different strings must be compared (most queries' responses agree) or when there is no box."""

    def __init__(self, candidates: list[FinalAnswer | None], checker: MathChecker):
        self.candidates, self.checker = candidates, checker
        self._parsed: dict[str, object] = {}

    def parsed(self, c: FinalAnswer) -> object:
        """math-verify's extraction ([] when nothing was found) or _TIMED_OUT."""
        if c.candidate not in self._parsed:
            try:
                self._parsed[c.candidate] = self.checker.parse(c.candidate)
            except CallTimeout:
                self._parsed[c.candidate] = _TIMED_OUT
        return self._parsed[c.candidate]

    def key(self, i: int) -> tuple[str | None, str]:
        """(comparison key, reason): the key is None when the response has no usable answer."""
        c = self.candidates[i]
        if c is None:
            return None, NO_ANSWER
        if c.boxed:
            return _key(c.boxed), ""
        p = self.parsed(c)
        if p is _TIMED_OUT:
            return None, TIMEOUT_ANSWER
        if not p:
            return None, NO_ANSWER
        return _key(shown(p)), ""

    def shown(self, i: int) -> str:
        c = self.candidates[i]
        if c.boxed:
            return c.boxed
        p = self.parsed(c)
        return shown(p) if isinstance(p, list) else ""


def judge_reference(candidates: list[FinalAnswer | None], reference: str, checker: MathChecker) -> list[Verdict]:
    answers = _Answers(candidates, checker)
    verdicts = [Verdict(method="reference", target=reference.strip()) for _ in candidates]
    gold: list | None = None
    gold_reason = ""
    ref_key = _key(reference)
    same: dict[str, tuple[float, str]] = {}  # answer key -> (score, reason): each distinct answer compared once
    for i, v in enumerate(verdicts):
        key, reason = answers.key(i)
        if key is None:
            if reason == TIMEOUT_ANSWER:
                v.reason = reason
            else:
                v.score = 0.0  # no final answer: a wrong response
            continue
        v.answer, v.answer_found = answers.shown(i), True
        if key == ref_key:
            v.score = 1.0
            continue
        if key not in same:
            p = answers.parsed(candidates[i])
            if p is _TIMED_OUT:
                same[key] = (NAN, TIMEOUT_ANSWER)
            elif not p:
                same[key] = (0.0, "")
            else:
                if gold is None:
                    try:
                        gold = checker.parse_reference(reference)
                        gold_reason = "" if gold else BAD_REFERENCE
                    except CallTimeout:
                        gold, gold_reason = [], TIMEOUT_REFERENCE
                if gold_reason:
                    same[key] = (NAN, gold_reason)
                else:
                    try:
                        same[key] = (1.0 if checker.equal(gold, p) else 0.0, "")
                    except CallTimeout:
                        same[key] = (NAN, TIMEOUT_COMPARE)
        v.score, v.reason = same[key]
    return verdicts


def judge_majority(candidates: list[FinalAnswer | None], checker: MathChecker, min_votes: int = 2) -> list[Verdict]:
    answers = _Answers(candidates, checker)
    verdicts = [Verdict(method="majority") for _ in candidates]
    voters: dict[str, list[int]] = {}  # answer key -> response positions
    for i, v in enumerate(verdicts):
        key, reason = answers.key(i)
        if key is None:
            v.reason = reason
            continue
        v.answer, v.answer_found = answers.shown(i), True
        voters.setdefault(key, []).append(i)
    # classes of equivalent answers: distinct keys by count (then first position), each compared with the first
    # answer of every class so far
    classes: list[tuple[int, list[int]]] = []  # (representative position, positions)
    for key in sorted(voters, key=lambda k: (-len(voters[k]), voters[k][0])):
        members = voters[key]
        home: object = None
        if classes:
            p = answers.parsed(candidates[members[0]])
            if p is _TIMED_OUT:
                home = TIMEOUT_ANSWER
            for rep, positions in classes if home is None else ():
                gold = answers.parsed(candidates[rep])
                if gold is _TIMED_OUT or not gold or not p:
                    continue  # nothing to compare: a different answer
                try:
                    if checker.equal(gold, p):
                        home = positions
                        break
                except CallTimeout:
                    home = TIMEOUT_COMPARE
                    break
        if isinstance(home, str):
            for i in members:
                verdicts[i].reason = home
        elif home is None:
            classes.append((members[0], list(members)))
        else:
            home.extend(members)
    if not classes:
        return verdicts
    sizes = sorted((len(m) for _, m in classes), reverse=True)
    winner = max(classes, key=lambda cls: len(cls[1]))  # the first of the largest (visit order)
    if sizes[0] < min_votes or (len(sizes) > 1 and sizes[1] == sizes[0]):
        reason = TIE if len(sizes) > 1 and sizes[1] == sizes[0] else NO_MAJORITY
        for _, members in classes:
            for i in members:
                verdicts[i].reason = reason
        return verdicts
    target = verdicts[winner[1][0]].answer
    winners = set(winner[1])
    for _, members in classes:
        for i in members:
            verdicts[i].score = 1.0 if i in winners else 0.0
    for v in verdicts:
        v.target = target
    return verdicts
