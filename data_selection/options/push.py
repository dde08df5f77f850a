"""``data-select push``'s options (see :mod:`data_selection.push`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_selection.command_line import UserError


@dataclass
class PushOptions:
    names: list[str] = field(default_factory=list, metadata={"help": "The subset to push (one name)."})
    repo: str = field(default="", metadata={"help": "Hub dataset repo id, user/name."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    license: str = field(default="", metadata={"help": "License id for the card (e.g. cc-by-4.0; default none)."})
    dataset_info: str = field(default="dataset_info.json", metadata={"help": "dataset_info.json beside data/."})
    token: str = field(default="", metadata={"help": "Hub token (default: HF_TOKEN / the saved login)."})
    message: str = field(default="", metadata={"help": "Commit message (default: 'Upload NAME')."})

    POSITIONAL = "names"

    def validate(self) -> None:
        if len(self.names) != 1:
            raise UserError(f"push takes exactly one subset name, got {self.names or 'none'}")
        if not self.repo or self.repo.count("/") != 1 or not all(self.repo.split("/")):
            raise UserError(f"--repo {self.repo!r} must be a hub repo id of the form user/name")
