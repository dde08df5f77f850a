"""lighteval custom tasks for ``llamafactory-ext eval``: local problem sets, n-sample benchmark variants.

This file is handed to lighteval as ``--custom-tasks``: ``llamafactory-ext eval`` copies it verbatim into the
evaluation folder as ``custom_tasks.py`` and writes ``custom_tasks.json`` beside it; at import time the module
reads that JSON and builds ``TASKS_TABLE``. It imports nothing but lighteval and the standard library, so the
same file works in the separate environment that lighteval's vLLM extra needs, and a user can re-run the
exact evaluation with ``lighteval accelerate|vllm model_config.yaml TASKS --custom-tasks custom_tasks.py``.

Two kinds of task:

* ``local``: a folder holding ``test.jsonl`` with ``problem`` and ``answer`` (gold, e.g. "1406") per row. The
  prompt is the problem itself (the chat template and the system prompt come from the model config, as for
  training); the answer is scored with math-verify through lighteval's ``extractive_match`` (gold parsed as an
  expression, prediction: ``\\boxed{}`` first, then the last expression). With several samples per problem
  the metrics are ``pass@k:k=1&n=N`` (unbiased pass@1 = mean accuracy over the N samples) and
  ``pass@k:k=N&n=N``, scored with the same math-verify settings.
* ``resampled``: a built-in benchmark (``aime24``, ``math_500``, ``gpqa:diamond``…) generating N samples per
  problem, registered as ``<name>_n<N>``. lighteval 0.13's own ``aime24@n=8`` syntax changes N but keeps the
  registered metric label (``pass@k:k=1`` for 8 samples), so results from 1 and 8 samples would be
  indistinguishable; here every sampling metric is re-created with its real parameters in its name
  (``pass@k:k=1&n=8``, ``pass@k:k=8&n=8``, ``avg@n:n=8``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

from lighteval.metrics.metrics import Metrics
from lighteval.metrics.metrics_sample import AvgAtN, PassAtK
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc

SPEC_FILE_SUFFIX = ".json"


def local_prompt(line: dict, task_name: str | None = None) -> Doc:
    """One problem → one generative request; the gold answer is the only choice."""
    return Doc(
        task_name=task_name,
        query=str(line["problem"]),
        choices=[str(line["answer"])],
        gold_index=0,
        specific={"id": str(line.get("id", "")), "source": str(line.get("source", ""))},
    )


def _math_metric(k: int, n: int):
    """pass@k over n samples, each scored like ``extractive_match`` (math-verify, boxed answer first)."""
    scorer = copy.deepcopy(Metrics.expr_gold_metric.value.sample_level_fn)
    metric = copy.deepcopy(Metrics.pass_at_k_math.value)
    metric.sample_level_fn = PassAtK(strip_strings=True, sample_scoring_function=scorer)
    return metric(sample_params={"k": k, "n": n})


def local_task(
    name: str, data_dir: str, samples: int = 1, max_new_tokens: int | None = None
) -> LightevalTaskConfig:
    if samples <= 1:
        metrics = [Metrics.expr_gold_metric]
    else:
        metrics = [_math_metric(1, samples), _math_metric(samples, samples)]
    return LightevalTaskConfig(
        name=name,
        prompt_function=local_prompt,
        hf_repo=str(data_dir),
        hf_subset="default",
        hf_avail_splits=["test"],
        evaluation_splits=["test"],
        few_shots_split=None,
        few_shots_select=None,
        generation_size=max_new_tokens,
        metrics=metrics,
        stop_sequence=[],  # chat models stop at their end-of-turn token
        version=0,
    )


def _resample_metric(metric, samples: int) -> list:
    """The metric re-created for ``samples`` generations, its parameters spelled out in its name."""
    fn = metric.sample_level_fn
    base = copy.deepcopy(metric)
    base.metric_name = metric.metric_name.split(":")[0]  # "pass@k:k=1&n=1" -> "pass@k"
    if isinstance(fn, PassAtK):
        ks = sorted({1, samples})
        return [copy.deepcopy(base)(sample_params={"k": k, "n": samples}) for k in ks]
    if isinstance(fn, AvgAtN):
        return [base(sample_params={"n": samples})]
    return [metric]  # log-likelihood or fixed-sample metrics are unchanged


def resampled_task(
    base_name: str, samples: int, builtin: dict[str, LightevalTaskConfig]
) -> LightevalTaskConfig:
    if base_name not in builtin:
        raise ValueError(f"lighteval has no task {base_name!r} to resample")
    config = builtin[base_name]
    metrics = [m for metric in config.metrics for m in _resample_metric(metric, samples)]
    # spelled as presets.resampled_name (this file must not import our package: it runs in lighteval's env)
    return dataclasses.replace(config, name=f"{base_name}_n{samples}", metrics=metrics)


def build_tasks_table(spec: dict) -> list[LightevalTaskConfig]:
    """``spec``: {"local": [{name, data_dir, samples, max_new_tokens}], "resampled": [{base, samples}]}."""
    table = [local_task(**entry) for entry in spec.get("local", [])]
    if spec.get("resampled"):
        from lighteval.tasks.registry import Registry

        builtin = Registry.load_all_task_configs()
        table += [resampled_task(e["base"], e["samples"], builtin) for e in spec["resampled"]]
    return table


def _load_spec() -> dict:
    spec_path = Path(__file__).with_suffix(SPEC_FILE_SUFFIX)
    if spec_path.parent.name == "llamafactory_ext" or not spec_path.exists():
        return {}  # imported as part of the package, not as a generated custom-tasks file
    return json.loads(spec_path.read_text(encoding="utf-8"))


TASKS_TABLE = build_tasks_table(_load_spec())
