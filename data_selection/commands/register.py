"""``data-select register``: add or update a data file's entry in dataset_info.json (atomic, locked)."""

from __future__ import annotations

from data_selection.command_line import json_object_option
from data_selection.options.register import RegisterOptions
from data_selection.registry import register_file

__all__ = ["RegisterOptions", "run"]


def run(opts: RegisterOptions) -> int:
    columns = json_object_option("--columns", opts.columns) if opts.columns else None
    action, file_name, formatting, columns = register_file(opts.dataset_info, opts.name, opts.file, opts.formatting,
                                                           columns, opts.force)
    print(f"{opts.dataset_info}: {action} entry {opts.name!r} -> {file_name} ({formatting}, columns {columns})")
    return 0
