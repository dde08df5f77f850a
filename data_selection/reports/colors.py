"""The reports' colours: one per selection (PNG and HTML alike, in the order the selections are named), the pool grey."""

from __future__ import annotations

COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
POOL_COLOR = "#bbbbbb"


def color(i: int) -> str:
    """The colour of the ``i``-th selection (cycling)."""
    return COLORS[i % len(COLORS)]
