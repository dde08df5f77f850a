"""Chunked DFT and iw-SFT losses against LLaMA-Factory's DFT and a direct full-logits computation.

Gradients are compared to within 5e-5 of each tensor's largest element: chunked and direct fp32 sums differ
by rounding that scales with the terms summed (measured: up to 7.2e-6 of the scale with ATEN_CPU_CAPABILITY
default/avx2/avx512 and 1 or 2 threads; an element-wise atol of 1e-7 failed with 2 threads), while a real
error (a missing weight, a wrong normalisation) is of the order of the gradient itself.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_to_scale

from llamafactory_ext.train.losses import dft_loss, iw_sft_loss, iw_sft_weights, label_token_cross_entropy


@pytest.fixture(scope="module")
def tiny_model(tiny_qwen_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    model.train()
    return model


def _batch(seed: int = 0):
    """Two right-padded sequences with masked prompts, like LLaMA-Factory's SFT collator produces."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 151000, (2, 24), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 17:] = 0
    labels = input_ids.clone()
    labels[0, :9] = -100  # prompt of row 0
    labels[1, :5] = -100  # prompt of row 1
    labels[1, 17:] = -100  # padding
    return input_ids, attention_mask, labels


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def _ours(model, input_ids, attention_mask, labels, chunk_tokens):
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1
    )
    assert out.logits.shape[1] == 1  # the full [tokens x vocab] logits were never built
    return label_token_cross_entropy(
        out.hidden_states[-1], labels, model.get_output_embeddings(), chunk_tokens
    )


@pytest.mark.parametrize("num_items", [None, 37])
@pytest.mark.parametrize("chunk_tokens", [4, 4096])
def test_lean_dft_matches_llamafactory_dft(tiny_model, num_items, chunk_tokens):
    from llamafactory.train.trainer_utils import dft_loss_func

    input_ids, attention_mask, labels = _batch()
    model = tiny_model
    model.zero_grad(set_to_none=True)
    ref_out = model(input_ids=input_ids, attention_mask=attention_mask)
    n = torch.tensor(num_items) if num_items is not None else None
    ref_loss = dft_loss_func(ref_out, labels, num_items_in_batch=n)
    ref_loss.backward()
    ref_grads = _grads(model)

    tokens = _ours(model, input_ids, attention_mask, labels, chunk_tokens)
    assert tokens.ce.numel() == int((labels[:, 1:] != -100).sum())
    loss = dft_loss(tokens, num_items_in_batch=n)
    loss.backward()
    grads = _grads(model)

    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert ref_grads.keys() == grads.keys() and len(grads) > 5
    for name, g in ref_grads.items():
        assert_close_to_scale(grads[name], g, rel=5e-5, msg=f"gradient of {name}")


def test_lean_dft_without_label_tokens_still_backpropagates(tiny_model):
    input_ids, attention_mask, labels = _batch()
    labels[:] = -100
    tokens = _ours(tiny_model, input_ids, attention_mask, labels, 8)
    loss = dft_loss(tokens)
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None for p in tiny_model.parameters() if p.requires_grad)
    tiny_model.zero_grad(set_to_none=True)


def _direct_iw_sft(model, input_ids, attention_mask, labels, ref_mean_logprob, clip):
    """iw-SFT written out from the paper's formula with full log-softmax logits."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:]
    mask = targets != -100
    tok_logp = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0] * mask
    mean_logp = tok_logp.sum(1) / mask.sum(1)
    w = torch.clamp(torch.exp(mean_logp.detach() - ref_mean_logprob), 0, clip)
    loss = -(w[:, None] * tok_logp).sum() / mask.sum()
    return loss, w


def test_iw_sft_matches_direct_computation(tiny_model):
    input_ids, attention_mask, labels = _batch(seed=3)
    model = tiny_model
    model.zero_grad(set_to_none=True)
    # Reference log-probs a little above/below the current ones, so weights differ per sequence.
    with torch.no_grad():
        probe = _ours(model, input_ids, attention_mask, labels, 64)
        current = probe.per_sequence_mean(-probe.ce)
    ref = current + torch.tensor([0.3, -0.2])
    ref_loss, ref_w = _direct_iw_sft(model, input_ids, attention_mask, labels, ref, clip=16.0)
    ref_loss.backward()
    ref_grads = _grads(model)

    tokens = _ours(model, input_ids, attention_mask, labels, 5)
    loss, iw = iw_sft_loss(tokens, ref, clip=16.0)
    loss.backward()
    grads = _grads(model)

    torch.testing.assert_close(iw.weights, ref_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(iw.weights, torch.exp(torch.tensor([-0.3, 0.2])), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name, g in ref_grads.items():
        assert_close_to_scale(grads[name], g, rel=5e-5, msg=f"gradient of {name}")


def test_iw_sft_weights_clip_and_handle_empty_rows(tiny_model):
    input_ids, attention_mask, labels = _batch(seed=5)
    labels[1, :] = -100  # a row without label tokens gets weight 0, not NaN
    with torch.no_grad():
        tokens = _ours(tiny_model, input_ids, attention_mask, labels, 16)
    iw = iw_sft_weights(tokens, torch.tensor([-1e4, 0.0]), clip=16.0)
    assert iw.weights.tolist() == [16.0, 0.0]
    assert iw.clipped.tolist() == [True, False]
    loss, _ = iw_sft_loss(tokens, torch.tensor([-1e4, 0.0]), clip=16.0, num_items_in_batch=tokens.ce.numel())
    torch.testing.assert_close(loss, 16.0 * tokens.ce.mean())
