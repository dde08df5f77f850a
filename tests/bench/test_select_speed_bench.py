"""bench/select_speed.py still runs against the current select API (it silently rotted once)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO_ROOT


def test_select_speed_bench_runs_every_configuration(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "select_speed.py"), "--rows", "3000", "--n", "500",
                           "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    whats = [r["what"] for r in json.loads(out.read_text())]
    assert whats[0] == "read scores.parquet" and "zpd stratify=source" in whats and "random" in whats
