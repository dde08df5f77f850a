"""``data-select select``: scores → a selected subset that LLaMA-Factory can train on by name.

Steps: read ``scores/NAME`` (``scores.parquet``, ``meta.json``, ``rejects.jsonl``), or for pass-cv
``verify/NAME`` (``verified.parquet``; joined by pool row with the scores when ``--scores`` is given); run the strategy
(:mod:`data_selection.selectors`, a pure function of the table, parameters and seed); reload the pool the
scorer recorded in ``meta.json`` and check every selected row still has the id (content hash) it was scored
with; write ``data/NAME.jsonl`` (+ ``.manifest.json`` + ``.README.md`` card, :mod:`data_selection.subset`)
beside the ``dataset_info.json``; register the entry (:mod:`data_selection.registry`).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from data_selection.atomic import write_json_atomic, write_text_atomic
from data_selection.command_line import UserError
from data_selection.options.select import SelectOptions
from data_selection.registry import check_subset_name, pool_file, register_entry, subset_entry
from data_selection.scores_table import SELECT_READ_COLUMNS, load_scored_pool, load_scores
from data_selection.selectors import STRATEGIES
from data_selection.selectors.common import check_key_columns
from data_selection.selectors.pass_cv import join_scores
from data_selection.subset import render_card, selected_examples, subset_paths, write_subset
from data_selection.verify.output import load_verified


def strategy_named(name: str):
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def run_strategy(table, opts: SelectOptions):
    """The strategy ``opts.strategy`` on ``table`` with the options it declares."""
    strategy = strategy_named(opts.strategy)
    if "key" in strategy.parameters and "scores" in strategy.needs:  # name the file a missing key column is from
        check_key_columns(table.columns, opts.key, str(Path(opts.scores) / "scores.parquet"))
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
        return (*load_scores(opts.scores, SELECT_READ_COLUMNS), {})
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

