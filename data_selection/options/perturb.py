"""``data-select perturb``'s options (see :mod:`data_selection.perturb.build`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_selection.command_line import UserError

KINDS = ("gaussian", "directional")
SCALES = ("absolute", "relative")  # the first is the default (the official code's)
OFFICIAL_SCALE = "absolute"


@dataclass
class PerturbOptions:
    kind: str = field(metadata={"help": "gaussian: cumulative noise checkpoints (difficulty); directional: "
                                        "checkpoints along θf − θ0 (diversity).", "choices": KINDS})
    model: str = field(metadata={"help": "Base model θ0 (the model that scored the pool): hub id or folder."})
    out: str = field(metadata={"help": "Output folder, e.g. perturb/qwen3b_gaussian (gets manifest.json)."})
    target: str = field(default="", metadata={
        "help": "directional: the fine-tuned model θf of the same shape (e.g. the random-subset SFT)."})
    num: int = field(default=8, metadata={"help": "Number of checkpoints."})
    start: float = field(default=2e-3, metadata={"help": "gaussian: σ of checkpoint 1."})
    end: float = field(default=8e-3, metadata={"help": "gaussian: σ of the last checkpoint (increments add in "
                                                        "quadrature in between)."})
    scale: str = field(default="absolute", metadata={
        "help": "gaussian: absolute = σ is the noise's per-element std (the official code: p += randn_like(p) * σ); "
                "relative = σ times each tensor's RMS in θ0 (an option; docs/methods.md §3).",
        "choices": SCALES})
    min_radius: float = field(default=1.0, metadata={"help": "directional: ‖θ1 − θ0‖₂."})
    max_radius: float = field(default=10.0, metadata={"help": "directional: ‖θ_num − θ0‖₂ (linear in between)."})
    seed: int = field(default=42, metadata={"help": "Seed of the noise."})
    verify: bool = field(default=True, metadata={
        "help": "Regenerate every checkpoint once and record the realised noise / distances (fp32 and bf16)."})
    threads: int = field(default=0, metadata={"help": "CPU threads drawing noise (0 = up to 16 available cores)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a manifest of different options in --out."})
    export: int = field(default=0, metadata={
        "help": "Also write checkpoint INDEX (1..num) of the manifest in --out as a Hugging Face model folder, for "
                "inspection or evaluation (0 = none; the manifest is made first when --out has none)."})
    export_dir: str = field(default="", metadata={"help": "--export: the folder (default OUT/checkpoint-INDEX)."})
    export_dtype: str = field(default="fp32", metadata={
        "help": "--export: dtype of the written weights (fp32 = the checkpoint exactly; bf16 = one rounding of it, "
                "what bf16 scoring sees).", "choices": ("fp32", "bf16")})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to transformers."})

    def validate(self) -> None:
        """The checks that need no model: kind, target, export index (the schedule is checked by the engine)."""
        if self.kind not in KINDS:
            raise UserError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "directional" and not self.target:
            raise UserError("--kind directional needs --target: a fine-tuned model of the same shape as --model")
        if self.kind == "gaussian" and self.target:
            raise UserError("--target is only used by --kind directional")
        if self.export < 0 or self.export > self.num:
            raise UserError(f"--export {self.export}: the perturbation has checkpoints 1..{self.num}")
