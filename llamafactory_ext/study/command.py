"""The old home of ``llamafactory-ext study``'s entry, kept for tests/llamafactory_ext/test_doctor.py: the entry is
:func:`llamafactory_ext.commands.study.run`, the options :class:`llamafactory_ext.options.study.StudyOptions`."""

from __future__ import annotations

from llamafactory_ext.commands.study import run as cli_study
from llamafactory_ext.options.study import StudyOptions

__all__ = ["StudyOptions", "cli_study"]
