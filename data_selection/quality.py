"""DeepDistill's response quality filters (arXiv 2504.17565; docs/methods.md §4).

* **Repetition**: a response in which some 20-token string occurs more than 20 times (a decoding loop) is
  dropped. Tokens here are whitespace-separated words (**choice**: the paper counts model tokens; words need no
  tokenizer and keep ``data-select verify`` fast on 4M rows). :func:`max_repeat_count` gives, per response,
  the largest number of occurrences of any ``n``-word string (overlapping occurrences count), so the threshold
  can change at selection time without re-reading the text.
* **Missing parts**: a response must hold both a non-empty think part and a non-empty answer part
  (:func:`~data_selection.verify.answers.split_response`); ``answer`` requires only the answer part (pools
  without think tags), ``none`` switches the filter off.
* **Perplexity**: a response whose perplexity is above 20 is dropped (the paper's figure is over query+answer
  under its own model; ours is the base model's response-only perplexity from ``data-select score``, or the
  dataset's own ``ppl`` column when it has one).

The functions return boolean masks ("this row is caught") so the selector can count each filter.
"""

from __future__ import annotations

import numpy as np

REPEAT_TOKENS = 20
MAX_REPEATS = 20
MAX_PPL = 20.0
REQUIRE_PARTS = ("both", "answer", "none")
_HASH_BASE = np.uint64(1099511628211)  # FNV prime: the polynomial base of the rolling n-gram hash


def max_repeat_count(text: str, n: int = REPEAT_TOKENS) -> int:
    """The largest number of occurrences of any ``n``-word string in ``text`` (0 when it has fewer words).

    Each word is hashed, each ``n``-gram gets a polynomial hash of its words (64-bit, vectorised), and the
    longest run of equal hashes after sorting is the answer; two different n-grams colliding in 64 bits is
    negligible at these sizes.
    """
    words = text.split()
    m = len(words) - n + 1
    if m <= 0:
        return 0
    ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    h = ids[:m].copy()
    for j in range(1, n):
        h *= _HASH_BASE
        h += ids[j: j + m]
    h.sort()
    bounds = np.concatenate(([-1], np.flatnonzero(h[1:] != h[:-1]), [m - 1]))
    return int(np.diff(bounds).max())


def repetitive(max_repeat: np.ndarray, max_repeats: int = MAX_REPEATS) -> np.ndarray:
    """Rows with some n-word string repeated more than ``max_repeats`` times (0 switches the filter off)."""
    max_repeat = np.asarray(max_repeat)
    if max_repeats <= 0:
        return np.zeros(len(max_repeat), bool)
    return max_repeat > max_repeats


def missing_parts(has_think: np.ndarray, has_answer: np.ndarray, require: str = "both") -> np.ndarray:
    """Rows that lack a part ``require`` asks for (both: think and answer; answer; none)."""
    has_think, has_answer = np.asarray(has_think, bool), np.asarray(has_answer, bool)
    if require == "both":
        return ~(has_think & has_answer)
    if require == "answer":
        return ~has_answer
    if require == "none":
        return np.zeros(len(has_answer), bool)
    raise ValueError(f"require must be one of {REQUIRE_PARTS}, got {require!r}")


def perplexity_too_high(ppl: np.ndarray, max_ppl: float = MAX_PPL) -> np.ndarray:
    """Rows whose perplexity is above ``max_ppl`` (unknown perplexity is not caught; 0 switches it off)."""
    ppl = np.asarray(ppl, np.float64)
    if max_ppl <= 0:
        return np.zeros(len(ppl), bool)
    with np.errstate(invalid="ignore"):
        return ppl > max_ppl  # NaN compares False
