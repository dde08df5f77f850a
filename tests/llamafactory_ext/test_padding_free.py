"""padding_free: LLaMA-Factory's own padded micro-batches flattened into one row give the same loss and the same
gradients as the padded batch; the varlen kernels are called with the right layout, causality and KV heads."""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers import assert_close_to_scale
from llamafactory.extras.constants import IGNORE_INDEX

from data_selection.command_line import UserError
from llamafactory_ext.train import padding_free as pf
from llamafactory_ext.train.args import split_recipe_args

BASE = {"model_name_or_path": "m", "stage": "sft", "do_train": True, "dataset": "d", "template": "qwen"}
LENGTHS = [13, 40, 27]  # prompt 5 tokens each (masked), the rest response


@pytest.fixture(scope="module")
def lf_collator(tiny_qwen_dir):
    """LLaMA-Factory's SFT collator exactly as its SFT workflow builds it for training (pads to a multiple of 8)."""
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    template = get_template_and_fix_tokenizer(tok, DataArguments(template="qwen"))
    return SFTDataCollatorWith4DAttentionMask(template=template, tokenizer=tok, pad_to_multiple_of=8,
                                              label_pad_token_id=IGNORE_INDEX, attn_implementation="sdpa",
                                              compute_dtype=torch.float32)  # fmt: skip


def _features(lengths=LENGTHS, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = []
    for n in lengths:
        ids = torch.randint(10, 150000, (n,), generator=g).tolist()
        feats.append({"input_ids": ids, "attention_mask": [1] * n, "labels": [IGNORE_INDEX] * 5 + ids[5:]})
    return feats


def test_flattened_batch_keeps_every_token_label_and_row_boundary(lf_collator):
    feats = _features()
    padded = lf_collator(feats)
    assert padded["input_ids"].shape == (3, 40) and (padded["attention_mask"] == 0).any()
    flat = pf.flatten_padded_batch(dict(padded))
    assert flat["input_ids"][0].tolist() == sum((f["input_ids"] for f in feats), [])
    assert flat["position_ids"][0].tolist() == sum((list(range(n)) for n in LENGTHS), [])
    assert flat["cu_seq_lens_q"].tolist() == [0, 13, 53, 80] and flat["cu_seq_lens_q"].dtype == torch.int32
    assert flat["max_length_q"] == 40 and flat["attention_mask"].sum() == 80
    # the same label tokens are counted (HF's num_items_in_batch), none crosses a row boundary
    assert int(flat["labels"].ne(IGNORE_INDEX).sum()) == int(padded["labels"].ne(IGNORE_INDEX).sum())
    assert flat["labels"][0, [0, 13, 53]].tolist() == [IGNORE_INDEX] * 3


def test_no_row_predicts_the_next_rows_first_token(lf_collator):
    """A row whose first label is not masked (train_on_prompt, refused for padding_free) still never makes the
    previous row's last token predict it: the padded batch never did either."""
    feats = _features()
    feats[1]["labels"][0] = feats[1]["input_ids"][0]
    flat = pf.flatten_padded_batch(dict(lf_collator(feats)))
    assert flat["labels"][0, 13] == IGNORE_INDEX and flat["labels"][0, 14] == feats[1]["labels"][1]


def test_flattening_refuses_what_it_cannot_represent():
    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="packed-sequence indices"):
        pf.flatten_padded_batch(
            {"input_ids": ids, "labels": ids, "attention_mask": torch.tensor([[1, 1, 2, 2]] * 2)}
        )
    with pytest.raises(ValueError, match="not contiguous"):
        pf.flatten_padded_batch(
            {"input_ids": ids, "labels": ids, "attention_mask": torch.tensor([[1, 0, 1, 1]] * 2)}
        )
    with pytest.raises(ValueError, match="pixel_values"):
        pf.flatten_padded_batch({"input_ids": ids, "labels": ids, "pixel_values": ids})


def _loss_and_grads(model, batch, loss_path):
    from llamafactory_ext.train.losses import dft_loss, label_token_cross_entropy

    model.zero_grad(set_to_none=True)
    labels = batch["labels"]
    n_items = labels.ne(IGNORE_INDEX).sum()  # what HF's Trainer passes as num_items_in_batch
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if loss_path == "model":  # HF's ForCausalLMLoss inside the model, as in advanced.yaml
        loss = model(**inputs, labels=labels, num_items_in_batch=n_items).loss
    else:  # dft_lean's chunked loss from the final hidden states
        out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
        loss = dft_loss(label_token_cross_entropy(out.hidden_states[-1], labels, model.lm_head, 16), n_items)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("loss_path", ["model", "dft_lean"])
def test_padding_free_loss_and_gradients_equal_the_padded_run(tiny_qwen_dir, lf_collator, loss_path):
    """fp32, gradient checkpointing on (LLaMA-Factory's default), LLaMA-Factory's collator for both."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    padded = lf_collator(_features())
    loss_ref, grads_ref = _loss_and_grads(model, dict(padded), loss_path)

    pf.use_padding_free_attention(model, "auto")
    assert model.config._attn_implementation == pf.ATTENTION_NAME
    loss, grads = _loss_and_grads(model, pf.flatten_padded_batch(dict(padded)), loss_path)
    assert_close_to_scale(loss[None], loss_ref[None], rel=1e-5, msg="loss")
    for name, g in grads_ref.items():
        assert_close_to_scale(grads[name], g, rel=1e-5, msg=name)


def test_a_padded_batch_still_works_after_the_switch(tiny_qwen_dir, lf_collator):
    """Without cu_seq_lens (an evaluation batch that was not flattened) the function is SDPA with the mask."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    padded = dict(lf_collator(_features()))
    with torch.no_grad():
        ref = model(**padded).logits
        pf.use_padding_free_attention(model)
        got = model(**padded).logits
    assert_close_to_scale(got, ref, rel=1e-5, msg="logits")


# --- the varlen kernels' calling conventions (the kernels themselves need a GPU) --------------------------


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale=None):
    """Per-row causal SDPA on [T, heads, D] tensors: what a varlen kernel computes."""
    assert q.dim() == 3 and q.stride(-1) == 1 and cu_q.dtype == torch.int32 and causal
    bounds = cu_q.tolist()
    assert max_q == max_k == max(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    outs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        o = torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1),
            k[a:b].transpose(0, 1),
            v[a:b].transpose(0, 1),
            is_causal=True,
            scale=scale,
        )
        outs.append(o.transpose(0, 1))
    return torch.cat(outs)


def _varlen_2_10(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=False, return_aux=None):
    assert k.shape[1] == q.shape[1], "this signature has no enable_gqa: K/V must arrive expanded"
    return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, is_causal)


def _varlen_window(q, k, v, cu_q, cu_k, max_q, max_k, *, return_aux=None, scale=None, window_size=(-1, -1)):
    assert k.shape[1] == q.shape[1], "this signature has no enable_gqa: K/V must arrive expanded"
    return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, tuple(window_size) == (-1, 0), scale)


def _varlen_gqa(q, k, v, cu_q, cu_k, max_q, max_k, *, return_aux=None, scale=None, window_size=(-1, -1),
                enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):  # fmt: skip
    assert (k.shape[1] != q.shape[1]) == enable_gqa, "GQA is passed natively when the kernel supports it"
    return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, tuple(window_size) == (-1, 0), scale)


def _flash_attn_pkg(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None, causal=False):
    assert dropout_p == 0.0  # flash-attn supports GQA natively
    return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal, softmax_scale)


def _flash_attn_4_pkg(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                      seqused_q=None, seqused_k=None, page_table=None, softmax_scale=None, causal=False,
                      window_size=(None, None), learnable_sink=None, softcap=0.0, num_splits=1, pack_gqa=None,
                      deterministic=False, score_mod=None, mask_mod=None, block_sparse_tensors=None,
                      cu_total_m_blocks=None, cu_total_n_blocks=None, aux_tensors=None, return_lse=False):
    """FlashAttention-4's ``flash_attn.cute.flash_attn_varlen_func``: its signature, and ``(out, lse)`` back."""
    assert seqused_q is None and page_table is None and cu_seqlens_q.dtype == torch.int32  # GQA native
    return _reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                             softmax_scale), None


_FAKE_OF = {"torch_varlen": "_torch_varlen", "flash_attn": "_flash_attn_varlen", "flash_attn_4": "_flash_attn_4_varlen"}


@pytest.mark.parametrize(
    "backend, fake",
    [("torch_varlen", _varlen_2_10), ("torch_varlen", _varlen_window), ("torch_varlen", _varlen_gqa),
     ("flash_attn", _flash_attn_pkg), ("flash_attn_4", _flash_attn_4_pkg)],
)  # fmt: skip
def test_varlen_backends_get_the_layout_causality_and_heads_right(monkeypatch, backend, fake):
    monkeypatch.setattr(pf, _FAKE_OF[backend], lambda: fake)
    monkeypatch.setattr(pf, "_fused_ok", lambda query: True)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 4, True
    g = torch.Generator().manual_seed(0)
    heads, kv_heads, dim, cu = 8, 2, 16, torch.tensor([0, 5, 17, 24], dtype=torch.int32)
    q, k, v = (
        torch.randn(1, h, 24, dim, generator=g, requires_grad=True) for h in (heads, kv_heads, kv_heads)
    )
    scale = dim**-0.5
    monkeypatch.setitem(pf._REQUESTED, "backend", backend)
    out, _ = pf.padding_free_attention(
        module, q, k, v, None, scaling=scale, cu_seq_lens_q=cu, max_length_q=12
    )
    monkeypatch.setitem(pf._REQUESTED, "backend", "sdpa")
    ref, _ = pf.padding_free_attention(
        module, q, k, v, None, scaling=scale, cu_seq_lens_q=cu, max_length_q=12
    )
    assert out.shape == ref.shape == (1, 24, heads, dim)
    assert_close_to_scale(out, ref, rel=1e-5, msg="output")
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    grads_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for got, want in zip(grads, grads_ref):
        assert_close_to_scale(got, want, rel=1e-5, msg="grad")


def test_installed_torch_varlen_signature_is_one_we_handle():
    fn = pf._torch_varlen()
    if fn is None:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    params = inspect.signature(fn).parameters
    assert "window_size" in params or "is_causal" in params


def test_a_requested_kernel_that_cannot_run_here_is_an_error():
    q = torch.zeros(1, 2, 3, 4)  # CPU fp32: no fused varlen kernel
    assert pf.available_backend(q, "auto") == "sdpa"
    with pytest.raises(RuntimeError, match="torch_varlen"):
        pf.available_backend(q, "torch_varlen")


# --- recipe keys and installation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"neat_packing": True}, "cannot run with `neat_packing: true`"),
        ({"packing": True}, "cannot run with `packing: true`"),
        ({"train_on_prompt": True}, "cannot run with `train_on_prompt: true`"),
        ({"stage": "dpo"}, "padding_free needs stage: sft"),
        ({"padding_free_attention": "xformers"}, "padding_free_attention must be one of"),
    ],
)
def test_padding_free_refuses_what_would_change_the_run(extra, message):
    with pytest.raises(UserError) as err:
        split_recipe_args({**BASE, "padding_free": True, **extra}, source="r.yaml")
    assert message in str(err.value) and str(err.value).startswith("r.yaml")


def test_collator_and_model_loader_are_swapped_only_inside_the_block():
    from llamafactory.train.sft import workflow

    _, ext = split_recipe_args({**BASE, "padding_free": "true", "padding_free_attention": "sdpa"})
    original = workflow.SFTDataCollatorWith4DAttentionMask, workflow.load_model
    with pf.installed(ext) as state:
        assert workflow.SFTDataCollatorWith4DAttentionMask is pf.PaddingFreeSFTCollator
        assert issubclass(pf.PaddingFreeSFTCollator, original[0]) and state == {"models": 0}
    assert (workflow.SFTDataCollatorWith4DAttentionMask, workflow.load_model) == original
    _, plain = split_recipe_args(dict(BASE))
    with pf.installed(plain) as state:
        assert state is None and workflow.SFTDataCollatorWith4DAttentionMask is original[0]
