"""The install pins (constraints/{cpu,gpu}.txt) against what LLaMA-Factory declares and what doctor warns about:
a pin that LLaMA-Factory's installed metadata rejects, or a transformers release it marks broken, fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from llamafactory_ext.doctor import packages

ROOT = Path(__file__).resolve().parents[2]


def pins(profile: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints" / f"{profile}.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            spec = str(req.specifier)
            if spec.startswith("=="):
                out[req.name] = spec[2:]
    return out


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_transformers_is_pinned_to_a_release_llamafactory_does_not_mark_broken(profile):
    version = pins(profile)["transformers"]
    assert version == "5.5.4"
    assert version not in packages.BROKEN_TRANSFORMERS
    declared = {r.name: r.specifier for r in packages.declared_requirements()}
    assert declared["transformers"].contains(version)  # LLaMA-Factory 0.9.5's own range (<=5.6.0)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_pin_is_within_llamafactorys_declared_ranges(profile):
    declared = {r.name: r.specifier for r in packages.declared_requirements()}
    outside = {name: v for name, v in pins(profile).items() if name in declared and not declared[name].contains(v)}
    assert outside == {}
