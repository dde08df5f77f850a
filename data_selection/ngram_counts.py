"""DeepDistill's repetition filter as the paper counts it: across the dataset (docs/methods.md §4).

The paper drops responses holding a 20-token string that occurs more than 20 times *in the dataset* (template-like
redundancy, not only a decoding loop inside one response). :func:`dataset_repeats` gives, for each response, how
often its most frequent ``n``-word string occurs in the whole pool (overlapping occurrences and occurrences
inside one response count; 0 when the response has fewer than ``n`` words), so ``select --max_repeats`` can
change the threshold without reading the text again.

Words are whitespace-separated tokens (**choice**: no tokenizer, as for the per-response count). Each word is
hashed, each ``n``-gram gets a 64-bit polynomial hash of its words (vectorised), and the hashes of the whole pool
are counted with ``numpy.unique``. Memory is bounded: when the pool holds more than ``budget`` n-grams the hashes
are counted in ``P`` passes, each keeping the hashes equal to ``p`` modulo ``P``; a last pass looks every
response's hashes up. All passes run in one process (Python's string hash is per process). Two different
n-grams colliding in 64 bits is negligible at these sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

_HASH_BASE = np.uint64(1099511628211)  # FNV prime: the polynomial base of the rolling n-gram hash
BUDGET = 25_000_000  # n-gram hashes held at once (8 bytes each, plus numpy.unique's sort)


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """The 64-bit hash of every ``n``-word window of ``text`` (empty when it has fewer than ``n`` words)."""
    words = text.split()
    m = len(words) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    h = ids[:m].copy()
    for j in range(1, n):
        h *= _HASH_BASE
        h += ids[j: j + m]
    return h


def _repeated(texts: Callable[[], Iterable[str]], n: int, parts: int, part: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted hashes occurring more than once, their counts) among the hashes ``== part`` modulo ``parts``."""
    chunks = []
    for t in texts():
        h = ngram_hashes(t, n)
        chunks.append(h if parts == 1 else h[h % np.uint64(parts) == np.uint64(part)])
    if not chunks:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    uniq, counts = np.unique(np.concatenate(chunks), return_counts=True)
    keep = counts > 1
    return uniq[keep], counts[keep]


def dataset_repeats(texts: Callable[[], Iterable[str]], n: int = 20, budget: int = BUDGET) -> np.ndarray:
    """For each text ``texts()`` yields (it is called once per pass), the number of occurrences in all the texts
    of its most frequent ``n``-word string (0 for a text with fewer than ``n`` words)."""
    total = sum(max(0, len(t.split()) - n + 1) for t in texts())
    parts = max(1, math.ceil(total / budget))
    found = [_repeated(texts, n, parts, p) for p in range(parts)]
    uniq = np.concatenate([u for u, _ in found]) if found else np.zeros(0, np.uint64)
    counts = np.concatenate([c for _, c in found]) if found else np.zeros(0, np.int64)
    order = np.argsort(uniq, kind="stable")
    uniq, counts = uniq[order], counts[order]
    out = []
    for t in texts():
        h = ngram_hashes(t, n)
        if not len(h):
            out.append(0)
            continue
        at = np.searchsorted(uniq, h).clip(max=max(len(uniq) - 1, 0))
        hit = uniq[at] == h if len(uniq) else np.zeros(len(h), bool)
        out.append(int(counts[at[hit]].max()) if hit.any() else 1)
    return np.array(out, dtype=np.int64)
