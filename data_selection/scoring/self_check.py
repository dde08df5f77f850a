"""The scorer's self-check: its losses against the model's own full-logits forward, before scoring.

It catches an architecture that post-processes its logits in a way :mod:`data_selection.scoring.logprobs`
does not know, or an attention path that does not keep packed rows apart (the run stops with a clear error
instead of writing wrong scores for hours).

It runs on a bounded window: the first :data:`CHECK_TOKENS` tokens of (up to) two of the shard's shortest
rows, packed together the way scoring packs them. The reference forward materialises [tokens x vocab] fp32
logits (the very cost the scorer exists to avoid), so checking a whole row would make ``--verify`` the memory
peak of the run: 24 GB for one 16K-token row with the 151,936-token Qwen vocabulary.
"""

from __future__ import annotations

import torch

from data_selection.scoring.forward import score_sequences
from data_selection.scoring.logprobs import IGNORE_INDEX

CHECK_TOKENS = 256  # reference logits: 256 x 151,936 x 4 B = 156 MB
ROWS = 2  # two rows, so a packed check crosses a row boundary


def check_window(input_ids: list[int], labels: list[int], ignore_index: int, max_tokens: int = CHECK_TOKENS):
    """The first ``max_tokens`` tokens of a row with their labels; if none of them is a label (a prompt longer
    than the window), every token of the window is labelled: the check compares two computations of the same
    losses on the same tokens, whatever they are."""
    ids, lab = list(input_ids[:max_tokens]), list(labels[:max_tokens])
    if all(t == ignore_index for t in lab[1:]):
        lab = list(ids)
    return ids, lab


def check_windows(encoder, converted, rows: list[int], max_tokens: int = CHECK_TOKENS
                  ) -> dict[int, tuple[list[int], list[int]]]:
    """``{row: (input_ids, labels)}``: bounded windows (:func:`check_window`) of up to :data:`ROWS` of the
    shortest eligible rows of ``rows`` (rows without response tokens skipped)."""
    windows: dict[int, tuple[list[int], list[int]]] = {}
    for row in sorted(rows, key=lambda r: converted[r]["n_chars"])[:5]:
        enc = encoder.encode(converted[row])
        if enc.n_response_tokens == 0 or len(enc.input_ids) < 2:
            continue
        windows[row] = check_window(enc.input_ids, enc.labels, IGNORE_INDEX, max_tokens)
        if len(windows) == ROWS:
            break
    return windows


def check_against_full_forward(model, windows: dict[int, tuple[list[int], list[int]]], device: str,
                               chunk_tokens: int, dtype, packing: str = "auto") -> float:
    """Largest |difference| between the scorer's and the model's own per-token losses on ``windows``
    (:func:`check_windows`); raises RuntimeError beyond the dtype's tolerance."""
    if not windows:
        return 0.0
    budget = sum(len(ids) for ids, _ in windows.values())
    ours, _ = score_sequences(model, windows, batch_tokens=budget, chunk_tokens=chunk_tokens, device=device,
                              pad_id=0, packing=packing)
    half = dtype in (torch.bfloat16, torch.float16)
    worst = 0.0
    for row, (ids, labels) in windows.items():
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=device)).logits.float()[0, :-1]
        targets = torch.tensor(labels[1:], device=device)
        keep = targets != IGNORE_INDEX
        ref = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="none").cpu()
        diff = float((ours[row] - ref).abs().max())
        # bf16/fp16: the model rounds its logits to bf16 (half an ulp: <= 2^-8 relative) where the scorer may keep
        # its GEMM's fp32 output (logprobs._head_into); the rounding enters a loss twice (target, log-sum-exp).
        tol = 1e-3 if not half else 5e-2 + 2**-7 * float(logits.abs().max())
        if diff > tol:
            raise RuntimeError(
                f"self-check failed: the scorer's response losses differ from the model's own forward by {diff:.2e} "
                f"(> {tol:.2g}) on row {row}; this architecture post-processes logits (or attends) in a way the "
                "scorer does not know. Please report it; --packing off may avoid it."
            )
        worst = max(worst, diff)
    return worst
