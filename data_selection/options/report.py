"""Options of ``data-select report NAME… [--stages OUTPUT_DIR]`` (light: standard library and our plumbing only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_selection.command_line import UserError


@dataclass
class ReportOptions:
    names: list[str] = field(default_factory=list, metadata={"help": "Selected subsets (dataset_info.json names)."})
    out: str = field(default="", metadata={"help": "Output folder (default reports/NAME or reports/A_vs_B; with "
                                           "--stages alone reports/OUTPUT_DIR-NAME_stages)."})
    stages: str = field(
        default="", metadata={"help": "A dynamic selection's stages: the output_dir of a `llamafactory-ext train` "
                              "run with dynamic_selection (or its selection/ folder). Adds a Stages section (the "
                              "band per stage, the flows at each boundary: report.md, stages.png, stages.csv, "
                              "report.html); NAME… may then be left out."}
    )
    dataset_info: str = field(default="dataset_info.json", metadata={"help": "dataset_info.json beside data/."})
    scores: str = field(default="", metadata={"help": "Scores folder (default: the one the first manifest names)."})
    random_reference: bool = field(
        default=True, metadata={"help": "Overlay a random draw of the same size and seed when no NAME is random."}
    )
    html: bool = field(default=True, metadata={"help": "Also write report.html (charts + per-example browser, offline)."})
    html_rows: int = field(default=20000, metadata={"help": "report.html: most pool rows in its table (kept rows first)."})
    html_texts: int = field(default=1000, metadata={"help": "report.html: most rows whose prompt and response are embedded."})
    html_text_chars: int = field(default=6000, metadata={"help": "report.html: characters kept of each prompt/response."})
    html_tokenizer: str = field(
        default="", metadata={"help": "report.html: tokenizer that renders rows token by token (default: the scores' "
                              "model when it is a local folder; else the template renders the text)."}
    )

    POSITIONAL = "names"

    def validate(self) -> None:
        if not self.names and not self.stages:
            raise UserError("name at least one selected subset: data-select report NAME [NAME…] (or a dynamic "
                            "selection's run: data-select report --stages OUTPUT_DIR)")
        if self.stages and not Path(self.stages).is_dir():
            raise UserError(f"--stages {self.stages}: no such folder (the output_dir of a `llamafactory-ext train` "
                            "run with dynamic_selection)")
        for name in ("html_rows", "html_texts", "html_text_chars"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be >= 0, got {getattr(self, name)}")
