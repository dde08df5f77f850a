"""scripts/demo.sh and the demo recipes say the same thing (fast: reads the files)."""

from __future__ import annotations

import re

from helpers import REPO_ROOT

DEMO = (REPO_ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8")


def _default(var: str) -> str:
    return re.search(rf"\$\{{DEMO_{var}:-(\d+)\}}", DEMO).group(1)


def test_demo_evaluates_greedily_like_the_studies():
    evals = [line for line in DEMO.splitlines() if "llamafactory-ext eval" in line]
    assert evals and all("--temperature 0" in line for line in evals)


def test_demo_recipe_headers_give_the_demo_s_own_sizes():
    want = f"--pool_size {_default('POOL_SIZE')} --eval_size {_default('EVAL_SIZE')} --seed 0"
    for name in ("demo_zpd.yaml", "demo_random.yaml"):
        header = (REPO_ROOT / "yaml_recipes" / name).read_text(encoding="utf-8")
        (line,) = [x for x in header.splitlines() if "make-demo-data" in x]
        assert line.endswith(want), (name, line)
