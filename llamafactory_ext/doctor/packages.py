"""Package probes: DeepSpeed and the ops it will build, Liger, the vLLM evaluation environment, verify's checker
environment, and the versions LLaMA-Factory 0.9.5 declares (its wheel's ranges, DeepSpeed's tested range, transformers releases it marks broken)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet

from data_selection.command_line import UserError
from data_selection.options.verify import CHECKER_PYTHON_ENV
from data_selection.scoring.kernel_proof import FA2, flash_attention_import
from data_selection.verify.checker_env import probe
from data_selection.verify.mathcheck import checker_label
from llamafactory_ext.doctor.gpu import NO_GPU, gpu_count
from llamafactory_ext.doctor.target import Check, Target, _truthy
from llamafactory_ext.evaluation.vllm_server import find_vllm


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


VERIFY_VENV_PYTHON = Path(".venv-verify") / "bin" / "python"


def check_verify_env(t: Target) -> Check:
    """The checker environment of ``data-select verify --checker_python`` ($DATA_SELECT_CHECKER_PYTHON, else
    ./.venv-verify from ``make install-verify``): which math-verify grades there, beside this environment's."""
    name = "verify checker environment"
    here = f"this environment grades with {checker_label()}"
    named = os.environ.get(CHECKER_PYTHON_ENV, "").strip()
    python = named or (str(VERIFY_VENV_PYTHON.absolute()) if VERIFY_VENV_PYTHON.is_file() else "")
    if not python:
        return Check(name, "skip", f"no .venv-verify (nor ${CHECKER_PYTHON_ENV}); {here}",
                     "make install-verify (math-verify 0.9.0 for data-select verify --checker_python)")
    try:
        found = probe(python, f"${CHECKER_PYTHON_ENV}" if named else "checker environment")
    except UserError as err:
        return Check(name, "warn", f"{err}; {here}", "recreate it: make install-verify")
    use = (f"verify uses it by default (${CHECKER_PYTHON_ENV})" if named
           else f"use it with data-select verify --checker_python {python}")
    return Check(name, "ok", f"{python}: {found['checker']}; {here}; {use}")


# ---------------------------------------------------------------- versions LLaMA-Factory declares or marks

LLAMAFACTORY = "llamafactory"
# LLaMA-Factory's wheel declares no DeepSpeed requirement; the range it is tested with is its repository's
# requirements/deepspeed.txt. This bundle's train extra pins 0.19.8 instead: the version that installs on CPU and
# that ran ZeRO-3 full SFT on an H200 on 2026-11-22 (docs/platform.md).
LF_TESTED_DEEPSPEED = SpecifierSet(">=0.10.0,<=0.18.4")
DEEPSPEED_PIN, DEEPSPEED_GPU_RUN = "0.19.8", "2026-11-22"
# transformers releases LLaMA-Factory marks broken (a `!=` in its requirement), with the reason.
BROKEN_TRANSFORMERS = {
    "5.6.0": "its flash_attention_forward calls s_aux.to() on None, so every model without attention sinks "
             "(Qwen2, Llama, ...) crashes on its first forward under flash_attention_2/4 (AttributeError: "
             "'NoneType' object has no attribute 'to'; transformers #45588, fixed in #45589); LLaMA-Factory "
             "#10610, excluded by #10634 (main: <=5.8.0,!=5.6.0). SDPA is unaffected",
    "4.57.0": "yanked from PyPI (LLaMA-Factory excludes it: !=4.57.0)",
}
TRANSFORMERS_FIX = ("pip install transformers==5.5.4 (what constraints/{cpu,gpu}.txt pin: the release before, "
                    "which LLaMA-Factory 0.9.5's <=5.6.0 allows)")


def declared_requirements(dist: str = LLAMAFACTORY) -> list[Requirement]:
    """``dist``'s unconditional requirements as its installed metadata declares them (no extras)."""
    out = []
    for line in importlib.metadata.requires(dist) or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req)
    return out


def outside_declared_ranges(dist: str = LLAMAFACTORY) -> list[tuple[str, str, str]]:
    """(package, installed version, declared range) for each installed requirement of ``dist`` outside it."""
    out = []
    for req in declared_requirements(dist):
        installed = _version(req.name)
        if req.specifier and installed is not None and not req.specifier.contains(installed, prereleases=True):
            out.append((req.name, installed, str(req.specifier)))
    return out


def check_llamafactory_ranges(t: Target) -> Check:
    name = "LLaMA-Factory's declared ranges"
    lf = _version(LLAMAFACTORY)
    if lf is None:
        return Check(name, "skip", "llamafactory not installed", "make install")
    outside = outside_declared_ranges()
    if not outside:
        return Check(name, "ok", f"every installed requirement of llamafactory {lf} is within its declared range")
    return Check(name, "warn", f"outside llamafactory {lf}'s declared ranges: "
                 + ", ".join(f"{p} {v} (declared {spec})" for p, v, spec in outside),
                 "give the bundle its own environment: `make install` builds .venv with LLaMA-Factory "
                 f"{lf}'s ranges (a current stack cannot host it: its caps force downgrades)")


def check_deepspeed_tested(t: Target) -> Check:
    name = "DeepSpeed vs LLaMA-Factory"
    version = _version("deepspeed")
    if version is None:
        return Check(name, "skip", "deepspeed not installed")
    if LF_TESTED_DEEPSPEED.contains(version, prereleases=True):
        return Check(name, "ok", f"deepspeed {version} is within LLaMA-Factory's tested range "
                     f"({LF_TESTED_DEEPSPEED}, its requirements/deepspeed.txt)")
    detail = (f"deepspeed {version} is outside LLaMA-Factory's tested range ({LF_TESTED_DEEPSPEED}, its "
              "requirements/deepspeed.txt); ")
    if version == DEEPSPEED_PIN:
        return Check(name, "warn", detail + f"it is this bundle's pin (the train extra): ZeRO-3 full SFT ran with "
                     f"it on a GPU (H200) on {DEEPSPEED_GPU_RUN}",
                     "none needed for the recipes measured; a new ZeRO setup: try it on a few steps first")
    return Check(name, "warn", detail + f"neither is it this bundle's pin ({DEEPSPEED_PIN}, run on a GPU on "
                 f"{DEEPSPEED_GPU_RUN})", f"pip install deepspeed=={DEEPSPEED_PIN}")


def check_transformers_release(t: Target) -> Check:
    """transformers is not a release LLaMA-Factory marks broken (a blocker where this config would hit the bug)."""
    name = "transformers release"
    version = _version("transformers")
    if version is None:
        return Check(name, "skip", "transformers not installed", "make install")
    why = BROKEN_TRANSFORMERS.get(version)
    if why is None:
        return Check(name, "ok", f"transformers {version}")
    fa2_works = flash_attention_import(FA2) == (True, None)
    hits = version == "5.6.0" and fa2_works and str(t.recipe.get("flash_attn", "auto")) == "fa2"
    detail = f"transformers {version} is a release LLaMA-Factory marks broken: {why}"
    if hits:
        detail += f"; FlashAttention-2 imports and {t.recipe_path} sets flash_attn: fa2: training crashes"
    elif version == "5.6.0" and fa2_works:
        detail += "; FlashAttention-2 imports here: recipes with flash_attn: fa2 and padded scoring crash"
    return Check(name, "blocker" if hits else "warn", detail, TRANSFORMERS_FIX)


PROBES = (check_deepspeed, check_deepspeed_tested, check_liger, check_vllm_env, check_verify_env,
          check_llamafactory_ranges, check_transformers_release)
