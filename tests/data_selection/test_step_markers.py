"""The default marker table of `data-select prune-steps` (data_selection/transforms/steps.py) against LIMOPro's
Table 4 (arXiv 2505.19187), column by column: every phrase the table lists types a step to the table's column,
at the start of a step and after R1's lead-ins, and the methods doc quotes the same columns."""

from __future__ import annotations

import pytest
from helpers import REPO_ROOT

from data_selection.transforms.steps import (
    DEFAULT_PHRASES,
    ERROR_CORRECTION,
    MULTI_METHOD,
    PROGRESSIVE,
    VERIFICATION,
    MarkerTable,
)

# LIMOPro, Table 4 (rule-based markers), as the paper lists them
TABLE4 = {
    PROGRESSIVE: ("Let's solve", "First", "Then", "Next", "Therefore", "We need to", "Given that"),
    VERIFICATION: ("Wait", "Let me check", "Let me verify", "Double-check", "Going back to"),
    MULTI_METHOD: ("Alternatively", "Another way", "Let's try a different approach", "Using another method",
                   "We can also verify"),
    ERROR_CORRECTION: ("This is wrong", "The mistake was", "That's impossible", "This contradicts", "The error is"),
}
CASES = [(phrase, column) for column, phrases in TABLE4.items() for phrase in phrases]
MARKERS = MarkerTable(DEFAULT_PHRASES)


@pytest.mark.parametrize(("phrase", "column"), CASES)
@pytest.mark.parametrize("opening", ["", "Okay, ", "Hmm, so "])
def test_each_table4_phrase_types_its_step_to_the_table_column(phrase, column, opening):
    text = f"{opening}{phrase} the sum 17 + 25 once more. It is 42."
    step_type, marker = MARKERS.match(text)
    assert step_type == column, (text, marker)
    assert marker is not None  # typed by a marker, not left unmarked


@pytest.mark.parametrize(("phrase", "column"), CASES)
def test_no_table4_phrase_is_listed_under_another_column(phrase, column):
    key = phrase.lower()
    for other, phrases in DEFAULT_PHRASES.items():
        if other != column:
            assert key not in {p.lower() for p in phrases}, f"{phrase!r} is listed under {other}, Table 4: {column}"


def test_the_two_phrases_the_defaults_had_misfiled():
    assert MARKERS.classify("Going back to the first equation, x = 3.") == VERIFICATION  # was error correction
    assert MARKERS.classify("We can also verify this by subtraction: 42 - 25 = 17.") == MULTI_METHOD  # was verification
    assert MARKERS.classify("We can verify this by subtraction.") == VERIFICATION  # an R1 phrase the table lacks


def test_the_methods_doc_quotes_table4_column_by_column():
    text = (REPO_ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    section = text[text.index("Table 4"):]
    names = {PROGRESSIVE: "progressive", VERIFICATION: "verification", MULTI_METHOD: "multi-method",
             ERROR_CORRECTION: "error correction"}
    for column, phrases in TABLE4.items():
        quoted = ", ".join(f'"{p}"' for p in phrases)
        assert f"{names[column]}: {quoted}" in section, column
