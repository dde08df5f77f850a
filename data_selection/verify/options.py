"""``data-select verify``'s options: they live in :mod:`data_selection.options.verify` (this is their old path)."""

from data_selection.options.verify import REFERENCE_CANDIDATES, VerifyOptions  # noqa: F401
