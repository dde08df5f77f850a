"""Reading JSON Lines files: lines are separated by ``\\n`` only, as the format says.

``str.splitlines()`` also splits on U+2028, U+2029, U+0085, ``\\v``, ``\\f`` and ``\\x1c``-``\\x1e``, which a JSON
string may hold unescaped (``json.dumps(..., ensure_ascii=False)`` writes U+2028 as it is), and text-mode file
iteration turns a lone ``\\r`` into a line end. Both cut a valid row in two. Every reader of a ``.jsonl`` file
in this project goes through :func:`jsonl_lines`, which reads bytes and splits on ``b"\\n"`` alone.

:func:`load_json_tolerant` is the row-by-row reader ``sources`` falls back on when Arrow refuses a user's file.
"""

from __future__ import annotations

import codecs
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


def _utf8_problem(err: UnicodeDecodeError, data: bytes, offset: int) -> str:
    """``invalid start byte 0xff at byte 62``: the reason and the byte's offset in the file."""
    return f"{err.reason} 0x{data[err.start]:02x} at byte {offset + err.start}"


def first_utf8_error(path: str | os.PathLike, chunk: int = 1 << 24) -> tuple[int, str] | None:
    """(file offset, reason) of the first byte sequence of ``path`` that is not UTF-8, or None (streamed)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pos = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            pending = decoder.getstate()[0]
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:
                start = pos - len(pending)
                return start + err.start, _utf8_problem(err, pending + data, start)
            if not data:
                return None
            pos += len(data)


def utf8_error_message(path: str | os.PathLike) -> str:
    """``PATH line N: not valid UTF-8 (invalid start byte 0xff at byte 62)``, or "" when the file is UTF-8."""
    found = first_utf8_error(path)
    if found is None:
        return ""
    offset, reason = found
    line = 1
    with open(path, "rb") as f:
        done = 0
        while done < offset:
            block = f.read(min(1 << 24, offset - done))
            if not block:
                break
            line += block.count(b"\n")
            done += len(block)
    return f"{path} line {line}: not valid UTF-8 ({reason})"


def first_char(path: str | os.PathLike) -> str:
    """The first non-whitespace character of a text file ("" for an empty file): "[" marks a JSON array."""
    with open(path, "rb") as f:
        while True:
            block = f.read(4096)
            if not block:
                return ""
            stripped = block.lstrip()
            if stripped:
                return chr(stripped[0])  # only compared with ASCII "[" / "{"


def decode_json_file(path: str | os.PathLike) -> str:
    """The whole text of a JSON (array) file; bytes that are not UTF-8 are a file-level error naming the offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid UTF-8 ({_utf8_problem(err, data, 0)}); a JSON array is one value, so "
                        "the whole file is refused: fix or re-encode it") from err


def jsonl_raw_lines(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """(line number, file offset of the line, bytes) of every line of a JSON Lines file, split on ``\\n``."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            yield lineno, offset, raw
            offset += len(raw)


def decode_line(path: str | os.PathLike, lineno: int, offset: int, raw: bytes) -> str:
    """One line as text; a line that is not UTF-8 raises ValueError naming the file, line and byte offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} line {lineno}: not valid UTF-8 ({_utf8_problem(err, raw, offset)})") from err


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
    a line that is not UTF-8: rejected with its line number and byte offset, never decoded with replacement).
    A JSON array that is not UTF-8 is refused as a whole (:func:`decode_json_file`). Bad values become null and
    the row carries ``_load_error``, so it is rejected with a reason naming the file, line and field instead of
    stopping the run.

    A JSON number in a column of strings (a numeric reference answer) is kept as its text; the field's name is
    listed in ``_load_numbers``, so a prompt or response that was a number is still rejected ("is int, not a
    string", as when the whole column is numbers). Integers and floats in one column are numbers.
    """
    # lazy: datasets is heavy; only the fallback reader needs it
    from datasets import Dataset

    records: list[dict[str, Any]] = []
    for path in files:
        if first_char(path) == "[":
            try:
                items = [(i + 1, item, "") for i, item in enumerate(json.loads(decode_json_file(path)))]
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: not valid JSON ({err})") from err
        else:
            items = []
            for lineno, offset, raw in jsonl_raw_lines(path):
                try:  # a line that is not UTF-8 is a bad row like a line that is not JSON: rejected, never replaced
                    line = decode_line(path, lineno, offset, raw)
                except ValueError as err:
                    items.append((lineno, {}, str(err)))
                    continue
                if not line.strip():
                    continue
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
