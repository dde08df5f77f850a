"""Reading JSON Lines files: lines are separated by ``\\n`` only, as the format says.

``str.splitlines()`` also splits on U+2028, U+2029, U+0085, ``\\v``, ``\\f`` and ``\\x1c``-``\\x1e``, which a JSON
string may hold unescaped (``json.dumps(..., ensure_ascii=False)`` writes U+2028 as it is), and text-mode file
iteration turns a lone ``\\r`` into a line end. Both cut a valid row in two. Every reader of a ``.jsonl`` file
in this project goes through :func:`jsonl_lines`, which reads bytes and splits on ``b"\\n"`` alone.

:func:`load_json_tolerant` is the row-by-row reader ``sources`` falls back on when Arrow refuses a user's file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError

NUMBER_FIELDS = "_load_numbers"  # comma-separated fields of the row that held a JSON number in a text column
LOAD_ERROR = "_load_error"


def split_jsonl(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of every non-blank line of ``text``, split on ``\\n`` only (``\\r\\n`` too)."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield lineno, line.removesuffix("\r")


def jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line of a UTF-8 JSON Lines file, streamed."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):  # binary iteration splits on b"\n" alone
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path} line {lineno}: not UTF-8 ({err.reason} at byte {err.start})") from err
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Every value of a JSON Lines file written by this project (rejects, progress, subsets)."""
    out = []
    for lineno, line in jsonl_lines(path):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {lineno}: not valid JSON ({err.msg})") from err
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number_text(v: int | float) -> str:
    return json.dumps(v)  # the number as the file wrote it (42, 0.5, 1e-05)


def load_json_tolerant(files: list[str]):
    """Read JSON Lines row by row when Arrow refuses the file (a number where text is expected, a broken line,
    invalid UTF-8). Bad values become null and the row carries ``_load_error``, so it is rejected with a reason
    naming the file, line and field instead of stopping the run.

    A JSON number in a column of strings (a numeric reference answer) is kept as its text; the field's name is
    listed in ``_load_numbers``, so a prompt or response that was a number is still rejected ("is int, not a
    string", as when the whole column is numbers). Integers and floats in one column are numbers.
    """
    from datasets import Dataset

    records: list[dict[str, Any]] = []
    for path in files:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                items = [(i + 1, item, "") for i, item in enumerate(json.loads(stripped))]
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: not valid JSON ({err})") from err
        else:
            items = []
            for lineno, line in split_jsonl(text):
                try:
                    items.append((lineno, json.loads(line), ""))
                except json.JSONDecodeError as err:
                    items.append((lineno, {}, f"{path} line {lineno}: invalid JSON ({err.msg})"))
        for lineno, item, err in items:
            if not isinstance(item, dict):
                item, err = {}, err or f"{path} line {lineno}: not a JSON object"
            records.append({"_lineno": lineno, "_file": Path(path).name, LOAD_ERROR: err, NUMBER_FIELDS: "", **item})
    internal = ("_lineno", "_file", LOAD_ERROR, NUMBER_FIELDS)
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if k not in internal]
    for k in keys:
        kinds = {"number" if _is_number(r[k]) else type(r[k]).__name__ for r in records if r.get(k) is not None}
        if len(kinds) <= 1:
            continue
        major = "str" if "str" in kinds else sorted(kinds)[0]
        for r in records:
            v = r.get(k)
            if v is None:
                continue
            if major == "str" and _is_number(v):
                r[k] = _number_text(v)
                r[NUMBER_FIELDS] = ",".join(filter(None, [r[NUMBER_FIELDS], k]))
            elif major == "number" and _is_number(v):
                r[k] = float(v)
            elif (type(v).__name__ if not _is_number(v) else "number") != major:
                r[LOAD_ERROR] = r[LOAD_ERROR] or (
                    f"{r['_file']} line {r['_lineno']}: field {k!r} is {type(v).__name__}, not a string"
                    if major == "str" else f"{r['_file']} line {r['_lineno']}: field {k!r} has type {type(v).__name__}")
                r[k] = None
    rows = [{k: r.get(k) for k in keys} | {LOAD_ERROR: r[LOAD_ERROR], NUMBER_FIELDS: r[NUMBER_FIELDS]}
            for r in records]
    return Dataset.from_list(rows)
