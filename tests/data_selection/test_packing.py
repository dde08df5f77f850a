"""Packed scoring: rows concatenated into one sequence, variable-length causal attention, no padding.

The packed layout is checked against a direct computation, every packed mode against the padded path and the
model's own cross-entropy (the GPU-only kernels through CPU stand-ins asserting their argument contract), a
kernel that lets rows see each other is caught, and the GPU path is checked to need no host sync.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch
from helpers import (
    install_varlen_stand_ins,
    torch_210_varlen_stand_in,
    unchecked_torch_varlen_stand_in,
)
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM

from data_selection.scoring import varlen
from data_selection.scoring.forward import score_sequences
from data_selection.scoring.logprobs import IGNORE_INDEX, packed_token_losses, response_token_losses
from data_selection.scoring.packing import pack_rows, packed_batches
from data_selection.scoring.prefetch import prefetch

TOL = 3e-5  # as tests/data_selection/test_logprobs.py: fp32 summation order, ~10x margin


@pytest.fixture(scope="module")
def tiny(tiny_qwen_dir):
    """The tiny Qwen2 (4 query heads sharing 2 K/V heads: GQA) in fp32 with SDPA."""
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32, attn_implementation="sdpa")
    assert model.config.num_attention_heads != model.config.num_key_value_heads
    return model.eval()


def _rows(lengths: list[int], seed: int = 0, vocab: int = 5000) -> dict[int, tuple[list[int], list[int]]]:
    """Rows with a prompt of 1-6 unlabelled tokens, then labels; row 0 is labelled from its first token."""
    rng = random.Random(seed)
    rows = {}
    for i, n in enumerate(lengths):
        ids = [rng.randrange(vocab) for _ in range(n)]
        prompt = 0 if i == 0 else min(n, rng.randint(1, 6))
        rows[i] = (ids, [IGNORE_INDEX] * prompt + ids[prompt:])
    return rows


def _reference(model, rows) -> dict[int, torch.Tensor]:
    out = {}
    for k, (ids, labels) in rows.items():
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits.float()[0, :-1]
        tgt = torch.tensor(labels[1:])
        keep = tgt != IGNORE_INDEX
        out[k] = torch.nn.functional.cross_entropy(logits[keep], tgt[keep], reduction="none")
    return out


def test_pack_rows_layout_equals_a_direct_computation():
    rows = _rows([5, 1, 9, 4, 7], seed=3)
    rows[3] = (rows[3][0], [IGNORE_INDEX] * 4)  # a row without any label
    keys = [2, 0, 3, 1, 4]
    b = pack_rows(keys, rows)
    assert b.input_ids.tolist() == [[t for k in keys for t in rows[k][0]]]
    assert b.position_ids.tolist() == [[p for k in keys for p in range(len(rows[k][0]))]]
    assert b.cu_seqlens.dtype == torch.int32 and b.cu_seqlens.tolist() == [0, 9, 14, 18, 19, 26]
    assert b.max_len == 9 and b.tokens == 26
    index, targets, counts, start = [], [], [], 0
    for k in keys:
        ids, labels = rows[k]
        mine = [(start + i - 1, labels[i]) for i in range(1, len(ids)) if labels[i] != IGNORE_INDEX]
        index += [p for p, _ in mine]
        targets += [t for _, t in mine]
        counts.append(len(mine))
        start += len(ids)
    assert b.score_index.tolist() == index and b.targets.tolist() == targets and b.counts == counts
    assert counts[keys.index(0)] == 4  # row 0's first label (position 0) is predicted by nothing: not scored
    assert counts[keys.index(3)] == 0
    with pytest.raises(ValueError, match="row 7"):
        pack_rows([7], {7: ([1, 2, 3], [1, 2])})


def test_packed_batches_fill_the_budget_and_are_deterministic():
    rng = random.Random(0)
    lengths = {i: rng.randint(20, 3000) for i in range(400)} | {400: 9000}
    batches = packed_batches(lengths, 8192)
    assert sorted(k for b in batches for k in b) == sorted(lengths)
    assert [400] in batches  # longer than the budget: alone
    for b, nxt in zip(batches, batches[1:]):
        used = sum(lengths[k] for k in b)
        assert len(b) == 1 or used <= 8192
        assert used + lengths[nxt[0]] > 8192  # closed only because the next row did not fit
    shuffled = dict(sorted(lengths.items(), key=lambda kv: rng.random()))
    assert packed_batches(shuffled, 8192) == batches
    with pytest.raises(ValueError):
        packed_batches(lengths, 0)


@pytest.mark.parametrize("mode", ["sdpa_rows", "sdpa_mask", "torch_varlen", "flash_attn"])
def test_every_packed_mode_equals_padded_and_model(tiny, mode, monkeypatch):
    calls = install_varlen_stand_ins(monkeypatch) if mode in ("torch_varlen", "flash_attn") else {}
    rows = _rows([37, 3, 64, 18, 2, 51, 29, 8, 45], seed=1)
    ref = _reference(tiny, rows)
    padded, s_off = score_sequences(tiny, rows, batch_tokens=128, chunk_tokens=16, device="cpu", pad_id=0,
                                    packing="off")
    packed, s_on = score_sequences(tiny, rows, batch_tokens=128, chunk_tokens=16, device="cpu", pad_id=0,
                                   packing=mode)
    assert s_on["packing"] == mode and s_on["padding_waste"] == 0.0 and s_off["packing"] == "off"
    assert s_on["batches"] < len(rows)  # rows really were packed together
    if calls:  # the GPU kernel's stand-in really ran, once per layer and batch
        assert calls[mode] == s_on["batches"] * tiny.config.num_hidden_layers
    for k in rows:
        assert packed[k].dtype == torch.float32 and packed[k].shape == ref[k].shape
        assert torch.allclose(packed[k], ref[k], atol=TOL), (k, float((packed[k] - ref[k]).abs().max()))
        assert torch.allclose(packed[k], padded[k], atol=TOL)
    assert tiny.config._attn_implementation == "sdpa"  # the model's own attention is restored


def test_torch_210_varlen_gets_expanded_kv_heads(tiny, monkeypatch):
    """torch 2.10's varlen_attn has is_causal and no enable_gqa: K/V heads are expanded for it."""
    calls = install_varlen_stand_ins(monkeypatch, torch_varlen=torch_210_varlen_stand_in)
    rows = _rows([30, 12, 25], seed=2)
    ref = _reference(tiny, rows)
    out, _ = score_sequences(tiny, rows, batch_tokens=100, chunk_tokens=64, device="cpu", pad_id=0,
                             packing="torch_varlen")
    assert calls["torch_varlen"] > 0
    for k in rows:
        assert torch.allclose(out[k], ref[k], atol=TOL)


def test_varlen_kwargs_across_torch_versions():
    new = frozenset({"query", "key", "value", "scale", "window_size", "enable_gqa"})
    old = frozenset({"query", "key", "value", "is_causal", "return_aux"})
    assert varlen.torch_varlen_kwargs(new, 16, 2, 0.125, 64) == ({"window_size": (-1, 0), "scale": 0.125,
                                                                   "enable_gqa": True}, False)
    assert varlen.torch_varlen_kwargs(old, 16, 2, 0.125, 64) == ({"is_causal": True}, True)
    assert varlen.torch_varlen_kwargs(old, 16, 16, 0.125, 64) == ({"is_causal": True}, False)
    with pytest.raises(RuntimeError, match="scale"):
        varlen.torch_varlen_kwargs(old, 16, 16, 0.5, 64)


def test_a_kernel_that_lets_rows_see_each_other_is_caught(tiny, monkeypatch):
    """Negative control: causal attention over the whole packed sequence (row boundaries ignored) must fail the
    equality the tests above assert, for every row but the first."""

    def leaky(q, k, v, cu, max_len, scale):
        o = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1),
                                                             v.transpose(0, 1), is_causal=True, scale=scale,
                                                             enable_gqa=True)
        return o.transpose(0, 1)

    monkeypatch.setitem(varlen._KERNEL_FNS, "sdpa_rows", leaky)
    rows = _rows([20, 20, 20], seed=4)
    ref = _reference(tiny, rows)
    out, _ = score_sequences(tiny, rows, batch_tokens=60, chunk_tokens=64, device="cpu", pad_id=0,
                             packing="sdpa_rows")
    first = packed_batches({k: 20 for k in rows}, 60)[0][0]
    assert torch.allclose(out[first], ref[first], atol=TOL)
    assert all(float((out[k] - ref[k]).abs().max()) > 1e-3 for k in rows if k != first)


SYNC_OPS = {"aten.item.default", "aten._local_scalar_dense.default", "aten.nonzero.default",
            "aten.masked_select.default", "aten.resolve_conj.default", "aten.repeat_interleave.Tensor",
            "aten.unique_consecutive.default", "aten._unique2.default"}


class _SyncOps(TorchDispatchMode):
    """Records ops that make the host wait for a CUDA device (reading values back, data-dependent shapes)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        bool_index = name == "aten.index.Tensor" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        if name in SYNC_OPS or bool_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def test_packed_gpu_path_needs_no_host_sync(tiny, monkeypatch):
    """The forward + loss of a packed batch (the torch_varlen path) reads nothing back from the device."""
    install_varlen_stand_ins(monkeypatch, torch_varlen=unchecked_torch_varlen_stand_in)
    rows = _rows([40, 17, 33], seed=5)
    batch = pack_rows(list(rows), rows)
    with varlen.packed_attention(tiny, "torch_varlen"), _SyncOps() as packed:
        packed_token_losses(tiny, batch, chunk_tokens=16)
    assert packed.seen == []

    ids = torch.zeros((3, 40), dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, IGNORE_INDEX)
    for i, (x, y) in rows.items():
        ids[i, : len(x)], mask[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), 1, torch.tensor(y)
    with _SyncOps() as padded:  # the detector does see the padded path's boolean indexing and .tolist()
        response_token_losses(tiny, ids, mask, labels, chunk_tokens=16)
    assert padded.seen


def test_resolve_packing(tiny, monkeypatch):
    assert varlen.resolve_packing("auto", tiny) == "sdpa_rows"  # CPU: exact, no mask, no padding
    assert varlen.resolve_packing("off", tiny) == "off"
    assert not varlen.kernel_available("torch_varlen", "cpu", torch.bfloat16)
    assert not varlen.kernel_available("flash_attn", "cuda", torch.float32)  # the flash kernels: half only
    for mode in ("torch_varlen", "flash_attn"):
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            varlen.resolve_packing(mode, tiny)
    with pytest.raises(ValueError, match="unknown packing"):
        varlen.resolve_packing("fast", tiny)
    monkeypatch.setattr(tiny.config, "layer_types", ["sliding_attention"] * tiny.config.num_hidden_layers)
    assert varlen.resolve_packing("auto", tiny) == "off"
    with pytest.raises(ValueError, match="sliding-window"):
        varlen.resolve_packing("sdpa_rows", tiny)


def test_attention_is_restored_after_an_error(tiny, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kernel failed")

    monkeypatch.setitem(varlen._KERNEL_FNS, "sdpa_rows", boom)
    with pytest.raises(RuntimeError, match="kernel failed"):
        score_sequences(tiny, _rows([5, 6]), batch_tokens=64, chunk_tokens=8, device="cpu", pad_id=0,
                        packing="sdpa_rows")
    assert tiny.config._attn_implementation == "sdpa"


def test_prefetch_keeps_order_raises_and_stops():
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))
    assert list(prefetch(range(3), enabled=False)) == [0, 1, 2]

    def failing():
        yield 1
        raise KeyError("bad row")

    got = []
    with pytest.raises(KeyError, match="bad row"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1]

    produced = []
    started = threading.Event()

    def slow():
        for i in range(1000):
            produced.append(i)
            started.set()
            yield i

    items = prefetch(slow())
    assert started.wait(5)  # production starts at construction, before the first item is asked for
    with items:
        for x in items:
            if x == 2:
                break
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 5  # the producer stopped with the consumer
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
