"""The reports' colours: one per selection (PNG and HTML alike, in the order the selections are named), the pool grey,
one per flow of a dynamic selection's stages."""

from __future__ import annotations

COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
POOL_COLOR = "#bbbbbb"


def color(i: int) -> str:
    """The colour of the ``i``-th selection (cycling)."""
    return COLORS[i % len(COLORS)]


# the flows of a dynamic selection's stages (PNG and HTML alike): the previous subset's rows, then the new subset's
FLOW_COLORS = {"learned": "#2ca02c", "rose_above": "#d62728", "stayed": "#1f77b4", "not_rescored": POOL_COLOR,
               "kept": "#9467bd", "entered": "#ff7f0e"}
