"""One checkpoint of a perturbation manifest as a Hugging Face model folder (``data-select perturb --export``).

Python::

    from data_selection.perturb.manifest import read_manifest
    from data_selection.perturb.sequence import open_sequence

    seq = open_sequence(read_manifest("perturb/M_gaussian"), "cpu")   # θ0 loaded, digest checked
    for _ in range(5):
        seq.advance()                                                  # checkpoint 1, 2, … 5 (float32 master)
    seq.load_into(model)                                               # any loaded copy of the base model

:func:`export_checkpoint` does exactly that on a float32 copy of the base model and saves it with
``save_pretrained`` (and the base model's tokenizer), so the folder holds the bytes the scorer uses (``fp32``)
or their one rounding to bfloat16 (``bf16``). Writing is atomic: a killed export leaves no half folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

from data_selection.atomic import atomic_directory
from data_selection.command_line import UserError
from data_selection.perturb.params import load_fp32
from data_selection.perturb.sequence import open_sequence

EXPORT_RECORD = "perturbation.json"  # written beside the weights: which manifest and checkpoint they are


def export_checkpoint(manifest: dict, index: int, out: str | Path, dtype: str = "fp32", model: str = "",
                      target: str = "", threads: int = 0, trust_remote_code: bool = False) -> Path:
    """Write checkpoint ``index`` (1-based) of ``manifest`` to ``out``; returns ``out``."""
    num = int(manifest["num_checkpoints"])
    if not 1 <= index <= num:
        raise UserError(f"--export {index}: the perturbation has checkpoints 1..{num}")
    if dtype not in ("fp32", "bf16"):
        raise UserError(f"--export_dtype must be fp32 or bf16, got {dtype!r}")
    out = Path(out)
    seq = open_sequence(manifest, "cpu", model, target, threads, trust_remote_code)
    while seq.index < index:
        seq.advance()
    base_path = model or manifest["base_model"]["name_or_path"]
    net = load_fp32(base_path, "cpu", trust_remote_code)
    seq.load_into(net)
    if dtype == "bf16":
        net = net.to(torch.bfloat16)
    record = {"perturbation_digest": manifest["digest"], "kind": manifest["kind"], "checkpoint": index,
              "dtype": dtype, "base_model": manifest["base_model"]["name_or_path"],
              "command": manifest.get("command")}
    with atomic_directory(out) as tmp:
        net.save_pretrained(tmp, safe_serialization=True)
        try:
            AutoTokenizer.from_pretrained(base_path, trust_remote_code=trust_remote_code).save_pretrained(tmp)
        except (OSError, ValueError) as err:  # weights without a tokenizer are still inspectable
            print(f"warning: no tokenizer copied from {base_path} ({err})", file=sys.stderr)
            record["tokenizer"] = None
        (Path(tmp) / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
