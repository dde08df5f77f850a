"""Every ``bench/`` script is wired somewhere a reader or CI finds it (issue 26.6): a Makefile target, the README
or a docs page, a test, or another bench script that imports it. A script nobody runs goes stale unseen."""

from __future__ import annotations

from pathlib import Path

from helpers import REPO_ROOT


def _texts() -> dict[str, str]:
    files = [REPO_ROOT / "Makefile", REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md")),
             *sorted((REPO_ROOT / "tests").rglob("*.py"))]
    return {str(p.relative_to(REPO_ROOT)): p.read_text(encoding="utf-8") for p in files if p.is_file()}


def test_every_bench_script_is_wired():
    texts = _texts()
    bench = sorted((REPO_ROOT / "bench").glob("*.py"))
    unwired = []
    for script in bench:
        name = f"bench/{script.name}"
        uses = (f"from {script.stem} import", f"import {script.stem}")  # train_probe: a generated sitecustomize
        importers = [b.name for b in bench if b != script
                     and any(u in b.read_text(encoding="utf-8") for u in uses)]
        named = any(name in text or (path.startswith("tests/") and f"from {script.stem} import" in text)
                    for path, text in texts.items())
        if not importers and not named:
            unwired.append(name)
    assert not unwired, f"not in the Makefile, README, docs or tests, and imported by no bench script: {unwired}"


def test_makefile_runs_the_per_1k_cost_benches():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\nbench-costs:", 1)[1].split("\n\n", 1)[0]
    assert "bench/recheck_cost.py" in target and "bench/step_typer_cost.py" in target
    assert Path(REPO_ROOT / "bench" / "recheck_cost.py").is_file()
