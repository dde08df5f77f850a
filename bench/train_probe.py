"""Observer loaded into every Python process of a ``bench/train_mfu.py`` run; it never changes the training.

``train_mfu.py`` runs the real ``llamafactory-cli train`` / ``llamafactory-ext train`` (which start torchrun
workers of their own), so it cannot hand the trainer a callback. Instead it puts a generated
``sitecustomize.py`` (``import train_probe; train_probe.activate()``) first on ``PYTHONPATH``. When
``TRAIN_MFU_PROBE`` is set, :func:`activate` waits for ``transformers.trainer`` to be imported and then wraps
``Trainer.training_step`` (to note the real row lengths of each micro-batch before it is moved to the device:
``cu_seq_lens_q`` for padding-free batches, the attention mask's row sums for padded ones, and the number of
positions computed) and adds a callback that, at every optimizer step's end, synchronises the GPU and appends
one JSON line to ``$TRAIN_MFU_PROBE.rank<R>.jsonl``: time, rows, positions, and torch's peak allocated /
reserved GPU memory. ``TRAIN_MFU_SKIP_SAVE=1`` also makes ``Trainer.save_model`` a no-op: the bench runs with
``save_strategy: no``, and the final ZeRO-3 gather and write LLaMA-Factory does after training take a minute and
are not training.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time

TARGET = "transformers.trainer"


def activate() -> None:
    if not os.environ.get("TRAIN_MFU_PROBE"):
        return
    if TARGET in sys.modules:
        _install(sys.modules[TARGET])
    else:
        sys.meta_path.insert(0, _AfterImport())


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs :func:`_install` right after ``transformers.trainer`` has executed (once)."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_install(module):
            exec_module(module)
            _install(module)

        spec.loader.exec_module = exec_and_install
        return spec


def _rows_of(inputs) -> tuple[list[int], int]:
    ids = inputs["input_ids"]
    cu = inputs.get("cu_seq_lens_q")
    if cu is not None:
        bounds = [int(x) for x in cu.tolist()]
        return [b - a for a, b in zip(bounds[:-1], bounds[1:])], ids.numel()
    mask = inputs.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return [int(x) for x in (mask != 0).sum(dim=1).tolist()], ids.numel()
    return [ids.shape[-1]] * ids.shape[0], ids.numel()


def _install(module) -> None:
    import torch
    from transformers import TrainerCallback

    trainer_cls = module.Trainer
    path = f"{os.environ['TRAIN_MFU_PROBE']}.rank{os.environ.get('RANK', '0')}.jsonl"
    pending = {"rows": [], "positions": 0}

    def write(record: dict) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            write({"event": "begin", "t": time.perf_counter()})

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            record = {"event": "step", "step": state.global_step, "t": time.perf_counter(),
                      "rows": pending["rows"], "positions": pending["positions"]}  # fmt: skip
            if torch.cuda.is_available():
                record["max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
                record["max_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            write(record)
            pending["rows"], pending["positions"] = [], 0

    original_init, original_step = trainer_cls.__init__, trainer_cls.training_step

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(Probe())

    def training_step(self, model, inputs, *args, **kwargs):
        rows, positions = _rows_of(inputs)
        pending["rows"].extend(rows)
        pending["positions"] += positions
        return original_step(self, model, inputs, *args, **kwargs)

    trainer_cls.__init__, trainer_cls.training_step = __init__, training_step
    if os.environ.get("TRAIN_MFU_SKIP_SAVE") == "1":
        trainer_cls.save_model = lambda self, *args, **kwargs: None
