"""``llamafactory-ext train RECIPE.yaml [key=value ...]``: raw arguments, parsed the way LLaMA-Factory does."""

from __future__ import annotations

from llamafactory_ext.train.launch import main


def run(argv: list[str]) -> int:
    return main(argv)
