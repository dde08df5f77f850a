"""`data-select verify --checker_python`: grading in another interpreter's worker subprocess, the checker as part of
the output's identity, and the errors for a bad interpreter or a worker that crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_jsonl

from data_selection.command_line import UserError
from data_selection.demo_data import DemoDataConfig, generate
from data_selection.options.verify import CHECKER_PYTHON_ENV, VerifyOptions
from data_selection.verify.checker_env import probe
from data_selection.verify.mathcheck import checker_label
from data_selection.verify.output import VERIFIED
from data_selection.verify.runner import run_verify
from data_selection.verify.worker import main as worker_main
from data_selection.verify.worker import serve as worker_serve
from llamafactory_ext.doctor.packages import check_verify_env
from llamafactory_ext.doctor.target import Target

OTHER = "math-verify 0.9.0 (latex2sympy2_extended 1.11.0)"


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    rows, _ = generate(DemoDataConfig(pool_size=24, eval_size=0, seed=5, contested_rate=0.5))
    return write_jsonl(rows, tmp_path_factory.mktemp("checker") / "pool.jsonl")


@pytest.fixture(scope="module")
def in_process(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process") / "v"
    run_verify(VerifyOptions(dataset=str(pool), out=str(out), workers=1, shard_rows=12))
    return out


def _verify(pool, out, **kw):
    return run_verify(VerifyOptions(dataset=str(pool), out=str(out), **{"workers": 1, "shard_rows": 12, **kw}))


def _meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_worker_subprocess_grades_as_the_main_process_does(pool, in_process, tmp_path):
    s = _verify(pool, tmp_path / "sub", checker_python=sys.executable, workers=2)
    assert s["merged"] and s["checker"] == checker_label() and s["shards_total"] >= 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sub" / VERIFIED), pd.read_parquet(in_process / VERIFIED))
    meta = _meta(tmp_path / "sub")
    assert meta["identity"]["checker"] == meta["verifier"]["checker"] == checker_label()
    assert meta["verifier"]["checker_python"] == meta["verifier"]["grading_python"] == str(Path(sys.executable).absolute())
    assert not list((tmp_path / "sub" / "shards").glob(".*in.json"))  # the input files are gone
    assert _meta(in_process)["verifier"]["checker_python"] is None


def test_the_environment_variable_names_the_checker_python(pool, in_process, tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKER_PYTHON_ENV, sys.executable)
    _verify(pool, tmp_path / "env")
    assert _meta(tmp_path / "env")["verifier"]["checker_python"] == str(Path(sys.executable).absolute())
    monkeypatch.setenv(CHECKER_PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(UserError, match=f"\\${CHECKER_PYTHON_ENV} .*no such file"):
        _verify(pool, tmp_path / "env2")


def test_a_folder_graded_by_another_checker_is_not_resumed(pool, in_process, tmp_path):
    out = tmp_path / "v"
    _verify(pool, out)
    meta = _meta(out)
    meta["identity"]["checker"] = meta["verifier"]["checker"] = OTHER  # as if .venv-verify had graded it
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "shards" / "shard-000000.parquet").unlink()
    with pytest.raises(UserError) as err:
        _verify(pool, out)
    assert str(out) in str(err.value) and OTHER in str(err.value) and checker_label() in str(err.value)
    with pytest.raises(UserError, match="graded by math-verify 0.9.0"):
        _verify(pool, out, checker_python=sys.executable)
    assert not (out / "shards" / "shard-000000.parquet").exists()  # nothing graded into the other checker's folder
    s = _verify(pool, out, overwrite=True)  # re-grades every shard
    assert s["shards_done_before"] == 0 and _meta(out)["identity"]["checker"] == checker_label()
    pd.testing.assert_frame_equal(pd.read_parquet(out / VERIFIED), pd.read_parquet(in_process / VERIFIED))


def test_folders_from_before_the_checker_was_in_the_identity(pool, in_process, tmp_path):
    out = tmp_path / "v"
    _verify(pool, out)
    meta = _meta(out)
    del meta["identity"]["checker"]  # written by verify before this change: the checker only in `verifier`
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "shards" / "shard-000001.parquet").unlink()
    assert _verify(pool, out)["shards_done_before"] >= 1 and _meta(out)["identity"]["checker"] == checker_label()
    del meta["verifier"]["checker"]  # no record at all: the main environment graded it
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="unrecorded checker"):
        _verify(pool, out, checker_python=sys.executable)
    assert _verify(pool, out)["merged"] and _meta(out)["identity"]["checker"] == checker_label()


def test_a_bad_checker_python_stops_before_any_work(pool, tmp_path):
    out = tmp_path / "v"
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    for python, says in [(tmp_path / "missing" / "python", "no such file"), (tmp_path, "a folder"),
                         (plain, "not executable")]:
        with pytest.raises(UserError, match=f"--checker_python {python}: {says}"):
            _verify(pool, out, checker_python=str(python))
    no_site = _script(tmp_path / "python-S", f'exec "{sys.executable}" -S "$@"')  # math_verify not importable
    with pytest.raises(UserError, match="--checker_python .*python-S: math_verify does not import"):
        _verify(pool, out, checker_python=no_site)
    with pytest.raises(UserError, match="--checker_python /bin/true: did not run"):
        _verify(pool, out, checker_python="/bin/true")
    assert not out.exists()


CRASHING_WORKER = """import os, sys
from data_selection.verify import worker
real = worker.verify_shard
def crashing(path, batch, settings):
    if "shard-000001" in path:
        print("killed", file=sys.stderr, flush=True)
        os._exit(9)
    return real(path, batch, settings)
worker.verify_shard = crashing
sys.exit(worker.main())
"""


def test_a_worker_that_crashes_names_its_shard_and_the_run_resumes(pool, in_process, tmp_path):
    out = tmp_path / "v"
    (tmp_path / "crashing.py").write_text(CRASHING_WORKER)
    crashing = _script(tmp_path / "crashing-python", f'case "$*" in *--serve*) exec "{sys.executable}" '
                                                     f'"{tmp_path / "crashing.py"}" --serve;; esac\n'
                                                     f'exec "{sys.executable}" "$@"')
    with pytest.raises(UserError, match=r"shard 1 \(shard-000001.parquet\) died \(exit 9\): killed"):
        _verify(pool, out, checker_python=crashing)
    shards = out / "shards"
    assert (shards / "shard-000000.parquet").exists() and not (shards / "shard-000001.parquet").exists()
    assert not list(shards.glob(".*in.json")) and not (out / VERIFIED).exists()
    s = _verify(pool, out, checker_python=sys.executable)  # same checker: resumes
    assert s["merged"] and s["shards_done_before"] >= 1
    pd.testing.assert_frame_equal(pd.read_parquet(out / VERIFIED), pd.read_parquet(in_process / VERIFIED))


def test_a_serving_worker_answers_every_request_and_survives_a_bad_one(in_process, tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"shard": 0, "checker": checker_label(), "settings": {"math_categories": ["math"]},
                                "batch": {"row": [0], "id": ["a"], "query": ["q"], "n_prompt_turns": [1],
                                          "response": ["<think>\nx\n</think>\n\\boxed{2}"],
                                          "reference": ["2"]}}))
    requests = [json.dumps({"in": str(tmp_path / "missing.json"), "out": str(tmp_path / "a.parquet")}),
                json.dumps({"in": str(good), "out": str(tmp_path / "b.parquet")})]
    worker_serve(line + "\n" for line in requests)
    answers = [json.loads(line.split(" ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    assert "FileNotFoundError" in answers[0]["error"] and not (tmp_path / "a.parquet").exists()
    assert answers[1]["rows"] == 1 and answers[1]["checker"] == checker_label()
    assert pd.read_parquet(tmp_path / "b.parquet")["verify_score"].tolist() == [1.0]


def test_the_worker_refuses_a_shard_recorded_for_another_checker(tmp_path, capsys):
    payload = {"shard": 3, "checker": OTHER, "settings": {"math_categories": ["math"]}, "batch": {}}
    (tmp_path / "in.json").write_text(json.dumps(payload))
    assert worker_main([str(tmp_path / "in.json"), str(tmp_path / "out.parquet")]) == 3
    assert "shard 3" in capsys.readouterr().err and not (tmp_path / "out.parquet").exists()
    assert worker_main(["only-one"]) == 2


def test_probe_reports_the_interpreters_checker():
    found = probe(sys.executable)
    assert found["checker"] == checker_label() and found["version"] and found["python"] == sys.executable


def test_doctor_reports_the_checker_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CHECKER_PYTHON_ENV, raising=False)
    c = check_verify_env(Target())
    assert c.status == "skip" and "make install-verify" in c.fix and checker_label() in c.detail
    venv_python = tmp_path / ".venv-verify" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    _script(venv_python, f'exec "{sys.executable}" "$@"')
    c = check_verify_env(Target())
    assert c.status == "ok" and f"{venv_python.absolute()}: {checker_label()}" in c.detail
    assert "--checker_python" in c.detail
    monkeypatch.setenv(CHECKER_PYTHON_ENV, _script(tmp_path / "python-S", f'exec "{sys.executable}" -S "$@"'))
    c = check_verify_env(Target())
    assert c.status == "warn" and "math_verify does not import" in c.detail and CHECKER_PYTHON_ENV in c.detail


# ------------------------------------------------------------------- a real newer checker (network, slow)

FIXES = [("50\\%", "50", 1.0), ("\\pm 2", "2, -2", 1.0), ("\\pm 2", "2", 0.0)]  # bench/mathverify_versions.py


@pytest.mark.slow
def test_math_verify_090_in_its_own_venv_fixes_what_052_gets_wrong(tmp_path):
    constraints = Path(__file__).resolve().parents[2] / "constraints" / "verify.txt"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    try:
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(constraints)], capture_output=True,
                             text=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    except subprocess.TimeoutExpired:
        pytest.skip("installing constraints/verify.txt took over 10 min (no package index?)")
    if pip.returncode != 0:
        pytest.skip(f"cannot install constraints/verify.txt here (no package index?): {pip.stderr[-300:]}")
    rows = [{"instruction": f"Problem {i}?", "output": f"<think>\nwork\n</think>\n\n\\boxed{{{ans}}}", "answer": ref}
            for i, (ref, ans, _) in enumerate(FIXES)]
    path = write_jsonl(rows, tmp_path / "pool.jsonl")
    s = _verify(path, tmp_path / "v", checker_python=str(python))
    assert s["checker"].startswith("math-verify 0.9.0")
    table = pd.read_parquet(tmp_path / "v" / VERIFIED)
    assert table["verify_score"].tolist() == [want for _, _, want in FIXES]
