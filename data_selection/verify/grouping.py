"""Which rows answer the same query: an explicit key column, or a hash of the normalised prompt.

Normalisation (Unicode NFKC, runs of whitespace collapsed to one space, ends stripped, each turn tagged with
its role) makes reformatted copies of one problem share a key; the system prompt is not part of it. Keys are
strings: the key column's value as text, or ``p:`` + 16 hex digits of the SHA-1 of the normalised prompt.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from tqdm.auto import tqdm

from data_selection.command_line import UserError

_SPACE = re.compile(r"\s+")


def normalise_prompt(messages: list[dict[str, Any]]) -> str:
    turns = []
    for m in messages:
        text = unicodedata.normalize("NFKC", m.get("content") or "")
        turns.append(f"<{m.get('role', '')}> " + _SPACE.sub(" ", text).strip())
    return "\n".join(turns)


def prompt_key(messages: list[dict[str, Any]]) -> str:
    return "p:" + hashlib.sha1(normalise_prompt(messages).encode("utf-8")).hexdigest()[:16]


def query_keys(pool, key_column: str = "", batch_size: int = 10_000) -> list[str]:
    """The query key of every pool row (rejected rows included, so positions are pool rows).

    A row whose key column is null falls back to its prompt hash.
    """
    n = len(pool.converted)
    if key_column and key_column not in pool.raw.column_names:
        raise UserError(f"--query_key {key_column!r}: no such column in {pool.spec.dataset!r} "
                        f"(columns: {', '.join(pool.raw.column_names)})")
    if key_column:
        keys = [None if v is None else str(v) for v in pool.raw[key_column]]
        missing = [i for i, k in enumerate(keys) if k is None]
        if missing:
            for i, ex in zip(missing, pool.converted.select(missing).select_columns(["_prompt"])):
                keys[i] = prompt_key(ex["_prompt"] or [])
        return keys
    keys = []
    bar = tqdm(total=n, unit="row", desc="grouping responses by query", disable=n < 100_000)
    for batch in pool.converted.select_columns(["_prompt"]).iter(batch_size=batch_size):
        keys.extend(prompt_key(prompt or []) for prompt in batch["_prompt"])
        bar.update(len(batch["_prompt"]))
    bar.close()
    return keys
