"""``data-select make-demo-data``'s options (see :mod:`data_selection.demo_data`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DemoDataConfig:
    out_dir: str = field(default="data/demo", metadata={"help": "Folder that receives pool.jsonl and eval.jsonl."})
    pool_size: int = field(default=3000, metadata={"help": "Rows (responses) in the training pool."})
    eval_size: int = field(default=200, metadata={"help": "Problems in the held-out evaluation set."})
    responses_per_problem: int = field(default=3, metadata={"help": "Responses per pool problem."})
    contested_rate: float = field(
        default=0.3,
        metadata={"help": "Share of problems on which one or two responses fail (wrong or truncated); harder "
                  "sources more often. At 0.3 about 17%% of the rows fail; a pass-cv subset of n rows needs about "
                  "n contested problems (900 rows give 90)."},
    )
    all_fail_rate: float = field(default=0.03, metadata={"help": "Share of problems on which every response fails."})
    noise_rate: float = field(
        default=0.03, metadata={"help": "Share of passing responses with shuffled words (scrambled)."}
    )
    repetitive_rate: float = field(
        default=0.03, metadata={"help": "Share of passing responses with a decoding loop before the answer."}
    )
    answer_only_rate: float = field(default=0.02, metadata={"help": "Share of passing responses without reasoning."})
    verify_rate: float = field(
        default=0.3, metadata={"help": "Share of correct traces with a verification paragraph (Wait, let me check)."}
    )
    alternative_rate: float = field(
        default=0.15, metadata={"help": "Share of correct traces with an alternative-method paragraph."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed; same seed, same files."})
