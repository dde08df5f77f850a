"""``eval --backend vllm``: ``vllm serve`` on 127.0.0.1 + lighteval's litellm backend, with a stand-in server.

tests/fake_vllm.py takes vLLM's command line and speaks the OpenAI API, so the start / health wait / teardown
logic, the lighteval config and a whole lighteval run against the endpoint are exercised on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, write_jsonl

from data_selection.command_line import UserError
from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.evaluation.plan import prepare
from llamafactory_ext.evaluation.vllm_server import find_vllm, free_port, running_server
from llamafactory_ext.options.eval import EvalOptions

FAKE = REPO_ROOT / "tests" / "fake_vllm.py"
PROBLEMS = [
    {"id": "p0", "problem": "What is 17 + 25?", "answer": "42"},
    {"id": "p1", "problem": "What is 6 * 7?", "answer": "42"},
    {"id": "p2", "problem": "Solve for x: 2x + 3 = 11.", "answer": "4"},
    {"id": "p3", "problem": "What is 100 - 58?", "answer": "42"},
    {"id": "p4", "problem": "What is 9 + 10?", "answer": "19"},
]


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> Path:
    """An executable ``vllm`` that runs the stand-in; its pid and requests land in tmp_path."""
    exe = tmp_path / "bin" / "vllm"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("FAKE_VLLM_PID", str(tmp_path / "server.pid"))
    monkeypatch.setenv("FAKE_VLLM_REQUESTS", str(tmp_path / "requests.jsonl"))
    return exe


def gone(pid_file: Path, within: float = 5.0) -> bool:
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def serve(exe: Path, port: int) -> list[str]:
    return [str(exe), "serve", "/nowhere/model", "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", "model", "--dtype", "bfloat16"]  # fmt: skip


def test_server_is_waited_for_and_stopped(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "slow")  # healthy only after 3 s: the wait must poll
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with running_server(serve(fake_vllm, port), url, "model", tmp_path / "server.log", timeout=60) as waited:
        assert waited >= 2.5
        import urllib.request

        with urllib.request.urlopen(f"{url}/models") as r:
            assert json.loads(r.read())["data"][0]["id"] == "model"
    assert gone(tmp_path / "server.pid")
    assert "serving /nowhere/model as model" in (tmp_path / "server.log").read_text()


def test_server_that_dies_at_start_is_reported_with_its_log(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "exit")
    port = free_port()
    start = time.monotonic()
    with pytest.raises(UserError, match=r"exited with status 1 before it was ready(.|\n)*told to fail"):
        with running_server(serve(fake_vllm, port), f"http://127.0.0.1:{port}/v1", "model",
                            tmp_path / "server.log", timeout=120):
            pytest.fail("the body must not run")
    assert time.monotonic() - start < 30  # it did not wait for the timeout


def test_server_that_never_gets_ready_times_out_and_is_killed(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    port = free_port()
    with pytest.raises(UserError, match=r"after 2 s \(--server_timeout\)"):
        with running_server(serve(fake_vllm, port), f"http://127.0.0.1:{port}/v1", "model",
                            tmp_path / "server.log", timeout=2):
            pytest.fail("the body must not run")
    assert gone(tmp_path / "server.pid")


def test_server_is_stopped_when_the_evaluation_fails(fake_vllm, tmp_path):
    port = free_port()
    with pytest.raises(RuntimeError, match="lighteval broke"):
        with running_server(serve(fake_vllm, port), f"http://127.0.0.1:{port}/v1", "model",
                            tmp_path / "server.log", timeout=60):
            raise RuntimeError("lighteval broke")
    assert gone(tmp_path / "server.pid")


def test_missing_vllm_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLLM_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="make install-vllm"):
        find_vllm(None)
    with pytest.raises(UserError, match="--vllm_bin /no/vllm: no such file"):
        find_vllm("/no/vllm")


def test_vllm_plan_is_a_litellm_config_and_a_serve_command(tiny_qwen_dir, fake_vllm, tmp_path, monkeypatch):
    """The model_config.yaml is accepted by lighteval 0.13's LiteLLMModelConfig (extra="forbid")."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm's import would try the internet
    from lighteval.models.endpoints.litellm_model import LiteLLMModelConfig

    out = tmp_path / "ev"
    plan = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(out), backend="vllm", preset="sft-training-llm",
                               vllm_bin=str(fake_vllm), port=18123, tensor_parallel_size=2))  # fmt: skip
    i = plan.command.index("endpoint")
    assert plan.command[i : i + 3] == ["endpoint", "litellm", "model_config.yaml"]
    assert plan.base_url == "http://127.0.0.1:18123/v1"
    cmd = plan.server_command
    assert cmd[:3] == [str(fake_vllm), "serve", str((out / "model").resolve())]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--port"] == "18123" and flags["--served-model-name"] == "model"
    assert flags["--max-model-len"] == "32768" and flags["--gpu-memory-utilization"] == "0.95"
    assert flags["--tensor-parallel-size"] == "2" and flags["--dtype"] == "bfloat16"
    config = LiteLLMModelConfig.from_path(str(out / "model_config.yaml"))
    assert config.model_name == "openai/model" and config.base_url == plan.base_url
    assert config.generation_parameters.temperature == 0.6 and config.generation_parameters.seed == 1234
    assert config.max_model_length == 32768
    params = yaml.safe_load((out / "model_config.yaml").read_text())["model_parameters"]
    assert "dtype" not in params and "gpu_memory_utilization" not in params  # the server's business

    external = prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(tmp_path / "ext"),
                                   server_url="http://10.0.0.5:8000/v1/"))  # fmt: skip
    assert external.backend == "vllm" and external.server_command == []  # auto + --server_url: no server started
    assert external.base_url == "http://10.0.0.5:8000/v1"
    with pytest.raises(UserError, match="--server_url is for --backend vllm"):
        prepare(EvalOptions(model=str(tiny_qwen_dir), out=str(tmp_path / "x"), backend="accelerate",
                            server_url="http://10.0.0.5:8000/v1"))  # fmt: skip


def test_eval_against_the_served_model_end_to_end(tiny_qwen_dir, fake_vllm, tmp_path, capsys, monkeypatch):
    """llamafactory-ext eval starts the server, lighteval scores its answers, the server is gone afterwards."""
    problems = write_jsonl(PROBLEMS, tmp_path / "eval.jsonl")
    out = tmp_path / "evals" / "served"
    argv = ["eval", "--model", str(tiny_qwen_dir), "--suite", f"local:{problems}", "--out", str(out),
            "--backend", "vllm", "--vllm_bin", str(fake_vllm), "--samples", "2", "--temperature", "0.7",
            "--max_new_tokens", "64", "--system_prompt", "Think step by step.", "--task_name", "demo"]  # fmt: skip
    rc = lfx_main(argv)
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    # the stand-in answers \boxed{42}: right on 3 of the 5 problems, checked by lighteval's math-verify metric
    assert summary["scores"]["demo"]["value"] == pytest.approx(0.6)
    assert summary["details_dir"] and (out / summary["details_dir"]).is_dir()
    requests = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
    chats = [r for r in requests if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 5 and all(r["model"] == "model" for r in chats)
    assert {r["n"] for r in chats} == {2} and {r["temperature"] for r in chats} == {0.7}
    assert {r["seed"] for r in chats} == {1234} and {r["top_p"] for r in chats} == {0.95}
    assert all(r["messages"][0] == {"role": "system", "content": "Think step by step."} for r in chats)
    assert gone(tmp_path / "server.pid")
    assert "serving" in (out / "vllm_server.log").read_text()
    md = (out / "summary.md").read_text()
    assert "vLLM server:" in md and "--served-model-name model" in md

    # another checkpoint served under the same name into the same folder: fresh answers, no stale cache
    monkeypatch.setenv("FAKE_VLLM_ANSWER", "The answer is \\boxed{4}.")
    assert lfx_main([*argv, "--overwrite"]) == 0  # the very same requests as the first run
    assert json.loads((out / "summary.json").read_text())["scores"]["demo"]["value"] == pytest.approx(0.2)


def test_fake_server_command_line_matches_vllm_serve():
    """The stand-in refuses what vllm serve would (a wrong subcommand): its parser is not a catch-all."""
    p = subprocess.run([sys.executable, str(FAKE), "run", "m"], capture_output=True, text=True)
    assert p.returncode == 2 and "invalid choice" in p.stderr
