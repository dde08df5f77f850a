"""``python -m llamafactory_ext.train RECIPE.yaml [key=value ...]``: the torchrun worker entry, same handling as
``llamafactory-ext train`` (clear one-line errors for bad recipes)."""

import sys

from llamafactory_ext.cli import main

raise SystemExit(main(["train", *sys.argv[1:]]))
