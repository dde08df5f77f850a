"""Every planned step's command line parsed by the options class of the command that will run it, when the study
is loaded: a typo in an arm (``zpd: {strategy: zpd, lowr: 0.2}``) or a value of the wrong type fails in
``--dry-run`` and before the first step runs, naming the study section, the key and the nearest valid name,
instead of hours later when that step's command starts on a cluster.

The parser is the CLI's own (:func:`data_selection.command_line.build_parser`, transformers' ``HfArgumentParser``),
so names, types and choices are exactly what the command accepts. Only the options are checked, not the files
they name: those are written by earlier steps. Training steps take a LLaMA-Factory recipe plus ``key=value``
overrides (no options class here); ``llamafactory-ext doctor STUDY.yaml`` parses the recipe strictly.
"""

from __future__ import annotations

import argparse
import difflib
import re
from dataclasses import fields
from functools import cache

from data_selection.cli import COMMANDS as DATA_SELECT_COMMANDS
from data_selection.command_line import UserError, build_parser
from llamafactory_ext.cli import COMMANDS as LLAMAFACTORY_EXT_COMMANDS
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.steps import Step

# the CLI tables: each command names its options class there (a light module, imported on use)
CLI_TABLES = {"data-select": DATA_SELECT_COMMANDS, "llamafactory-ext": LLAMAFACTORY_EXT_COMMANDS}
RAW_ARGUMENT_COMMANDS = {("llamafactory-cli", "train"), ("llamafactory-ext", "train")}  # no options class
TORCHRUN_MODULES = {"data_selection.cli": "data-select", "llamafactory_ext.cli": "llamafactory-ext"}


def options_class(program: str, command: str) -> type | None:
    """The options dataclass ``program command`` parses its arguments into; None for a raw-argument command."""
    if (program, command) in RAW_ARGUMENT_COMMANDS:
        return None
    table = CLI_TABLES.get(program, {})
    if command not in table or table[command].options is None:
        raise UserError(f"the study plans `{program} {command}`, a command it cannot check (no options class)")
    return table[command].options_class()  # imported on use: only the commands a study plans


def command_of(argv: list[str]) -> tuple[str, str, list[str]]:
    """(program, command, its arguments) of a step's argv, looking through ``torchrun ... -m MODULE``."""
    if argv[0] == "torchrun":
        at = argv.index("-m")
        return TORCHRUN_MODULES[argv[at + 1]], argv[at + 2], argv[at + 3:]
    return argv[0], argv[1], argv[2:]


class _ParseError(Exception):
    pass


def _raise(message: str):
    raise _ParseError(message)


@cache
def _parser(cls: type, prog: str) -> argparse.ArgumentParser:
    parser = build_parser(cls, prog, "")
    parser.exit_on_error = False  # a bad value raises ArgumentError (naming the option) instead of exiting
    parser.error = _raise  # and the errors argparse reports itself (a missing required option) raise too
    return parser


def _suggest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_step(cfg: StudyConfig, step: Step) -> None:
    """Parse ``step.argv`` as its command would; a UserError naming the study section and key if it does not."""
    program, command, args = command_of(step.argv)
    cls = options_class(program, command)
    if cls is None:
        return
    prog = f"{program} {command}"
    names = [f.name for f in fields(cls)]
    parser = _parser(cls, prog)
    here = f"{cfg.source}: step '{step.label}'"  # for a flag the planner itself adds

    def unknown(flag: str) -> UserError:
        key = flag[2:].replace("-", "_")
        hint = _suggest(key, names) or f"; `{prog}` takes: {', '.join(names)}"
        return UserError(f"{cfg.source}: {step.origins.get(flag, here)}: unknown key {key!r} for `{prog}`{hint}")

    # exact names only: argparse would take `batch_token` for `--batch_tokens`; in a study it is a typo
    for flag in step.origins:
        if flag not in parser._option_string_actions:
            raise unknown(flag)
    try:
        namespace, extra = parser.parse_known_args(args)
    except argparse.ArgumentError as err:  # a value of the wrong type, or not one of the option's choices
        flags = (err.argument_name or "").split("/")
        flag = next((f for f in flags if f in step.origins), flags[0])
        if not flag:
            raise UserError(f"{here}: `{prog}`: {err.message}") from None
        key = flag.lstrip("-").replace("-", "_")
        where = f"{cfg.source}: {step.origins[flag]}.{key}" if flag in step.origins else f"{here}: --{key}"
        given = re.match(r"invalid choice: '?(.*?)'? \(choose from", err.message)
        choices = getattr(parser._option_string_actions.get(flag), "choices", None) or ()
        hint = _suggest(given.group(1), [str(c) for c in choices]) if given else ""
        raise UserError(f"{where}: {err.message}{hint} (`{prog}` option --{key})") from None
    except _ParseError as err:  # what argparse reports itself, e.g. a required option missing
        raise UserError(f"{here}: `{prog}`: {err}") from None
    for flag in extra:
        if flag.startswith("--"):
            raise unknown(flag)
    try:
        cls(**{name: getattr(namespace, name) for name in names if hasattr(namespace, name)})
    except (TypeError, ValueError) as err:
        raise UserError(f"{here}: `{prog}`: {err}") from None


def check_plan(cfg: StudyConfig, steps: list[Step]) -> None:
    """Every step's options, parsed by its command's options class (see the module docstring)."""
    for step in steps:
        check_step(cfg, step)
