"""Dense bf16 peak of the GPUs the benches know (vendor datasheets, without sparsity), for MFU."""

from __future__ import annotations

# TFLOP/s; insertion order matters: the more specific names first ("H100 PCIe" before "H100")
PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0}


def gpu_peak_tflops(name: str) -> float | None:
    """The peak of the first known name contained in ``name`` (torch.cuda.get_device_name), else None."""
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None
