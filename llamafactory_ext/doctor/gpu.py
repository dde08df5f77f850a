"""GPU probes: which GPUs torch sees, whether the driver runs the torch wheel's CUDA, bf16 support."""

from __future__ import annotations

import torch

from data_selection.device import install_hint, nvidia_driver, torch_gpu_problem
from llamafactory_ext.doctor.target import Check, Target

NO_GPU = "no GPU"


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(t: Target) -> Check:
    n = gpu_count()
    if n == 0:
        driver = nvidia_driver()
        if driver is not None:
            return Check("GPUs visible", "blocker", f"torch sees none of this machine's NVIDIA GPUs "
                         f"({', '.join(driver.gpus) or 'driver ' + driver.version})", "see 'driver vs torch CUDA'")
        if t.needs_gpu:
            return Check("GPUs visible", "blocker", f"{NO_GPU}: {t.path} needs {t.gpus_needed} GPU(s) "
                         f"({t.half or 'DeepSpeed'} training{', vLLM evaluation' if t.eval_backend else ''})",
                         "run it on a machine with NVIDIA GPUs (or use the demo recipes/studies on a CPU)")
        return Check("GPUs visible", "skip", f"{NO_GPU} (CPU machine): GPU probes below are skipped")
    names = [torch.cuda.get_device_name(i) for i in range(n)]
    detail = f"{n} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
    if n < t.gpus_needed:
        return Check("GPUs visible", "blocker", f"{detail}; {t.path} asks for {t.gpus_needed}",
                     "lower NPROC_PER_NODE / gpus in the config (and raise gradient_accumulation_steps to keep "
                     "the effective batch), or use a larger machine")
    return Check("GPUs visible", "ok", detail)


def check_driver(t: Target) -> Check:
    driver = nvidia_driver()
    wheel = f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none: CPU build'})"
    if driver is None:
        if gpu_count():
            return Check("driver vs torch CUDA", "ok", f"{wheel}; driver version not readable")
        return Check("driver vs torch CUDA", "skip", f"{NO_GPU}: no NVIDIA driver; {wheel}")
    problem = torch_gpu_problem(driver)
    if problem:
        return Check("driver vs torch CUDA", "blocker", f"driver {driver.version}, {wheel}: torch sees no GPU",
                     install_hint(driver))
    return Check("driver vs torch CUDA", "ok", f"driver {driver.version}, {wheel}")


def check_bf16(t: Target) -> Check:
    if not gpu_count():
        return Check("bf16", "skip", NO_GPU)
    if torch.cuda.is_bf16_supported():
        return Check("bf16", "ok", f"supported on {torch.cuda.get_device_name(0)}")
    status = "blocker" if t.half == "bf16" else "warn"
    return Check("bf16", status, f"{torch.cuda.get_device_name(0)} has no bf16 (pre-Ampere)",
                 "use an Ampere or newer GPU (A100, H100, L40S…), or fp16: true instead of bf16: true")


PROBES = (check_gpus, check_driver, check_bf16)
