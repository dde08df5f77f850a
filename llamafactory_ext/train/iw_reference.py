"""Reference log-probs for iw-SFT, looked up per training example without a reference model.

iw-SFT needs, for every training sequence, the frozen initial model's mean log-prob of its response tokens.
``data-select score`` already computed exactly that for the pool (``scores.parquet``: mean log-prob =
``-loss_mean``), keyed by row ``id``. The catch: LLaMA-Factory's converter drops every column it does not
use, ``id`` included, so a batch reaching the trainer carries only token ids.

So at start-up every row of the training files is encoded again with LLaMA-Factory's *own* pipeline
(``align_dataset`` + ``SupervisedDatasetProcessor``, same template, cutoff and tokenizer fixes as the run),
and the resulting ``input_ids`` are hashed: ``sha1(int64 bytes)``. The table maps that key to the row's
reference mean log-prob; in the trainer, a batch row's un-padded ``input_ids`` give the same key. Identical
(prompt, response) pairs share a key, which is harmless: same text, same reference value. Rows whose id has
no score are an error naming the file, row and id.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from datasets import load_dataset
from llamafactory.data.converter import align_dataset
from llamafactory.data.parser import get_dataset_list
from llamafactory.data.processor import SupervisedDatasetProcessor
from llamafactory.extras.constants import FILEEXT2TYPE, IGNORE_INDEX
from llamafactory.extras.logging import get_logger

from data_selection.command_line import UserError


def _log():
    """LLaMA-Factory's configured logger (its handler and format), so our messages appear in its run log."""
    return get_logger("llamafactory.ext")


def sequence_key(input_ids) -> str:
    """Stable key of one un-padded token sequence (list, numpy array or 1-D tensor)."""
    if hasattr(input_ids, "detach"):
        input_ids = input_ids.detach().cpu().numpy()
    return hashlib.sha1(np.asarray(input_ids, dtype=np.int64).tobytes()).hexdigest()


@dataclass
class ReferenceLogprobs:
    """Sequence key -> reference mean log-prob over the response tokens."""

    by_key: dict[str, float]
    description: str

    def __len__(self) -> int:
        return len(self.by_key)

    def batch_keys(self, input_ids, attention_mask) -> list[str]:
        if attention_mask is None or attention_mask.dim() != 2:
            raise RuntimeError(
                "iw_sft needs a 2-D attention mask to strip padding (packing is not supported)"
            )
        ids = input_ids.detach().cpu()
        mask = attention_mask.detach().cpu().bool()
        return [sequence_key(ids[i][mask[i]]) for i in range(ids.shape[0])]

    def lookup(self, input_ids, attention_mask, tokenizer=None):
        """Reference mean log-prob of every row of a batch, as a float tensor (B,)."""
        keys = self.batch_keys(input_ids, attention_mask)
        missing = [i for i, k in enumerate(keys) if k not in self.by_key]
        if missing:
            raise RuntimeError(
                f"iw_sft: batch row {missing[0]} has no reference log-prob in {self.description}"
                + (f": {_preview(input_ids[missing[0]], tokenizer)}" if tokenizer is not None else "")
            )
        return torch.tensor([self.by_key[k] for k in keys], dtype=torch.float32)

    def missing_in(self, dataset, tokenizer=None, limit: int = 3) -> tuple[int, list[str]]:
        """How many rows of a tokenized training dataset have no reference, and previews of the first few."""
        n_missing, previews = 0, []
        for batch in dataset.select_columns(["input_ids"]).iter(batch_size=1000):
            for ids in batch["input_ids"]:
                if sequence_key(ids) not in self.by_key:
                    n_missing += 1
                    if len(previews) < limit:
                        previews.append(_preview(ids, tokenizer))
        return n_missing, previews


def _preview(ids, tokenizer) -> str:
    if tokenizer is None:
        return f"{len(ids)} tokens"
    ids = list(np.asarray(ids.cpu() if hasattr(ids, "cpu") else ids))
    return repr(tokenizer.decode(ids[:60], skip_special_tokens=False)[:200])


class _KeyEncoder:
    """Batched map function: one output row per input row (key "" for rows LLaMA-Factory drops)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, examples):
        keys, n_labels = [], []
        for i in range(len(examples["_prompt"])):
            one = {k: [examples[k][i]] for k in examples}
            if len(one["_prompt"][0]) % 2 != 1 or len(one["_response"][0]) != 1:
                keys.append("")
                n_labels.append(0)
                continue
            out = self.processor.preprocess_dataset(one)
            if not out["input_ids"]:
                keys.append("")
                n_labels.append(0)
                continue
            keys.append(sequence_key(out["input_ids"][0]))
            n_labels.append(sum(1 for t in out["labels"][0] if t != IGNORE_INDEX))
        return {"_key": keys, "_n_labels": n_labels}


def read_scores(path: str):
    """scores.parquet -> DataFrame with id, row, ref_mean_logprob (= -loss_mean) [, n_response_tokens]."""
    if os.path.isdir(path):
        path = os.path.join(path, "scores.parquet")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise UserError(f"iw_sft_scores {path}: cannot read ({err})") from None
    need = {"id", "row", "loss_mean"}
    if not need <= set(df.columns):
        raise UserError(f"iw_sft_scores {path}: missing column(s) {sorted(need - set(df.columns))}")
    keep = [c for c in ("id", "row", "loss_mean", "n_response_tokens") if c in df.columns]
    df = df[keep].copy()
    df["ref_mean_logprob"] = -df["loss_mean"].astype("float64")
    return df


def _fingerprint(aligned, tokenizer, data_args) -> str:
    """Cache key of the key table: the converted rows plus everything that changes their tokens.

    Given explicitly because letting ``datasets`` hash the map function pickles the whole tokenizer (seconds).
    """
    parts = [
        "iw-sft-keys-v1", getattr(aligned, "_fingerprint", ""), tokenizer.name_or_path, str(len(tokenizer)),
        str(getattr(tokenizer, "chat_template", "")), str(data_args.template), str(data_args.cutoff_len),
        str(data_args.train_on_prompt), str(data_args.mask_history),
    ]  # fmt: skip
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def _dataset_files(dataset_attr, data_args) -> list[str]:
    local = os.path.join(data_args.dataset_dir, dataset_attr.dataset_name)
    if os.path.isdir(local):
        return sorted(os.path.join(local, f) for f in os.listdir(local))
    if os.path.isfile(local):
        return [local]
    raise UserError(f"iw_sft: training file {local} not found")


def _load_raw(dataset_attr, model_args, data_args):
    """Load one dataset's rows exactly as LLaMA-Factory's loader would (before its format conversion)."""
    if dataset_attr.load_from == "file":
        files = _dataset_files(dataset_attr, data_args)
        builder = FILEEXT2TYPE.get(os.path.splitext(files[0])[-1][1:])
        return load_dataset(
            builder, data_files=files, split=dataset_attr.split, cache_dir=model_args.cache_dir
        ), ", ".join(files)
    if dataset_attr.load_from == "hf_hub":
        return load_dataset(
            dataset_attr.dataset_name,
            name=dataset_attr.subset,
            data_dir=dataset_attr.folder,
            split=dataset_attr.split,
            cache_dir=model_args.cache_dir,
            token=model_args.hf_hub_token,
        ), f"hub:{dataset_attr.dataset_name}"
    raise UserError(
        f"iw_sft: dataset {dataset_attr} is loaded from {dataset_attr.load_from}; use a local file or HF hub"
    )


def build_reference(
    model_args, data_args, training_args, tokenizer, template, scores_path: str
) -> ReferenceLogprobs:
    """Encode every training row with LLaMA-Factory's pipeline; map its key to its reference log-prob."""
    scores = read_scores(scores_path)
    by_id = dict(zip(scores["id"].astype(str), scores["ref_mean_logprob"]))
    by_row = dict(zip(scores["row"].astype(int), scores["ref_mean_logprob"]))
    n_tok_by_id = (
        dict(zip(scores["id"].astype(str), scores["n_response_tokens"]))
        if "n_response_tokens" in scores
        else {}
    )
    processor = SupervisedDatasetProcessor(
        template=template, tokenizer=tokenizer, processor=None, data_args=data_args
    )

    table: dict[str, float] = {}
    n_length_mismatch = n_conflicts = 0
    for attr in get_dataset_list(data_args.dataset, data_args.dataset_dir):
        raw, where = _load_raw(attr, model_args, data_args)
        ids = [str(x) for x in raw["id"]] if "id" in raw.column_names else None
        aligned = align_dataset(raw, attr, data_args, training_args)
        encoded = aligned.map(
            _KeyEncoder(processor),
            batched=True,
            batch_size=data_args.preprocessing_batch_size,
            remove_columns=aligned.column_names,
            num_proc=data_args.preprocessing_num_workers,
            new_fingerprint=_fingerprint(aligned, tokenizer, data_args),
            load_from_cache_file=not data_args.overwrite_cache,
            desc=f"iw-SFT: matching {attr.dataset_name} rows to reference scores",
        )
        for row, (key, n_labels) in enumerate(zip(encoded["_key"], encoded["_n_labels"])):
            if not key:
                continue  # LLaMA-Factory drops this row too
            if ids is not None:
                ref = by_id.get(ids[row])
                if ref is None:
                    raise UserError(
                        f"iw_sft: {where} row {row} (id {ids[row]!r}) has no score in {scores_path}"
                    )
                expected = n_tok_by_id.get(ids[row])
            else:
                ref = by_row.get(row)
                if ref is None:
                    raise UserError(
                        f"iw_sft: {where} row {row} has no `id` column and no score with row={row} "
                        f"in {scores_path}"
                    )
                expected = None
            if expected is not None and int(expected) != n_labels:
                n_length_mismatch += 1
            if key in table and abs(table[key] - ref) > 1e-6:
                n_conflicts += 1
            table.setdefault(key, float(ref))
    if n_length_mismatch:
        _log().warning_rank0(
            "iw_sft: %d rows have a different number of response tokens than when they were scored "
            "(another template or cutoff_len?): their reference means cover other tokens.",
            n_length_mismatch,
        )
    if n_conflicts:
        _log().warning_rank0(
            "iw_sft: %d identical sequences carry different reference scores; the first is used.", n_conflicts
        )
    return ReferenceLogprobs(table, f"{scores_path} ({len(table)} sequences)")
