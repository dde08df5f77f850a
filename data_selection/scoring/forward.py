"""Per-token response losses of many sequences: length-sorted token-budget batches through the chunked kernel.

This is the one place that turns token ids into losses; ``data-select score`` and every other command that
needs the model's loss on some tokens (checkpoint scoring, step pruning) call :func:`score_sequences`, so
they share its batching and its exactness guarantees (:mod:`data_selection.scoring.logprobs`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

FIRST_K = (100, 1000)  # the prefix means every scores table carries: loss_first_100, loss_first_1000


def score_sequences(
    model,
    seqs: Mapping[Hashable, tuple[Sequence[int], Sequence[int]]],
    *,
    batch_tokens: int,
    chunk_tokens: int,
    device: str,
    pad_id: int,
) -> tuple[dict[Hashable, Any], dict[str, float]]:
    """``{key: (input_ids, labels)}`` -> ``{key: fp32 CPU tensor of the NLL of each label token}`` and stats.

    Labels follow LLaMA-Factory's convention (``IGNORE_INDEX`` where no loss is taken; a label at position i is
    predicted from position i - 1). Keys must be mutually comparable (ints, tuples): ties in length are
    batched in key order, so the result does not depend on the mapping's order.
    """
    import torch

    from data_selection.scoring.batching import padding_waste, token_budget_batches
    from data_selection.scoring.logprobs import IGNORE_INDEX, response_token_losses

    lengths = {k: len(ids) for k, (ids, _) in seqs.items()}
    batches = token_budget_batches(lengths, batch_tokens) if lengths else []
    out: dict[Hashable, Any] = {}
    for batch in batches:
        width = max(lengths[k] for k in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        for i, k in enumerate(batch):
            seq_ids, seq_labels = seqs[k]
            ids[i, : len(seq_ids)] = torch.as_tensor(seq_ids)
            mask[i, : len(seq_ids)] = 1
            labels[i, : len(seq_labels)] = torch.as_tensor(seq_labels)
        losses = response_token_losses(model, ids.to(device), mask.to(device), labels.to(device), chunk_tokens)
        for k, tok in zip(batch, losses):
            out[k] = tok.cpu()
    stats = {"tokens": sum(lengths.values()), "padding_waste": padding_waste(lengths, batches),
             "batches": len(batches)}
    return out, stats


def loss_features(token_losses) -> dict[str, float]:
    """loss_sum, loss_mean (the ranking key) and the first-K means of one row's per-token losses (float64)."""
    tok = token_losses.double()
    feats = {"loss_sum": float(tok.sum()), "loss_mean": float(tok.mean())}
    for k in FIRST_K:
        feats[f"loss_first_{k}"] = float(tok[:k].mean())
    return feats
