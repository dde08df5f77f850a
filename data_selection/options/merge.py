"""``data-select merge``'s options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_selection.command_line import UserError


@dataclass
class MergeOptions:
    scores: str = field(metadata={"help": "A scoring output folder (holding meta.json and shards/)."})

    def validate(self) -> None:
        if not Path(self.scores).is_dir():
            raise UserError(f"--scores {self.scores}: no such folder (the --out of `data-select score`)")
