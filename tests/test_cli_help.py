"""Every command of both CLIs answers --help cleanly (all its options, each explained once, no noise), its options
module is light, and a user's mistake is answered before the heavy stack loads (issue 27 item 8)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from data_selection.cli import COMMANDS as DS_COMMANDS
from data_selection.cli import main as ds_main
from llamafactory_ext.cli import COMMANDS as LFX_COMMANDS
from llamafactory_ext.cli import main as lfx_main

ALL = [("data-select", ds_main, name, cmd) for name, cmd in DS_COMMANDS.items()] + [
    ("llamafactory-ext", lfx_main, name, cmd) for name, cmd in LFX_COMMANDS.items()
]
IDS = [f"{p} {n}" for p, _, n, _ in ALL]
# Commands whose options/commands modules other helpers create in the same restructuring (issue 26): until
# their branches are merged these modules may be missing here, and a test of them is skipped, not failed.
# Remove this set at the merge.
def _module(path: str) -> str:
    return path.partition(":")[0]


def _present(name: str, cmd) -> bool:
    """Every module a command's table entry names exists (a renamed module fails here, not at a user's prompt)."""
    missing = [m for m in (cmd.options and _module(cmd.options), _module(cmd.run)) if m
               and importlib.util.find_spec(m) is None]
    assert not missing, f"{name}: no module {missing}"
    return True


def _help(main, name, capsys) -> str:
    try:
        code = main([name, "--help"])
    except SystemExit as exit_:  # argparse exits after printing help
        code = exit_.code
    assert code == 0
    return capsys.readouterr().out


def test_tables_follow_the_naming_convention():
    for package, commands in (("data_selection", DS_COMMANDS), ("llamafactory_ext", LFX_COMMANDS)):
        for name, cmd in commands.items():
            module = name.replace("-", "_")
            assert cmd.run == f"{package}.commands.{module}:run", name
            if cmd.options is not None:
                assert cmd.options.startswith(f"{package}.options.{module}:"), name
    assert "doctor" not in DS_COMMANDS  # data_selection never reaches into llamafactory_ext
    assert LFX_COMMANDS["train"].options is None  # raw RECIPE.yaml [key=value ...]


@pytest.mark.parametrize(("prog", "main", "name", "cmd"), ALL, ids=IDS)
def test_command_help_lists_every_option_once_without_noise(prog, main, name, cmd, capsys):
    assert _present(name, cmd)
    out = _help(main, name, capsys)
    options_cls = cmd.options_class()
    assert "(default: None)" not in out and "(default: )" not in out
    if options_cls is None:  # a raw-argument command (llamafactory-ext train) prints its own usage
        assert out.startswith(f"usage: {prog} {name}")
        return
    assert cmd.summary in out.replace("\n", " ")
    flat = " ".join(out.split())
    for f in fields(options_cls):
        assert f"--{f.name}" in out, f"--{f.name} missing from `{prog} {name} --help`"
        help_text = " ".join(f.metadata.get("help", "").split())
        if help_text:
            assert flat.count(help_text[:40]) == 1, f"help of --{f.name} shown {flat.count(help_text[:40])} times"
    assert "--no_" not in out.split("options:")[0]  # usage line: no duplicated negative switches


@pytest.mark.parametrize("main", [ds_main, lfx_main])
def test_top_level_help_names_every_command(main, capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = DS_COMMANDS if main is ds_main else LFX_COMMANDS
    for name, cmd in commands.items():
        assert name in out and cmd.summary[:30] in out
    assert main(["no-such-command"]) == 2


def test_doctor_is_not_a_data_select_command(capsys):
    assert ds_main(["doctor"]) == 2
    assert "unknown command 'doctor'" in capsys.readouterr().err


def test_console_scripts_are_installed():
    for prog in ("data-select", "llamafactory-ext"):
        script = Path(sys.executable).parent / prog  # pip puts console scripts beside the interpreter
        proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"usage: {prog} COMMAND" in proc.stdout


def test_stray_arguments_are_a_usage_error_not_a_traceback(capsys):
    assert _present("push", DS_COMMANDS["push"])
    with pytest.raises(SystemExit) as exit_:
        ds_main(["push", "subset", "--repo", "u/n", "stray", "--private"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: stray" in err and "Traceback" not in err


# A user's mistake (a missing file, a bad name or value) is answered by the options class's validate(),
# before the entry module imports torch / transformers / LLaMA-Factory: in a second or two, not after 48 s.
PROBE = """
import json, sys, time
t = time.perf_counter()
from {package}.cli import main
code = main({argv!r})
print(json.dumps({{"code": code, "torch": "torch" in sys.modules, "llamafactory": "llamafactory" in sys.modules,
                  "seconds": time.perf_counter() - t}}))
"""

USER_ERRORS = [
    ("data_selection", "score", ["score", "--dataset", "nosuch.jsonl", "--model", "x", "--template", "qwen", "--out",
                                 "/tmp/o"], "nosuch.jsonl"),
    ("data_selection", "score", ["score", "--dataset", "mydata/pool", "--model", ".", "--out", "o"],
     "no file or folder mydata/pool (did you mean mydata/pool.jsonl?); as a hub id it cannot be reached offline"),
    ("data_selection", "score", ["score", "--dataset", "p.jsonl", "--model", "models/nope", "--out", "o"],
     "--model: no folder models/nope"),
    ("data_selection", "prune-steps", ["prune-steps", "--model", "models/nope", "--dataset", "p.jsonl", "--name",
                                       "p_pir"], "--model: no folder models/nope"),
    ("data_selection", "push", ["push", "subset", "--repo", "no-slash"], "--repo 'no-slash'"),
    ("data_selection", "perturb", ["perturb", "--kind", "directional", "--model", "m", "--out", "o"], "--target"),
    ("data_selection", "perturb", ["perturb", "--kind", "gaussian", "--model", "m", "--out", "o", "--num", "2",
                                   "--export", "3"], "checkpoints 1..2"),
    ("llamafactory_ext", "eval", ["eval", "--model", "m", "--out", "o", "--preset", "nosuch"], "unknown preset"),
    ("llamafactory_ext", "doctor", ["doctor", "a.yaml", "b.yaml"], "at most one"),
    ("llamafactory_ext", "train", ["train", "nosuch.yaml"], "recipe 'nosuch.yaml' not found"),
]


@pytest.mark.parametrize(("package", "name", "argv", "message"), USER_ERRORS,
                         ids=[f"{a[1]}-{i}" for i, a in enumerate(USER_ERRORS)])
def test_a_user_error_is_answered_before_the_heavy_stack_loads(package, name, argv, message, tmp_path):
    cmd = (DS_COMMANDS if package == "data_selection" else LFX_COMMANDS)[name]
    assert _present(name, cmd)
    assert cmd.options is None or callable(getattr(cmd.options_class(), "validate", None)), name
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "pool.jsonl").write_text("{}\n")  # the file a typo without its extension meant
    (tmp_path / "p.jsonl").write_text("{}\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE.format(package=package, argv=argv)], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin",
                                                               "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not result["torch"] and not result["llamafactory"], f"{name}: the heavy stack loaded before the check"
    assert wall < 30, f"{wall:.1f} s"  # ~1.5 s alone; generous for a loaded CI machine


def test_options_modules_are_light():
    """Importing every command's options class loads neither torch nor LLaMA-Factory (study checks its steps with
    them; the CLI parses and validates with them before the entry module's imports)."""
    probe = (
        "import json, sys\n"
        "from data_selection.cli import COMMANDS as A\nfrom llamafactory_ext.cli import COMMANDS as B\n"
        "import importlib.util\n"
        "for c in [*A.values(), *B.values()]:\n"
        "    if c.options and importlib.util.find_spec(c.options.partition(':')[0]):\n"
        "        c.options_class()\n"
        "print(json.dumps(sorted(m for m in ('torch', 'llamafactory', 'datasets', 'pandas') if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
