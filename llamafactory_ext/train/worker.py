"""The worker half of ``llamafactory-ext train``: our extensions installed in this process around LLaMA-Factory's
``run_exp`` (the launcher half, :mod:`llamafactory_ext.train.launch`, decides whether torchrun runs this first)."""

from __future__ import annotations

from typing import Any

from llamafactory.train.tuner import run_exp

from llamafactory_ext.train import padding_free
from llamafactory_ext.train.callbacks import build_callbacks
from llamafactory_ext.train.trainer import installed


def run_worker(lf_args: dict[str, Any], ext) -> int:
    """Install our extensions in this process and run LLaMA-Factory's experiment."""
    callbacks = build_callbacks(ext.callbacks, ext)
    with installed(ext) as state, padding_free.installed(ext) as flat:
        run_exp(dict(lf_args), callbacks=callbacks)
    if state is not None and state["cls"].instances == 0:
        raise RuntimeError("LLaMA-Factory never built our trainer: the extension losses were not applied")
    if flat is not None and flat["models"] == 0:
        raise RuntimeError("LLaMA-Factory never loaded the model through us: padding_free was not applied")
    return 0
