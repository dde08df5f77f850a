"""Shared plumbing for the ``data-select`` and ``llamafactory-ext`` command lines.

Each command is one options dataclass (its field help texts are the ``--help``) and one function that
takes it. Parsing uses transformers' ``HfArgumentParser``, the parser LLaMA-Factory itself uses, so
``--cutoff_len`` and ``--cutoff-len`` both work and booleans take ``--flag`` / ``--flag false``.
A command may name one list field as positional (``POSITIONAL = "names"`` on the dataclass): bare words
before the first option fill it, e.g. ``data-select report acereason_zpd_15k acereason_random_15k``.
A command spec without an options class gets the raw argument list (``llamafactory-ext train``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    target: str  # "package.module:OptionsClass:function" or "package.module:function" (raw argv)
    summary: str


def _load(spec: str) -> tuple[type | None, Callable]:
    parts = spec.split(":")
    module = importlib.import_module(parts[0])
    if len(parts) == 2:
        return None, getattr(module, parts[1])
    return getattr(module, parts[1]), getattr(module, parts[2])


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
    from transformers import HfArgumentParser

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
    options_cls, func = _load(cmd.target)
    try:
        if options_cls is None:
            result = func(rest)
        else:
            result = func(parse_options(options_cls, rest, f"{prog} {name}", cmd.summary))
    except UserError as err:
        print(f"{prog} {name}: error: {err}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


class UserError(Exception):
    """A problem with the user's input (file, row, field, option). Printed without a traceback."""


def json_object_option(option: str, text: str) -> dict:
    """The value of a JSON-object option such as ``--columns`` ({} when empty); a clear error otherwise."""
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{option} is not valid JSON ({err}): {text!r}") from err
    if not isinstance(value, dict):
        raise UserError(f"{option} must be a JSON object, got {text!r}")
    return value
