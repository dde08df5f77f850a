"""One step of a study: a command whose output folder is named by the hash of what determines its result.

A step's *key* holds every value its command depends on (options, file digests), and its hash also covers
the hashes of the steps it reads from. The output folder is ``OUT/steps/<kind>/<label>-<hash>``, and a step is
finished when that folder holds ``step.json`` (written atomically after the command succeeded). So:

* re-running a study skips every finished step and finishes the rest (an interrupted command is run again;
  `data-select score` even resumes its own shards);
* changing a setting changes the hash of every step it affects, and only those: they get new folders and run,
  and nothing computed under another configuration is ever reused.

Code changes are not part of the key: after upgrading, delete ``OUT/steps/<kind>`` to recompute a kind.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

STEP_FILE = "step.json"
# every kind of step, in pipeline order (for --until and the per-kind totals)
KINDS = ("data", "model", "score", "verify", "perturb", "checkpoints", "select", "prune", "train", "eval")


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (local pools: editing one changes the steps that read it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def recipe_digest(path: str | Path) -> str:
    """sha256 of a YAML recipe's settings, not its bytes: a changed value re-runs the trainings that use it; a
    comment (a recipe's header documents its launch command and arithmetic) or a reordering does not."""
    settings = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(eq=False)
class Step:
    kind: str  # data | model | score | select | train | eval (and the strategies' own kinds)
    label: str  # human name, e.g. "train zpd seed 2"
    key: dict[str, Any]
    deps: list[Step]
    root: Path
    arm: str | None = None
    seed: int | None = None
    argv: list[str] = field(default_factory=list)  # set once the folder (from the hash) is known
    env: dict[str, str] = field(default_factory=dict)
    estimate_gpu_hours: float | None = None
    # flag -> the study YAML section its value came from ("arms.zpd", "score"…), for errors; not in the hash
    origins: dict[str, str] = field(default_factory=dict)

    def add_options(self, where: str, options: dict[str, Any]) -> None:
        """Append ``--KEY VALUE`` for each option of the study section ``where`` (the one place a study's option
        mappings become command-line flags), remembering where each flag came from."""
        for key, value in options.items():
            self.argv += [f"--{key}", str(value)]
            self.origins[f"--{key}"] = where

    @cached_property
    def hash(self) -> str:
        payload = {"kind": self.kind, "key": self.key, "deps": [d.hash for d in self.deps]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]

    @property
    def dir(self) -> Path:
        slug = re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")
        return self.root / "steps" / self.kind / f"{slug}-{self.hash}"

    @property
    def record(self) -> Path:
        return self.dir / STEP_FILE

    @property
    def done(self) -> bool:
        if not self.record.is_file():
            return False
        try:
            return json.loads(self.record.read_text(encoding="utf-8")).get("hash") == self.hash
        except json.JSONDecodeError:
            return False

    @property
    def command(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(self.argv)
