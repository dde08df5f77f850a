"""``data-select prune-steps``'s options (their help texts are the command's ``--help``)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from data_selection.command_line import UserError
from data_selection.names import check_model_path
from data_selection.transforms.steps import (
    DEFAULT_LEAD_INS,
    DEFAULT_PHRASES,
    ERROR_CORRECTION,
    MULTI_METHOD,
    PROGRESSIVE,
    VERIFICATION,
    MarkerTable,
    phrase_lists,
)


@dataclass
class PruneOptions:
    model: str = field(metadata={"help": "Base model whose answer perplexity defines PIR: hub id or local folder "
                                         "(the model training starts from, e.g. Qwen/Qwen2.5-3B-Instruct)."})
    dataset: str = field(
        metadata={"help": "Subset to prune: an entry of DATASET_DIR/dataset_info.json (acereason_zpd_15k, "
                          "demo_zpd), a local json/jsonl/parquet file or a hub dataset id."}
    )
    name: str = field(metadata={"help": "Name of the pruned subset: data/NAME.jsonl beside the dataset_info.json "
                                        "and its entry (e.g. acereason_zpd_15k_pir30)."})
    ratio: float = field(
        default=0.3,
        metadata={"help": "Share of each functional type's steps deleted per row: round-half-up(ratio x count) "
                          "lowest-PIR steps (LIMOPro finds 0.2-0.4 best)."},
    )
    template: str = field(default="qwen", metadata={"help": "LLaMA-Factory template (the one training will use)."})
    cutoff_len: int = field(default=16384, metadata={"help": "LLaMA-Factory cutoff_len (the one training will use); "
                                                             "longer rows pass through unchanged."})
    dataset_dir: str = field(default=".", metadata={"help": "Folder holding the dataset_info.json that names DATASET."})
    dataset_info: str = field(
        default="",
        metadata={"help": "dataset_info.json to register NAME in; data/NAME.jsonl goes beside it "
                          "(default: DATASET_DIR/dataset_info.json)."},
    )
    out: str = field(
        default="",
        metadata={"help": "Work folder of the PIR computation (resumable shards, steps.parquet); default "
                          "outputs/pir/DATASET. Any --ratio/--name reuses finished PIR values."},
    )
    report_dir: str = field(default="", metadata={"help": "Folder for report.md and its plots (default reports/NAME)."})
    min_sentences: int = field(
        default=3, metadata={"help": "Paragraphs are merged until a step holds at least this many sentences."}
    )
    marker_boundaries: bool = field(
        default=True,
        metadata={"help": "A paragraph that opens a functional thought always starts a new step, never folded into "
                          "the short step before it (false: merge by sentence count alone)."},
    )
    progressive_phrases: list[str] = field(
        default_factory=lambda: list(DEFAULT_PHRASES[PROGRESSIVE]),
        metadata={"help": "Markers of progressive steps (never deleted; a step matching no marker is progressive "
                          "too). Longest match across the four lists wins, case-insensitive."},
    )
    verification_phrases: list[str] = field(
        default_factory=lambda: list(DEFAULT_PHRASES[VERIFICATION]),
        metadata={"help": "Markers of verification steps."},
    )
    multi_method_phrases: list[str] = field(
        default_factory=lambda: list(DEFAULT_PHRASES[MULTI_METHOD]),
        metadata={"help": "Markers of multi-method steps (another way to the same result)."},
    )
    error_correction_phrases: list[str] = field(
        default_factory=lambda: list(DEFAULT_PHRASES[ERROR_CORRECTION]),
        metadata={"help": "Markers of error-correction steps."},
    )
    lead_ins: list[str] = field(
        default_factory=lambda: list(DEFAULT_LEAD_INS),
        metadata={"help": "Interjections and conjunctions a marker may follow (up to four, each followed by spaces or "
                          "punctuation): 'But that's wrong', 'Hmm, let me check'. 'none': markers count only at the "
                          "very start of a step."},
    )
    step_typer: str = field(
        default="",
        metadata={"help": "Local instruct model (hub id or folder) that types the steps no marker types, as LIMOPro "
                          "typed steps with an LLM (prompt: docs/methods.md §5); empty: the marker rules alone."},
    )
    step_typer_template: str = field(
        default="", metadata={"help": "LLaMA-Factory template of --step_typer (default: --template)."}
    )
    step_typer_backend: Literal["huggingface", "vllm"] = field(
        default="huggingface", metadata={"help": "LLaMA-Factory inference backend of --step_typer."}
    )
    prefix_cache: bool = field(
        default=False,
        metadata={"help": "Run each deletion variant only from its first changed token on the full trace's KV "
                          "cache (fewer forward tokens, batch 1) instead of batching whole variants."},
    )
    tokenizer: str = field(default="", metadata={"help": "Tokenizer path if it differs from the model's."})
    columns: str = field(
        default="",
        metadata={"help": "Column mapping for files/hub ids as JSON, LLaMA-Factory's names, e.g. "
                          '\'{"prompt": "input", "response": "output"}\'. Detected when empty.'},
    )
    system_prompt: str = field(
        default="",
        metadata={"help": "System prompt for pools without a system column (subsets written by select have one)."},
    )
    split: str = field(default="train", metadata={"help": "Dataset split."})
    max_samples: int = field(default=0, metadata={"help": "Use only the first N rows (0 = all)."})
    batch_tokens: int = field(
        default=32768, metadata={"help": "Token budget of a forward batch (rows x longest row), padding included."}
    )
    chunk_tokens: int = field(
        default=0, metadata={"help": "Label positions per lm_head chunk (0 = auto: ~512 MB of fp32 logits)."}
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        default="auto", metadata={"help": "Model dtype; auto = bf16 on GPUs, fp32 on CPU."}
    )
    attn: Literal["auto", "sdpa", "fa2", "eager"] = field(
        default="auto", metadata={"help": "Attention kernel; auto = FlashAttention-2 when installed on a GPU, else SDPA."}
    )
    device: str = field(default="auto", metadata={
        "help": "auto (cuda:LOCAL_RANK when torch sees a GPU, else cpu; stops with the fix when the machine has "
                "NVIDIA GPUs torch cannot use), cpu, cuda."})
    shard_rows: int = field(default=256, metadata={"help": "Rows per shard (the unit of resumption)."})
    num_proc: int = field(default=0, metadata={"help": "Processes for converting the pool (0 = auto)."})
    verify: bool = field(
        default=True,
        metadata={"help": "Check the chunked losses of one short row against a plain full-logits forward first."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace PIR shards of a different configuration in --out."})
    register: bool = field(default=True, metadata={"help": "Add/update the dataset_info.json entry NAME."})
    force: bool = field(default=False, metadata={"help": "Replace a dataset_info.json entry data-select did not create."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to transformers."})

    # options that change the PIR values (the work folder's identity); the rest only change what is written
    def validate(self) -> None:
        """Every check that needs no file, model or pool (the CLI runs it before the heavy stack loads)."""
        checked_markers(self)
        check_model_path(self.model)

    SEGMENTATION = ("min_sentences", "marker_boundaries", "progressive_phrases", "verification_phrases",
                    "multi_method_phrases", "error_correction_phrases", "lead_ins", "step_typer", "step_typer_template",
                    "step_typer_backend")


def markers(opts: PruneOptions) -> MarkerTable:
    return phrase_lists(opts.progressive_phrases, opts.verification_phrases, opts.multi_method_phrases,
                        opts.error_correction_phrases, [] if opts.lead_ins == ["none"] else opts.lead_ins)


def checked_markers(opts: PruneOptions) -> MarkerTable:
    """Every check that needs no file, model or pool; returns the marker table."""
    if not opts.name or "/" in opts.name or opts.name.startswith("."):
        raise UserError(f"--name {opts.name!r} must be a plain name (it becomes data/NAME.jsonl)")
    if opts.name == opts.dataset:
        raise UserError(f"--name {opts.name!r} is the input subset itself; choose a new name, e.g. {opts.name}_pir30")
    if not 0.0 <= opts.ratio <= 1.0:
        raise UserError(f"--ratio must be in [0, 1], got {opts.ratio}")
    if opts.min_sentences < 1:
        raise UserError(f"--min_sentences must be >= 1, got {opts.min_sentences}")
    for name in ("batch_tokens", "shard_rows"):
        if getattr(opts, name) < 1:
            raise UserError(f"--{name} must be positive, got {getattr(opts, name)}")
    return markers(opts)


def work_dir(opts: PruneOptions) -> Path:
    if opts.out:
        return Path(opts.out)
    stem = Path(opts.dataset).stem if Path(opts.dataset).suffix else opts.dataset
    return Path("outputs") / "pir" / re.sub(r"[^A-Za-z0-9._-]+", "_", stem)


def dataset_info_path(opts: PruneOptions) -> Path:
    return Path(opts.dataset_info) if opts.dataset_info else Path(opts.dataset_dir) / "dataset_info.json"


def recipe(opts: PruneOptions) -> str:
    """The command that re-makes the pruned subset: the main options always, the others when not default."""
    parts = ["data-select", "prune-steps", "--model", opts.model, "--dataset", opts.dataset, "--dataset_dir",
             opts.dataset_dir, "--ratio", repr(opts.ratio), "--name", opts.name, "--template", opts.template,
             "--cutoff_len", str(opts.cutoff_len)]
    shown = {"model", "dataset", "dataset_dir", "ratio", "name", "template", "cutoff_len"}
    skip = {"overwrite", "force", "register", "verify", "num_proc", "device", "report_dir"}
    for f in fields(PruneOptions):
        if f.name in shown or f.name in skip:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        value = getattr(opts, f.name)
        if value == default:
            continue
        if isinstance(value, list):
            parts += [f"--{f.name}", *value]
        elif isinstance(value, bool):
            parts += [f"--{f.name}", str(value).lower()]
        else:
            parts += [f"--{f.name}", str(value)]
    return shlex.join(parts)
