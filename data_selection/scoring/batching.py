"""Length-sorted batches filled to a token budget.

Rows are sorted longest first (an out-of-memory shows up on the first batch, not after hours) and a batch
grows while ``rows x longest row <= batch_tokens``; a row longer than the budget gets a batch of its own.
Because neighbours have similar lengths, padding stays small; :func:`padding_waste` reports it.
"""

from __future__ import annotations


def token_budget_batches(lengths: dict[int, int], batch_tokens: int, max_rows: int = 512) -> list[list[int]]:
    """Group keys of ``lengths`` (key -> tokens) into batches; deterministic (ties broken by key)."""
    if batch_tokens < 1:
        raise ValueError("batch_tokens must be positive")
    order = sorted(lengths, key=lambda k: (-lengths[k], k))
    batches: list[list[int]] = []
    cur: list[int] = []
    for k in order:
        longest = lengths[cur[0]] if cur else lengths[k]
        if cur and ((len(cur) + 1) * longest > batch_tokens or len(cur) >= max_rows):
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
