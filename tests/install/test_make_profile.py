"""`make` remembers the installed PROFILE: a GPU venv is not reinstalled with the CPU pins by a plain target.

Each test copies the Makefile and its install prerequisites to a temporary folder with a fake, up-to-date
``.venv`` and asks ``make -n`` (print, run nothing) what a target would run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def fake_repo(tmp_path: Path, stamps: dict[str, str]) -> Path:
    """The Makefile and its prerequisites, plus ``.venv`` holding ``stamps`` (file name -> content)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    shutil.copytree(ROOT / "constraints", repo / "constraints")
    shutil.copy(ROOT / "scripts" / "post_install.py", repo / "scripts" / "post_install.py")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "python").chmod(0o755)
    later = time.time() + 60  # stamps newer than every prerequisite: the install is up to date
    for name, content in stamps.items():
        path = repo / ".venv" / name
        path.write_text(content)
        os.utime(path, (later, later))
    return repo


def dry_run(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PROFILE", "VENV", "MAKEFLAGS")}
    p = subprocess.run(["make", "-n", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return p.stdout


def test_plain_test_after_a_gpu_install_keeps_the_gpu_stack(tmp_path):
    repo = fake_repo(tmp_path, {".installed-gpu": "", ".profile": "gpu\n"})
    out = dry_run(repo, "test")
    assert "constraints/cpu.txt" not in out
    assert "pip install" not in out  # nothing to reinstall at all
    assert "pytest" in out


def test_demo_after_a_gpu_install_keeps_the_gpu_stack(tmp_path):
    out = dry_run(fake_repo(tmp_path, {".installed-gpu": "", ".profile": "gpu\n"}), "demo")
    assert "constraints/cpu.txt" not in out and "scripts/demo.sh" in out


def test_an_older_venv_without_the_profile_file_is_read_from_its_stamp(tmp_path):
    out = dry_run(fake_repo(tmp_path, {".installed-gpu": ""}), "test")
    assert "constraints/cpu.txt" not in out and "pip install" not in out


def test_explicit_profile_cpu_reinstalls_with_the_cpu_pins(tmp_path):
    out = dry_run(fake_repo(tmp_path, {".installed-gpu": "", ".profile": "gpu\n"}), "test", "PROFILE=cpu")
    assert "pip install -c constraints/cpu.txt" in out
    assert "echo cpu > .venv/.profile" in out  # and remembers the new profile
    assert "rm -f .venv/.installed-*" in out  # the gpu stamp no longer describes the venv


def test_fresh_machine_defaults_to_cpu(tmp_path):
    repo = fake_repo(tmp_path, {})
    assert "pip install -c constraints/cpu.txt" in dry_run(repo, "test")
    assert "pip install -c constraints/gpu.txt" in dry_run(repo, "install", "PROFILE=gpu")


def test_unknown_profile_is_refused_with_the_choices(tmp_path):
    repo = fake_repo(tmp_path, {})
    p = subprocess.run(["make", "-n", "test", "PROFILE=cuda"], cwd=repo, capture_output=True, text=True)
    assert p.returncode != 0 and "PROFILE=cuda" in p.stderr and "cpu or gpu" in p.stderr
