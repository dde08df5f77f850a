"""Helpers the tests share (imported as ``from helpers import …``; ``tests/`` is on pytest's pythonpath).

Fixtures live in ``conftest.py``; plain functions and constants live here, so a test module says where what
it uses comes from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def make_alpaca_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 3 + i, 7 * i + 1
        steps = " ".join(f"Step {k}: consider {a} and {b}." for k in range(1 + i % 5))
        rows.append(
            {
                "instruction": f"What is {a} + {b}?",
                "input": "",
                "output": f"<think>\n{steps}\n</think>\n\nThe answer is \\boxed{{{a + b}}}.",
                "system": SYSTEM,
            }
        )
    return rows


def make_acereason_rows(n: int = 12) -> list[dict]:
    return [
        {
            "category": "math" if i % 3 else "code",
            "source": ["OpenMathReasoning", "NuminaMath-CoT", "OpenCodeReasoning"][i % 3],
            "input": r["instruction"],
            "output": r["output"],
        }
        for i, r in enumerate(make_alpaca_rows(n))
    ]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, msg: str = "") -> None:
    """Equal up to float rounding, measured against the tensor's own magnitude.

    Two fp32 computations of the same sum in a different order (chunked vs direct, AVX2 vs AVX-512 kernels,
    1 vs 2 threads) differ by a few ulps *of the largest terms summed*, not of each result element: an element
    that cancels to nearly zero can differ by more than any fixed element-wise tolerance. So the bound is
    ``rel * max|expected|`` for every element.
    """
    actual, expected = actual.detach(), expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    worst = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert actual.shape == expected.shape, f"{msg}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert worst <= rel * scale + 1e-30, f"{msg}: max |diff| {worst:.3e} > {rel:g} x max|expected| {scale:.3e}"


# ---------------------------------------------------------------- CPU stand-ins for the GPU-only varlen kernels


def _block_causal_sdpa(q, k, v, cu, scale):
    """Reference varlen attention ([T, H, D], cu int32 boundaries): SDPA with a block-diagonal causal mask built
    on the device without reading ``cu`` back (so a stand-in adds no host sync of its own)."""
    t = q.shape[0]
    pos = torch.arange(t, device=q.device)
    row = torch.searchsorted(cu[1:].long(), pos, right=True)
    mask = (row[:, None] == row[None, :]) & (pos[:, None] >= pos[None, :])
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask, scale=scale,
        enable_gqa=q.shape[1] != k.shape[1])
    return out[0].transpose(0, 1)


def _check_varlen_contract(q, k, v, cu_q, cu_k, max_q, max_k):
    assert q.dim() == k.dim() == v.dim() == 3 and q.shape[0] == k.shape[0] == v.shape[0]
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous()
    assert cu_q is cu_k or torch.equal(cu_q, cu_k)
    assert cu_q.dtype == torch.int32 and cu_q.device == q.device
    assert int(cu_q[0]) == 0 and int(cu_q[-1]) == q.shape[0]
    assert isinstance(max_q, int) and max_q == max_k == int(cu_q.diff().max())
    assert q.shape[1] % k.shape[1] == 0


def torch_varlen_stand_in(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                          window_size=(-1, -1)):
    """``torch.nn.attention.varlen.varlen_attn`` exactly as torch 2.11 declares it ([T, H, D], causal =
    ``window_size=(-1, 0)``, no ``enable_gqa``: K/V must arrive with the query's head count), computed on CPU."""
    _check_varlen_contract(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)
    assert tuple(window_size) == (-1, 0), "causal is window_size=(-1, 0)"
    assert query.shape[1] == key.shape[1] == value.shape[1], "torch 2.11 has no enable_gqa: K/V heads expanded"
    return _block_causal_sdpa(query, key, value, cu_seq_q, scale)


def torch_212_varlen_stand_in(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                              scale=None, window_size=(-1, -1), enable_gqa=False, seqused_k=None,
                              block_table=None, num_splits=None):
    """``varlen_attn`` as torch 2.12+ declare it (``enable_gqa`` added), computed on CPU."""
    _check_varlen_contract(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)
    assert tuple(window_size) == (-1, 0), "causal is window_size=(-1, 0)"
    assert enable_gqa == (query.shape[1] != key.shape[1]), "GQA is passed natively where the kernel has it"
    return _block_causal_sdpa(query, key, value, cu_seq_q, scale)


def unchecked_torch_varlen_stand_in(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                                    scale=None, window_size=(-1, -1)):
    """:func:`torch_varlen_stand_in` without its contract checks (which read values back to the host)."""
    return _block_causal_sdpa(query, key, value, cu_seq_q, scale)


def torch_210_varlen_stand_in(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False,
                              return_aux=None):
    """torch 2.10's ``varlen_attn``: ``is_causal``, no ``scale``, no ``enable_gqa`` (K/V heads must match)."""
    _check_varlen_contract(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)
    assert is_causal and query.shape[1] == key.shape[1]
    return _block_causal_sdpa(query, key, value, cu_seq_q, None)


def flash_attn_varlen_stand_in(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                               softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                               alibi_slopes=None, deterministic=False, return_attn_probs=False, block_table=None):
    """The flash-attn package's ``flash_attn_varlen_func`` (2.x signature; GQA native), computed on CPU."""
    _check_varlen_contract(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    assert causal and dropout_p == 0.0 and tuple(window_size) == (-1, -1) and not softcap
    return _block_causal_sdpa(q, k, v, cu_seqlens_q, softmax_scale)


def install_varlen_stand_ins(monkeypatch, torch_varlen=torch_varlen_stand_in) -> dict[str, int]:
    """Make the GPU-only kernels runnable on CPU: torch's ``varlen_attn`` and a ``flash_attn`` module replaced by
    stand-ins that assert the kernels' documented argument contract and compute the same attention.
    Returns the number of calls of each (``torch_varlen``, ``flash_attn``), updated as they run."""
    import functools
    import importlib.machinery
    import sys
    import types

    import torch.nn.attention.varlen as tv

    from data_selection.scoring import varlen

    calls = {"torch_varlen": 0, "flash_attn": 0}

    def counted(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(tv, "varlen_attn", counted("torch_varlen", torch_varlen))
    fake = types.ModuleType("flash_attn")
    fake.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None)
    fake.flash_attn_varlen_func = counted("flash_attn", flash_attn_varlen_stand_in)
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    # the stand-ins count as supported and proven here (the proof itself: tests/data_selection/test_kernel_proof.py)
    monkeypatch.setattr(varlen, "kernel_available", lambda kernel, device, dtype: True)
    monkeypatch.setattr(varlen, "kernel_supported", lambda kernel, device, dtype: True)
    monkeypatch.setattr(varlen, "kernel_problem", lambda kernel, device, dtype: None)
    varlen._torch_varlen_params.cache_clear()
    monkeypatch.setattr(varlen, "_torch_varlen_params", _uncached(varlen._torch_varlen_params))
    return calls


def _uncached(cached):
    return cached.__wrapped__


# ---------------------------------------------------------------- broken flash-attn installs


def broken_flash_attn(*_a, **_k):
    """A flash-attn build whose CUDA kernels do not load on this GPU."""
    raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore detail")


def non_causal_flash_attn(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                          softmax_scale=None, causal=False, **_):
    """A mismatched build: returns attention over the whole packed sequence, not causal within rows."""
    o = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                         scale=softmax_scale, enable_gqa=True)
    return o.transpose(0, 1)


def fake_flash_attn(monkeypatch, fn):
    """An importable ``flash_attn`` module whose ``flash_attn_varlen_func`` is ``fn``."""
    import sys
    import types

    fake = types.ModuleType("flash_attn")
    fake.flash_attn_varlen_func = fn
    monkeypatch.setitem(sys.modules, "flash_attn", fake)


def unimportable_flash_attn(monkeypatch, tmp_path):
    """An installed ``flash_attn`` package that fails to import (built against another torch)."""
    import sys

    pkg = tmp_path / "site" / "flash_attn"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "flash_attn", raising=False)


# ---------------------------------------------------------------- a machine whose GPUs torch cannot use


def gpuless_torch_with_old_driver(monkeypatch, tmp_path):
    """An NVIDIA 550 driver (a fake /proc/driver/nvidia, no nvidia-smi) and a torch CUDA 13.0 wheel that therefore
    sees no GPU (torch 2.11's default Linux wheel needs a driver >= 580)."""
    from data_selection import device

    proc = tmp_path / "proc_nvidia"
    proc.mkdir()
    (proc / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 "
                                  "UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    monkeypatch.setattr(device, "PROC_NVIDIA", proc)
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    return proc
