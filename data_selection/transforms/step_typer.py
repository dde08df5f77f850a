"""Optional model-based typing of the steps no marker types (``data-select prune-steps --step_typer MODEL``).

LIMOPro typed steps with an LLM (Claude 3.7 Sonnet): markers first, the model for steps without a marker. Here
the marker rules of :mod:`.steps` stay the default; with ``--step_typer`` every *unmarked* step (no phrase of the
four lists at its start or after its lead-ins) is shown to a local instruct model with the step before it, and
the model's one-word answer becomes the step's type. Steps a marker typed (progressive ones included) are never
sent. The model answers through LLaMA-Factory's own chat path (``llamafactory.chat.ChatModel``: the model's
LLaMA-Factory template, greedy decoding, at most ``MAX_NEW_TOKENS`` new tokens; ``--step_typer_backend vllm`` on
GPUs). The step boundaries are those of the marker rules: the model types steps, it does not split them.
Under ``torchrun`` each rank loads its own copy (LLaMA-Factory's inference placement, ``device_map=auto``).

The answer's first category word counts ("progressive", "verification", "multi_method"/"multi-method"/"multi
method", "error_correction"/"error correction"), case-insensitive; an answer holding none leaves the step
progressive and is counted as unparsed. The prompt (:data:`PROMPT`) is printed in docs/methods.md §5 (a test
checks they agree). Cost per 1K steps: ``bench/step_typer_cost.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from data_selection.transforms.steps import (
    ERROR_CORRECTION,
    MULTI_METHOD,
    PROGRESSIVE,
    VERIFICATION,
    MarkerTable,
    Segmentation,
)

MAX_NEW_TOKENS = 8
MAX_STEP_CHARS = 1500  # each of the two steps shown is cut to its first 1,500 characters

PROMPT = """You label one step of the reasoning in a math solution. The categories:
progressive: moves the solution forward (sets up, computes or derives something new).
verification: checks a result already obtained (recomputes it, substitutes it back, tests a case).
multi_method: reaches a result already obtained again by a different method.
error_correction: finds or fixes a mistake in the earlier reasoning.

Previous step:
{previous}

Step to label:
{step}

Answer with one word: progressive, verification, multi_method or error_correction."""

_ANSWER = re.compile(r"progressive|verification|multi[\s_-]?method|error[\s_-]?correction", re.IGNORECASE)
_TYPES = {"p": PROGRESSIVE, "v": VERIFICATION, "m": MULTI_METHOD, "e": ERROR_CORRECTION}

# where a step's type came from (the shards' step_source column)
BY_MARKER, BY_MODEL, UNMARKED = "marker", "model", "unmarked"


def parse_answer(text: str) -> str | None:
    """The step type a model's answer names first, or None."""
    m = _ANSWER.search(text or "")
    return _TYPES[m.group(0)[0].lower()] if m else None


def prompt_for(previous: str, step: str) -> str:
    return PROMPT.format(previous=previous[:MAX_STEP_CHARS] or "(none: this is the first step)",
                         step=step[:MAX_STEP_CHARS])


@dataclass
class StepTyper:
    """Types unmarked steps with ``chat(prompt) -> answer text``; counts what it did."""

    chat: Callable[[str], str]
    counts: dict[str, int] = field(default_factory=lambda: {"asked": 0, "unparsed": 0})

    def retype(self, seg: Segmentation, markers: MarkerTable) -> tuple[Segmentation, list[str]]:
        """``seg`` with its unmarked steps typed by the model, and each step's source (marker/model/unmarked)."""
        r = seg.response
        steps, sources = list(seg.steps), []
        for i, s in enumerate(steps):
            if markers.match(r[s.start:s.end])[1] is not None:
                sources.append(BY_MARKER)
                continue
            previous = r[steps[i - 1].start:steps[i - 1].end] if i else ""
            answer = parse_answer(self.chat(prompt_for(previous, r[s.start:s.end])))
            self.counts["asked"] += 1
            if answer is None:
                self.counts["unparsed"] += 1
                sources.append(UNMARKED)
                continue
            steps[i] = replace(s, type=answer)
            sources.append(BY_MODEL)
        return Segmentation(seg.response, seg.think, tuple(steps)), sources


def marker_sources(seg: Segmentation, markers: MarkerTable) -> list[str]:
    """Each step's source when no model types steps."""
    r = seg.response
    return [BY_MARKER if markers.match(r[s.start:s.end])[1] is not None else UNMARKED for s in seg.steps]


def load_chat(model: str, template: str, backend: str = "huggingface", trust_remote_code: bool = False,
              dtype: str = "auto") -> Callable[[str], str]:
    """Greedy single-turn chat through LLaMA-Factory's ``ChatModel`` (its template, its model loading)."""
    # lazy: LLaMA-Factory loads torch and transformers; only --step_typer needs it
    from llamafactory.chat import ChatModel

    args = {"model_name_or_path": model, "template": template, "infer_backend": backend,
            "do_sample": False, "max_new_tokens": MAX_NEW_TOKENS, "trust_remote_code": trust_remote_code,
            "infer_dtype": dtype}
    engine = ChatModel(args)

    def chat(prompt: str) -> str:
        (resp, *_) = engine.chat([{"role": "user", "content": prompt}])
        return resp.response_text

    return chat


def step_typer_for(model: str, template: str, backend: str = "huggingface", trust_remote_code: bool = False,
                   dtype: str = "auto") -> StepTyper:
    return StepTyper(load_chat(model, template, backend, trust_remote_code, dtype))
