"""``data-select verify``: a verify score for every (query, response) row of a multi-response pool.

DeepDistill (arXiv 2504.17565; docs/methods.md §4) selects by each query's pass rate and the coefficient of
variation of its responses' verify scores. Pools like AceReason-1.1-SFT hold several R1 responses per prompt
but no scores; this package computes them:

* :mod:`~data_selection.verify.answers`: a trace's think and answer parts and its final answer (the last
  ``\\boxed{}`` after ``</think>``; whole traces are never parsed);
* :mod:`~data_selection.verify.timeout`: a CPU-time limit on one call that library code cannot swallow;
* :mod:`~data_selection.verify.mathcheck`: math-verify's parse and verify under that limit, cached;
* :mod:`~data_selection.verify.grouping`: which rows answer the same query (a key column or a hash of the
  normalised prompt);
* :mod:`~data_selection.verify.judge`: one query's scores, against the reference answer when there is one,
  otherwise against the majority final answer of its responses (our extension);
* :mod:`~data_selection.verify.worker`: one shard of queries, end to end (the unit a worker process runs);
* :mod:`~data_selection.verify.checker_env`: grading in another environment's interpreter (``--checker_python``,
  e.g. ``.venv-verify`` with math-verify 0.9.0), the checker being part of the output's identity;
* :mod:`~data_selection.verify.runner`: the command: pool → shards → processes → ``verified.parquet``
  (resumable, same pool record and row ids as ``data-select score``);
* :mod:`~data_selection.verify.output`: reading a finished output folder.

The quality measures the selector filters on (repetition, missing think/answer part) are computed here too,
while the text is at hand: :mod:`data_selection.quality`.
"""
