"""``data-select score-checkpoints``: TEMP's early-token losses at every checkpoint of a perturbation
(:func:`data_selection.scoring.checkpoints.run_score_checkpoints`)."""

from __future__ import annotations

import json

from data_selection.options.score_checkpoints import CheckpointScoreOptions
from data_selection.scoring.checkpoint_layout import kind_dir
from data_selection.scoring.checkpoints import run_score_checkpoints
from data_selection.scoring.layout import SCORES
from data_selection.shards.layout import REJECTS

__all__ = ["CheckpointScoreOptions", "run"]


def run(opts: CheckpointScoreOptions) -> int:
    s = run_score_checkpoints(opts)
    print(json.dumps(s, indent=2))
    out = kind_dir(opts.out, s["kind"])
    if s.get("merged"):
        print(f"checkpoint scores: {out / SCORES}\nrejects: {out / REJECTS}")
    else:
        print(f"{s['waiting_for_units']} unit(s) still running on other ranks; the last rank merges "
              f"(or re-run this command)")
    return 0
