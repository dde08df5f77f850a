"""``--executor slurm``: every unfinished step of a study becomes one Slurm job, dependencies as ``afterok``.

Only the scheduler's own commands: ``sbatch`` submits, ``squeue`` says what is queued or running, ``scontrol``
what became of a job that left the queue (no ``sacct``: clusters without accounting storage answer nothing),
``scancel`` removes a job whose dependency can never be met. Which steps are done comes from the step folders
alone (``step.json``), as with the local executor.

The job ids submitted for each step are kept in ``OUT/slurm/NAME/jobs.json`` (written atomically, under a
lock, so two submissions never interleave). Submitting again submits exactly the steps that are neither done nor
queued/running, each with ``--dependency=afterok:`` on the live jobs of the steps it reads from; the report
job (``--run-step report``) follows the last of them. Before the first ``sbatch``, each distinct resource request
of those jobs (per step kind and arm, from the ``cluster:`` section) is put to ``sbatch --test-only``: a partition,
time, GPU count ... that Slurm refuses stops the call with nothing submitted, naming the step kinds and the value.
Should a submission still fail midway (e.g. a QOS limit on queued jobs), the jobs this call had queued are
cancelled and removed from ``jobs.json``, and the error lists them. Scripts are kept in ``OUT/slurm/NAME/jobs/``,
logs in ``OUT/slurm/NAME/logs/`` (``STUDY.step-arm-seed-N-HASH-JOBID.log``).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import shutil
import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from data_selection.atomic import write_json_atomic, write_text_atomic
from data_selection.command_line import UserError
from llamafactory_ext.study.cluster import REPORT_KIND, ClusterConfig, Resources, step_resources
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.executors import jobscript
from llamafactory_ext.study.run_one import REPORT_ID
from llamafactory_ext.study.steps import Step

ALIVE = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
         "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}
NEVER = "DependencyNeverSatisfied"
# options of every job script that are no resource request (left out where a refused request is shown)
NOT_ASKED = tuple(f"#SBATCH --{o}" for o in ("chdir=", "ntasks-per-node=", "kill-on-invalid-dep=", "export="))


@dataclass
class JobState:
    state: str  # PENDING, RUNNING, ... (squeue) or COMPLETED, FAILED, CANCELLED, TIMEOUT ... (scontrol)
    reason: str = ""
    elapsed: str = ""

    @property
    def alive(self) -> bool:
        return self.state in ALIVE and self.reason != NEVER


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise UserError(f"{argv[0]} not found: --executor slurm needs the Slurm client commands on PATH")
    return subprocess.run(argv, capture_output=True, text=True, input=stdin)


def queue() -> dict[str, JobState]:
    """This user's jobs in the queue: id -> state (squeue)."""
    out = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%r|%M"])
    if out.returncode != 0:
        raise UserError(f"squeue failed: {out.stderr.strip()}")
    jobs = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            jobs[parts[0]] = JobState(parts[1], parts[2], parts[3])
    return jobs


def job_info(job_id: str) -> JobState | None:
    """A job that left the queue, while slurmctld still remembers it (MinJobAge): its final state."""
    out = _run(["scontrol", "show", "job", "-o", job_id])
    if out.returncode != 0 or "JobState=" not in out.stdout:
        return None
    fields = dict(kv.split("=", 1) for kv in out.stdout.split() if "=" in kv)
    return JobState(fields.get("JobState", "?"), fields.get("Reason", ""), fields.get("RunTime", ""))


def sbatch(script: Path, after: list[str]) -> str:
    argv = ["sbatch", "--parsable"]
    if after:
        argv.append("--dependency=afterok:" + ":".join(after))
    out = _run([*argv, str(script)])
    if out.returncode != 0:
        raise UserError(f"sbatch {script} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip().split(";")[0]


def scancel(job_ids: list[str]) -> str:
    """Cancel ``job_ids``; scancel's complaint ("" when none)."""
    if not job_ids:
        return ""
    out = _run(["scancel", *job_ids])
    return "" if out.returncode == 0 else (out.stderr.strip() or out.stdout.strip() or f"exit {out.returncode}")


def slurm_dir(cfg: StudyConfig) -> Path:
    return cfg.out.resolve() / "slurm" / cfg.name


def load_state(cfg: StudyConfig) -> dict:
    path = slurm_dir(cfg) / "jobs.json"
    if not path.is_file():
        return {"steps": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); delete it to forget the submitted jobs") from None


@contextmanager
def locked(cfg: StudyConfig):
    folder = slurm_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def step_id(step: Step | None) -> str:
    """A step's id in jobs.json and on ``--run-step``: its folder's name (kind, label and hash). Not the hash alone:
    two steps can share one (a dynamic arm's stage-0 select is the static arm's draw, into its own folder), and each
    must be its own job."""
    return REPORT_ID if step is None else step.dir.name


def jobs_of(state: dict, step: Step | None) -> list[str]:
    """The job ids submitted for ``step`` (jobs.json written before the ids were folder names keyed them by hash;
    such an entry still counts when its label is the step's)."""
    entry = state["steps"].get(step_id(step))
    if entry is None and step is not None:
        old = state["steps"].get(step.hash) or {}
        entry = old if old.get("label") == step.label else None
    return list((entry or {}).get("jobs") or [])


def job_files(cfg: StudyConfig, step: Step | None) -> tuple[str, Path, Path]:
    """(job name, script path, log pattern with %j) of a step, or of the report job for ``None``."""
    label = "report" if step is None else step.label
    name = jobscript.job_name(cfg.name, label)
    stem = name if step is None else f"{name}-{step.hash}"
    folder = slurm_dir(cfg)
    return name, folder / "jobs" / f"{stem}.sh", folder / "logs" / f"{stem}-%j.log"


def script_for(cfg: StudyConfig, step: Step | None, res: Resources) -> tuple[str, Path, Path]:
    name, script, log = job_files(cfg, step)
    return name, script, jobscript.render(name, log, Path.cwd(), res, cfg.source.resolve(), step_id(step))


def _last_job(state: dict, step: Step | None) -> str | None:
    jobs = jobs_of(state, step)
    return jobs[-1] if jobs else None


def _kind(step: Step | None) -> str:
    return REPORT_KIND if step is None else step.kind


def _overrides(step: Step | None, cluster: ClusterConfig) -> list[str]:
    """Where a step's resources differ from the section's defaults: ``cluster.steps.train: partition=x``."""
    kind = _kind(step)
    found = [("cluster.steps." + kind, cluster.steps.get(kind) or {})]
    if step is not None and step.arm in cluster.arms:
        found.append((f"cluster.arms.{step.arm}.{kind}", (cluster.arms[step.arm] or {}).get(kind) or {}))
    return [f"{where}: " + ", ".join(f"{k}={v}" for k, v in given.items()) for where, given in found if given]


def check_resources(cfg: StudyConfig, todo: list[Step | None], cluster: ClusterConfig) -> None:
    """``sbatch --test-only`` once per distinct resource set of the jobs about to be submitted (Slurm's own check of
    partition, time, GPUs, memory ... against this cluster; it queues nothing). Any refusal raises one UserError that
    names each refused set's step kinds, its options and Slurm's reason, before anything is submitted."""
    groups: dict[tuple[str, ...], list[Step | None]] = {}
    for step in todo:
        lines = jobscript.sbatch_lines(f"{cfg.name}.check", Path("/dev/null"), Path.cwd(),
                                       step_resources(step, cfg, cluster))
        groups.setdefault(tuple(lines[2:]), []).append(step)  # without --job-name and --output
    refused = []
    for lines, members in groups.items():
        script = "\n".join(["#!/bin/bash", f"#SBATCH --job-name={cfg.name}.check", "#SBATCH --output=/dev/null",
                            *lines, "true", ""])
        out = _run(["sbatch", "--test-only"], stdin=script)
        if out.returncode == 0:
            continue
        kinds = list(dict.fromkeys(_kind(s) for s in members))
        why = "; ".join(line.strip() for line in (out.stderr.strip() or out.stdout.strip()).splitlines()) or \
            f"exit {out.returncode}"
        asked = [o.removeprefix("#SBATCH ") for o in lines if not o.startswith(NOT_ASKED)]
        origin = list(dict.fromkeys(o for s in members for o in _overrides(s, cluster)))
        refused.append(f"{', '.join(kinds)} step(s) ({len(members)} job(s), e.g. "
                       f"{'report' if members[0] is None else members[0].label}): {why}\n"
                       f"    asked: {' '.join(asked)}"
                       + (f"\n    set by {'; '.join(origin)}" if origin else ""))
    if refused:
        raise UserError(f"{cfg.source}: Slurm refuses the resources of {len(refused)} of {len(groups)} distinct "
                        f"request(s) (sbatch --test-only); nothing was submitted. Fix the cluster: section:\n  "
                        + "\n  ".join(refused))


def withdraw(cfg: StudyConfig, state: dict, new: list[tuple[str, str]]) -> str:
    """Cancel the jobs ``new`` ([(job id, label)]) and drop them from jobs.json; a sentence saying what was done."""
    if not new:
        return "no job of this submission had been queued"
    ids = [job for job, _ in new]
    complaint = scancel(ids)
    for key in list(state["steps"]):
        entry = state["steps"][key]
        entry["jobs"] = [j for j in entry.get("jobs") or [] if j not in ids]
        if not entry["jobs"]:
            del state["steps"][key]
    for job in ids:
        state.get("after", {}).pop(job, None)
    write_json_atomic(slurm_dir(cfg) / "jobs.json", state)
    what = ", ".join(f"{job} ({label})" for job, label in new)
    return (f"cancelled the {len(new)} job(s) this submission had queued: {what}; removed them from "
            f"{slurm_dir(cfg) / 'jobs.json'}" + (f" (scancel: {complaint})" if complaint else ""))


def submit(cfg: StudyConfig, steps: list[Step], cluster: ClusterConfig, report: bool = True,
           log: Callable[[str], None] = print) -> dict[str, list[str]]:
    """Submit what is neither done nor alive; print step -> status/job id. Returns {what: [labels]}.

    Every distinct resource request is checked first (:func:`check_resources`): a value Slurm refuses submits
    nothing. A submission that fails midway cancels what this call queued and removes it from jobs.json."""
    summary: dict[str, list[str]] = {"done": [], "alive": [], "submitted": []}
    rows: list[list[str]] = []
    with locked(cfg):
        state = load_state(cfg)
        known = queue() if state["steps"] else {}
        live: dict[str, str] = {}  # step id -> live job id
        stale: list[tuple[str, str]] = []  # (job, label) queued behind a failed dependency
        done_jobs: set[str] = set()  # jobs of steps that are done (a dependency on them is met)
        todo: list[tuple[Step | None, int]] = []  # what to submit, and its row
        for step in [*steps, None] if report else list(steps):
            key = step_id(step)
            label = "report" if step is None else step.label
            if step is not None and step.done:
                done_jobs.update(jobs_of(state, step))
                summary["done"].append(label)
                rows.append([label, "done", ""])
                continue
            last = _last_job(state, step)
            job = known.get(last) if last else None
            waits_on = state.get("after", {}).get(last, []) if last else []
            if job is not None and job.alive and all(a in live.values() or a in done_jobs for a in waits_on):
                live[key] = last
                summary["alive"].append(label)
                rows.append([label, job.state.lower(), last])
                continue
            if job is not None:  # queued behind a failed dependency: it can never start
                stale.append((last, label))
            if step is None and not todo and not summary["alive"] and (cfg.report_dir / "report.md").is_file():
                rows.append([label, "done", ""])
                continue
            todo.append((step, len(rows)))
            rows.append([label, "", ""])
        check_resources(cfg, [s for s, _ in todo], cluster)
        for job, label in stale:
            log(f"[study] {label}: job {job} waits on a job that failed; cancelling it")
        scancel([job for job, _ in stale])
        new: list[tuple[str, str]] = []
        for step, row in todo:
            key, label = step_id(step), rows[row][0]
            deps = steps if step is None else step.deps
            after = [live[step_id(d)] for d in deps if step_id(d) in live]
            name, script, text = script_for(cfg, step, step_resources(step, cfg, cluster))
            write_text_atomic(script, text)
            (script.parent.parent / "logs").mkdir(parents=True, exist_ok=True)
            try:
                job_id = sbatch(script, after)
            except UserError as err:
                raise UserError(f"{label} ({_kind(step)} step): {err}\n[study] {withdraw(cfg, state, new)}") from None
            new.append((job_id, label))
            live[key] = job_id
            entry = state["steps"].setdefault(key, {"label": label, "jobs": []})
            entry["jobs"].append(job_id)
            state.setdefault("after", {})[job_id] = after
            write_json_atomic(slurm_dir(cfg) / "jobs.json", state)
            summary["submitted"].append(label)
            rows[row][1:] = ["submitted" + (f" after {','.join(after)}" if after else ""), job_id]
    width = max(len(r[0]) for r in rows)
    log(f"{'step':<{width}}  {'job':>8}  status")
    for label, status, job in rows:
        log(f"{label:<{width}}  {job:>8}  {status}")
    log(f"[study] {len(summary['submitted'])} job(s) submitted, {len(summary['alive'])} still queued/running, "
        f"{len(summary['done'])} step(s) done; logs in {slurm_dir(cfg) / 'logs'}; "
        f"see: llamafactory-ext study {cfg.source} --status")
    return summary


def dry_run_scripts(cfg: StudyConfig, steps: list[Step], cluster: ClusterConfig, report: bool = True,
                    log: Callable[[str], None] = print) -> None:
    """``--dry-run --executor slurm``: the job script each unfinished step would get, and its dependencies."""
    todo = [s for s in steps if not s.done]
    pending = {step_id(s) for s in todo}
    shown: set[str] = set()
    for step in [*todo, *([None] if report else [])]:
        deps = steps if step is None else step.deps
        after = [d.label for d in deps if step_id(d) in pending]
        name, script, text = script_for(cfg, step, step_resources(step, cfg, cluster))
        if step is None and after:
            after = ["every step above"]
        log(f"\n# {script}" + (f"   (sbatch --dependency=afterok: the jobs of {', '.join(after)})" if after else ""))
        kind = "report" if step is None else step.kind
        if kind in shown:
            log(f"#   as the {kind} script above, with --run-step {step_id(step)}")
        else:
            shown.add(kind)
            log(text)
