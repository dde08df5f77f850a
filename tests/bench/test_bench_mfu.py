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


def test_spearman_and_error_vs_reference():
    from score_mfu import error_vs_reference, spearman

    assert spearman([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 400.0]) == 1.0  # ranks, not values
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == -1.0
    e = error_vs_reference([1.0, 2.5, 3.0], [1.0, 2.0, 3.25])
    assert e["max_abs_delta_loss_mean"] == 0.5 and e["spearman"] == 1.0


def test_profile_window_idle_share_and_top_kernels():
    from profile_summary import WINDOW, summarize_trace

    def ev(name, cat, ts, dur):
        return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur}

    trace = {"traceEvents": [
        ev(WINDOW, "user_annotation", 100, 100),  # window [100, 200] us
        ev("gemm", "kernel", 90, 30),  # clipped to [100, 120]
        ev("gemm", "kernel", 110, 20),  # overlaps: union [100, 130]
        ev("exp", "kernel", 150, 10),
        ev("Memcpy HtoD", "gpu_memcpy", 170, 5),
        ev("late", "kernel", 250, 10),  # outside the window
        ev("aten::mm", "cpu_op", 100, 90),  # host work is not GPU time
    ]}
    s = summarize_trace(trace)
    assert s["window_s"] == 100e-6
    assert abs(s["gpu_busy_s"] - 45e-6) < 1e-12 and abs(s["gpu_idle_share"] - 0.55) < 1e-9
    assert [k["name"] for k in s["top_kernels"]] == ["gemm", "exp"]  # the one starting before the window: out
    assert s["top_kernels"][0]["calls"] == 1
    assert "error" in summarize_trace({"traceEvents": []})


def test_report_marks_gpu_figures_unmeasured_on_cpu(capsys):
    from score_mfu import report

    results = {"dtype": "bf16", "ours_long_tail": {
        "tokens_per_s": 600.0, "tflops_per_s": 0.01, "mfu": None, "packing": "sdpa_rows", "batch_tokens": 32768,
        "padding_waste": 0.0, "peak_gpu_gb": None, "mix": {"max": 2048}},
        "profile": {"gpu_idle_share": None, "window_s": 3.0, "top_cpu_ops": []}}
    report(results, on_gpu=False)
    out = capsys.readouterr().out
    assert "MFU unmeasured" in out and "target >= 45%" in out and "GPU idle unmeasured" in out
    assert "peak GPU GB unmeasured" in out
