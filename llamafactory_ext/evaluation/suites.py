"""What to evaluate: ``--suite`` parsing (named suites, lighteval task names, local problem files).

A local problem file is JSON Lines with non-empty ``problem`` and ``answer`` per row (optional ``id`` and
``source``); it becomes a lighteval custom task scored by math-verify (``lighteval_tasks.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from data_selection.command_line import UserError
from data_selection.jsonl import jsonl_lines
from llamafactory_ext.evaluation.presets import SUITES

GENERIC_STEMS = {"eval", "test", "testset", "validation", "valid", "dev", "data", "problems"}


def read_local_problems(path: Path) -> list[dict]:
    """Validate a local problem file: one JSON object per line with non-empty ``problem`` and ``answer``."""
    if not path.is_file():
        raise UserError(f"local suite file {path} does not exist")
    rows = []
    for lineno, line in jsonl_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}, line {lineno}: not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}, line {lineno}: expected a JSON object with problem and answer")
        for key in ("problem", "answer"):
            value = row.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise UserError(f"{path}, line {lineno}: missing or empty field {key!r}")
        rows.append(
            {
                "id": str(row.get("id", f"row-{len(rows)}")),
                "problem": str(row["problem"]),
                "answer": str(row["answer"]).strip(),
                "source": str(row.get("source", "")),
            }
        )
    if not rows:
        raise UserError(f"{path}: no problems in the file")
    return rows


def local_task_name(path: Path, override: str | None) -> str:
    if override:
        name = override
    else:
        stem = path.stem.lower()
        name = f"{path.parent.name}_{stem}" if stem in GENERIC_STEMS and path.parent.name else stem
    name = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not name:
        raise UserError(f"cannot derive a task name from {path}; pass --task_name")
    return name


def parse_suite(suite: str, task_name: str | None) -> tuple[list[str], list[tuple[str, Path]]]:
    """→ (built-in benchmark names in order, [(local task name, file)])."""
    builtin: list[str] = []
    local: list[tuple[str, Path]] = []
    for item in (s.strip() for s in suite.split(",")):
        if not item:
            continue
        if item in SUITES:
            builtin += [t for t in SUITES[item] if t not in builtin]
        elif item.startswith("local:"):
            path = Path(item[len("local:") :]).expanduser().resolve()
            local.append((local_task_name(path, task_name if not local else None), path))
        else:
            name = item.split("|")[0]
            if name not in builtin:
                builtin.append(name)
    if not builtin and not local:
        raise UserError(f"--suite {suite!r} names no benchmark")
    names = [n for n, _ in local]
    if len(set(names)) != len(names):
        raise UserError(f"two local suites share the task name {names}; rename a file")
    return builtin, local
