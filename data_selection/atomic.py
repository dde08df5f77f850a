"""Write files so that no reader ever sees half of one, and a killed job never leaves a corrupt file behind.

Everything the project writes goes through :func:`atomic_path`: the content is written to a temporary file in
the same folder (so the final rename never crosses a file system) and renamed over the target with
``os.replace`` only once it is complete; on an error the temporary file is removed and the old target, if
any, is untouched. The other helpers are that one idea applied to text, JSON, JSON Lines, Parquet and
whole folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write to it, and on success it becomes ``path``.

    For libraries that write to a path themselves (``pyarrow.parquet.write_table``, ``savefig``): give them the
    format explicitly, since the temporary name ends in ``.tmp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``open(path, mode)`` that only replaces ``path`` when the block finishes without an error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        text = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
        with open(tmp, mode, **text) as f:
            yield f


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Indented UTF-8 JSON; values JSON cannot hold (paths, numpy scalars) are written as their ``str``."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> str:
    """One JSON object per line, fixed key order as given; returns the sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with atomic_open(path) as f:
        for rec in records:
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            digest.update(line.encode("utf-8"))
            f.write(line)
    return digest.hexdigest()


def write_parquet_atomic(path: str | os.PathLike, table) -> None:
    """A ``pyarrow.Table`` (or pandas DataFrame, index dropped) as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` as a whole.

    A reader sees either the old folder or the complete new one (between removing the old and renaming the
    new there is a moment with neither, never one with a half-written folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
