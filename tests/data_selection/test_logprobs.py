"""The chunked, in-place response log-probs equal a plain full-logits cross-entropy, whatever the chunking,
on every path: padded batches and each packed-attention mode (the GPU-only kernels through CPU stand-ins that
assert their argument contract, tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import install_varlen_stand_ins
from transformers import AutoModelForCausalLM

from data_selection.scoring.forward import score_sequences
from data_selection.scoring.logprobs import IGNORE_INDEX, response_token_losses

PATHS = ("padded", "sdpa_rows", "sdpa_mask", "torch_varlen", "flash_attn")

# Losses here are ~12 nats (ln of the 151,936-entry vocabulary), where one fp32 ulp is ~1e-6. A different
# summation order (chunking, AVX2 vs AVX-512, threads) moved them by at most 2.9e-6 (measured on 6 CPU
# configurations); 3e-5 leaves a 10x margin and still catches any real error (>= 1e-3).
TOL = 3e-5


def _batch(vocab: int, lengths: list[int], prompt: int, seed: int = 0):
    """Right-padded batch: the first ``prompt`` positions of each row are not labels, padding is masked."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE_INDEX)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(0, vocab, (n,), generator=g)
        mask[i, :n] = 1
        labels[i, prompt:n] = ids[i, prompt:n]
    return ids, mask, labels


def _reference(model, ids, mask, labels) -> list[torch.Tensor]:
    out = []
    with torch.no_grad():
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            logits = model(input_ids=ids[i : i + 1, :n]).logits.float()[0, :-1]
            tgt = labels[i, 1:n]
            keep = tgt != IGNORE_INDEX
            out.append(torch.nn.functional.cross_entropy(logits[keep], tgt[keep], reduction="none"))
    return out


def _losses(path: str, model, ids, mask, labels, chunk: int) -> list[torch.Tensor]:
    """Per-row losses of a right-padded batch through ``path`` (packed paths get the unpadded rows)."""
    if path == "padded":
        return response_token_losses(model, ids, mask, labels, chunk)
    seqs = {}
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        seqs[i] = (ids[i, :n].tolist(), labels[i, :n].tolist())
    # a budget that packs two rows per batch, so every test crosses row boundaries
    budget = 2 * max(len(x) for x, _ in seqs.values())
    out, stats = score_sequences(model, seqs, batch_tokens=budget, chunk_tokens=chunk, device="cpu", pad_id=0,
                                 packing=path)
    assert stats["packing"] == path
    return [out[i] for i in range(ids.shape[0])]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param in ("torch_varlen", "flash_attn"):
        install_varlen_stand_ins(monkeypatch)
    return request.param


@pytest.fixture(scope="module")
def tiny(tiny_qwen_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_any_chunking_equals_full_cross_entropy(tiny, chunk, path):
    vocab = tiny.config.vocab_size
    ids, mask, labels = _batch(vocab, [40, 23, 31], prompt=5)
    ours = _losses(path, tiny, ids, mask, labels, chunk)
    ref = _reference(tiny, ids, mask, labels)
    assert [len(x) for x in ours] == [35, 18, 26]
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=TOL), float((a - b).abs().max())


def test_softcap_and_scaling_applied_like_the_model(tiny, path):
    """Granite-style logit scaling and Gemma-style soft-capping are applied before the log-sum-exp."""
    vocab = tiny.config.vocab_size
    ids, mask, labels = _batch(vocab, [20], prompt=3, seed=1)
    plain = _losses(path, tiny, ids, mask, labels, 8)[0]
    tiny.config.logits_scaling, tiny.config.final_logit_softcapping = 4.0, 2.0
    try:
        capped = _losses(path, tiny, ids, mask, labels, 8)[0]
        with torch.no_grad():
            logits = tiny(input_ids=ids).logits.float()[0, :-1] / 4.0
            logits = torch.tanh(logits / 2.0) * 2.0
        tgt = labels[0, 1:]
        keep = tgt != IGNORE_INDEX
        ref = torch.nn.functional.cross_entropy(logits[keep], tgt[keep], reduction="none")
    finally:
        tiny.config.logits_scaling = tiny.config.final_logit_softcapping = None
    assert torch.allclose(capped, ref, atol=TOL)
    assert not torch.allclose(capped, plain, atol=1e-3)  # the transform did change the result


def test_bf16_head_and_biased_head(tiny_qwen_dir, path):
    """Non-fp32 heads go through the upcast path; a head with a bias goes through addmm."""
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    ids, mask, labels = _batch(vocab, [24, 12], prompt=4, seed=2)
    head = model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.uniform_(-2, 2)
    model.set_output_embeddings(biased)
    ours = _losses(path, model, ids, mask, labels, 5)
    for a, b in zip(ours, _reference(model, ids, mask, labels)):
        assert torch.allclose(a, b, atol=TOL)

    model = model.to(torch.bfloat16)
    ours = _losses(path, model, ids, mask, labels, 5)
    for a, b in zip(ours, _reference(model, ids, mask, labels)):
        assert a.dtype == torch.float32
        assert torch.allclose(a, b, atol=1e-2)  # same bf16 logits upcast, summation order aside


def test_rows_without_labels_give_empty_losses(tiny, path):
    ids, mask, labels = _batch(tiny.config.vocab_size, [10, 10], prompt=10)
    assert [len(x) for x in _losses(path, tiny, ids, mask, labels, 4)] == [0, 0]


def test_half_head_on_cuda_writes_fp32_logits(tiny_qwen_dir, monkeypatch):
    """The CUDA branch for bf16 heads (``torch.mm(..., out_dtype=torch.float32)``: one GEMM with fp32 output,
    emulated here) gives the loss of the unrounded fp32-accumulated logits; a torch without it falls back to
    the model's own bf16 logits and remembers that."""
    from data_selection.scoring import logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.bfloat16).eval()
    ids, mask, labels = _batch(model.config.vocab_size, [30, 18], prompt=4, seed=3)
    real_mm, calls = torch.mm, []

    def emulated_mm(a, b, *args, out_dtype=None, out=None):
        if out_dtype is None:
            return real_mm(a, b, *args, out=out) if out is not None else real_mm(a, b, *args)
        calls.append(out_dtype)
        return out.copy_(a.float() @ b.float())  # products of bf16 values are exact in fp32

    monkeypatch.setattr(logprobs, "_fp32_out_mm_ok", lambda h: logprobs._FP32_OUT_MM.get("cpu", True))
    monkeypatch.setattr(torch, "mm", emulated_mm)
    monkeypatch.setattr(logprobs, "_FP32_OUT_MM", {})
    ours = response_token_losses(model, ids, mask, labels, 7)
    assert calls and set(calls) == {torch.float32}
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    weight = model.get_output_embeddings().weight.float()
    for i, got in enumerate(ours):
        n = int(mask[i].sum())
        logits = hidden[i, : n - 1].float() @ weight.t()
        tgt = labels[i, 1:n]
        keep = tgt != IGNORE_INDEX
        want = torch.nn.functional.cross_entropy(logits[keep], tgt[keep], reduction="none")
        assert torch.allclose(got, want, atol=TOL)

    def old_torch_mm(a, b, *args, out_dtype=None, out=None):
        if out_dtype is not None:
            raise TypeError("mm() got an unexpected keyword argument 'out_dtype'")
        return real_mm(a, b, *args, out=out) if out is not None else real_mm(a, b, *args)

    monkeypatch.setattr(torch, "mm", old_torch_mm)
    fallback = response_token_losses(model, ids, mask, labels, 7)
    assert logprobs._FP32_OUT_MM == {"cpu": False}
    for a, b in zip(fallback, _reference(model, ids, mask, labels)):
        assert torch.allclose(a, b, atol=1e-2)
