"""What a dataset or model name given on the command line points to, before anything heavy loads.

A name that is neither a local path nor a reachable hub id gets one line saying both (``mydata/pool`` with
``mydata/pool.jsonl`` beside it; a hub id while ``HF_HUB_OFFLINE`` is set); a model folder that does not exist is
named, instead of transformers' "Repo id must be in the form 'repo_name' or 'namespace/repo_name'".
Cheap: standard library only at import (an options class may call these in ``validate``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data_selection.command_line import UserError


def hub_offline() -> bool:
    """HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set: no hub id can be reached."""
    return any(os.environ.get(k, "0").lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _near_paths(name: str, dataset_dir: str = ".") -> list[str]:
    """Local files or folders named ``NAME.*`` (a path typed without its extension), as the user would type them."""
    found = []
    for base in dict.fromkeys((Path("."), Path(dataset_dir))):
        where = base / name
        if where.parent.is_dir():
            found += [str(Path(name).parent / p.name) if base == Path(".") else str(p)
                      for p in sorted(where.parent.glob(where.name + ".*"))]
    return found


def refuse_unreachable_hub_id(name: str, dataset_dir: str = ".") -> None:
    """A name that is neither a local path nor reachable as a hub id: say both in one line."""
    near = _near_paths(name, dataset_dir)
    if not near and not hub_offline():
        return
    hint = f" (did you mean {' or '.join(near[:3])}?)" if near else ""
    hub = "cannot be reached offline" if hub_offline() else "was not tried, as a local file of that name is near"
    raise UserError(f"no file or folder {name}{hint}; as a hub id it {hub}")


def check_model_path(path: str, option: str = "--model") -> None:
    """A model or tokenizer named by a path that does not exist: name the missing folder (transformers would say
    "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"). Cheap: no heavy import."""
    if not path or Path(path).expanduser().exists():
        return
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path or path.endswith("/")
    if looks_local:
        raise UserError(f"{option}: no folder {path}")
    if hub_offline() and not _in_hub_cache(path):
        raise UserError(f"{option}: no folder {path}; as a hub id it is not in the local cache and cannot be "
                        "reached offline")


def _in_hub_cache(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache  # lazy: only for a name that is not a local folder

    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return False


DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow", ".txt")


def check_dataset_name(name: str, dataset_dir: str = ".", option: str = "--dataset") -> None:
    """A pool named by a file that does not exist, or by a path typo that would be taken for a hub id, in one line
    before any heavy import. An entry of ``DATASET_DIR/dataset_info.json`` is left to the loader (it knows more)."""
    if not name or Path(name).exists() or (Path(dataset_dir) / name).exists() or _registered(name, dataset_dir):
        return
    if Path(name).suffix.lower() in DATA_SUFFIXES:
        near = [p for p in _near_paths(str(Path(name).with_suffix("")), dataset_dir) if p != name]
        hint = f" (did you mean {' or '.join(near[:3])}?)" if near else ""
        raise UserError(f"{option}: dataset file {name} not found{hint}")
    if "/" in name and not name.startswith((".", "/")):
        refuse_unreachable_hub_id(name, dataset_dir)


def _registered(name: str, dataset_dir: str) -> bool:
    info = Path(dataset_dir) / "dataset_info.json"
    try:
        return name in json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # no registry, or a broken one: the loader reports it with its own words
