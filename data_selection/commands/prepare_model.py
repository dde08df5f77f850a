"""``data-select prepare-model``: convert the embedded SmolLM2 GGUF into a Hugging Face checkpoint."""

from __future__ import annotations

from data_selection.embedded import prepare_smollm2
from data_selection.options.prepare_model import PrepareModelOptions


def run(opts: PrepareModelOptions) -> int:
    path = prepare_smollm2(opts.out_dir or None, force=opts.force)
    print(path)
    return 0
