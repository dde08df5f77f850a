"""Selection strategies: pure functions from a scores table to chosen rows + manifest facts.

``STRATEGIES`` maps the ``--strategy`` names to the functions; every function takes the scores DataFrame
and keyword parameters (``n``, ``seed``, ``key``, ``stratify``, ``over_length`` and its own, e.g. ``low``/``high``)
and returns a :class:`~data_selection.selectors.common.Selection`.
"""

from __future__ import annotations

from data_selection.selectors.common import KEYS, Selection
from data_selection.selectors.random import select_random
from data_selection.selectors.zpd import select_zpd

STRATEGIES = {"zpd": select_zpd, "random": select_random}

__all__ = ["KEYS", "STRATEGIES", "Selection", "select_random", "select_zpd"]
