"""The in-loop scorer under DeepSpeed ZeRO-3: the output head gathered once, and as many forward passes on every rank.

Under ZeRO-3 a parameter is an empty placeholder outside its module's forward (the rank's shard lives in
``ds_tensor``), and a module's forward gathers its parameters from every rank: a collective. Two consequences for
the scorer, which reads the output head's weight directly (chunked fp32 logits instead of a [tokens x vocab]
activation) and gives each rank its own share of the candidates:

* :func:`gathered_head`: the head's weight (and bias) is gathered once for the scoring pass and copied into a plain
  ``Linear`` this rank holds until the pass ends: one vocab x hidden matrix (0.6 GB for Qwen2.5-3B in bf16), nothing
  else of the model is gathered; the body keeps gathering layer by layer inside its own forward.
* :func:`batches_per_rank` / :func:`run_idle_forwards`: every rank must run as many body forwards as every other (each
  one is a sequence of collectives); a rank whose share packs into fewer batches runs one-token passes until it has
  run as many, as ``generate(synced_gpus=True)`` does. The count is computed, not exchanged: the batching is
  deterministic in the rows' lengths, which every rank holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from data_selection.scoring.forward import plan_batches


class WithHead:
    """``model`` whose ``get_output_embeddings()`` is ``head``; every other attribute is the model's own."""

    def __init__(self, model, head: torch.nn.Module):
        self._model = model
        self._head = head

    def get_output_embeddings(self) -> torch.nn.Module:
        return self._head

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@contextlib.contextmanager
def gathered_head(model, zero3: bool) -> Iterator[Any]:
    """``model`` itself, or under ZeRO-3 a :class:`WithHead` over a local copy of its gathered output head (every rank
    must enter: the gather is a collective)."""
    if not zero3:
        yield model
        return
    import deepspeed  # the `train` extra; present whenever ZeRO-3 is enabled

    head = model.get_output_embeddings()
    params = [p for p in (head.weight, getattr(head, "bias", None)) if p is not None]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        weight, *bias = (p.detach().clone() for p in params)
    copy = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bool(bias), device="meta")
    copy.weight = torch.nn.Parameter(weight, requires_grad=False)
    if bias:
        copy.bias = torch.nn.Parameter(bias[0], requires_grad=False)
    yield WithHead(model, copy)  # the copy is freed with the last reference, when the pass ends


def batches_per_rank(lengths_by_rank: Sequence[dict[int, int]], batch_tokens: int, mode: str) -> list[int]:
    """Forward passes each rank's share of rows packs into (``score_sequences``'s own batching)."""
    return [len(plan_batches(lengths, batch_tokens, mode)) for lengths in lengths_by_rank]


def run_idle_forwards(model, n: int, device: str, pad_id: int) -> None:
    """``n`` one-token forward passes of the body (their output is dropped): the collectives of a real pass."""
    ids = torch.full((1, 1), int(pad_id), dtype=torch.long, device=device)
    for _ in range(n):
        model.base_model(input_ids=ids, use_cache=False)
