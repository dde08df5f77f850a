"""``--executor slurm``: every unfinished step of a study becomes one Slurm job, dependencies as ``afterok``.

Only the scheduler's own commands: ``sbatch`` submits, ``squeue`` says what is queued or running, ``scontrol``
what became of a job that left the queue (no ``sacct``: clusters without accounting storage answer nothing),
``scancel`` removes a job whose dependency can never be met. Which steps are done comes from the step folders
alone (``step.json``), as with the local executor.

The job ids submitted for each step are kept in ``OUT/slurm/NAME/jobs.json`` (written atomically, under a
lock, so two submissions never interleave). Submitting again submits exactly the steps that are neither done nor
queued/running, each with ``--dependency=afterok:`` on the live jobs of the steps it reads from; the report
job (``--run-step report``) follows the last of them. Scripts are kept in ``OUT/slurm/NAME/jobs/``, logs in
``OUT/slurm/NAME/logs/`` (``STUDY.step-arm-seed-N-HASH-JOBID.log``).
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
from llamafactory_ext.study.cluster import ClusterConfig, Resources, step_resources
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.executors import jobscript
from llamafactory_ext.study.run_one import REPORT_ID
from llamafactory_ext.study.steps import Step

ALIVE = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
         "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}
NEVER = "DependencyNeverSatisfied"


@dataclass
class JobState:
    state: str  # PENDING, RUNNING, ... (squeue) or COMPLETED, FAILED, CANCELLED, TIMEOUT ... (scontrol)
    reason: str = ""
    elapsed: str = ""

    @property
    def alive(self) -> bool:
        return self.state in ALIVE and self.reason != NEVER


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise UserError(f"{argv[0]} not found: --executor slurm needs the Slurm client commands on PATH")
    return subprocess.run(argv, capture_output=True, text=True)


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


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])


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
    return REPORT_ID if step is None else step.hash


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


def _last_job(state: dict, key: str) -> str | None:
    jobs = state["steps"].get(key, {}).get("jobs") or []
    return jobs[-1] if jobs else None


def submit(cfg: StudyConfig, steps: list[Step], cluster: ClusterConfig, report: bool = True,
           log: Callable[[str], None] = print) -> dict[str, list[str]]:
    """Submit what is neither done nor alive; print step -> status/job id. Returns {what: [labels]}."""
    summary: dict[str, list[str]] = {"done": [], "alive": [], "submitted": []}
    rows: list[tuple[str, str, str]] = []
    with locked(cfg):
        state = load_state(cfg)
        known = queue() if state["steps"] else {}
        live: dict[str, str] = {}  # step id -> live job id
        stale: list[str] = []
        done_jobs: set[str] = set()  # jobs of steps that are done (a dependency on them is met)
        targets: list[Step | None] = [*steps, None] if report else list(steps)
        for step in targets:
            key = step_id(step)
            label = "report" if step is None else step.label
            if step is not None and step.done:
                done_jobs.update(state["steps"].get(key, {}).get("jobs") or [])
                summary["done"].append(label)
                rows.append((label, "done", ""))
                continue
            last = _last_job(state, key)
            job = known.get(last) if last else None
            waits_on = state.get("after", {}).get(last, []) if last else []
            if job is not None and job.alive and all(a in live.values() or a in done_jobs for a in waits_on):
                live[key] = last
                summary["alive"].append(label)
                rows.append((label, job.state.lower(), last))
                continue
            if job is not None:  # queued behind a failed dependency: it can never start
                stale.append(last)
                log(f"[study] {label}: job {last} waits on a job that failed; cancelling it")
            if step is None and not summary["submitted"] and not summary["alive"] and \
                    (cfg.report_dir / "report.md").is_file():
                rows.append((label, "done", ""))
                continue
            deps = steps if step is None else step.deps
            after = [live[d.hash] for d in deps if d.hash in live]
            res = step_resources(step, cfg, cluster)
            name, script, text = script_for(cfg, step, res)
            write_text_atomic(script, text)
            (script.parent.parent / "logs").mkdir(parents=True, exist_ok=True)
            job_id = sbatch(script, after)
            live[key] = job_id
            entry = state["steps"].setdefault(key, {"label": label, "jobs": []})
            entry["jobs"].append(job_id)
            state.setdefault("after", {})[job_id] = after
            write_json_atomic(slurm_dir(cfg) / "jobs.json", state)
            summary["submitted"].append(label)
            rows.append((label, "submitted" + (f" after {','.join(after)}" if after else ""), job_id))
        scancel(stale)
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
    pending = {s.hash for s in todo}
    shown: set[str] = set()
    for step in [*todo, *([None] if report else [])]:
        deps = steps if step is None else step.deps
        after = [d.label for d in deps if d.hash in pending]
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
