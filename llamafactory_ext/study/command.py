"""``llamafactory-ext study STUDY.yaml``: score → select → train → evaluate → compare, resumable, one report.

``--dry-run`` prints every command with its status (done / to run), the estimated GPU-hours per step, and the
power statement (expected half-width of every paired difference, :mod:`llamafactory_ext.study.power`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies
from llamafactory_ext.study.steps import KINDS


@dataclass
class StudyOptions:
    config: list[str] = field(default_factory=list, metadata={"help": "The study YAML (see studies/demo.yaml)."})
    dry_run: bool = field(default=False, metadata={
        "help": "Print every step's command, whether it is done, and estimated GPU-hours; run nothing."})
    until: str = field(default="", metadata={
        "help": "Stop after the last step of this kind (the rest runs on the next invocation).",
        "choices": ("", *KINDS)})
    skip_doctor: bool = field(default=False, metadata={
        "help": "Do not run `llamafactory-ext doctor STUDY.yaml`'s checks before the first step (they stop the "
                "study on a blocker: no GPU torch can use, a broken kernel, too little disk, a recipe "
                "LLaMA-Factory refuses…). Not run with --dry-run, --status or --executor slurm (a login node has no GPU: run `llamafactory-ext doctor STUDY.yaml` in a GPU job instead)."})
    executor: str = field(default="local", metadata={
        "help": "local: run the steps on this machine; slurm: submit every unfinished step as a Slurm job "
                "(sbatch, --dependency=afterok on the steps it needs, resources from the study's cluster: "
                "section) and return; run it again to resubmit what failed.", "choices": ("local", "slurm")})
    status: bool = field(default=False, metadata={
        "help": "Print each step as done / queued / running / failed / to run (job id, elapsed time, the tail "
                "of a failed step's log) from the step folders and the scheduler; submit nothing."})
    gpus: int = field(default=0, metadata={
        "help": "--executor local: run independent steps concurrently on this many GPUs, each with its own "
                "CUDA_VISIBLE_DEVICES slice (evaluation 1 GPU, scoring and training the study's gpus); "
                "0: one step at a time."})
    jobs: int = field(default=0, metadata={
        "help": "--executor local --gpus N: at most this many steps at once (0: one per GPU)."})
    run_step: str = field(default="", metadata={
        "help": "Run just this step (its hash: the end of its folder name under OUT/steps) or 'report', once its "
                "inputs are done; what each Slurm job runs."})

    POSITIONAL = "config"


def print_plan(cfg, steps) -> None:
    from llamafactory_ext.study.estimate import assumptions, gpu_hours

    totals: dict[str, float] = defaultdict(float)
    unknown = set()
    for i, step in enumerate(steps, 1):
        hours = gpu_hours(step, cfg)
        if hours is None:
            unknown.add(step.kind)
        else:
            totals[step.kind] += hours
        est = "?" if hours is None else f"{hours:,.2f}"
        print(f"[{i}/{len(steps)}] {'done  ' if step.done else 'to run'} {step.label}  (est. GPU-hours {est})\n"
              f"    {step.command}")
    print("\nestimated GPU-hours per step kind: " + ", ".join(
        f"{k} {totals[k]:,.2f}" for k in KINDS if k in totals) + f"; total {sum(totals.values()):,.2f}")
    if unknown:
        print(f"no estimate for: {', '.join(sorted(unknown))} (give the study YAML an `estimate` section)")
    for line in assumptions(cfg):
        print(f"  assumption: {line}")


def preflight(config: str) -> None:
    """The doctor's checks against the study: print what is not ok, stop on a blocker."""
    from data_selection.command_line import UserError
    from llamafactory_ext.doctor.runner import blockers, render, run_checks

    checks = run_checks(config)
    flagged = [c for c in checks if c.status in ("warn", "blocker")]
    if flagged:
        print("[study] doctor:\n" + render(flagged))
    if blockers(checks):
        raise UserError(f"{config}: {len(blockers(checks))} blocker(s) above; fix them, or pass --skip-doctor "
                        "to run anyway")


def cli_study(opts: StudyOptions) -> int:
    from data_selection.command_line import UserError

    if len(opts.config) != 1:
        raise UserError("name one study file: llamafactory-ext study studies/demo.yaml")
    cfg = load_study(opts.config[0], known_strategies())
    steps = build_plan(cfg)
    from llamafactory_ext.study.cluster import cluster_config, step_resources

    cluster = cluster_config(cfg)
    if opts.run_step:
        from llamafactory_ext.study.run_one import run_one

        return run_one(cfg, steps, opts.run_step)
    if opts.status:
        from llamafactory_ext.study.status import print_status

        return print_status(cfg, steps)
    from llamafactory_ext.study.execute import steps_until

    steps_now = steps_until(steps, opts.until or None)  # the Slurm executor also submits only these
    if opts.dry_run:
        from llamafactory_ext.study.power import power_lines
        from llamafactory_ext.study.schedule import schedule_lines

        print_plan(cfg, steps)
        print("\n" + "\n".join(power_lines(cfg)))
        print("\n".join(["", *schedule_lines(cfg, steps, cluster)]))
        if opts.executor == "slurm":
            from llamafactory_ext.study.executors.slurm import dry_run_scripts

            dry_run_scripts(cfg, steps_now, cluster, report=not opts.until)
        return 0
    if opts.executor == "slurm":
        from llamafactory_ext.study.executors.slurm import submit

        submit(cfg, steps_now, cluster, report=not opts.until)
        return 0
    if not opts.skip_doctor and not all(s.done for s in steps):
        preflight(opts.config[0])
    from llamafactory_ext.study.execute import run_steps
    from llamafactory_ext.study.run_one import write_study_report

    start = time.time()
    if opts.gpus > 0:
        from llamafactory_ext.study.executors.local_parallel import run_parallel

        counts = run_parallel(steps, opts.gpus, lambda s: step_resources(s, cfg, cluster).gpus, opts.jobs,
                              opts.until or None)
    else:
        counts = run_steps(steps, opts.until or None)
    print(f"[study] {counts['ran']} step(s) ran, {counts['skipped']} were done already")
    if opts.until:
        return 0
    write_study_report(cfg, steps, time.time() - start)
    report = cfg.report_dir / "report.md"
    print(report.read_text(encoding="utf-8"))
    print(f"[study] report: {report}")
    return 0
