"""``llamafactory-ext compare``: the base vs random vs selected table (markdown, CSV) and bar chart."""

from __future__ import annotations

from llamafactory_ext.evaluation.compare import cli_compare
from llamafactory_ext.options.compare import CompareOptions


def run(opts: CompareOptions) -> int:
    return cli_compare(opts)  # the body stays in compare.py, whose table output changes in the same merge
