"""data_selection/scores_table.py: a scoring folder read back, and what a folder that is not one says."""

from __future__ import annotations

import pytest
from score_fixtures import make_scores_dir

from data_selection.command_line import UserError
from data_selection.scores_table import SCORE_COLUMNS, SCORE_READ_COLUMNS, load_scored_pool, load_scores
from data_selection.scoring import merge


def test_a_scoring_folder_reads_back_with_the_read_columns_it_has(tmp_path):
    scores = make_scores_dir(tmp_path, n_rows=20, rejected_rows=(3,))
    table, meta, rejects = load_scores(scores)
    assert list(table.columns) == [c for c in SCORE_READ_COLUMNS if c in table.columns]
    assert {"id", "row", "loss_mean", "truncated"} <= set(table.columns) and len(table) == 19
    assert [r["row"] for r in rejects] == [3] and "pool" in meta
    only, _, _ = load_scores(scores, ("id", "n_tokens_full", "not_a_column"))
    assert list(only.columns) == ["id", "n_tokens_full"]
    pool = load_scored_pool(meta, scores)
    assert len(pool.converted) == 20


def test_the_writer_writes_the_columns_the_table_module_names():  # until merge imports them from here
    assert list(merge.SCORE_COLUMNS) == SCORE_COLUMNS


def test_what_is_not_a_finished_scoring_folder_says_so(tmp_path):
    with pytest.raises(UserError, match="scores folder .* not found"):
        load_scores(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "meta.json").write_text("{}")
    with pytest.raises(UserError, match="scores.parquet not found: is .* a finished `data-select score` output"):
        load_scores(tmp_path / "half")
    with pytest.raises(UserError, match="no 'pool' record"):
        load_scored_pool({}, tmp_path / "half")
