"""Package probes: DeepSpeed and the ops it will build, Liger, and the vLLM evaluation environment."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
from pathlib import Path

from data_selection.command_line import UserError
from llamafactory_ext.doctor.gpu import NO_GPU, gpu_count
from llamafactory_ext.doctor.target import Check, Target, _truthy


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_failure(name: str, dist: str, module: str, used: bool, why_needed: str, install: str,
                    reinstall: str) -> Check | None:
    """A check saying ``dist`` is missing or ``module`` does not import (a blocker when the config uses it);
    None when it imports."""
    if _version(dist) is None or importlib.util.find_spec(module.split(".")[0]) is None:
        return Check(name, "blocker" if used else "skip", f"{dist} not installed" + (f" ({why_needed})" if used
                                                                                    else ""), install)
    try:
        importlib.import_module(module)
    except Exception as err:
        return Check(name, "blocker" if used else "warn", f"{dist} {_version(dist)} does not import: "
                     f"{type(err).__name__}: {err}", reinstall)
    return None


def _deepspeed_config(t: Target) -> dict:
    ds = t.recipe.get("deepspeed")
    if not ds:
        return {}
    try:
        return json.loads(Path(str(ds)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the recipe probe reports an unreadable file


def check_deepspeed(t: Target) -> Check:
    """DeepSpeed imports, and the ops this config needs can be built: ``is_compatible`` only (no compile)."""
    used = bool(t.recipe.get("deepspeed"))
    failed = _import_failure("DeepSpeed ops", "deepspeed", "deepspeed.accelerator", used,
                             f"{t.recipe_path} uses deepspeed:", "pip install -e '.[train]' (make install PROFILE=gpu)",
                             "pip install --force-reinstall --no-cache deepspeed (builds against this torch)")
    if failed:
        return failed
    from deepspeed.accelerator import get_accelerator

    zero = _deepspeed_config(t).get("zero_optimization", {})
    offload = (zero.get("offload_optimizer") or {}).get("device") == "cpu"
    needed = ["CPUAdamBuilder"] if offload else []  # ZeRO with HF's own AdamW needs no compiled op otherwise
    if not gpu_count() and not offload:
        return Check("DeepSpeed ops", "skip", f"deepspeed {_version('deepspeed')} imports; {NO_GPU}: CUDA op "
                     "builds not checked")
    informative = ["FusedAdamBuilder"] if gpu_count() else []
    acc = get_accelerator()
    problems, fine = [], []
    for name in needed + informative:
        builder = acc.create_op_builder(name)
        ok = builder is not None and builder.is_compatible(verbose=False)
        (fine if ok else problems).append(name)
    from torch.utils.cpp_extension import CUDA_HOME, is_ninja_available

    if needed and not is_ninja_available():
        problems.append("ninja (JIT builds)")
    if gpu_count() and needed and CUDA_HOME is None:
        problems.append("nvcc (CUDA_HOME unset)")
    blocking = [p for p in problems if p not in informative]
    detail = (f"deepspeed {_version('deepspeed')} on {acc.device_name()}; buildable: {', '.join(fine) or '-'}"
              + (f"; not buildable: {', '.join(problems)}" if problems else ""))
    if blocking:
        return Check("DeepSpeed ops", "blocker" if used else "warn", detail,
                     "pip install ninja; install the CUDA toolkit matching torch's CUDA and set CUDA_HOME "
                     "(ZeRO offload JIT-compiles cpu_adam at start), or use ds_configs/ds_z3.json")
    return Check("DeepSpeed ops", "warn" if problems else "ok", detail,
                 "" if not problems else "only informative: this config's ZeRO stage uses HF's AdamW")


def check_liger(t: Target) -> Check:
    used = _truthy(t.recipe.get("enable_liger_kernel"))
    failed = _import_failure("Liger kernel", "liger-kernel", "liger_kernel.transformers", used,
                             f"{t.recipe_path} sets enable_liger_kernel: true", "pip install liger-kernel",
                             "pip install --force-reinstall liger-kernel (it needs triton matching torch)")
    return failed or Check("Liger kernel", "ok", f"liger-kernel {_version('liger-kernel')} imports")


VLLM_PACKAGES = ("vllm", "transformers", "torch")


def vllm_python() -> Path | None:
    """The interpreter of the vLLM server's environment: the one beside the ``vllm`` that ``eval`` would start
    ($VLLM_BIN, ./.venv-vllm/bin/vllm, then PATH: the same search as ``eval --backend vllm``)."""
    from llamafactory_ext.evaluation.vllm_server import find_vllm  # keeps doctor's own import light

    try:
        python = Path(find_vllm(None)).with_name("python")
    except UserError:
        return None
    return python if python.is_file() else None


def check_vllm_env(t: Target) -> Check:
    """``eval --backend vllm`` serves the model with ``vllm serve`` from its own environment and lets lighteval
    (main environment) query it through litellm: both halves must be there."""
    needed = t.eval_backend == "vllm"
    name = "vLLM eval environment"
    if importlib.util.find_spec("litellm") is None:
        return Check(name, "blocker" if needed else "warn", "litellm is not importable in this environment: "
                     "lighteval's endpoint backend needs it", "make install (the eval extra brings lighteval[litellm])")
    python = vllm_python()
    if python is None:
        return Check(name, "blocker" if needed else "skip",
                     "no vllm server found ($VLLM_BIN, .venv-vllm/bin/vllm, PATH)"
                     + (f": {t.path} evaluates with vLLM" if needed else ""),
                     "make install-vllm (README, Evaluation), or set VLLM_BIN")
    code = (f"import importlib.metadata as m, json\nv = {{}}\nfor p in {VLLM_PACKAGES!r}:\n"
            "    try: v[p] = m.version(p)\n    except m.PackageNotFoundError: v[p] = None\nprint(json.dumps(v))")
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True)
        versions = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        return Check(name, "blocker" if needed else "warn", f"{python} does not run: {err}",
                     "recreate it: make install-vllm")
    detail = f"{python}: " + ", ".join(f"{p} {v}" for p, v in versions.items() if v)
    if not versions.get("vllm"):
        return Check(name, "blocker" if needed else "warn", f"{detail}; missing ['vllm']", "make install-vllm")
    return Check(name, "ok", detail)


PROBES = (check_deepspeed, check_liger, check_vllm_env)
