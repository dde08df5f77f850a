"""A reasoning trace's parts and its final answer, found without parsing the trace.

R1-style traces are ``<think>…</think>`` followed by the answer (AM-DeepSeek-Distilled wraps it in
``<answer>…</answer>``). The final answer is looked for only in the answer part: the last ``\\boxed{}``
(``\\fbox{}``) with balanced braces, otherwise the tail of the answer part, which math-verify's own extraction
then reads ("the final answer is …", the last expression). Parsing a whole 10K-token trace would let an
expression in the reasoning win and costs far more (bench/verify_speed.py measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
BOXES = ("\\boxed", "\\fbox")
TAIL_CHARS = 600  # without a \boxed{}, math-verify reads this much of the end of the answer part


@dataclass(frozen=True)
class Parts:
    think: str | None  # None: the response has no think part
    answer: str | None  # None: no answer part (a think part that never closes: the trace was cut)

    @property
    def has_think(self) -> bool:
        return bool(self.think and self.think.strip())

    @property
    def has_answer(self) -> bool:
        return bool(self.answer and self.answer.strip())


def split_response(text: str) -> Parts:
    """Think and answer parts. A ``</think>`` without ``<think>`` (templates that put the opening tag in the
    prompt) still closes a think part; a ``<think>`` that never closes leaves no answer part."""
    close = text.rfind(THINK_CLOSE)
    open_ = text.find(THINK_OPEN)
    if close >= 0:
        start = open_ + len(THINK_OPEN) if 0 <= open_ < close else 0
        think, answer = text[start:close], text[close + len(THINK_CLOSE):]
    elif open_ >= 0:
        think, answer = text[open_ + len(THINK_OPEN):], None
    else:
        think, answer = None, text
    if answer is not None:
        a0 = answer.find(ANSWER_OPEN)
        if a0 >= 0:
            a1 = answer.find(ANSWER_CLOSE, a0)
            answer = answer[a0 + len(ANSWER_OPEN): a1 if a1 >= 0 else None]
    return Parts(think, answer)


def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at ``text[start] == '{'``; None when it never closes."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1: i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{…}`` / ``\\fbox{…}`` in ``text`` (None when there is none)."""
    end = len(text)
    while True:
        at, box = max((text.rfind(b, 0, end), b) for b in BOXES)
        if at < 0:
            return None
        brace = at + len(box)
        while brace < len(text) and text[brace] == " ":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            content = _braced(text, brace)
            if content is not None:
                return content.strip()
        end = at


@dataclass(frozen=True)
class FinalAnswer:
    candidate: str  # what math-verify parses
    boxed: str  # the \boxed{} content ("" when the answer part's tail is parsed instead)


def final_answer(text: str, parts: Parts | None = None) -> FinalAnswer | None:
    """The final answer to check, or None when the response has no (non-empty) answer part."""
    parts = parts or split_response(text)
    if not parts.has_answer:
        return None
    boxed = last_boxed(parts.answer)
    if boxed is not None:
        return FinalAnswer("\\boxed{" + boxed + "}", boxed) if boxed else None
    return FinalAnswer(parts.answer.strip()[-TAIL_CHARS:], "")
