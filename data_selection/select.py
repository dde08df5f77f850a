"""``data-select select``: scores → a selected subset that LLaMA-Factory can train on by name.

Steps: read ``scores/NAME`` (``scores.parquet``, ``meta.json``, ``rejects.jsonl``), or for pass-cv
``verify/NAME`` (``verified.parquet``; joined by pool row with the scores when ``--scores`` is given); run the strategy
(:mod:`data_selection.selectors`, a pure function of the table, parameters and seed); reload the pool the
scorer recorded in ``meta.json`` and check every selected row still has the id (content hash) it was scored
with; write ``data/NAME.jsonl`` (+ ``.manifest.json`` + ``.README.md`` card, :mod:`data_selection.subset`)
beside the ``dataset_info.json``; register the entry (:mod:`data_selection.registry`).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from data_selection.command_line import UserError
from data_selection.jsonl import read_jsonl
from data_selection.quality import REQUIRE_PARTS
from data_selection.selectors import STRATEGIES, strategy_help
from data_selection.selectors.common import KEY_DEFINITIONS, OVER_LENGTH, STRATIFY_COLUMNS
from data_selection.selectors.pass_cv import PASS_THRESHOLDS
from data_selection.selectors.temp import SHORTFALLS
from data_selection.selectors.temp_allocation import ALLOCATIONS
from data_selection.selectors.temp_difficulty import INIT_LABEL_NUM
from data_selection.selectors.temp_diversity import RANKINGS

SCORE_READ_COLUMNS = ("id", "row", "n_prompt_tokens", "n_response_tokens", "loss_sum", "loss_mean",
                      "loss_first_100", "loss_first_1000", "truncated", "category", "source")


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
                                                   "choices": tuple(STRATEGIES)})
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


def load_scores(scores_dir: str | Path, columns: tuple[str, ...] = SCORE_READ_COLUMNS):
    """(scores DataFrame without per-token losses, meta dict, rejects list) of a scoring output folder."""
    import pyarrow.parquet as pq

    d = Path(scores_dir)
    if not d.is_dir():
        raise UserError(f"scores folder {d} not found (run `data-select score ... --out {d}` first)")
    parquet, meta_path = d / "scores.parquet", d / "meta.json"
    for p in (meta_path, parquet):
        if not p.exists():
            raise UserError(f"{p} not found: is {d} a finished `data-select score` output? "
                            f"(unfinished runs: re-run the score command or `data-select merge --scores {d}`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{meta_path}: not valid JSON ({err})") from err
    try:
        names = pq.read_schema(parquet).names
        table = pq.read_table(parquet, columns=[c for c in columns if c in names]).to_pandas()
    except Exception as err:
        raise UserError(f"{parquet}: cannot be read as parquet ({type(err).__name__}: {err})") from err
    rejects_path = d / "rejects.jsonl"
    rejects = []
    if rejects_path.exists():
        rejects = read_jsonl(rejects_path)
    return table, meta, rejects


def strategy_named(name: str):
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def run_strategy(table, opts: SelectOptions):
    """The strategy ``opts.strategy`` on ``table`` with the options it declares."""
    strategy = strategy_named(opts.strategy)
    if opts.temp_scores and "temp_scores" not in strategy.parameters:
        raise UserError(f"--temp-scores is for --strategy temp, not {opts.strategy}")
    if opts.match and "match" not in strategy.parameters:
        raise UserError(f"--match is for --strategy matched-random (or random), not {opts.strategy}")
    kwargs = {p: getattr(opts, p) for p in strategy.parameters}
    for p, load in strategy.loaders.items():
        kwargs[p] = load(opts)
    return strategy.select(table, **kwargs)


def load_inputs(opts: SelectOptions):
    """(strategy input table, meta of the folder whose pool record names the rows, rejects, extra manifest entries).

    Loss strategies read ``--scores``; pass-cv reads ``--verified`` and joins ``--scores`` when given.
    """
    strategy = strategy_named(opts.strategy)
    missing = [f"--{f}" for f in strategy.needs if not getattr(opts, f)]
    if missing:
        raise UserError(f"--strategy {opts.strategy} needs {' and '.join(missing)}")
    if "verified" not in strategy.needs:
        return (*load_scores(opts.scores), {})
    from data_selection.selectors.pass_cv import join_scores
    from data_selection.verify.output import load_verified

    table, meta, rejects = load_verified(opts.verified)
    extra: dict[str, Any] = {"verified": {"dir": str(opts.verified), "counts": meta.get("counts", {})},
                             "verifier": meta, "scores": {"dir": opts.scores or None}, "scorer": None}
    if opts.scores:
        scores, scores_meta, _ = load_scores(opts.scores)
        ours, theirs = meta["pool"].get("fingerprint"), scores_meta.get("pool", {}).get("fingerprint")
        if ours and theirs and ours != theirs:
            raise UserError(f"{opts.verified} and {opts.scores} were made from different pools (fingerprints {ours} "
                            f"and {theirs}): same dataset, max_samples and --system_prompt are needed to join them")
        table = join_scores(table, scores)
        extra.update(scores={"dir": str(opts.scores), "counts": scores_meta.get("counts", {})}, scorer=scores_meta)
    return table, meta, rejects, extra


def _recipe(opts: SelectOptions) -> str:
    """The command that re-makes this subset: the strategy's own options always, shared ones when not default."""
    strategy = strategy_named(opts.strategy)
    inputs = [x for f in ("verified", "scores") if getattr(opts, f) for x in (f"--{f}", getattr(opts, f))]
    parts = ["data-select", "select", *inputs, "--strategy", opts.strategy, "--n", str(opts.n),
             "--seed", str(opts.seed), "--name", opts.name]
    for p in strategy.own_parameters:
        parts += [f"--{p.replace('_', '-')}", str(getattr(opts, p))]
    defaults = {f.name: f.default for f in fields(SelectOptions)}
    for p in ("key", "stratify", "over_length"):
        if p in strategy.parameters and getattr(opts, p) != defaults[p]:
            parts += [f"--{p.replace('_', '-')}", str(getattr(opts, p))]
    return shlex.join(parts)


def load_scored_pool(meta: dict[str, Any], scores_dir: str | Path):
    """The pool the scorer read, loaded again the same way (spec recorded in meta.json)."""
    from data_selection.sources import PoolSpec, default_num_proc, load_pool

    if "pool" not in meta:
        raise UserError(f"{Path(scores_dir) / 'meta.json'}: no 'pool' record; cannot find the rows' text")
    record = dict(meta["pool"])
    if not record.get("columns"):
        # Pool.describe() reports the *resolved* formatting under the spec's "formatting" key; a spec that
        # gave no columns had its formatting detected, so it must be detected again.
        record["formatting"] = ""
    spec = PoolSpec.from_dict(record)
    try:
        return load_pool(spec, num_proc=default_num_proc())
    except UserError as err:
        raise UserError(f"cannot reload the scored pool ({spec.dataset!r}, dataset_dir {spec.dataset_dir!r}, as "
                        f"recorded in {Path(scores_dir) / 'meta.json'}): {err}") from err


MANIFEST_FACTS = ("strategy", "parameters", "key", "thresholds", "funnel", "over_length_rows", "composition", "stats")


def build_manifest(opts: SelectOptions, selection, meta: dict[str, Any], rejects: list, pool_desc: dict[str, Any],
                   file_name: str, formatting: str, columns: dict[str, str], sha256: str,
                   fingerprint_now: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    counts = meta.get("counts", {})
    facts = selection.facts
    funnel = {"pool": int(counts.get("rows", pool_desc.get("num_rows", 0))),
              "rejected": int(counts.get("rejected", len(rejects))), **facts["funnel"]}
    more = {**(extra or {}), **{k: v for k, v in facts.items() if k not in MANIFEST_FACTS}}
    return {
        "name": opts.name,
        "created_by": "data-select",
        "file_name": file_name,
        "formatting": formatting,
        "columns": columns,
        "num_rows": len(selection.ids),
        "sha256": sha256,
        "source": {**pool_desc, "fingerprint_at_selection": fingerprint_now},
        "scores": {"dir": str(opts.scores), "counts": counts},
        "scorer": meta,
        "strategy": facts["strategy"],
        "parameters": facts["parameters"],
        "key": facts["key"],
        "thresholds": facts["thresholds"],
        "funnel": funnel,
        "over_length_rows": facts["over_length_rows"],
        "composition": facts["composition"],
        "stats": facts["stats"],
        # strategy-specific facts (temp's checkpoints/clusters/allocations, pass-cv's query funnel) and warnings
        **{k: v for k, v in more.items() if k not in ("scores", "scorer", "upstream_commands")},
        # the commands that made the strategy's other inputs (temp's perturb/score-checkpoints), then this one
        "recipe": " && ".join([*facts.get("upstream_commands", []), _recipe(opts)]),
    } | {k: more[k] for k in ("scores", "scorer") if k in more}


def run_select(opts: SelectOptions) -> dict[str, Any]:
    from data_selection.atomic import write_json_atomic, write_text_atomic
    from data_selection.registry import check_subset_name, pool_file, register_entry, subset_entry
    from data_selection.subset import render_card, selected_examples, subset_paths, write_subset

    if opts.strategy == "random" and opts.match:  # `--strategy random --match SUBSET` is the matched baseline
        opts = replace(opts, strategy="matched-random")
    if not opts.name or "/" in opts.name or opts.name.startswith("."):
        raise UserError(f"--name {opts.name!r} must be a plain name (it becomes data/NAME.jsonl)")
    info_path = Path(opts.dataset_info)
    table, meta, rejects, extra = load_inputs(opts)
    # before the slow part: a corrupted file, an entry or a file (the pool itself) we may not replace
    check_subset_name(info_path, opts.name, "select", opts.force, opts.register, pool_file(meta.get("pool")))
    selection = run_strategy(table, opts)
    if len(selection.rows) == 0:  # an empty subset is not a dataset: say why, write and register nothing
        steps = " → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in selection.facts.get("funnel", {}).items())
        raise UserError(f"--strategy {opts.strategy} found 0 eligible rows ({steps}); nothing was written or "
                        f"registered for {opts.name!r}: loosen the strategy's thresholds or check its input")
    pool = load_scored_pool(meta, opts.verified if extra else opts.scores)
    recorded = meta["pool"].get("fingerprint")
    if recorded and recorded != pool.fingerprint:
        print(f"warning: pool fingerprint {pool.fingerprint} differs from the scored one {recorded}; the selected "
              "rows are checked one by one", file=sys.stderr)
    examples = selected_examples(pool, selection.rows, selection.ids)
    paths = subset_paths(info_path.parent, opts.name)
    formatting, columns, sha = write_subset(paths["data"], examples, pool.meta_columns)
    file_name = paths["data"].relative_to(info_path.parent).as_posix()
    manifest = build_manifest(opts, selection, meta, rejects, meta["pool"], file_name, formatting, columns, sha,
                              pool.fingerprint, extra)
    write_json_atomic(paths["manifest"], manifest)
    write_text_atomic(paths["card"], render_card(manifest))
    action = "not registered"
    if opts.register:
        entry = subset_entry(file_name, formatting, columns,
                             manifest=paths["manifest"].relative_to(info_path.parent).as_posix(),
                             recipe=manifest["recipe"])
        action = register_entry(info_path, opts.name, entry, force=opts.force)
    return {"manifest": manifest, "paths": {k: str(v) for k, v in paths.items()}, "registered": action}


def cli_select(opts: SelectOptions) -> int:
    out = run_select(opts)
    m = out["manifest"]
    for w in m.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    f = m["funnel"]
    print(" → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in f.items()))
    if "query_funnel" in m:
        print("queries: " + " → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in m["query_funnel"].items()))
    if m.get("note"):
        print(f"note: {m['note']}", file=sys.stderr)
    if "matching" in m:
        mt = m["matching"]
        print(f"matched {mt['target']['source']}: {len(mt['cells'])} cells, borrowed "
              f"{sum(b['rows'] for b in mt['borrowed'])} row(s); KS of lengths {mt['ks_lengths']['statistic']:.3f}")
    th = m["thresholds"]
    if "low_value" in th:
        print(f"band of {m['parameters']['key']}: [{th['low_value']:.4f}, {th['high_value']:.4f}]")
    print(f"subset: {out['paths']['data']} ({m['num_rows']:,} rows, {m['formatting']})\n"
          f"manifest: {out['paths']['manifest']}\ncard: {out['paths']['card']}\n"
          f"{opts.dataset_info}: {out['registered']} entry {opts.name!r}")
    return 0
