"""The selection funnel's stages, in report order (``report.md``, ``funnel.csv``, ``funnel.png``, ``report.html``)."""

from __future__ import annotations

from typing import Any

FUNNEL_STAGES = ["pool", "rejected", "scored", "verified", "no_verify_score", "verify_scored", "stage1",
                 "not_scored_by_scorer", "over_length_dropped", "non_finite_key", "no_checkpoint_scores",
                 "perplexity_dropped", "repetition_dropped", "missing_parts_dropped", "eligible", "dropped_low",
                 "dropped_high", "band", "selected"]


def stages_present(funnels: list[dict[str, Any]]) -> list[str]:
    """The stages of :data:`FUNNEL_STAGES` that at least one of ``funnels`` has, in order."""
    return [st for st in FUNNEL_STAGES if any(st in f for f in funnels)]
