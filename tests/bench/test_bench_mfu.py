"""The MFU bench counts model FLOPs the way torch's own FLOP counter does (minus the work we skip)."""

from __future__ import annotations

import sys

import torch
from helpers import REPO_ROOT
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(REPO_ROOT / "bench"))
from score_mfu import gpu_peak_tflops, model_flops  # noqa: E402


def test_model_flops_match_torch_flop_counter(tiny_qwen_dir):
    from torch.utils.flop_counter import FlopCounterMode

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32, attn_implementation="eager")
    cfg = model.config
    n, r = 48, 30
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.randint(0, 1000, (1, n)))
    counted = counter.get_total_flops()
    # the counter sees full (non-causal) attention and the lm_head at every position; we count neither
    skipped = 2 * cfg.num_hidden_layers * n * n * cfg.hidden_size + 2 * cfg.hidden_size * cfg.vocab_size * (n - r)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    skipped += 2 * (head_dim // 2) * n  # the rotary embedding's inv_freq x positions product (negligible)
    assert model_flops(cfg, [n], [r]) == counted - skipped


def test_peak_lookup_prefers_specific_names():
    assert gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_peak_tflops("NVIDIA H200") == 989.4
    assert gpu_peak_tflops("Some future GPU") is None
