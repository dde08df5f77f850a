"""``llamafactory-ext eval``'s plan: options resolved to a protocol, the model staged, lighteval's command built.

:func:`prepare` writes everything the run needs into the evaluation folder (``model_config.yaml``,
``custom_tasks.py`` + ``.json``, ``data/``) so the printed command can be re-run by hand; the run itself and
the summary are :mod:`llamafactory_ext.evaluation.run`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_text_atomic
from data_selection.command_line import UserError
from data_selection.device import torch_gpu_problem
from llamafactory_ext.evaluation.options import EvalOptions, EvalPlan
from llamafactory_ext.evaluation.presets import (
    DEFAULT_PROTOCOL,
    NOT_RESAMPLED,
    PRESET_ALIASES,
    PRESETS,
    resampled_name,
)
from llamafactory_ext.evaluation.staging import (
    STAGED_MODEL,
    check_same_model,
    model_fingerprint,
    resolve_model,
    stage_model,
)
from llamafactory_ext.evaluation.suites import parse_suite, read_local_problems
from llamafactory_ext.evaluation.vllm_server import plan_server


def _gpu_available() -> bool:
    return torch.cuda.is_available()


def _refuse_unusable_gpus(backend: str) -> None:
    """``--backend auto``/``vllm`` on a machine whose NVIDIA GPUs torch cannot use: stop instead of running
    on the CPU (``--backend accelerate`` still runs there when asked for)."""
    problem = torch_gpu_problem()
    if problem:
        raise UserError(f"--backend {backend}: {problem.replace('--device cpu', '--backend accelerate')}")


def resolve_protocol(opts: EvalOptions):
    if opts.preset in PRESET_ALIASES:
        print(f"[eval] --preset {opts.preset} is now called {PRESET_ALIASES[opts.preset]}", file=sys.stderr)
        opts.preset = PRESET_ALIASES[opts.preset]
    if opts.preset is not None and opts.preset not in PRESETS:
        raise UserError(f"unknown preset {opts.preset!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[opts.preset] if opts.preset else DEFAULT_PROTOCOL

    def pick(value, default):
        return default if value is None else value

    return preset, {
        "samples": pick(opts.samples, preset.samples),
        "temperature": pick(opts.temperature, preset.temperature),
        "top_p": pick(opts.top_p, preset.top_p),
        "max_model_length": pick(opts.max_model_length, preset.max_model_length),
        "gpu_memory_utilization": pick(opts.gpu_memory_utilization, preset.gpu_memory_utilization),
        "system_prompt": pick(opts.system_prompt, preset.system_prompt) or None,
    }


def model_parameters(
    plan: EvalPlan, opts: EvalOptions, cache_dir: str, gpu_memory_utilization: float
) -> dict:
    generation = {"temperature": plan.temperature, "top_p": plan.top_p}
    if plan.max_new_tokens is not None:
        generation["max_new_tokens"] = plan.max_new_tokens
    params: dict = {"model_name": STAGED_MODEL, "dtype": plan.dtype, "cache_dir": cache_dir}
    if plan.system_prompt:
        params["system_prompt"] = plan.system_prompt
    if plan.backend == "vllm":
        # lighteval's LiteLLMModelConfig (extra="forbid"): the server, not lighteval, holds the model and dtype
        generation["seed"] = opts.seed
        params = {
            "model_name": f"openai/{STAGED_MODEL}",  # litellm's generic OpenAI-compatible provider
            "base_url": plan.base_url,
            "api_key": "EMPTY",  # vLLM checks no key; litellm's openai provider wants one
            "concurrent_requests": opts.concurrent_requests,
            "max_model_length": plan.max_model_length,
            "timeout": 3600.0,  # one long reasoning answer can take minutes under load
            "cache_dir": cache_dir,
            **({"system_prompt": plan.system_prompt} if plan.system_prompt else {}),
        }
    else:
        params.update(device=plan.device, max_length=plan.max_model_length)
        batch_size = opts.batch_size or (16 if plan.device == "cpu" else None)
        if batch_size:
            params["batch_size"] = batch_size
    params["generation_parameters"] = generation
    return {"model_parameters": params}


def find_lighteval(explicit: str | None) -> str:
    candidates = [explicit, os.environ.get("LIGHTEVAL_BIN"), str(Path(sys.executable).parent / "lighteval"),
                  shutil.which("lighteval")]
    for c in candidates:
        if c and Path(c).is_file():
            return str(Path(c).absolute())
    if explicit:
        raise UserError(f"--lighteval_bin {explicit}: no such file")
    raise UserError("no lighteval executable found: install the eval extra (pip install -e '.[eval]')")


def seeded_launcher(lighteval_bin: str, out: Path, seed: int, heartbeat: float = 30.0) -> list[str]:
    """The command prefix that runs lighteval seeded and with a progress heartbeat (see ``seeded_lighteval.py``).

    Uses the interpreter next to the ``lighteval`` executable, so the vLLM venv's lighteval runs in that venv.
    A lighteval without a ``python`` beside it (a system install) is run as is, unseeded.
    """
    python = Path(lighteval_bin).with_name("python")
    if not python.is_file():
        return [lighteval_bin]
    shutil.copyfile(Path(__file__).with_name("seeded_lighteval.py"), out / "seeded_lighteval.py")
    return [str(python), "seeded_lighteval.py", "--seed", str(seed), "--heartbeat", f"{heartbeat:g}"]


def generation_length_notice(plan: EvalPlan) -> str | None:
    """On CPU, say up front how long answers may get and how to cap them (an uncapped run can take hours)."""
    if plan.device != "cpu" or plan.max_new_tokens is not None:
        return None
    return (f"[eval] on CPU each answer may generate up to {plan.max_model_length:,} tokens minus its prompt "
            "(--max_model_length; lighteval's built-in benchmarks may set their own smaller size): a model "
            "that never stops takes hours. Cap it with --max_new_tokens, e.g. --max_new_tokens 512. A heartbeat "
            "line shows progress every --heartbeat seconds.")


def plan_eval(opts: EvalOptions) -> tuple[EvalPlan, dict]:
    preset, proto = resolve_protocol(opts)
    suite = opts.suite or ",".join(preset.tasks)
    builtin, local = parse_suite(suite, opts.task_name)
    if opts.backend not in ("auto", "vllm", "accelerate"):
        raise UserError(f"--backend {opts.backend!r}: choose vllm, accelerate or auto")
    gpu = _gpu_available()
    if not gpu and opts.backend != "accelerate" and not opts.server_url:
        _refuse_unusable_gpus(opts.backend)  # a server given by URL may run anywhere
    backend = opts.backend if opts.backend != "auto" else ("vllm" if gpu or opts.server_url else "accelerate")
    if opts.server_url and backend != "vllm":
        raise UserError(f"--server_url is for --backend vllm (an OpenAI-compatible server), not {backend}")
    device = "cuda" if gpu else "cpu"
    dtype = opts.dtype or ("bfloat16" if gpu or backend == "vllm" else "float32")
    samples = proto["samples"]
    if samples < 1:
        raise UserError(f"--samples {samples}: must be at least 1")
    if samples > 1 and proto["temperature"] <= 0:
        raise UserError("--samples > 1 needs sampling: set --temperature above 0")
    if opts.max_samples is not None and opts.max_samples < 1:
        raise UserError("--max_samples must be at least 1")

    tasks, resampled, benchmarks = [], [], []
    for name in builtin:
        if samples > 1 and name not in NOT_RESAMPLED:
            resampled.append({"base": name, "samples": samples})
            name = resampled_name(name, samples)
        tasks.append(f"{name}|0")
    benchmarks += builtin
    local_specs = []
    for name, path in local:
        local_specs.append(
            {"name": name, "source": str(path), "samples": samples, "max_new_tokens": opts.max_new_tokens}
        )
        tasks.append(f"{name}|0")
        benchmarks.append(name)
    plan = EvalPlan(
        model=opts.model,
        model_path="",
        model_fingerprint="",
        out=str(Path(opts.out)),
        backend=backend,
        device=("server" if opts.server_url else "cuda") if backend == "vllm" else device,
        preset=opts.preset,
        tasks=tasks,
        benchmarks=benchmarks,
        local=local_specs,
        resampled=resampled,
        samples=samples,
        temperature=proto["temperature"],
        top_p=proto["top_p"],
        max_model_length=proto["max_model_length"],
        max_new_tokens=opts.max_new_tokens,
        max_samples=opts.max_samples,
        dtype=dtype,
        system_prompt=proto["system_prompt"],
    )
    return plan, proto


def prepare(opts: EvalOptions) -> EvalPlan:
    """Resolve options, stage model and data, write model_config.yaml and custom tasks, build the command."""
    plan, proto = plan_eval(opts)
    model_dir = resolve_model(opts.model)
    plan.model_path = str(model_dir)
    plan.model_fingerprint = model_fingerprint(model_dir)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    check_same_model(out, plan, opts.overwrite)
    stage_model(model_dir, out, plan.temperature, plan.top_p)

    spec = {"local": [], "resampled": plan.resampled}
    for entry in plan.local:
        rows = read_local_problems(Path(entry["source"]))
        data_dir = out / "data" / entry["name"]
        data_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(data_dir / "test.jsonl", rows)
        entry["rows"] = len(rows)
        spec["local"].append(
            {
                "name": entry["name"],
                "data_dir": str(data_dir.resolve()),
                "samples": entry["samples"],
                "max_new_tokens": entry["max_new_tokens"],
            }
        )
    cache_dir = f"cache/{plan.model_fingerprint}"
    if plan.backend == "vllm":
        plan_server(plan, opts, out, proto["gpu_memory_utilization"], served_name=STAGED_MODEL)
    params = model_parameters(plan, opts, cache_dir, proto["gpu_memory_utilization"])
    write_text_atomic(out / "model_config.yaml", yaml.safe_dump(params, sort_keys=False, allow_unicode=True))

    backend_args = ["endpoint", "litellm"] if plan.backend == "vllm" else [plan.backend]
    command = [
        *seeded_launcher(find_lighteval(opts.lighteval_bin), out, opts.seed, opts.heartbeat),
        *backend_args,
        "model_config.yaml",
        ",".join(plan.tasks),
    ]
    command += ["--output-dir", ".", "--save-details"]
    if spec["local"] or spec["resampled"]:
        # lighteval_tasks.py imports lighteval (tens of seconds): copy it by location, do not import it here
        shutil.copyfile(Path(__file__).with_name("lighteval_tasks.py"), out / "custom_tasks.py")
        write_json_atomic(out / "custom_tasks.json", spec)
        command += ["--custom-tasks", "custom_tasks.py"]
    if plan.max_samples:
        command += ["--max-samples", str(plan.max_samples)]
    plan.command = command
    return plan
