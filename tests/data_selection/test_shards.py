"""The sharded-run engine (:mod:`data_selection.shards`), once for every sharded command: plan and assignment,
identity check and --overwrite, meta.json published by rank 0 and awaited by the others, progress under a lock,
resume after a kill, and the merge by the rank that finds nothing missing. Each command's own tests
(test_scoring, test_score_checkpoints, test_verify, test_prune_steps) check only that it runs on the engine."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from helpers import REPO_ROOT
from shard_fixtures import TOY, run_toy

from data_selection.command_line import UserError
from data_selection.shards.layout import (
    META,
    PROGRESS,
    missing_units,
    pass_shard_path,
    shard_path,
    unit_path,
    units,
)
from data_selection.shards.meta import publish_meta
from data_selection.shards.plan import assign_shards, plan_by_cost
from data_selection.shards.progress import append_progress, read_progress

FIXTURE = REPO_ROOT / "tests" / "shard_fixtures.py"


def _lines(out):
    return [json.loads(x) for x in (out / PROGRESS).read_text().splitlines()]


def test_a_run_merges_once_every_shard_exists_and_a_rerun_does_nothing(tmp_path):
    log = []
    run = run_toy(tmp_path, log=log)
    assert run.pending == log == list(range(4)) and run.missing == [] and run.merged == {"rows": 10}
    table = pd.read_parquet(tmp_path / TOY)
    assert table["row"].tolist() == list(range(10)) and (table["value"] == 10 * table["row"]).all()
    assert [x["shard"] for x in _lines(tmp_path)] == [0, 1, 2, 3] and all(x["rank"] == 0 for x in _lines(tmp_path))
    assert json.loads((tmp_path / META).read_text()) == {"identity": {"job": "toy", "shard_rows": 3}, "num_shards": 4}
    again = run_toy(tmp_path, log=log)
    assert again.pending == [] and log == list(range(4)) and again.merged == {"rows": 10}
    assert len(_lines(tmp_path)) == 4  # no work, no progress line


def test_ranks_share_the_shards_and_only_the_last_one_merges(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    done = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        log = []
        run = run_toy(tmp_path, n_rows=20, passes=2, log=log)
        done += log
        assert run.mine == assign_shards(plan_by_cost(list(range(20)), [r % 4 + 1 for r in range(20)], 3)[1], 2)[rank]
        assert log == run.pending == units(run.mine, 2)  # checkpoint by checkpoint
        assert (run.merged is None) == (rank == 0) and bool(run.missing) == (rank == 0)
    assert sorted(done) == units(list(range(7)), 2)  # every unit once, by one rank
    assert {(x["checkpoint"], x["shard"]) for x in _lines(tmp_path)} == set(done)
    table = pd.read_parquet(tmp_path / TOY)
    assert len(table) == 40 and sorted(table["value"] % 10) == [1] * 20 + [2] * 20


def test_units_paths_and_missing_units(tmp_path):
    assert unit_path(tmp_path, 3) == shard_path(tmp_path, 3) == tmp_path / "shards" / "shard-000003.parquet"
    assert unit_path(tmp_path, (2, 3)) == pass_shard_path(tmp_path, 2, 3) == \
        tmp_path / "shards" / "ckpt-02" / "shard-000003.parquet"
    assert units([4, 1], 0) == [4, 1] and units([1, 4], 2) == [(1, 1), (1, 4), (2, 1), (2, 4)]
    pass_shard_path(tmp_path, 1, 1).parent.mkdir(parents=True)
    pass_shard_path(tmp_path, 1, 1).write_text("")
    assert missing_units(tmp_path, 2, 2) == [(1, 0), (2, 0), (2, 1)]


def test_another_configuration_is_refused_and_overwrite_replaces_it(tmp_path):
    run_toy(tmp_path, identity={"job": "toy", "cutoff": 1})
    before = (tmp_path / TOY).read_bytes()
    with pytest.raises(UserError, match="different configuration .cutoff: 1 -> 2.; refusing to mix"):
        run_toy(tmp_path, identity={"job": "toy", "cutoff": 2})
    assert (tmp_path / TOY).read_bytes() == before and len(_lines(tmp_path)) == 4  # nothing lost
    log = []
    run = run_toy(tmp_path, n_rows=6, identity={"job": "toy", "cutoff": 2}, overwrite=True, log=log)
    assert log == [0, 1] and run.merged == {"rows": 6}  # the old shards were cleared, not taken as done
    assert len(_lines(tmp_path)) == 2 and not shard_path(tmp_path, 2).exists()
    assert json.loads((tmp_path / META).read_text())["identity"]["cutoff"] == 2


def test_shards_without_meta_json_are_refused(tmp_path):
    shard_path(tmp_path, 0).parent.mkdir(parents=True)
    shard_path(tmp_path, 0).write_text("")
    with pytest.raises(UserError, match="holds shards without a meta.json"):
        run_toy(tmp_path)


def test_a_killed_run_resumes_without_redoing_a_shard_and_equals_a_clean_run(tmp_path):
    """SIGKILL a real process mid-run: the finished shards stay, the re-run does the others, each exactly once."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RANK": "0", "WORLD_SIZE": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(FIXTURE), str(killed), "0.15"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((killed / "shards").glob("shard-*.parquet"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list((killed / "shards").glob("shard-*.parquet")))
    assert 3 <= n_before < 12, "the run should have been killed part-way"
    assert not (killed / TOY).exists()
    done = subprocess.run([sys.executable, str(FIXTURE), str(killed), "0"], env=env, capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout)["pending"] == 12 - n_before
    shards = [p["shard"] for p in _lines(killed)]
    # no shard computed twice; a kill between a shard's write and its progress line may leave that one line out
    assert len(set(shards)) == len(shards) and len(shards) in (11, 12) and set(shards) <= set(range(12))
    clean = run_toy(tmp_path / "clean", n_rows=24, shard_rows=2)
    assert clean.merged == {"rows": 24}
    pd.testing.assert_frame_equal(pd.read_parquet(killed / TOY), pd.read_parquet(tmp_path / "clean" / TOY))


def test_two_ranks_started_together_under_overwrite_finish_the_new_configuration(tmp_path):
    """Rank 1 may start before rank 0 clears the old configuration: it must neither take the old shards as done
    nor write one that rank 0 then clears."""
    run_toy(tmp_path, n_rows=24, shard_rows=2, identity={"job": "toy", "v": 1})
    old_values = pd.read_parquet(tmp_path / TOY)["value"].tolist()
    new = json.dumps({"job": "toy", "v": 2})
    procs = [subprocess.Popen([sys.executable, str(FIXTURE), str(tmp_path), "0.05", new], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "RANK": str(r), "WORLD_SIZE": "2"})
             for r in (1, 0)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o["pending"] for o in outs) == 12  # every new shard computed, none skipped as the old run's
    assert any(o["merged"] == {"rows": 24} for o in outs)
    assert json.loads((tmp_path / META).read_text())["identity"]["v"] == 2
    assert pd.read_parquet(tmp_path / TOY)["value"].tolist() == old_values and len(_lines(tmp_path)) == 12


def test_assign_shards_balances_load():
    chars = [100, 90, 80, 10, 10, 10, 5, 5]
    parts = assign_shards(chars, 3)
    assert sorted(k for p in parts for k in p) == list(range(8))
    loads = [sum(chars[k] for k in p) for p in parts]
    assert max(loads) - min(loads) <= max(chars)  # greedy list scheduling's guarantee
    naive = [sum(chars[i:i + 3]) for i in range(0, 8, 3)]  # contiguous split of the sorted list
    assert max(loads) - min(loads) < max(naive) - min(naive)
    assert assign_shards(chars, 3) == parts and assign_shards(chars, 1) == [list(range(8))]


def test_plan_by_cost_puts_the_costliest_rows_first_ties_by_row():
    shards, costs = plan_by_cost([7, 3, 5, 9], [2, 8, 2, 1], 2)
    assert shards == [[3, 5], [7, 9]] and costs == [10, 3]


# -- progress.jsonl --------------------------------------------------------------------------------------------


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


# -- meta.json: rank 0 writes, the others wait -----------------------------------------------------------------


def test_other_ranks_write_no_shard_before_rank_0_has_written_meta(tmp_path):
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
