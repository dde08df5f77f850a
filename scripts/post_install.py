"""Fix-ups that `make install` applies after pip, each for a known breakage (see docs/platform notes in README).

Idempotent: running it again changes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path


def _pkg_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    profile = ap.parse_args().profile
    import torch

    cpu_torch = torch.version.cuda is None
    if profile == "cpu" and cpu_torch:
        # PyPI's torchvision is a CUDA build: beside a CPU torch `import torchvision` fails, and transformers
        # imports it whenever it is installed. Nothing here needs it.
        if _pkg_dir("torchvision") is not None:
            subprocess.check_call([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "torchvision"])
            print("post-install: removed torchvision (CUDA wheel beside a CPU torch)")
        # torchaudio's CUDA native libs fail to load (libc10_cuda.so) and llamafactory's mm_plugin imports
        # torchaudio; its pure-Python part works once the native libs are gone.
        ta = _pkg_dir("torchaudio")
        for so in sorted((ta / "lib").glob("*.so")) if ta else []:
            so.unlink()
            print(f"post-install: removed {so.name} from torchaudio (CUDA native lib beside a CPU torch)")
    # lighteval's tiny_benchmarks module downloads this file at import time and crashes offline; an empty
    # placeholder satisfies the import (only the tinyBenchmarks tasks, which we never run, read it).
    lt = _pkg_dir("lighteval")
    if lt is not None:
        pkl = lt / "tasks" / "tasks" / "tinyBenchmarks.pkl"
        if not pkl.exists():
            pkl.write_bytes(pickle.dumps({}))
            print(f"post-install: wrote placeholder {pkl}")
    print("post-install: ok")


if __name__ == "__main__":
    main()
