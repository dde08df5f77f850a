"""Attention-kernel probes: the kernel scoring and padding-free training will use, each proven on a tiny
packed batch against SDPA on GPU 0 (:mod:`data_selection.scoring.kernel_proof`), and flash-attn's import."""

from __future__ import annotations

import importlib.util

from llamafactory_ext.doctor.gpu import NO_GPU, gpu_count
from llamafactory_ext.doctor.target import Check, Target, _truthy

PROBE_DEVICE = "cuda:0"  # the kernels are proven here (GPU 0: every GPU of a machine is alike)


def check_scoring_kernel(t: Target) -> Check:
    import torch

    from data_selection.scoring.varlen import KERNELS, kernel_problem

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
                     "torch >= 2.10 on an sm80+ GPU gives torch_varlen; or install a flash-attn wheel built for "
                     f"torch {torch.__version__} + CUDA {torch.version.cuda}")
    detail = f"{chosen}, proven on a tiny packed batch against SDPA (bf16)"
    return Check("scoring attention", "ok", detail + (f"; passed over {rejected}" if rejected else ""))


def check_padding_free_kernel(t: Target) -> Check:
    import torch

    requested = str(t.recipe.get("padding_free_attention", "auto"))
    used = _truthy(t.recipe.get("padding_free"))
    if not gpu_count():
        return Check("padding-free attention", "skip", f"{NO_GPU}: SDPA per row on the CPU")
    from llamafactory_ext.train import padding_free as pf

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


def check_flash_attn(t: Target) -> Check:
    import torch

    wants_fa2 = str(t.recipe.get("flash_attn", "auto")) == "fa2"
    if importlib.util.find_spec("flash_attn") is None:
        detail = "not installed (optional: torch's varlen kernel and SDPA are used)"
        if wants_fa2:
            detail += f"; {t.recipe_path} sets flash_attn: fa2, so LLaMA-Factory warns and uses SDPA"
        return Check("flash-attn", "ok", detail)
    try:
        import flash_attn

        version = getattr(flash_attn, "__version__", "?")
        from flash_attn import flash_attn_varlen_func  # noqa: F401  (loads the CUDA extension)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        return Check("flash-attn", "blocker" if wants_fa2 else "warn",
                     f"installed but does not import ({type(err).__name__}: {first})"
                     + (f"; {t.recipe_path} sets flash_attn: fa2 and transformers would still pick it" if wants_fa2
                        else ""),
                     f"pip uninstall -y flash-attn, or install a wheel built for torch {torch.__version__} + "
                     f"CUDA {torch.version.cuda} (pip install flash-attn --no-build-isolation builds one)")
    return Check("flash-attn", "ok", f"flash-attn {version} imports")


PROBES = (check_scoring_kernel, check_padding_free_kernel, check_flash_attn)
