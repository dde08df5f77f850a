"""Helpers the tests share (imported as ``from helpers import …``; ``tests/`` is on pytest's pythonpath).

Fixtures live in ``conftest.py``; plain functions and constants live here, so a test module says where what
it uses comes from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, msg: str = "") -> None:
    """Equal up to float rounding, measured against the tensor's own magnitude.

    Two fp32 computations of the same sum in a different order (chunked vs direct, AVX2 vs AVX-512 kernels,
    1 vs 2 threads) differ by a few ulps *of the largest terms summed*, not of each result element: an element
    that cancels to nearly zero can differ by more than any fixed element-wise tolerance. So the bound is
    ``rel * max|expected|`` for every element.
    """
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    worst = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert actual.shape == expected.shape, f"{msg}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert worst <= rel * scale + 1e-30, f"{msg}: max |diff| {worst:.3e} > {rel:g} x max|expected| {scale:.3e}"
