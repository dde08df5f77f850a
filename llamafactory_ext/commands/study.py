"""``llamafactory-ext study STUDY.yaml``: score → select → train → evaluate → compare, resumable, one report.

``--dry-run`` prints every command with its status (done / to run), the estimated GPU-hours per step, for each
dynamic arm what re-scoring at its stage boundaries costs against its training
(:mod:`llamafactory_ext.study.dynamic_cost`), and the power statement (expected half-width of every paired difference, :mod:`llamafactory_ext.study.power`).
Options: :mod:`llamafactory_ext.options.study`; the plan: :mod:`llamafactory_ext.study.plan`.
"""

from __future__ import annotations

import time
from collections import defaultdict

from data_selection.command_line import UserError
from llamafactory_ext.doctor.runner import blockers, render, run_checks
from llamafactory_ext.options.study import StudyOptions
from llamafactory_ext.study import execute
from llamafactory_ext.study.cluster import cluster_config, step_resources
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.dynamic_cost import dynamic_cost_lines
from llamafactory_ext.study.estimate import assumptions, gpu_hours
from llamafactory_ext.study.executors.local_parallel import run_parallel
from llamafactory_ext.study.executors.slurm import dry_run_scripts, submit
from llamafactory_ext.study.plan import build_plan, known_strategies
from llamafactory_ext.study.power import power_lines
from llamafactory_ext.study.run_one import run_one, write_study_report
from llamafactory_ext.study.schedule import schedule_lines
from llamafactory_ext.study.status import print_status
from llamafactory_ext.study.steps import KINDS


def print_plan(cfg, steps) -> None:
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
    checks = run_checks(config)
    flagged = [c for c in checks if c.status in ("warn", "blocker")]
    if flagged:
        print("[study] doctor:\n" + render(flagged))
    if blockers(checks):
        raise UserError(f"{config}: {len(blockers(checks))} blocker(s) above; fix them, or pass --skip-doctor "
                        "to run anyway")


def run(opts: StudyOptions) -> int:
    """Plan the study (every step's options checked), then print, submit or run it and write the report."""
    if len(opts.config) != 1:
        raise UserError("name one study file: llamafactory-ext study studies/demo.yaml")
    cfg = load_study(opts.config[0], known_strategies())
    steps = build_plan(cfg)
    cluster = cluster_config(cfg)
    if opts.run_step:
        return run_one(cfg, steps, opts.run_step)
    if opts.status:
        return print_status(cfg, steps)
    steps_now = execute.steps_until(steps, opts.until or None)  # the Slurm executor also submits only these
    if opts.dry_run:
        print_plan(cfg, steps)
        dynamic = dynamic_cost_lines(cfg)
        if dynamic:
            print("\n" + "\n".join(dynamic))
        print("\n" + "\n".join(power_lines(cfg)))
        print("\n".join(["", *schedule_lines(cfg, steps, cluster)]))
        if opts.executor == "slurm":
            dry_run_scripts(cfg, steps_now, cluster, report=not opts.until)
        return 0
    if opts.executor == "slurm":
        submit(cfg, steps_now, cluster, report=not opts.until)
        return 0
    if not opts.skip_doctor and not all(s.done for s in steps):
        preflight(opts.config[0])
    start = time.time()
    if opts.gpus > 0:
        counts = run_parallel(steps, opts.gpus, lambda s: step_resources(s, cfg, cluster).gpus, opts.jobs,
                              opts.until or None)
    else:
        counts = execute.run_steps(steps, opts.until or None)
    print(f"[study] {counts['ran']} step(s) ran, {counts['skipped']} were done already")
    if opts.until:
        return 0
    # a run that found every step done only rebuilds the report: it has no wall time of its own to state
    write_study_report(cfg, steps, time.time() - start if counts["ran"] else None)
    report = cfg.report_dir / "report.md"
    print(report.read_text(encoding="utf-8"))
    print(f"[study] report: {report}")
    return 0
