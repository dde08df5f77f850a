"""``llamafactory-ext compare``'s options (see :mod:`llamafactory_ext.evaluation.compare`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompareOptions:
    POSITIONAL = "runs"

    runs: list[str] = field(
        default_factory=list,
        metadata={"help": "Evaluation folders of llamafactory-ext eval (or lighteval results_*.json files)."},
    )
    out: str = field(default="reports/compare", metadata={"help": "Output folder for report.md/.csv/.png."})
    names: str | None = field(
        default=None, metadata={"help": "Comma-separated column names, one per run (default: folder names)."}
    )
    baseline: str | None = field(
        default=None, metadata={"help": "Run the deltas are taken against (default: the first run)."}
    )
    reference: str | None = field(
        default=None,
        metadata={
            "help": "Second comparison column, e.g. random (default: a run named 'random'; '' for none)."
        },
    )
    metric: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Force a benchmark's metric, e.g. --metric aime24=avg@n:n=8 (space-separated list)."
        },
    )
    title: str | None = field(default=None, metadata={"help": "Chart title."})
