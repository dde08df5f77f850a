"""Find the rows of the subset a matched baseline copies the length distribution of (``--match SUBSET``).

SUBSET is, in the order tried:

* a ``*.manifest.json`` written by ``data-select select``: the subset file beside it (its ``file_name``);
* a subset file (``.jsonl``, ``.json``, ``.parquet``) whose rows carry the scores' ``id``;
* a text file of ids, one a line (``.txt``, ``.ids``);
* the name of an entry in ``--dataset_info`` (its ``file_name``, relative to that file's folder).

Returns ``{"ids": [...], "source": "<what was read>"}`` for :func:`~data_selection.selectors.matched_random.select_matched_random`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from data_selection.command_line import UserError

ROW_FILES = (".jsonl", ".json", ".parquet")
ID_FILES = (".txt", ".ids")


def _ids_from_rows(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
        if "id" not in names:
            raise UserError(f"{path}: no 'id' column (columns: {names}); a subset written by data-select has one")
        return [str(x) for x in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}: line {i} is not JSON ({err.msg})") from None
    ids = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "id" not in row:
            raise UserError(f"{path}: row {i} has no 'id' field (a subset written by data-select has one)")
        ids.append(str(row["id"]))
    return ids


def load_match_target(subset: str, dataset_info: str = "dataset_info.json") -> dict[str, Any]:
    if not subset:
        raise UserError("--strategy matched-random needs --match SUBSET (a subset name, manifest, subset file or "
                        "ids file)")
    path = Path(subset)
    if path.is_file():
        if path.name.endswith(".manifest.json"):
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: not valid JSON ({err.msg})") from None
            data = path.parent / Path(manifest.get("file_name", "")).name
            if not manifest.get("file_name") or not data.is_file():
                raise UserError(f"{path}: its subset file {manifest.get('file_name')!r} is not beside it")
            return {"ids": _ids_from_rows(data), "source": str(data)}
        if path.suffix in ROW_FILES:
            return {"ids": _ids_from_rows(path), "source": str(path)}
        if path.suffix in ID_FILES:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return {"ids": ids, "source": str(path)}
        raise UserError(f"--match {path}: unknown kind of file (a .manifest.json, {', '.join(ROW_FILES)} subset "
                        f"or {', '.join(ID_FILES)} ids file)")
    from data_selection.registry import read_dataset_info  # lazy: registry loads LLaMA-Factory (torch)

    info_path = Path(dataset_info)
    entry = read_dataset_info(info_path).get(subset)
    if entry is None:
        raise UserError(f"--match {subset!r} is neither a file nor an entry of {info_path}")
    if "file_name" not in entry:
        raise UserError(f"{info_path}: entry {subset!r} has no file_name (a hub entry cannot be matched; give its "
                        "subset file)")
    data = info_path.parent / entry["file_name"]
    if not data.is_file():
        raise UserError(f"{info_path}: entry {subset!r} names {data}, which does not exist")
    return {"ids": _ids_from_rows(data), "source": f"{subset} ({data})"}
