"""Render rows exactly as LLaMA-Factory will train on them.

The tokenizer comes from LLaMA-Factory's ``load_tokenizer`` and the template from
``get_template_and_fix_tokenizer``; each row goes through ``SupervisedDatasetProcessor._encode_data_example``,
the very function ``llamafactory-cli train`` (stage sft, ``train_on_prompt: false``) applies. So prompt ids and
labels are token for token what training sees, including LLaMA-Factory's truncation at ``cutoff_len``
(``infer_seqlen``: over-long traces are cut, not dropped, and lose their final answer and end-of-turn tokens).

``truncated`` is decided by encoding once more with an unbounded cutoff: only rows whose untruncated length
reaches ``cutoff_len`` are encoded twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamafactory.extras.constants import IGNORE_INDEX

from data_selection.command_line import UserError
from data_selection.names import check_model_path

_UNBOUNDED = 2**31 - 1


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    n_prompt_tokens: int  # tokens that carry no label (system, user turns, template glue)
    n_response_tokens: int  # label tokens scored (after truncation)
    n_tokens_full: int  # sequence length before LLaMA-Factory's truncation
    truncated: bool


def load_tokenizer(model_name_or_path: str, tokenizer: str | None = None, trust_remote_code: bool = False):
    """LLaMA-Factory's own tokenizer loading (same patches as training)."""
    check_model_path(model_name_or_path, "--model")
    if tokenizer:
        check_model_path(tokenizer, "--tokenizer")
    # lazy: LLaMA-Factory's model stack takes seconds to import
    from llamafactory.hparams import ModelArguments
    from llamafactory.model import load_tokenizer as lf_load_tokenizer

    args = ModelArguments(model_name_or_path=tokenizer or model_name_or_path, trust_remote_code=trust_remote_code)
    return lf_load_tokenizer(args)["tokenizer"]


def template_names() -> list[str]:
    # lazy: LLaMA-Factory's template module pulls transformers
    from llamafactory.data.template import TEMPLATES

    return sorted(TEMPLATES)


class TemplateEncoder:
    """Encode LLaMA-Factory-aligned examples (``_prompt``, ``_response``, ``_system``, ``_tools``)."""

    def __init__(self, tokenizer, template: str, cutoff_len: int, mask_history: bool = False):
        # lazy: LLaMA-Factory's processors pull transformers
        from llamafactory.data.processor import SupervisedDatasetProcessor
        from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments

        if template not in TEMPLATES:
            close = [t for t in TEMPLATES if t.startswith(template[:3])][:10]
            raise UserError(
                f"unknown template {template!r} for LLaMA-Factory "
                f"{_lf_version()} (similar: {', '.join(close) or 'none'}; all: data_selection.encoding.template_names())"
            )
        if cutoff_len < 2:
            raise UserError(f"cutoff_len must be >= 2, got {cutoff_len}")
        self.tokenizer = tokenizer
        self.template_name = template
        self.cutoff_len = cutoff_len
        data_args = DataArguments(template=template, cutoff_len=cutoff_len, mask_history=mask_history)
        self.template = get_template_and_fix_tokenizer(tokenizer, data_args)
        self._proc = SupervisedDatasetProcessor(
            template=self.template, tokenizer=tokenizer, processor=None, data_args=data_args
        )
        full_args = DataArguments(template=template, cutoff_len=_UNBOUNDED, mask_history=mask_history)
        self._proc_full = SupervisedDatasetProcessor(
            template=self.template, tokenizer=tokenizer, processor=None, data_args=full_args
        )

    def _encode(self, proc, ex: dict[str, Any]) -> tuple[list[int], list[int]]:
        return proc._encode_data_example(
            prompt=ex["_prompt"],
            response=ex["_response"],
            system=ex.get("_system") or None,
            tools=ex.get("_tools") or None,
            images=[],
            videos=[],
            audios=[],
        )

    def encode(self, ex: dict[str, Any]) -> Encoded:
        input_ids, labels = self._encode(self._proc_full, ex)
        n_full = len(input_ids)
        truncated = False
        if n_full >= self.cutoff_len:  # LLaMA-Factory's truncation applies: use its exact result
            cut_ids, cut_labels = self._encode(self._proc, ex)
            truncated = len(cut_ids) < n_full
            input_ids, labels = cut_ids, cut_labels
        n_resp = sum(1 for t in labels if t != IGNORE_INDEX)
        return Encoded(input_ids, labels, len(input_ids) - n_resp, n_resp, n_full, truncated)


def _lf_version() -> str:
    # lazy: only the error message needs the version
    import llamafactory

    return getattr(llamafactory, "__version__", "?")


def check_tokenizer_matches_model(tokenizer, model_config, model_path: str, tokenizer_path: str | None) -> None:
    """Refuse a tokenizer whose ids the model cannot embed (a common copy-paste mistake with --tokenizer)."""
    vocab = getattr(model_config, "vocab_size", None)
    if vocab is None and hasattr(model_config, "get_text_config"):
        vocab = getattr(model_config.get_text_config(), "vocab_size", None)
    n = len(tokenizer)
    if vocab is not None and n > vocab:
        raise UserError(
            f"tokenizer {tokenizer_path or model_path} has {n} tokens but model {model_path} embeds only {vocab}: "
            "they do not belong together"
        )
    for name in ("eos_token_id", "pad_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None and vocab is not None and tid >= vocab:
            raise UserError(f"tokenizer {name}={tid} is outside model {model_path}'s vocabulary ({vocab})")
