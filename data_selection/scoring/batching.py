"""Length-sorted batches filled to a token budget.

Rows are sorted longest first (an out-of-memory shows up on the first batch, not after hours) and a batch
grows while ``rows x longest row <= batch_tokens``; a row longer than the budget gets a batch of its own.
A row shorter than ``(1 - max_padding)`` of the batch's longest row starts a new batch, so a sparse long-tail
mix (a 4K trace next to 300-token ones) is not padded to the longest: each row carries at most
``max_padding`` of padding. On a large pool neighbours have near-equal lengths and batches fill the budget.
:func:`padding_waste` reports the share of padded positions.
"""

from __future__ import annotations


def token_budget_batches(lengths: dict[int, int], batch_tokens: int, max_rows: int = 512,
                         max_padding: float = 0.2) -> list[list[int]]:
    """Group keys of ``lengths`` (key -> tokens) into batches; deterministic (ties broken by key)."""
    if batch_tokens < 1:
        raise ValueError("batch_tokens must be positive")
    if not 0 <= max_padding < 1:
        raise ValueError("max_padding must be in [0, 1)")
    order = sorted(lengths, key=lambda k: (-lengths[k], k))
    batches: list[list[int]] = []
    cur: list[int] = []
    for k in order:
        longest = lengths[cur[0]] if cur else lengths[k]
        full = (len(cur) + 1) * longest > batch_tokens or len(cur) >= max_rows
        too_short = lengths[k] < (1 - max_padding) * longest
        if cur and (full or too_short):
            batches.append(cur)
            cur = []
        cur.append(k)
    if cur:
        batches.append(cur)
    return batches


def padding_waste(lengths: dict[int, int], batches: list[list[int]]) -> float:
    """Share of computed positions that are padding (0 = none)."""
    real = sum(lengths[k] for b in batches for k in b)
    padded = sum(len(b) * max(lengths[k] for k in b) for b in batches)
    return 0.0 if padded == 0 else 1.0 - real / padded
