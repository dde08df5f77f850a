"""Run lighteval's CLI with every RNG seeded first: ``python seeded_lighteval.py --seed N accelerate …``.

lighteval 0.13 seeds only ``random`` and numpy, so its transformers backend samples (temperature 0.6) from an
unseeded torch generator and the same evaluation gives different scores on each run. ``llamafactory-ext eval``
copies this file next to the run and calls it with the interpreter of lighteval's own environment (which may be
the separate vLLM venv), so it imports nothing from this package.
"""

import sys


def main() -> None:
    args = sys.argv[1:]
    seed = 1234
    if args[:1] == ["--seed"]:
        seed, args = int(args[1]), args[2:]
    from transformers import set_seed

    set_seed(seed)  # random, numpy, torch (CPU and all GPUs)
    from lighteval.__main__ import app

    sys.argv = ["lighteval", *args]
    app()


if __name__ == "__main__":
    main()
