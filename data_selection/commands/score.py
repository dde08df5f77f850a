"""``data-select score``: score a pool (:func:`data_selection.scoring.runner.run_score`) and say what came out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_selection.options.score import ScoreOptions
from data_selection.scoring.layout import REJECTS, SCORES, SUMMARY
from data_selection.scoring.runner import run_score
from data_selection.shards.layout import read_meta
from data_selection.sources import duplicate_user_ids_line

__all__ = ["ScoreOptions", "run", "describe"]


def describe(s: dict[str, Any], out: str) -> str:
    """A few lines for a person; the whole summary is in ``OUT/summary.json`` (and the counts in meta.json)."""
    now = f"{s['rows_scored_now']:,} rows scored in this run ({s['tokens_now']:,} tokens, {s['seconds']:,.1f} s"
    if s.get("tokens_per_s"):
        now += f", {s['tokens_per_s']:,.0f} tokens/s on {s.get('device', '?')}"
    now += ")"
    if s["shards_done_before"]:
        now += f"; {s['shards_done_before']} shard(s) of this rank were already done"
    if not s.get("merged"):
        return (f"rank {s['rank']}: {now}\n{s['waiting_for_shards']} shard(s) still running on other ranks; the last "
                f"rank merges (or run: data-select merge --scores {out})")
    c = s["counts"]
    return (f"{now}\nscored {c['scored']:,} of {c['rows']:,} rows: {c['rejected']:,} rejected, {c['truncated']:,} "
            f"truncated at cutoff_len\nscores: {Path(out) / SCORES}\nrejects: {Path(out) / REJECTS}\n"
            f"details: {Path(out) / SUMMARY}")


def run(opts: ScoreOptions) -> int:
    s = run_score(opts)
    if s.get("rank", 0) == 0 or s.get("merged"):
        print(describe(s, opts.out))
        if s.get("merged") and (dup := duplicate_user_ids_line(read_meta(Path(opts.out)).get("pool") or {})):
            print(dup)
    return 0
