"""What every selector shares: eligibility, ranking keys, stratified allocation, seeded draws, composition.

A selector is a pure function from a scores table (pandas, one row per scored pool row, see
``scores.parquet``) to a :class:`Selection`: the chosen pool rows and the facts a manifest records. Nothing
here reads or writes files, so the same table, parameters and seed always give the same rows.

Seed protocol (shared by every strategy, so ``zpd`` and ``random`` with one seed are comparable): candidates
are ordered by pool row; one ``numpy.random.default_rng(seed)`` draws ``rng.choice(len(candidates), k,
replace=False)``; with stratification the strata are visited in sorted name order with that one generator.
The chosen rows are returned in ascending pool-row order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.options.select import (  # their one home
    COMPOSITION_COLUMNS,
    KEY_DEFINITIONS,
    OVER_LENGTH,
    RATIO_KEYS,
    STRATIFY_COLUMNS,
)

KEYS = ("loss_mean", "loss_first_100", "loss_first_1000", "loss_length_adjusted", *RATIO_KEYS)
REQUIRED_COLUMNS = ("id", "row", "n_response_tokens", "loss_mean", "truncated")


@dataclass
class Selection:
    """Chosen pool rows (ascending) and their ids, plus JSON-ready facts for the manifest."""

    rows: np.ndarray
    ids: list[str]
    facts: dict[str, Any] = field(default_factory=dict)


def check_parameters(n: int, key: str, stratify: str, over_length: str) -> None:
    if n <= 0:
        raise UserError(f"--n must be a positive number of rows, got {n}")
    if key not in KEYS:
        raise UserError(f"unknown key {key!r}; choose one of {', '.join(KEYS)}")
    if stratify and stratify not in STRATIFY_COLUMNS:
        raise UserError(f"unknown --stratify {stratify!r}; choose one of {', '.join(STRATIFY_COLUMNS)} (or none)")
    if over_length not in OVER_LENGTH:
        raise UserError(f"unknown --over-length {over_length!r}; choose one of {', '.join(OVER_LENGTH)}")


def check_key_columns(columns, key: str, source: str = "the scores table") -> None:
    """A clear error when ``source`` lacks a column a ratio key (``rsr``, ``lark``…) needs: the rank and Brier
    columns exist only in tables scored since ``data-select score`` stores them; such a table must be scored again."""
    missing = [c for c in RATIO_KEYS.get(key, ()) if c not in columns]
    if missing:
        raise UserError(f"--key {key} needs column(s) {missing} of {source}, which lacks them (as every table scored "
                        "before `data-select score` stored the rank and top-K Brier statistics does). Re-score the pool "
                        "(the same `data-select score` command with --overwrite, or a new --out) to select by this key.")


def check_table(scores: pd.DataFrame, key: str, stratify: str) -> None:
    check_key_columns(scores.columns, key)
    needed = list(REQUIRED_COLUMNS)
    if key in ("loss_first_100", "loss_first_1000"):
        needed.append(key)
    if stratify:
        needed.append(stratify)
    missing = [c for c in needed if c not in scores.columns]
    if missing:
        hint = " (the pool has no such metadata column)" if stratify in missing else ""
        raise UserError(f"scores table lacks column(s) {missing}{hint}; it has {list(scores.columns)}")
    if scores["row"].duplicated().any():
        dup = scores.loc[scores["row"].duplicated(), "row"].iloc[0]
        raise UserError(f"scores table lists pool row {dup} more than once (merge of overlapping shards?)")


def fit_length_trend(loss_mean: np.ndarray, n_tokens: np.ndarray) -> tuple[float, float]:
    """OLS of loss_mean on log(n_response_tokens): returns (intercept, slope)."""
    x = np.log(n_tokens.astype(np.float64))
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, loss_mean.astype(np.float64), rcond=None)
    return float(intercept), float(slope)


def key_values(table: pd.DataFrame, key: str, trend: tuple[float, float] | None = None) -> np.ndarray:
    """The ranking key per row (float64). ``loss_length_adjusted`` needs the fitted ``trend``; a ratio key
    (``rsr``, ``lark``…) with a zero loss is infinite, so not eligible."""
    if key in RATIO_KEYS:
        num, den = (table[c].to_numpy(np.float64) for c in RATIO_KEYS[key])
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / den
    if key == "loss_length_adjusted":
        assert trend is not None
        n_tok = table["n_response_tokens"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pred = trend[0] + trend[1] * np.log(n_tok)
        return table["loss_mean"].to_numpy(np.float64) - pred
    return table[key].to_numpy(np.float64)


@dataclass
class Eligible:
    """The rows a strategy may draw from (ascending pool row) with their key values."""

    table: pd.DataFrame
    key: np.ndarray
    funnel: dict[str, int]
    key_facts: dict[str, Any]
    over_length_rows: int  # truncated rows among the scored ones (dropped or kept)


def normalized(scores: pd.DataFrame) -> pd.DataFrame:
    """The table in pool-row order, metadata columns as categoricals (fast counting on 100K+ rows)."""
    table = scores.sort_values("row", kind="stable").reset_index(drop=True)
    for col in STRATIFY_COLUMNS:
        if col in table.columns and not isinstance(table[col].dtype, pd.CategoricalDtype):
            table[col] = pd.Categorical(table[col].fillna("").astype(str))
    return table


def eligible_rows(scores: pd.DataFrame, key: str, over_length: str) -> Eligible:
    """Drop over-length rows (unless kept) and rows whose key is not finite; compute the key.

    ``scores`` must come from :func:`normalized`. Over-length rows (``truncated``): LLaMA-Factory would cut
    them at ``cutoff_len`` and train on a trace that lost its final answer, so they are dropped by default
    and counted.
    """
    table = scores
    funnel = {"scored": len(table)}
    truncated = table["truncated"].to_numpy(bool)
    funnel["over_length_dropped"] = int(truncated.sum()) if over_length == "drop" else 0
    if over_length == "drop":
        table = table.loc[~truncated].reset_index(drop=True)
    key_facts: dict[str, Any] = {"name": key, "definition": KEY_DEFINITIONS[key]}
    trend = None
    if key == "loss_length_adjusted":
        loss = table["loss_mean"].to_numpy(np.float64)
        n_tok = table["n_response_tokens"].to_numpy(np.float64)
        ok = np.isfinite(loss) & (n_tok > 0)
        if ok.sum() < 2:
            raise UserError("loss_length_adjusted needs at least 2 rows with a finite loss to fit the length trend")
        trend = fit_length_trend(loss[ok], n_tok[ok])
        key_facts["ols"] = {"model": "loss_mean ~ intercept + slope * log(n_response_tokens)",
                            "intercept": trend[0], "slope": trend[1], "fit_rows": int(ok.sum())}
    values = key_values(table, key, trend)
    finite = np.isfinite(values)
    funnel["non_finite_key"] = int((~finite).sum())
    if not finite.all():
        table, values = table.loc[finite].reset_index(drop=True), values[finite]
    funnel["eligible"] = len(table)
    if not len(table):
        raise UserError(f"no eligible rows to select from ({funnel}); over-length rows can be kept with "
                        "--over-length keep")
    return Eligible(table=table, key=values, funnel=funnel, key_facts=key_facts,
                    over_length_rows=int(truncated.sum()))


def strata_of(table: pd.DataFrame, stratify: str) -> dict[str, np.ndarray]:
    """Positions (into ``table``) of each stratum, strata in sorted name order."""
    codes = table[stratify].cat.codes.to_numpy()
    names = table[stratify].cat.categories
    order = np.argsort(np.asarray(names, dtype=str), kind="stable")
    groups = {str(names[i]): np.flatnonzero(codes == i) for i in order}
    return {k: v for k, v in groups.items() if len(v)}


def largest_remainder(n: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split ``n`` across strata in proportion to ``sizes`` (Hamilton / largest-remainder method).

    Every stratum gets ``floor(n * share)``; the rows left over go to the largest fractional parts, ties to
    the larger stratum, then to the name that sorts first. The quotas sum to ``n`` exactly.
    """
    total = sum(sizes.values())
    if total <= 0:
        return {k: 0 for k in sizes}
    exact = {k: n * v / total for k, v in sizes.items()}
    quota = {k: int(np.floor(e)) for k, e in exact.items()}
    left = n - sum(quota.values())
    order = sorted(sizes, key=lambda k: (-(exact[k] - quota[k]), -sizes[k], k))
    for k in order[:left]:
        quota[k] += 1
    return quota


def draw(rng: np.random.Generator, candidates: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``candidates`` (pool rows, ascending) uniformly without replacement."""
    if k == 0:
        return candidates[:0]
    return candidates[rng.choice(len(candidates), size=k, replace=False)]


def counts(table: pd.DataFrame, column: str) -> dict[str, int]:
    vc = table[column].value_counts()
    return {str(k): int(vc[k]) for k in sorted(vc.index, key=str) if vc[k] > 0}


def composition(stages: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts per category/source/response kind at each stage (e.g. pool, eligible, band, selected)."""
    first = next(iter(stages.values()))
    return {
        col: {stage: counts(t, col) for stage, t in stages.items()}
        for col in COMPOSITION_COLUMNS
        if col in first.columns
    }


def describe_values(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"mean": float(values.mean()), "min": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "p75": float(q[3]), "max": float(q[4])}


def finish(chosen_positions: np.ndarray, elig: Eligible, facts: dict[str, Any], stages: dict[str, pd.DataFrame]
           ) -> Selection:
    """Package chosen positions (into ``elig.table``) as a Selection with summary statistics."""
    positions = np.sort(chosen_positions)
    chosen = elig.table.iloc[positions]
    stages = {**stages, "selected": chosen}
    facts["composition"] = composition(stages)
    facts["stats"] = {
        "key": {stage: describe_values(elig.key[pos]) for stage, pos in
                (("eligible", np.arange(len(elig.table))), ("selected", positions))},
        "n_response_tokens": {stage: describe_values(t["n_response_tokens"].to_numpy(np.float64))
                              for stage, t in (("eligible", elig.table), ("selected", chosen))},
    }
    facts["funnel"]["selected"] = len(positions)
    facts["over_length_rows"] = elig.over_length_rows
    return Selection(rows=chosen["row"].to_numpy(np.int64), ids=chosen["id"].astype(str).tolist(), facts=facts)
