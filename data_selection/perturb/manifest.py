"""``perturb/NAME/manifest.json``: everything that regenerates a perturbation's checkpoints bit for bit.

Recorded: the kind, the seed, the number of checkpoints, the base model (path, identity, content digest of
every parameter), for directional checkpoints the target model likewise plus the direction's norm and every
λj, for Gaussian checkpoints the σ schedule and every tensor's scale, the list of perturbed tensors, the noise
recipe, and the code versions. Computed values (norms, scales, λ) are stored, not recomputed, because a float
reduction may differ in its last bit on another machine; the regeneration reads them from here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from data_selection.command_line import UserError
from data_selection.options.perturb import KINDS
from data_selection.perturb.noise import CHUNK

MANIFEST = "manifest.json"
FORMAT = "data-select-perturb/1"
# Not part of what a checkpoint is: left out of the digest scoring runs are tied to.
UNHASHED = ("verification", "created", "command", "digest")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise UserError(f"{path} not found: is {folder} a `data-select perturb --out` folder?")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err
    if m.get("format") != FORMAT or m.get("kind") not in KINDS:
        raise UserError(f"{path}: not a perturbation manifest of this version (format {m.get('format')!r}, "
                        f"kind {m.get('kind')!r}; expected {FORMAT!r}, one of {KINDS})")
    if m.get("digest") != manifest_digest(m):
        raise UserError(f"{path}: its content does not match its digest (edited by hand?); re-run `data-select "
                        f"perturb` ({m.get('command', 'its command')}) with --overwrite")
    return m


def manifest_digest(m: dict[str, Any]) -> str:
    """Fingerprint of what the checkpoints are (verification results and timestamps excluded)."""
    core = {k: v for k, v in m.items() if k not in UNHASHED}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def noise_recipe() -> dict[str, Any]:
    return {
        "generator": "CPU torch.Generator (mt19937), one per (seed, kind, checkpoint, tensor name, chunk)",
        "seed_of_chunk": "BLAKE2b-64 of 'seed:kind:checkpoint:name:chunk', low 63 bits",
        "chunk_elements": CHUNK,
        "draw": "torch.randn(float64) times the step size in float64, rounded once to float32",
        "accumulation": "checkpoint j = checkpoint j-1 + increment j, float32, then cast to the scoring dtype",
        "torch": torch.__version__,
    }
