"""Study executors without a cluster: the cluster: section, job scripts (multi-node included), the critical path in
--dry-run, --run-step, --status, and `--executor local --gpus N` concurrency on stand-in GPU slots (fake steps
that record when they ran and which CUDA_VISIBLE_DEVICES they got)."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

from data_selection.command_line import UserError
from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.study.cluster import cluster_config, step_resources
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.executors import jobscript
from llamafactory_ext.study.executors.local_parallel import run_parallel
from llamafactory_ext.study.plan import build_plan, known_strategies
from llamafactory_ext.study.run_one import find_step
from llamafactory_ext.study.schedule import Job, critical_path, simulate
from llamafactory_ext.study.steps import Step

ZPD = "studies/zpd_qwen3b.yaml"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def zpd_with(tmp_path: Path, cluster: dict) -> Path:
    raw = yaml.safe_load(Path(ZPD).read_text(encoding="utf-8"))
    path = tmp_path / "zpd.yaml"
    path.write_text(yaml.safe_dump({**raw, "out": str(tmp_path / "out"), "cluster": cluster}, sort_keys=False), encoding="utf-8")
    return path


def test_the_commented_cluster_example_of_zpd_qwen3b_is_valid(tmp_path):
    text = Path(ZPD).read_text(encoding="utf-8")
    block = text[text.index("# cluster:"):]
    example = yaml.safe_load("\n".join(line[2:] for line in block.splitlines() if line.startswith("# ")))
    cfg = load_study(zpd_with(tmp_path, example["cluster"]), known_strategies())
    cluster = cluster_config(cfg)
    by_label = {s.label: s for s in build_plan(cfg)}
    train = step_resources(by_label["train zpd seed 42"], cfg, cluster)
    assert (train.nodes, train.gpus, train.time, train.partition) == (2, 8, "10:00:00", "gpu")  # arms.zpd.train
    assert step_resources(by_label["train random seed 42"], cfg, cluster).time == "08:00:00"  # steps.train
    ev = step_resources(by_label["eval zpd seed 42"], cfg, cluster)
    assert (ev.nodes, ev.gpus, ev.mem, ev.sbatch) == (1, 1, "64G", ["--constraint=h200"])
    assert step_resources(by_label["select zpd seed 42"], cfg, cluster).gpus == 0
    assert step_resources(by_label["pool scores"], cfg, cluster).gpus == 8
    assert step_resources(None, cfg, cluster).gpus == 0  # the report job


@pytest.mark.parametrize(("cluster", "message"), [
    ({"partiton": "gpu"}, "cluster: unknown key 'partiton' (did you mean 'partition'?)"),
    ({"steps": {"trian": {}}}, "cluster.steps: unknown key 'trian' (did you mean 'train'?)"),
    ({"arms": {"nope": {}}}, "cluster.arms: unknown key 'nope'"),
    ({"steps": {"train": {"nodes": 0}}}, "cluster.steps.train.nodes must be a whole number >= 1"),
    ({"gpus": 4}, "gpus is set per step kind"),
    ({"gpus_per_node": -1}, "gpus_per_node must be a whole number >= 0"),
])
def test_cluster_section_mistakes_name_the_key(tmp_path, cluster, message):
    path = zpd_with(tmp_path, cluster)
    with pytest.raises(UserError) as err:
        cluster_config(load_study(path, known_strategies()))
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_cpu_only_cluster_asks_no_step_for_gpus(tmp_path):
    cfg = load_study(zpd_with(tmp_path, {"gpus_per_node": 0}), known_strategies())
    cluster = cluster_config(cfg)
    assert {step_resources(s, cfg, cluster).gpus for s in build_plan(cfg)} == {0}


def test_multi_node_job_script_starts_one_launcher_per_node_with_torchrun_variables(tmp_path):
    cfg = load_study(zpd_with(tmp_path, {"steps": {"train": {"nodes": 2}}, "time": "1:00:00"}), known_strategies())
    cluster = cluster_config(cfg)
    train = next(s for s in build_plan(cfg) if s.kind == "train")
    res = step_resources(train, cfg, cluster)
    text = jobscript.render("zpd.train", tmp_path / "log-%j", tmp_path, res, cfg.source, train.hash)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --time=1:00:00", "#SBATCH --kill-on-invalid-dep=yes", "export NPROC_PER_NODE=8",
                 "export NNODES=$SLURM_NNODES", 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1'):
        assert line in text
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert "NODE_RANK=$SLURM_NODEID" in srun and f"--run-step {train.hash}" in srun and jobscript.python() in srun
    single = jobscript.render("zpd.eval", tmp_path / "log-%j", tmp_path, res.__class__(gpus=1), cfg.source, "x")
    assert "srun" not in single and "NNODES" not in single and "#SBATCH --gpus-per-node=1" in single


def test_dry_run_prints_the_critical_path_and_wall_time_on_n_nodes(capsys):
    assert lfx_main(["study", ZPD, "--dry-run"]) == 0
    out = capsys.readouterr().out
    est = yaml.safe_load(Path(ZPD).read_text(encoding="utf-8"))["estimate"]
    steps = build_plan(load_study(ZPD, known_strategies()))
    n_train, n_eval = sum(s.kind == "train" for s in steps), sum(s.kind == "eval" for s in steps)
    score = est["pool_rows"] * est["tokens_per_row"] / est["score_tokens_per_s"] / 3600
    train = 15_000 * est["tokens_per_row"] * 3 / est["train_tokens_per_s"] / 3600
    ev = est["eval_gpu_hours"]
    assert "critical path: pool scores -> select random seed 42 -> train random seed 42 -> eval random seed 42" in out
    path_wall = score / 8 + train / 8 + ev  # score and train on the study's 8 GPUs, evaluation on one
    assert f"{score + train + ev:,.2f} GPU-hours, {path_wall:,.2f} h wall" in out
    total = score + n_train * train + n_eval * ev
    assert f"sequential (the default executor, one step at a time): {total:,.2f} GPU-hours" in out
    assert f"({total / 8:,.2f} h if every step kept all 8 GPUs busy)" in out
    walls = out.split("wall time on ")[1].split(" (")[0]
    hours = [float(part.split()[-2]) for part in walls.split(", ")]
    # on 8 nodes every training gets a node of its own except those beyond the 8th, which wait one training
    waves = -(-n_train // 8)
    assert walls.startswith("1 node ") and hours == sorted(hours, reverse=True) and hours[-1] == pytest.approx(
        path_wall + (waves - 1) * train / 8, abs=0.01)


def test_dry_run_with_the_slurm_executor_shows_job_scripts(capsys):
    assert lfx_main(["study", ZPD, "--dry-run", "--executor", "slurm"]) == 0
    out = capsys.readouterr().out
    assert out.count("#!/bin/bash") == 5  # one full script per kind: score, eval, select, train, report
    steps = build_plan(load_study(ZPD, known_strategies()))
    assert out.count("--run-step ") == len(steps) + 1 and "--run-step report" in out  # + the report job
    assert "zpd_qwen3b.train-zpd-seed-43-" in out and "(sbatch --dependency=afterok: the jobs of select zpd seed 43)" in out


def _fake(kind: str, label: str, deps: list[Step], root: Path, seconds: float = 0.6) -> Step:
    """A stand-in step: sleeps, and records its start, end and CUDA_VISIBLE_DEVICES in its folder."""
    step = Step(kind, label, {"label": label}, deps, root)
    code = textwrap.dedent(f"""
        import json, os, time
        start = time.time(); time.sleep({seconds}); end = time.time()
        with open({str(step.dir / 'ran.json')!r}, 'w') as f:
            json.dump({{'start': start, 'end': end, 'cvd': os.environ['CUDA_VISIBLE_DEVICES']}}, f)
    """)
    step.argv = [sys.executable, "-c", code]
    return step


def _ran(step: Step) -> dict:
    return json.loads((step.dir / "ran.json").read_text())


def test_local_executor_runs_independent_steps_at_once_on_their_own_gpu_slices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    score = _fake("score", "score", [], tmp_path)
    evals = [_fake("eval", f"eval {i}", [score], tmp_path) for i in range(4)]
    train = _fake("train", "train", [evals[0]], tmp_path)  # needs all 4: waits until every eval is off the GPUs
    cpu = _fake("select", "select", [score], tmp_path)
    need = {"score": 2, "eval": 1, "train": 4, "select": 0}
    counts = run_parallel([score, *evals, cpu, train], 4, lambda s: need[s.kind], log=lambda _: None)
    assert counts == {"skipped": 0, "ran": 7}
    s, e, t, c = _ran(score), [_ran(x) for x in evals], _ran(train), _ran(cpu)
    assert len(s["cvd"].split(",")) == 2 and set(s["cvd"].split(",")) <= {"4", "5", "6", "7"}
    assert all(x["start"] >= s["end"] for x in [*e, c])  # nothing before the step it reads from
    assert max(x["start"] for x in e) < min(x["end"] for x in e)  # the four evaluations overlapped ...
    assert sorted(x["cvd"] for x in e) == ["4", "5", "6", "7"]  # ... each on its own GPU
    assert c["cvd"] == "" and t["cvd"] == "4,5,6,7" and t["start"] >= max(x["end"] for x in e)
    assert all(x.done for x in [score, *evals, cpu, train])  # recorded as the sequential executor records
    assert run_parallel([score, *evals, cpu, train], 4, lambda s: need[s.kind], log=lambda _: None) == {
        "skipped": 7, "ran": 0}


def test_local_executor_defaults_to_one_step_at_a_time_and_stops_on_a_failure(tmp_path):
    a, b = _fake("eval", "a", [], tmp_path), _fake("eval", "b", [], tmp_path)
    bad = Step("eval", "bad", {}, [], tmp_path)
    bad.argv = [sys.executable, "-c", "raise SystemExit(3)"]
    after = _fake("eval", "after bad", [bad], tmp_path)
    with pytest.raises(UserError, match="step 'bad' failed"):
        run_parallel([a, b, bad, after], 0, lambda s: 1, log=lambda _: None)
    ra, rb = _ran(a), _ran(b)
    assert ra["end"] <= rb["start"] and a.done and b.done and not bad.done and not after.done


def test_critical_path_and_schedule_on_a_diamond():
    def step(label, deps):
        return Step("train", label, {"l": label}, deps, Path("/nowhere"))

    a = step("a", [])
    b, c = step("b", [a]), step("c", [a])
    d = step("d", [b, c])
    jobs = [Job(a, 8, 8, 1), Job(b, 16, 8, 1), Job(c, 4, 1, 1), Job(d, 8, 8, 1)]  # hours: 1, 2, 4, 1
    assert [j.step.label for j in critical_path(jobs)] == ["a", "c", "d"]
    assert simulate(jobs, 1, 8) == pytest.approx(8.0)  # b needs the whole node, so it cannot overlap c: 1 + 4 + 2 + 1
    assert simulate(jobs, 2, 8) == pytest.approx(6.0)  # b and c side by side: 1 + 4 + 1 = the critical path


def _mini_run(tmp_path: Path) -> tuple[Path, list[Step]]:
    """A two-step study made of stand-ins: `--run-step` and `--status` read the real plan of a study file."""
    raw = {"name": "tiny", "out": str(tmp_path / "out"), "model": "some/model", "template": "qwen", "cutoff_len": 64,
           "pool": {"dataset": "pool.jsonl"}, "subset_size": 2, "seeds": [1], "arms": {"random": {"strategy": "random"}},
           "train": {"recipe": "yaml_recipes/demo_zpd.yaml"}, "eval": {"suite": "math_500"},
           "analysis": {"baseline": ""}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path, build_plan(load_study(path, known_strategies()))


def test_run_step_refuses_a_step_whose_inputs_are_not_done_and_status_says_what_is_left(tmp_path, capsys):
    path, steps = _mini_run(tmp_path)
    select = next(s for s in steps if s.kind == "select")
    assert lfx_main(["study", str(path), "--run-step", select.hash]) == 1
    assert "its inputs are not done: pool scores" in capsys.readouterr().err
    assert lfx_main(["study", str(path), "--run-step", "0123456789ab"]) == 1
    assert "no step '0123456789ab'" in capsys.readouterr().err
    score = steps[0]
    score.dir.mkdir(parents=True)
    (score.dir / "log.txt").write_text("$ data-select score ...\nTraceback: out of memory\n")
    assert lfx_main(["study", str(path), "--status"]) == 0
    out = capsys.readouterr().out
    assert "pool scores" in out and "failed" in out and "| Traceback: out of memory" in out
    assert "select random seed 1" in out and "to run" in out and "1 failed" in out


def test_status_of_submitted_steps_without_the_slurm_commands_says_so(tmp_path, capsys, monkeypatch):
    path, steps = _mini_run(tmp_path)
    state = tmp_path / "out" / "slurm" / "tiny" / "jobs.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"steps": {steps[0].hash: {"label": steps[0].label, "jobs": ["41"]}}}))
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue here
    assert lfx_main(["study", str(path), "--status"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pool scores\s+submitted\s+41", out) and "scheduler not reachable: squeue not found" in out


# -- --executor slurm against stand-in Slurm commands (sbatch, squeue, scancel, scontrol on PATH) -----------------

FAKE_SLURM = r'''
import json, os, sys
from pathlib import Path
root = Path(os.environ["FAKE_SLURM"])
cmd, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(root / "calls.jsonl", "a") as f:
    f.write(json.dumps([cmd, *args]) + "\n")
if cmd == "sbatch" and "--test-only" in args:
    script = sys.stdin.read()
    with open(root / "tested.jsonl", "a") as f:
        f.write(json.dumps(script) + "\n")
    if "--partition=nosuchpart" in script:
        sys.exit(print("sbatch: error: invalid partition specified: nosuchpart\nallocation failure: Invalid "
                       "partition name specified", file=sys.stderr) or 1)
    sys.exit(print("sbatch: Job 1 to start at 2026-12-05T01:00:00 using 1 processors on nodes n1", file=sys.stderr))
if cmd == "sbatch":
    counter = root / "next_id"
    n = int(counter.read_text()) if counter.is_file() else 100
    counter.write_text(str(n + 1))
    if str(n - 99) == os.environ.get("FAKE_SBATCH_FAIL_AT"):  # the n-th real submission fails
        sys.exit(print("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job "
                       "submit limit, user's size and/or time limits)", file=sys.stderr) or 1)
    print(n)
elif cmd == "scontrol":
    jobs = json.loads((root / "jobs.json").read_text()) if (root / "jobs.json").is_file() else {}
    if args[-1] not in jobs:
        sys.exit(print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr) or 1)
    print(f"JobId={args[-1]} " + jobs[args[-1]])
'''


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Stand-ins for the four Slurm commands; their calls land in calls.jsonl, --test-only scripts in tested.jsonl."""
    root = tmp_path / "fake_slurm"
    root.mkdir()
    for cmd in ("sbatch", "squeue", "scancel", "scontrol"):
        (root / cmd).write_text(f"#!{sys.executable}\n{FAKE_SLURM}")
        (root / cmd).chmod(0o755)
    monkeypatch.setenv("FAKE_SLURM", str(root))
    monkeypatch.setenv("PATH", f"{root}:{os.environ['PATH']}")
    return root


def _calls(root: Path, cmd: str) -> list[list[str]]:
    path = root / "calls.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [c[1:] for c in map(json.loads, lines) if c[0] == cmd]


def _with_cluster(path: Path, cluster: dict) -> Path:
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "cluster": cluster}))
    return path


def test_a_resource_slurm_refuses_submits_nothing_and_names_the_step_kind_and_value(tmp_path, fake_slurm, capsys):
    path, _ = _mini_run(tmp_path)
    _with_cluster(path, {"gpus_per_node": 0, "time": "00:20:00", "steps": {"train": {"partition": "nosuchpart"}}})
    assert lfx_main(["study", str(path), "--executor", "slurm"]) == 1
    err = capsys.readouterr().err
    assert "Slurm refuses the resources of 1 of 2 distinct request(s)" in err and "nothing was submitted" in err
    assert "train step(s) (1 job(s), e.g. train random seed 1): sbatch: error: invalid partition specified: " \
           "nosuchpart" in err
    assert "set by cluster.steps.train: partition=nosuchpart" in err and "--partition=nosuchpart" in err
    # one check per distinct request: score/select/eval/report share the defaults, train differs; nothing queued
    assert [c for c in _calls(fake_slurm, "sbatch")] == [["--test-only"]] * 2
    tested = [json.loads(line) for line in (fake_slurm / "tested.jsonl").read_text().splitlines()]
    assert sum("--partition=nosuchpart" in t for t in tested) == 1 and all("--time=00:20:00" in t for t in tested)
    assert not (tmp_path / "out" / "slurm" / "tiny" / "jobs.json").exists()


def test_one_check_per_distinct_request_and_then_every_job(tmp_path, fake_slurm, capsys):
    path, steps = _mini_run(tmp_path)
    _with_cluster(path, {"gpus_per_node": 0, "steps": {"train": {"time": "1:00:00"}, "eval": {"time": "2:00:00"}}})
    assert lfx_main(["study", str(path), "--executor", "slurm"]) == 0
    sb = _calls(fake_slurm, "sbatch")
    assert sb[:3] == [["--test-only"]] * 3 and len(sb) == 3 + len(steps) + 1  # 3 distinct requests, then 5 jobs
    assert "5 job(s) submitted" in capsys.readouterr().out


def test_a_submission_failing_midway_cancels_what_this_call_queued(tmp_path, fake_slurm, capsys, monkeypatch):
    path, steps = _mini_run(tmp_path)
    _with_cluster(path, {"gpus_per_node": 0})
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "3")  # the training's sbatch: after pool scores and the selection
    assert lfx_main(["study", str(path), "--executor", "slurm"]) == 1
    err = capsys.readouterr().err
    assert "train random seed 1 (train step): sbatch" in err and "job submit limit" in err
    assert "cancelled the 2 job(s) this submission had queued: 100 (pool scores), 101 (select random seed 1); " \
           "removed them from" in err
    assert _calls(fake_slurm, "scancel") == [["100", "101"]]
    state = json.loads((tmp_path / "out" / "slurm" / "tiny" / "jobs.json").read_text())
    assert state["steps"] == {} and state.get("after", {}) == {}
    # nothing of it is left: the next call submits every step again (and only the checks and those jobs)
    monkeypatch.delenv("FAKE_SBATCH_FAIL_AT")
    assert lfx_main(["study", str(path), "--executor", "slurm"]) == 0
    state = json.loads((tmp_path / "out" / "slurm" / "tiny" / "jobs.json").read_text())
    assert sorted(v["label"] for v in state["steps"].values()) == sorted([s.label for s in steps] + ["report"])
    assert all(len(v["jobs"]) == 1 for v in state["steps"].values())


def test_status_shows_steps_behind_a_cancelled_job_as_blocked_in_aligned_columns(tmp_path, fake_slurm, capsys):
    path, steps = _mini_run(tmp_path)
    score, select, train, ev = steps
    state = {"steps": {s.hash: {"label": s.label, "jobs": [j]} for s, j in ((select, "7"), (train, "8"), (ev, "9"))}}
    state["steps"]["report"] = {"label": "report", "jobs": ["10"]}
    (tmp_path / "out" / "slurm" / "tiny").mkdir(parents=True)
    (tmp_path / "out" / "slurm" / "tiny" / "jobs.json").write_text(json.dumps(state))
    never = "JobState=CANCELLED Reason=DependencyNeverSatisfied RunTime=00:00:00"
    (fake_slurm / "jobs.json").write_text(json.dumps({
        "7": "JobState=COMPLETED Reason=None RunTime=00:00:09", "8": "JobState=CANCELLED Reason=None RunTime=00:01:02",
        "9": never, "10": never}))
    for step in (score, select):  # done
        step.record.parent.mkdir(parents=True, exist_ok=True)
        step.record.write_text(json.dumps({"hash": step.hash}))
    assert score.done and select.done
    assert lfx_main(["study", str(path), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines if not line.startswith(("      |", "[study]"))]
    assert re.match(r"train random seed 1\s+failed \(cancelled\)\s+8\s+00:01:02$", table[3]), table
    assert re.match(r"eval random seed 1\s+blocked \(behind train random seed 1\)\s+9$", table[4]), table
    assert re.match(r"report\s+blocked \(behind train random seed 1\)\s+10$", table[5]), table
    # columns line up: every status starts, and every job id ends, in the same column as the header's
    status_col = table[0].index("status")
    job_end = table[0].index("job") + len("job")
    assert all(line[status_col - 2:status_col] == "  " and line[status_col] != " " for line in table[1:])
    assert [line.ljust(job_end)[job_end - 1] for line in table[1:]] == [" ", "7", "8", "9", "0"]
    assert lines[-1].startswith("[study] 2 done, 1 failed, 2 blocked (blocked: never ran, behind a failed step")
    assert "1 failed" in lines[-1] and lines[-1].count("failed") == 2  # the cancelled training only (and the hint)


def test_a_first_submission_failing_cancels_nothing_and_says_so(tmp_path, fake_slurm, capsys, monkeypatch):
    path, _ = _mini_run(tmp_path)
    _with_cluster(path, {"gpus_per_node": 0})
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "1")
    assert lfx_main(["study", str(path), "--executor", "slurm"]) == 1
    assert "pool scores (score step): sbatch" in (err := capsys.readouterr().err)
    assert "no job of this submission had been queued" in err and _calls(fake_slurm, "scancel") == []


def test_a_dynamic_arm_and_its_static_twin_are_two_jobs_each_behind_its_own_select(tmp_path, fake_slurm, capsys):
    """zpd and zpd_dynamic draw stage 0 alike, so their select steps share a hash but not a folder: each is its own
    job (keyed by folder), each training waits on its own select, and `--run-step` resolves each script's id."""
    path, _ = _mini_run(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["arms"] = {"zpd": {"strategy": "zpd"}, "zpd_dynamic": {"strategy": "zpd", "dynamic": {"every": "epoch"}}}
    raw["analysis"] = {"baseline": "", "reference": "zpd"}
    path.write_text(yaml.safe_dump({**raw, "cluster": {"gpus_per_node": 0}}))
    steps = {s.label: s for s in build_plan(load_study(path, known_strategies()))}
    static, dynamic = steps["select zpd seed 1"], steps["select zpd_dynamic seed 1"]
    assert static.hash == dynamic.hash and static.dir != dynamic.dir
    assert lfx_main(["study", str(path), "--executor", "slurm"]) == 0
    state = json.loads((tmp_path / "out" / "slurm" / "tiny" / "jobs.json").read_text())
    job = {v["label"]: v["jobs"][-1] for v in state["steps"].values()}
    assert len(job) == len(steps) + 1 and job["select zpd seed 1"] != job["select zpd_dynamic seed 1"]
    assert state["after"][job["train zpd_dynamic seed 1"]] == [job["select zpd_dynamic seed 1"]]
    assert state["after"][job["train zpd seed 1"]] == [job["select zpd seed 1"]]
    scripts = {p.name: p.read_text() for p in (tmp_path / "out" / "slurm" / "tiny" / "jobs").iterdir()}
    run_ids = [re.search(r"--run-step (\S+)", t).group(1) for t in scripts.values() if "select-zpd" in t]
    assert sorted(run_ids) == sorted([static.dir.name, dynamic.dir.name])
    cfg = load_study(path, known_strategies())
    plan = build_plan(cfg)
    assert find_step(cfg, plan, dynamic.dir.name).label == "select zpd_dynamic seed 1"
    with pytest.raises(UserError, match=f"step hash '{static.hash}' names 2 steps"):
        find_step(cfg, plan, static.hash)
