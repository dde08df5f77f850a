"""How long a study takes when its independent steps run at once: the critical path and a simulated schedule.

From ``--dry-run``'s per-step GPU-hours (``estimate.py``) and each step's resources (``cluster.py``): a step on
G GPUs of each of N nodes runs ``GPU-hours / (G x N)`` hours. The *critical path* is the longest chain of
dependent steps: no schedule on any number of nodes finishes sooner. The wall time on N nodes comes from a
list schedule (a step starts as soon as its inputs are done and enough GPUs are free; longest remaining chain
first), the sequential figure from running one step at a time as the default executor does.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from llamafactory_ext.study.cluster import ClusterConfig, step_resources
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.estimate import gpu_hours
from llamafactory_ext.study.steps import Step


@dataclass
class Job:
    step: Step
    gpu_hours: float
    gpus: int  # per node
    nodes: int

    @property
    def hours(self) -> float:
        return self.gpu_hours / (self.gpus * self.nodes) if self.gpus else self.gpu_hours


def _index(jobs: list[Job]) -> dict[int, int]:
    """Step object -> its job, by identity: two steps may share a hash (a dynamic arm's stage-0 select is the static
    arm's draw) and still be two jobs, each its own train step's dependency."""
    return {id(j.step): i for i, j in enumerate(jobs)}


def critical_path(jobs: list[Job]) -> list[Job]:
    """The chain of dependent steps with the longest total wall time (``jobs`` in dependency order)."""
    index = _index(jobs)
    finish: list[float] = []
    before: list[int | None] = []
    for job in jobs:
        deps = [index[id(d)] for d in job.step.deps if id(d) in index]
        prev = max(deps, key=lambda i: finish[i], default=None)
        finish.append((finish[prev] if prev is not None else 0.0) + job.hours)
        before.append(prev)
    if not jobs:
        return []
    i: int | None = max(range(len(jobs)), key=lambda k: finish[k])
    path = []
    while i is not None:
        path.append(jobs[i])
        i = before[i]
    return path[::-1]


def _tail(jobs: list[Job]) -> list[float]:
    """Longest chain from each job to the end (its priority in the list schedule)."""
    index = _index(jobs)
    tail = [j.hours for j in jobs]
    for i in range(len(jobs) - 1, -1, -1):
        for d in jobs[i].step.deps:
            if id(d) in index:
                k = index[id(d)]
                tail[k] = max(tail[k], jobs[k].hours + tail[i])
    return tail


def simulate(jobs: list[Job], nodes: int, gpus_per_node: int) -> float:
    """Wall hours of a list schedule of ``jobs`` on ``nodes`` nodes of ``gpus_per_node`` GPUs each."""
    index = _index(jobs)
    tail = _tail(jobs)
    waiting = {i: {index[id(d)] for d in j.step.deps if id(d) in index} for i, j in enumerate(jobs)}
    free = [gpus_per_node] * nodes
    running: list[tuple[float, int, list[tuple[int, int]]]] = []  # (end, job, [(node, gpus)])
    now, finished = 0.0, set()
    while len(finished) < len(jobs):
        ready = sorted((i for i, w in waiting.items() if not w), key=lambda i: -tail[i])
        for i in ready:
            job = jobs[i]
            need_nodes, need = min(job.nodes, nodes), min(job.gpus, gpus_per_node)
            fits = [n for n in range(nodes) if free[n] >= need]
            if need_nodes > 1:  # a multi-node job takes whole nodes
                fits = [n for n in range(nodes) if free[n] == gpus_per_node]
            if len(fits) < need_nodes:
                continue
            take = [(n, need) for n in sorted(fits, key=lambda n: free[n])[:need_nodes]]
            for n, g in take:
                free[n] -= g
            del waiting[i]
            hours = job.gpu_hours / (need * need_nodes) if need else job.gpu_hours  # on fewer nodes: longer
            heapq.heappush(running, (now + hours, i, take))
        if not running:
            raise ValueError("a step fits on no node")  # cannot happen: needs are capped to the node above
        now, i, took = heapq.heappop(running)
        for n, g in took:
            free[n] += g
        finished.add(i)
        for w in waiting.values():
            w.discard(i)
    return now


def plan_jobs(cfg: StudyConfig, steps: list[Step], cluster: ClusterConfig) -> tuple[list[Job], set[str]]:
    jobs, unknown = [], set()
    for step in steps:
        hours = gpu_hours(step, cfg)
        if hours is None:
            unknown.add(step.kind)
        res = step_resources(step, cfg, cluster)
        jobs.append(Job(step, hours or 0.0, res.gpus, res.nodes))
    return jobs, unknown


def schedule_lines(cfg: StudyConfig, steps: list[Step], cluster: ClusterConfig, node_counts=(1, 2, 4, 8)) -> list[str]:
    """``--dry-run``'s lines on the critical path, wall time on N nodes, and the sequential total."""
    todo = [s for s in steps if not s.done]
    jobs, unknown = plan_jobs(cfg, todo, cluster)
    if not jobs:
        return ["schedule: every step is done"]
    gpn = cluster.gpus_per_node if cluster.gpus_per_node else max([cfg.gpus, *(j.gpus for j in jobs)])
    path = critical_path(jobs)
    total = sum(j.gpu_hours for j in jobs)
    path_h = sum(j.hours for j in path)
    lines = [f"schedule of the {len(jobs)} step(s) to run, each with its cluster: resources "
             f"(nodes of {gpn} GPUs):",
             "  critical path: " + " -> ".join(j.step.label for j in path),
             f"    {sum(j.gpu_hours for j in path):,.2f} GPU-hours, {path_h:,.2f} h wall (no number of nodes "
             "finishes sooner)"]
    walls = []
    for n in node_counts:
        wall = simulate(jobs, n, gpn)
        walls.append(f"{n} node{'s' if n > 1 else ''} {wall:,.2f} h")
        if wall <= path_h + 1e-9:
            break
    lines.append("  wall time on " + ", ".join(walls) + " (--executor slurm, or --executor local --gpus "
                 f"{gpn} for one node)")
    sequential = sum(j.hours for j in jobs)
    lines.append(f"  sequential (the default executor, one step at a time): {total:,.2f} GPU-hours, "
                 f"{sequential:,.2f} h wall ({total / gpn:,.2f} h if every step kept all {gpn} GPUs busy)")
    if unknown:
        lines.append(f"  (no estimate for {', '.join(sorted(unknown))}: counted as 0 h)")
    return lines
