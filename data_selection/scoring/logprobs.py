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


def _head_into(head: torch.nn.Module, h: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """fp32 logits of ``h`` written into ``buf``: no new [rows x vocab] allocation when the head is fp32 Linear."""
    weight, bias = getattr(head, "weight", None), getattr(head, "bias", None)
    if isinstance(head, torch.nn.Linear) and weight.dtype == torch.float32 and h.dtype == torch.float32:
        if bias is None:
            return torch.mm(h, weight.t(), out=buf)
        return torch.addmm(bias, h, weight.t(), out=buf)
    return buf.copy_(head(h))  # bf16/fp16 (or exotic) heads: logits in the model's dtype, upcast as HF does


@torch.inference_mode()
def response_token_losses(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, chunk_tokens: int
) -> list[torch.Tensor]:
    """Return, per sequence, the fp32 NLL of each label token (in order), predicted from the previous position.

    One fp32 buffer of ``chunk_tokens x vocab`` is reused for every chunk and the log-sum-exp is done in place
    (max, subtract, exp, sum): fresh multi-hundred-MB allocations per chunk cost more than the arithmetic on CPU
    (page faults), and in-place halves the memory traffic on GPUs.
    """
    body = model.base_model
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    h = hidden[:, :-1][keep]  # [N, H]: only positions that predict a label
    t = targets[keep]
    del hidden
    head = model.get_output_embeddings()
    transform_ = _final_logit_transform(model)
    n = t.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=t.device)
    buf = torch.empty((min(chunk_tokens, n), head.weight.shape[0]), dtype=torch.float32, device=t.device)
    for i in range(0, n, chunk_tokens):
        rows = min(chunk_tokens, n - i)
        logits = transform_(_head_into(head, h[i : i + rows], buf[:rows]))
        target_logit = logits.gather(1, t[i : i + rows, None])[:, 0]
        peak = logits.amax(dim=1)
        logits.sub_(peak[:, None]).exp_()
        out[i : i + rows] = logits.sum(dim=1).log_().add_(peak).sub_(target_logit)
    del buf
    counts = keep.sum(dim=1).tolist()
    return list(torch.split(out, counts))


@torch.inference_mode()
def reference_token_losses(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain full-logits cross-entropy of one unpadded sequence (the self-check's reference)."""
    logits = model(input_ids=input_ids).logits.float()[0, :-1]
    targets = labels[0, 1:]
    keep = targets != IGNORE_INDEX
    return torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="none")
