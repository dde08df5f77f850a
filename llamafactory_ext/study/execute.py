"""Run a study's steps in order: skip finished ones, run the rest as subprocesses, record each when it succeeds.

Each command's output goes to ``<step>/log.txt``; the console gets one line per step and, while a long step
runs, a heartbeat every 30 s with the elapsed time and the step's latest output line (training loss, scoring
progress…). A failed step stops the study with its log's tail; finished steps stay finished.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from data_selection.atomic import write_json_atomic
from data_selection.command_line import UserError
from llamafactory_ext.study.steps import Step

OUR_PROGRAMS = ("data-select", "llamafactory-ext", "llamafactory-cli", "torchrun")
HEARTBEAT_S = 30.0


def resolve_program(argv: list[str]) -> list[str]:
    """Our console scripts from this environment (beside the interpreter), whatever the PATH says."""
    if argv and argv[0] in OUR_PROGRAMS:
        here = Path(sys.executable).parent / argv[0]
        found = str(here) if here.exists() else shutil.which(argv[0])
        if found is None:
            raise UserError(f"{argv[0]} not found next to {sys.executable} nor on PATH")
        return [found, *argv[1:]]
    return argv


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [s.strip() for s in re.split(r"[\r\n]", text) if s.strip()]
    return lines[-1][:160] if lines else ""


def run_step(step: Step, log: Callable[[str], None], heartbeat: float = HEARTBEAT_S,
             extra_env: dict[str, str] | None = None) -> float:
    """Run one step's command; returns its wall time. Raises UserError (with the log's tail) on failure.

    ``extra_env`` (e.g. the GPU slice of a concurrent run) reaches the command but not its recorded form.
    """
    step.dir.mkdir(parents=True, exist_ok=True)
    log_path = step.dir / "log.txt"
    env = {**os.environ, **(extra_env or {}), **step.env}
    start = time.time()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat):
            log(f"    … {time.time() - start:,.0f} s  {_last_line(log_path)}")

    with open(log_path, "w", encoding="utf-8") as out:
        out.write(f"$ {step.command}\n")
        out.flush()
        proc = subprocess.Popen(resolve_program(step.argv), stdout=out, stderr=subprocess.STDOUT, env=env)
        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            rc = proc.wait()
        except BaseException:  # Ctrl-C: stop the child too, leave the step unfinished
            proc.terminate()
            proc.wait()
            raise
        finally:
            done.set()
    seconds = time.time() - start
    if rc != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise UserError(f"step '{step.label}' failed (exit {rc}) after {seconds:.0f} s; full log: {log_path}\n{tail}")
    write_json_atomic(step.record, {
        "hash": step.hash, "kind": step.kind, "label": step.label, "arm": step.arm, "seed": step.seed,
        "key": step.key, "deps": [d.hash for d in step.deps], "command": step.command, "seconds": round(seconds, 1),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    return seconds


def steps_until(steps: list[Step], until: str | None) -> list[Step]:
    """The steps up to the last one of kind ``until`` (all of them without it)."""
    last = max((i for i, s in enumerate(steps) if s.kind == until), default=len(steps) - 1) if until else len(steps) - 1
    return steps[: last + 1]


def run_steps(steps: list[Step], until: str | None = None, log: Callable[[str], None] = print) -> dict[str, int]:
    """Run what is not finished, in order; with ``until`` stop after the last step of that kind."""
    counts = {"skipped": 0, "ran": 0}
    for i, step in enumerate(steps_until(steps, until), 1):
        if step.done:
            counts["skipped"] += 1
            log(f"[study] ({i}/{len(steps)}) done already: {step.label}  ({step.dir})")
            continue
        log(f"[study] ({i}/{len(steps)}) {step.label}\n    $ {step.command}")
        seconds = run_step(step, log)
        counts["ran"] += 1
        log(f"    ok in {seconds:,.0f} s")
    return counts
