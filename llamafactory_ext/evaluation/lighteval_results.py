"""Read lighteval results files of any recent version into one shape: benchmark → metric → (value, stderr).

lighteval writes ``results/<model>/results_<timestamp>.json`` with ``results`` → ``{task key: {metric: value,
metric_stderr: value}}`` plus an ``all`` entry. What changes between versions is the spelling:

==========  ===========================  ================================================================
version     task keys                    metrics (AIME / MATH-500 / GPQA-Diamond / LCB / MMLU-Redux-2)
==========  ===========================  ================================================================
≤ 0.10      ``lighteval|aime24|0``       ``extractive_match``, ``math_pass@1:1_samples``,
                                         ``gpqa_pass@1:1_samples``, ``codegen_pass@1:16``, ``acc``
0.11, 0.12  ``lighteval|aime24|0``       ``pass@k_with_k``, ``pass@k_with_k_n``, ``gpqa_pass@k_with_k``,
                                         ``codegen_pass@1:16``, ``acc``
0.13        ``aime24|0``                 ``pass@k:k=1&n=1``, ``avg@n:n=1``, ``gpqa_pass@k:k=1``,
                                         ``codegen_pass@1:16``, ``acc`` + ``pass@k:k=1``
==========  ===========================  ================================================================

Subtask families (MMLU-Redux-2's 57 subjects) come with a ``<family>:_average|0`` entry in every version;
when it is missing the family mean is computed here the same way (mean of the subject scores and of their
stderrs). Our own n-sample variants (``aime24_n8``, see lighteval_tasks.py) count as their benchmark.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from data_selection.command_line import UserError

BENCHMARK_NAMES = {
    "aime24": "AIME 2024",
    "aime25": "AIME 2025",
    "math_500": "MATH-500",
    "gpqa:diamond": "GPQA-Diamond",
    "lcb:codegeneration": "LiveCodeBench",
    "mmlu_redux_2": "MMLU-Redux-2",
}
# Families reported as the mean over their subtasks; log-likelihood accuracy is their headline metric.
FAMILIES = {"mmlu_redux_2", "mmlu", "mmlu_pro", "bbh"}
PREFER_ACC = {"mmlu_redux_2", "mmlu"}
SUITE_PREFIXES = {
    "lighteval",
    "leaderboard",
    "extended",
    "custom",
    "community",
    "helm",
    "harness",
    "original",
}
STDERR_SUFFIX = "_stderr"


@dataclass
class Score:
    value: float
    stderr: float | None = None


@dataclass
class RunResults:
    """All results files of one evaluation folder, merged (a later file wins for the same task)."""

    source: Path
    files: list[Path]
    scores: dict[str, dict[str, Score]]  # benchmark -> metric -> score
    tasks: dict[str, str] = field(default_factory=dict)  # benchmark -> the task key it came from
    max_samples: int | None = None
    model_name: str | None = None  # as lighteval logged it ("model" for our staged runs)
    model: str | None = None  # the model as given to llamafactory-ext eval (its summary.json), if any


def display_name(benchmark: str) -> str:
    return BENCHMARK_NAMES.get(benchmark, benchmark)


def parse_task_key(key: str) -> str | None:
    """``lighteval|aime24|0``, ``aime24|0``, ``lighteval|aime24|0|0``, ``aime24:0`` → ``aime24``.

    The aggregate ``all`` entry → None."""
    if key == "all":
        return None
    if "|" in key:
        parts = [p for p in key.split("|") if not p.isdigit()]
        name = parts[-1] if parts else key
    else:  # the pipeline's in-memory dict writes "|" as ":"
        m = re.fullmatch(r"(.+?)(?::\d+)+", key)
        name = m.group(1) if m else key
        head, _, rest = name.partition(":")
        if head in SUITE_PREFIXES and rest:
            name = rest
    return name


def benchmark_of(task: str) -> str:
    """Task name → benchmark: strips our ``_n<N>`` resampling suffix from a known benchmark."""
    m = re.fullmatch(r"(.+)_n\d+", task)
    if m and (m.group(1) in BENCHMARK_NAMES):
        return m.group(1)
    return task


def _scores_of(path: Path, key: str, entry) -> dict[str, Score]:
    if not isinstance(entry, dict):
        raise UserError(
            f"{path}: results[{key!r}] is not an object of metric values (got {type(entry).__name__})"
        )
    scores: dict[str, Score] = {}
    for metric, value in entry.items():
        if metric.endswith(STDERR_SUFFIX):
            continue
        if value is None:
            value = math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{path}: results[{key!r}][{metric!r}] is not a number: {value!r}")
        stderr = entry.get(metric + STDERR_SUFFIX)
        stderr = float(stderr) if isinstance(stderr, (int, float)) and not isinstance(stderr, bool) else None
        scores[metric] = Score(float(value), stderr)
    if not scores:
        raise UserError(f"{path}: results[{key!r}] has no metric values (keys: {sorted(entry)})")
    return scores


def read_results_file(path: Path) -> tuple[dict, dict[str, dict[str, Score]]]:
    """One results file → (its config_general, task name → metric → score). Clear errors for broken files."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}: not valid JSON ({err}); is the evaluation still running or was it cut off?"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise UserError(
            f"{path}: no 'results' object; a lighteval results file has "
            '{"results": {"<task>|<fewshot>": {"<metric>": value, "<metric>_stderr": value}}}'
        )
    tasks: dict[str, dict[str, Score]] = {}
    for key, entry in data["results"].items():
        name = parse_task_key(key)
        if name is not None:
            tasks[name] = _scores_of(path, key, entry)
    if not tasks:
        raise UserError(f"{path}: 'results' has no per-task entries (only {sorted(data['results'])})")
    config = data.get("config_general") if isinstance(data.get("config_general"), dict) else {}
    return config, tasks


def _family_mean(members: list[dict[str, Score]]) -> dict[str, Score]:
    common = set.intersection(*(set(m) for m in members))
    out = {}
    for metric in sorted(common):
        values = [m[metric].value for m in members]
        stderrs = [m[metric].stderr for m in members]
        stderr = sum(stderrs) / len(stderrs) if all(s is not None for s in stderrs) else None
        out[metric] = Score(sum(values) / len(values), stderr)
    return out


def collapse_families(
    tasks: dict[str, dict[str, Score]],
) -> tuple[dict[str, dict[str, Score]], dict[str, str]]:
    """Task → benchmark: family averages replace their subtasks; resampled variants join their benchmark."""
    averaged = {name.split(":")[0] for name in tasks if name.endswith(":_average")}
    members: dict[str, list[dict[str, Score]]] = {}
    out: dict[str, dict[str, Score]] = {}
    origin: dict[str, str] = {}
    for name, scores in tasks.items():
        family, _, sub = name.partition(":")
        if sub == "_average":
            out[family], origin[family] = scores, name
        elif sub and family in averaged:
            continue
        elif sub and family in FAMILIES:
            members.setdefault(family, []).append(scores)
        else:
            bench = benchmark_of(name)
            out[bench], origin[bench] = scores, name
    for family, group in members.items():
        out[family], origin[family] = _family_mean(group), f"{family}:* (mean of {len(group)} subtasks)"
    return out, origin


def results_files(source: Path) -> list[Path]:
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise UserError(f"{source}: no such evaluation folder or results file")
    files = sorted(source.rglob("results_*.json"), key=lambda p: (p.name, str(p)))
    if not files:
        raise UserError(
            f"{source}: no lighteval results_*.json under it (lighteval writes "
            "results/<model>/results_<time>.json; did the evaluation finish?)"
        )
    return files


def read_run(source: Path) -> RunResults:
    """Every results file of an evaluation folder, oldest first, later files overriding the same task."""
    files = results_files(source)
    merged: dict[str, dict[str, Score]] = {}
    max_samples, model_name = None, None
    for path in files:
        config, tasks = read_results_file(path)
        merged.update(tasks)
        if config.get("max_samples"):
            max_samples = int(config["max_samples"])
        model_name = config.get("model_name") or model_name
    scores, origin = collapse_families(merged)
    model = None
    summary = Path(source) / "summary.json"
    if summary.is_file():
        try:
            model = json.loads(summary.read_text(encoding="utf-8"))["plan"]["model"]
        except (json.JSONDecodeError, KeyError, TypeError):
            model = None  # our own side file: never a reason to refuse lighteval's results
    return RunResults(Path(source), files, scores, origin, max_samples, model_name, model)


def _pass_params(metric: str) -> tuple[int, int] | None:
    """(k, n) for pass@k-style metric names of any version; n = 0 when the name does not say."""
    m = re.search(r"pass@k:(.*)$", metric)
    if m:
        params = dict(p.split("=", 1) for p in m.group(1).split("&") if "=" in p)
        return int(params.get("k", 0) or 0), int(params.get("n", 0) or 0)
    if re.search(r"pass@k_with_k", metric):  # 0.11/0.12 spell parameter names only; seed runs used k=1
        return 1, 0
    m = re.search(r"pass@1(?::(\d+))?(?:_samples)?$", metric) or re.search(r"pass@1:(\d+)_samples", metric)
    if m:
        return 1, int(m.group(1) or 0)
    return None


def metric_kind(metric: str) -> str:
    """What a metric measures, across version spellings: ``pass@k:k=1&n=1``, ``pass@k_with_k`` and
    ``math_pass@1:1_samples`` are all "pass@1"; ``pass@k:k=1&n=8`` is "pass@1 (n=8)"; others: themselves."""
    params = _pass_params(metric)
    if params and params[0] == 1:
        return "pass@1" + (f" (n={params[1]})" if params[1] > 1 and "codegen" not in metric else "")
    return metric


def primary_metric(benchmark: str, metrics: dict[str, Score]) -> str:
    """The headline metric: acc for MMLU-style families, else pass@1 (most samples), extractive_match, acc…"""
    names = list(metrics)
    if benchmark in PREFER_ACC and "acc" in metrics:
        return "acc"
    pass1 = [(params[1], name) for name in names if (params := _pass_params(name)) and params[0] == 1]
    if pass1:
        return max(pass1)[1]
    for preferred in ("extractive_match", "acc", "em", "exact_match"):
        if preferred in metrics:
            return preferred
    avg = sorted(name for name in names if name.startswith("avg@n"))
    return avg[-1] if avg else min(names)
