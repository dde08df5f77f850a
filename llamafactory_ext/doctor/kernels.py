"""Attention-kernel probes: the kernel scoring and padding-free training will use, each proven on a tiny
packed batch against SDPA on GPU 0 (:mod:`data_selection.scoring.kernel_proof`), and which FlashAttention
(2 or 4) is installed, read from its varlen function's import."""

from __future__ import annotations

import torch

from data_selection.scoring.kernel_proof import FA2, FA4, flash_attention_import, flash_attention_version
from data_selection.scoring.varlen import KERNELS, kernel_problem
from llamafactory_ext.doctor.gpu import NO_GPU, gpu_count
from llamafactory_ext.doctor.target import Check, Target, _truthy

PROBE_DEVICE = "cuda:0"  # the kernels are proven here (GPU 0: every GPU of a machine is alike)


def check_scoring_kernel(t: Target) -> Check:
    if not gpu_count():
        return Check("scoring attention", "skip", f"{NO_GPU}: sdpa_rows (one SDPA call per row) on the CPU")
    why = {}
    for kernel in KERNELS:
        why[kernel] = kernel_problem(kernel, PROBE_DEVICE, torch.bfloat16)
        if why[kernel] is None:
            break
    chosen = next(k for k, w in why.items() if w is None)
    rejected = "; ".join(f"{k}: {w}" for k, w in why.items() if w)
    if chosen == "sdpa_rows":
        return Check("scoring attention", "warn", f"sdpa_rows: no fused varlen kernel works here ({rejected})",
                     "torch >= 2.10 on an sm80+ GPU gives torch_varlen; on Hopper/Blackwell pip install "
                     "flash-attn-4 (no compile); or install a flash-attn wheel built for "
                     f"torch {torch.__version__} + CUDA {torch.version.cuda}")
    detail = f"{chosen}, proven on a tiny packed batch against SDPA (bf16)"
    return Check("scoring attention", "ok", detail + (f"; passed over {rejected}" if rejected else ""))


def check_padding_free_kernel(t: Target) -> Check:
    requested = str(t.recipe.get("padding_free_attention", "auto"))
    used = _truthy(t.recipe.get("padding_free"))
    if not gpu_count():
        return Check("padding-free attention", "skip", f"{NO_GPU}: SDPA per row on the CPU")
    from llamafactory_ext.train import (
        padding_free as pf,  # lazy: imports LLaMA-Factory; a failure is this probe's finding
    )

    query = torch.zeros(1, 4, 8, 64, device=PROBE_DEVICE, dtype=torch.bfloat16)
    try:
        backend = pf.available_backend(query, requested if requested in pf.BACKENDS else "auto")
    except RuntimeError as err:
        return Check("padding-free attention", "blocker" if used else "warn", str(err),
                     "set padding_free_attention: auto (falls back to the next kernel that works)")
    if backend == "sdpa" and requested == "auto":
        return Check("padding-free attention", "warn" if used else "ok",
                     "sdpa per row: no fused varlen kernel works here (slower, same results)",
                     "torch >= 2.10 on an sm80+ GPU, or a working flash-attn")
    return Check("padding-free attention", "ok", f"{backend}, proven on a tiny packed batch against SDPA (bf16)"
                 + ("" if used else " (this config does not use padding_free)"))


def _flash_name(fa) -> str:
    version = flash_attention_version(fa)
    return f"{fa.label} ({fa.dist} {version or '?'}, {fa.module})"


def check_flash_attn(t: Target) -> Check:
    """Which FlashAttention is installed, 2 (``flash-attn``) or 4 (``flash-attn-4``), read from whether its varlen
    function imports; FA4 alone leaves ``flash_attn`` a namespace package, which is not a broken FA2."""
    wants_fa2 = str(t.recipe.get("flash_attn", "auto")) == "fa2"
    (fa2, fa2_why), (fa4, fa4_why) = flash_attention_import(FA2), flash_attention_import(FA4)
    no_fa2_note = (f"; {t.recipe_path} sets flash_attn: fa2, which needs FlashAttention-2: LLaMA-Factory warns "
                   "and uses SDPA for its padded batches") if wants_fa2 else ""
    if fa2 and fa2_why:
        return Check("FlashAttention", "blocker" if wants_fa2 else "warn",
                     f"{_flash_name(FA2)} installed but does not import ({fa2_why})"
                     + (f"; {t.recipe_path} sets flash_attn: fa2 and transformers would still pick it" if wants_fa2
                        else ""),
                     f"pip uninstall -y flash-attn, or install a wheel built for torch {torch.__version__} + "
                     f"CUDA {torch.version.cuda} (pip install flash-attn --no-build-isolation builds one)")
    if fa4 and fa4_why:
        return Check("FlashAttention", "warn",
                     f"{_flash_name(FA4)} installed but its varlen function does not import ({fa4_why}); "
                     "scoring and padding-free training use the next kernel" + ("" if fa2 else no_fa2_note),
                     "pip install --force-reinstall flash-attn-4 (it brings the CuTe DSL, nvidia-cutlass-dsl; "
                     f"kernels for {FA4.gpus} only)")
    found = [fa for fa, ok in ((FA4, fa4), (FA2, fa2)) if ok]
    if not found:
        detail = "not installed (optional: torch's varlen kernel and SDPA are used)"
        return Check("FlashAttention", "ok", detail + no_fa2_note.replace("which needs FlashAttention-2: ", "so "))
    detail = " and ".join(f"{_flash_name(fa)} imports" for fa in found)
    detail += ("; scoring and padding-free training use "
               + " or ".join(f"{fa.kernel} (on {fa.gpus})" for fa in found)
               + " once it passes its proof (rows above)")
    return Check("FlashAttention", "ok", detail + ("" if fa2 else no_fa2_note))


PROBES = (check_scoring_kernel, check_padding_free_kernel, check_flash_attn)
