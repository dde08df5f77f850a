"""Read, modify and check LLaMA-Factory's ``dataset_info.json``.

Registration (``data-select register``, also run by ``select``) adds or updates one entry and keeps every
other entry and their order. The write is atomic (temporary file + rename) and happens under a lock
(``filelock`` on ``.dataset_info.json.lock`` beside the file), so concurrent ``select`` runs lose nothing.

**Ownership marker.** Entries made by this tool carry ``"created_by": "data-select"``, ``"made_by"`` (the
command: ``select``, ``prune-steps`` or ``register``) and ``"manifest"``, ``"recipe"`` when known.
LLaMA-Factory's parser (``DatasetAttr.join``) reads only the keys it knows and ignores the rest, and the web UI only reads ``ranking``, so the marker is invisible to training. An entry
without the marker was written by someone else: ``register`` refuses to replace it unless ``--force``. A
selection (``select``, ``prune-steps``) replaces without ``--force`` only an entry a selection of that name
wrote, never one made by ``register`` (the user's own pool), and never the file it reads
(:func:`check_subset_name`).

**Check** (``data-select check``) validates every entry and reports all problems at once, by entry name:
the source is declared, the formatting and column keys are ones LLaMA-Factory knows, the file exists, the
declared columns are in it, a ``system`` column present in the file is mapped (otherwise LLaMA-Factory
silently uses the template's default system prompt), and LLaMA-Factory's own ``_load_single_dataset``
loads and aligns every row (``--rows N``: the first N only, a quick sample). Hub entries are checked
structurally only when offline. Nothing here is false on LLaMA-Factory's own shipped registry: owner-less hub
ids (``wiki_qa``) are hub ids, and the SFT turn checks apply only to SFT entries (not preference pairs, KTO or
pre-training text).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from data_selection.atomic import write_json_atomic
from data_selection.command_line import UserError
from data_selection.info_file import columns_from_file, file_columns, not_utf8, read_dataset_info
from data_selection.names import hub_offline
from data_selection.sources import lf_file_types

MARKER_KEY = "created_by"
MARKER = "data-select"
MADE_BY_KEY = "made_by"  # the command that wrote the entry: select | prune-steps | register
SELECTION_COMMANDS = ("select", "prune-steps")
FORMATTINGS = ("alpaca", "sharegpt", "openai")
SOURCE_KEYS = ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
ENTRY_KEYS = SOURCE_KEYS + ("formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags")
OUR_KEYS = (MARKER_KEY, MADE_BY_KEY, "manifest", "recipe", "description")
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag")
TAG_KEYS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")


# -- writing ---------------------------------------------------------------------------------------------------------


def lock_for(path: str | Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{path.name}.lock"), timeout=120)


def is_ours(entry: dict[str, Any]) -> bool:
    return entry.get(MARKER_KEY) == MARKER


def made_by(entry: dict[str, Any]) -> str:
    """The command that wrote an entry of ours: ``select``, ``prune-steps`` or ``register`` ("" for not ours).
    Entries written before ``made_by`` existed: a recipe means a selection wrote it."""
    if not is_ours(entry):
        return ""
    return entry.get(MADE_BY_KEY) or ("select" if entry.get("recipe") else "register")


def subset_entry(file_name: str, formatting: str, columns: dict[str, str], manifest: str = "",
                 recipe: str = "", made_by: str = "select") -> dict[str, Any]:
    """A file entry as LLaMA-Factory reads it, plus our ownership marker and the command that wrote it."""
    entry: dict[str, Any] = {"file_name": file_name, "formatting": formatting, "columns": dict(columns),
                             MARKER_KEY: MARKER, MADE_BY_KEY: made_by}
    if manifest:
        entry["manifest"] = manifest
    if recipe:
        entry["recipe"] = recipe
    return entry


def _why_not_replace(path: Path, name: str, old: dict[str, Any], command: str) -> str:
    """Why ``command`` may not replace entry ``name`` without --force ("" when it may)."""
    if not is_ours(old):
        return (f"{path}: entry {name!r} was not created by data-select (no \"{MARKER_KEY}\": \"{MARKER}\"); "
                "pick another --name or pass --force to replace it")
    if command in SELECTION_COMMANDS and made_by(old) not in SELECTION_COMMANDS:
        return (f"{path}: entry {name!r} was made by `data-select {made_by(old)}` (a dataset of yours, file "
                f"{old.get('file_name')}); a selection replaces only what a selection of that name wrote: pick "
                "another --name or pass --force to replace it")
    return ""


def _entry_file(info_dir: Path, entry: dict[str, Any]) -> Path | None:
    file_name = entry.get("file_name")
    return (info_dir / file_name).resolve() if isinstance(file_name, str) and file_name else None


def pool_file(pool: dict[str, Any] | None) -> Path | None:
    """The local file a scored pool was read from (its record in meta.json), None for a hub pool."""
    if not pool or pool.get("load_from", "file") != "file":
        return None
    name = Path(pool.get("resolved_name") or pool.get("dataset") or "")
    if not name.is_absolute() and not name.exists():
        name = Path(pool.get("dataset_dir") or ".") / name
    return name.resolve()


def check_subset_name(dataset_info: str | Path, name: str, command: str, force: bool = False,
                      register: bool = True, reads: Path | None = None) -> None:
    """Refuse, before any output is written, a subset name whose file or entry is not the command's to replace.

    ``command`` (``select`` or ``prune-steps``) writes ``data/NAME.jsonl`` beside ``dataset_info``: never the file
    it ``reads`` (not even with --force), never a file an entry not written by a selection points to, and
    (when it ``register``s) never an entry a selection of that name did not write, unless ``force``.
    """
    path = Path(dataset_info)
    target = (path.parent / "data" / f"{name}.jsonl").resolve()
    if reads is not None and Path(reads).resolve() == target:
        raise UserError(f"--name {name!r} would write over the pool: this {command} reads {target}; choose a new name")
    info = read_dataset_info(path)
    if force:
        return
    old = info.get(name)
    if register and old is not None:
        why = _why_not_replace(path, name, old, command)
        if why:
            raise UserError(why)
    for other, entry in info.items():
        if _entry_file(path.parent, entry) == target and made_by(entry) not in SELECTION_COMMANDS:
            raise UserError(f"--name {name!r} would overwrite {target}, the file of entry {other!r} "
                            f"({'made by `data-select ' + made_by(entry) + '`' if is_ours(entry) else 'not ours'}); "
                            "pick another --name or pass --force")


def register_entry(dataset_info: str | Path, name: str, entry: dict[str, Any], force: bool = False) -> str:
    """Add or update ``name`` (locked read-modify-write, atomic). Returns "added", "updated" or "unchanged"."""
    path = Path(dataset_info)
    if not name or not name.strip():
        raise UserError("an entry needs a non-empty name")
    entry = {**entry, MARKER_KEY: MARKER}
    with lock_for(path):
        info = read_dataset_info(path)
        old = info.get(name)
        why = "" if old is None or force else _why_not_replace(path, name, old, entry.get(MADE_BY_KEY, "register"))
        if why:
            raise UserError(why)
        if old == entry:
            return "unchanged"
        info[name] = entry  # an existing key keeps its position
        write_json_atomic(path, info)
        return "added" if old is None else "updated"


def register_file(dataset_info: str | Path, name: str, file: str = "", formatting: str = "",
                  columns: dict[str, str] | None = None, force: bool = False) -> tuple[str, str, str, dict[str, str]]:
    """``data-select register``: add or update the entry ``name`` for a data file (default ``data/NAME.jsonl``,
    relative to the dataset_info.json folder). Returns (action, file name, formatting, columns)."""
    info_path = Path(dataset_info)
    file_name = file or f"data/{name}.jsonl"
    local = info_path.parent / file_name
    if not local.exists():
        raise UserError(f"{local}: no such file (file names are relative to {info_path.parent or '.'})")
    bad_bytes = not_utf8(sorted(local.iterdir()) if local.is_dir() else [local])
    if bad_bytes:
        raise UserError(f"{bad_bytes}: LLaMA-Factory cannot train on it as it is; fix or re-encode the file (nothing "
                        "was registered)")
    if columns:
        formatting = formatting or "alpaca"
    else:
        detected, columns = columns_from_file(local)
        formatting = formatting or detected
    manifest = Path(file_name).with_suffix(".manifest.json")
    entry = subset_entry(file_name, formatting, columns,
                         manifest=str(manifest) if (info_path.parent / manifest).exists() else "", made_by="register")
    return register_entry(info_path, name, entry, force=force), file_name, formatting, columns


# -- check ----------------------------------------------------------------------------------------------------------


@dataclass
class EntryCheck:
    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _structure(name: str, entry: dict[str, Any], res: EntryCheck) -> None:
    sources = [k for k in SOURCE_KEYS if k in entry]
    if not sources:
        res.problems.append(f"no data source: needs one of {', '.join(SOURCE_KEYS)}")
    unknown = [k for k in entry if k not in ENTRY_KEYS + OUR_KEYS]
    if unknown:
        res.problems.append(f"unknown key(s) {unknown}: LLaMA-Factory ignores them (typo?); known: "
                            f"{', '.join(ENTRY_KEYS)}")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        res.problems.append(f"formatting {formatting!r} is not one LLaMA-Factory knows ({', '.join(FORMATTINGS)})")
    columns = entry.get("columns", {})
    if not isinstance(columns, dict):
        res.problems.append(f"columns must be an object, found {type(columns).__name__}")
    else:
        bad = [k for k in columns if k not in COLUMN_KEYS]
        if bad:
            res.problems.append(f"columns key(s) {bad} are not ones LLaMA-Factory reads (known: "
                                f"{', '.join(COLUMN_KEYS)}); they would be silently ignored")
        nonstr = [k for k, v in columns.items() if not isinstance(v, str)]
        if nonstr:
            res.problems.append(f"columns {nonstr} must map to column names (strings)")
    tags = entry.get("tags", {})
    if not isinstance(tags, dict) or [k for k in tags if k not in TAG_KEYS]:
        res.problems.append(f"tags must be an object with keys among {', '.join(TAG_KEYS)}")
    if "hf_hub_url" in entry and not _is_hub_id(entry["hf_hub_url"]):
        res.problems.append(f"hf_hub_url {entry['hf_hub_url']!r} is not a hub id (owner/name, or a canonical "
                            "name such as 'wiki_qa')")


def _is_hub_id(repo: Any) -> bool:
    """``owner/name`` or an owner-less canonical id (``wiki_qa``, ``squad``), as the Hub's own validator accepts."""
    if not isinstance(repo, str) or not repo or repo.count("/") > 1:
        return False
    return all(part and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", part) and ".." not in part and "--" not in part
               for part in repo.split("/"))


def _declared_columns(attr) -> dict[str, str]:
    if attr.formatting == "sharegpt":
        keys = ("messages", "system", "tools")
    elif attr.formatting == "alpaca":
        keys = ("prompt", "query", "response", "history", "system", "tools")
    else:
        keys = ("messages", "system", "tools")
    return {k: getattr(attr, k) for k in keys if getattr(attr, k, None)}


def _load_with_llamafactory(attr, dataset_dir: str, rows: int):
    """LLaMA-Factory's own loader + aligner on every row (``rows`` 0), or on the first ``rows`` rows."""
    # lazy: LLaMA-Factory/transformers take seconds to import
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        data_args = DataArguments(dataset_dir=dataset_dir, max_samples=rows or None)
        training_args = Seq2SeqTrainingArguments(output_dir=tmp, report_to="none")
        return _load_single_dataset(attr, ModelArguments(model_name_or_path="unused"), data_args, training_args)


def _check_file_entry(name: str, info: dict[str, Any], dataset_dir: str, rows: int, res: EntryCheck) -> None:
    # lazy: LLaMA-Factory takes seconds to import
    from llamafactory.data.parser import get_dataset_list

    (attr,) = get_dataset_list([name], info)
    local = Path(os.path.join(dataset_dir, attr.dataset_name))  # the join LLaMA-Factory's loader does
    if not local.exists():
        recipe = info[name].get("recipe")
        hint = f" (not created yet: {recipe})" if recipe else ""
        res.problems.append(f"file {local} not found{hint}")
        return
    files = sorted(p for p in local.iterdir()) if local.is_dir() else [local]
    if not files:
        res.problems.append(f"folder {local} is empty")
        return
    kinds = {p.suffix.lstrip(".") for p in files}
    types = sorted(lf_file_types())
    if len(kinds) != 1 or not kinds <= set(types):
        res.problems.append(f"{local}: file type(s) {sorted(kinds)}; LLaMA-Factory needs one of {types}")
        return
    bad_bytes = not_utf8(files)
    if bad_bytes:  # LLaMA-Factory's loader would replace the bytes with U+FFFD (an array) or fail mid-way (lines)
        res.problems.append(bad_bytes)
        return
    try:
        columns = file_columns(files[0])
    except Exception as err:  # noqa: BLE001 - unreadable data: report it, go on with the other entries
        res.problems.append(f"{files[0]}: cannot be read ({type(err).__name__}: {err})")
        return
    if not columns:
        res.problems.append(f"{files[0]}: no rows")
        return
    declared = _declared_columns(attr)
    missing = {k: v for k, v in declared.items() if v not in columns}
    if missing:
        res.problems.append(f"declared column(s) {missing} not in {files[0]} (columns: {columns})")
        return
    if attr.formatting == "alpaca" and "system" in columns and not attr.system:
        res.problems.append("the file has a 'system' column but columns does not map it: LLaMA-Factory would "
                            "silently use the template's default system prompt (add \"system\": \"system\")")
    try:
        aligned = _load_with_llamafactory(attr, dataset_dir, rows)
    except Exception as err:  # noqa: BLE001 - whatever LLaMA-Factory raises is the finding
        res.problems.append(f"LLaMA-Factory's loader fails: {type(err).__name__}: {err}")
        return
    sampled = f"; sampled: the first {len(aligned)} row(s) only (--rows {rows}; without it every row)" if rows else ""
    if _sft_entry(attr):
        res.problems += _sft_problems(aligned, "of the first" if rows else "of")
    res.notes.append(f"{attr.formatting}, columns {declared}; LLaMA-Factory loaded {len(aligned)} row(s){sampled}")


def _sft_entry(attr) -> bool:
    """An instruction-tuning entry (prompt + response): not preference pairs, KTO tags or pre-training text."""
    if getattr(attr, "ranking", False) or getattr(attr, "kto_tag", None):
        return False
    return attr.formatting != "alpaca" or bool(attr.response)


def _listed(rows: list[int]) -> str:
    return f"{rows[:20]}" + (f" (+{len(rows) - 20} more)" if len(rows) > 20 else "")


def _sft_problems(aligned, of: str) -> list[str]:
    """The rows LLaMA-Factory's SFT preprocessing drops, and rows with an empty message, over all aligned rows."""
    # lazy: pyarrow is loaded by datasets by then
    import pyarrow.compute as pc

    table = aligned.with_format("arrow")[:]
    n = table.num_rows
    n_prompt = pc.list_value_length(table["_prompt"]).to_pylist()
    n_response = pc.list_value_length(table["_response"]).to_pylist()
    # SupervisedDatasetProcessor drops rows whose turn structure is off; empty messages it trains on as they are
    dropped = [i for i in range(n) if (n_prompt[i] or 0) % 2 != 1 or n_response[i] != 1]
    empty: set[int] = set()
    for col in ("_prompt", "_response"):
        messages = table[col].combine_chunks()
        parents = pc.list_parent_indices(messages).to_pylist()
        contents = pc.struct_field(pc.list_flatten(messages), "content")
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(pc.fill_null(contents, "")), ""), True).to_pylist()
        empty.update(parents[k] for k, b in enumerate(blank) if b)
    problems = []
    if dropped:
        problems.append(f"row(s) {_listed(dropped)} {of} {n}: invalid turn structure, LLaMA-Factory's SFT "
                        "preprocessing drops them")
    empty_rows = sorted(empty - set(dropped))
    if empty_rows:
        problems.append(f"row(s) {_listed(empty_rows)} {of} {n} have an empty prompt or response message")
    return problems


def check_dataset_info(dataset_info: str | Path, names: list[str] | None = None, rows: int = 0) -> list[EntryCheck]:
    """Check entries (all, or ``names``) of a dataset_info.json; never stops at the first problem. Every row of a
    file entry goes through LLaMA-Factory's loader (``rows`` 0) or only the first ``rows`` (a quick sample)."""
    if rows < 0:
        raise UserError(f"--rows must be 0 (every row) or a positive number of rows to sample, got {rows}")
    path = Path(dataset_info)
    info = read_dataset_info(path, missing_ok=False)
    dataset_dir = str(path.parent)
    results = []
    for name in names or list(info):
        res = EntryCheck(name)
        results.append(res)
        if name not in info:
            res.problems.append(f"no such entry in {path}")
            continue
        entry = info[name]
        _structure(name, entry, res)
        if res.problems:
            continue
        if "file_name" in entry and not any(k in entry for k in SOURCE_KEYS if k != "file_name"):
            _check_file_entry(name, info, dataset_dir, rows, res)
        elif "hf_hub_url" in entry:
            if hub_offline():
                res.notes.append(f"hub dataset {entry['hf_hub_url']}: checked structurally only (offline)")
            else:
                _check_hub_entry(entry["hf_hub_url"], res)
        else:
            res.notes.append("checked structurally only (ms/om hub, script or cloud entries are not loaded)")
    return results


def _check_hub_entry(repo: str, res: EntryCheck) -> None:
    # lazy: only an online hub check needs it
    from huggingface_hub import HfApi

    try:
        HfApi().dataset_info(repo)
        res.notes.append(f"hub dataset {repo} exists (columns not checked without downloading it)")
    except Exception as err:  # noqa: BLE001 - not found, gated, network: all are findings
        res.problems.append(f"hub dataset {repo}: {type(err).__name__}: {err}")
