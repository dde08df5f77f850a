"""What makes two runs into one folder the same run: their identity, recorded in ``meta.json`` and checked on resume.

A re-run into the same output folder finishes the shards that are missing only if every identity field matches;
a run of a different configuration (another model, template, cutoff, pool content, system prompt…) is refused
with the differing fields named, so shards of two configurations are never mixed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from data_selection import __version__
from data_selection.command_line import UserError
from data_selection.shards.layout import META, RUN_FILES, SHARD_DIR, read_meta


def code_version() -> dict[str, str]:
    info = {"data_selection": __version__}
    try:
        import llamafactory  # lazy: heavy, and only its version is wanted
        import transformers  # lazy: heavy, and only its version is wanted

        info["llamafactory"] = llamafactory.__version__
        info["transformers"] = transformers.__version__
    except Exception:
        pass
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            info["git"] = sha.stdout.strip()
    except Exception:
        pass
    return info


def check_out_dir(out: Path, identity: dict[str, Any], overwrite: bool, rank: int, keys: tuple[str, ...],
                  outputs: tuple[str, ...] = ()) -> None:
    """Refuse to mix runs in one folder; with ``overwrite``, rank 0 clears the other configuration's files (the
    run's own files and the job's merged ``outputs``)."""
    if (out / META).exists():
        old = read_meta(out).get("identity", {})
        diff = {k: (old.get(k), identity.get(k)) for k in keys if old.get(k) != identity.get(k)}
        if diff and not overwrite:
            lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise UserError(
                f"{out} holds scores of a different configuration ({lines}); refusing to mix them. "
                "Use another --out, or --overwrite to replace them."
            )
        if diff and overwrite and rank == 0:
            for name in (*outputs, *RUN_FILES):
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif (out / SHARD_DIR).exists() and any((out / SHARD_DIR).iterdir()) and not overwrite:
        raise UserError(f"{out}/{SHARD_DIR} holds shards without a meta.json; use --overwrite or another --out")
