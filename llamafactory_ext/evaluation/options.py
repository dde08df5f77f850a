"""The plan ``llamafactory-ext eval``'s options resolve to (what ``summary.json`` records).

The options themselves are :class:`llamafactory_ext.options.eval.EvalOptions` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamafactory_ext.options.eval import EvalOptions as EvalOptions  # re-exported: its old home


@dataclass
class EvalPlan:
    """Everything resolved from the options: what ``summary.json`` records and the command is built from."""

    model: str
    model_path: str
    model_fingerprint: str
    out: str
    backend: str
    device: str
    preset: str | None
    tasks: list[str]  # lighteval task strings, "name|0"
    benchmarks: list[str]
    local: list[dict]
    resampled: list[dict]
    samples: int
    temperature: float
    top_p: float
    max_model_length: int
    max_new_tokens: int | None
    max_samples: int | None
    dtype: str
    system_prompt: str | None
    command: list[str] = field(default_factory=list)
    base_url: str | None = None  # --backend vllm: the OpenAI-compatible endpoint lighteval queries
    server_command: list[str] = field(default_factory=list)  # the vllm serve command ([] for --server_url)
