"""``data-select prepare-model``'s options (see :mod:`data_selection.embedded`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PrepareModelOptions:
    out_dir: str = field(
        default="",
        metadata={"help": "Where to write the HF checkpoint (default: $DATA_SELECT_CACHE/models/SmolLM2-135M-Instruct)."},
    )
    force: bool = field(default=False, metadata={"help": "Convert again even if a finished conversion exists."})
