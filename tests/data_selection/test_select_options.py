"""data_selection/options/select.py: light (no pandas, numpy or torch), and the names it offers are the selectors'."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO_ROOT

from data_selection import quality
from data_selection.options import select as options
from data_selection.selectors import (
    STRATEGIES,
    common,
    pass_cv,
    strategy_help,
    temp,
    temp_allocation,
    temp_difficulty,
    temp_diversity,
)


def test_the_options_offer_exactly_the_selectors_names_and_defaults():
    assert options.STRATEGY_SUMMARIES == {name: s.summary for name, s in STRATEGIES.items()}
    assert options.strategy_help() == strategy_help()
    assert options.KEY_DEFINITIONS == common.KEY_DEFINITIONS
    assert (options.STRATIFY_COLUMNS, options.OVER_LENGTH) == (common.STRATIFY_COLUMNS, common.OVER_LENGTH)
    assert options.PASS_THRESHOLDS == pass_cv.PASS_THRESHOLDS and options.REQUIRE_PARTS == quality.REQUIRE_PARTS
    assert options.SHORTFALLS == temp.SHORTFALLS and options.ALLOCATIONS == temp_allocation.ALLOCATIONS
    assert options.RANKINGS == temp_diversity.RANKINGS and options.INIT_LABEL_NUM == temp_difficulty.INIT_LABEL_NUM


def test_parsing_select_options_loads_no_heavy_package():
    """The module imports only the standard library; parsing adds transformers' argument parser (and numpy)."""
    code = ("import sys; heavy = lambda: [m for m in ('pandas', 'numpy', 'torch', 'datasets', 'llamafactory') "
            "if m in sys.modules]; "
            "from data_selection.options.select import SelectOptions; print(heavy()); "
            "from data_selection.command_line import parse_options; "
            "o = parse_options(SelectOptions, ['--name', 'x', '--strategy', 'temp'], 'p', ''); print(o.strategy, heavy())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "temp ['numpy']"]
