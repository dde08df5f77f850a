"""``llamafactory-ext doctor [RECIPE.yaml | STUDY.yaml]``: print the checks' table, exit 1 on a blocker."""

from __future__ import annotations

from dataclasses import asdict

from data_selection.atomic import write_json_atomic
from llamafactory_ext.doctor.runner import blockers, render, run_checks
from llamafactory_ext.options.doctor import DoctorOptions


def run(opts: DoctorOptions) -> int:
    opts.validate()
    checks = run_checks(opts.config[0] if opts.config else None)
    print(render(checks))
    if opts.json:
        write_json_atomic(opts.json, {"config": opts.config[0] if opts.config else None,
                                      "checks": [asdict(c) for c in checks]})
    return 1 if blockers(checks) else 0
