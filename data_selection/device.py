"""Which device a command computes on, set once per process; and the NVIDIA driver torch may fail to see.

Under ``torchrun`` every rank runs on ``cuda:LOCAL_RANK``. :func:`use_device` resolves ``--device`` and makes that
GPU the process's *current* device (``torch.cuda.set_device``): otherwise every rank opens a context on GPU 0,
and anything that uses "the current stream" (an event's ``record()``, a pinned copy) runs against GPU 0's stream
instead of the rank's own.

The default Linux torch wheel is built for one CUDA version (torch 2.11.0: CUDA 13.0, which needs an NVIDIA
driver >= 580). On an older driver ``torch.cuda.is_available()`` is simply False: ``--device auto`` would then
score on the CPU in fp32 without a word. :func:`torch_gpu_problem` notices NVIDIA GPUs that torch cannot use
(``/proc/driver/nvidia`` or ``nvidia-smi``) and says what to install instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from data_selection.command_line import UserError

PROC_NVIDIA = Path("/proc/driver/nvidia")
TORCH_INDEX = "https://download.pytorch.org/whl"
# the newest CUDA build of the pinned torch that a driver of this major version runs (CUDA minor-version
# compatibility: every 12.x runtime works on a driver >= 525)
_CUDA_FOR_DRIVER = ((580, "cu130"), (570, "cu128"), (525, "cu126"))


@dataclass
class NvidiaDriver:
    version: str  # e.g. "550.54.15"
    gpus: list[str] = field(default_factory=list)  # names, when nvidia-smi answered

    @property
    def major(self) -> int:
        m = re.match(r"(\d+)", self.version)
        return int(m.group(1)) if m else 0


def _proc_version(proc: Path) -> str | None:
    try:
        text = (proc / "version").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)", text) or re.search(
        r"\b(\d{3}\.\d+(?:\.\d+)?)\b", text)
    return m.group(1) if m else "unknown"


def _nvidia_smi() -> tuple[str, list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split(",", 1) for line in out.stdout.splitlines() if "," in line]
    if out.returncode != 0 or not rows:
        return None
    return rows[0][0].strip(), [name.strip() for _, name in rows]


def nvidia_driver(proc: Path | None = None) -> NvidiaDriver | None:
    """The NVIDIA driver of this machine (version, GPU names), whatever torch thinks; None without one."""
    smi = _nvidia_smi()
    if smi is not None:
        return NvidiaDriver(*smi)
    version = _proc_version(proc or PROC_NVIDIA)
    return NvidiaDriver(version) if version is not None else None


def matching_wheel(driver_major: int) -> str | None:
    """The CUDA build of torch (``cu126``…) a driver of this major version runs; None when none does."""
    return next((tag for least, tag in _CUDA_FOR_DRIVER if driver_major >= least), None)


def install_hint(driver: NvidiaDriver) -> str:
    """How to get a torch this driver runs (or which driver to get)."""
    import torch  # lazy: device.py is plumbing, imported by light commands that never touch torch

    tag = matching_wheel(driver.major)
    if tag is None:
        return (f"driver {driver.version} is older than any CUDA build of torch {torch.__version__.split('+')[0]} "
                "(CUDA 12.6 needs >= 525): upgrade the NVIDIA driver")
    base = torch.__version__.split("+")[0]
    return (f"install torch's {tag} build, which driver {driver.version} runs: "
            f"`PIP_EXTRA_INDEX_URL={TORCH_INDEX}/{tag} make install PROFILE=gpu` (constraints/gpu.txt pins "
            f"torch=={base} without a local tag, so {base}+{tag} from that index satisfies it and wins), or in "
            f"place: `pip install --force-reinstall torch=={base} torchvision torchaudio --index-url "
            f"{TORCH_INDEX}/{tag}`; or upgrade the driver to >= 580 for the default CUDA 13 wheel")


def torch_gpu_problem(driver: NvidiaDriver | None = None, *, probe: bool = True) -> str | None:
    """Why torch sees no GPU on a machine that has NVIDIA GPUs (None when torch sees one, or there is none)."""
    import torch  # lazy: as above

    if torch.cuda.is_available():
        return None
    if driver is None and probe:
        driver = nvidia_driver()
    if driver is None:
        return None
    wheel = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only (no CUDA)"
    names = f" ({', '.join(driver.gpus)})" if driver.gpus else ""
    return (f"this machine has NVIDIA GPUs{names}, driver {driver.version}, but torch {torch.__version__} "
            f"({wheel} build) cannot use them. Fix: {install_hint(driver)}. Run `llamafactory-ext doctor` "
            "to check; pass --device cpu to compute on the CPU anyway.")


def resolve_device(opt: str, local_rank: int) -> str:
    """``--device`` -> a torch device string: ``auto`` = ``cuda:LOCAL_RANK`` when torch sees a GPU, else the CPU
    (a :class:`~data_selection.command_line.UserError` instead when the machine has GPUs torch cannot use)."""
    import torch  # lazy: as above

    if opt == "auto":
        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
        problem = torch_gpu_problem()
        if problem:
            raise UserError(f"--device auto: {problem}")
        return "cpu"
    if opt == "cuda":
        return f"cuda:{local_rank}"
    return opt


def use_device(opt: str, local_rank: int | None = None) -> str:
    """Resolve ``--device`` for this rank and make it the process's current CUDA device (once, before any GPU
    work). ``local_rank`` defaults to ``LOCAL_RANK`` (torchrun), else 0."""
    import torch  # lazy: as above

    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(opt, local_rank)
    if torch.device(device).type == "cuda":
        dev = torch.device(device)
        torch.cuda.set_device(dev if dev.index is not None else torch.device("cuda", local_rank))
    return device
