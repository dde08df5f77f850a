"""Multi-GPU correctness on a CPU machine: CUDA is emulated just enough for the logic under test.

Under ``torchrun`` rank N runs on ``cuda:N``. Two things must hold: every command that runs a model makes
``cuda:LOCAL_RANK`` the process's current device before any GPU work, and the scorer's asynchronous copy of a
batch's losses records its event on the stream of the losses' own GPU (``event.record()`` with no stream uses
the *current* device's, and waiting on GPU 0's stream does not wait for a copy on cuda:N).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from data_selection.device import use_device
from data_selection.options.prune_steps import PruneOptions
from data_selection.options.score import ScoreOptions
from data_selection.options.score_checkpoints import CheckpointScoreOptions
from data_selection.scoring import checkpoints, forward
from data_selection.scoring import runner as scoring_runner
from data_selection.transforms import runner as transforms_runner


class FakeCuda:
    """A CUDA runtime with several GPUs, a current device and one stream per device (as torch's defaults)."""

    def __init__(self, monkeypatch, n_gpus: int = 8):
        self.current = 0
        self.set_calls: list[torch.device] = []
        self.recorded_on: list[int] = []
        self.streams = {i: SimpleNamespace(device=torch.device("cuda", i)) for i in range(n_gpus)}
        fake = self

        class Event:
            def record(self, stream=None):  # torch/cuda/streams.py: stream=None -> current_stream()
                stream = stream if stream is not None else fake.current_stream()
                fake.recorded_on.append(stream.device.index)

            def synchronize(self):
                pass

        @contextlib.contextmanager
        def device(dev):
            old, fake.current = fake.current, torch.device(dev).index
            try:
                yield
            finally:
                fake.current = old

        def set_device(dev):
            dev = torch.device("cuda", dev) if isinstance(dev, int) else torch.device(dev)
            fake.set_calls.append(dev)
            fake.current = dev.index

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "current_stream", self.current_stream)
        monkeypatch.setattr(torch.cuda, "device", device)
        monkeypatch.setattr(torch.cuda, "set_device", set_device)
        real_empty = torch.empty
        # pinned host memory needs a CUDA runtime: a plain host tensor stands in for it
        monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: real_empty(*a, **k))

    def current_stream(self, device=None):
        index = self.current if device is None else torch.device(device).index
        return self.streams[self.current if index is None else index]


class LossesOnGpu:
    """The per-token losses of a batch as far as ``_copy_to_host`` looks at them: a tensor on ``cuda:index``."""

    def __init__(self, values: torch.Tensor, index: int):
        self.values, self.is_cuda, self.device = values, True, torch.device("cuda", index)
        self.shape, self.dtype = values.shape, values.dtype


def test_the_losses_copy_event_is_recorded_on_the_losses_own_gpu(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src, non_blocking=False: self.set_(src.values.clone()))
    losses = LossesOnGpu(torch.tensor([0.5, 1.5, 2.5]), index=3)  # rank 3, current device never set: GPU 0
    pending = forward._copy_to_host(["a", "b"], [1, 2], losses)
    assert cuda.recorded_on == [3], f"event recorded on the stream of GPU {cuda.recorded_on}, losses are on cuda:3"
    assert cuda.current == 0, "the current device is restored after the copy"
    out: dict = {}
    forward._collect(pending, out)
    assert out["a"].tolist() == [0.5] and out["b"].tolist() == [1.5, 2.5]


class Stop(Exception):
    """Raised by the first step after device selection: the test only looks at what happened before."""


def _stop(*_a, **_k):
    raise Stop


def _score(tmp_path, monkeypatch):
    monkeypatch.setattr(scoring_runner, "prepare", _stop)
    return lambda: scoring_runner.run_score(ScoreOptions(model=str(tmp_path), dataset="d", out=str(tmp_path / "o")))


def _prune(tmp_path, monkeypatch):
    monkeypatch.setattr(transforms_runner, "prepare", _stop)
    return lambda: transforms_runner.run_prune(PruneOptions(model="m", dataset="d", name="d_pir",
                                                            dataset_dir=str(tmp_path), out=str(tmp_path / "o")))


def _checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "read_manifest", _stop)
    return lambda: checkpoints.run_score_checkpoints(CheckpointScoreOptions(
        perturb=str(tmp_path / "p"), scores=str(tmp_path / "s"), out=str(tmp_path / "o")))


@pytest.mark.parametrize("command", [_score, _prune, _checkpoints], ids=["score", "prune-steps", "score-checkpoints"])
def test_every_model_command_sets_its_gpu_from_local_rank_before_any_work(command, tmp_path, monkeypatch):
    cuda = FakeCuda(monkeypatch)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    run = command(tmp_path, monkeypatch)
    with pytest.raises(Stop):
        run()
    assert cuda.set_calls == [torch.device("cuda", 3)]
    assert cuda.current == 3


def test_use_device_keeps_cpu_and_explicit_devices(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert use_device("cpu") == "cpu" and cuda.set_calls == []
    assert use_device("cuda") == "cuda:2" and cuda.set_calls == [torch.device("cuda", 2)]
    assert use_device("cuda:5") == "cuda:5" and cuda.set_calls[-1] == torch.device("cuda", 5)
