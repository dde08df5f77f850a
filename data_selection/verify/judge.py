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

Every math-verify call has a CPU-time limit; a response whose parse or comparison runs out of time gets NaN
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


def _parse_all(candidates: list[FinalAnswer | None], checker: MathChecker) -> list:
    """math-verify's extraction of each candidate (None: no candidate, _TIMED_OUT, or the parsed list)."""
    out = []
    for c in candidates:
        if c is None:
            out.append(None)
            continue
        try:
            out.append(checker.parse(c.candidate))
        except CallTimeout:
            out.append(_TIMED_OUT)
    return out


def judge_reference(candidates: list[FinalAnswer | None], reference: str, checker: MathChecker) -> list[Verdict]:
    parsed = _parse_all(candidates, checker)
    verdicts = [Verdict(method="reference", target=reference.strip()) for _ in candidates]
    try:
        gold = checker.parse_reference(reference)
        gold_reason = "" if gold else BAD_REFERENCE
    except CallTimeout:
        gold, gold_reason = [], TIMEOUT_REFERENCE
    same: dict[str, float] = {}  # candidate string -> score (identical answers are compared once)
    for v, c, p in zip(verdicts, candidates, parsed):
        if p is _TIMED_OUT:
            v.reason = TIMEOUT_ANSWER
            continue
        if not p:  # no final answer: a wrong response
            v.score = 0.0 if not gold_reason else NAN
            v.reason = gold_reason
            continue
        v.answer, v.answer_found = shown(p, c.boxed), True
        if gold_reason:
            v.reason = gold_reason
            continue
        if c.candidate not in same:
            try:
                same[c.candidate] = 1.0 if checker.equal(gold, p) else 0.0
            except CallTimeout:
                same[c.candidate] = NAN
        v.score = same[c.candidate]
        if v.score != v.score:
            v.reason = TIMEOUT_COMPARE
    return verdicts


def judge_majority(candidates: list[FinalAnswer | None], checker: MathChecker, min_votes: int = 2) -> list[Verdict]:
    parsed = _parse_all(candidates, checker)
    verdicts = [Verdict(method="majority") for _ in candidates]
    voters: dict[str, list[int]] = {}  # normalised candidate string -> response positions
    for i, (v, c, p) in enumerate(zip(verdicts, candidates, parsed)):
        if p is _TIMED_OUT:
            v.reason = TIMEOUT_ANSWER
        elif not p:
            v.reason = NO_ANSWER
        else:
            v.answer, v.answer_found = shown(p, c.boxed), True
            voters.setdefault("".join(c.candidate.split()), []).append(i)
    # classes of equivalent answers: distinct strings by count (then first position), each compared with the
    # first answer of every class so far
    classes: list[tuple[list, list[int]]] = []  # (representative parse, positions)
    for key in sorted(voters, key=lambda k: (-len(voters[k]), voters[k][0])):
        members = voters[key]
        p = parsed[members[0]]
        home = None
        for cls in classes:
            try:
                if checker.equal(cls[0], p):
                    home = cls
                    break
            except CallTimeout:
                home = "timeout"
                break
        if home == "timeout":
            for i in members:
                verdicts[i].reason = TIMEOUT_COMPARE
        elif home is None:
            classes.append((p, list(members)))
        else:
            home[1].extend(members)
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
