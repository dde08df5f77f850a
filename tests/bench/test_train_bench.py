"""The training benches: MFU's FLOP formula against torch's FLOP counter, the cost model against a hand count,
the memory tracer against known allocations, and a CPU smoke run of bench/train_mfu.py through both launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
from train_cost_model import scheme_costs  # noqa: E402
from train_flops import matmul_params, mfu, row_flops, training_flops  # noqa: E402
from train_memory import LiveBytes, liger_working_bytes  # noqa: E402


def test_training_flops_match_torch_flop_counter(tiny_qwen_dir):
    """Forward + backward of one row, every parameter trainable, no checkpointing: the counter sees every matmul
    (6 N n) and full, non-causal eager attention, which is twice the causal count the MFU definition uses."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32, attn_implementation="eager")
    cfg, n = model.config, 48
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 1000, (1, n)), labels=torch.randint(0, 1000, (1, n))).loss.backward()
    causal_attention = 6 * cfg.num_hidden_layers * n * n * cfg.hidden_size
    rotary = 2 * (cfg.hidden_size // cfg.num_attention_heads // 2) * n  # inv_freq x positions, forward only
    assert counter.get_total_flops() == training_flops(cfg, [n]) + causal_attention + rotary
    assert row_flops(cfg, n) == 6 * matmul_params(cfg) * n + causal_attention


def test_qwen25_3b_matmul_parameters_and_mfu():
    shape = {"num_hidden_layers": 36, "hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16,
             "num_key_value_heads": 2, "vocab_size": 151936}  # fmt: skip
    # per layer q 2048^2 + k, v 2 x 2048 x 256 + o 2048^2 + MLP 3 x 2048 x 11008; lm_head 2048 x 151,936
    assert matmul_params(shape) == 36 * 77_070_336 + 311_164_928 == 3_085_697_024
    flops = training_flops(shape, [16384])
    assert mfu(shape, [16384], seconds=flops / 989.4e12, peak_tflops=989.4) == pytest.approx(1.0)
    assert mfu(shape, [16384], seconds=1.0, peak_tflops=None) is None


def test_cost_model_matches_a_hand_count():
    """Two rows of 8 and 16 tokens, one micro-batch of 2, cutoff 32: every scheme counted by hand."""
    cfg = {"num_hidden_layers": 1, "hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 2,
           "num_key_value_heads": 1, "vocab_size": 10}  # fmt: skip
    mm = 6 * matmul_params(cfg)

    def att(n):
        return 6 * 1 * n * n * 4

    c = scheme_costs(cfg, [8, 16], cutoff=32, per_device=2, effective=16, seed=None)
    useful = mm * 24 + att(8) + att(16)
    expect = {
        "padded, SDPA": mm * 32 + 2 * att(16) * 2,  # both padded to 16, masked: whole squares
        "padded, flash-attn": mm * 32 + att(8) + att(16),
        "neat_packing, SDPA": mm * 32 + 2 * att(32),  # one pack padded to the cutoff, 4-D mask
        "neat_packing, flash-attn": useful,
        "padding_free": useful,
    }
    for name, computed in expect.items():
        assert c[name]["computed_over_useful"] == pytest.approx(computed / useful), name
    assert c["padded, SDPA"]["padding_share"] == pytest.approx(8 / 32)
    assert c["neat_packing, SDPA"]["examples_per_step"] == pytest.approx(32)  # 2 rows per pack x 16 packs


def test_live_bytes_follows_storages_not_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake, tracker = FakeTensorMode(), LiveBytes()
    with fake, tracker:
        a = torch.empty(1000, dtype=torch.float32)  # 4,000 B
        b = torch.empty(500, dtype=torch.bfloat16)  # 1,000 B
        del a
        c = torch.empty(2000, dtype=torch.float32)  # 8,000 B: 9,000 alive
        view = c[:10]  # a view: no new storage
        del c
        assert tracker.current == 9000  # the view keeps c's storage alive
        del view
        assert tracker.current == 1000
    assert tracker.peak == 9000 and b.dtype == torch.bfloat16


def test_liger_working_set_follows_its_chunking():
    # T = 32,768, H = 2048, V = 151,936: ceil(V/H) = 75, chunk = next_pow2(ceil(T/75)) = 512 rows
    expect = 32768 * 2048 * 2 + 151936 * 2048 * 2 + 151936 * 2048 * 4 + 512 * 151936 * 2
    assert liger_working_bytes(32768, 2048, 151936) == expect


@pytest.mark.slow
def test_train_mfu_smoke_runs_both_launchers_and_padding_free_matches_padded(tmp_path):
    """The bench on CPU: advanced.yaml via llamafactory-cli and advanced_fast.yaml via llamafactory-ext (Liger and
    DeepSpeed off on CPU) train on the same rows; padding_free computes no padding and logs the same losses."""
    out = tmp_path / "r.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "train_mfu.py"), "--smoke", "--recipes",
                           "advanced", "advanced_fast", "--work", str(tmp_path / "w"), "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=900, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unmeasured" in proc.stdout
    r = json.loads(out.read_text())["recipes"]
    padded, flat = r["advanced"], r["advanced_fast"]
    assert padded["launcher"] == "llamafactory-cli" and flat["launcher"] == "llamafactory-ext"
    assert sorted(padded["row_lengths"]) == sorted(flat["row_lengths"])  # the same rows were trained on
    assert padded["padding_share"] > 0 and flat["padding_share"] == 0
    assert padded["mfu"] is None and flat["tokens_per_s"] > 0
    assert [s["step"] for s in flat["step_logs"]] == [s["step"] for s in padded["step_logs"]] == [1, 2]
    for a, b in zip(flat["step_logs"], padded["step_logs"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
