"""``llamafactory-ext doctor [RECIPE.yaml | STUDY.yaml]``: every probe and one table (exit 1 on a blocker).

Each probe returns one :class:`~llamafactory_ext.doctor.target.Check` (ok / warn / blocker / skip, what it saw,
how to fix it); a probe that crashes is reported as a warning naming the exception, never as a crash of the
whole run. Without a GPU every GPU probe says "no GPU". Nothing here touches the network.
"""

from __future__ import annotations

from llamafactory_ext.doctor import gpu, hub, kernels, packages, recipe, storage
from llamafactory_ext.doctor.target import Check, Target, load_target

PROBES = (*gpu.PROBES, *kernels.PROBES, *packages.PROBES, *storage.PROBES, *hub.PROBES, *recipe.PROBES)
MARK = {"ok": "ok", "warn": "WARN", "blocker": "BLOCKER", "skip": "-"}


def checks_for(t: Target, probes=None) -> list[Check]:
    out = []
    for probe in PROBES if probes is None else probes:
        try:
            out.append(probe(t))
        except Exception as err:  # a probe's own failure is a finding, not a reason to stop the others
            name = probe.__name__.removeprefix("check_").replace("_", " ")
            out.append(Check(name, "warn", f"the probe itself failed: {type(err).__name__}: {err}",
                             "report it; the other checks are unaffected"))
    return out


def run_checks(config_path: str | None = None) -> list[Check]:
    """Every doctor check, against the recipe or study at ``config_path`` (or the machine alone)."""
    return checks_for(load_target(config_path))


def render(checks: list[Check]) -> str:
    """A plain-text table: status, check, what was seen, and the fix where there is one."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{MARK[c.status]:<8} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in ("warn", "blocker"):
            lines.append(f"{'':<8} {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in MARK}
    lines.append(f"\n{counts['ok']} ok, {counts['warn']} warning(s), {counts['blocker']} blocker(s), "
                 f"{counts['skip']} skipped")
    return "\n".join(lines)


def blockers(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "blocker"]
