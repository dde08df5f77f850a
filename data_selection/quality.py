"""DeepDistill's response quality filters (arXiv 2504.17565; docs/methods.md §4).

* **Repetition**: the paper drops a response holding a 20-token string that occurs more than 20 times in the
  *dataset* (:mod:`data_selection.ngram_counts`, the default). :func:`max_repeat_count` is our per-response
  variant (``--repeat_scope response``: a decoding loop inside one response). Tokens here are
  whitespace-separated words (**choice**: the paper counts model tokens; words need no tokenizer and keep
  ``data-select verify`` fast on 4M rows). Both counts are stored per response by ``verify``, so the threshold
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

from data_selection.ngram_counts import ngram_hashes
from data_selection.options.select import REQUIRE_PARTS

REPEAT_TOKENS = 20
MAX_REPEATS = 20
MAX_PPL = 20.0


def max_repeat_count(text: str, n: int = REPEAT_TOKENS) -> int:
    """The largest number of occurrences of any ``n``-word string in ``text`` (0 when it has fewer words).

    The n-grams' 64-bit hashes (:func:`~data_selection.ngram_counts.ngram_hashes`) are sorted and the longest
    run of equal hashes is the answer; two different n-grams colliding in 64 bits is negligible at these sizes.
    """
    h = ngram_hashes(text, n)
    if not len(h):
        return 0
    h.sort()
    bounds = np.concatenate(([-1], np.flatnonzero(h[1:] != h[:-1]), [len(h) - 1]))
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
