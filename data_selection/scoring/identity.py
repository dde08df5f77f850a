"""What makes two scoring runs the same run: their identity, recorded in ``meta.json`` and checked on resume.

A re-run into the same ``--out`` finishes the shards that are missing only if every identity field matches; a
run of a different configuration (another model, template, cutoff, pool content, system prompt…) is refused
with the differing fields named, so shards of two configurations are never mixed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError
from data_selection.scoring.layout import META, RUN_FILES, SHARD_DIR, read_meta

IDENTITY_KEYS = ("model", "tokenizer", "template", "cutoff_len", "dtype", "pool_fingerprint", "shard_rows",
                 "per_token_prefix", "system_prompt", "column_mapping")


def code_version() -> dict[str, str]:
    from data_selection import __version__

    info = {"data_selection": __version__}
    try:
        import llamafactory
        import transformers

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


def model_identity(model: str, config) -> dict[str, Any]:
    """Name, hub revision, and for local folders a digest of config.json and the weight files' names and sizes."""
    ident: dict[str, Any] = {"name_or_path": model, "revision": getattr(config, "_commit_hash", None)}
    p = Path(model)
    if p.is_dir():
        h = hashlib.sha256((p / "config.json").read_bytes() if (p / "config.json").exists() else b"")
        for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        ident["weights_digest"] = h.hexdigest()[:16]
    return ident


def encoding_identity(opts, pool, config) -> dict[str, Any]:
    """What makes a model pass over a pool reproducible: model, tokenizer, template, cutoff, dtype, the pool's
    content and column mapping, system prompt, sharding. Shared by every job that scores a pool this way
    (``score``, ``prune-steps``); each adds its own keys."""
    d = pool.describe()
    return {
        "model": model_identity(opts.model, config),
        "tokenizer": opts.tokenizer or None,
        "template": opts.template,
        "cutoff_len": opts.cutoff_len,
        "dtype": opts.dtype,
        "pool_fingerprint": d["fingerprint"],
        "shard_rows": opts.shard_rows,
        "system_prompt": opts.system_prompt,
        "column_mapping": d["column_mapping"],
    }


def run_identity(opts, pool, config) -> dict[str, Any]:
    return {**encoding_identity(opts, pool, config), "per_token_prefix": opts.per_token_prefix}


def check_out_dir(out: Path, identity: dict[str, Any], overwrite: bool, rank: int,
                  keys: tuple[str, ...] = IDENTITY_KEYS) -> None:
    """Refuse to mix runs in one folder; with ``overwrite``, rank 0 clears the other configuration's files."""
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
            for name in RUN_FILES:
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif (out / SHARD_DIR).exists() and any((out / SHARD_DIR).iterdir()) and not overwrite:
        raise UserError(f"{out}/{SHARD_DIR} holds shards without a meta.json; use --overwrite or another --out")
