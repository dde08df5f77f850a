"""Load a pool the way LLaMA-Factory reads it, keeping row identity and metadata columns.

A pool is named one of three ways:

1. an entry of ``DATASET_DIR/dataset_info.json``: parsed by LLaMA-Factory's own ``get_dataset_list``, so the
   column mapping and the system-prompt behaviour are exactly what ``llamafactory-cli train`` will see;
2. a local ``.json``/``.jsonl``/``.parquet``/``.csv``/``.arrow`` file;
3. a Hugging Face Hub dataset id (``redsgnaoh/acereason11_100k``, ``nvidia/AceReason-1.1-SFT``).

For 2 and 3 the column mapping is detected (alpaca ``instruction/input/output[/system]``, AceReason
``input/output``, sharegpt ``conversations``) or given explicitly. Rows are converted to LLaMA-Factory's
aligned format (``_prompt``, ``_response``, ``_system``, ``_tools``) with LLaMA-Factory's own converter, but
unlike ``align_dataset`` we keep the source row index (``_row``), a stable id (``<row:08d>-<sha1[:12]>`` of
the converted messages) and metadata columns (``category``, ``source``).

``system_prompt`` fills a system column for pools that have none (AceReason ships without one; the loss-band report
trained with "Please reason step by step…"): the same text is then written into every selected subset, so
training sees the prompt the scorer saw.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError
from data_selection.jsonl import LOAD_ERROR, NUMBER_FIELDS, first_utf8_error, load_json_tolerant
from data_selection.names import refuse_unreachable_hub_id

META_COLUMNS = ("category", "source", "response_kind")
"""Columns carried from the raw rows to the scores and subsets when the pool has them. ``response_kind`` labels
what a response is (the demo pool's correct / wrong / truncated / repetitive / scrambled / no_think), so the
reports can show what each strategy chose."""
USER_ID_COLUMN = "id"  # a user's own id column in the raw data ...
USER_ID = "user_id"  # ... kept under this name beside our row id (scores, subset rows), so subsets join back
DUPLICATES_SHOWN = 5


@dataclass
class PoolSpec:
    """Everything needed to load the same pool again (recorded in meta.json and manifests)."""

    dataset: str
    dataset_dir: str = "."
    columns: dict[str, str] = field(default_factory=dict)
    formatting: str = ""
    split: str = "train"
    system_prompt: str = ""
    max_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PoolSpec:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def lf_file_types() -> dict[str, str]:
    """LLaMA-Factory's file extension -> ``datasets`` builder table (``json``, ``parquet``, ...)."""
    # lazy: LLaMA-Factory's import takes seconds
    from llamafactory.extras.constants import FILEEXT2TYPE

    return FILEEXT2TYPE


def _dataset_info(dataset_dir: str) -> dict[str, Any] | None:
    path = Path(dataset_dir) / "dataset_info.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from err


def detect_columns(column_names: list[str], where: str) -> tuple[str, dict[str, str]]:
    cols = set(column_names)
    if "conversations" in cols or "messages" in cols:
        messages = "conversations" if "conversations" in cols else "messages"
        mapping = {"messages": messages}
        if "system" in cols:
            mapping["system"] = "system"
        return "sharegpt", mapping
    if {"instruction", "output"} <= cols:
        mapping = {"prompt": "instruction", "response": "output"}
        if "input" in cols:
            mapping["query"] = "input"
        if "system" in cols:
            mapping["system"] = "system"
        return "alpaca", mapping
    if {"input", "output"} <= cols:  # AceReason-1.1-SFT: the problem is `input`, the trace is `output`
        mapping = {"prompt": "input", "response": "output"}
        if "system" in cols:
            mapping["system"] = "system"
        return "alpaca", mapping
    if {"question", "answer"} <= cols:  # AM-DeepSeek-Distilled style
        return "alpaca", {"prompt": "question", "response": "answer"}
    raise UserError(
        f"{where}: cannot tell the format from columns {sorted(cols)}; pass --columns, e.g. "
        '\'{"prompt": "problem", "response": "solution"}\''
    )


def resolve_attr(spec: PoolSpec, column_names: list[str] | None = None):
    """Return LLaMA-Factory's ``DatasetAttr`` for the spec (columns detected when not declared)."""
    # lazy: LLaMA-Factory takes seconds to import; names are checked first
    from llamafactory.data.parser import DatasetAttr, get_dataset_list

    info = _dataset_info(spec.dataset_dir)
    if info is not None and spec.dataset in info:
        try:
            (attr,) = get_dataset_list([spec.dataset], spec.dataset_dir)
        except ValueError as err:
            raise UserError(f"{Path(spec.dataset_dir) / 'dataset_info.json'}: entry {spec.dataset!r}: {err}") from err
        return attr
    path = Path(spec.dataset)
    if path.suffix and not path.exists() and not (Path(spec.dataset_dir) / path).exists():
        raise UserError(f"dataset file {spec.dataset} not found")
    if path.exists() or (Path(spec.dataset_dir) / path).exists():
        attr = DatasetAttr("file", dataset_name=str(path if path.exists() else Path(spec.dataset_dir) / path))
    elif "/" in spec.dataset and not spec.dataset.startswith((".", "/")):
        refuse_unreachable_hub_id(spec.dataset, spec.dataset_dir)
        attr = DatasetAttr("hf_hub", dataset_name=spec.dataset)
    else:
        known = sorted(info) if info else []
        where = Path(spec.dataset_dir) / "dataset_info.json"
        raise UserError(
            f"dataset {spec.dataset!r} is not an entry of {where}"
            + (f" (entries: {', '.join(known[:20])}{'…' if len(known) > 20 else ''})" if known else " (no such file)")
            + ", not a local file and not a hub id (owner/name)"
        )
    attr.split = spec.split
    if spec.columns or spec.formatting or column_names is not None:
        formatting, mapping = spec.formatting, dict(spec.columns)
        if not mapping:
            formatting, mapping = detect_columns(column_names or [], spec.dataset)
        attr.join({"formatting": formatting or "alpaca", "columns": mapping, "split": spec.split})
    return attr


def _load_raw(attr, spec: PoolSpec):
    """Load the raw table as LLaMA-Factory's loader would (``datasets.load_dataset`` with the same arguments)."""
    # lazy: datasets is heavy; loaded only to read a pool
    from datasets import load_dataset

    if attr.load_from == "file":
        local = Path(attr.dataset_name)
        if not local.is_absolute() and not local.exists():
            local = Path(spec.dataset_dir) / local
        if not local.exists():
            raise UserError(f"dataset file {local} not found (entry {spec.dataset!r})")
        files = sorted(str(p) for p in local.iterdir()) if local.is_dir() else [str(local)]
        file_types = lf_file_types()
        types = {file_types.get(Path(f).suffix.lstrip(".")) for f in files}
        if len(types) != 1 or None in types:
            raise UserError(f"{local}: files must share one of the types {sorted(file_types)}")
        kind = types.pop()
        if kind == "json" and _not_utf8(files):  # Arrow would keep the bytes and fail later, mid-conversion
            return load_json_tolerant(files)  # a bad line is a rejected row; a bad JSON array a file-level error
        try:
            return load_dataset(kind, data_files=files, split=attr.split)
        except Exception as err:  # datasets raises many kinds; name the file
            if kind == "json":  # mixed types or a broken line: read row by row, reject only the bad rows
                return load_json_tolerant(files)
            raise UserError(f"{local}: could not be read as a dataset ({type(err).__name__}: {err})") from err
    if attr.load_from == "hf_hub":
        return load_dataset(attr.dataset_name, name=attr.subset, data_dir=attr.folder, split=attr.split)
    raise UserError(f"dataset {spec.dataset!r}: load_from={attr.load_from} is not supported by the scorer")


def _not_utf8(files: list[str]) -> bool:
    """Some file holds bytes that are not UTF-8 (checked before Arrow or LLaMA-Factory read them)."""
    return any(first_utf8_error(f) is not None for f in files)


def row_id(row: int, prompt: list, response: list, system: str) -> str:
    payload = json.dumps([prompt, response, system], ensure_ascii=False, sort_keys=True)
    return f"{row:08d}-{hashlib.sha1(payload.encode('utf-8')).hexdigest()[:12]}"


EMPTY_RESPONSE = "(response) is empty"  # in the reason of a row whose only fault is an empty or blank response


def empty_response_only(reason: str) -> bool:
    """The row was rejected only because its response is empty or blank (``verify`` scores such a row 0)."""
    return reason.endswith(EMPTY_RESPONSE)


def _check_row(example: dict[str, Any], attr) -> str:
    """Why LLaMA-Factory could not train on this raw row ("" when fine): missing, empty or non-string fields."""
    if attr.formatting == "alpaca":
        numbers = set(filter(None, (example.get(NUMBER_FIELDS) or "").split(",")))
        for role, col in (("prompt", attr.prompt), ("response", attr.response)):
            if col not in example:
                return f"field {col!r} ({role}) missing"
            val = example[col]
            if val is None:
                return f"field {col!r} ({role}) is null"
            if not isinstance(val, str) or col in numbers:
                kind = "a number" if col in numbers else type(val).__name__
                return f"field {col!r} ({role}) is {kind}, not a string"
            if not val.strip():
                return f"field {col!r} ({role}) is empty"
            if "\ufffd" in val:
                return f"field {col!r} ({role}) holds undecodable text (U+FFFD)"
        if attr.system and example.get(attr.system) is not None and not isinstance(example[attr.system], str):
            return f"field {attr.system!r} (system) is {type(example[attr.system]).__name__}, not a string"
    elif attr.formatting == "sharegpt":
        msgs = example.get(attr.messages)
        if not isinstance(msgs, list) or not msgs:
            return f"field {attr.messages!r} (messages) is missing or empty"
    return ""


def _converter(attr):
    # lazy: LLaMA-Factory takes seconds to import
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.hparams import DataArguments

    return get_dataset_converter(attr.formatting, attr, DataArguments())


def convert_example(example: dict[str, Any], row: int, attr, converter) -> dict[str, Any]:
    """LLaMA-Factory's conversion of one raw row, plus ``_row``, ``id``, ``n_chars`` and ``reject_reason``."""
    reason = example.get(LOAD_ERROR) or _check_row(example, attr)
    out: dict[str, Any] = {"_row": row, "reject_reason": reason}
    conv = {"_prompt": [], "_response": [], "_system": "", "_tools": ""}
    # a row whose only fault is an empty response is still converted: `verify` scores it 0 (a failed answer)
    if not reason or empty_response_only(reason):
        try:
            c = converter(example)
            conv = {k: c[k] for k in conv}
            conv["_system"] = conv["_system"] or ""
            conv["_tools"] = conv["_tools"] or ""
        except Exception as err:  # a malformed row must not stop a 4M-row job
            reason = f"conversion failed: {type(err).__name__}: {err}"
    if not reason and (len(conv["_prompt"]) % 2 != 1 or len(conv["_response"]) != 1):
        reason = "invalid turn structure (LLaMA-Factory drops it)"
    if not reason and not all(isinstance(m.get("content"), str) for m in conv["_prompt"] + conv["_response"]):
        reason = "a message content is not a string"
    out.update(conv)
    out["reject_reason"] = reason
    out["id"] = row_id(row, conv["_prompt"], conv["_response"], conv["_system"])
    out["n_chars"] = sum(len(m.get("content") or "") for m in conv["_prompt"] + conv["_response"]) + len(
        conv["_system"]
    )
    return out


@dataclass
class Pool:
    spec: PoolSpec
    attr: Any  # llamafactory DatasetAttr
    raw: Any  # datasets.Dataset with the original columns
    converted: Any  # datasets.Dataset: _row, id, _prompt, _response, _system, _tools, n_chars, reject_reason, meta
    fingerprint: str

    user_ids: dict[str, Any] = field(default_factory=dict)  # the user's id column and its duplicates, if any

    @property
    def meta_columns(self) -> list[str]:
        return _meta_columns(self.raw.column_names)

    def describe(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "load_from": self.attr.load_from,
            "resolved_name": self.attr.dataset_name,
            "resolved_formatting": self.attr.formatting,
            "column_mapping": {
                k: getattr(self.attr, k)
                for k in ("prompt", "query", "response", "history", "messages", "system", "tools")
                if getattr(self.attr, k, None)
            },
            "fingerprint": self.fingerprint,
            "num_rows": len(self.raw),
            **self.user_ids,
        }


def duplicate_user_ids_line(pool_record: dict[str, Any]) -> str:
    """One line for a summary or report when the user's own ids repeat ("" when they do not or there are none),
    from a pool record (``Pool.describe()``, meta.json's ``pool``, a manifest's ``source``)."""
    dup = pool_record.get("duplicate_user_ids") or {}
    if not dup.get("ids"):
        return ""
    first = ", ".join(repr(i) for i in dup.get("first", []))
    return (f"duplicate user ids: {dup['ids']:,} value(s) of column {pool_record.get('user_id_column')!r} repeat over "
            f"{dup['rows']:,} rows (first: {first}); rows are told apart by our id, not by yours")


def _meta_columns(raw_columns: list[str]) -> list[str]:
    """Columns carried from the raw rows to the scores and subsets: :data:`META_COLUMNS` and the user's own id."""
    return [c for c in META_COLUMNS if c in raw_columns] + ([USER_ID] if USER_ID_COLUMN in raw_columns else [])


def _user_ids(converted) -> dict[str, Any]:
    """``user_id_column`` and ``duplicate_user_ids`` (ids seen more than once, their rows, the first few)."""
    # lazy: pyarrow comes with datasets, loaded by now
    import pyarrow.compute as pc

    ids = converted.with_format("arrow")[USER_ID].combine_chunks()
    counts = pc.value_counts(pc.filter(ids, pc.not_equal(ids, "")))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    first: list[str] = []
    if len(repeated):  # the first few repeated ids in file order
        where = pc.indices_nonzero(pc.is_in(ids, value_set=repeated.field("values")))
        for v in pc.take(ids, where).to_pylist():
            if v not in first:
                first.append(v)
                if len(first) == DUPLICATES_SHOWN:
                    break
    return {"user_id_column": USER_ID_COLUMN,
            "duplicate_user_ids": {"ids": len(repeated), "rows": int(pc.sum(repeated.field("counts")).as_py() or 0),
                                   "first": first}}


def load_pool(spec: PoolSpec, num_proc: int | None = None) -> Pool:
    """Load and convert a pool. Rejected rows stay in ``converted`` with a ``reject_reason``."""
    attr = resolve_attr(spec)
    raw = _load_raw(attr, spec)
    if spec.max_samples and spec.max_samples < len(raw):
        raw = raw.select(range(spec.max_samples))
    if not _declared(spec):  # a file or hub id: detect (or apply the given) column mapping
        attr = resolve_attr(spec, raw.column_names)
    if spec.system_prompt and not attr.system:
        raw = raw.add_column("system", [spec.system_prompt] * len(raw))
        attr.system = "system"
    _check_columns(attr, raw.column_names, spec)
    converter = _converter(attr)
    meta = _meta_columns(raw.column_names)

    def convert(example, idx):
        out = convert_example(example, idx, attr, converter)
        for c in meta:
            v = example.get(USER_ID_COLUMN if c == USER_ID else c)
            out[c] = "" if v is None else str(v)
        return out

    converted = raw.map(
        convert,
        with_indices=True,
        remove_columns=raw.column_names,
        num_proc=num_proc if num_proc and num_proc > 1 and len(raw) > 10_000 else None,
        desc="Converting rows (LLaMA-Factory converter)",
    )
    digest = hashlib.sha256()
    for chunk in converted.with_format("arrow").iter(batch_size=100_000):
        digest.update("\n".join(chunk["id"].to_pylist()).encode())
    return Pool(spec=spec, attr=attr, raw=raw, converted=converted, fingerprint=digest.hexdigest()[:16],
                user_ids=_user_ids(converted) if USER_ID in meta else {})


def _declared(spec: PoolSpec) -> bool:
    info = _dataset_info(spec.dataset_dir)
    return bool(info and spec.dataset in info)


def _check_columns(attr, column_names: list[str], spec: PoolSpec) -> None:
    if attr.formatting == "alpaca":
        needed = {"prompt": attr.prompt, "response": attr.response}
    elif attr.formatting == "sharegpt":
        needed = {"messages": attr.messages}
    else:
        raise UserError(f"dataset {spec.dataset!r}: formatting {attr.formatting!r} is not supported by the scorer")
    missing = {k: v for k, v in needed.items() if v not in column_names}
    if missing:
        raise UserError(
            f"dataset {spec.dataset!r}: declared column(s) {missing} not in the data (columns: {column_names})"
        )


def default_num_proc() -> int:
    return max(1, min(8, (os.cpu_count() or 1) - 1))
