"""math-verify's ``parse`` and ``verify``, each call under a CPU-time limit, results cached per process.

A call that runs out of time raises :class:`~data_selection.verify.timeout.CallTimeout` (the caller records a
reason; it is never a crash). math-verify's own wall-clock alarms are kept as a backstop, set well above our
limit so that ours decides. Equivalence is math-verify's (``\\frac{1}{2}`` = ``0.5``, ``x=3`` = ``3`` is not
assumed, sets and intervals compared as sets), with its default precision and strict mode.

Which checker graded a pool is part of its result: :func:`checker_label` (``math-verify 0.5.2
(latex2sympy2_extended 1.0.6)``) names the installed math-verify and its LaTeX parser; newer math-verify
releases change verdicts (bench/mathverify_versions.py).
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import re
from typing import Any

from data_selection.verify.timeout import call_with_timeout

CHECKER = "math-verify"  # the distribution that grades; its LaTeX parser is latex2sympy2_extended
PARSER = "latex2sympy2_extended"
CACHE_SIZE = 200_000  # parsed strings kept per process (short final answers repeat a lot across a pool)
_BOXED_INTEGER = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")  # what math-verify turns into [Integer(n), "n"]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def checker_version() -> str | None:
    """The installed math-verify's version (None when it is not installed)."""
    return _version(CHECKER)


@functools.cache
def checker_label() -> str:
    """Which checker grades, for a verify output: ``math-verify 0.5.2 (latex2sympy2_extended 1.0.6)``."""
    return f"{CHECKER} {checker_version() or 'not installed'} ({PARSER} {_version(PARSER) or 'not installed'})"


class MathChecker:
    name = CHECKER

    def __init__(self, timeout: float = 5.0):
        self.timeout = float(timeout)
        # math-verify's own signal.alarm per expression (whole seconds): only a backstop behind our limit.
        self.inner = max(1, math.ceil(4 * self.timeout)) if self.timeout > 0 else 60
        self._parsed: dict[str, list[Any]] = {}
        self.version = checker_version()

    def parse(self, text: str) -> list[Any]:
        """math-verify's extraction of ``text`` (LaTeX then plain expressions): [] when nothing was found."""
        hit = self._parsed.get(text)
        if hit is not None:
            return hit
        integer = _BOXED_INTEGER.fullmatch(text)
        if integer:  # the most common final answer; the same result as math-verify's, without its LaTeX parser
            import sympy  # lazy: sympy's import costs a second; worker processes preload it with math-verify

            out: list[Any] = [sympy.Integer(integer.group(1)), integer.group(1)]
        else:
            from math_verify import (
                parse,  # lazy: math-verify (and sympy) load in ~1 s; the runner preloads it
            )

            out = call_with_timeout(parse, text, parsing_timeout=self.inner, seconds=self.timeout)
        if len(self._parsed) >= CACHE_SIZE:
            self._parsed.clear()
        self._parsed[text] = out
        return out

    def parse_reference(self, reference: str) -> list[Any]:
        """A reference answer as written in a dataset column ("42", "\\frac{1}{2}", "$x=3$")."""
        ref = reference.strip()
        if not ref:
            return []
        if "\\boxed" not in ref and "$" not in ref:
            out = self.parse("\\boxed{" + ref + "}")
            if out:
                return out
        return self.parse(ref)

    def equal(self, gold: list[Any], answer: list[Any]) -> bool:
        """math-verify's ``verify(gold, answer)``."""
        from math_verify import verify  # lazy: as in parse

        return bool(call_with_timeout(verify, gold, answer, timeout_seconds=self.inner, seconds=self.timeout))


def shown(parsed: list[Any], boxed: str = "") -> str:
    """A readable form of an extracted answer (the \\boxed{} content, else math-verify's matched string)."""
    if boxed:
        return boxed
    strings = [p for p in parsed if isinstance(p, str)]
    return strings[-1] if strings else (str(parsed[0]) if parsed else "")
