"""Every command of both CLIs answers --help cleanly: all its options, each explained once, no noise."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from data_selection.cli import COMMANDS as DS_COMMANDS
from data_selection.cli import main as ds_main
from data_selection.command_line import _load
from llamafactory_ext.cli import COMMANDS as LFX_COMMANDS
from llamafactory_ext.cli import main as lfx_main

ALL = [("data-select", ds_main, name, cmd) for name, cmd in DS_COMMANDS.items()] + [
    ("llamafactory-ext", lfx_main, name, cmd) for name, cmd in LFX_COMMANDS.items()
]


def _help(main, name, capsys) -> str:
    try:
        code = main([name, "--help"])
    except SystemExit as exit_:  # argparse exits after printing help
        code = exit_.code
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("prog", "main", "name", "cmd"), ALL, ids=[f"{p} {n}" for p, _, n, _ in ALL])
def test_command_help_lists_every_option_once_without_noise(prog, main, name, cmd, capsys):
    out = _help(main, name, capsys)
    options_cls, _ = _load(cmd.target)
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


def test_console_scripts_are_installed():
    for prog in ("data-select", "llamafactory-ext"):
        script = Path(sys.executable).parent / prog  # pip puts console scripts beside the interpreter
        proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"usage: {prog} COMMAND" in proc.stdout


def test_stray_arguments_are_a_usage_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_:
        ds_main(["select", "--scores", "s", "--name", "n", "stray"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: stray" in err and "Traceback" not in err
