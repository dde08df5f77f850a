"""A FlashAttention-4 install as the ``flash-attn-4`` wheel leaves it: ``flash_attn/cute/`` and no
``flash_attn/__init__.py``, so ``flash_attn`` is a namespace package without FlashAttention-2's function.

Its ``flash_attn_varlen_func`` has FA4's real signature (``flash_attn/cute/interface.py``, Dao-AILab/flash-attention)
and return value ``(out, lse)``, checks the arguments our callers pass, and computes causal attention within each
row on the CPU.
"""

from __future__ import annotations

import sys

CUTE_INIT = '''
import torch

__version__ = "4.0.0b36"
CALLS = []


def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                           seqused_q=None, seqused_k=None, page_table=None, softmax_scale=None, causal=False,
                           window_size=(None, None), learnable_sink=None, softcap=0.0, num_splits=1, pack_gqa=None,
                           deterministic=False, score_mod=None, mask_mod=None, block_sparse_tensors=None,
                           cu_total_m_blocks=None, cu_total_n_blocks=None, aux_tensors=None, return_lse=False):
    assert q.dim() == 3 and k.shape == v.shape and q.shape[1] % k.shape[1] == 0, "[T, H, D] with GQA heads"
    assert cu_seqlens_q is not None and cu_seqlens_q.dtype == torch.int32 and cu_seqlens_k is cu_seqlens_q
    assert causal and seqused_q is None and page_table is None and not softcap
    assert q.dtype in (torch.float16, torch.bfloat16), "inputs must be float16 or bfloat16"
    assert max_seqlen_q == max_seqlen_k == int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max())
    CALLS.append(q.shape[0])
    bounds = cu_seqlens_q.tolist()
    out = torch.empty_like(q)
    for s, e in zip(bounds[:-1], bounds[1:]):
        o = torch.nn.functional.scaled_dot_product_attention(
            q[None, s:e].transpose(1, 2), k[None, s:e].transpose(1, 2), v[None, s:e].transpose(1, 2),
            is_causal=True, scale=softmax_scale, enable_gqa=q.shape[1] != k.shape[1])
        out[s:e] = o[0].transpose(0, 1)
    return out, None
'''

BROKEN_CUTE_INIT = "import cutlass  # the CuTe DSL (nvidia-cutlass-dsl) is missing\n"


def _forget_flash_attn():
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith("flash_attn.")]:
        del sys.modules[name]


def planting(monkeypatch, tmp_path):
    """A fixture body (``yield from planting(...)``) yielding ``plant(cute_init=CUTE_INIT)``: a namespace-only
    ``flash_attn`` with ``cute/__init__.py`` on sys.path; every ``flash_attn`` module is forgotten afterwards."""

    def plant(cute_init: str = CUTE_INIT):
        site = tmp_path / "site"
        (site / "flash_attn" / "cute").mkdir(parents=True)
        (site / "flash_attn" / "cute" / "__init__.py").write_text(cute_init)
        assert not (site / "flash_attn" / "__init__.py").exists()
        _forget_flash_attn()
        monkeypatch.syspath_prepend(str(site))
        return site

    yield plant
    _forget_flash_attn()


def installed_kernels_supported(kernel, device, dtype) -> bool:
    """``varlen.kernel_supported`` as on a Hopper GPU in bf16: a FlashAttention kernel only when installed."""
    from data_selection.scoring import kernel_proof, varlen

    return kernel not in varlen.FLASH or kernel_proof.flash_attention_import(varlen.FLASH[kernel])[0]
