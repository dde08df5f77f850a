"""bench/gpu_check.py: parts are budgeted (skipped when they would overrun, killed when they hang), and the
CPU dry path runs every part's logic with tiny shapes and writes the one JSON."""

from __future__ import annotations

import json
import sys
import time

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import gpu_check  # noqa: E402


def test_budget_header_matches_the_budgets():
    """The header states the budget; the numbers it states are the ones the script uses."""
    doc = gpu_check.__doc__
    assert f"{gpu_check.TOTAL_BUDGET_S:.0f} s in all" in doc and "<= 8 min" in doc
    for name, (gpu_s, _cpu_s) in gpu_check.BUDGETS.items():
        assert f"{name}" in doc and f"{gpu_s} s" in doc
    one_gpu = sum(b for name, (b, _) in gpu_check.BUDGETS.items() if name != "two_rank")
    assert f"One GPU: {one_gpu} s of parts" in doc
    if one_gpu > gpu_check.TOTAL_BUDGET_S:  # then the header says which part gives way
        assert "the last training part is skipped when time is short" in doc
    assert gpu_check.TOTAL_BUDGET_S + 30 <= 8 * 60  # + the wheels' install


def test_a_part_that_would_overrun_is_skipped_without_running(tmp_path):
    ctx = {"work": str(tmp_path)}
    start = time.monotonic()
    r = gpu_check.run_part("model", ctx, tmp_path / "ctx.json", budget=30, left=10)
    assert r["status"] == "skipped" and "would overrun" in r["note"] and time.monotonic() - start < 1


def test_a_part_past_its_budget_is_killed(tmp_path):
    ctx = {"work": str(tmp_path), "dry_run": True, "device": "cpu", "sizes": gpu_check.SIZES["cpu"]}
    (tmp_path / "ctx.json").write_text(json.dumps(ctx))
    start = time.monotonic()
    r = gpu_check.run_part("model", ctx, tmp_path / "ctx.json", budget=0.5, left=100)  # importing torch takes longer
    assert r["status"] == "timeout" and "killed after its budget" in r["note"]
    assert time.monotonic() - start < 10


def test_the_doctor_part_reports_an_unavailable_doctor(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_doctor(name, *args, **kwargs):
        if name == "llamafactory_ext.doctor":
            raise ImportError("No module named 'llamafactory_ext.doctor'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_doctor)
    assert gpu_check.part_doctor({})["status"] == "doctor unavailable"


@pytest.mark.slow
def test_cpu_dry_path_runs_every_part_and_writes_the_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--dry-run", "--out", str(out), "--budget", str(sum(b[1] for b in gpu_check.BUDGETS.values()))])
    result = json.loads(out.read_text())
    parts = result["parts"]
    assert set(parts) == set(gpu_check.PARTS) and result["dry_run"] is True
    assert rc == 0, {k: v.get("note") for k, v in parts.items() if v["status"] != "ok"}
    assert all(p["status"] == "ok" and p["elapsed_s"] > 0 for p in parts.values())
    sc = parts["scorer"]["result"]
    assert sc["packed"]["tokens_per_s"] > 0 and sc["padded"]["tokens_per_s"] > 0
    assert sc["packed"]["mfu"] is None  # no GPU peak on CPU: never a made-up MFU
    e = parts["scorer_fp32"]["result"]["bf16_vs_fp32"]
    assert e["spearman"] > 0.9 and e["max_abs_delta_loss_mean"] < 0.1
    assert parts["memory_16k"]["result"]["row_tokens"] > 1000
    for recipe in ("advanced", "advanced_fast"):
        assert parts[f"train_{recipe}"]["result"]["rc"] == 0 and parts[f"train_{recipe}"]["result"]["tokens_per_s"] > 0
    assert parts["two_rank"]["result"]["bit_for_bit"] is True and parts["two_rank"]["result"]["rows"] == 8
    dyn = parts["dynamic_zero3"]["result"]
    assert dyn["zero3"] is False and dyn["rows"] == 24 and dyn["max_abs_delta_loss_mean"] <= 1e-4
    assert dyn["moved_from_base"] > 1e-3 and dyn["stage1_global_step"] == 2
