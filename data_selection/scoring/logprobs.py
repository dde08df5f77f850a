"""Per-token response losses without materialising [tokens x vocab] logits.

``model(input_ids, labels=…)`` (what LLaMA-Factory's ``cal_ppl.py`` does) computes fp32 logits for every
position of every sequence: 16K tokens x 151,936 Qwen vocabulary x 4 bytes ≈ 10 GB, then copies them to shift.
Here the decoder body runs once, hidden states are kept only at positions whose next token is a label, and the
lm_head + logsumexp run over chunks of those positions (``chunk_tokens`` rows at a time). The result equals
the full computation (cross-entropy of the next token) up to floating-point summation order.
"""

from __future__ import annotations

import torch
from llamafactory.extras.constants import IGNORE_INDEX


def auto_chunk_tokens(vocab_size: int, budget_bytes: int = 512 * 2**20) -> int:
    """Rows of fp32 logits that fit in ``budget_bytes`` (at least 64)."""
    return max(64, budget_bytes // (4 * max(1, vocab_size)))


def _final_logit_transform(model):
    """In-place version of the model's post-lm_head logit transform (Granite scaling, Gemma soft-capping)."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    scale = getattr(model.config, "logits_scaling", None)  # Granite divides logits by this

    def apply_(logits: torch.Tensor) -> torch.Tensor:
        if scale:
            logits.div_(scale)
        if cap:
            logits.div_(cap).tanh_().mul_(cap)
        return logits

    return apply_


_FP32_OUT_MM: dict[str, bool] = {}  # device type -> False once torch.mm(out_dtype=...) was found missing


def _fp32_out_mm_ok(h: torch.Tensor) -> bool:
    """bf16/fp16 x bf16/fp16 -> fp32 in one cuBLAS call (``torch.mm(..., out_dtype=torch.float32)``): CUDA only."""
    return h.is_cuda and h.dtype in (torch.bfloat16, torch.float16) and _FP32_OUT_MM.get(h.device.type, True)


def _head_into(head: torch.nn.Module, h: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """fp32 logits of ``h`` written into ``buf``: no new [rows x vocab] allocation for a Linear head.

    * fp32 head: ``mm``/``addmm`` straight into ``buf``.
    * bf16/fp16 head on CUDA: the GEMM accumulates in fp32 anyway; asking it for fp32 output
      (``out_dtype``) writes ``buf`` directly: no bf16 [rows x vocab] temporary, no separate upcast pass,
      and the logits are not rounded to bf16 first (closer to an fp32 model's, by up to half a bf16 ulp).
    * anything else (bf16 on CPU, exotic heads): logits in the model's dtype, upcast as HF does.
    """
    weight, bias = getattr(head, "weight", None), getattr(head, "bias", None)
    if isinstance(head, torch.nn.Linear) and weight.dtype == torch.float32 and h.dtype == torch.float32:
        if bias is None:
            return torch.mm(h, weight.t(), out=buf)
        return torch.addmm(bias, h, weight.t(), out=buf)
    if isinstance(head, torch.nn.Linear) and weight.dtype == h.dtype and _fp32_out_mm_ok(h):
        try:
            torch.mm(h, weight.t(), out_dtype=torch.float32, out=buf)
        except torch.OutOfMemoryError:
            raise
        except (TypeError, RuntimeError, NotImplementedError):  # a torch without mm(out_dtype=) on this device
            _FP32_OUT_MM[h.device.type] = False
        else:
            return buf if bias is None else buf.add_(bias)
    return buf.copy_(head(h))  # bf16/fp16 (or exotic) heads: logits in the model's dtype, upcast as HF does


STATS = ("loss", "rank", "brier_topk")
"""Columns of :func:`head_token_losses`'s ``[N, 3]`` output when ``top_k`` >= 1 (docs/methods.md §1)."""
_BLOCK = 128  # vocabulary entries per block of the two-stage top-K (block maxima first)
_RANK_ROWS = 32  # rows per comparison block of the rank count (a cache-sized fp32 scratch)
_CACHE_BYTES = 4 * 2**20  # fp32 logits per block of rows on CPU (cache-sized)


def head_token_losses(model, h: torch.Tensor, t: torch.Tensor, chunk_tokens: int, top_k: int = 0) -> torch.Tensor:
    """fp32 NLL of target ``t[i]`` given final hidden state ``h[i]`` ([N, H], [N] -> [N]), chunk by chunk.

    One fp32 buffer of ``chunk_tokens x vocab`` is reused for every chunk and the log-sum-exp is done in place
    (max, subtract, exp, sum): fresh multi-hundred-MB allocations per chunk cost more than the arithmetic on CPU
    (page faults), and in-place halves the memory traffic on GPUs. No host sync: sizes come from ``t``'s shape.

    ``top_k`` >= 1: ``[N, 3]`` fp32 (:data:`STATS`): the NLL, the target's 1-based rank among the vocabulary
    (1 + entries whose logit is strictly greater) and the top-``top_k`` Brier score, from the same chunk of
    logits (no second head pass). The NLL column equals the ``top_k=0`` result bit for bit.
    """
    head = model.get_output_embeddings()
    transform_ = _final_logit_transform(model)
    n = t.shape[0]
    out = torch.empty((n, len(STATS)) if top_k else (n,), dtype=torch.float32, device=t.device)
    if n == 0:
        return out
    vocab = head.weight.shape[0]
    buf = torch.empty((min(chunk_tokens, n), vocab), dtype=torch.float32, device=t.device)
    scratch = torch.empty((min(_RANK_ROWS, n), vocab), dtype=torch.float32, device=t.device) if top_k else None
    for i in range(0, n, chunk_tokens):
        rows = min(chunk_tokens, n - i)
        logits = transform_(_head_into(head, h[i : i + rows], buf[:rows]))
        target_logit = logits.gather(1, t[i : i + rows, None])[:, 0]
        if not top_k:
            peak = logits.amax(dim=1)
            logits.sub_(peak[:, None]).exp_()
            out[i : i + rows] = logits.sum(dim=1).log_().add_(peak).sub_(target_logit)
            continue
        # on CPU a few rows at a time, so that the passes after the first read them from cache (together they
        # then cost about what the loss alone costs over the whole chunk); on a GPU the whole chunk at once
        step = rows if logits.is_cuda else max(1, _CACHE_BYTES // (4 * vocab))
        for j in range(0, rows, step):
            r = min(step, rows - j)
            _stats_into(logits[j : j + r], target_logit[j : j + r], top_k, scratch, out[i + j : i + j + r])
    return out


def _stats_into(logits: torch.Tensor, target_logit: torch.Tensor, k: int, scratch: torch.Tensor,
                out: torch.Tensor) -> None:
    """NLL, rank and top-``k`` Brier score of some rows of logits (overwritten: exp in place) into ``out`` [rows, 3].
    The NLL is computed by the very operations of the loss-only path (max, subtract, exp, sum, log)."""
    peak, top = _peak_and_top_logits(logits, k)
    rank = _rank(logits, target_logit, scratch)
    logits.sub_(peak[:, None]).exp_()
    lse = logits.sum(dim=1).log_().add_(peak)
    out[:, 0] = lse - target_logit
    out[:, 1] = rank
    out[:, 2] = _brier_top_k(top, target_logit, lse, rank, k)


def _peak_and_top_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row maxima and the ``k`` largest logits of each row (values only, unsorted).

    Two stages, both cheap next to ``topk`` over the whole row on CPU: the maxima of blocks of ``_BLOCK`` entries
    (one pass, which also gives the row maximum), then ``topk`` over the entries of the ``k`` blocks with the
    largest maxima plus the tail that fills no block. Exact: an entry outside those blocks is <= its block's
    maximum <= the k-th largest block maximum, and the chosen blocks hold k entries at least that large.
    """
    rows, vocab = logits.shape
    nb = vocab // _BLOCK
    if nb <= k:
        return logits.amax(dim=1), logits.topk(min(k, vocab), dim=1, sorted=False).values
    blocks = logits[:, : nb * _BLOCK].view(rows, nb, _BLOCK)
    block_max = blocks.amax(dim=2)
    peak = block_max.amax(dim=1)
    chosen = block_max.topk(k, dim=1, sorted=False).indices
    cand = blocks.gather(1, chosen[:, :, None].expand(rows, k, _BLOCK)).view(rows, k * _BLOCK)
    tail = logits[:, nb * _BLOCK :]
    if tail.shape[1]:
        peak = torch.maximum(peak, tail.amax(dim=1))
        cand = torch.cat([cand, tail], dim=1)
    return peak, cand.topk(k, dim=1, sorted=False).values


def _rank(logits: torch.Tensor, target_logit: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """1 + the number of entries of each row strictly greater than its target's logit (fp32, exact below 2^24).

    The comparison is written as 0/1 floats into a small scratch, ``_RANK_ROWS`` rows at a time, then summed:
    a float sum is several times faster on CPU than a boolean one, and the scratch stays in cache.
    """
    rank = torch.empty_like(target_logit)
    step = scratch.shape[0]
    for j in range(0, logits.shape[0], step):
        r = min(step, logits.shape[0] - j)
        torch.gt(logits[j : j + r], target_logit[j : j + r, None], out=scratch[:r])
        torch.sum(scratch[:r], dim=1, out=rank[j : j + r])
    return rank.add_(1)


def _brier_top_k(top: torch.Tensor, target_logit: torch.Tensor, lse: torch.Tensor, rank: torch.Tensor,
                 k: int) -> torch.Tensor:
    """Brier score over the top-``k`` entries and the target: sum_j q_j^2 + (1 - p_t)^2 - [rank <= k] p_t^2,
    ``q_j`` the ``k`` largest probabilities, ``p_t`` the target's (a target inside the top k is counted once,
    as (1 - p_t)^2)."""
    q = (top - lse[:, None]).exp_()
    p_t = (target_logit - lse).exp_()
    inside = (rank <= k).to(p_t.dtype)
    return q.square_().sum(dim=1).add_((1 - p_t).square_()).sub_(inside * p_t.square())


@torch.inference_mode()
def response_token_losses(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, chunk_tokens: int,
    top_k: int = 0,
) -> list[torch.Tensor]:
    """Padded batch -> per sequence, the fp32 NLL of each label token (in order), predicted from the previous
    position (the padded path; :func:`packed_token_losses` is the packed one). ``top_k``: see
    :func:`head_token_losses` (then [tokens, 3] per sequence)."""
    body = model.base_model
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    h = hidden[:, :-1][keep]  # [N, H]: only positions that predict a label
    t = targets[keep]
    del hidden
    out = head_token_losses(model, h, t, chunk_tokens, top_k)
    counts = keep.sum(dim=1).tolist()
    return list(torch.split(out, counts))


@torch.inference_mode()
def packed_token_losses(model, batch, chunk_tokens: int, varlen: bool = True, top_k: int = 0) -> torch.Tensor:
    """One packed sequence (:class:`data_selection.scoring.packing.PackedBatch`, on the model's device) -> the
    fp32 NLL of every label token of every row, rows in ``batch.keys`` order (split it with ``batch.counts``).

    ``varlen``: pass ``cu_seq_lens`` to the attention (the ``ds_varlen_*`` kernels); without them transformers
    derives a block-diagonal causal mask from the restarting position ids (the ``sdpa_mask`` oracle).
    ``top_k``: see :func:`head_token_losses`.
    """
    extra = batch.attention_kwargs() if varlen else {}
    hidden = model.base_model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False,
                              **extra).last_hidden_state
    h = hidden[0].index_select(0, batch.score_index)
    del hidden
    return head_token_losses(model, h, batch.targets, chunk_tokens, top_k)


@torch.inference_mode()
def reference_token_losses(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain full-logits cross-entropy of one unpadded sequence (the self-check's reference)."""
    logits = model(input_ids=input_ids).logits.float()[0, :-1]
    targets = labels[0, 1:]
    keep = targets != IGNORE_INDEX
    return torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="none")
