"""The silent CPU fallback: NVIDIA GPUs on the machine, a torch wheel that cannot use them (CPU stand-ins)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from helpers import gpuless_torch_with_old_driver

from data_selection import device
from data_selection.command_line import UserError


@pytest.fixture
def old_driver_gpuless_torch(tmp_path, monkeypatch):
    return gpuless_torch_with_old_driver(monkeypatch, tmp_path)


def test_driver_version_is_read_from_proc(old_driver_gpuless_torch):
    drv = device.nvidia_driver()
    assert drv is not None and drv.version == "550.54.15" and drv.major == 550


def test_nvidia_smi_gives_version_and_names(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '535.104.05, NVIDIA H100 80GB HBM3'\necho '535.104.05, NVIDIA H100 80GB HBM3'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    drv = device.nvidia_driver(proc=tmp_path / "absent")
    assert drv.version == "535.104.05" and drv.gpus == ["NVIDIA H100 80GB HBM3"] * 2


def test_no_driver_means_no_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "PROC_NVIDIA", tmp_path / "absent")
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.nvidia_driver() is None and device.torch_gpu_problem() is None
    assert device.resolve_device("auto", 0) == "cpu"


@pytest.mark.parametrize(("major", "tag"), [(590, "cu130"), (580, "cu130"), (575, "cu128"), (550, "cu126"),
                                            (525, "cu126"), (470, None)])
def test_matching_wheel_for_each_driver(major, tag):
    assert device.matching_wheel(major) == tag


def test_auto_stops_with_driver_wheel_and_fix(old_driver_gpuless_torch):
    with pytest.raises(UserError) as err:
        device.resolve_device("auto", 0)
    msg = str(err.value)
    assert "550.54.15" in msg and "CUDA 13.0" in msg
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu126 make install PROFILE=gpu" in msg
    assert "constraints/gpu.txt" in msg and "--device cpu" in msg


def test_cpu_when_asked_for_still_works(old_driver_gpuless_torch):
    assert device.use_device("cpu", 0) == "cpu"


def test_score_stops_before_any_work(old_driver_gpuless_torch, tmp_path, monkeypatch):
    from data_selection.scoring import runner
    from data_selection.scoring.options import ScoreOptions

    def prepare(*_a, **_k):
        raise AssertionError("the pool was loaded before the device was checked")

    monkeypatch.setattr(runner, "prepare", prepare)
    with pytest.raises(UserError, match="--device auto: this machine has NVIDIA GPUs"):
        runner.run_score(ScoreOptions(model=str(tmp_path), dataset="d", out=str(tmp_path / "o")))


def test_eval_auto_backend_stops_and_accelerate_runs_on_cpu(old_driver_gpuless_torch, tmp_path):
    from llamafactory_ext.evaluation.options import EvalOptions
    from llamafactory_ext.evaluation.run import plan_eval

    with pytest.raises(UserError, match=r"--backend auto: .*550\.54\.15.*--backend accelerate"):
        plan_eval(EvalOptions(model="m", out=str(tmp_path / "e"), suite="general"))
    plan, _ = plan_eval(EvalOptions(model="m", out=str(tmp_path / "e"), suite="general", backend="accelerate"))
    assert plan.backend == "accelerate" and plan.device == "cpu"
