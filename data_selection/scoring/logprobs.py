"""Per-token response losses without materialising [tokens x vocab] logits.

``model(input_ids, labels=…)`` (what LLaMA-Factory's ``cal_ppl.py`` does) computes fp32 logits for every
position of every sequence: 16K tokens x 151,936 Qwen vocabulary x 4 bytes ≈ 10 GB, then copies them to shift.
Here the decoder body runs once, hidden states are kept only at positions whose next token is a label, and the
lm_head + logsumexp run over chunks of those positions (``chunk_tokens`` rows at a time). The result equals
the full computation (cross-entropy of the next token) up to floating-point summation order.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def auto_chunk_tokens(vocab_size: int, budget_bytes: int = 512 * 2**20) -> int:
    """Rows of fp32 logits that fit in ``budget_bytes`` (at least 64)."""
    return max(64, budget_bytes // (4 * max(1, vocab_size)))


def _final_logit_transform(model):
    cap = getattr(model.config, "final_logit_softcapping", None)
    scale = getattr(model.config, "logits_scaling", None)  # Granite divides logits by this

    def apply(logits: torch.Tensor) -> torch.Tensor:
        if scale:
            logits = logits / scale
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return apply


@torch.inference_mode()
def response_token_losses(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, chunk_tokens: int
) -> list[torch.Tensor]:
    """Return, per sequence, the fp32 NLL of each label token (in order), predicted from the previous position."""
    body = model.base_model
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    h = hidden[:, :-1][keep]  # [N, H]: only positions that predict a label
    t = targets[keep]
    del hidden
    head = model.get_output_embeddings()
    transform = _final_logit_transform(model)
    out = torch.empty(t.shape[0], dtype=torch.float32, device=t.device)
    for i in range(0, t.shape[0], chunk_tokens):
        logits = transform(head(h[i : i + chunk_tokens]).float())
        out[i : i + chunk_tokens] = torch.logsumexp(logits, dim=-1) - logits.gather(1, t[i : i + chunk_tokens, None])[
            :, 0
        ]
        del logits
    counts = keep.sum(dim=1).tolist()
    return list(torch.split(out, counts))


@torch.inference_mode()
def reference_token_losses(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain full-logits cross-entropy of one unpadded sequence (the self-check's reference)."""
    logits = model(input_ids=input_ids).logits.float()[0, :-1]
    targets = labels[0, 1:]
    keep = targets != IGNORE_INDEX
    return torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="none")
