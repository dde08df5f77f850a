"""``data-select make-demo-data``: write the procedural demo pool and its held-out eval set."""

from __future__ import annotations

from data_selection.demo_data import write_demo_data
from data_selection.options.make_demo_data import DemoDataConfig


def run(cfg: DemoDataConfig) -> int:
    paths = write_demo_data(cfg)
    problems = -(-cfg.pool_size // cfg.responses_per_problem)
    print(f"demo pool: {paths['pool']} ({cfg.pool_size} rows, about {problems} problems x "
          f"{cfg.responses_per_problem} responses)\ndemo eval set: {paths['eval']} ({cfg.eval_size} rows)")
    return 0
