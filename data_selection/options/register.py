"""Options of ``data-select register``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RegisterOptions:
    name: str = field(metadata={"help": "Entry name (what recipes put in `dataset:`)."})
    file: str = field(
        default="", metadata={"help": "Data file, relative to the dataset_info.json folder (default data/NAME.jsonl)."}
    )
    formatting: str = field(default="", metadata={"help": "alpaca | sharegpt (default: detected from the file)."})
    columns: str = field(
        default="",
        metadata={"help": 'Column mapping as JSON, e.g. \'{"prompt": "instruction", "query": "input", '
                  '"response": "output", "system": "system"}\' (default: detected from the file).'},
    )
    dataset_info: str = field(default="dataset_info.json", metadata={"help": "The dataset_info.json to modify."})
    force: bool = field(default=False, metadata={"help": "Replace an entry that data-select did not create."})
