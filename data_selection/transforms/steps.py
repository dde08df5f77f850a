"""Split a reasoning trace's ``<think>`` part into steps and type each step (docs/methods.md §5, steps 1–2).

LIMOPro (arXiv 2505.19187) segmented traces with an LLM; this is the cheap, exact proxy:

1. **Think block.** The response must hold exactly one ``<think>`` followed by exactly one ``</think>``; the
   text after ``</think>`` is the answer and is never touched.
2. **Paragraphs.** The think text, leading and trailing whitespace aside, is split at blank lines: a separator
   is a run of whitespace holding at least two line breaks (``\\n\\n``, ``\\n  \\n\\n``, ``\\r\\n\\r\\n``).
3. **Steps.** Paragraphs are merged greedily in order: a step takes the next paragraph while it holds fewer
   than ``min_sentences`` sentences (default 3); the last step of a trace may hold fewer. With
   ``marker_boundaries`` a paragraph that opens with a functional marker always starts a new step (**choice**,
   off by default: it keeps a short "Wait, …" paragraph from being folded into the progressive step before it).
4. **Sentences.** A sentence ends at a run of ``.``, ``!`` or ``?`` (closing quotes or brackets may follow)
   that is followed by whitespace or the end of the paragraph; text after the last such end counts as one more
   sentence. So ``3.5`` and ``$x=2.$`` end nothing, and a displayed equation is one sentence.
5. **Types.** A step's type is that of the longest marker phrase its text starts with, compared
   case-insensitively after leading whitespace and Markdown marks (``*_#>``) are skipped, with ’ read as '
   and a phrase ending in a letter or digit matching whole words only ("Then" does not match "Thence").
   The longest match makes "Let me check" (verification) win over "Let me" (progressive) and "Wait, no"
   (error correction) over "Wait" (verification). A step that matches no phrase is progressive.

Deleting steps (:meth:`Segmentation.render`) joins the kept steps with the separator that followed each of them
in the trace, so every kept byte, the separators between kept steps, and everything before the first step and
after the last step (``</think>`` and the answer included) are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from data_selection.command_line import UserError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

PROGRESSIVE = "progressive"
VERIFICATION = "verification"
MULTI_METHOD = "multi_method"
ERROR_CORRECTION = "error_correction"
STEP_TYPES = (PROGRESSIVE, VERIFICATION, MULTI_METHOD, ERROR_CORRECTION)
FUNCTIONAL_TYPES = (VERIFICATION, MULTI_METHOD, ERROR_CORRECTION)

# Defaults: the examples of docs/methods.md §5 and the phrasings R1-style traces use for each function.
DEFAULT_PHRASES: dict[str, tuple[str, ...]] = {
    PROGRESSIVE: (
        "First", "Firstly", "Second", "Then", "Next", "Now", "So", "Therefore", "Thus", "Hence", "Finally",
        "We need to", "We have", "We know", "Let's", "Let me", "Let us", "Given", "Since", "To find",
    ),
    VERIFICATION: (
        "Wait", "Let me check", "Let me verify", "Let me double-check", "Let me double check", "Double-check",
        "Double check", "Let me confirm", "Let me make sure", "Let me recheck", "Let me re-check",
        "Let me check again", "Let's check", "Let's verify", "Let's double-check", "To verify", "To check",
        "To confirm", "To double-check", "Checking", "Verify", "Verification", "Just to be sure",
        "Just to confirm", "Just to double-check", "Sanity check", "Hold on", "But wait", "Check",
    ),
    MULTI_METHOD: (
        "Alternatively", "Another way", "Another approach", "Another method", "Let me try another",
        "Let me try a different", "Let's try another", "Let's try a different", "Let me think of another",
        "Let me consider another", "Let me approach", "A different approach", "Using a different",
        "We could also", "One could also", "Or we could", "Or, ", "Instead, let",
    ),
    ERROR_CORRECTION: (
        "This is wrong", "That is wrong", "That's wrong", "This is incorrect", "That is incorrect",
        "That's incorrect", "That's not right", "That is not right", "That can't be right", "That cannot be right",
        "The mistake", "My mistake", "I made a mistake", "I made an error", "I think I made", "Oops",
        "Wait, no", "No, wait", "Wait, that's wrong", "Wait, that's not", "Wait, that can't", "Actually, no",
        "Correction", "Hmm, that's not", "Hmm, that can't", "I was wrong", "That was wrong", "Mistake",
    ),
}  # fmt: skip

NO_THINK = "no <think> block"
MALFORMED_THINK = "malformed <think> block (unclosed, reversed or more than one)"
NO_ANSWER = "nothing after </think>"

_SEPARATOR = re.compile(r"[^\S\n]*\n(?:[^\S\n]*\n)+[^\S\n]*")  # whitespace holding >= 2 line breaks
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|\Z)")
_LEADING_MARKS = " \t\r\n*_#>"


def count_sentences(text: str) -> int:
    """Sentences in ``text``: terminal punctuation followed by whitespace or the end, plus a trailing fragment."""
    ends = list(_SENTENCE_END.finditer(text))
    n = len(ends)
    rest = text[ends[-1].end():] if ends else text
    return n + (1 if rest.strip() else 0)


def _normalized(text: str) -> str:
    return text.replace("’", "'").lower()


class MarkerTable:
    """Marker phrases per step type, matched longest first (see the module docstring, rule 5)."""

    def __init__(self, phrases: Mapping[str, Iterable[str]]):
        unknown = [t for t in phrases if t not in STEP_TYPES]
        if unknown:
            raise UserError(f"unknown step type(s) {unknown}; the types are {', '.join(STEP_TYPES)}")
        self.phrases: dict[str, tuple[str, ...]] = {t: tuple(phrases.get(t, ())) for t in STEP_TYPES}
        owner: dict[str, str] = {}
        for t, plist in self.phrases.items():
            for p in plist:
                key = _normalized(p.lstrip(_LEADING_MARKS))
                if not key.strip():
                    raise UserError(f"{t} phrase {p!r} is empty")
                if key in owner and owner[key] != t:
                    raise UserError(f"marker phrase {p!r} is listed both as {owner[key]} and as {t}: a step's type "
                                    "would be ambiguous; keep it in one list")
                owner[key] = t
        # longest first: the first phrase that matches is the longest one
        self._table = sorted(owner.items(), key=lambda kv: (-len(kv[0]), kv[0]))

    def classify(self, text: str) -> str:
        """The type of a step whose text is ``text`` (progressive when no phrase matches)."""
        head = _normalized(text.lstrip(_LEADING_MARKS)[:200])
        for phrase, step_type in self._table:
            if head.startswith(phrase):
                nxt = head[len(phrase):len(phrase) + 1]
                if phrase[-1].isalnum() and (nxt.isalnum() or nxt == "_"):
                    continue  # "Then" must not match "Thence"
                return step_type
        return PROGRESSIVE

    def to_dict(self) -> dict[str, list[str]]:
        return {t: list(p) for t, p in self.phrases.items()}


@dataclass(frozen=True)
class Step:
    start: int  # character offsets in the response
    end: int
    type: str
    sentences: int


@dataclass(frozen=True)
class ThinkBlock:
    body_start: int  # first character after <think>
    body_end: int  # first character of </think>
    answer_start: int  # first character after </think>


@dataclass(frozen=True)
class Segmentation:
    response: str
    think: ThinkBlock
    steps: tuple[Step, ...]

    @property
    def answer(self) -> str:
        return self.response[self.think.answer_start:]

    def functional(self) -> list[int]:
        """Indexes of the non-progressive steps."""
        return [i for i, s in enumerate(self.steps) if s.type != PROGRESSIVE]

    def render(self, drop: Iterable[int] = ()) -> str:
        """The response with the steps ``drop`` deleted (kept steps joined by the separator that followed them)."""
        drop = set(drop)
        if not drop:
            return self.response
        bad = [i for i in drop if not 0 <= i < len(self.steps)]
        if bad:
            raise IndexError(f"no step(s) {bad} in a trace of {len(self.steps)} steps")
        steps, r = self.steps, self.response
        kept = [i for i in range(len(steps)) if i not in drop]
        parts = [r[: steps[0].start]]
        for j, i in enumerate(kept):
            parts.append(r[steps[i].start:steps[i].end])
            if j + 1 < len(kept):
                parts.append(r[steps[i].end:steps[i + 1].start])  # the separator that followed step i
        parts.append(r[steps[-1].end:])
        return "".join(parts)


def find_think(response: str) -> ThinkBlock | str:
    """The think block of a response, or the reason there is none usable."""
    n_open, n_close = response.count(THINK_OPEN), response.count(THINK_CLOSE)
    if n_open == 0 and n_close == 0:
        return NO_THINK
    if n_open != 1 or n_close != 1:
        return MALFORMED_THINK
    start = response.index(THINK_OPEN) + len(THINK_OPEN)
    end = response.index(THINK_CLOSE)
    if end < start:
        return MALFORMED_THINK
    answer_start = end + len(THINK_CLOSE)
    if not response[answer_start:].strip():
        return NO_ANSWER
    return ThinkBlock(start, end, answer_start)


def paragraphs(response: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Spans of the blank-line-separated paragraphs of ``response[lo:hi]`` (outer whitespace excluded)."""
    text = response[lo:hi]
    stripped = text.strip()
    if not stripped:
        return []
    a = lo + (len(text) - len(text.lstrip()))
    b = lo + len(text.rstrip())
    spans, cur = [], a
    for m in _SEPARATOR.finditer(response, a, b):
        spans.append((cur, m.start()))
        cur = m.end()
    spans.append((cur, b))
    return spans


def segment(response: str, markers: MarkerTable, min_sentences: int = 3,
            marker_boundaries: bool = False) -> Segmentation | str:
    """Steps of a response's think block, typed; or the reason the response has no usable think block."""
    think = find_think(response)
    if isinstance(think, str):
        return think
    paras = paragraphs(response, think.body_start, think.body_end)
    steps: list[Step] = []
    cur: list[tuple[int, int]] = []
    cur_sentences = 0

    def close() -> None:
        start, end = cur[0][0], cur[-1][1]
        steps.append(Step(start, end, markers.classify(response[start:end]), cur_sentences))

    for a, b in paras:
        n = count_sentences(response[a:b])
        if cur and marker_boundaries and markers.classify(response[a:b]) != PROGRESSIVE:
            close()
            cur, cur_sentences = [], 0
        cur.append((a, b))
        cur_sentences += n
        if cur_sentences >= min_sentences:
            close()
            cur, cur_sentences = [], 0
    if cur:
        close()
    return Segmentation(response, think, tuple(steps))


def phrase_lists(progressive: Sequence[str], verification: Sequence[str], multi_method: Sequence[str],
                 error_correction: Sequence[str]) -> MarkerTable:
    """A :class:`MarkerTable` from the four option lists."""
    return MarkerTable({PROGRESSIVE: progressive, VERIFICATION: verification, MULTI_METHOD: multi_method,
                        ERROR_CORRECTION: error_correction})
