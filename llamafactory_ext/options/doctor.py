"""``llamafactory-ext doctor``'s options (see :mod:`llamafactory_ext.doctor.runner`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_selection.command_line import UserError


@dataclass
class DoctorOptions:
    config: list[str] = field(default_factory=list, metadata={
        "help": "Optional: the recipe (yaml_recipes/advanced.yaml) or study (studies/zpd_qwen3b.yaml) to check "
                "against: its GPUs, precision, kernels, DeepSpeed config, models, pools and disk use."})
    json: str = field(default="", metadata={"help": "Also write the checks as JSON to this file."})

    POSITIONAL = "config"

    def validate(self) -> None:
        if len(self.config) > 1:
            raise UserError("name at most one recipe or study: llamafactory-ext doctor yaml_recipes/advanced.yaml")
