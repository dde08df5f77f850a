"""A miniature study through `--executor slurm` on a real one-node Slurm (slurm_up.sh / slurm_down.sh): the jobs'
start and end times respect the dependencies, a cancelled job and only what it blocked are resubmitted, and the
report equals the local executor's report of the same study; a partition Slurm refuses for one step kind submits
nothing, and --status calls the steps behind a cancelled job blocked."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO_ROOT

from llamafactory_ext.study.cluster import cluster_config, step_resources
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.executors.slurm import job_files, script_for, step_id
from llamafactory_ext.study.plan import build_plan, known_strategies

sys.path.insert(0, str(REPO_ROOT / "tests" / "llamafactory_ext"))  # the miniature study of test_study.py
from test_study import MINI  # noqa: E402

HERE = Path(__file__).parent
# 1 seed, base vs random: data -> score -> select -> train -> eval beside data -> eval base, then the report
ARMS = {"base": {}, "random": {"strategy": "random"}}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node cluster on localhost for this module; skipped (with the reason) where the daemons cannot start."""
    folder = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(["bash", str(HERE / "slurm_up.sh"), str(folder)], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        subprocess.run(["bash", str(HERE / "slurm_down.sh"), str(folder)], capture_output=True)
        pytest.skip(f"no local Slurm cluster (slurm_up.sh exit {up.returncode}): {up.stderr.strip()[-600:]}")
    conf = re.search(r"SLURM_CONF=(\S+)", up.stdout).group(1)
    yield {**os.environ, "SLURM_CONF": conf, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(["bash", str(HERE / "slurm_down.sh"), str(folder)], capture_output=True, timeout=120)


def _study(tmp_path: Path, model: Path, name: str) -> Path:
    cfg = {**copy.deepcopy(MINI), "model": str(model), "out": str(tmp_path / name), "seeds": [1], "arms": ARMS,
           "analysis": {"reference": "random", "baseline": "base", "draws": 500},
           "cluster": {"gpus_per_node": 0, "cpus": 1, "time": "00:20:00"}}  # CPU jobs, two at a time on 2 CPUs
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _study_cmd(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "llamafactory_ext.cli", "study", str(path), *args]


def _queue(env) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j"], env=env, capture_output=True, text=True, check=True)
    return {line.split("|")[0]: line.split("|")[1] for line in out.stdout.splitlines() if line}


def _jobs(out: Path, name: str) -> dict[str, dict]:
    return json.loads((out / "slurm" / name / "jobs.json").read_text())["steps"]


def _submitted(stdout: str) -> set[str]:
    """Labels of the rows the submit table marks as submitted."""
    rows = [re.match(r"(.+?)\s+(\d+)\s+submitted", line) for line in stdout.splitlines()]
    return {m.group(1).strip() for m in rows if m}


def _wait(predicate, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _times(log: Path) -> tuple[float, float]:
    text = log.read_text()
    start = float(re.search(r"\[job\] start (\S+)", text).group(1))
    end = float(re.search(r"\[job\] end (\S+) exit 0", text).group(1))
    return start, end


@pytest.mark.slow
def test_study_on_slurm_orders_resumes_and_reports_as_the_local_executor(slurm, tmp_path, tiny_qwen_dir, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # recipes are named relative to the repository root
    local = _study(tmp_path, tiny_qwen_dir, "local")
    ran = subprocess.run(_study_cmd(local), cwd=REPO_ROOT, env=slurm, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]

    path = _study(tmp_path, tiny_qwen_dir, "mini")
    out = tmp_path / "mini"
    first = subprocess.run(_study_cmd(path, "--executor", "slurm"), cwd=REPO_ROOT, env=slurm, capture_output=True,
                           text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    labels = ["demo pool", "pool scores", "eval base seed 1", "select random seed 1", "train random seed 1",
              "eval random seed 1", "report"]
    assert _submitted(first.stdout) == set(labels)  # every step, and returned at once
    jobs = _jobs(out, "mini")
    by_label = {v["label"]: v["jobs"][-1] for v in jobs.values()}

    # cancel the training while it runs: it, its evaluation and the report are what is left to submit
    victim = by_label["train random seed 1"]
    _wait(lambda: _queue(slurm).get(victim) == "RUNNING", 600, "the training to run")
    subprocess.run(["scancel", victim], env=slurm, check=True)
    behind = [by_label["eval random seed 1"], by_label["report"]]
    _wait(lambda: not {victim, *behind} & set(_queue(slurm)), 60, "the cancelled job and those behind it to leave")
    status = subprocess.run(_study_cmd(path, "--status"), cwd=REPO_ROOT, env=slurm, capture_output=True, text=True)
    assert re.search(rf"train random seed 1\s+failed \(cancelled.*{victim}", status.stdout), status.stdout
    for label in ("eval random seed 1", "report"):
        assert re.search(rf"{label}\s+blocked \(behind train random seed 1\)", status.stdout), status.stdout
    assert "1 failed, 2 blocked" in status.stdout, status.stdout
    again = subprocess.run(_study_cmd(path, "--executor", "slurm"), cwd=REPO_ROOT, env=slurm, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    resubmitted = {"train random seed 1", "eval random seed 1", "report"}
    assert _submitted(again.stdout) == resubmitted, again.stdout
    jobs = _jobs(out, "mini")
    assert {v["label"]: len(v["jobs"]) for v in jobs.values()} == {
        label: 2 if label in resubmitted else 1 for label in labels}

    report = out / "reports" / "mini"
    _wait(lambda: (report / "summary.json").is_file() and not _queue(slurm), 900, "the report job")
    final = subprocess.run(_study_cmd(path, "--status"), cwd=REPO_ROOT, env=slurm, capture_output=True, text=True)
    assert "[study] 7 done" in final.stdout, final.stdout

    # dependency order, from the successful jobs' own start/end stamps
    cfg = load_study(path, known_strategies())
    steps = build_plan(cfg)
    jobs = _jobs(out, "mini")

    def stamps(step):
        log = Path(str(job_files(cfg, step)[2]).replace("%j", jobs[step_id(step)]["jobs"][-1]))
        return _times(log)

    for step in [*steps, None]:
        start, _ = stamps(step)
        for dep in steps if step is None else step.deps:
            assert start >= stamps(dep)[1], f"{step.label if step else 'report'} started before {dep.label} ended"
    assert all(s.done for s in steps)

    # the same report as the local executor's: every per-problem score and every interval
    ours, theirs = (json.loads((d / "reports" / n / "summary.json").read_text()) for d, n in
                    ((out, "mini"), (tmp_path / "local", "mini")))
    assert ours["tasks"] == theirs["tasks"] and ours["tasks"]
    pd.testing.assert_frame_equal(pd.read_csv(report / "per_problem.csv"),
                                  pd.read_csv(tmp_path / "local" / "reports" / "mini" / "per_problem.csv"))


@pytest.mark.slow
def test_multi_node_job_script_runs_its_launcher_through_srun(slurm, tmp_path, monkeypatch):
    """The srun branch of a multi-node script, on this one node (sbatch --nodes=1 overrides the script's 2)."""
    monkeypatch.chdir(REPO_ROOT)
    path = _study(tmp_path, Path("some/model"), "multi")
    raw = yaml.safe_load(path.read_text())
    raw["cluster"]["steps"] = {"data": {"nodes": 2}}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_study(path, known_strategies())
    data = build_plan(cfg)[0]
    res = step_resources(data, cfg, cluster_config(cfg))
    name, script, text = script_for(cfg, data, res)
    assert "#SBATCH --nodes=2" in text and "srun " in text
    script.parent.mkdir(parents=True)
    (script.parent.parent / "logs").mkdir()
    script.write_text(text)
    job = subprocess.run(["sbatch", "--parsable", "--nodes=1", str(script)], env=slurm, capture_output=True,
                         text=True, check=True).stdout.strip()
    _wait(lambda: job not in _queue(slurm), 300, "the job to end")
    log = Path(str(script.parent.parent / "logs" / script.stem) + f"-{job}.log").read_text()
    assert data.done, log
    assert "[job] 1 node(s) of 1 process(es), master localhost:" in log and "(node rank 0)" in log
    assert re.search(r"\[job\] end \S+ exit 0", log)


@pytest.mark.slow
def test_a_partition_slurm_refuses_for_one_step_kind_submits_nothing(slurm, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    path = _study(tmp_path, Path("some/model"), "badpart")
    raw = yaml.safe_load(path.read_text())
    raw["cluster"]["steps"] = {"train": {"partition": "nosuchpart"}}  # every other kind: the default partition
    path.write_text(yaml.safe_dump(raw))
    before = _queue(slurm)
    ran = subprocess.run(_study_cmd(path, "--executor", "slurm"), cwd=REPO_ROOT, env=slurm, capture_output=True,
                         text=True)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "nothing was submitted" in ran.stderr and "train step(s) (1 job(s), e.g. train random seed 1)" in \
        ran.stderr and "invalid partition specified: nosuchpart" in ran.stderr, ran.stderr
    assert "set by cluster.steps.train: partition=nosuchpart" in ran.stderr
    assert set(_queue(slurm)) <= set(before)  # no job: not the demo pool, the pool scores, the selection ...
    assert not (tmp_path / "badpart" / "slurm").exists() or not (tmp_path / "badpart" / "slurm" / "mini" /
                                                                 "jobs.json").exists()


@pytest.mark.slow
def test_status_shows_the_steps_behind_a_cancelled_job_as_blocked(slurm, tmp_path, monkeypatch):
    """Every job held an hour (--begin), the demo pool cancelled: Slurm cancels what depends on it
    (--kill-on-invalid-dep, reason DependencyNeverSatisfied); --status calls those blocked, not failed."""
    monkeypatch.chdir(REPO_ROOT)
    path = _study(tmp_path, Path("some/model"), "blocked")
    raw = yaml.safe_load(path.read_text())
    raw["cluster"]["sbatch"] = ["--begin=now+1hour"]
    path.write_text(yaml.safe_dump(raw))
    ran = subprocess.run(_study_cmd(path, "--executor", "slurm"), cwd=REPO_ROOT, env=slurm, capture_output=True,
                         text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    by_label = {v["label"]: v["jobs"][-1] for v in _jobs(tmp_path / "blocked", "mini").values()}
    try:
        subprocess.run(["scancel", by_label["demo pool"]], env=slurm, check=True)
        # everything but the demo pool depends on it; Slurm cancels those at its next scheduling pass
        _wait(lambda: not set(by_label.values()) & set(_queue(slurm)), 60, "the dependent jobs to be cancelled")
        status = subprocess.run(_study_cmd(path, "--status"), cwd=REPO_ROOT, env=slurm, capture_output=True,
                                text=True)
    finally:
        subprocess.run(["scancel", *by_label.values()], env=slurm, capture_output=True)
    out = status.stdout
    assert re.search(rf"demo pool\s+failed \(cancelled[,)].*\s{by_label['demo pool']}\s", out), out
    for label in ("pool scores", "eval base seed 1", "select random seed 1", "train random seed 1",
                  "eval random seed 1", "report"):
        assert re.search(rf"{label}\s+blocked \(behind demo pool\)\s+{by_label[label]}\b", out), (label, out)
    assert "[study] 1 failed, 6 blocked" in out, out
