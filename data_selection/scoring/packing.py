"""Pack a batch of rows into one sequence: no padding, position ids restarting per row.

A batch's rows are concatenated into ``input_ids`` of shape ``[1, T]`` (T = the sum of their lengths);
``position_ids`` restart at 0 at each row, so rotary embeddings see exactly the positions of an unpacked row;
``cu_seqlens`` (int32, ``[rows + 1]``) are the rows' boundaries that the varlen attention kernels
(:mod:`data_selection.scoring.varlen`) use to keep attention causal within each row.

Everything the loss needs is computed here, on the host, from the labels: the packed positions whose next
token is a label of the same row (``score_index``), those labels (``targets``) and how many belong to each
row (``counts``). So the device never has to be asked for a shape (no boolean indexing, no ``.tolist()``):
the forward runs without a host sync. A row's first label is never scored (nothing predicts it), as in the
padded path and in LLaMA-Factory's shifted loss.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

import torch
from llamafactory.extras.constants import IGNORE_INDEX


@dataclass
class PackedBatch:
    keys: list[Hashable]
    input_ids: torch.Tensor  # [1, T]
    position_ids: torch.Tensor  # [1, T]
    cu_seqlens: torch.Tensor  # [rows + 1] int32
    max_len: int
    score_index: torch.Tensor  # [N] positions of the packed sequence that predict a label
    targets: torch.Tensor  # [N] the labels they predict
    counts: list[int]  # labels per row, in ``keys`` order

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def pin_memory(self) -> PackedBatch:
        return replace(self, **{f.name: getattr(self, f.name).pin_memory() for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def to(self, device: torch.device | str, keep_cu_on_host: bool = False) -> PackedBatch:
        """Copy to ``device`` (non-blocking from pinned memory). ``keep_cu_on_host``: the ``sdpa_rows`` kernel
        reads the boundaries as Python ints, which must not cost a device sync per layer."""
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        if keep_cu_on_host:
            moved["cu_seqlens"] = self.cu_seqlens
        return replace(self, **moved)

    def attention_kwargs(self) -> dict:
        """transformers' FlashAttentionKwargs for this packed sequence."""
        return {"cu_seq_lens_q": self.cu_seqlens, "cu_seq_lens_k": self.cu_seqlens,
                "max_length_q": self.max_len, "max_length_k": self.max_len}


def pack_rows(keys: Sequence[Hashable], seqs: Mapping[Hashable, tuple[Sequence[int], Sequence[int]]]) -> PackedBatch:
    """Pack ``seqs[k] = (input_ids, labels)`` for ``k`` in ``keys`` (in that order) into one sequence."""
    lengths = [len(seqs[k][0]) for k in keys]
    for k, n in zip(keys, lengths):
        if len(seqs[k][1]) != n:
            raise ValueError(f"row {k!r}: {n} input ids but {len(seqs[k][1])} labels")
        if n == 0:
            raise ValueError(f"row {k!r} is empty")
    ids = torch.tensor([t for k in keys for t in seqs[k][0]], dtype=torch.long)
    labels = torch.tensor([t for k in keys for t in seqs[k][1]], dtype=torch.long)
    cu = torch.zeros(len(keys) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    starts = cu[:-1].long()
    row_of = torch.repeat_interleave(torch.arange(len(keys)), torch.tensor(lengths))
    positions = torch.arange(ids.numel()) - starts[row_of]
    scored = labels != IGNORE_INDEX
    scored[starts] = False  # a row's first token is predicted by nothing of its own
    label_pos = scored.nonzero()[:, 0]
    counts = torch.bincount(row_of[label_pos], minlength=len(keys)).tolist()
    return PackedBatch(keys=list(keys), input_ids=ids[None], position_ids=positions[None], cu_seqlens=cu,
                       max_len=max(lengths), score_index=label_pos - 1, targets=labels[label_pos], counts=counts)


def packed_batches(lengths: dict[Hashable, int], batch_tokens: int, max_rows: int = 512) -> list[list[Hashable]]:
    """Group keys into packed batches of at most ``batch_tokens`` tokens in all (a longer row goes alone).

    Longest rows first (an out-of-memory shows on the first batch, not after hours); deterministic, ties
    broken by key. Without padding, neighbours' lengths do not matter: a batch closes only when the next row
    does not fit, so it is short of the budget by less than one row.
    """
    if batch_tokens < 1:
        raise ValueError("batch_tokens must be positive")
    order = sorted(lengths, key=lambda k: (-lengths[k], k))
    batches: list[list[Hashable]] = []
    cur: list[Hashable] = []
    used = 0
    for k in order:
        if cur and (used + lengths[k] > batch_tokens or len(cur) >= max_rows):
            batches.append(cur)
            cur, used = [], 0
        cur.append(k)
        used += lengths[k]
    if cur:
        batches.append(cur)
    return batches
