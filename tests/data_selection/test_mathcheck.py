"""mathcheck names the checker that grades: a verify output records which math-verify (and LaTeX parser) it used."""

from __future__ import annotations

import importlib.metadata

from data_selection.verify import mathcheck
from data_selection.verify.mathcheck import MathChecker, checker_label, checker_version


def test_the_checker_is_named_with_its_installed_versions():
    mv, parser = importlib.metadata.version("math-verify"), importlib.metadata.version("latex2sympy2_extended")
    assert checker_version() == mv
    assert checker_label() == f"math-verify {mv} (latex2sympy2_extended {parser})"
    checker = MathChecker(timeout=5.0)
    assert (checker.name, checker.version) == ("math-verify", mv)


def test_a_missing_checker_is_said_so(monkeypatch):
    monkeypatch.setattr(mathcheck, "_version", lambda dist: None)
    for cached in (checker_label, checker_version):
        cached.cache_clear()
    try:
        assert checker_label() == "math-verify not installed (latex2sympy2_extended not installed)"
    finally:
        for cached in (checker_label, checker_version):
            cached.cache_clear()
