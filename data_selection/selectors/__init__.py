"""Selection strategies: pure functions from score tables to chosen rows + manifest facts.

``STRATEGIES`` is the registry ``data-select select --strategy`` is built from (its choices and help text
too). A new strategy is one module in this folder and one :class:`Strategy` entry below: the function takes
the scores DataFrame and keyword parameters, each named after a ``SelectOptions`` field listed in
``parameters``, and returns a :class:`~data_selection.selectors.common.Selection`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_selection.match_target import load_match_target
from data_selection.scoring.checkpoint_layout import load_temp_scores
from data_selection.selectors.common import KEYS, Selection
from data_selection.selectors.matched_random import select_matched_random
from data_selection.selectors.pass_cv import select_pass_cv
from data_selection.selectors.random import select_random
from data_selection.selectors.temp import select_temp
from data_selection.selectors.zpd import select_zpd

# Options every loss-table strategy takes; the others in ``parameters`` are the strategy's own.
COMMON_PARAMETERS = ("n", "seed", "key", "stratify", "over_length")


@dataclass(frozen=True)
class Strategy:
    name: str
    select: Callable[..., Selection]
    summary: str  # one line for --help
    parameters: tuple[str, ...]  # SelectOptions fields passed to ``select`` as keywords
    needs: tuple[str, ...] = ("scores",)  # SelectOptions input folders that must be given (scores, verified)
    # parameters that name files: loader(SelectOptions) -> the object ``select`` receives instead of the path
    loaders: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    @property
    def own_parameters(self) -> tuple[str, ...]:
        return tuple(p for p in self.parameters if p not in COMMON_PARAMETERS)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("zpd", select_zpd, "drop the easiest --low and hardest 1 - --high by the key, then uniform",
                 (*COMMON_PARAMETERS, "low", "high")),
        Strategy("random", select_random, "uniform over the eligible pool (the baseline)", COMMON_PARAMETERS),
        Strategy("matched-random", select_matched_random, "uniform within the length bins of another subset "
                 "(--match SUBSET): a random baseline with the same response-length distribution",
                 ("n", "seed", "key", "over_length", "match", "match_on", "match_bins", "borrow", "include_matched"),
                 loaders={"match": lambda opts: _load_match(opts.match, opts.dataset_info)}),
        Strategy("temp", select_temp, "TEMP: high-loss cluster at a noise checkpoint, then diverse picks along a "
                 "fine-tuning direction (needs --temp-scores; docs/methods.md §3)",
                 ("n", "seed", "over_length", "temp_scores", "temp_checkpoint", "temp_allocation", "temp_ranking",
                  "temp_init_label_num", "temp_shortfall"),
                 loaders={"temp_scores": lambda opts: _load_temp(opts.temp_scores, opts.scores)}),
        Strategy("pass-cv", select_pass_cv, "DeepDistill: queries whose verified responses disagree most (CV > "
                 "CV_t, highest first), one passing response each (--stage 1: all of them); needs --verified",
                 ("n", "seed", "pass_thresholds", "cv_thresholds", "other_keep_prob", "max_ppl", "max_repeats",
                  "require_parts", "over_length", "stage", "responses_per_query", "fill_low_cv", "repeat_scope"),
                 needs=("verified",)),
    )
}


def _load_match(subset: str, dataset_info: str):
    return load_match_target(subset, dataset_info)


def _load_temp(folder: str, scores: str):
    return load_temp_scores(folder, scores)


def strategy_help() -> str:
    return "; ".join(f"{s.name}: {s.summary}" for s in STRATEGIES.values())


__all__ = ["KEYS", "STRATEGIES", "Selection", "Strategy", "select_matched_random", "select_pass_cv", "select_random", "select_temp",
           "select_zpd", "strategy_help"]
