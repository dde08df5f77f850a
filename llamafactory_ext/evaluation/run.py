"""``llamafactory-ext eval``: run lighteval with the seeds' protocol, everything kept in one folder.

LLaMA-Factory 0.9.5 has no working ``llamafactory-cli eval`` for generative reasoning benchmarks, so this
command drives lighteval 0.13's own CLI as a subprocess (``lighteval accelerate|vllm``): its results JSON and
per-sample details are the output, in ``evals/NAME/results/model/results_<time>.json`` and
``evals/NAME/details/model/<time>/details_<task>|0_<time>.parquet``; ``summary.json``/``summary.md`` beside
them name the model, protocol, command and headline scores. Everything the run needs is written into the
folder first (``model_config.yaml``, ``custom_tasks.py`` + ``.json``, ``data/``), so the printed command can
be re-run by hand.

``--backend vllm`` does not use lighteval's in-process vLLM backend (its extra pins ``vllm<0.10.2``, which
breaks with transformers 5): :mod:`llamafactory_ext.evaluation.vllm_server` starts a current ``vllm serve``
from its own environment (``make install-vllm``) on 127.0.0.1 and ``lighteval endpoint litellm`` queries it
over the OpenAI API (``--server_url`` uses a server that is already running).

The model is staged first (:mod:`llamafactory_ext.evaluation.staging`: lighteval never writes into your
model folder, and samples exactly as the protocol says). The plan and the staging are
:mod:`llamafactory_ext.evaluation.plan`; this module runs lighteval and writes the summary; the command's
entry is :mod:`llamafactory_ext.commands.eval`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from data_selection.atomic import write_json_atomic, write_text_atomic
from data_selection.command_line import UserError
from llamafactory_ext.evaluation.lighteval_results import display_name, primary_metric, read_run
from llamafactory_ext.evaluation.options import EvalPlan
from llamafactory_ext.evaluation.plan import plan_eval as plan_eval  # re-exported for test_device.py

# litellm fetches its model price list from the internet at import unless told to use its bundled copy
LIGHTEVAL_ENV = {"TOKENIZERS_PARALLELISM": "false", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def run_streaming(command: list[str], cwd: Path, log_path: Path) -> int:
    """Run with output shown live (progress bars included) and kept in ``log_path``."""
    env = dict(os.environ, **LIGHTEVAL_ENV)
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
        # results/<model name>/results_<time>.json -> details/<model name>/<time>/ ("openai/model" for vllm)
        model_dir = results_file.parent.relative_to(out / "results")
        details = out / "details" / model_dir / results_file.stem.removeprefix("results_")
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
    write_json_atomic(out / "summary.json", summary)
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
        "Command (run in this folder"
        + (", with the vLLM server below running; its log is vllm_server.log" if plan.server_command else "")
        + "):",
        "",
        "```",
        " ".join(_quote(c) for c in plan.command),
        "```",
        "",
    ]
    if plan.server_command:
        lines += ["vLLM server:", "", "```", " ".join(_quote(c) for c in plan.server_command), "```", ""]
    write_text_atomic(out / "summary.md", "\n".join(lines))
    return summary


def _quote(arg: str) -> str:
    return shlex.quote(arg)
