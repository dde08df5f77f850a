"""Regenerate the checkpoints of a manifest, one after the other, bit for bit.

The checkpoint is a float32 "master" copy of the perturbed tensors: checkpoint j = checkpoint j − 1 +
increment j, each increment drawn on the CPU (:mod:`data_selection.perturb.noise`), rounded once to float32
and added in float32 (an IEEE-exact operation on every device). The model that scores sees the master cast
to its own dtype. So the checkpoint is a pure function of (θ0, manifest), identical on every rank, device and
thread count, and a bf16 model is one rounding away from it (adding small increments to bf16 weights one
after the other would lose most of them: a relative step of 2e-3 is half a bf16 ulp).
"""

from __future__ import annotations

import sys

import torch

from data_selection.command_line import UserError
from data_selection.perturb import directional, gaussian
from data_selection.perturb.noise import chunks, default_threads, parallel_map
from data_selection.perturb.params import load_fp32, params_digest


class CheckpointSequence:
    """Walk θ1, θ2, … of a manifest. ``base`` (name → fp32 tensor on any device) is modified in place."""

    def __init__(self, manifest: dict, base: dict[str, torch.Tensor], target: dict[str, torch.Tensor] | None = None,
                 threads: int = 0, direction: dict[str, torch.Tensor] | None = None):
        self.manifest = manifest
        self.kind = manifest["kind"]
        self.seed = int(manifest["seed"])
        self.num = int(manifest["num_checkpoints"])
        self.threads = threads or default_threads()
        names = list(manifest["tensors"])
        missing = [n for n in names if n not in base]
        if missing:
            raise UserError(f"the model lacks {len(missing)} tensor(s) the perturbation manifest names "
                            f"(e.g. {', '.join(missing[:3])}): not the model it was made for")
        for name in names:
            if base[name].dtype != torch.float32:
                raise ValueError(f"{name}: the master copy must be float32, got {base[name].dtype}")
        self.master = {n: base[n] for n in names}
        self.index = 0
        if self.kind == "directional":
            if direction is None:
                if target is None:
                    raise ValueError("directional checkpoints need the target model's tensors (or the direction)")
                norm = float(manifest["directional"]["direction_norm"])
                direction = {n: directional.unit_direction(base[n], target[n], norm) for n in names}
            self.direction = direction
            self.lambdas = [float(x) for x in manifest["directional"]["lambdas"]]
        elif self.kind == "gaussian":
            g = manifest["gaussian"]
            self.steps = [float(x) for x in g["step_sigmas"]]
            self.scales = {n: float(g["tensor_scales"][n]) for n in names}
        else:
            raise UserError(f"unknown perturbation kind {self.kind!r} in the manifest")

    def _add(self, j: int, name: str, c: int, start: int, stop: int) -> None:
        flat = self.master[name].view(-1)
        if self.kind == "gaussian":
            inc = gaussian.increment(self.seed, j, name, c, stop - start, self.steps[j - 1] * self.scales[name])
        else:
            e = self.direction[name].view(-1)[start:stop]
            inc = directional.increment(self.seed, j, name, c, e, self.lambdas[j - 1])
        flat[start:stop].add_(inc.to(flat.device))

    def advance(self) -> int:
        """Move the master copy from checkpoint ``index`` to ``index + 1``; returns the new index."""
        if self.index >= self.num:
            raise IndexError(f"the manifest has {self.num} checkpoints")
        j = self.index + 1
        tasks = [(j, name, c, a, b) for name, t in self.master.items() for c, a, b in chunks(t.numel())]
        parallel_map(self._add, tasks, self.threads)
        self.index = j
        return j

    def load_into(self, model) -> None:
        """Copy the current checkpoint into ``model`` (cast to each parameter's dtype and device)."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.master:
                    p.copy_(self.master[name])


def open_sequence(manifest: dict, device: str = "cpu", model: str = "", target: str = "", threads: int = 0,
                  trust_remote_code: bool = False) -> CheckpointSequence:
    """Load θ0 (and θf) as the manifest recorded them, check their content digests, and return the sequence.

    ``model``/``target`` override the recorded paths (a moved folder); the digest still has to match.
    """
    made_with = manifest.get("noise", {}).get("torch")
    if made_with and made_with != torch.__version__:
        print(f"warning: the perturbation was made with torch {made_with}, this is {torch.__version__}: its random "
              "draws are only guaranteed identical within one torch version", file=sys.stderr)
    base_path = model or manifest["base_model"]["name_or_path"]
    base_model = load_fp32(base_path, "cpu", trust_remote_code)
    _check_digest(base_model, manifest["base_model"], base_path, "--model")
    base = {n: p.data for n, p in base_model.named_parameters() if n in set(manifest["tensors"])}
    direction = None
    if manifest["kind"] == "directional":
        target_path = target or manifest["target_model"]["name_or_path"]
        target_model = load_fp32(target_path, "cpu", trust_remote_code)
        _check_digest(target_model, manifest["target_model"], target_path, "--target")
        tgt = dict(target_model.named_parameters())
        norm = float(manifest["directional"]["direction_norm"])
        direction = {n: directional.unit_direction(base[n], tgt[n].data, norm).to(device) for n in base}
        del target_model, tgt
    base = {n: t.to(device) for n, t in base.items()}
    del base_model
    return CheckpointSequence(manifest, base, threads=threads, direction=direction)


def _check_digest(model, record: dict, path: str, option: str) -> None:
    digest = params_digest(model.named_parameters())
    if digest != record["params_digest"]:
        raise UserError(f"{path}: its weights (digest {digest}) are not the ones the perturbation was made from "
                        f"({record['name_or_path']}, digest {record['params_digest']}); pass the right {option}")
