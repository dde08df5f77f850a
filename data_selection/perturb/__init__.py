"""Perturbed copies of a model for TEMP (docs/methods.md §3): ``data-select perturb``.

A checkpoint is never written to disk. ``perturb`` writes ``perturb/NAME/manifest.json``: the base model's
identity and parameter digest (and the target's, for directional checkpoints), the schedule, every per-tensor
scale and every step size. :class:`~data_selection.perturb.sequence.CheckpointSequence` regenerates checkpoint
1, 2, … of a manifest on the loaded model, bit for bit, on any machine and any rank:

* :mod:`~data_selection.perturb.noise`: seeded Gaussian draws, one CPU ``torch.Generator`` per
  (seed, kind, checkpoint, tensor, chunk of 4M elements);
* :mod:`~data_selection.perturb.params`: which tensors are perturbed, fp32 loading, digests, shape checks;
* :mod:`~data_selection.perturb.gaussian`: the cumulative Gaussian schedule (difficulty);
* :mod:`~data_selection.perturb.directional`: the direction θf − θ0 and the step sizes λj (diversity);
* :mod:`~data_selection.perturb.manifest`: reading, writing and fingerprinting manifests;
* :mod:`~data_selection.perturb.build`: a perturbation manifest from options (the command: :mod:`data_selection.commands.perturb`).
"""
