"""Shared plumbing for the ``data-select`` and ``llamafactory-ext`` command lines.

Each command is one options dataclass (its field help texts are the ``--help``) and one function that
takes it, declared in the CLI's table as two ``"module:attribute"`` paths::

    "score": Command("Score a pool ...",
                     options="data_selection.options.score:ScoreOptions",
                     run="data_selection.commands.score:run"),

The options class lives in ``<package>.options.<command>`` and the entry in ``<package>.commands.<command>``
(command name with '-' -> '_'; the paths are written out in the table so a reader finds them with grep).
The order of a run is what keeps a user's mistake fast: the CLI imports only the LIGHT options module
(standard library and our plumbing), parses the arguments, calls ``opts.validate()`` when the class defines
it (cheap checks: paths exist, names and values are valid), and only then imports the entry module, which
is the one place where the heavy packages (torch, transformers, datasets, LLaMA-Factory) load. A typo'd
path therefore answers in about a second instead of after the stack has loaded.

Parsing uses transformers' ``HfArgumentParser``, the parser LLaMA-Factory itself uses (importing it does
not import torch), so ``--cutoff_len`` and ``--cutoff-len`` both work and booleans take ``--flag`` /
``--flag false``. A command may name one list field as positional (``POSITIONAL = "names"`` on the
dataclass): bare words before the first option fill it, e.g. ``data-select report acereason_zpd_15k
acereason_random_15k``. A command without ``options`` gets the raw argument list (``llamafactory-ext train``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    summary: str
    options: str | None = None  # "package.options.<command>:OptionsClass"; None: run gets the raw argv
    run: str = ""  # "package.commands.<command>:run"

    def options_class(self) -> type | None:
        """The options dataclass (imports only its light module), or None for a raw-argument command."""
        return None if self.options is None else _attribute(self.options)

    def entry(self) -> Callable:
        """The command's ``run`` function (imports the entry module, and with it the heavy stack)."""
        return _attribute(self.run)


def _attribute(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _usage(prog: str, commands: dict[str, Command]) -> str:
    width = max(len(n) for n in commands)
    lines = [f"usage: {prog} COMMAND [options]   ({prog} COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {cmd.summary}" for name, cmd in commands.items()]
    return "\n".join(lines)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Field help texts as written, plus the default only where there is one worth reading.

    No "(default: None)" on required options or "(default: )" on empty strings; a boolean that is on by
    default says how to turn it off.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.required or "%(default)" in text or default is argparse.SUPPRESS:
            return text
        if isinstance(default, bool):
            return text + (f" On by default; --no_{action.dest} turns it off." if default else "")
        if default in (None, "", [], ()):
            return text
        return f"{text} (default: {default})"


def build_parser(options_cls: type, prog: str, description: str):
    """transformers' ``HfArgumentParser`` (LLaMA-Factory's own parser) with our help formatting.

    The ``--no_X`` switch it adds for each boolean that defaults to true keeps working but is not listed
    twice: the option's own help says it exists.
    """
    from transformers import HfArgumentParser  # lazy: command_line is imported for UserError by light modules

    parser = HfArgumentParser(options_cls, prog=prog, description=description, formatter_class=HelpFormatter)
    for action in parser._actions:
        if any(o.startswith("--no_") or o.startswith("--no-") for o in action.option_strings) and isinstance(
            action, argparse._StoreFalseAction
        ):
            action.help = argparse.SUPPRESS
    return parser


def parse_options(options_cls: type, argv: Sequence[str], prog: str, description: str):
    argv = list(argv)
    positional = getattr(options_cls, "POSITIONAL", None)
    if positional:
        bare = []
        while argv and not argv[0].startswith("-"):
            bare.append(argv.pop(0))
        if bare:
            argv = [f"--{positional}", *bare, *argv]
    parser = build_parser(options_cls, prog, description)
    known, unknown = parser.parse_known_args(argv)
    if unknown:  # HfArgumentParser would raise a ValueError with a traceback
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    (opts,) = parser.parse_args_into_dataclasses(args=argv)
    return opts


def run_cli(prog: str, commands: dict[str, Command], argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(prog, commands))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}\n\n{_usage(prog, commands)}", file=sys.stderr)
        return 2
    cmd = commands[name]
    try:
        options_cls = cmd.options_class()
        if options_cls is None:
            result = cmd.entry()(rest)
        else:
            opts = parse_options(options_cls, rest, f"{prog} {name}", cmd.summary)
            validate = getattr(opts, "validate", None)
            if validate is not None:
                validate()  # before the entry module (and torch, transformers, ...) is imported
            result = cmd.entry()(opts)
    except UserError as err:
        print(f"{prog} {name}: error: {err}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


class UserError(Exception):
    """A problem with the user's input (file, row, field, option). Printed without a traceback."""


def json_object_option(option: str, text: str) -> dict:
    """The value of a JSON-object option such as ``--columns`` ({} when empty); a clear error otherwise."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{option} is not valid JSON ({err}): {text!r}") from err
    if not isinstance(value, dict):
        raise UserError(f"{option} must be a JSON object, got {text!r}")
    return value
