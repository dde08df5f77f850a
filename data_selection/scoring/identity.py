"""What makes two scoring runs the same run: the identity of a model pass over a pool, recorded in ``meta.json``
and checked on resume by the sharded-run engine (:func:`data_selection.shards.identity.check_out_dir`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

IDENTITY_KEYS = ("model", "tokenizer", "template", "cutoff_len", "dtype", "pool_fingerprint", "shard_rows",
                 "per_token_prefix", "system_prompt", "column_mapping", "brier_top_k")


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
    """``score``'s identity. ``brier_top_k`` changes the stored Brier columns, so it is part of it; a folder scored
    before those columns existed records none, and is resumed or re-run only with ``--overwrite`` (re-scored whole):
    its shards lack the columns."""
    return {**encoding_identity(opts, pool, config), "per_token_prefix": opts.per_token_prefix,
            "brier_top_k": opts.brier_top_k}
