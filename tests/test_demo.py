"""The README's main job, end to end on the embedded real model, at a very small size (slow: a few minutes).

Runs scripts/demo.sh in a copy of the repo (so the repo's dataset_info.json and data/ stay untouched):
score → select → register → `llamafactory-cli train` on the registered subsets → lighteval → compare.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO_ROOT


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path, smollm2_dir):
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("scripts", "yaml_recipes", "ds_configs"):
        shutil.copytree(REPO_ROOT / name, work / name)
    shutil.copy(REPO_ROOT / "dataset_info.json", work / "dataset_info.json")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DEMO_POOL_SIZE": "40",
        "DEMO_EVAL_SIZE": "4",
        "DEMO_N_SELECT": "8",
        "DEMO_TRAIN_ARGS": "num_train_epochs=1 max_steps=2",
        "DEMO_MAX_NEW_TOKENS": "16",
    }
    p = subprocess.run(["bash", "scripts/demo.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = work / "outputs" / "demo"
    scores = pd.read_parquet(out / "scores" / "scores.parquet")
    assert len(scores) == 40 and scores["loss_mean"].notna().all()
    for name in ("demo_zpd", "demo_random"):
        assert (work / "data" / f"{name}.jsonl").read_text().count("\n") == 8
    for m in ("train_zpd", "train_random"):
        assert (out / m / "config.json").exists() and (out / m / "trainer_log.jsonl").exists()
    report = (out / "report.md").read_text()
    for col in ("base", "random", "zpd"):
        assert col in report
    assert list(out.glob("*.png")) and list(out.glob("*.csv"))
    assert "done in" in p.stdout
    assert "selection page    outputs/demo/selection/report.html" in p.stdout
    assert (out / "selection" / "report.html").stat().st_size > 10_000
