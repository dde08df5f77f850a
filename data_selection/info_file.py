"""The ``dataset_info.json`` file and the data files its entries name: reading them, never writing.

Shared by registration (``registry``) and ``data-select check`` so neither imports the other's work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError
from data_selection.jsonl import first_char, jsonl_lines, utf8_error_message
from data_selection.sources import detect_columns, lf_file_types


def read_dataset_info(path: str | Path, missing_ok: bool = True) -> dict[str, Any]:
    """The entries of ``path`` in file order; ``{}`` for a missing file when ``missing_ok``."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return {}
        raise UserError(f"{path}: no such file (a dataset_info.json is created by `data-select register`)")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix or "
                        "restore the file, nothing was changed") from err
    if not isinstance(info, dict):
        raise UserError(f"{path}: must hold a JSON object of dataset entries, found {type(info).__name__}")
    bad = [k for k, v in info.items() if not isinstance(v, dict)]
    if bad:
        raise UserError(f"{path}: entries must be JSON objects; not so for {bad}")
    return info



def columns_from_file(path: Path) -> tuple[str, dict[str, str]]:
    """Formatting and LLaMA-Factory column mapping for a subset file, from its columns."""
    return detect_columns(file_columns(path), str(path))


def file_columns(path: Path) -> list[str]:
    """Column names of a data file (first row of json/jsonl, schema of parquet/arrow, header of csv)."""
    suffix = path.suffix.lstrip(".")
    if suffix == "jsonl" or (suffix == "json" and first_char(path) != "["):
        for _, line in jsonl_lines(path):
            row = json.loads(line)
            return list(row) if isinstance(row, dict) else []
        return []
    if suffix == "parquet":
        # lazy: only a parquet file needs it
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    # lazy: datasets is heavy; only csv/arrow files need it
    from datasets import load_dataset

    return load_dataset(lf_file_types()[suffix], data_files=[str(path)], split="train").column_names


def not_utf8(files: list[Path]) -> str:
    """Why a JSON/JSON Lines file of ``files`` cannot be trained on as text ("" when all are UTF-8)."""
    for f in files:
        if f.suffix in (".json", ".jsonl"):
            message = utf8_error_message(f)
            if message:
                return message
    return ""
