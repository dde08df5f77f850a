"""``llamafactory-ext eval``'s options (the plan they resolve to: :mod:`llamafactory_ext.evaluation.options`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_selection.command_line import UserError
from llamafactory_ext.evaluation.presets import PRESET_ALIASES, PRESETS


@dataclass
class EvalOptions:
    model: str = field(
        metadata={"help": "Model folder (e.g. saves/…, an exported model) or hub id to evaluate."}
    )
    out: str = field(
        metadata={"help": "Evaluation folder, e.g. evals/zpd; lighteval's results and details go here."}
    )
    suite: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated: reasoning (aime24, aime25, math_500, gpqa:diamond, "
            "lcb:codegeneration), general (mmlu_redux_2), all, local:FILE (JSONL with problem, answer; "
            "optional id, source), or any lighteval task name. Default: the preset's benchmarks, "
            "else reasoning."
        },
    )
    preset: str | None = field(
        default=None,
        metadata={"help": f"Protocol preset: {', '.join(PRESETS)}. Explicit options override its values."},
    )
    backend: str = field(
        default="auto",
        metadata={
            "help": "vllm | accelerate | auto (vllm when a GPU is visible or --server_url is given, else "
            "accelerate on CPU). vllm: `vllm serve` from its own environment (make install-vllm) on "
            "127.0.0.1, queried by lighteval's litellm backend; accelerate: lighteval's transformers backend."
        },
    )
    samples: int | None = field(
        default=None,
        metadata={
            "help": "Samples per problem (default 1; pass8: 8). >1 reports pass@1 over them and pass@N."
        },
    )
    max_samples: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate only N problems per task (lighteval --max-samples: a fixed seed-42 subset)."
        },
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Cap on generated tokens. Local tasks use it as their generation size; for built-in "
            "benchmarks it goes to generation_parameters (honoured by vLLM; lighteval 0.13's accelerate "
            "backend uses each benchmark's own size)."
        },
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (protocol: 0.6)."}
    )
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling top_p (protocol: 0.95)."})
    max_model_length: int | None = field(default=None, metadata={"help": "Max context + generation (32768)."})
    dtype: str | None = field(
        default=None, metadata={"help": "Model dtype. Default bfloat16 on GPU, float32 on CPU."}
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System prompt, as in training. Default: the AceReason one; '' for none."},
    )
    batch_size: int | None = field(
        default=None,
        metadata={"help": "accelerate backend batch size (default 16 on CPU, automatic on GPU)."},
    )
    gpu_memory_utilization: float | None = field(
        default=None, metadata={"help": "vLLM GPU memory share (0.9; sft-training-llm: 0.95)."}
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallel size."})
    data_parallel_size: int = field(default=1, metadata={"help": "vLLM data parallel size."})
    seed: int = field(
        default=1234,
        metadata={"help": "Sampling seed: vLLM's, and torch's for the accelerate backend (the same run gives the "
                          "same scores)."},
    )
    task_name: str | None = field(
        default=None,
        metadata={"help": "Task name for a local:FILE suite (default: derived from the file name)."},
    )
    heartbeat: float = field(
        default=30.0,
        metadata={"help": "Seconds between progress lines while a batch generates (transformers backend; 0: off)."},
    )
    lighteval_bin: str | None = field(
        default=None,
        metadata={"help": "lighteval executable. Default: $LIGHTEVAL_BIN, else the lighteval next to this Python."},
    )
    vllm_bin: str | None = field(
        default=None,
        metadata={
            "help": "vllm executable that serves the model (--backend vllm). Default: $VLLM_BIN, else "
            ".venv-vllm/bin/vllm (make install-vllm), else vllm on PATH."
        },
    )
    port: int = field(
        default=0, metadata={"help": "Port of the vLLM server on 127.0.0.1 (0: a free one, chosen at start)."}
    )
    server_url: str | None = field(
        default=None,
        metadata={
            "help": "Use an OpenAI-compatible server that is already running (e.g. http://host:8000/v1) "
            "instead of starting vllm serve; it must serve the model under the name 'model'."
        },
    )
    server_timeout: float = field(
        default=900.0,
        metadata={"help": "Seconds to wait for the vLLM server to load the model and answer /health."},
    )
    concurrent_requests: int = field(
        default=64,
        metadata={"help": "Requests lighteval keeps in flight to the server (vLLM batches them)."},
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Write the configs and print the lighteval command without running it."},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Delete earlier results/details/cache in --out first. Without it, a folder keeps adding "
            "results of the same model (e.g. reasoning then general) and refuses another model's."
        },
    )

    def validate(self) -> None:
        """Checks that need neither the model nor torch (the rest: :func:`llamafactory_ext.evaluation.plan.plan_eval`)."""
        if self.preset is not None and self.preset not in PRESETS and self.preset not in PRESET_ALIASES:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.backend not in ("auto", "vllm", "accelerate"):
            raise UserError(f"--backend {self.backend!r}: choose vllm, accelerate or auto")
        if self.max_samples is not None and self.max_samples < 1:
            raise UserError("--max_samples must be at least 1")
