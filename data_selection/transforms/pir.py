"""PIR: how much the final answer needs each functional step (docs/methods.md §5, step 3).

PIR(step) = log(PPL(answer | reasoning without the step) / PPL(answer | full reasoning))
          = mean NLL of the answer tokens without the step − mean NLL of the answer tokens with it,

with the base model, every variant of the row rendered exactly as LLaMA-Factory trains on it
(:class:`data_selection.encoding.TemplateEncoder`: same template, system prompt and ``cutoff_len``).

**Answer tokens** (**choice**): the response tokens that begin at or after the end of ``</think>``, up to the
end of the response text; the template's end-of-turn tokens (``<|im_end|>\\n`` for qwen) are not part of the
answer. They are found once per row, on the full response, from the tokenizer's character offsets, and checked
to be the tokens LLaMA-Factory's encoding produces. Every variant must end in the very same answer tokens
followed by the same template suffix (a step deletion cannot reach past ``</think>``); a row where it does not
(a tokenizer merging across ``</think>``) is kept unchanged with its reason.

Two ways to compute the same numbers:

* ``batched``: every variant of a group of rows goes through
  :func:`data_selection.scoring.forward.score_sequences` (length-sorted token-budget batches, loss on the answer
  tokens only); a row's variants are always in the same call.
* ``prefix-cache``: per row, one forward over the full variant keeps the KV cache; each deletion variant then
  runs only from its first differing token, on the cache cropped to the shared prefix (variants visited from
  the longest shared prefix to the shortest, so one cache is cropped in place and never copied). A step at
  fraction f of the trace costs (1 − f) of a full forward instead of 1.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from llamafactory.extras.constants import IGNORE_INDEX

from data_selection.scoring.forward import score_sequences
from data_selection.scoring.logprobs import _final_logit_transform
from data_selection.transforms.steps import Segmentation

OVER_CUTOFF = "over cutoff_len (LLaMA-Factory would truncate it)"
ENCODING_FAILED = "template encoding failed"
NO_ANSWER_TOKENS = "no answer tokens after </think>"
TEMPLATE_MISMATCH = "the template renders the response differently from the tokenizer alone"
ANSWER_TOKENS_DIFFER = "answer tokens differ between variants (tokenization across </think>)"
NO_FUNCTIONAL = "no functional steps"
NON_FINITE = "non-finite answer loss"


@dataclass
class RowVariants:
    """A row's full variant (index 0) and one variant per functional step (index k + 1 drops ``functional[k]``)."""

    row: int
    seg: Segmentation
    functional: list[int]
    seqs: list[tuple[list[int], list[int]]]  # (input_ids, labels on the answer tokens only)
    n_response_tokens: int  # label tokens of the full variant (LLaMA-Factory's count, end-of-turn included)
    n_answer_tokens: int
    step_tokens: list[int] = field(default_factory=list)  # response tokens attributed to each step


def _with_response(ex: dict[str, Any], response: str) -> dict[str, Any]:
    return {**ex, "_response": [{"role": "assistant", "content": response}]}


def _offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _step_tokens(seg: Segmentation, offsets: list[tuple[int, int]]) -> list[int]:
    """Tokens of the full response attributed to each step: those whose first character lies in the step or in
    the separator after it (so the counts add up to the think block's tokens from the first step on)."""
    starts = [s.start for s in seg.steps]
    counts = [0] * len(seg.steps)
    for start, _ in offsets:
        if starts and starts[0] <= start < seg.think.body_end:
            counts[bisect_right(starts, start) - 1] += 1
    return counts


def encode_variants(encoder, ex: dict[str, Any], seg: Segmentation, row: int, full=None) -> RowVariants | str:
    """Encode the full response and every single-step deletion; or the reason the row must stay unchanged.

    ``full``: the row's own :class:`~data_selection.encoding.Encoded`, when the caller already has it.
    """
    functional = seg.functional()
    if not functional:
        return NO_FUNCTIONAL
    if full is None:
        try:
            full = encoder.encode(_with_response(ex, seg.response))
        except Exception as err:  # a row the template cannot render stays as it is
            return f"{ENCODING_FAILED}: {type(err).__name__}: {err}"
    if full.truncated:
        return OVER_CUTOFF
    positions = [i for i, t in enumerate(full.labels) if t != IGNORE_INDEX]
    label_ids = [full.labels[i] for i in positions]
    r_ids, offsets = _offsets(encoder.tokenizer, seg.response)
    if label_ids[: len(r_ids)] != r_ids:
        return TEMPLATE_MISMATCH
    first = next((k for k, (s, _) in enumerate(offsets) if s >= seg.think.answer_start), len(r_ids))
    answer = r_ids[first:]
    if not answer:
        return NO_ANSWER_TOKENS
    n_suffix = len(label_ids) - len(r_ids)  # template tokens after the response (end of turn)
    seqs = [_answer_only(full.input_ids, positions[first:len(r_ids)])]
    for i in functional:
        try:
            enc = encoder.encode(_with_response(ex, seg.render([i])))
        except Exception as err:
            return f"{ENCODING_FAILED}: {type(err).__name__}: {err}"
        if enc.truncated:
            return OVER_CUTOFF
        pos = [p for p, t in enumerate(enc.labels) if t != IGNORE_INDEX]
        end = len(pos) - n_suffix
        lab = [enc.labels[p] for p in pos]
        if end - len(answer) < 0 or lab[end - len(answer):end] != answer or lab[end:] != label_ids[len(r_ids):]:
            return ANSWER_TOKENS_DIFFER
        seqs.append(_answer_only(enc.input_ids, pos[end - len(answer):end]))
    return RowVariants(row=row, seg=seg, functional=functional, seqs=seqs, n_response_tokens=len(positions),
                       n_answer_tokens=len(answer), step_tokens=_step_tokens(seg, offsets))


def _answer_only(input_ids: list[int], answer_positions: list[int]) -> tuple[list[int], list[int]]:
    labels = [IGNORE_INDEX] * len(input_ids)
    for p in answer_positions:
        labels[p] = input_ids[p]
    return list(input_ids), labels


def _pirs(means: list[float]) -> tuple[float, list[float]]:
    return means[0], [m - means[0] for m in means[1:]]


def pir_batched(model, rows: list[RowVariants], *, batch_tokens: int, chunk_tokens: int, device: str,
                pad_id: int) -> dict[int, tuple[float, list[float]]]:
    """{row: (mean answer NLL with the full reasoning, PIR of each functional step)} via ``score_sequences``."""
    seqs: dict[Hashable, tuple[list[int], list[int]]] = {
        (rv.row, v): s for rv in rows for v, s in enumerate(rv.seqs)
    }
    losses, _ = score_sequences(model, seqs, batch_tokens=batch_tokens, chunk_tokens=chunk_tokens, device=device,
                                pad_id=pad_id)
    return {rv.row: _pirs([float(losses[(rv.row, v)].double().mean()) for v in range(len(rv.seqs))])
            for rv in rows}


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def pir_prefix_cached(model, rv: RowVariants, device: str) -> tuple[float, list[float]]:
    """The same numbers as :func:`pir_batched` for one row, reusing the full variant's KV cache."""
    head = model.get_output_embeddings()
    transform_ = _final_logit_transform(model)
    body = model.base_model

    def answer_nll(hidden: torch.Tensor, ids: list[int], labels: list[int], offset: int) -> float:
        pos = [p for p, t in enumerate(labels) if t != IGNORE_INDEX]
        h = hidden[0, torch.tensor([p - 1 - offset for p in pos], device=hidden.device)]
        logits = transform_(head(h).float())
        target = torch.tensor([ids[p] for p in pos], device=logits.device)
        return float(torch.nn.functional.cross_entropy(logits, target, reduction="none").double().mean())

    ids0, labels0 = rv.seqs[0]
    with torch.inference_mode():
        out = body(input_ids=torch.tensor([ids0], device=device), use_cache=True)
        cache = out.past_key_values
        means = [answer_nll(out.last_hidden_state, ids0, labels0, 0)] + [0.0] * (len(rv.seqs) - 1)
        del out
        order = []
        for v in range(1, len(rv.seqs)):
            ids, labels = rv.seqs[v]
            first_label = next(p for p, t in enumerate(labels) if t != IGNORE_INDEX)
            order.append((min(_shared_prefix(ids0, ids), first_label - 1), v))
        for shared, v in sorted(order, key=lambda x: (-x[0], x[1])):
            ids, labels = rv.seqs[v]
            cache.crop(shared)
            h = body(input_ids=torch.tensor([ids[shared:]], device=device), past_key_values=cache,
                     use_cache=True).last_hidden_state
            means[v] = answer_nll(h, ids, labels, shared)
    return _pirs(means)
