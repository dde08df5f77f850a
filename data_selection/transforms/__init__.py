"""Transforms: commands that edit the rows of a subset instead of choosing them.

``data-select prune-steps`` (LIMOPro PIR step pruning, docs/methods.md §5): :mod:`.steps` splits and types the
reasoning, :mod:`.pir` measures each functional step's importance to the answer, :mod:`.prune` decides what
goes, :mod:`.runner` is the resumable multi-GPU job, :mod:`.step_table` the per-step table its shards hold,
:mod:`.output` writes and registers the pruned subset (its report: :mod:`data_selection.reports.pruned`).
"""
