"""Cost of ``data-select verify --recheck_model`` per 1K re-checked responses, on the embedded SmolLM2-135M.

Times :func:`data_selection.verify.recheck.ask` (template rendering, batched greedy generation of 3 tokens) on
``--n`` (answer, reference) pairs of math-verify's 'wrong' kind, after one warm-up batch, and extrapolates to
1,000. Run on CPU: ``flock /tmp/cpu.lock python bench/recheck_cost.py --n 64``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_selection.embedded import prepare_smollm2  # noqa: E402
from data_selection.verify.recheck import ask  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    model = str(prepare_smollm2())
    rng = random.Random(0)
    pairs = [(f"\\frac{{{rng.randint(1, 99)}}}{{{rng.randint(2, 99)}}}", str(rng.randint(1, 999))) for _ in range(args.n)]
    ask(model, "smollm2", pairs[: args.batch], args.batch)  # warm-up (loading, first kernels)
    t0 = time.perf_counter()
    replies = ask(model, "smollm2", pairs, args.batch)
    wall = time.perf_counter() - t0
    print(json.dumps({"pairs": args.n, "batch": args.batch, "seconds": round(wall, 2),
                      "seconds_per_1k": round(1000 * wall / args.n, 1), "threads": torch.get_num_threads(),
                      "yes": sum(r.strip().lower().startswith("yes") for r in replies),
                      "device": "cpu"}, indent=2))


if __name__ == "__main__":
    main()
