"""progress.jsonl: appended under a lock by every rank, read back one line per shard by the merge."""

from __future__ import annotations

import json
import multiprocessing as mp

from data_selection.scoring.layout import PROGRESS, append_progress, read_progress


def _append_many(out: str, rank: int) -> None:
    for k in range(200):
        append_progress(out, {"shard": rank * 1000 + k, "rank": rank, "seconds": 0.5, "pad": "x" * 3000})


def test_a_shard_redone_after_a_kill_counts_once_and_checkpoints_are_kept_apart(tmp_path):
    append_progress(tmp_path, {"shard": 0, "seconds": 9.0})
    append_progress(tmp_path, {"shard": 1, "seconds": 1.0})
    append_progress(tmp_path, {"shard": 0, "seconds": 2.0})  # the re-run of shard 0
    append_progress(tmp_path, {"checkpoint": 1, "shard": 0, "seconds": 4.0})
    got = {(x.get("checkpoint"), x["shard"]): x["seconds"] for x in read_progress(tmp_path)}
    assert len(read_progress(tmp_path)) == 3
    assert got == {(None, 0): 2.0, (None, 1): 1.0, (1, 0): 4.0}  # the last line of shard 0 wins
    assert read_progress(tmp_path / "missing") == []


def test_ranks_appending_together_leave_only_whole_lines(tmp_path):
    procs = [mp.get_context("spawn").Process(target=_append_many, args=(str(tmp_path), r)) for r in range(3)]
    for p in procs:
        p.start()
    seen = 0
    while any(p.is_alive() for p in procs):
        seen = max(seen, len(read_progress(tmp_path)))  # never half a line, whatever moment it reads
    for p in procs:
        p.join()
        assert p.exitcode == 0
    lines = [json.loads(x) for x in (tmp_path / PROGRESS).read_text().splitlines()]
    assert len(lines) == len(read_progress(tmp_path)) == 600 and seen <= 600


def test_other_ranks_write_no_shard_before_rank_0_has_written_meta(tmp_path):
    import threading
    import time

    import pytest

    from data_selection.command_line import UserError
    from data_selection.scoring.layout import META, publish_meta

    publish_meta(tmp_path / "r0", {"k": 1}, 0)  # rank 0 never waits: it writes meta.json
    assert (tmp_path / "r0" / META).read_text().strip().startswith("{")
    done = threading.Event()
    t = threading.Thread(target=lambda: (publish_meta(tmp_path, {"identity": {"a": 1}}, 1), done.set()))
    t.start()
    time.sleep(0.6)
    assert not done.is_set()  # rank 1 is still waiting: no meta.json yet
    (tmp_path / META).write_text('{"identity": {"a": 1}}')
    t.join(5)
    assert done.is_set()
    with pytest.raises(UserError, match="waited 0 s for rank 0 .*found no meta.json"):
        publish_meta(tmp_path / "never", {}, 1, timeout_s=0.3)


def test_under_overwrite_other_ranks_wait_for_this_runs_meta_not_the_old_one(tmp_path):
    """--overwrite onto another configuration's folder: its meta.json is there before rank 0 clears it."""
    import threading
    import time

    import pytest

    from data_selection.command_line import UserError
    from data_selection.scoring.layout import META, publish_meta

    new_meta = {"identity": {"model": "m", "cutoff_len": 512, "keys": ("a", "b")}, "num_shards": 3}
    (tmp_path / META).write_text('{"identity": {"model": "m", "cutoff_len": 256, "keys": ["a", "b"]}}')
    done = threading.Event()
    t = threading.Thread(target=lambda: (publish_meta(tmp_path, new_meta, 1), done.set()))
    t.start()
    time.sleep(0.6)
    assert not done.is_set()  # the old configuration's meta.json does not release rank 1
    (tmp_path / META).write_text("{trunc")  # a torn read is not this run's identity either
    time.sleep(0.4)
    assert not done.is_set()
    publish_meta(tmp_path, new_meta, 0)  # rank 0, after clearing the old files (tuples read back as lists)
    t.join(5)
    assert done.is_set()
    (tmp_path / META).write_text('{"identity": {"model": "other"}}')
    with pytest.raises(UserError, match="found another configuration's meta.json"):
        publish_meta(tmp_path, new_meta, 2, timeout_s=0.3)
