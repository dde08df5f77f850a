"""``study STUDY.yaml --run-step ID``: run one step of the plan, as a Slurm job does (``executors/jobscript.py``).

``ID`` is a step's folder name (what the job scripts pass), its hash when no other step shares it, or ``report``. The step runs through the executor's own
``run_step``: a step is done when its command exited 0 and its record is written, whoever ran it. A step
already done is not run again (a re-queued job is harmless); one whose inputs are not done is refused. On a
multi-node job the ranks above 0 (``NODE_RANK``) run the command too, logging to ``log.nodeR.txt``, and
only rank 0 writes the record.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from data_selection.command_line import UserError
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.execute import resolve_program, run_step
from llamafactory_ext.study.report import write_report
from llamafactory_ext.study.results import study_results
from llamafactory_ext.study.steps import Step

REPORT_ID = "report"


def find_step(cfg: StudyConfig, steps: list[Step], step_id: str) -> Step:
    by_folder = [s for s in steps if s.dir.name == step_id]
    by_hash = [s for s in steps if s.hash == step_id]
    if by_folder or len(by_hash) == 1:
        return (by_folder or by_hash)[0]
    if by_hash:  # e.g. a dynamic arm's stage-0 select and the static arm's: same draw, two folders
        raise UserError(f"{cfg.source}: step hash {step_id!r} names {len(by_hash)} steps "
                        f"({', '.join(s.dir.name for s in by_hash)}); give the folder name")
    raise UserError(f"{cfg.source}: no step {step_id!r} in this study's plan (was the study changed after the job "
                    "was submitted? submit again)")


def write_study_report(cfg: StudyConfig, steps: list[Step], wall_seconds: float | None) -> None:
    results = study_results([(s.arm, s.seed, s.dir) for s in steps if s.kind == "eval"])
    write_report(cfg, steps, results, wall_seconds)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def run_one(cfg: StudyConfig, steps: list[Step], step_id: str, log: Callable[[str], None] = print) -> int:
    if step_id == REPORT_ID:
        missing = [s.label for s in steps if not s.done]
        if missing:
            raise UserError(f"the report needs every step done; not done: {', '.join(missing)}")
        write_study_report(cfg, steps, None)
        log(f"[study] report: {cfg.report_dir / 'report.md'}")
        return 0
    step = find_step(cfg, steps, step_id)
    if step.done:
        log(f"[study] done already: {step.label} ({step.dir})")
        return 0
    missing = [d.label for d in step.deps if not d.done]
    if missing:
        raise UserError(f"{step.label}: its inputs are not done: {', '.join(missing)}")
    # scancel / a time limit send SIGTERM: leave like Ctrl-C, so that run_step stops the command it started
    signal.signal(signal.SIGTERM, _terminated)
    rank = int(os.environ.get("NODE_RANK", "0") or 0)
    log(f"[study] {step.label} (node rank {rank})\n    $ {step.command}")
    if rank > 0:
        step.dir.mkdir(parents=True, exist_ok=True)
        with open(step.dir / f"log.node{rank}.txt", "w", encoding="utf-8") as out:
            rc = subprocess.call(resolve_program(step.argv), stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, **step.env})
        return rc
    seconds = run_step(step, log)
    log(f"    ok in {seconds:,.0f} s")
    return 0
