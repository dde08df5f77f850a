"""``data-select score``: the resumable, sharded, multi-GPU response-loss scorer.

Work plan (deterministic for a given pool and configuration, whatever the number of GPUs):

1. The pool is loaded and converted the way LLaMA-Factory reads it (:mod:`data_selection.sources`); rows that
   LLaMA-Factory could not train on go to ``rejects.jsonl`` with their reason.
2. Eligible rows are sorted by character length (longest first) and cut into shards of ``shard_rows`` rows.
   Shards go to ranks (``torchrun``: ``RANK``/``WORLD_SIZE``) greedily by character count, so every rank gets
   about the same number of tokens.
3. A rank encodes each of its shards with LLaMA-Factory's template code (:mod:`data_selection.encoding`),
   sorts the shard by token length, batches it to ``batch_tokens`` and scores it with chunked response-only
   log-probs (:mod:`data_selection.scoring.logprobs`). The shard is written as
   ``shards/shard-000042.parquet`` through a temporary file and a rename, and a line is appended to
   ``progress.jsonl``. A shard file on disk is finished work: a re-run skips it.
4. When every shard exists, the rank that finishes last merges them into ``scores.parquet`` (see
   :mod:`data_selection.scoring.merge`; also ``data-select merge``).

Killing the job at any moment loses at most the shards in flight; re-running the same command finishes the
rest and the result equals an uninterrupted run (a shard's batches do not depend on what ran before).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_selection.command_line import UserError

SHARD_DIR = "shards"
META = "meta.json"
CONVERSION_REJECTS = "conversion_rejects.jsonl"


@dataclass
class ScoreOptions:
    model: str = field(metadata={"help": "Base model: hub id (Qwen/Qwen2.5-3B-Instruct) or local checkpoint folder."})
    dataset: str = field(
        metadata={
            "help": "Pool: an entry of DATASET_DIR/dataset_info.json, a local json/jsonl/parquet file, "
            "or a hub dataset id (redsgnaoh/acereason11_100k, nvidia/AceReason-1.1-SFT)."
        }
    )
    out: str = field(metadata={"help": "Output folder, e.g. scores/acereason11_100k."})
    template: str = field(default="qwen", metadata={"help": "LLaMA-Factory template (the one training will use)."})
    cutoff_len: int = field(default=16384, metadata={"help": "LLaMA-Factory cutoff_len (the one training will use)."})
    dataset_dir: str = field(default=".", metadata={"help": "Folder holding dataset_info.json."})
    tokenizer: str = field(default="", metadata={"help": "Tokenizer path if it differs from the model's."})
    columns: str = field(
        default="",
        metadata={
            "help": "Column mapping for files/hub ids as JSON, LLaMA-Factory's names, e.g. "
            '\'{"prompt": "input", "response": "output"}\'. Detected when empty (alpaca, AceReason, sharegpt).'
        },
    )
    system_prompt: str = field(
        default="",
        metadata={
            "help": "System prompt for pools that have no system column (AceReason). Recorded in meta.json and "
            "written into selected subsets, so training sees what was scored."
        },
    )
    split: str = field(default="train", metadata={"help": "Dataset split."})
    batch_tokens: int = field(
        default=32768, metadata={"help": "Token budget of a batch (rows x longest row), padding included."}
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        default="auto", metadata={"help": "Model dtype; auto = bf16 on GPUs, fp32 on CPU."}
    )
    attn: Literal["auto", "sdpa", "fa2", "eager"] = field(
        default="auto", metadata={"help": "Attention kernel; auto = FlashAttention-2 when installed on a GPU, else SDPA."}
    )
    per_token_prefix: int = field(
        default=0, metadata={"help": "Also store the first K per-token losses of each row (column token_losses)."}
    )
    max_samples: int = field(default=0, metadata={"help": "Score only the first N rows (0 = all)."})
    shard_rows: int = field(default=1024, metadata={"help": "Rows per shard (the unit of resumption)."})
    chunk_tokens: int = field(
        default=0, metadata={"help": "Label positions per lm_head chunk (0 = auto: ~512 MB of fp32 logits)."}
    )
    num_proc: int = field(default=0, metadata={"help": "Processes for converting the pool (0 = auto)."})
    device: str = field(default="auto", metadata={"help": "auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda."})
    verify: bool = field(
        default=True,
        metadata={"help": "Check the chunked losses of the shortest row against a plain full-logits forward."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace scores of a different configuration in --out."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to transformers."})


# -- configuration identity -------------------------------------------------------------------------------------

IDENTITY_KEYS = ("model", "tokenizer", "template", "cutoff_len", "dtype", "pool_fingerprint", "shard_rows",
                 "per_token_prefix", "system_prompt", "column_mapping")


def _code_version() -> dict[str, str]:
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


def _model_identity(model: str, config) -> dict[str, Any]:
    ident: dict[str, Any] = {"name_or_path": model, "revision": getattr(config, "_commit_hash", None)}
    p = Path(model)
    if p.is_dir():
        import hashlib

        h = hashlib.sha256((p / "config.json").read_bytes() if (p / "config.json").exists() else b"")
        for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        ident["weights_digest"] = h.hexdigest()[:16]
    return ident


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


def resolve_attn(attn: str, device: str) -> str:
    if attn == "fa2":
        return "flash_attention_2"
    if attn in ("sdpa", "eager"):
        return attn
    if device.startswith("cuda"):
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


def _dist() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _device(opt: str, local_rank: int) -> str:
    import torch

    if opt == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if opt == "cuda":
        return f"cuda:{local_rank}"
    return opt


def assign_shards(shard_chars: list[int], world: int) -> list[list[int]]:
    """Greedy longest-first assignment of shards to ranks by character count (deterministic)."""
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for k in sorted(range(len(shard_chars)), key=lambda i: (-shard_chars[i], i)):
        r = min(range(world), key=lambda j: (loads[j], j))
        out[r].append(k)
        loads[r] += shard_chars[k]
    return [sorted(s) for s in out]


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


# -- the run ----------------------------------------------------------------------------------------------------


def _prepare(opts: ScoreOptions):
    """Everything that can fail on bad input, before any model compute."""
    from transformers import AutoConfig

    from data_selection.encoding import TemplateEncoder, check_tokenizer_matches_model, load_tokenizer
    from data_selection.sources import PoolSpec, default_num_proc, load_pool, resolve_attr

    columns: dict[str, str] = {}
    if opts.columns:
        try:
            columns = json.loads(opts.columns)
            assert isinstance(columns, dict)
        except (json.JSONDecodeError, AssertionError) as err:
            raise UserError(f"--columns must be a JSON object, got {opts.columns!r}") from err
    spec = PoolSpec(
        dataset=opts.dataset,
        dataset_dir=opts.dataset_dir,
        columns=columns,
        split=opts.split,
        system_prompt=opts.system_prompt,
        max_samples=opts.max_samples,
    )
    resolve_attr(spec)  # unknown dataset name / missing file: fail before loading anything heavy
    try:
        config = AutoConfig.from_pretrained(opts.model, trust_remote_code=opts.trust_remote_code)
    except OSError as err:
        raise UserError(f"cannot load model config from {opts.model!r}: {err}") from err
    try:
        tokenizer = load_tokenizer(opts.model, opts.tokenizer or None, opts.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load tokenizer from {opts.tokenizer or opts.model!r}: {err}") from err
    check_tokenizer_matches_model(tokenizer, config, opts.model, opts.tokenizer or None)
    encoder = TemplateEncoder(tokenizer, opts.template, opts.cutoff_len)
    pool = load_pool(spec, num_proc=opts.num_proc or default_num_proc())
    return config, tokenizer, encoder, pool


def _identity(opts: ScoreOptions, pool, config) -> dict[str, Any]:
    d = pool.describe()
    return {
        "model": _model_identity(opts.model, config),
        "tokenizer": opts.tokenizer or None,
        "template": opts.template,
        "cutoff_len": opts.cutoff_len,
        "dtype": opts.dtype if opts.dtype != "auto" else "auto",
        "pool_fingerprint": d["fingerprint"],
        "shard_rows": opts.shard_rows,
        "per_token_prefix": opts.per_token_prefix,
        "system_prompt": opts.system_prompt,
        "column_mapping": d["column_mapping"],
    }


def _check_out_dir(out: Path, identity: dict[str, Any], overwrite: bool, rank: int) -> None:
    meta_path = out / META
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8")).get("identity", {})
        diff = {k: (old.get(k), identity.get(k)) for k in IDENTITY_KEYS if old.get(k) != identity.get(k)}
        if diff and not overwrite:
            lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise UserError(
                f"{out} holds scores of a different configuration ({lines}); refusing to mix them. "
                "Use another --out, or --overwrite to replace them."
            )
        if diff and overwrite and rank == 0:
            for name in (SHARD_DIR, "scores.parquet", "rejects.jsonl", "progress.jsonl", CONVERSION_REJECTS, META):
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif (out / SHARD_DIR).exists() and any((out / SHARD_DIR).iterdir()) and not overwrite:
        raise UserError(f"{out}/{SHARD_DIR} holds shards without a meta.json; use --overwrite or another --out")


def plan_shards(converted, shard_rows: int) -> tuple[list[list[int]], list[int]]:
    """Eligible rows sorted by character length (longest first), cut into shards of ``shard_rows`` rows."""
    import numpy as np

    tbl = converted.select_columns(["_row", "n_chars", "reject_reason"]).to_pandas()
    ok = tbl[tbl["reject_reason"] == ""]
    order = ok.sort_values(["n_chars", "_row"], ascending=[False, True], kind="stable")
    rows = order["_row"].to_numpy()
    chars = order["n_chars"].to_numpy()
    shards = [rows[i : i + shard_rows].tolist() for i in range(0, len(rows), shard_rows)]
    shard_chars = [int(np.sum(chars[i : i + shard_rows])) for i in range(0, len(rows), shard_rows)]
    return shards, shard_chars


def shard_path(out: Path, k: int) -> Path:
    return out / SHARD_DIR / f"shard-{k:06d}.parquet"


def load_model(opts: ScoreOptions, device: str):
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(opts.dtype, device)
    attn = resolve_attn(opts.attn, device)
    model = AutoModelForCausalLM.from_pretrained(
        opts.model, dtype=dtype, attn_implementation=attn, trust_remote_code=opts.trust_remote_code
    )
    model.to(device).eval()
    model.requires_grad_(False)  # not torch.set_grad_enabled(False): a global switch leaks into the caller
    return model, dtype, attn


def _score_shard(model, encoder, converted, rows: list[int], opts, device: str, chunk_tokens: int, meta_cols):
    """Encode, batch and score one shard. Returns (records, stats)."""
    import torch

    from data_selection.scoring.batching import padding_waste, token_budget_batches
    from data_selection.scoring.logprobs import response_token_losses

    sub = converted.select(rows)
    encoded: dict[int, Any] = {}
    records: dict[int, dict[str, Any]] = {}
    for ex in sub:
        row = ex["_row"]
        rec = {"id": ex["id"], "row": row, **{c: ex.get(c, "") for c in meta_cols}}
        try:
            enc = encoder.encode(ex)
        except Exception as err:  # a row the template cannot render must not stop the run
            rec["reject_reason"] = f"template encoding failed: {type(err).__name__}: {err}"
            records[row] = rec
            continue
        rec.update(
            n_prompt_tokens=enc.n_prompt_tokens,
            n_response_tokens=enc.n_response_tokens,
            n_tokens_full=enc.n_tokens_full,
            truncated=enc.truncated,
            reject_reason="",
        )
        if enc.n_response_tokens == 0:
            rec["reject_reason"] = "no response tokens after templating/truncation"
        else:
            encoded[row] = enc
        records[row] = rec
    lengths = {r: len(e.input_ids) for r, e in encoded.items()}
    batches = token_budget_batches(lengths, opts.batch_tokens)
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    n_tokens = 0
    for batch in batches:
        width = max(lengths[r] for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for i, r in enumerate(batch):
            e = encoded[r]
            ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
            mask[i, : len(e.input_ids)] = 1
            labels[i, : len(e.labels)] = torch.tensor(e.labels)
        losses = response_token_losses(model, ids.to(device), mask.to(device), labels.to(device), chunk_tokens)
        for r, tok in zip(batch, losses):
            tok = tok.double().cpu()
            rec = records[r]
            if not bool(torch.isfinite(tok).all()):
                rec["reject_reason"] = "non-finite loss"
                continue
            rec["loss_sum"] = float(tok.sum())
            rec["loss_mean"] = float(tok.mean())
            rec["loss_first_100"] = float(tok[:100].mean())
            rec["loss_first_1000"] = float(tok[:1000].mean())
            if opts.per_token_prefix:
                rec["token_losses"] = tok[: opts.per_token_prefix].float().tolist()
        n_tokens += sum(lengths[r] for r in batch)
    stats = {"tokens": n_tokens, "padding_waste": padding_waste(lengths, batches), "batches": len(batches)}
    return [records[r] for r in sorted(records)], stats


def _write_shard(path: Path, records: list[dict[str, Any]], per_token_prefix: int) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = pd.DataFrame.from_records(records)
    for col in ("loss_sum", "loss_mean", "loss_first_100", "loss_first_1000"):
        if col not in df:
            df[col] = float("nan")
    if per_token_prefix and "token_losses" not in df:
        df["token_losses"] = None
    table = pa.Table.from_pandas(df, preserve_index=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _verify(model, encoder, converted, rows: list[int], device: str, chunk_tokens: int, dtype) -> float:
    """Compare the chunked losses of the shortest eligible row with a plain full-logits forward."""
    import torch

    from data_selection.scoring.logprobs import reference_token_losses, response_token_losses

    for row in sorted(rows, key=lambda r: converted[r]["n_chars"])[:5]:
        enc = encoder.encode(converted[row])
        if enc.n_response_tokens == 0:
            continue
        ids = torch.tensor([enc.input_ids], device=device)
        labels = torch.tensor([enc.labels], device=device)
        ours = response_token_losses(model, ids, torch.ones_like(ids), labels, chunk_tokens)[0]
        ref = reference_token_losses(model, ids, labels)
        diff = float((ours - ref).abs().max())
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        if diff > tol:
            raise RuntimeError(
                f"self-check failed: chunked response losses differ from the model's own forward by {diff:.2e} "
                f"(> {tol:g}) on row {row}; this architecture post-processes logits in a way the scorer does not "
                "know. Please report it."
            )
        return diff
    return 0.0


def run_score(opts: ScoreOptions) -> dict[str, Any]:
    """Score (or finish scoring) a pool. Returns a summary dict; see the module docstring."""
    from tqdm.auto import tqdm

    from data_selection.scoring.logprobs import auto_chunk_tokens
    from data_selection.scoring.merge import merge_shards

    rank, world, local_rank = _dist()
    out = Path(opts.out)
    config, tokenizer, encoder, pool = _prepare(opts)
    identity = _identity(opts, pool, config)
    out.mkdir(parents=True, exist_ok=True)
    _check_out_dir(out, identity, opts.overwrite, rank)
    (out / SHARD_DIR).mkdir(exist_ok=True)

    shards, shard_chars = plan_shards(pool.converted, opts.shard_rows)
    conv_rejects = pool.converted.filter(lambda r: r["reject_reason"] != "", desc="Collecting rejects")
    meta = {
        "identity": identity,
        "pool": pool.describe(),
        "model": identity["model"],
        "template": opts.template,
        "cutoff_len": opts.cutoff_len,
        "dtype": opts.dtype,
        "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
        "num_shards": len(shards),
        "code_version": _code_version(),
        "meta_columns": pool.meta_columns,
    }
    if rank == 0:
        _write_json_atomic(out / META, meta)
        tmp = out / f".{CONVERSION_REJECTS}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in conv_rejects:
                f.write(json.dumps({"row": r["_row"], "id": r["id"], "reason": r["reject_reason"]}) + "\n")
        os.replace(tmp, out / CONVERSION_REJECTS)

    mine = assign_shards(shard_chars, world)[rank]
    pending = [k for k in mine if not shard_path(out, k).exists()]
    device = _device(opts.device, local_rank)
    summary: dict[str, Any] = {"rank": rank, "world_size": world, "shards_total": len(shards),
                               "shards_mine": len(mine), "shards_done_before": len(mine) - len(pending)}
    t0 = time.perf_counter()
    tokens = rows_done = 0
    wastes = []
    if pending:
        model, dtype, attn = load_model(opts, device)
        chunk = opts.chunk_tokens or auto_chunk_tokens(model.get_output_embeddings().weight.shape[0])
        summary.update(device=device, dtype=str(dtype).replace("torch.", ""), attn=attn, chunk_tokens=chunk)
        if opts.verify:
            summary["self_check_max_abs_diff"] = _verify(
                model, encoder, pool.converted, shards[pending[0]], device, chunk, dtype
            )
        bar = tqdm(total=sum(len(shards[k]) for k in pending), unit="row", desc=f"scoring (rank {rank})",
                   disable=rank != 0)
        for k in pending:
            ts = time.perf_counter()
            records, stats = _score_shard(
                model, encoder, pool.converted, shards[k], opts, device, chunk, pool.meta_columns
            )
            _write_shard(shard_path(out, k), records, opts.per_token_prefix)
            dt = time.perf_counter() - ts
            tokens += stats["tokens"]
            rows_done += len(records)
            wastes.append(stats["padding_waste"])
            with open(out / "progress.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"shard": k, "rank": rank, "rows": len(records), "tokens": stats["tokens"],
                                    "seconds": round(dt, 3), "padding_waste": round(stats["padding_waste"], 4),
                                    "time": time.time()}) + "\n")
            bar.update(len(records))
            el = time.perf_counter() - t0
            bar.set_postfix(tok_s=f"{tokens / el:,.0f}", rows_s=f"{rows_done / el:,.1f}")
        bar.close()
    elapsed = time.perf_counter() - t0
    summary.update(rows_scored_now=rows_done, tokens_now=tokens, seconds=round(elapsed, 2),
                   tokens_per_s=round(tokens / elapsed, 1) if elapsed > 0 and tokens else None,
                   padding_waste=round(sum(wastes) / len(wastes), 4) if wastes else None)
    missing = [k for k in range(len(shards)) if not shard_path(out, k).exists()]
    if missing:
        summary["merged"] = False
        summary["waiting_for_shards"] = len(missing)
    else:
        summary["merged"] = True
        summary.update(merge_shards(out))
    return summary


def cli_score(opts: ScoreOptions) -> int:
    s = run_score(opts)
    if s.get("rank", 0) == 0 or s.get("merged"):
        print(json.dumps(s, indent=2))
        if s.get("merged"):
            print(f"scores: {Path(opts.out) / 'scores.parquet'}\nrejects: {Path(opts.out) / 'rejects.jsonl'}")
        else:
            print(f"{s['waiting_for_shards']} shard(s) still running on other ranks; the last rank merges "
                  f"(or run: data-select merge --scores {opts.out})")
    return 0


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
