"""``study STUDY.yaml --status``: each step as done / queued / running / failed / to run, submitting nothing.

Done comes from the step folders (``step.json``); for a step submitted with ``--executor slurm`` the rest comes
from the scheduler: ``squeue`` for jobs still queued or running, ``scontrol`` for one that left the queue
(while slurmctld remembers it). A failed step shows its job id, elapsed time and the tail of its log. Without a
Slurm submission a step whose folder has a log but no record is *failed* (its last local run did not finish).
A job Slurm cancelled or holds because a job it depends on failed (reason ``DependencyNeverSatisfied``) never
ran: its step is *blocked*, shown with the failed step(s) behind which it waits, and counted apart from the
failures; submitting again resubmits it after the failed step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from data_selection.command_line import UserError
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.executors import slurm
from llamafactory_ext.study.steps import Step

TAIL_LINES = 12


def _tail(path: Path, n: int = TAIL_LINES) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _behind(deps: list[Step], failed_behind: dict[str, list[str]]) -> list[str]:
    """The failed steps behind the given dependencies (a blocked dependency passes on its own)."""
    return list(dict.fromkeys(label for d in deps for label in failed_behind.get(slurm.step_id(d), [])))


def step_statuses(cfg: StudyConfig, steps: list[Step]) -> list[tuple[Step | None, str, str, str, list[str]]]:
    """(step or None for the report, status, job id, elapsed, log tail) per step, in plan order."""
    state = slurm.load_state(cfg)
    unfinished = {slurm.step_id(s) for s in steps if not s.done}
    submitted = {slurm.step_id(s) for s in [*steps, None] if slurm.jobs_of(state, s)}
    if not (cfg.report_dir / "report.md").is_file():
        unfinished.add(slurm.REPORT_ID)
    known, unreachable = {}, ""
    if submitted & unfinished:
        try:
            known = slurm.queue()
        except UserError as err:  # e.g. looking from a machine without the Slurm commands
            unreachable = str(err)
    rows = []
    failed_behind: dict[str, list[str]] = {}  # step id -> the failed steps it is (or would be) blocked behind
    for step in [*steps, None]:
        key = slurm.step_id(step)
        jobs = slurm.jobs_of(state, step)
        job_id = jobs[-1] if jobs else ""
        done = (cfg.report_dir / "report.md").is_file() if step is None else step.done
        if done:
            rows.append((step, "done", job_id, "", []))
            continue
        local_log = None if step is None else step.dir / "log.txt"
        if not job_id:
            failed = local_log is not None and local_log.is_file()
            rows.append((step, "failed" if failed else "to run", "", "", _tail(local_log) if failed else []))
            continue
        if unreachable:
            rows.append((step, "submitted", job_id, "", [f"scheduler not reachable: {unreachable}"]))
            continue
        job = known.get(job_id) or slurm.job_info(job_id)
        if job is not None and job.state in slurm.ALIVE and job.reason != slurm.NEVER:
            status = "queued" if job.state == "PENDING" else "running"
            rows.append((step, status, job_id, job.elapsed, []))
            continue
        if job is not None and job.reason == slurm.NEVER:  # never ran: a job it depends on failed
            behind = _behind(steps if step is None else step.deps, failed_behind)
            failed_behind[key] = behind
            rows.append((step, f"blocked ({'behind ' + ', '.join(behind) if behind else slurm.NEVER})", job_id,
                         "", []))
            continue
        if step is not None:
            failed_behind[key] = [step.label]
        what = f"failed ({job.state.lower()}{', ' + job.reason if job.reason not in ('', 'None') else ''})" \
            if job is not None else "failed"
        job_log = Path(str(slurm.job_files(cfg, step)[2]).replace("%j", job_id))
        tail = _tail(local_log) if local_log is not None and local_log.is_file() else _tail(job_log)
        rows.append((step, what, job_id, job.elapsed if job else "", [f"{job_log}:", *tail]))
    return rows


def print_status(cfg: StudyConfig, steps: list[Step], log: Callable[[str], None] = print) -> int:
    rows = [("report" if s is None else s.label, status, job_id, elapsed, tail)
            for s, status, job_id, elapsed, tail in step_statuses(cfg, steps)]
    width = [max(len(r[i]) for r in [("step", "status", "job", "elapsed"), *rows]) for i in range(3)]
    log(f"{'step':<{width[0]}}  {'status':<{width[1]}}  {'job':>{width[2]}}  elapsed".rstrip())
    for label, status, job_id, elapsed, tail in rows:
        log(f"{label:<{width[0]}}  {status:<{width[1]}}  {job_id:>{width[2]}}  {elapsed}".rstrip())
        for line in tail:
            log(f"      | {line}")
    counts = Counter(r[1].split(" (")[0] for r in rows)
    line = "[study] " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if counts["blocked"]:
        line += " (blocked: never ran, behind a failed step; submitting again resubmits them after it)"
    log(line)
    return 0
