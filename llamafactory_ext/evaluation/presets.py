"""Benchmark suites and the evaluation protocols of the studies we reproduce, as named presets.

Task names are lighteval 0.13's (``name|fewshot``; the 4-field ``lighteval|aime24|0|0`` of older versions is
gone). ``mmlu_redux_2`` is a superset: lighteval runs its 57 subjects and reports their mean as
``mmlu_redux_2:_average|0``.

Protocol of the loss-band report and the SFT-Training-LLM project (docs/methods.md §7): sampling with temperature 0.6 and top_p 0.95, max model length
32768, bf16, vLLM on GPUs, one sample per problem (AIME has 30 problems, so one sample moves a score by 3.33
points: report the stderr). ``pass8`` is the lower-variance variant: 8 samples per problem, reporting
pass@1 estimated from the 8 (mean accuracy) and pass@8, with the training system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

TRAINING_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

SUITES: dict[str, tuple[str, ...]] = {
    "reasoning": ("aime24", "aime25", "math_500", "gpqa:diamond", "lcb:codegeneration"),
    "general": ("mmlu_redux_2",),
}
SUITES["all"] = SUITES["reasoning"] + SUITES["general"]

# Benchmarks whose metrics do not depend on sampling (log-likelihood) or fix their own sample count
# (LiveCodeBench's codegen_pass@1:16): asking for N samples leaves them as they are.
NOT_RESAMPLED = {"mmlu_redux_2", "lcb:codegeneration"}


@dataclass(frozen=True)
class Protocol:
    """Generation settings of one evaluation; ``None`` in an option means "take the preset's value"."""

    tasks: tuple[str, ...] = SUITES["reasoning"]
    samples: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_model_length: int = 32768
    gpu_dtype: str = "bfloat16"
    gpu_memory_utilization: float = 0.9
    system_prompt: str = TRAINING_SYSTEM_PROMPT
    notes: str = ""


PRESETS: dict[str, Protocol] = {
    "loss-band-report": Protocol(
        tasks=("math_500", "aime24", "aime25", "gpqa:diamond", "mmlu_redux_2"),
        notes="The loss-band report's table: MATH-500, AIME 2024/2025, GPQA-Diamond, MMLU-Redux-2; 1 sample.",
    ),
    "sft-training-llm": Protocol(
        tasks=SUITES["all"],
        gpu_memory_utilization=0.95,
        notes="SFT-Training-LLM: five reasoning benchmarks + MMLU-Redux-2, vLLM gpu_memory_utilization 0.95.",
    ),
    "pass8": Protocol(
        tasks=("aime24", "aime25", "math_500", "gpqa:diamond"),
        samples=8,
        notes="8 samples per problem: pass@1 estimated over 8 samples (pass@k:k=1&n=8) and pass@8.",
    ),
}
DEFAULT_PROTOCOL = Protocol()
# Names of earlier releases, accepted (with a note) for one more release and not listed in --help.
PRESET_ALIASES = {"seed000": "loss-band-report", "seed001": "sft-training-llm"}


def resampled_name(base_name: str, samples: int) -> str:
    """A built-in benchmark re-registered with ``samples`` generations per problem (lighteval_tasks.py)."""
    return f"{base_name}_n{samples}"
