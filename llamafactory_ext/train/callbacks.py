"""Trainer callbacks that a recipe can switch on by name (``callbacks: [metrics_jsonl]``).

LLaMA-Factory's own ``trainer_log.jsonl`` keeps loss, learning rate and progress but drops the gradient norm
and throughput, the two numbers that say whether a long run is healthy. :class:`MetricsJsonlCallback` writes
every log event as one JSON line with ``step``, ``epoch``, ``elapsed_s``, ``loss``, ``lr``, ``grad_norm``,
``tokens_per_s`` (when the trainer counts tokens: ``include_num_input_tokens_seen: true``), the peak GPU
memory when there is a GPU, and every other number the trainer logged (eval losses, ``iw_weight_mean``...).
Only the main process writes; each line is flushed so ``tail -f`` works during training.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from llamafactory_ext.train.args import CALLBACK_NAMES

# Keys renamed for the JSONL file: HF's names on the left.
_RENAMED = {"learning_rate": "lr"}


class MetricsJsonlCallback(TrainerCallback):
    """Append one JSON line per ``on_log`` event to ``path`` (default ``<output_dir>/metrics.jsonl``)."""

    def __init__(self, path: str | None = None):
        self.path = path
        self._start = None
        self._last_time = None
        self._last_tokens = None

    def _resolve(self, args) -> str:
        return self.path or os.path.join(args.output_dir, "metrics.jsonl")

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last_time = time.time()
        self._last_tokens = state.num_input_tokens_seen or 0
        if state.is_world_process_zero:
            path = self._resolve(args)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if not args.resume_from_checkpoint and os.path.exists(path):
                os.remove(path)  # a fresh run starts a fresh file; a resumed run appends

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.time()
        record = {
            "step": state.global_step,
            "epoch": state.epoch,
            "elapsed_s": round(now - (self._start or now), 3),
        }
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                record[_RENAMED.get(key, key)] = value
        tokens = state.num_input_tokens_seen or 0
        if self._last_tokens is not None and tokens > self._last_tokens and now > self._last_time:
            record["tokens_per_s"] = round((tokens - self._last_tokens) / (now - self._last_time), 2)
            record["tokens_seen"] = tokens
        self._last_time, self._last_tokens = now, tokens
        peak = _peak_gpu_memory_gib()
        if peak is not None:
            record["peak_gpu_memory_gib"] = peak
        with open(self._resolve(args), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def _peak_gpu_memory_gib() -> float | None:
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


# name -> factory(extension arguments) -> callback
CALLBACKS: dict[str, Callable] = {
    "metrics_jsonl": lambda ext: MetricsJsonlCallback(ext.metrics_jsonl),
}


if tuple(CALLBACKS) != CALLBACK_NAMES:  # the launcher checks recipes against CALLBACK_NAMES
    raise AssertionError(f"train.args.CALLBACK_NAMES {CALLBACK_NAMES} != callbacks.CALLBACKS {tuple(CALLBACKS)}")


def build_callbacks(names: list[str], ext) -> list[TrainerCallback]:
    """Instantiate the callbacks named in a recipe (names are checked earlier, in ExtensionArguments)."""
    return [CALLBACKS[name](ext) for name in names]
