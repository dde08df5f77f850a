"""Options of ``data-select check``."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_selection.command_line import UserError


@dataclass
class CheckOptions:
    names: list[str] = field(default_factory=list, metadata={"help": "Entries to check (default: all)."})
    dataset_info: str = field(default="dataset_info.json", metadata={"help": "The dataset_info.json to check."})
    rows: int = field(default=0, metadata={"help": "Quick mode: LLaMA-Factory's loader reads only the first N rows "
                                                   "of each file entry (default 0: every row)."})

    POSITIONAL = "names"

    def validate(self) -> None:
        if self.rows < 0:
            raise UserError(f"--rows must be 0 (every row) or a positive number of rows to sample, got {self.rows}")
