"""``data-select score-checkpoints``' options (:mod:`data_selection.scoring.checkpoints`) and the command line
they stand for (recorded in meta.json and in every selection's recipe). Light: no torch at import."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields

from data_selection.command_line import UserError
from data_selection.options.select import INIT_LABEL_NUM  # TEMP's official default, one home

ROWS = ("auto", "all", "survivors")
# A copy of data_selection.scoring.varlen.PACKED_MODES, which imports torch
# (tests/data_selection/test_score_checkpoints.py checks that they agree).
PACKED_MODES = ("flash_attn_4", "flash_attn", "torch_varlen", "sdpa_rows", "sdpa_mask")


@dataclass
class CheckpointScoreOptions:
    perturb: str = field(metadata={"help": "Perturbation folder written by `data-select perturb` (perturb/NAME)."})
    scores: str = field(metadata={
        "help": "Base scores folder written by `data-select score` (scores/POOL): its pool, template, cutoff_len, "
                "system prompt and tokenizer are reused, so every row is encoded exactly as it was scored."})
    out: str = field(metadata={"help": "Output folder shared by both kinds (scores/POOL_temp); this run writes "
                                       "OUT/gaussian or OUT/directional."})
    rows: str = field(default="auto", metadata={
        "help": "Rows to score. auto: every scored row for gaussian, the difficulty survivors for directional; "
                "all; survivors.", "choices": ROWS})
    over_length: str = field(default="drop", metadata={
        "help": "survivors: the over-length policy the selection will use (the filter runs on eligible rows).",
        "choices": ("drop", "keep")})
    temp_checkpoint: int = field(default=0, metadata={
        "help": "survivors: force the Gaussian checkpoint of the difficulty filter (0 = the one at 2-3x loss)."})
    temp_init_label_num: int = field(default=INIT_LABEL_NUM, metadata={
        "help": "survivors: the small-source rule the selection will use (select's --temp-init-label-num)."})
    gaussian: str = field(default="", metadata={
        "help": "directional: another score-checkpoints folder whose Gaussian results to use (default: --out's "
                "own), copied into OUT/gaussian so that OUT is complete for `select --temp-scores OUT` and one "
                "Gaussian run serves several directional targets."})
    prefix: int = field(default=0, metadata={
        "help": "Response tokens scored per row (0 = the method's: 100 gaussian, 1000 directional)."})
    model: str = field(default="", metadata={"help": "Base model folder if it moved since `perturb` (digest checked)."})
    target: str = field(default="", metadata={"help": "Target model folder if it moved (directional; digest checked)."})
    batch_tokens: int = field(default=32768, metadata={
        "help": "Token budget of a batch: tokens of the packed sequence (packing on), or rows x longest row, "
                "padding included (packing off)."})
    packing: str = field(default="auto", metadata={
        "help": "Batches as `data-select score` builds them: auto = packed rows with variable-length attention "
                "(flash-attn or torch varlen on CUDA in bf16/fp16, SDPA row by row elsewhere); off = padded batches. "
                "docs/methods.md §1.", "choices": ("auto", "off", *PACKED_MODES)})
    dtype: str = field(default="auto", metadata={"help": "Model dtype; auto = bf16 on GPUs, fp32 on CPU.",
                                                 "choices": ("auto", "bf16", "fp16", "fp32")})
    attn: str = field(default="auto", metadata={"help": "Attention the model is loaded with (as `score`: used with "
                                                        "--packing off and by the self-check's reference forward).",
                                                "choices": ("auto", "sdpa", "fa2", "eager")})
    shard_rows: int = field(default=1024, metadata={"help": "Rows per shard (the unit of resumption)."})
    chunk_tokens: int = field(default=0, metadata={"help": "Label positions per lm_head chunk (0 = auto)."})
    device: str = field(default="auto", metadata={
        "help": "auto (cuda:LOCAL_RANK when torch sees a GPU, else cpu; stops with the fix when the machine has "
                "NVIDIA GPUs torch cannot use), cpu, cuda."})
    threads: int = field(default=0, metadata={
        "help": "CPU threads regenerating checkpoints (0 = the available cores / ranks, at most 16)."})
    master_device: str = field(default="auto", metadata={
        "help": "Where the float32 copy of the checkpoint lives: auto (the scoring device) or cpu (saves GPU "
                "memory: ~4 bytes per parameter, twice that for directional)."})
    verify: bool = field(default=True, metadata={
        "help": "Self-check of `score` at the first checkpoint scored: the scorer's losses on two short rows' first "
                "256 tokens against the checkpoint's own full-logits forward."})
    overwrite: bool = field(default=False, metadata={"help": "Replace results of a different configuration."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to transformers."})

    def validate(self) -> None:
        if self.rows not in ROWS:
            raise UserError(f"--rows must be one of {', '.join(ROWS)}, got {self.rows!r}")
        if self.prefix < 0 or self.shard_rows < 1:
            raise UserError("--prefix must be >= 0 and --shard-rows >= 1")


def command_line(opts: CheckpointScoreOptions) -> str:
    defaults = {f.name: f.default for f in fields(CheckpointScoreOptions)}
    parts = ["data-select", "score-checkpoints", "--perturb", opts.perturb, "--scores", opts.scores, "--out", opts.out]
    for name in ("gaussian", "rows", "over_length", "temp_checkpoint", "temp_init_label_num", "prefix"):
        if getattr(opts, name) != defaults[name]:
            parts += [f"--{name.replace('_', '-')}", str(getattr(opts, name))]
    return shlex.join(parts)
