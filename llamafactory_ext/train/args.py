"""The recipe keys that ``llamafactory-ext train`` adds to LLaMA-Factory's, and how a recipe is split.

Our keys sit in the same YAML as LLaMA-Factory's (one file per experiment, as users already write them). They
are removed before LLaMA-Factory's strict parser sees the rest, so ``ALLOW_EXTRA_ARGS`` is never needed and a
typo in *either* set is still an error: a key that neither LLaMA-Factory 0.9.5 nor this dataclass knows stops
the run before anything is loaded, with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError
from llamafactory_ext.train.dynamic import options as dynamic_options

# The callbacks a recipe may name (``callbacks: [...]``); their classes are :data:`llamafactory_ext.train.callbacks.CALLBACKS`
# (which imports transformers and torch: the launcher checks names without loading either).
CALLBACK_NAMES = ("metrics_jsonl",)

@dataclass
class ExtensionArguments:
    dft_lean: bool = field(
        default=False,
        metadata={
            "help": "Dynamic Fine-Tuning loss (the same loss as LLaMA-Factory's use_dft_loss) computed in "
            "chunks of label positions, so fp32 logits over the whole vocabulary are never held for a whole "
            "sequence. Do not combine with use_dft_loss."
        },
    )
    iw_sft: bool = field(
        default=False,
        metadata={
            "help": "Importance-weighted SFT: per-sequence weight "
            "clamp(exp(mean log p_current - mean log p_ref), 0, iw_sft_clip), no gradient through the "
            "weight; the reference log-probs come from iw_sft_scores (no reference model is loaded). Needs "
            "local training files whose rows carry an `id` column matching the scores (or the scored pool "
            "itself, matched by row index)."
        },
    )
    iw_sft_scores: str | None = field(
        default=None,
        metadata={
            "help": "scores.parquet of the pool the training rows come from, or its folder "
            "(data-select score --out); reference mean log-prob of a row = -loss_mean."
        },
    )
    iw_sft_clip: float = field(default=16.0, metadata={"help": "Upper clip of the iw-SFT sequence weight."})
    loss_chunk_tokens: int = field(
        default=1024,
        metadata={
            "help": "Label positions per chunk for dft_lean / iw_sft: peak extra memory is about "
            "3 x chunk x vocabulary x 4 bytes (1024 x 151,936 -> ~1.9 GB), independent of sequence length."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Train on the same micro-batches without computing on padding: each collated batch's rows "
            "are concatenated into one row and attention stays within each row (flash-attn's varlen kernel, "
            "else PyTorch's varlen_attn, else one SDPA call per row). Loss and gradients equal the padded "
            "run's. Text-only SFT; not with packing/neat_packing, train_on_prompt or iw_sft."
        },
    )
    padding_free_attention: str = field(
        default="auto",
        metadata={
            "help": "Kernel for padding_free: auto (flash_attn_4, else flash_attn, if it imports and passes its "
            "proof, else torch_varlen on CUDA, else sdpa), flash_attn_4 (FlashAttention-4), flash_attn "
            "(FlashAttention-2), torch_varlen or sdpa (one SDPA call per row).",
            "choices": ["auto", "flash_attn_4", "flash_attn", "torch_varlen", "sdpa"],
        },
    )
    callbacks: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra trainer callbacks by name; available: metrics_jsonl."},
    )
    metrics_jsonl: str | None = field(
        default=None,
        metadata={
            "help": "Path of the metrics_jsonl callback's file (default <output_dir>/metrics.jsonl); "
            "setting it switches the callback on."
        },
    )
    dynamic_selection: dict | None = field(
        default=None,
        metadata={
            "help": "Selection that moves with the model: stage 0 trains on the static selection drawn from the "
            "base scores; at each stage boundary the candidates are re-scored with the current weights (the "
            "scorer of data-select score) and the same selector draws the next subset (seed + stage); stages are "
            "written to OUTPUT_DIR/selection/stage-K/. A mapping with the keys: " + dynamic_options.help_text()
        },
    )
    dynamic: Any = field(default=None, init=False, repr=False, metadata={"help": "(parsed dynamic_selection)"})

    @property
    def uses_custom_loss(self) -> bool:
        return self.dft_lean or self.iw_sft


def extension_keys() -> list[str]:
    return [f.name for f in fields(ExtensionArguments) if f.init]


def llamafactory_keys() -> set[str]:
    """Every key LLaMA-Factory 0.9.5's ``train`` parser accepts (its five argument dataclasses)."""
    from llamafactory.hparams import (
        DataArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )

    classes = (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments)
    return {f.name for cls in classes for f in fields(cls) if f.init}


def extension_help() -> str:
    lines = []
    for f in fields(ExtensionArguments):
        if not f.init:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {f.name} (default {default!r})\n      {f.metadata['help']}")
    return "\n".join(lines)


def _check_type(name: str, value: Any, source: str) -> Any:
    f = next(f for f in fields(ExtensionArguments) if f.name == name)
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    if name == "dynamic_selection":
        return value  # a mapping, parsed and checked key by key in validate()
    if name in ("iw_sft_scores", "metrics_jsonl"):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{source}: {name} must be a path string, got {value!r}")
        return value
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise UserError(f"{source}: {name} must be true or false, got {value!r}")
        return value
    if isinstance(default, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{source}: {name} must be a list of names, got {value!r}")
        return list(value)
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {name} must be a {type(default).__name__}, got {value!r}") from None


def split_recipe_args(
    args: dict[str, Any], source: str = "recipe"
) -> tuple[dict[str, Any], ExtensionArguments]:
    """Split a recipe into (LLaMA-Factory's keys, our ExtensionArguments); unknown keys are an error."""
    ours = set(extension_keys())
    known = llamafactory_keys()
    overlap = ours & known
    if overlap:  # would silently shadow an upstream option after an upgrade
        raise RuntimeError(f"llamafactory-ext keys clash with LLaMA-Factory's: {sorted(overlap)}")
    unknown = [k for k in args if k not in ours and k not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(ours | known), n=1, cutoff=0.75)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserError(
            f"{source}: unknown key(s) {', '.join(hints)}: neither LLaMA-Factory "
            "nor llamafactory-ext has such an option (see `llamafactory-ext train --help`)"
        )
    ext_values = {k: _check_type(k, v, source) for k, v in args.items() if k in ours}
    lf_args = {k: v for k, v in args.items() if k not in ours}
    ext = ExtensionArguments(**ext_values)
    if ext.metrics_jsonl and "metrics_jsonl" not in ext.callbacks:
        ext.callbacks.append("metrics_jsonl")
    validate(ext, lf_args, source)
    return lf_args, ext


def _resolve_scores(path: str, source: str) -> str:
    p = Path(path)
    if p.is_dir():
        p = p / "scores.parquet"
    if not p.is_file():
        raise UserError(
            f"{source}: iw_sft_scores {path!r}: no such scores.parquet (run `data-select score` first)"
        )
    return str(p)


def validate(ext: ExtensionArguments, lf_args: dict[str, Any], source: str = "recipe") -> None:
    """Refuse combinations that would silently train something else than the recipe says."""
    bad = [c for c in ext.callbacks if c not in CALLBACK_NAMES]
    if bad:
        raise UserError(f"{source}: unknown callback(s) {bad}; available: {sorted(CALLBACK_NAMES)}")
    if ext.loss_chunk_tokens <= 0:
        raise UserError(f"{source}: loss_chunk_tokens must be positive, got {ext.loss_chunk_tokens}")
    if ext.iw_sft_clip <= 0:
        raise UserError(f"{source}: iw_sft_clip must be positive, got {ext.iw_sft_clip}")
    if ext.dft_lean and ext.iw_sft:
        raise UserError(f"{source}: dft_lean and iw_sft are two different losses; enable one of them")
    _validate_padding_free(ext, lf_args, source)
    if ext.dynamic_selection is not None:
        ext.dynamic = dynamic_options.parse(ext.dynamic_selection, source)
        for key in ("iw_sft", "padding_free"):
            if getattr(ext, key):
                raise UserError(f"{source}: dynamic_selection cannot run with {key} yet (not tested together)")
        dynamic_options.validate(ext.dynamic, lf_args, source)
    if not ext.uses_custom_loss:
        return
    which = "dft_lean" if ext.dft_lean else "iw_sft"
    if lf_args.get("stage", "sft") != "sft":
        raise UserError(f"{source}: {which} needs stage: sft (got stage: {lf_args.get('stage')})")
    for key in ("use_dft_loss", "use_eaft_loss", "use_asft_loss", "use_mca", "use_hyper_parallel"):
        if _truthy(lf_args.get(key)):
            raise UserError(f"{source}: {which} replaces the trainer's loss; remove `{key}: true`")
    if _truthy(os.environ.get("USE_MCA")):
        raise UserError(f"{source}: {which} does not work with USE_MCA=1 (Megatron path)")
    if ext.iw_sft:
        if not ext.iw_sft_scores:
            raise UserError(f"{source}: iw_sft needs iw_sft_scores (scores.parquet or its folder)")
        ext.iw_sft_scores = _resolve_scores(ext.iw_sft_scores, source)
        for key in ("packing", "neat_packing", "streaming"):
            if _truthy(lf_args.get(key)):
                raise UserError(f"{source}: iw_sft weights whole sequences; it cannot run with `{key}: true`")


def _validate_padding_free(ext: ExtensionArguments, lf_args: dict[str, Any], source: str) -> None:
    choices = next(f for f in fields(ExtensionArguments) if f.name == "padding_free_attention").metadata[
        "choices"
    ]
    if ext.padding_free_attention not in choices:
        raise UserError(
            f"{source}: padding_free_attention must be one of {choices}, got {ext.padding_free_attention!r}"
        )
    if not ext.padding_free:
        return
    if lf_args.get("stage", "sft") != "sft":
        raise UserError(f"{source}: padding_free needs stage: sft (got stage: {lf_args.get('stage')})")
    reasons = {
        "packing": "LLaMA-Factory's packing already concatenates rows (and changes the batches)",
        "neat_packing": "LLaMA-Factory's packing already concatenates rows (and changes the batches)",
        "train_on_prompt": "a row's first label would count in the loss's token total but is never predicted",
        "predict_with_generate": "generation needs padded batches",
    }
    for key, why in reasons.items():
        if _truthy(lf_args.get(key)):
            raise UserError(f"{source}: padding_free cannot run with `{key}: true`: {why}")
    if ext.iw_sft:
        raise UserError(f"{source}: iw_sft weights whole sequences; it cannot run with padding_free")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1", "y", "yes")
    return bool(value)
