"""``llamafactory-ext doctor``: a preflight of the machine (and of a recipe or study) before a long GPU run.

Python API: ``run_checks(config_path=None) -> list[Check]`` (``Check``: name, status ok|warn|blocker|skip,
detail, fix). Probes, one module per group: :mod:`.gpu`, :mod:`.kernels`, :mod:`.packages`, :mod:`.storage`,
:mod:`.hub`, :mod:`.recipe`; the table and the command: :mod:`.runner`.
"""

from __future__ import annotations

from llamafactory_ext.doctor.runner import run_checks
from llamafactory_ext.doctor.target import Check

__all__ = ["Check", "run_checks"]
