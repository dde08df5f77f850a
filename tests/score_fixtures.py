"""Build ``scores/NAME`` folders without a model: a real pool file (loaded with ``load_pool`` for the ids and
``meta.json``'s pool record) plus synthetic loss columns, in the exact layout ``data-select score`` writes.

Also ``synthetic_scores``: a pure in-memory scores table of any size (for selector tests and the bench).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from helpers import SYSTEM, make_acereason_rows, write_jsonl


def synthetic_scores(n: int, seed: int = 0, truncated_share: float = 0.05, sources: int = 4) -> pd.DataFrame:
    """A scores table shaped like scores.parquet: lengths log-normal, mean loss rising with log length."""
    rng = np.random.default_rng(seed)
    n_resp = np.clip(rng.lognormal(7.5, 1.0, n), 20, 60_000).astype(np.int64)
    loss_mean = 0.25 + 0.04 * np.log(n_resp) + rng.gamma(2.0, 0.12, n)
    names = ["OpenMathReasoning", "NuminaMath-CoT", "OpenCodeReasoning", "TACO", "apps", "leetcode"][:sources]
    source = rng.choice(names, size=n, p=None)
    category = np.where(np.isin(source, ["OpenCodeReasoning", "TACO", "apps", "leetcode"]), "code", "math")
    truncated = rng.random(n) < truncated_share
    return pd.DataFrame({
        "id": [f"{i:08d}-{i * 2654435761 % 16**12:012x}" for i in range(n)],
        "row": np.arange(n, dtype=np.int64),
        "n_prompt_tokens": rng.integers(20, 400, n),
        "n_response_tokens": n_resp,
        "n_tokens_full": n_resp + 100,
        "loss_sum": loss_mean * n_resp,
        "loss_mean": loss_mean,
        "loss_first_100": loss_mean * rng.uniform(0.9, 1.3, n),
        "loss_first_1000": loss_mean * rng.uniform(0.95, 1.1, n),
        "truncated": truncated,
        "category": category,
        "source": source,
    })


def make_scores_dir(root: Path, n_rows: int = 60, seed: int = 0, truncated_rows=(), rejected_rows=(),
                    bad_rows=(), name: str = "pool", rows: list[dict] | None = None) -> Path:
    """Write ``root/NAME.jsonl`` (AceReason format) and ``root/scores/NAME`` for it; return the scores folder.

    ``rejected_rows`` are left out of scores.parquet and listed in rejects.jsonl (as the scorer does);
    ``bad_rows`` get an empty output, which ``load_pool`` itself rejects; ``truncated_rows`` are flagged
    over-length. ``rows`` replaces the generated AceReason rows (any format ``load_pool`` detects).
    """
    from data_selection.sources import PoolSpec, load_pool

    generated = rows is None
    rows = make_acereason_rows(n_rows) if generated else rows
    for r in bad_rows:
        rows[r]["output"] = ""
    pool_file = write_jsonl(rows, root / f"{name}.jsonl")
    spec = PoolSpec(dataset=str(pool_file), system_prompt=SYSTEM if generated else "")
    pool = load_pool(spec)
    conv = pool.converted
    rng = np.random.default_rng(seed)
    records, rejects = [], []
    for ex in conv:
        row = ex["_row"]
        if ex["reject_reason"]:
            rejects.append({"row": row, "id": ex["id"], "reason": ex["reject_reason"]})
            continue
        if row in rejected_rows:
            rejects.append({"row": row, "id": ex["id"], "reason": "non-finite loss"})
            continue
        n_resp = max(1, len(ex["_response"][0]["content"]) // 3) * (1 + row % 7)
        loss = float(0.3 + 0.05 * np.log(n_resp) + rng.gamma(2.0, 0.15))
        records.append({
            "id": ex["id"], "row": row, "n_prompt_tokens": 30 + sum(len(m["content"]) for m in ex["_prompt"]) // 4,
            "n_response_tokens": n_resp, "n_tokens_full": n_resp + 40, "loss_sum": loss * n_resp,
            "loss_mean": loss, "loss_first_100": loss * float(rng.uniform(0.9, 1.3)),
            "loss_first_1000": loss * float(rng.uniform(0.95, 1.1)), "truncated": row in truncated_rows,
            **{c: ex[c] for c in pool.meta_columns},
        })
    out = root / "scores" / name
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(out / "scores.parquet", index=False)
    with open(out / "rejects.jsonl", "w", encoding="utf-8") as f:
        for r in sorted(rejects, key=lambda r: r["row"]):
            f.write(json.dumps(r) + "\n")
    meta = {
        "pool": pool.describe(),
        "model": {"name_or_path": "tiny-test-model", "revision": None},
        "template": "qwen",
        "cutoff_len": 16384,
        "dtype": "fp32",
        "code_version": {"data_selection": "test"},
        "meta_columns": pool.meta_columns,
        "counts": {"rows": len(conv), "scored": len(records), "rejected": len(rejects),
                   "truncated": len(set(truncated_rows))},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out
