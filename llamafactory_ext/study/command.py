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


def cli_study(opts: StudyOptions) -> int:
    from data_selection.command_line import UserError

    if len(opts.config) != 1:
        raise UserError("name one study file: llamafactory-ext study studies/demo.yaml")
    cfg = load_study(opts.config[0], known_strategies())
    steps = build_plan(cfg)
    if opts.dry_run:
        print_plan(cfg, steps)
        from llamafactory_ext.study.power import power_lines

        print("\n" + "\n".join(power_lines(cfg)))
        return 0
    from llamafactory_ext.study.execute import run_steps
    from llamafactory_ext.study.report import write_report
    from llamafactory_ext.study.results import study_results

    start = time.time()
    counts = run_steps(steps, opts.until or None)
    print(f"[study] {counts['ran']} step(s) ran, {counts['skipped']} were done already")
    if opts.until:
        return 0
    results = study_results([(s.arm, s.seed, s.dir) for s in steps if s.kind == "eval"])
    write_report(cfg, steps, results, time.time() - start)
    report = cfg.report_dir / "report.md"
    print(report.read_text(encoding="utf-8"))
    print(f"[study] report: {report}")
    return 0
