"""``--executor local --gpus N``: run a study's independent steps at once on one machine's GPUs.

A step starts as soon as every step it reads from is done and enough GPUs are free; it gets its own
``CUDA_VISIBLE_DEVICES`` slice (a CPU-only step an empty one) and at most ``jobs`` steps run together. Each step
runs through the same ``run_step`` as the sequential executor, so its log, its record and what counts as done
are the same. A failed step stops new starts; the running ones finish (and are recorded), then the study stops
with the failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from data_selection.command_line import UserError
from llamafactory_ext.study.execute import run_step, steps_until
from llamafactory_ext.study.steps import Step


def device_ids(gpus: int) -> list[str]:
    """The first ``gpus`` devices this process may use (those of CUDA_VISIBLE_DEVICES if it is set)."""
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if visible:
        if len(visible) < gpus:
            raise UserError(f"--gpus {gpus}, but CUDA_VISIBLE_DEVICES names only {len(visible)}: {','.join(visible)}")
        return visible[:gpus]
    return [str(i) for i in range(gpus)]


def run_parallel(steps: list[Step], gpus: int, need: Callable[[Step], int], jobs: int = 0,
                 until: str | None = None, log: Callable[[str], None] = print,
                 runner: Callable[..., float] = run_step) -> dict[str, int]:
    """Run the unfinished steps (up to the last of kind ``until``) on ``gpus`` GPUs, ``jobs`` at a time
    (default: one per GPU, at least one); ``need(step)`` is a step's GPU count (capped at ``gpus``)."""
    todo = steps_until(steps, until)
    pending = [s for s in todo if not s.done]
    counts = {"skipped": len(todo) - len(pending), "ran": 0}
    jobs = jobs or max(1, gpus)
    free = device_ids(gpus)
    order = {d: i for i, d in enumerate(free)}  # slices stay in device order (4,5 rather than 5,4)
    running: dict[Future, tuple[Step, list[str]]] = {}
    failures: list[BaseException] = []
    log(f"[study] {counts['skipped']} step(s) done already; {len(pending)} to run on {gpus} GPU(s), "
        f"at most {jobs} at once")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            if not failures:
                for step in list(pending):
                    n = min(need(step), gpus)
                    if len(running) >= jobs or len(free) < n or not all(d.done for d in step.deps):
                        continue
                    devices, free = free[:n], free[n:]
                    pending.remove(step)
                    cvd = ",".join(devices)
                    log(f"[study] start {step.label} (CUDA_VISIBLE_DEVICES={cvd or '-'})\n    $ {step.command}")
                    running[pool.submit(runner, step, log, extra_env={"CUDA_VISIBLE_DEVICES": cvd})] = (step, devices)
            if not running:
                break  # failed, or waiting on a step outside the plan
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                step, devices = running.pop(fut)
                free = sorted([*free, *devices], key=order.__getitem__)
                err = fut.exception()
                if err is not None:
                    failures.append(err)
                    log(f"[study] FAILED {step.label}")
                else:
                    counts["ran"] += 1
                    log(f"[study] ok {step.label} in {fut.result():,.0f} s")
    if failures:
        if isinstance(failures[0], UserError):
            raise failures[0]
        raise UserError(f"a step failed: {failures[0]}") from failures[0]
    return counts
