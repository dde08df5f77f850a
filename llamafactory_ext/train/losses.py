"""Token losses from hidden states in chunks, so [tokens x vocabulary] fp32 logits never exist at once.

LLaMA-Factory 0.9.5's ``use_dft_loss`` (``llamafactory.train.trainer_utils.dft_loss_func``) takes the model's
full logits, casts them to fp32 and runs a cross-entropy over every position: with Qwen's 151,936-entry
vocabulary that is ~10 GB per 16K-token sequence before the backward pass doubles it. Here the decoder body's
final hidden states are gathered at the label positions only, and the output projection + log-softmax run
one chunk of ``chunk_tokens`` positions at a time under ``torch.utils.checkpoint``: a chunk's logits are
freed as soon as its per-token cross-entropy is known and are recomputed chunk by chunk in the backward
pass. What is kept for backward is one float per label token, so peak memory is O(chunk x vocab), not
O(sequence x vocab). The price is one extra output-projection matmul per chunk (the recompute).

On top of the per-token cross-entropy ``CE_t`` the module defines:

* :func:`dft_loss` -- Dynamic Fine-Tuning (arXiv 2508.05629): ``sum_t CE_t * exp(-CE_t).detach()``,
  normalised exactly like LLaMA-Factory's ``_dft_cross_entropy`` (sum / ``num_items_in_batch`` when the
  trainer passes it, else the mean over label tokens);
* :func:`iw_sft_loss` -- importance-weighted SFT (arXiv 2507.12856): per-sequence weight
  ``w = clamp(exp(mean_t log p_current - mean_t log p_ref), 0, clip)`` computed without gradient, loss
  ``sum_t w_seq(t) * CE_t / number of label tokens``. ``mean_t log p_ref`` comes from the scorer's
  ``scores.parquet`` (``-loss_mean``), so no reference model is loaded.

The output projection is always *called as a module* (``lm_head(h)``), never read as ``lm_head.weight``, so
DeepSpeed ZeRO-3's parameter-gathering hooks, LoRA wrappers and LLaMA-Factory's fp32-upcast hook all apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from llamafactory.extras.constants import IGNORE_INDEX
from torch.utils.checkpoint import checkpoint


@dataclass
class LabelTokens:
    """Cross-entropy of every label token in a batch, flattened in (sequence, position) order."""

    ce: torch.Tensor  # (N,) fp32, carries gradient
    seq_index: torch.Tensor  # (N,) long: which batch row each token belongs to
    batch_size: int

    def per_sequence_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of ``values`` (N,) over each sequence's label tokens; NaN for a row without label tokens."""
        sums = torch.zeros(self.batch_size, dtype=values.dtype, device=values.device)
        counts = torch.zeros(self.batch_size, dtype=values.dtype, device=values.device)
        sums.index_add_(0, self.seq_index, values)
        counts.index_add_(0, self.seq_index, torch.ones_like(values))
        return sums / counts


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Label of the *next* token at every position, as LLaMA-Factory's loss functions shift them."""
    return F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]


def _chunk_cross_entropy(
    hidden: torch.Tensor, targets: torch.Tensor, lm_head: torch.nn.Module
) -> torch.Tensor:
    logits = lm_head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="none")


def label_token_cross_entropy(
    hidden_states: torch.Tensor,
    labels: torch.Tensor,
    lm_head: torch.nn.Module,
    chunk_tokens: int = 1024,
) -> LabelTokens:
    """Per-token cross-entropy at the label positions of ``labels`` (B, L), from hidden states (B, L, H).

    Only positions whose shifted label is not ``IGNORE_INDEX`` are projected. Chunks run under non-reentrant
    activation checkpointing when gradients are needed, so backward keeps the (chunk, H) hidden slice and
    recomputes that chunk's logits instead of storing them.
    """
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    targets_all = shift_labels(labels.to(hidden_states.device))
    mask = targets_all != IGNORE_INDEX
    seq_index = mask.nonzero(as_tuple=True)[0]
    hidden = hidden_states[mask]
    targets = targets_all[mask]
    use_checkpoint = torch.is_grad_enabled() and hidden.requires_grad
    pieces = []
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, t = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        if use_checkpoint:
            pieces.append(checkpoint(_chunk_cross_entropy, h, t, lm_head, use_reentrant=False))
        else:
            pieces.append(_chunk_cross_entropy(h, t, lm_head))
    if pieces:
        ce = torch.cat(pieces)
    else:  # no label token: keep the graph connected so every rank still runs a backward pass
        ce = hidden_states.sum().float()[None][:0]
    return LabelTokens(ce=ce, seq_index=seq_index, batch_size=labels.shape[0])


def _normalise(total: torch.Tensor, n_tokens: int, num_items_in_batch) -> torch.Tensor:
    """LLaMA-Factory's normalisation: sum / num_items_in_batch (all micro-batches and ranks) or a mean."""
    if num_items_in_batch is not None:
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch
    return total / max(n_tokens, 1)


def dft_loss(tokens: LabelTokens, num_items_in_batch=None) -> torch.Tensor:
    """DFT: each token's CE weighted by its (detached) probability, ``CE_t * exp(-CE_t)``."""
    weighted = tokens.ce * torch.exp(-tokens.ce.detach())
    return _normalise(weighted.sum(), tokens.ce.numel(), num_items_in_batch)


@dataclass
class ImportanceWeights:
    weights: torch.Tensor  # (B,) per-sequence weight, detached
    clipped: torch.Tensor  # (B,) bool: weight hit the clip value


def iw_sft_weights(
    tokens: LabelTokens, ref_mean_logprob: torch.Tensor, clip: float = 16.0
) -> ImportanceWeights:
    """``w = clamp(exp(mean_t log p_current - mean_t log p_ref), 0, clip)`` per sequence, without gradient."""
    with torch.no_grad():
        current = tokens.per_sequence_mean(-tokens.ce.detach())
        ref = ref_mean_logprob.to(device=current.device, dtype=current.dtype)
        raw = torch.exp(current - ref)
        weights = torch.nan_to_num(raw.clamp(0.0, clip), nan=0.0)
        return ImportanceWeights(weights=weights, clipped=raw >= clip)


def iw_sft_loss(
    tokens: LabelTokens, ref_mean_logprob: torch.Tensor, clip: float = 16.0, num_items_in_batch=None
) -> tuple[torch.Tensor, ImportanceWeights]:
    """iw-SFT: ``sum_t w_seq(t) * CE_t / number of label tokens``; returns the loss and the weights used."""
    iw = iw_sft_weights(tokens, ref_mean_logprob, clip)
    weighted = tokens.ce * iw.weights[tokens.seq_index]
    return _normalise(weighted.sum(), tokens.ce.numel(), num_items_in_batch), iw
