"""Per-token response losses of many sequences: token-budget batches (packed into one sequence each, or
padded) through the chunked kernel.

This is the one place that turns token ids into losses; ``data-select score`` and every other command that
needs the model's loss on some tokens (checkpoint scoring, step pruning) call :func:`score_sequences`, so
they share its batching and its exactness guarantees (:mod:`data_selection.scoring.logprobs`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch

from data_selection.scoring.batching import padding_waste, token_budget_batches
from data_selection.scoring.logprobs import IGNORE_INDEX, STATS, packed_token_losses, response_token_losses
from data_selection.scoring.packing import pack_rows, packed_batches
from data_selection.scoring.prefetch import prefetch
from data_selection.scoring.varlen import packed_attention, resolve_packing

FIRST_K = (100, 1000)  # the prefix means every scores table carries: loss_first_100, loss_first_1000


def score_sequences(
    model,
    seqs: Mapping[Hashable, tuple[Sequence[int], Sequence[int]]],
    *,
    batch_tokens: int,
    chunk_tokens: int,
    device: str,
    pad_id: int,
    packing: str = "auto",
    top_k: int = 0,
) -> tuple[dict[Hashable, Any], dict[str, float]]:
    """``{key: (input_ids, labels)}`` -> ``{key: fp32 CPU tensor of the NLL of each label token}`` and stats.

    ``top_k`` >= 1: each row's tensor is ``[tokens, 3]`` instead: NLL, target rank and top-``top_k`` Brier score
    per label token (:data:`data_selection.scoring.logprobs.STATS`), from the same logits (read them with
    :func:`token_features`).

    Labels follow LLaMA-Factory's convention (``IGNORE_INDEX`` where no loss is taken; a label at position i is
    predicted from position i - 1). Keys must be mutually comparable (ints, tuples): ties in length are
    batched in key order, so the result does not depend on the mapping's order.

    ``packing`` (:func:`data_selection.scoring.varlen.resolve_packing`): ``auto`` packs each batch's rows into
    one sequence of at most ``batch_tokens`` tokens and runs variable-length attention (no padding) with the
    fastest exact kernel of the device; ``off`` pads length-sorted batches (``rows x longest <= batch_tokens``).
    Both give the same losses up to float summation order (tests/data_selection/test_packing.py).

    On CUDA nothing waits for the GPU inside a batch: shapes come from the host, the next batch is collated
    and pinned in a background thread, and a batch's losses are copied back asynchronously and collected
    after the next batch has been queued.
    """
    mode = resolve_packing(packing, model)
    on_cuda = torch.device(device).type == "cuda"
    lengths = {k: len(ids) for k, (ids, _) in seqs.items()}
    batches = plan_batches(lengths, batch_tokens, mode)

    def collate(keys):
        host = _pad_rows(keys, seqs, lengths, pad_id) if mode == "off" else pack_rows(keys, seqs)
        return keys, (host.pin_memory() if on_cuda else host)

    out: dict[Hashable, Any] = {}
    pending = None
    with packed_attention(model, mode), prefetch(map(collate, batches), enabled=on_cuda) as collated:
        for keys, host in collated:
            if mode == "off":
                ids, mask, labels = (x.to(device, non_blocking=True) for x in host)
                per_row = response_token_losses(model, ids, mask, labels, chunk_tokens, top_k)
                losses, counts = torch.cat(per_row), [len(x) for x in per_row]
            else:
                batch = host.to(device, keep_cu_on_host=mode == "sdpa_rows")
                losses = packed_token_losses(model, batch, chunk_tokens, varlen=mode != "sdpa_mask", top_k=top_k)
                counts = host.counts
            done, pending = pending, _copy_to_host(keys, counts, losses)
            if done:
                _collect(done, out)
        if pending:
            _collect(pending, out)
    stats = {"tokens": sum(lengths.values()),
             "padding_waste": padding_waste(lengths, batches) if mode == "off" else 0.0,
             "batches": len(batches), "packing": mode}
    return out, stats


def plan_batches(lengths: Mapping[Hashable, int], batch_tokens: int, mode: str) -> list[list[Hashable]]:
    """The batches (lists of keys) :func:`score_sequences` runs for rows of these lengths in packing ``mode`` (a
    resolved mode): one forward pass each. Deterministic, so a rank can count another rank's passes."""
    if not lengths:
        return []
    return token_budget_batches(lengths, batch_tokens) if mode == "off" else packed_batches(lengths, batch_tokens)


def _pad_rows(keys, seqs, lengths, pad_id: int):
    """Right-padded (input_ids, attention_mask, labels) of a batch (the ``packing=off`` path)."""
    width = max(lengths[k] for k in keys)
    ids = torch.full((len(keys), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(keys), width), dtype=torch.long)
    labels = torch.full((len(keys), width), IGNORE_INDEX, dtype=torch.long)
    for i, k in enumerate(keys):
        seq_ids, seq_labels = seqs[k]
        ids[i, : len(seq_ids)] = torch.as_tensor(seq_ids)
        mask[i, : len(seq_ids)] = 1
        labels[i, : len(seq_labels)] = torch.as_tensor(seq_labels)
    return _Padded(ids, mask, labels)


class _Padded(tuple):
    def __new__(cls, *parts):
        return super().__new__(cls, parts)

    def pin_memory(self):
        return _Padded(*(x.pin_memory() for x in self))


def _copy_to_host(keys, counts, losses):
    """Start copying a batch's losses to the host; on CUDA without waiting (pinned buffer + event)."""
    if not losses.is_cuda:
        return keys, counts, losses, None
    # The copy is queued on, and the event recorded on, the stream of the losses' own GPU: a bare
    # ``event.record()`` uses the *current* device's stream, and a rank whose current device is not its GPU
    # (cuda:N under torchrun) would then wait on GPU 0 and read a pinned buffer still being filled.
    with torch.cuda.device(losses.device):
        host = torch.empty(losses.shape, dtype=losses.dtype, pin_memory=True)
        host.copy_(losses, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(losses.device))
    return keys, counts, host, event


def _collect(pending, out: dict) -> None:
    """Wait for a batch's copy (if any) and split its losses into rows."""
    keys, counts, host, event = pending
    if event is not None:
        event.synchronize()
        host = host.clone()  # give the pinned block back to the allocator's cache
    for k, tok in zip(keys, torch.split(host, counts)):
        out[k] = tok


def loss_features(token_losses) -> dict[str, float]:
    """loss_sum, loss_mean (the ranking key) and the first-K means of one row's per-token losses (float64)."""
    tok = token_losses.double()
    feats = {"loss_sum": float(tok.sum()), "loss_mean": float(tok.mean())}
    for k in FIRST_K:
        feats[f"loss_first_{k}"] = float(tok[:k].mean())
    return feats


def token_features(token_stats) -> dict[str, float]:
    """:func:`loss_features` of a row's ``[tokens, 3]`` statistics (``score_sequences(top_k=K)``) plus, for the rank
    and the top-K Brier score, their mean over the response tokens and over the first K of them: ``rank_mean``,
    ``rank_first_100``, …, ``brier_topk_mean``, ``brier_topk_first_1000`` (float64 sums)."""
    stats = token_stats.double()
    feats = loss_features(stats[:, 0])
    for j, name in enumerate(STATS[1:], start=1):
        col = stats[:, j]
        feats[f"{name}_mean"] = float(col.mean())
        for k in FIRST_K:
            feats[f"{name}_first_{k}"] = float(col[:k].mean())
    return feats
