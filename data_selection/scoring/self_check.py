"""The scorer's self-check: chunked response losses against the model's own full-logits forward, before scoring.

It catches an architecture that post-processes its logits in a way :mod:`data_selection.scoring.logprobs`
does not know (the run stops with a clear error instead of writing wrong scores for hours).
"""

from __future__ import annotations


def check_against_full_forward(model, encoder, converted, rows: list[int], device: str, chunk_tokens: int,
                               dtype) -> float:
    """Compare the chunked losses of the shortest eligible row with a plain full-logits forward."""
    import torch

    from data_selection.scoring.logprobs import reference_token_losses, response_token_losses

    for row in sorted(rows, key=lambda r: converted[r]["n_chars"])[:5]:
        enc = encoder.encode(converted[row])
        if enc.n_response_tokens == 0:
            continue
        ids = torch.tensor([enc.input_ids], device=device)
        labels = torch.tensor([enc.labels], device=device)
        ours = response_token_losses(model, ids, torch.ones_like(ids), labels, chunk_tokens)[0]
        ref = reference_token_losses(model, ids, labels)
        diff = float((ours - ref).abs().max())
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        if diff > tol:
            raise RuntimeError(
                f"self-check failed: chunked response losses differ from the model's own forward by {diff:.2e} "
                f"(> {tol:g}) on row {row}; this architecture post-processes logits in a way the scorer does not "
                "know. Please report it."
            )
        return diff
    return 0.0
