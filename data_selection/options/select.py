"""Options of ``data-select select`` (the command: :mod:`data_selection.commands.select`; the work:
:mod:`data_selection.select`).

Light: the CLI parses a command line into :class:`SelectOptions` before pandas or the selectors load, and a study
parses every planned ``select`` step with it when the study is loaded (llamafactory_ext/study/check.py). So the
names the options offer (strategies, ranking keys, TEMP's rules…) are written here as plain values;
tests/data_selection/test_select_options.py checks they equal the selectors' own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --strategy: each strategy's one line for --help (data_selection.selectors.STRATEGIES: name -> Strategy.summary)
STRATEGY_SUMMARIES = {
    "zpd": "drop the easiest --low and hardest 1 - --high by the key, then uniform",
    "random": "uniform over the eligible pool (the baseline)",
    "matched-random": "uniform within the length bins of another subset (--match SUBSET): a random baseline with the "
                      "same response-length distribution",
    "temp": "TEMP: high-loss cluster at a noise checkpoint, then diverse picks along a fine-tuning direction (needs "
            "--temp-scores; docs/methods.md §3)",
    "pass-cv": "DeepDistill: queries whose verified responses disagree most (CV > CV_t, highest first), one passing "
               "response each (--stage 1: all of them); needs --verified",
}
# names and defaults the selectors take from here (their one home: this module is light, so the CLI and a
# study's check read them without pandas; selectors/common.py, pass_cv.py, temp*.py and quality.py import them)
KEY_DEFINITIONS = {
    "loss_mean": "mean response-token NLL under the base model (S/T; the ranking key of the method)",
    "loss_first_100": "mean NLL over the first min(100, T) response tokens (length-aware variant)",
    "loss_first_1000": "mean NLL over the first min(1000, T) response tokens (length-aware variant)",
    "loss_length_adjusted": "residual of loss_mean after an OLS fit on log(n_response_tokens) over the eligible "
    "pool (our extension: removes the linear length trend of the mean loss of long traces)",
    "rsr": "RSR: rank_mean / loss_mean, mean target-token rank over mean NLL (arXiv 2601.14249; needs scores with "
    "the rank columns)",
    "rsr_first_100": "rank_first_100 / loss_first_100 (RSR over the first min(100, T) response tokens)",
    "rsr_first_1000": "rank_first_1000 / loss_first_1000 (RSR over the first min(1000, T) response tokens)",
    "lark": "LARK: brier_topk_mean / loss_mean, top-K Brier score over cross-entropy (arXiv 2605.30651; needs "
    "scores with the Brier columns)",
    "lark_first_100": "brier_topk_first_100 / loss_first_100 (LARK over the first min(100, T) response tokens)",
    "lark_first_1000": "brier_topk_first_1000 / loss_first_1000 (LARK over the first min(1000, T) response tokens)",
}
# ratio keys: key -> (numerator, denominator) columns of the scores table (the numerators are optional columns)
RATIO_KEYS = {f"{name}{suffix}": (f"{num}{suffix or '_mean'}", f"loss{suffix or '_mean'}")
              for name, num in (("rsr", "rank"), ("lark", "brier_topk")) for suffix in ("", "_first_100", "_first_1000")}
STRATIFY_COLUMNS = ("category", "source")
COMPOSITION_COLUMNS = (*STRATIFY_COLUMNS, "response_kind")  # a manifest's composition tables, when present
OVER_LENGTH = ("drop", "keep")
PASS_THRESHOLDS = "math=0.99,code=0.99,instruction_following=0.99,science=4.99,other=0.7"
REQUIRE_PARTS = ("both", "answer", "none")
SHORTFALLS = ("take", "fill", "error")
ALLOCATIONS = ("official", "water-filling")
RANKINGS = ("signed", "abs")
INIT_LABEL_NUM = 1000


def strategy_help() -> str:
    return "; ".join(f"{name}: {summary}" for name, summary in STRATEGY_SUMMARIES.items())


@dataclass
class SelectOptions:
    name: str = field(metadata={"help": "Subset name: data/NAME.jsonl and the dataset_info.json entry."})
    scores: str = field(
        default="",
        metadata={"help": "Scores folder written by `data-select score` (scores/NAME); needed by zpd and random, "
                  "optional for pass-cv (perplexity filter, over-length rows)."},
    )
    verified: str = field(
        default="", metadata={"help": "pass-cv: verify folder written by `data-select verify` (verify/NAME)."}
    )
    strategy: str = field(default="zpd", metadata={"help": f"Strategy. {strategy_help()}.",
                                                   "choices": tuple(STRATEGY_SUMMARIES)})
    n: int = field(default=15000, metadata={"help": "Rows to select."})
    seed: int = field(default=42, metadata={"help": "Seed of the draw (numpy default_rng)."})
    low: float = field(default=0.25, metadata={"help": "zpd: share of the eligible pool dropped as too easy."})
    high: float = field(default=0.75, metadata={"help": "zpd: upper edge of the band (1 - high is dropped as too hard)."})
    key: str = field(
        default="loss_mean",
        metadata={"help": "Ranking key. " + "; ".join(f"{k}: {v}" for k, v in KEY_DEFINITIONS.items()) + ".",
                  "choices": tuple(KEY_DEFINITIONS)},
    )
    stratify: str = field(
        default="", metadata={"help": "Keep the pool's proportions of this column (default: no stratification).",
                              "choices": ("", *STRATIFY_COLUMNS)}
    )
    over_length: str = field(
        default="drop",
        metadata={"help": "Rows LLaMA-Factory would truncate at cutoff_len (losing the final answer).",
                  "choices": OVER_LENGTH},
    )
    pass_thresholds: str = field(
        default=PASS_THRESHOLDS,
        metadata={"help": "pass-cv: a response passes when its verify score exceeds its category's value "
                  "(CATEGORY=VALUE list; other categories use other's)."},
    )
    cv_thresholds: str = field(
        default="0",
        metadata={"help": "pass-cv: Stage I keeps a query whose CV exceeds this (one NUMBER, or CATEGORY=VALUE list; "
                  "unpublished in the paper)."},
    )
    other_keep_prob: float = field(
        default=0.5, metadata={"help": "pass-cv: an 'other' or multi-turn query failing the CV test is kept with this "
                               "probability (seeded)."}
    )
    max_ppl: float = field(
        default=20.0, metadata={"help": "pass-cv: drop responses above this perplexity (0 = off; needs --scores or a "
                                "ppl column)."}
    )
    max_repeats: int = field(
        default=20, metadata={"help": "pass-cv: drop responses holding a 20-word string repeated more often "
                              "(see --repeat_scope; 0 = off)."}
    )
    require_parts: str = field(
        default="both", metadata={"help": "pass-cv: parts a response must have (both = think and answer).",
                                  "choices": REQUIRE_PARTS}
    )
    stage: int = field(
        default=2, metadata={"help": "pass-cv: 2 = the paper's Stage II (queries with CV > CV_t, highest first); "
                             "1 = Stage I's output (every query Stage I kept, with its passing responses).",
                             "choices": (1, 2)}
    )
    responses_per_query: str = field(
        default="auto", metadata={"help": "pass-cv: responses written per chosen query: auto (the paper's stage: "
                                  "1 in Stage II, all in Stage I), all, or N; --n counts rows."}
    )
    fill_low_cv: bool = field(
        default=False, metadata={"help": "pass-cv Stage II: top the budget up with the low-CV queries Stage I kept "
                                 "by --other_keep_prob (the paper does not; a shortfall is reported instead)."}
    )
    repeat_scope: str = field(
        default="dataset", metadata={"help": "pass-cv: where a 20-word string's repetitions are counted for "
                                     "--max_repeats: dataset (the paper: across the pool) or response (within it).",
                                     "choices": ("dataset", "response")}
    )
    dataset_info: str = field(
        default="dataset_info.json",
        metadata={"help": "dataset_info.json to register in; the subset goes to data/ beside it."},
    )
    temp_scores: str = field(default="", metadata={
        "help": "temp: checkpoint scores folder written by `data-select score-checkpoints` (scores/NAME_temp)."})
    temp_checkpoint: int = field(default=0, metadata={
        "help": "temp: Gaussian checkpoint of the difficulty filter (0 = the one whose mean L^(100) is 2-3x the "
                "base model's)."})
    temp_allocation: str = field(default="official", metadata={
        "help": "temp: budget split over domains and sources. official = the official Selector (floor shares, one "
                "smallest-first capping pass, leftovers to the largest groups); water-filling = capped excess "
                "re-split among all uncapped groups (docs/methods.md §3).", "choices": ALLOCATIONS})
    temp_ranking: str = field(default="signed", metadata={
        "help": "temp: rank inside a cluster by L_last - L_first signed by the cluster's mean change (signed, the "
                "official code) or by |L_last - L_first| (abs).", "choices": RANKINGS})
    temp_init_label_num: int = field(default=INIT_LABEL_NUM, metadata={
        "help": "temp: the difficulty filter keeps whole a source of <= this // (sources left) rows, smallest first "
                "(the official init_label_num; 0 = k-means split every source)."})
    temp_shortfall: str = field(default="take", metadata={
        "help": "temp: when fewer rows survive the difficulty filter than --n: take = all of them, a smaller subset "
                "(the official Selector: every group capped at its size; the manifest records the shortfall); "
                "fill = all of them plus a uniform draw of the rest from the other eligible rows; error = stop, "
                "writing nothing.", "choices": SHORTFALLS})
    match: str = field(default="", metadata={
        "help": "matched-random (or random): the subset whose response-length distribution to match: a registered "
                "name (in --dataset_info), its .manifest.json, its subset file or an ids file (one id a line)."})
    match_on: str = field(default="n_response_tokens", metadata={
        "help": "matched-random: columns to match, n_response_tokens plus optionally source or category "
                "(e.g. n_response_tokens,source: length bins within each source)."})
    match_bins: int = field(default=10, metadata={
        "help": "matched-random: quantile bins of the matched subset's response lengths."})
    borrow: bool = field(default=False, metadata={
        "help": "matched-random: a bin with too few candidates takes its shortfall from the nearest length bins "
                "(default: stop with an error naming the bin)."})
    include_matched: bool = field(default=False, metadata={
        "help": "matched-random: the matched subset's own rows may be drawn too (default: excluded)."})
    register: bool = field(default=True, metadata={"help": "Add/update the dataset_info.json entry."})
    force: bool = field(default=False, metadata={"help": "Replace a dataset_info.json entry data-select did not create."})

