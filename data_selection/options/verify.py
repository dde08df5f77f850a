"""``data-select verify``'s options (light: the CLI parses and checks them before anything heavy loads)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from data_selection.command_line import UserError

CHECKER_PYTHON_ENV = "DATA_SELECT_CHECKER_PYTHON"  # --checker_python's default when the option is not given

REFERENCE_CANDIDATES = ("ground_truth", "reference_answer", "expected_answer", "gold_answer", "answer", "reference",
                        "final_answer")


@dataclass
class VerifyOptions:
    dataset: str = field(
        metadata={"help": "Pool: an entry of DATASET_DIR/dataset_info.json, a local json/jsonl/parquet file, or a hub "
                  "dataset id (nvidia/AceReason-1.1-SFT, a-m-team/AM-DeepSeek-Distilled-40M)."}
    )
    out: str = field(metadata={"help": "Output folder, e.g. verify/acereason11_100k."})
    dataset_dir: str = field(default=".", metadata={"help": "Folder holding dataset_info.json."})
    columns: str = field(
        default="",
        metadata={"help": "Column mapping for files/hub ids as JSON, LLaMA-Factory's names (as for `score`). "
                  "Detected when empty."},
    )
    system_prompt: str = field(
        default="",
        metadata={"help": "System prompt for pools without a system column. It is part of every row id: give the "
                  "value `score` was given, so `select` can join the two outputs."},
    )
    split: str = field(default="train", metadata={"help": "Dataset split."})
    max_samples: int = field(default=0, metadata={"help": "Verify only the first N rows (0 = all)."})
    reference_column: str = field(
        default="auto",
        metadata={"help": "Column holding each query's reference answer; math responses are checked against it. "
                  f"auto: the first of {', '.join(REFERENCE_CANDIDATES)} that the pool has and that is not its "
                  "prompt or response; none: no reference, every query is checked against the majority answer of "
                  "its responses."},
    )
    query_key: str = field(
        default="",
        metadata={"help": "Column naming each row's query: rows with one value are responses to one query "
                  "(default: a hash of the normalised prompt)."},
    )
    math_categories: str = field(
        default="math",
        metadata={"help": "Categories checked with math-verify (comma-separated, case-insensitive). Rows of other "
                  "categories (code) get no score unless the dataset has a verify_score column. A pool without "
                  "a category column (or a row with an empty one) is math."},
    )
    min_votes: int = field(
        default=2, metadata={"help": "Majority check: the majority answer needs at least this many agreeing responses."}
    )
    timeout: float = field(
        default=5.0,
        metadata={"help": "CPU seconds allowed per math-verify call; a call that runs out gives its row no score and a "
                  "timeout reason (0 = no limit)."},
    )
    repeat_tokens: int = field(
        default=20, metadata={"help": "Length in words of the strings whose repetitions are counted (max_repeat)."}
    )
    dataset_repeats: bool = field(
        default=True,
        metadata={"help": "Count every repeat_tokens-word string across the whole pool (dataset_repeat: the paper's "
                  "repetition filter, `select --repeat_scope dataset`); false skips that pass (the per-response "
                  "count max_repeat is always stored)."},
    )
    recheck_model: str = field(
        default="",
        metadata={"help": "Local instruct model that re-checks math-verify's 'wrong' verdicts against the reference "
                  "(the paper used Qwen2.5-7B-Instruct); a 'yes' makes the score 1. Default: math-verify only."},
    )
    recheck_template: str = field(
        default="", metadata={"help": "LLaMA-Factory chat template of --recheck_model (e.g. qwen, smollm2)."}
    )
    recheck_batch: int = field(default=16, metadata={"help": "Prompts per generation batch of the re-check."})
    workers: int = field(default=0, metadata={"help": "Worker processes (0 = one per CPU core; 1 = in this process)."})
    shard_rows: int = field(
        default=1024, metadata={"help": "Rows per shard (whole queries; the unit of resumption and of work)."}
    )
    num_proc: int = field(default=0, metadata={"help": "Processes for converting the pool (0 = auto)."})
    checker_python: str = field(
        default="",
        metadata={"help": "Interpreter whose math-verify grades (e.g. .venv-verify/bin/python from `make "
                  "install-verify`: math-verify 0.9.0): shards are graded by `PYTHON -m "
                  "data_selection.verify.worker` subprocesses (one per worker), the rest runs here. Default: $"
                  f"{CHECKER_PYTHON_ENV}, else this interpreter's math-verify, in process. The checker's "
                  "version is part of the output's identity: a folder graded by another checker is never resumed "
                  "or merged."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an output of a different configuration in --out."})

    def validate(self) -> None:
        if self.min_votes < 1:
            raise UserError(f"--min_votes must be at least 1, got {self.min_votes}")
        if self.timeout < 0:
            raise UserError(f"--timeout must be >= 0 seconds, got {self.timeout}")
        if self.repeat_tokens < 1:
            raise UserError(f"--repeat_tokens must be at least 1, got {self.repeat_tokens}")
        if self.shard_rows < 1:
            raise UserError(f"--shard_rows must be at least 1, got {self.shard_rows}")
        if self.workers < 0:
            raise UserError(f"--workers must be >= 0, got {self.workers}")
        if self.checker_python:
            check_interpreter(self.checker_python, "--checker_python")
        if self.recheck_model and not self.recheck_template:
            raise UserError("--recheck_model needs --recheck_template (its LLaMA-Factory chat template, e.g. qwen)")


def checker_python_of(opts: VerifyOptions) -> tuple[str, str]:
    """(interpreter that grades, where it was named): ``--checker_python``, else ``$DATA_SELECT_CHECKER_PYTHON``,
    else ("", "") for this interpreter's math-verify in process."""
    if opts.checker_python:
        return opts.checker_python, "--checker_python"
    env = os.environ.get(CHECKER_PYTHON_ENV, "").strip()
    return (env, f"${CHECKER_PYTHON_ENV}") if env else ("", "")


def check_interpreter(python: str, name: str) -> str:
    """The absolute path of interpreter ``python`` (a path, or a command on PATH); a UserError naming ``name`` when
    it does not exist or is not executable."""
    found = shutil.which(python)
    if found:
        return str(Path(found).absolute())
    path = Path(python)
    if not path.exists():
        raise UserError(f"{name} {python}: no such file (build the checker environment with `make install-verify`, "
                        "then give .venv-verify/bin/python)")
    if path.is_dir():
        raise UserError(f"{name} {python}: a folder, not a Python interpreter (give e.g. .venv-verify/bin/python)")
    raise UserError(f"{name} {python}: not executable")
