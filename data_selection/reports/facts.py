"""What a selection report shows, computed once: the selections, the eligible pool and each selection's rows in it.

:func:`load_selection` reads a subset ``data-select select`` wrote (its manifest and ids); :func:`loss_context`
recomputes the eligible pool of the first selection's key and over-length policy from the scores table, with
each selection's rows (and a random reference of the same size and seed when no selection is random);
:func:`pass_cv_queries` the query table of a pass-cv selection. The markdown, the PNGs and ``report.html``
all draw from these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_selection.command_line import UserError
from data_selection.jsonl import jsonl_lines
from data_selection.scores_table import SELECT_READ_COLUMNS, load_scores
from data_selection.selectors import select_random
from data_selection.selectors.common import eligible_rows, normalized
from data_selection.selectors.pass_cv import parse_thresholds, query_table
from data_selection.subset import subset_paths
from data_selection.verify.output import load_verified


@dataclass
class Loaded:
    name: str
    manifest: dict[str, Any]
    ids: set[str]


def load_selection(dataset_dir: Path, name: str) -> Loaded:
    paths = subset_paths(dataset_dir, name)
    if not paths["manifest"].exists():
        raise UserError(f"{paths['manifest']} not found: {name!r} is not a subset made by `data-select select` "
                        f"in {dataset_dir}")
    manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
    data = dataset_dir / manifest["file_name"]
    if not data.exists():
        raise UserError(f"{data} not found (named by {paths['manifest']})")
    ids = set()
    for _, line in jsonl_lines(data):
        ids.add(json.loads(line)["id"])
    return Loaded(name, manifest, ids)


@dataclass
class LossContext:
    """What the loss plots (PNG and report.html) draw: the eligible pool and each selection's rows in it."""

    scores: Any  # the whole scores table, normalized (pool-row order)
    elig: Any  # data_selection.selectors.common.Eligible under the first manifest's key and over-length policy
    key: str
    over_length: str
    series: list[tuple[str, np.ndarray]]  # (label, key values) per selection (+ the random reference)
    tables: list[tuple[str, Any]]  # (label, eligible rows) per selection (+ the random reference)
    reference: str
    edges: list[tuple[str, float]]
    band: tuple[float, float] | None


def loss_context(opts, selections: list[Loaded], scores_dir: str) -> LossContext:
    """``opts``: a :class:`data_selection.options.report.ReportOptions` (its ``random_reference``)."""
    first = selections[0].manifest
    table, _, _ = load_scores(scores_dir, SELECT_READ_COLUMNS)
    params = first["parameters"]
    key, over_length = params.get("key") or "loss_mean", params.get("over_length", "drop")
    scores = normalized(table)
    elig = eligible_rows(scores, key, over_length)
    pool = elig.table
    series, tables = [], []
    for s in selections:
        mask = pool["id"].isin(s.ids).to_numpy()
        if mask.sum() < len(s.ids):
            missing = len(s.ids) - int(mask.sum())
            print(f"warning: {missing} row(s) of {s.name} are not among the eligible rows of {scores_dir} "
                  f"({key}, over-length {over_length}); they are left out of the plots")
        series.append((s.name, elig.key[mask]))
        tables.append((s.name, pool.loc[mask]))
    reference = ""
    if opts.random_reference and all(s.manifest["strategy"] != "random" for s in selections):
        n = min(params["n"], len(pool))
        ref = select_random(table, n=n, seed=params["seed"], key=key, over_length=over_length)
        mask = pool["row"].isin(ref.rows).to_numpy()
        series.append((f"random reference (seed {params['seed']})", elig.key[mask]))
        tables.append((f"random reference (seed {params['seed']})", pool.loc[mask]))
        reference = (f"The random reference is a uniform draw of {n:,} eligible rows with seed {params['seed']} "
                     "(the random baseline's protocol), computed for this report.")
    th = first.get("thresholds", {})
    edges = []
    if "low_value" in th:
        edges = [(f"q{th['low_quantile']:g}", th["low_value"]), (f"q{th['high_quantile']:g}", th["high_value"])]
    band = (th["low_value"], th["high_value"]) if "low_value" in th and key == "loss_mean" else None
    return LossContext(scores, elig, key, over_length, series, tables, reference, edges, band)


def pass_cv_queries(s: Loaded):
    """(query table of the verify folder a pass-cv manifest names, mask of the queries the selection took)."""
    m = s.manifest
    table, _, _ = load_verified(m["verified"]["dir"])
    p = m["parameters"]
    q = query_table(table, parse_thresholds(p["pass_thresholds"], "pass_thresholds"),
                    parse_thresholds(p["cv_thresholds"], "cv_thresholds"))
    return q, q.index.isin(table.loc[table["id"].isin(s.ids), "query"].unique())
