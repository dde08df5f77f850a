"""Split a reasoning trace's ``<think>`` part into steps and type each step (docs/methods.md §5, steps 1–2).

LIMOPro (arXiv 2505.19187) segmented traces with an LLM (markers first, the model for steps without one); this
is the cheap, exact proxy, with an optional model for the unmarked steps (:mod:`.step_typer`):

1. **Think block.** The response must hold exactly one ``<think>`` followed by exactly one ``</think>``; the
   text after ``</think>`` is the answer and is never touched.
2. **Paragraphs.** The think text, leading and trailing whitespace aside, is split at blank lines: a separator
   is a run of whitespace holding at least two line breaks (``\\n\\n``, ``\\n  \\n\\n``, ``\\r\\n\\r\\n``).
3. **Steps.** Paragraphs are merged greedily in order: a step takes the next paragraph while it holds fewer
   than ``min_sentences`` sentences (default 3); the last step of a trace may hold fewer. A paragraph that
   opens a functional thought (rule 5 types it verification, multi-method or error correction) always starts
   a new step (``marker_boundaries``, on by default), so it is never folded into the progressive step before
   it; the unmarked paragraphs after it join its step until it holds ``min_sentences``.
4. **Sentences.** A sentence ends at a run of ``.``, ``!`` or ``?`` (closing quotes or brackets may follow)
   that is followed by whitespace or the end of the paragraph; text after the last such end counts as one more
   sentence. So ``3.5`` and ``$x=2.$`` end nothing, and a displayed equation is one sentence.
5. **Types.** Text is compared case-insensitively after leading whitespace and Markdown marks (``*_#>``) are
   skipped, with ’ read as ', ``hm``/``hmmm`` read as ``hmm``, and a phrase ending in a letter or digit matching
   whole words only ("Then" does not match "Thence"). A marker counts at the start of the step or after up to
   four **lead-ins**, the interjections and conjunctions R1 opens a thought with ("But", "Hmm", "Wait", "Oh",
   "So", "Okay", "Alternatively"…, :data:`DEFAULT_LEAD_INS`), each followed by spaces or punctuation
   (``,.;:!?…—–-``). At each of these positions the longest phrase of the four lists that matches is taken;
   the step's type is that of the functional match at the deepest position, else progressive. So "Let me
   check" (verification) beats "Let me" (progressive), "Wait, no" (error correction) beats "Wait"
   (verification), "But that's wrong, …" is error correction, "Hmm, let me check" and "But let me confirm once
   again" are verification, and "Wait, let me try another approach" is multi-method. "Wait, so …" stays
   verification: a progressive phrase after a lead-in never overrides a functional one. A step that matches
   no phrase at any position is *unmarked* (progressive, or the step typer's verdict).

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

# Defaults: every phrase of LIMOPro's Table 4 in the column the table lists it under ("Going back to" is
# verification, "We can also verify" multi-method; docs/methods.md §5 quotes the table) plus the phrasings
# R1-style traces use for each function where the table is silent. "Let's solve", "Given that", "The mistake was"
# and "Let's try a different approach" match through their shorter entries ("Let's", "Given", "The mistake", "Let's
# try a different"), which stand in the same column.
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
        "Going back to", "We can verify", "Let's confirm",
    ),
    MULTI_METHOD: (
        "Alternatively", "Another way", "Another approach", "Another method", "Let me try another",
        "Let me try a different", "Let's try another", "Let's try a different", "Let me think of another",
        "Let me consider another", "Let me approach", "A different approach", "Using a different",
        "We could also", "One could also", "Or we could", "Or, ", "Instead, let", "Using another method",
        "Using another approach", "Let's use another", "Let me use another", "We can also verify",
    ),
    ERROR_CORRECTION: (
        "This is wrong", "That is wrong", "That's wrong", "This is incorrect", "That is incorrect",
        "That's incorrect", "That's not right", "That is not right", "That can't be right", "That cannot be right",
        "The mistake", "My mistake", "I made a mistake", "I made an error", "I think I made", "Oops",
        "Wait, no", "No, wait", "Wait, that's wrong", "Wait, that's not", "Wait, that can't", "Actually, no",
        "Correction", "Hmm, that's not", "Hmm, that can't", "I was wrong", "That was wrong", "Mistake",
        "That's impossible", "That is impossible", "This is impossible", "This contradicts",
        "That contradicts", "This is a contradiction", "The error is", "The error was", "I see the error",
        "I see the mistake",
    ),
}  # fmt: skip

# Words R1 opens a functional thought with before its marker ("But wait, let me check", "Hmm, that's wrong").
DEFAULT_LEAD_INS: tuple[str, ...] = (
    "But", "And", "Hmm", "Wait", "Oh", "Ah", "So", "Okay", "OK", "Alright", "All right", "Well", "Now", "Actually",
    "Alternatively", "Yes", "Yeah", "Also", "Hold on", "Again",
)  # fmt: skip
MAX_LEAD_INS = 4

NO_THINK = "no <think> block"
MALFORMED_THINK = "malformed <think> block (unclosed, reversed or more than one)"
NO_ANSWER = "nothing after </think>"

_SEPARATOR = re.compile(r"[^\S\n]*\n(?:[^\S\n]*\n)+[^\S\n]*")  # whitespace holding >= 2 line breaks
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|\Z)")
_LEADING_MARKS = " \t\r\n*_#>"
_LEAD_IN_GAP = re.compile(r"[\s,.;:!?…\u2014\u2013*_-]+")  # what follows a lead-in (at least one character)
_HMM = re.compile(r"\bhm+\b")


def count_sentences(text: str) -> int:
    """Sentences in ``text``: terminal punctuation followed by whitespace or the end, plus a trailing fragment."""
    ends = list(_SENTENCE_END.finditer(text))
    n = len(ends)
    rest = text[ends[-1].end():] if ends else text
    return n + (1 if rest.strip() else 0)


def _normalized(text: str) -> str:
    return _HMM.sub("hmm", text.replace("’", "'").lower())


class MarkerTable:
    """Marker phrases per step type and the lead-ins before them (see the module docstring, rule 5)."""

    def __init__(self, phrases: Mapping[str, Iterable[str]], lead_ins: Iterable[str] = DEFAULT_LEAD_INS):
        unknown = [t for t in phrases if t not in STEP_TYPES]
        if unknown:
            raise UserError(f"unknown step type(s) {unknown}; the types are {', '.join(STEP_TYPES)}")
        self.phrases: dict[str, tuple[str, ...]] = {t: tuple(phrases.get(t, ())) for t in STEP_TYPES}
        self.lead_ins: tuple[str, ...] = tuple(lead_ins)
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
        keys = sorted({_normalized(w.strip()) for w in self.lead_ins}, key=lambda w: (-len(w), w))
        if any(not k for k in keys):
            raise UserError("a lead-in is empty")
        self._lead_in = (re.compile("(?:" + "|".join(re.escape(k) for k in keys) + ")" + _LEAD_IN_GAP.pattern)
                         if keys else None)

    def _longest(self, head: str, pos: int) -> tuple[str, str] | None:
        for phrase, step_type in self._table:
            if head.startswith(phrase, pos):
                nxt = head[pos + len(phrase):pos + len(phrase) + 1]
                if phrase[-1].isalnum() and (nxt.isalnum() or nxt == "_"):
                    continue  # "Then" must not match "Thence"
                return step_type, phrase
        return None

    def match(self, text: str) -> tuple[str, str | None]:
        """(type, the marker phrase that decided it) of a step whose text is ``text``; (progressive, None) when no
        phrase matches at any position (an unmarked step)."""
        head = _normalized(text.lstrip(_LEADING_MARKS)[:300])
        pos, first, functional = 0, None, None
        for _ in range(MAX_LEAD_INS + 1):
            m = self._longest(head, pos)
            if m is not None:
                first = first or m
                if m[0] != PROGRESSIVE:
                    functional = m  # the deepest functional match wins
            lead = self._lead_in.match(head, pos) if self._lead_in else None
            if lead is None or lead.end() >= len(head):
                break
            pos = lead.end()
        best = functional or first
        return best if best is not None else (PROGRESSIVE, None)

    def classify(self, text: str) -> str:
        """The type of a step whose text is ``text`` (progressive when no phrase matches)."""
        return self.match(text)[0]

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
            marker_boundaries: bool = True) -> Segmentation | str:
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
                 error_correction: Sequence[str], lead_ins: Sequence[str] = DEFAULT_LEAD_INS) -> MarkerTable:
    """A :class:`MarkerTable` from the four option lists and the lead-ins."""
    return MarkerTable({PROGRESSIVE: progressive, VERIFICATION: verification, MULTI_METHOD: multi_method,
                        ERROR_CORRECTION: error_correction}, lead_ins)
