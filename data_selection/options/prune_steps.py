"""``data-select prune-steps``' options. The class is defined in :mod:`data_selection.transforms.options` (light:
standard library and the step rules only) with the helpers that read it; this is its home by the command's name."""

from __future__ import annotations

from data_selection.transforms.options import PruneOptions

__all__ = ["PruneOptions"]
