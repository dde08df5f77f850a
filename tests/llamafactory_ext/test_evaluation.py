"""``llamafactory-ext eval``: planning, staging and configs (fast), lighteval's own task/metric objects
built from our custom-tasks file (in-process lighteval), and real lighteval runs on a local task."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, write_jsonl

from data_selection.command_line import UserError
from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.evaluation.plan import prepare
from llamafactory_ext.evaluation.presets import TRAINING_SYSTEM_PROMPT
from llamafactory_ext.evaluation.suites import read_local_problems
from llamafactory_ext.options.eval import EvalOptions

FAKE_VLLM = REPO_ROOT / "tests" / "fake_vllm.py"  # only needs to exist: these tests start no server

PROBLEMS = [
    {"id": "p0", "problem": "What is 17 + 25?", "answer": "42", "source": "arithmetic"},
    {"id": "p1", "problem": "What is 6 * 7?", "answer": 42, "source": "arithmetic"},
    {"id": "p2", "problem": "Solve for x: 2x + 3 = 11.", "answer": "4", "source": "linear_equation"},
    {"id": "p3", "problem": "What is 100 - 58?", "answer": "42", "source": "arithmetic"},
    {"id": "p4", "problem": "What is 9 + 10?", "answer": "19", "source": "arithmetic"},
]


@pytest.fixture
def problems_file(tmp_path) -> Path:
    return write_jsonl(PROBLEMS, tmp_path / "demo" / "eval.jsonl")


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ---------------------------------------------------------------------------------------------- local files
def test_local_problems_are_validated_with_file_and_line(tmp_path):
    ok = read_local_problems(write_jsonl(PROBLEMS, tmp_path / "ok.jsonl"))
    assert [r["answer"] for r in ok] == ["42", "42", "4", "42", "19"]  # numbers become strings
    bad = write_jsonl([PROBLEMS[0], {"id": "x", "problem": "What is 1 + 1?"}], tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match=r"bad\.jsonl, line 2: missing or empty field 'answer'"):
        read_local_problems(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": \n')
    with pytest.raises(UserError, match=r"broken\.jsonl, line 2: not valid JSON"):
        read_local_problems(broken)
    with pytest.raises(UserError, match="does not exist"):
        read_local_problems(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------------ planning and staging
def test_prepare_stages_the_model_without_touching_it(tiny_qwen_dir, problems_file, tmp_path):
    before = snapshot(tiny_qwen_dir)
    out = tmp_path / "evals" / "tiny"
    opts = EvalOptions(
        model=str(tiny_qwen_dir),
        out=str(out),
        suite=f"local:{problems_file}",
        max_new_tokens=32,
        max_samples=3,
    )
    plan = prepare(opts)
    assert snapshot(tiny_qwen_dir) == before
    staged = out / "model"
    for name in before:
        if name != "generation_config.json":
            assert (staged / name).is_symlink() and (staged / name).resolve() == (
                tiny_qwen_dir / name
            ).resolve()
    gen = json.loads((staged / "generation_config.json").read_text())
    # lighteval 0.13's transformers backend never sets do_sample: the staged config carries the protocol
    assert (
        gen["do_sample"] is True and gen["temperature"] == 0.6 and gen["top_p"] == 0.95 and gen["top_k"] == 0
    )
    assert (
        gen["eos_token_id"]
        == json.loads((tiny_qwen_dir / "generation_config.json").read_text())["eos_token_id"]
    )

    params = yaml.safe_load((out / "model_config.yaml").read_text())["model_parameters"]
    assert params["model_name"] == "model" and params["cache_dir"].startswith("cache/")
    assert params["device"] == "cpu" and params["dtype"] == "float32" and params["batch_size"] == 16
    assert params["system_prompt"] == TRAINING_SYSTEM_PROMPT
    assert params["generation_parameters"] == {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32}
    assert plan.backend == "accelerate" and plan.tasks == ["demo_eval|0"]  # data/demo/eval.jsonl -> demo_eval
    spec = json.loads((out / "custom_tasks.json").read_text())
    assert spec["local"][0]["name"] == "demo_eval" and spec["local"][0]["max_new_tokens"] == 32
    staged_rows = [
        json.loads(x) for x in (out / "data" / "demo_eval" / "test.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in staged_rows] == ["p0", "p1", "p2", "p3", "p4"]
    assert (out / "custom_tasks.py").read_text() == (
        REPO_ROOT / "llamafactory_ext" / "evaluation" / "lighteval_tasks.py"
    ).read_text()
    cmd = plan.command
    # lighteval's CLI through the launcher that seeds torch, with the interpreter of lighteval's own environment
    assert Path(cmd[0]).name.startswith("python") and cmd[1:6] == ["seeded_lighteval.py", "--seed", "1234", "--heartbeat", "30"]
    assert (out / "seeded_lighteval.py").is_file()
    assert cmd[6:9] == ["accelerate", "model_config.yaml", "demo_eval|0"]
    assert (
        cmd[cmd.index("--custom-tasks") + 1] == "custom_tasks.py"
        and cmd[cmd.index("--max-samples") + 1] == "3"
    )

    # re-staging into the same folder works; a foreign folder named model/ is refused
    prepare(opts)
    foreign = tmp_path / "evals" / "other"
    (foreign / "model").mkdir(parents=True)
    (foreign / "model" / "weights.bin").write_text("mine")
    with pytest.raises(UserError, match="was not made by llamafactory-ext"):
        prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(foreign), suite=f"local:{problems_file}"))
    with pytest.raises(UserError, match="must not be the model folder"):
        prepare(
            EvalOptions(
                model=str(tiny_qwen_dir), out=str(tiny_qwen_dir / "evals"), suite=f"local:{problems_file}"
            )
        )


def test_one_folder_holds_one_model(tiny_qwen_dir, problems_file, tmp_path):
    """Results in a folder are merged by compare, so a second model must not land in the same folder."""
    out = tmp_path / "evals" / "x"
    prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(out), suite=f"local:{problems_file}", dry_run=True))
    from llamafactory_ext.evaluation.run import summarize

    plan = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(out), suite=f"local:{problems_file}"))
    summarize(plan, out, None, None)
    results = out / "results" / "model" / "results_2026-01-01T00-00-00.json"
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"results": {"demo_eval|0": {"extractive_match": 0.5}}}))
    prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(out), suite="general"))  # same model: fine

    other = tmp_path / "other_model"
    shutil.copytree(tiny_qwen_dir, other)
    with pytest.raises(UserError, match="already holds results of .*tiny_qwen"):
        prepare(EvalOptions(model=str(other), out=str(out), suite=f"local:{problems_file}"))
    prepare(EvalOptions(model=str(other), out=str(out), suite=f"local:{problems_file}", overwrite=True))
    assert (
        not results.exists()
        and (out / "model" / "config.json").resolve() == (other / "config.json").resolve()
    )


def test_presets_and_vllm_command(tiny_qwen_dir, tmp_path):
    out = tmp_path / "sft-training-llm"
    plan = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(out), preset="sft-training-llm", backend="vllm",
                               vllm_bin=str(FAKE_VLLM)))
    assert plan.tasks == [
        "aime24|0",
        "aime25|0",
        "math_500|0",
        "gpqa:diamond|0",
        "lcb:codegeneration|0",
        "mmlu_redux_2|0",
    ]
    assert plan.command[6:8] == ["endpoint", "litellm"] and "--custom-tasks" not in plan.command
    params = yaml.safe_load((out / "model_config.yaml").read_text())["model_parameters"]
    assert params["max_model_length"] == 32768 and plan.dtype == "bfloat16"
    assert "--gpu-memory-utilization" in plan.server_command
    assert plan.server_command[plan.server_command.index("--gpu-memory-utilization") + 1] == "0.95"
    assert params["generation_parameters"] == {"temperature": 0.6, "top_p": 0.95, "seed": 1234}

    out8 = tmp_path / "pass8"
    plan8 = prepare(
        EvalOptions(
            model=str(tiny_qwen_dir), out=str(out8), preset="pass8", system_prompt="Think.", top_p=0.9
        )
    )
    assert plan8.tasks == ["aime24_n8|0", "aime25_n8|0", "math_500_n8|0", "gpqa:diamond_n8|0"]
    assert plan8.samples == 8 and plan8.top_p == 0.9  # explicit options win over the preset
    assert json.loads((out8 / "custom_tasks.json").read_text())["resampled"][0] == {
        "base": "aime24",
        "samples": 8,
    }
    assert (
        yaml.safe_load((out8 / "model_config.yaml").read_text())["model_parameters"]["system_prompt"]
        == "Think."
    )

    with pytest.raises(UserError, match="unknown preset"):
        prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(tmp_path / "x"), preset="seed999"))
    with pytest.raises(UserError, match="needs sampling"):
        prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(tmp_path / "x"), samples=4, temperature=0.0))
    with pytest.raises(UserError, match="no such folder"):
        prepare(EvalOptions(model=str(tmp_path / "nope"), out=str(tmp_path / "x")))


# ------------------------------------------------------------- lighteval in-process: configs, tasks, metrics
def test_generated_configs_and_tasks_load_in_lighteval(tiny_qwen_dir, problems_file, tmp_path):
    """The files we write are accepted by lighteval 0.13's classes; custom tasks score with math-verify."""
    from lighteval.models.endpoints.litellm_model import LiteLLMModelConfig
    from lighteval.models.model_output import ModelResponse
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.tasks.registry import Registry

    out = tmp_path / "ev"
    old_name = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(out), backend="vllm", preset="seed000",
                                   vllm_bin=str(FAKE_VLLM)))
    assert old_name.preset == "loss-band-report"  # the earlier release's name still works
    LiteLLMModelConfig.from_path(str(out / "model_config.yaml"))  # extra="forbid": a wrong key would raise
    plan = prepare(
        EvalOptions(
            model=str(tiny_qwen_dir),
            out=str(out),
            suite=f"aime24,gpqa:diamond,mmlu_redux_2,local:{problems_file}",
            samples=4,
            max_new_tokens=64,
        )
    )
    TransformersModelConfig.from_path(str(out / "model_config.yaml"))

    registry = Registry(tasks=",".join(plan.tasks), custom_tasks=str(out / "custom_tasks.py"))
    configs = {name: cfgs[0] for name, cfgs in registry.task_to_configs.items()}
    metric_names = {name: [m.metric_name for m in c.metrics] for name, c in configs.items()}
    # n is in the metric names, unlike lighteval's own aime24@n=4 syntax
    assert metric_names["aime24_n4"] == ["pass@k:k=1&n=4", "pass@k:k=4&n=4", "avg@n:n=4"]
    assert metric_names["gpqa:diamond_n4"] == ["gpqa_pass@k:k=1&n=4", "gpqa_pass@k:k=4&n=4"]
    assert metric_names["mmlu_redux_2:anatomy"] == ["acc", "pass@k:k=1"]  # log-likelihood: not resampled
    assert metric_names["demo_eval"] == ["pass@k:k=1&n=4", "pass@k:k=4&n=4"]
    assert configs["aime24_n4"].hf_repo == "HuggingFaceH4/aime_2024"
    assert configs["demo_eval"].generation_size == 64

    local = configs["demo_eval"]
    doc = local.prompt_function(PROBLEMS[0], "demo_eval|0")
    assert doc.query == "What is 17 + 25?" and doc.get_golds() == ["42"] and doc.specific["id"] == "p0"
    texts = ["17 + 25 = 42, so \\boxed{42}", "The answer is \\boxed{41}.", "It is 42.", "I do not know"]
    scores = {}
    for metric in local.metrics:
        scores.update(metric.compute_sample(doc=doc, model_response=ModelResponse(text=texts)))
    assert scores["pass@k:k=1&n=4"] == pytest.approx(0.5)  # 2 of 4 samples right (boxed and bare 42)
    assert scores["pass@k:k=4&n=4"] == 1.0

    single = Registry(
        tasks=plan.tasks[-1], custom_tasks=str(_one_sample_tasks(tiny_qwen_dir, problems_file, tmp_path))
    )
    metric = next(iter(single.task_to_configs.values()))[0].metrics[0]
    assert metric.metric_name == "extractive_match"
    assert metric.compute_sample(doc=doc, model_response=ModelResponse(text=["so \\boxed{42}"])) == {
        "extractive_match": 1.0
    }
    assert (
        metric.compute_sample(doc=doc, model_response=ModelResponse(text=["\\boxed{24}"]))["extractive_match"]
        == 0
    )


def _one_sample_tasks(model: Path, problems: Path, tmp_path: Path) -> Path:
    out = tmp_path / "one"
    prepare(EvalOptions(model=str(model), out=str(out), suite=f"local:{problems}", dry_run=True))
    return out / "custom_tasks.py"


# ----------------------------------------------------------------------- real lighteval runs (subprocess)
def _run_eval(model: Path, problems: Path, out: Path, *extra: str) -> dict:
    rc = lfx_main(["eval", "--model", str(model), "--suite", f"local:{problems}", "--out", str(out), *extra])
    assert rc == 0, (out / "lighteval.log").read_text()[-3000:] if (out / "lighteval.log").exists() else rc
    return json.loads((out / "summary.json").read_text())


def _check_outputs(out: Path, summary: dict, n_problems: int, samples: int) -> list[dict]:
    import pandas as pd

    results_file = out / summary["results_file"]
    results = json.loads(results_file.read_text())
    metric = "extractive_match" if samples == 1 else f"pass@k:k=1&n={samples}"
    assert (
        metric in results["results"]["demo_eval|0"]
        and f"{metric}_stderr" in results["results"]["demo_eval|0"]
    )
    assert results["config_general"]["model_config"]["system_prompt"] == TRAINING_SYSTEM_PROMPT
    assert summary["scores"]["demo_eval"]["metric"] == metric
    details = sorted((out / summary["details_dir"]).glob("details_demo_eval*.parquet"))
    assert len(details) == 1
    rows = pd.read_parquet(details[0]).to_dict("records")
    assert len(rows) == n_problems
    for row in rows:
        texts = list(row["model_response"]["text"])
        assert len(texts) == samples and all(isinstance(t, str) for t in texts)
        assert row["doc"]["specific"]["id"] in {p["id"] for p in PROBLEMS}
        assert metric in row["metric"]
    return rows


def test_eval_local_task_with_real_lighteval(tiny_qwen_dir, problems_file, tmp_path):
    """Tiny random model through lighteval accelerate on CPU: it scores ~0; the files must all be there."""
    before = snapshot(tiny_qwen_dir)
    out = tmp_path / "evals" / "tiny"
    summary = _run_eval(tiny_qwen_dir, problems_file, out, "--max_samples", "3", "--max_new_tokens", "8")
    rows = _check_outputs(out, summary, n_problems=3, samples=1)
    assert all(len(r["model_response"]["output_tokens"][0]) <= 8 for r in rows)
    assert snapshot(tiny_qwen_dir) == before  # lighteval's cache went to out/cache, not into the model
    assert any((out / "cache").rglob("*.parquet"))
    assert "demo_eval" in (out / "summary.md").read_text() and (out / "lighteval.log").stat().st_size > 0

    # the folder is what compare reads
    assert lfx_main(["compare", str(out), str(out), "--names", "a,b", "--out", str(tmp_path / "cmp")]) == 0
    assert "| demo_eval | `extractive_match` |" in (tmp_path / "cmp" / "report.md").read_text()


@pytest.mark.slow
def test_eval_smollm2_local_task_with_samples(smollm2_dir, problems_file, tmp_path):
    """The embedded real model, 2 samples per problem: pass@1 over samples, real (non-empty) answers."""
    out = tmp_path / "evals" / "smol"
    summary = _run_eval(
        smollm2_dir, problems_file, out, "--max_samples", "3", "--max_new_tokens", "48", "--samples", "2"
    )
    rows = _check_outputs(out, summary, n_problems=3, samples=2)
    assert all(t.strip() for r in rows for t in r["model_response"]["text"])
    assert 0.0 <= summary["scores"]["demo_eval"]["value"] <= 1.0


def test_failed_lighteval_run_is_a_clear_error(tiny_qwen_dir, problems_file, tmp_path, capsys):
    fake = tmp_path / "lighteval"
    fake.write_text("#!/bin/sh\necho 'ValueError: Cannot find task demo_eval in task list' >&2\nexit 3\n")
    os.chmod(fake, 0o755)
    out = tmp_path / "evals" / "fail"
    rc = lfx_main(
        [
            "eval",
            "--model",
            str(tiny_qwen_dir),
            "--suite",
            f"local:{problems_file}",
            "--out",
            str(out),
            "--lighteval_bin",
            str(fake),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "lighteval exited with status 3" in err and "Cannot find task demo_eval" in err
    assert str(out / "lighteval.log") in err


def test_sampling_is_reproducible_by_seed(tiny_qwen_dir, problems_file, tmp_path):
    """Temperature 0.6 on the accelerate backend: the same --seed gives the same generations, another seed not."""

    def tokens(name: str, seed: str) -> list:
        out = tmp_path / name
        summary = _run_eval(tiny_qwen_dir, problems_file, out, "--max_samples", "2", "--max_new_tokens", "6",
                            "--seed", seed)
        rows = _check_outputs(out, summary, 2, 1)
        return [[list(map(int, seq)) for seq in r["model_response"]["output_tokens"]] for r in rows]

    first = tokens("a", "7")
    assert tokens("b", "7") == first
    assert tokens("c", "8") != first


# ------------------------------------------------------------- signs of life on a CPU
def test_heartbeat_reports_generation_progress(tiny_qwen_dir, monkeypatch, capsys):
    """One long generate() call prints progress lines (batch, tokens so far, the limit) while it runs."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, GenerationMixin

    monkeypatch.setattr(GenerationMixin, "generate", GenerationMixin.generate)  # restored after the test
    spec = importlib.util.spec_from_file_location(
        "seeded_lighteval", REPO_ROOT / "llamafactory_ext" / "evaluation" / "seeded_lighteval.py")
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    launcher.install_heartbeat(0.05)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=200, min_new_tokens=200,
                         do_sample=False)
    assert out.shape == (2, 203)  # the counting criterion never stops generation
    time.sleep(0.1)
    beats = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[eval heartbeat]")]
    assert beats and "batch 1 (2 prompts)" in beats[0] and "of up to 200 new tokens" in beats[0]


def test_cpu_run_says_how_long_answers_may_get(tiny_qwen_dir, problems_file, tmp_path):
    from llamafactory_ext.evaluation.plan import generation_length_notice

    uncapped = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(tmp_path / "a"),
                                   suite=f"local:{problems_file}", backend="accelerate"))
    notice = generation_length_notice(uncapped)
    assert "32,768" in notice and "--max_new_tokens" in notice
    capped = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(tmp_path / "b"), suite=f"local:{problems_file}",
                                 backend="accelerate", max_new_tokens=64))
    assert generation_length_notice(capped) is None
    assert capped.command[4:6] == ["--heartbeat", "30"]
