"""The embedded SmolLM2 as prepare-model converts it: the tokenizer belongs to the model."""

from transformers import AutoConfig, AutoTokenizer


def test_the_prepared_tokenizer_has_exactly_the_models_tokens_and_no_prefix_space(smollm2_dir):
    """transformers 5.5.4 turns this GGUF's tokenizer into a CodeLlamaTokenizer with 5 extra tokens and a prefix
    space before every text; scoring then refuses the pair and every token id would shift."""
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert len(tok) == AutoConfig.from_pretrained(smollm2_dir).vocab_size
    assert "CodeLlama" not in type(tok).__name__
    text = "What is 12 + 7?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and tok.convert_ids_to_tokens(ids[0]) == "What"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
