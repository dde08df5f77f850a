"""``data-select perturb``: describe TEMP's perturbed checkpoints of a model in ``perturb/NAME/manifest.json``.

Gaussian (difficulty)::

    data-select perturb --kind gaussian --model Qwen/Qwen2.5-3B-Instruct --out perturb/qwen3b_gaussian

Directional (diversity; ``--target`` is a fine-tune of the same model, e.g. the random-subset SFT)::

    data-select perturb --kind directional --model Qwen/Qwen2.5-3B-Instruct \\
        --target saves/qwen2.5-3b-instruct/full/acereason_random_15k --out perturb/qwen3b_directional

No checkpoint is written: 16 checkpoints of a 3B model would be ~100 GB, and regenerating one from the
manifest (:func:`data_selection.perturb.sequence.open_sequence`) costs one pass of random draws over the
parameters. With ``--verify`` (default) every checkpoint is regenerated once here and the manifest records
the noise / distances actually realised, in float32 and after rounding to bfloat16 (the GPU scoring dtype).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_selection import __version__
from data_selection.atomic import write_json_atomic
from data_selection.command_line import UserError
from data_selection.options.perturb import PerturbOptions
from data_selection.perturb import directional, gaussian
from data_selection.perturb.manifest import FORMAT, MANIFEST, manifest_digest, noise_recipe, read_manifest
from data_selection.perturb.noise import default_threads
from data_selection.perturb.params import (
    _config,
    check_same_shape,
    embedding_names,
    load_fp32,
    meta_shapes,
    params_digest,
    perturbed_parameters,
)
from data_selection.perturb.sequence import CheckpointSequence
from data_selection.scoring.identity import model_identity

METHOD = ("TEMP, 'Reasoning Quality Emerges Early: Data Curation for Reasoning Models' (arXiv 2606.26797, "
          "ICML 2026); docs/methods.md §3")


def _options_record(opts: PerturbOptions) -> dict[str, Any]:
    keep = ["kind", "num", "seed"] + (["start", "end", "scale"] if opts.kind == "gaussian" else
                                      ["min_radius", "max_radius"])
    return {k: getattr(opts, k) for k in keep}


def command_line(opts: PerturbOptions) -> str:
    parts = ["data-select", "perturb", "--kind", opts.kind, "--model", opts.model]
    if opts.kind == "directional":
        parts += ["--target", opts.target]
    parts += ["--out", opts.out, "--num", str(opts.num), "--seed", str(opts.seed)]
    if opts.kind == "gaussian":
        parts += ["--start", f"{opts.start:g}", "--end", f"{opts.end:g}", "--scale", opts.scale]
    else:
        parts += ["--min-radius", f"{opts.min_radius:g}", "--max-radius", f"{opts.max_radius:g}"]
    return shlex.join(parts)


def _check_options(opts: PerturbOptions) -> None:
    opts.validate()
    if opts.kind == "gaussian":
        gaussian.sigma_schedule(opts.start, opts.end, opts.num)
        gaussian.tensor_scales([], opts.scale)
    else:
        directional.target_radii(opts.min_radius, opts.max_radius, opts.num)


def _model_record(path: str, model, trust_remote_code: bool) -> dict[str, Any]:
    return {**model_identity(path, _config(path, trust_remote_code)),
            "params_digest": params_digest(model.named_parameters()),
            "num_parameters": sum(p.numel() for p in model.parameters())}


def _verify_gaussian(manifest: dict, base: dict, threads: int) -> list[dict[str, Any]]:
    theta0 = {n: t.clone() for n, t in base.items()}
    seq = CheckpointSequence(manifest, base, threads=threads)
    scales = manifest["gaussian"]["tensor_scales"]
    rows = []
    # "overall": the realised standard deviation pooled over every perturbed element, in units of each
    # tensor's scale (so it estimates σ); median/min/max: per tensor (small tensors carry sampling error)
    for sigma in manifest["gaussian"]["sigmas"]:
        seq.advance()
        fp32, bf16, sq32, sq16, count = [], [], 0.0, 0.0, 0
        for n, t in seq.master.items():
            s = scales[n]
            if s == 0:
                continue
            d32 = float((t.double() - theta0[n].double()).pow(2).sum())
            d16 = float((t.to(torch.bfloat16).double() - theta0[n].to(torch.bfloat16).double()).pow(2).sum())
            fp32.append((d32 / t.numel()) ** 0.5 / s)
            bf16.append((d16 / t.numel()) ** 0.5 / s)
            sq32, sq16, count = sq32 + d32 / (s * s), sq16 + d16 / (s * s), count + t.numel()
        rows.append({
            "checkpoint": seq.index, "sigma": sigma,
            "realised_fp32": {"overall": (sq32 / count) ** 0.5, "median": float(np.median(fp32)),
                              "min": float(np.min(fp32)), "max": float(np.max(fp32))},
            "realised_bf16": {"overall": (sq16 / count) ** 0.5, "median": float(np.median(bf16)),
                              "min": float(np.min(bf16)), "max": float(np.max(bf16))},
        })
    return rows


def _verify_directional(manifest: dict, base: dict, direction: dict, threads: int) -> list[dict[str, Any]]:
    theta0 = {n: t.clone() for n, t in base.items()}
    seq = CheckpointSequence(manifest, base, threads=threads, direction=direction)
    rows = []
    for r in manifest["directional"]["radii"]:
        seq.advance()
        d32 = sum(float((t.double() - theta0[n].double()).pow(2).sum()) for n, t in seq.master.items())
        d16 = sum(float((t.to(torch.bfloat16).double() - theta0[n].to(torch.bfloat16).double()).pow(2).sum())
                  for n, t in seq.master.items())
        rows.append({"checkpoint": seq.index, "radius": r, "distance_fp32": d32 ** 0.5, "distance_bf16": d16 ** 0.5})
    return rows


def run_perturb(opts: PerturbOptions) -> dict[str, Any]:
    _check_options(opts)
    out = Path(opts.out)
    if (out / MANIFEST).exists():
        old = read_manifest(out)
        same = old.get("options") == _options_record(opts) and old["base_model"]["name_or_path"] == opts.model and (
            opts.kind == "gaussian" or old["target_model"]["name_or_path"] == opts.target)
        if same and not opts.overwrite:
            return {"manifest": old, "path": str(out / MANIFEST), "status": "unchanged"}
        if not opts.overwrite:
            raise UserError(f"{out / MANIFEST} describes another perturbation ({old.get('options')}, model "
                            f"{old['base_model']['name_or_path']}); use another --out or --overwrite")
    threads = opts.threads or default_threads()
    t0 = time.perf_counter()
    # Shapes first, from the configs alone: a wrong --target fails before any weight is read.
    base_shapes = meta_shapes(opts.model, opts.trust_remote_code)
    if opts.kind == "directional":
        check_same_shape(base_shapes, meta_shapes(opts.target, opts.trust_remote_code), opts.model, opts.target)
    model = load_fp32(opts.model, "cpu", opts.trust_remote_code)
    named = perturbed_parameters(model, opts.kind)
    base = {n: p.data for n, p in named}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "kind": opts.kind,
        "method": METHOD,
        "seed": opts.seed,
        "num_checkpoints": opts.num,
        "options": _options_record(opts),
        "base_model": _model_record(opts.model, model, opts.trust_remote_code),
        "tensors": list(base),
        "not_perturbed": [n for n, _ in model.named_parameters() if n not in base],
        "noise": noise_recipe(),
    }
    direction = None
    if opts.kind == "gaussian":
        sigmas, steps = gaussian.sigma_schedule(opts.start, opts.end, opts.num)
        manifest["not_perturbed_reason"] = ("embeddings: nn.Embedding weights, names containing 'embed', and a "
                                            "head tied to the input embeddings")
        manifest["embeddings"] = embedding_names(model)
        manifest["gaussian"] = {
            "scale": opts.scale, "official_scale": opts.scale == gaussian.OFFICIAL_SCALE,
            "start": opts.start, "end": opts.end, "sigmas": sigmas, "step_sigmas": steps,
            "delta": steps[1] if len(steps) > 1 else None,
            "variance_rule": "sigma_i^2 = start^2 + (i-1) * delta^2, delta^2 = (end^2 - start^2)/(num-1)",
            "tensor_scales": gaussian.tensor_scales(named, opts.scale),
        }
    else:
        target_model = load_fp32(opts.target, "cpu", opts.trust_remote_code)
        check_same_shape({n: tuple(p.shape) for n, p in model.named_parameters()},
                         {n: tuple(p.shape) for n, p in target_model.named_parameters()}, opts.model, opts.target)
        manifest["target_model"] = _model_record(opts.target, target_model, opts.trust_remote_code)
        target = {n: p.data for n, p in target_model.named_parameters()}
        norm = directional.direction_norm(base, target)
        if norm == 0:
            raise UserError(f"--target {opts.target} has the same weights as --model {opts.model}: no direction")
        direction = {n: directional.unit_direction(base[n], target[n], norm) for n in base}
        del target, target_model
        radii = directional.target_radii(opts.min_radius, opts.max_radius, opts.num)
        gram = directional.gram_matrix(direction, opts.seed, opts.num, threads)
        manifest["directional"] = {
            "direction": "(θf − θ0)/‖θf − θ0‖₂, one global norm over every parameter",
            "direction_norm": norm, "min_radius": opts.min_radius, "max_radius": opts.max_radius, "radii": radii,
            "lambdas": directional.solve_lambdas(gram, radii),
            "lambdas_rule": "solved exactly for the drawn noise (Gram matrix of (1+ξj)⊙e)",
            "lambdas_expected_rule": directional.expected_lambdas(radii),
            "gram": gram.tolist(),
        }
    manifest["command"] = command_line(opts)
    manifest["created"] = {"data_selection": __version__, "seconds": None, "threads": threads}
    if opts.verify:
        if opts.kind == "gaussian":
            manifest["verification"] = _verify_gaussian(manifest, base, threads)
        else:
            manifest["verification"] = _verify_directional(manifest, base, direction, threads)
    manifest["created"]["seconds"] = round(time.perf_counter() - t0, 2)
    manifest["digest"] = manifest_digest(manifest)
    write_json_atomic(out / MANIFEST, manifest)
    return {"manifest": manifest, "path": str(out / MANIFEST), "status": "written"}


def summary_lines(m: dict[str, Any]) -> list[str]:
    lines = [f"{m['kind']} perturbation of {m['base_model']['name_or_path']} ({len(m['tensors'])} tensors, "
             f"{len(m.get('not_perturbed', []))} untouched), seed {m['seed']}, {m['num_checkpoints']} checkpoints"]
    ver = {v["checkpoint"]: v for v in m.get("verification", [])}
    if m["kind"] == "gaussian":
        g = m["gaussian"]
        lines.append(f"σ ({g['scale']}): " + ", ".join(f"{s:.2e}" for s in g["sigmas"]))
        for j, s in enumerate(g["sigmas"], 1):
            if j in ver:
                v = ver[j]
                lines.append(f"  checkpoint {j}: σ {s:.3e}, realised fp32 {v['realised_fp32']['overall']:.3e}, "
                             f"bf16 {v['realised_bf16']['overall']:.3e}")
    else:
        d = m["directional"]
        lines.append(f"‖θf − θ0‖ = {d['direction_norm']:.4g}; radii " + ", ".join(f"{r:g}" for r in d["radii"]))
        for j, lam in enumerate(d["lambdas"], 1):
            v = ver.get(j)
            extra = (f", distance fp32 {v['distance_fp32']:.6g}, bf16 {v['distance_bf16']:.6g}" if v else "")
            lines.append(f"  checkpoint {j}: λ {lam:.6g}{extra}")
    return lines


__all__ = ["PerturbOptions", "run_perturb", "summary_lines"]
