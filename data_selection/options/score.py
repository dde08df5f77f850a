"""``data-select score``'s options (light: the CLI parses and checks them before torch loads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from data_selection.command_line import UserError
from data_selection.names import check_dataset_name, check_model_path

BRIER_TOP_K = 10  # --brier_top_k's default


@dataclass
class ScoreOptions:
    model: str = field(metadata={"help": "Base model: hub id (Qwen/Qwen2.5-3B-Instruct) or local checkpoint folder."})
    dataset: str = field(
        metadata={
            "help": "Pool: an entry of DATASET_DIR/dataset_info.json, a local json/jsonl/parquet file, "
            "or a hub dataset id (redsgnaoh/acereason11_100k, nvidia/AceReason-1.1-SFT)."
        }
    )
    out: str = field(metadata={"help": "Output folder, e.g. scores/acereason11_100k."})
    template: str = field(default="qwen", metadata={"help": "LLaMA-Factory template (the one training will use)."})
    cutoff_len: int = field(default=16384, metadata={"help": "LLaMA-Factory cutoff_len (the one training will use)."})
    dataset_dir: str = field(default=".", metadata={"help": "Folder holding dataset_info.json."})
    tokenizer: str = field(default="", metadata={"help": "Tokenizer path if it differs from the model's."})
    columns: str = field(
        default="",
        metadata={
            "help": "Column mapping for files/hub ids as JSON, LLaMA-Factory's names, e.g. "
            '\'{"prompt": "input", "response": "output"}\'. Detected when empty (alpaca, AceReason, sharegpt).'
        },
    )
    system_prompt: str = field(
        default="",
        metadata={
            "help": "System prompt for pools that have no system column (AceReason). Recorded in meta.json and "
            "written into selected subsets, so training sees what was scored."
        },
    )
    split: str = field(default="train", metadata={"help": "Dataset split."})
    batch_tokens: int = field(
        default=32768,
        metadata={"help": "Token budget of a batch: tokens of the packed sequence (packing on), or rows x longest "
                  "row, padding included (packing off)."},
    )
    packing: Literal["auto", "off", "flash_attn_4", "flash_attn", "torch_varlen", "sdpa_rows", "sdpa_mask"] = field(
        default="auto",
        metadata={"help": "Pack each batch's rows into one sequence (no padding) with variable-length attention: "
                  "auto = FlashAttention-4's or -2's varlen kernel, else torch's (>= 2.10) on CUDA in bf16/fp16, else SDPA row by "
                  "row (CPU, fp32); off = padded batches; sdpa_mask = block-diagonal mask (O(T^2), for checking). "
                  "docs/methods.md §1."},
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        default="auto", metadata={"help": "Model dtype; auto = bf16 on GPUs, fp32 on CPU."}
    )
    attn: Literal["auto", "sdpa", "fa2", "eager"] = field(
        default="auto",
        metadata={"help": "Attention the model is loaded with (used with --packing off, and by the self-check's "
                  "reference forward); auto = FlashAttention-2 when installed on a GPU, else SDPA."},
    )
    per_token_prefix: int = field(
        default=0, metadata={"help": "Also store the first K per-token losses of each row (column token_losses)."}
    )
    brier_top_k: int = field(
        default=BRIER_TOP_K,
        metadata={"help": "K of the stored top-K Brier score (columns brier_topk_*, the lark key): per response "
                  "token, sum over the K most probable entries and the target of (p_i - [i = target])^2. "
                  "docs/methods.md §1."},
    )
    max_samples: int = field(default=0, metadata={"help": "Score only the first N rows (0 = all)."})
    shard_rows: int = field(default=1024, metadata={"help": "Rows per shard (the unit of resumption)."})
    chunk_tokens: int = field(
        default=0, metadata={"help": "Label positions per lm_head chunk (0 = auto: ~512 MB of fp32 logits)."}
    )
    num_proc: int = field(default=0, metadata={"help": "Processes for converting the pool (0 = auto)."})
    device: str = field(default="auto", metadata={
        "help": "auto (cuda:LOCAL_RANK when torch sees a GPU, else cpu; stops with the fix when the machine has "
                "NVIDIA GPUs torch cannot use), cpu, cuda."})
    verify: bool = field(
        default=True,
        metadata={"help": "Before scoring, check the scorer's losses on the first 256 tokens of two short rows "
                  "against the model's own full-logits forward (bounded: never changes the memory peak)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace scores of a different configuration in --out."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to transformers."})

    def validate(self) -> None:
        """Cheap checks before any heavy import: the values, the model folder, the pool's file."""
        for name in ("batch_tokens", "shard_rows", "brier_top_k"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("per_token_prefix", "max_samples", "chunk_tokens", "num_proc", "cutoff_len"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be >= 0, got {getattr(self, name)}")
        check_dataset_name(self.dataset, self.dataset_dir)
        check_model_path(self.model)
        check_model_path(self.tokenizer, "--tokenizer")
