"""An installed flash-attn is chosen only when it imports, runs and agrees with SDPA (CPU stand-ins of a GPU).

The GPU gate (CUDA device, half precision) is opened by monkeypatching, and the kernels run in bf16 on the CPU:
what is under test is the choice, the fallback and the one line that says why.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from flash_attn_4_stand_in import BROKEN_CUTE_INIT, installed_kernels_supported, planting
from helpers import (
    broken_flash_attn,
    fake_flash_attn,
    flash_attn_varlen_stand_in,
    non_causal_flash_attn,
    torch_varlen_stand_in,
    unimportable_flash_attn,
)

from data_selection.scoring import kernel_proof, varlen
from data_selection.scoring.options import resolve_attn


@pytest.fixture
def plant_flash_attn_4(monkeypatch, tmp_path):
    yield from planting(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    kernel_proof.forget()
    yield
    kernel_proof.forget()


class _Model(torch.nn.Module):
    """What resolve_packing looks at: a parameter (device, dtype) and a config without sliding windows."""

    def __init__(self, dtype=torch.bfloat16):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2, dtype=dtype))
        self.config = SimpleNamespace()


@pytest.fixture
def gpu_gate_open(monkeypatch):
    """As on a CUDA GPU in bf16 with flash-attn installed and torch 2.11's varlen_attn (exact signature)."""
    import torch.nn.attention.varlen as tv

    monkeypatch.setattr(varlen, "kernel_supported", installed_kernels_supported)
    monkeypatch.setattr(tv, "varlen_attn", torch_varlen_stand_in)
    varlen._torch_varlen_params.cache_clear()
    yield
    varlen._torch_varlen_params.cache_clear()


def test_a_correct_kernel_passes_its_proof_in_each_dtype():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert kernel_proof.run_proof("rows", varlen._sdpa_rows_kernel, "cpu", dtype) is None


def test_a_working_flash_attn_is_chosen(gpu_gate_open, monkeypatch):
    fake_flash_attn(monkeypatch, flash_attn_varlen_stand_in)
    assert varlen.resolve_packing("auto", _Model()) == "flash_attn"


@pytest.mark.parametrize("broken", ["import", "kernel", "numbers"])
def test_a_broken_flash_attn_is_passed_over_with_one_line(broken, gpu_gate_open, monkeypatch, tmp_path, capsys):
    if broken == "import":
        unimportable_flash_attn(monkeypatch, tmp_path)
        why = "ImportError: flash_attn_2_cuda.so: undefined symbol"
    else:
        fake_flash_attn(monkeypatch, broken_flash_attn if broken == "kernel" else non_causal_flash_attn)
        why = "no kernel image is available" if broken == "kernel" else "disagrees with SDPA"
    model = _Model()
    assert varlen.resolve_packing("auto", model) == "torch_varlen"  # the 2.11 stand-in passes its proof
    assert varlen.resolve_packing("auto", model) == "torch_varlen"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("[data-select] packed attention: not using flash_attn:") and why in lines[0]
    with pytest.raises(ValueError, match=f"packing=flash_attn: .*{why.split(':')[0]}"):
        varlen.resolve_packing("flash_attn", model)  # asked for by name: an error, not a fallback


def test_both_fused_kernels_broken_falls_back_to_sdpa_rows(gpu_gate_open, monkeypatch, capsys):
    import torch.nn.attention.varlen as tv

    fake_flash_attn(monkeypatch, broken_flash_attn)
    monkeypatch.setattr(tv, "varlen_attn", broken_flash_attn)
    assert varlen.resolve_packing("auto", _Model()) == "sdpa_rows"
    err = capsys.readouterr().err
    assert "not using flash_attn" in err and "not using torch_varlen" in err


def test_the_padded_path_loads_fa2_only_when_flash_attn_is_proven(monkeypatch):
    monkeypatch.setattr(varlen, "kernel_problem", lambda kernel, device, dtype: "fails on a tiny packed batch")
    assert resolve_attn("auto", "cuda:0", torch.bfloat16) == "sdpa"
    monkeypatch.setattr(varlen, "kernel_problem", lambda kernel, device, dtype: None)
    assert resolve_attn("auto", "cuda:0", torch.bfloat16) == "flash_attention_2"
    assert resolve_attn("auto", "cpu", torch.float32) == "sdpa"


def test_torch_211_signature_gets_expanded_kv_heads_and_212_native_gqa():
    """2.11 has no enable_gqa (K/V expanded); 2.12 does (passed natively): from the installed signature."""
    import inspect

    from helpers import torch_212_varlen_stand_in

    p211 = frozenset(inspect.signature(torch_varlen_stand_in).parameters)
    p212 = frozenset(inspect.signature(torch_212_varlen_stand_in).parameters)
    assert "enable_gqa" not in p211
    assert varlen.torch_varlen_kwargs(p211, 16, 2, 0.125, 64) == ({"window_size": (-1, 0), "scale": 0.125}, True)
    assert varlen.torch_varlen_kwargs(p212, 16, 2, 0.125, 64) == ({"window_size": (-1, 0), "scale": 0.125,
                                                                    "enable_gqa": True}, False)


# --- padding-free training's kernel choice --------------------------------------------------------------


@pytest.fixture
def padding_free_on_gpu(monkeypatch):
    from llamafactory_ext.train import padding_free as pf

    monkeypatch.setattr(pf, "_fused_ok", lambda query: True)
    monkeypatch.setattr(pf, "_torch_varlen", lambda: torch_varlen_stand_in)
    return pf


@pytest.mark.parametrize("broken", [broken_flash_attn, non_causal_flash_attn], ids=["kernel", "numbers"])
def test_padding_free_passes_over_a_broken_flash_attn(broken, padding_free_on_gpu, monkeypatch, capsys):
    pf = padding_free_on_gpu
    query = torch.zeros(1, 4, 8, 64, dtype=torch.bfloat16)
    monkeypatch.setattr(pf, "_flash_attn_varlen", lambda: flash_attn_varlen_stand_in)
    assert pf.available_backend(query, "auto") == "flash_attn"
    kernel_proof.forget()
    monkeypatch.setattr(pf, "_flash_attn_varlen", lambda: broken)
    assert pf.available_backend(query, "auto") == "torch_varlen"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[llamafactory-ext] padding_free: not using flash_attn:")
    with pytest.raises(RuntimeError, match="padding_free_attention=flash_attn: padding_free flash_attn"):
        pf.available_backend(query, "flash_attn")


# --- FlashAttention-4 (flash-attn-4: flash_attn/cute/ only, flash_attn a namespace package) --------------


def _dist_info(site, name="flash_attn_4", dist="flash-attn-4", version="4.0.0b36"):
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")


def test_a_namespace_only_flash_attn_is_fa4_not_a_broken_fa2(plant_flash_attn_4):
    import importlib.util

    plant_flash_attn_4()
    assert importlib.util.find_spec("flash_attn") is not None  # what the old check saw
    assert kernel_proof.flash_attention_import(kernel_proof.FA2) == (False, None)  # no FA2 at all
    assert kernel_proof.flash_attention_import(kernel_proof.FA4) == (True, None)
    assert kernel_proof.flash_attention_version(kernel_proof.FA4) == "4.0.0b36"


def test_fa4_is_proven_against_sdpa_and_chosen_first(plant_flash_attn_4, gpu_gate_open, monkeypatch, capsys):
    plant_flash_attn_4()
    import flash_attn.cute as cute

    assert kernel_proof.run_proof("fa4", varlen._flash_attn_4_kernel, "cpu", torch.bfloat16) is None
    assert cute.CALLS, "the stand-in ran"
    assert varlen.resolve_packing("auto", _Model()) == "flash_attn_4"
    assert varlen.resolve_packing("flash_attn_4", _Model()) == "flash_attn_4"
    with pytest.raises(ValueError, match=r"packing=flash_attn needs .*FlashAttention-2 \(the flash-attn package\)"):
        varlen.resolve_packing("flash_attn", _Model())  # FA2 is not there: asked for by name, an error
    assert "not using flash_attn_4" not in capsys.readouterr().err


def test_fa4_without_its_gpu_is_not_a_candidate(plant_flash_attn_4, monkeypatch):
    """Real kernel_supported: FA4 has kernels for sm90+ only, FA2 for sm80+."""
    plant_flash_attn_4()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert not varlen.kernel_supported("flash_attn_4", "cuda:0", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # H100
    assert varlen.kernel_supported("flash_attn_4", "cuda:0", torch.bfloat16)
    assert not varlen.kernel_supported("flash_attn", "cuda:0", torch.bfloat16)  # no FA2 installed


def test_a_broken_fa4_is_passed_over_with_one_line(plant_flash_attn_4, gpu_gate_open, capsys):
    _dist_info(plant_flash_attn_4(BROKEN_CUTE_INIT))
    assert varlen.resolve_packing("auto", _Model()) == "torch_varlen"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[data-select] packed attention: not using flash_attn_4:")
    assert "No module named 'cutlass'" in lines[0]


def test_fa2s_own_cute_directory_is_not_fa4(plant_flash_attn_4, gpu_gate_open, capsys):
    """FA2 wheels ship flash_attn/cute/ without the CuTe DSL: without the flash-attn-4 distribution that is
    not an FA4 install, and nothing is said about it."""
    plant_flash_attn_4(BROKEN_CUTE_INIT)
    assert kernel_proof.flash_attention_import(kernel_proof.FA4) == (False, None)
    assert varlen.resolve_packing("auto", _Model()) == "torch_varlen"
    assert capsys.readouterr().err == ""


def test_padding_free_uses_fa4_first(plant_flash_attn_4, padding_free_on_gpu, monkeypatch):
    pf = padding_free_on_gpu
    plant_flash_attn_4()
    pf._flash_attn_4_varlen.cache_clear()
    pf._flash_attn_varlen.cache_clear()
    try:
        query = torch.zeros(1, 4, 8, 64, dtype=torch.bfloat16)
        assert pf.available_backend(query, "auto") == "flash_attn_4"
        with pytest.raises(RuntimeError, match="padding_free_attention=flash_attn: not installed"):
            pf.available_backend(query, "flash_attn")
    finally:
        pf._flash_attn_4_varlen.cache_clear()
        pf._flash_attn_varlen.cache_clear()
