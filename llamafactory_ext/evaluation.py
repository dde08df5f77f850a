"""``llamafactory-ext eval``: run lighteval with the seeds' protocol, everything kept in one folder.

LLaMA-Factory 0.9.5 has no working ``llamafactory-cli eval`` for generative reasoning benchmarks, so this
command drives lighteval 0.13's own CLI as a subprocess (``lighteval accelerate|vllm``): its results JSON and
per-sample details are the output, in ``evals/NAME/results/model/results_<time>.json`` and
``evals/NAME/details/model/<time>/details_<task>|0_<time>.parquet``; ``summary.json``/``summary.md`` beside
them name the model, protocol, command and headline scores. Everything the run needs is written into the
folder first (``model_config.yaml``, ``custom_tasks.py`` + ``.json``, ``data/``), so the printed command can
be re-run by hand, and the subprocess may come from another environment (lighteval's vLLM extra pins
``vllm<0.10.2``, which needs its own virtual environment: see ``--lighteval_bin``).

Two workarounds, both confined to the evaluation folder:

* lighteval caches generations under ``cache_dir/model_name``; with a local model path (absolute) that is the
  model folder itself. The model is therefore staged as ``evals/NAME/model/``: a folder of symlinks to the
  model's files (nothing is copied, nothing is written into the user's folder), evaluated under the relative
  name ``model``, with the cache in ``evals/NAME/cache/<fingerprint of the model files>``.
* lighteval 0.13's transformers backend passes temperature/top_p to ``generate`` but never ``do_sample``, so
  sampling silently falls back to greedy unless the model's own generation_config says otherwise, and that
  config may add its own top_k/repetition penalty. The staged folder gets a generation_config.json with
  exactly the protocol (do_sample, temperature, top_p, top_k disabled, the model's special token ids), which
  is what the vLLM backend samples with too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from data_selection.command_line import UserError
from llamafactory_ext.lighteval_results import display_name, primary_metric, read_run
from llamafactory_ext.presets import DEFAULT_PROTOCOL, NOT_RESAMPLED, PRESETS, SUITES, resampled_name

STAGED_MODEL = "model"
STAGE_MARKER = ".staged_by_llamafactory_ext"
GENERIC_STEMS = {"eval", "test", "testset", "validation", "valid", "dev", "data", "problems"}


@dataclass
class EvalOptions:
    model: str = field(
        metadata={"help": "Model folder (e.g. saves/…, an exported model) or hub id to evaluate."}
    )
    out: str = field(
        metadata={"help": "Evaluation folder, e.g. evals/zpd; lighteval's results and details go here."}
    )
    suite: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated: reasoning (aime24, aime25, math_500, gpqa:diamond, "
            "lcb:codegeneration), general (mmlu_redux_2), all, local:FILE (JSONL with problem, answer; "
            "optional id, source), or any lighteval task name. Default: the preset's benchmarks, "
            "else reasoning."
        },
    )
    preset: str | None = field(
        default=None,
        metadata={"help": f"Protocol preset: {', '.join(PRESETS)}. Explicit options override its values."},
    )
    backend: str = field(
        default="auto",
        metadata={"help": "vllm | accelerate | auto (vllm when a GPU is visible, else accelerate on CPU)."},
    )
    samples: int | None = field(
        default=None,
        metadata={
            "help": "Samples per problem (default 1; pass8: 8). >1 reports pass@1 over them and pass@N."
        },
    )
    max_samples: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate only N problems per task (lighteval --max-samples: a fixed seed-42 subset)."
        },
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Cap on generated tokens. Local tasks use it as their generation size; for built-in "
            "benchmarks it goes to generation_parameters (honoured by vLLM; lighteval 0.13's accelerate "
            "backend uses each benchmark's own size)."
        },
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (protocol: 0.6)."}
    )
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling top_p (protocol: 0.95)."})
    max_model_length: int | None = field(default=None, metadata={"help": "Max context + generation (32768)."})
    dtype: str | None = field(
        default=None, metadata={"help": "Model dtype. Default bfloat16 on GPU, float32 on CPU."}
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System prompt, as in training. Default: the AceReason one; '' for none."},
    )
    batch_size: int | None = field(
        default=None,
        metadata={"help": "accelerate backend batch size (default 16 on CPU, automatic on GPU)."},
    )
    gpu_memory_utilization: float | None = field(
        default=None, metadata={"help": "vLLM (0.9; seed001: 0.95)."}
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallel size."})
    data_parallel_size: int = field(default=1, metadata={"help": "vLLM data parallel size."})
    seed: int = field(
        default=1234,
        metadata={"help": "Sampling seed: vLLM's, and torch's for the accelerate backend (the same run gives the "
                          "same scores)."},
    )
    task_name: str | None = field(
        default=None,
        metadata={"help": "Task name for a local:FILE suite (default: derived from the file name)."},
    )
    lighteval_bin: str | None = field(
        default=None,
        metadata={
            "help": "lighteval executable. Default: $LIGHTEVAL_BIN, else for vllm .venv-vllm/bin/lighteval "
            "when present, else the lighteval next to this Python."
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Write the configs and print the lighteval command without running it."},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Delete earlier results/details/cache in --out first. Without it, a folder keeps adding "
            "results of the same model (e.g. reasoning then general) and refuses another model's."
        },
    )


@dataclass
class LocalTask:
    name: str
    source: Path
    rows: int


@dataclass
class EvalPlan:
    """Everything resolved from the options: what ``summary.json`` records and the command is built from."""

    model: str
    model_path: str
    model_fingerprint: str
    out: str
    backend: str
    device: str
    preset: str | None
    tasks: list[str]  # lighteval task strings, "name|0"
    benchmarks: list[str]
    local: list[dict]
    resampled: list[dict]
    samples: int
    temperature: float
    top_p: float
    max_model_length: int
    max_new_tokens: int | None
    max_samples: int | None
    dtype: str
    system_prompt: str | None
    command: list[str] = field(default_factory=list)


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def read_local_problems(path: Path) -> list[dict]:
    """Validate a local problem file: one JSON object per line with non-empty ``problem`` and ``answer``."""
    if not path.is_file():
        raise UserError(f"local suite file {path} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}, line {lineno}: not valid JSON ({err})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}, line {lineno}: expected a JSON object with problem and answer")
            for key in ("problem", "answer"):
                value = row.get(key)
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise UserError(f"{path}, line {lineno}: missing or empty field {key!r}")
            rows.append(
                {
                    "id": str(row.get("id", f"row-{len(rows)}")),
                    "problem": str(row["problem"]),
                    "answer": str(row["answer"]).strip(),
                    "source": str(row.get("source", "")),
                }
            )
    if not rows:
        raise UserError(f"{path}: no problems in the file")
    return rows


def local_task_name(path: Path, override: str | None) -> str:
    if override:
        name = override
    else:
        stem = path.stem.lower()
        name = f"{path.parent.name}_{stem}" if stem in GENERIC_STEMS and path.parent.name else stem
    name = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not name:
        raise UserError(f"cannot derive a task name from {path}; pass --task_name")
    return name


def resolve_protocol(opts: EvalOptions):
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


def parse_suite(suite: str, task_name: str | None) -> tuple[list[str], list[tuple[str, Path]]]:
    """→ (built-in benchmark names in order, [(local task name, file)])."""
    builtin: list[str] = []
    local: list[tuple[str, Path]] = []
    for item in (s.strip() for s in suite.split(",")):
        if not item:
            continue
        if item in SUITES:
            builtin += [t for t in SUITES[item] if t not in builtin]
        elif item.startswith("local:"):
            path = Path(item[len("local:") :]).expanduser().resolve()
            local.append((local_task_name(path, task_name if not local else None), path))
        else:
            name = item.split("|")[0]
            if name not in builtin:
                builtin.append(name)
    if not builtin and not local:
        raise UserError(f"--suite {suite!r} names no benchmark")
    names = [n for n, _ in local]
    if len(set(names)) != len(names):
        raise UserError(f"two local suites share the task name {names}; rename a file")
    return builtin, local


def resolve_model(model: str) -> Path:
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path} is not a model folder (no config.json); for LoRA runs export a merged model first"
            )
        return path.resolve()
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(snapshot_download(model))
        except (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OSError,
            ValueError,
        ) as err:  # offline, unknown, gated…
            raise UserError(
                f"model {model!r} is not a local folder and could not be fetched from the hub: {err}"
            ) from None
    raise UserError(f"model {model!r}: no such folder (and not a hub id like org/name)")


def model_fingerprint(model_dir: Path) -> str:
    """Identity of the model's files (path, sizes, mtimes): a model retrained in place gets a new cache."""
    h = hashlib.sha1(str(model_dir).encode())
    for p in sorted(model_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def protocol_generation_config(model_dir: Path, temperature: float, top_p: float) -> dict:
    original = {}
    if (model_dir / "generation_config.json").is_file():
        original = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    config = {k: original[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in original}
    config.update(do_sample=temperature > 0, temperature=temperature, top_p=top_p, top_k=0)
    return config


def stage_model(model_dir: Path, out: Path, temperature: float, top_p: float) -> Path:
    """``out/model``: symlinks to the model's files plus the protocol's generation_config.json."""
    staged = out / STAGED_MODEL
    if model_dir == staged.resolve() or out.resolve() == model_dir or model_dir in out.resolve().parents:
        raise UserError(f"--out {out} must not be the model folder {model_dir} or inside it")
    if staged.is_symlink():
        staged.unlink()
    elif staged.exists():
        if not (staged / STAGE_MARKER).exists():
            raise UserError(f"{staged} exists and was not made by llamafactory-ext eval; move it away")
        shutil.rmtree(staged)  # symlinks only: rmtree unlinks them, never follows them
    staged.mkdir(parents=True)
    for entry in sorted(model_dir.iterdir()):
        if entry.name != "generation_config.json":
            (staged / entry.name).symlink_to(entry.resolve())
    config = protocol_generation_config(model_dir, temperature, top_p)
    (staged / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (staged / STAGE_MARKER).write_text(f"symlinks to {model_dir}\n", encoding="utf-8")
    return staged


def check_same_model(out: Path, plan: EvalPlan, overwrite: bool) -> None:
    """One folder = one model: results of several runs merge (compare reads them all), so never mix models."""
    produced = [out / "results", out / "details", out / "cache", out / "summary.json", out / "summary.md"]
    if overwrite:
        for p in produced:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        return
    if not any((out / "results").rglob("results_*.json")):
        return
    previous = None
    if (out / "summary.json").is_file():
        previous = json.loads((out / "summary.json").read_text(encoding="utf-8")).get("plan", {})
    if previous is None or previous.get("model_fingerprint") != plan.model_fingerprint:
        what = f"of {previous.get('model')!r}" if previous else "of an unknown model"
        raise UserError(
            f"{out} already holds results {what} (or of an earlier version of its files); results in "
            "one folder are merged, so use another --out, or --overwrite to delete them"
        )


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        generation["seed"] = opts.seed
        params.update(
            max_model_length=plan.max_model_length,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=opts.tensor_parallel_size,
            data_parallel_size=opts.data_parallel_size,
            seed=opts.seed,
        )
    else:
        params.update(device=plan.device, max_length=plan.max_model_length)
        batch_size = opts.batch_size or (16 if plan.device == "cpu" else None)
        if batch_size:
            params["batch_size"] = batch_size
    params["generation_parameters"] = generation
    return {"model_parameters": params}


def find_lighteval(backend: str, explicit: str | None) -> str:
    candidates = [explicit, os.environ.get("LIGHTEVAL_BIN")]
    if backend == "vllm":
        candidates.append(str(Path(".venv-vllm/bin/lighteval")))
    candidates += [str(Path(sys.executable).parent / "lighteval"), shutil.which("lighteval")]
    for c in candidates:
        if c and Path(c).is_file():
            return str(Path(c).absolute())
    if explicit:
        raise UserError(f"--lighteval_bin {explicit}: no such file")
    raise UserError("no lighteval executable found: install the eval extra (pip install -e '.[eval]')")


def seeded_launcher(lighteval_bin: str, out: Path, seed: int) -> list[str]:
    """The command prefix that runs lighteval with torch seeded (see ``seeded_lighteval.py``).

    Uses the interpreter next to the ``lighteval`` executable, so the vLLM venv's lighteval runs in that venv.
    A lighteval without a ``python`` beside it (a system install) is run as is, unseeded.
    """
    python = Path(lighteval_bin).with_name("python")
    if not python.is_file():
        return [lighteval_bin]
    shutil.copyfile(Path(__file__).with_name("seeded_lighteval.py"), out / "seeded_lighteval.py")
    return [str(python), "seeded_lighteval.py", "--seed", str(seed)]


def plan_eval(opts: EvalOptions) -> tuple[EvalPlan, dict]:
    preset, proto = resolve_protocol(opts)
    suite = opts.suite or ",".join(preset.tasks)
    builtin, local = parse_suite(suite, opts.task_name)
    if opts.backend not in ("auto", "vllm", "accelerate"):
        raise UserError(f"--backend {opts.backend!r}: choose vllm, accelerate or auto")
    gpu = _gpu_available()
    backend = opts.backend if opts.backend != "auto" else ("vllm" if gpu else "accelerate")
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
        device="cuda" if backend == "vllm" else device,
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
        write_atomic(data_dir / "test.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
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
    params = model_parameters(plan, opts, cache_dir, proto["gpu_memory_utilization"])
    write_atomic(out / "model_config.yaml", yaml.safe_dump(params, sort_keys=False, allow_unicode=True))

    command = [
        *seeded_launcher(find_lighteval(plan.backend, opts.lighteval_bin), out, opts.seed),
        plan.backend,
        "model_config.yaml",
        ",".join(plan.tasks),
    ]
    command += ["--output-dir", ".", "--save-details"]
    if spec["local"] or spec["resampled"]:
        # lighteval_tasks.py imports lighteval (tens of seconds): copy it by location, do not import it here
        shutil.copyfile(Path(__file__).with_name("lighteval_tasks.py"), out / "custom_tasks.py")
        write_atomic(out / "custom_tasks.json", json.dumps(spec, indent=2) + "\n")
        command += ["--custom-tasks", "custom_tasks.py"]
    if plan.max_samples:
        command += ["--max-samples", str(plan.max_samples)]
    plan.command = command
    return plan


def run_streaming(command: list[str], cwd: Path, log_path: Path) -> int:
    """Run with output shown live (progress bars included) and kept in ``log_path``."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        console = getattr(sys.stdout, "buffer", None)
        while chunk := proc.stdout.read1(65536):
            if console is not None:
                console.write(chunk)
                console.flush()
            else:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            log.write(chunk)
        return proc.wait()


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def newest_results(out: Path, since: float) -> Path:
    files = [p for p in (out / "results").rglob("results_*.json") if p.stat().st_mtime >= since - 1]
    if not files:
        raise UserError(
            f"lighteval finished but wrote no results_*.json under {out / 'results'}; "
            f"see {out / 'lighteval.log'}"
        )
    return max(files, key=lambda p: p.stat().st_mtime)


def summarize(plan: EvalPlan, out: Path, results_file: Path | None, wall: float | None) -> dict:
    """summary.json + summary.md: protocol, command, and the headline score of every benchmark so far."""
    summary = {
        "plan": asdict(plan),
        "results_file": None,
        "details_dir": None,
        "wall_seconds": wall,
        "scores": {},
    }
    if results_file is not None:
        summary["results_file"] = str(results_file.relative_to(out))
        details = out / "details" / STAGED_MODEL / results_file.stem.removeprefix("results_")
        summary["details_dir"] = str(details.relative_to(out)) if details.is_dir() else None
    if any((out / "results").rglob("results_*.json")):  # every run so far in this folder (same model)
        run = read_run(out)
        for bench, metrics in run.scores.items():
            metric = primary_metric(bench, metrics)
            summary["scores"][bench] = {
                "metric": metric,
                "value": metrics[metric].value,
                "stderr": metrics[metric].stderr,
                "metrics": {m: asdict(s) for m, s in metrics.items()},
            }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Evaluation of `{plan.model}`",
        "",
        f"backend {plan.backend} ({plan.device}, {plan.dtype}), preset {plan.preset or '-'}, samples/problem "
        f"{plan.samples}, temperature {plan.temperature}, top_p {plan.top_p}, "
        f"max length {plan.max_model_length}"
        + (f", max_new_tokens {plan.max_new_tokens}" if plan.max_new_tokens else "")
        + (f", {plan.max_samples} problems per task (partial)" if plan.max_samples else ""),
        "",
        "| Benchmark | Metric | Score (%) |",
        "|---|---|---|",
    ]
    for bench, s in summary["scores"].items():
        err = f" ± {100 * s['stderr']:.2f}" if s["stderr"] is not None else ""
        lines.append(f"| {display_name(bench)} | {s['metric']} | {100 * s['value']:.2f}{err} |")
    lines += [
        "",
        "Command (run in this folder):",
        "",
        "```",
        " ".join(_quote(c) for c in plan.command),
        "```",
        "",
    ]
    write_atomic(out / "summary.md", "\n".join(lines))
    return summary


def _quote(arg: str) -> str:
    return shlex.quote(arg)


def cli_eval(opts: EvalOptions) -> int:
    plan = prepare(opts)
    out = Path(opts.out)
    print(
        f"[eval] {plan.model} -> {out}  backend={plan.backend} tasks={','.join(plan.tasks)}", file=sys.stderr
    )
    print(f"[eval] (cd {out} && {' '.join(_quote(c) for c in plan.command)})", file=sys.stderr)
    if opts.dry_run:
        summarize(plan, out, None, None)
        return 0
    start = time.time()
    rc = run_streaming(plan.command, out, out / "lighteval.log")
    if rc != 0:
        hint = ""
        if plan.backend == "vllm":
            hint = (
                "\nThe vLLM backend needs lighteval's vllm extra in its own environment: "
                "python -m venv .venv-vllm && "
                ".venv-vllm/bin/pip install 'lighteval[vllm]==0.13.0' 'xxhash<4' math-verify; then pass "
                "--lighteval_bin .venv-vllm/bin/lighteval (or use --backend accelerate)."
            )
        raise UserError(
            f"lighteval exited with status {rc}; full log: {out / 'lighteval.log'}\n"
            f"{_tail(out / 'lighteval.log')}{hint}"
        )
    results_file = newest_results(out, start)
    summary = summarize(plan, out, results_file, time.time() - start)
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"[eval] lighteval results: {out / summary['results_file']}", file=sys.stderr)
    return 0
