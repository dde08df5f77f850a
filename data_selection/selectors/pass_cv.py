"""DeepDistill pass-rate + coefficient-of-variation selection (arXiv 2504.17565; docs/methods.md §4).

Input: the verify table (``data-select verify``: one row per response, ``query``, ``category``,
``verify_score``, quality columns), optionally joined with ``scores.parquet`` (:func:`join_scores`) for the
perplexity filter and over-length rows.

1. **Per query** (its scored responses; NaN scores are left out and counted): a response passes when its score
   exceeds its category's threshold (> 0.99 math, code, instruction following; > 4.99 science, scores in
   [0, 5]; > 0.7 anything else); ``pass_rate`` = share passing; ``cv`` = population σ / μ of the scores.
2. **Stage I**: drop a query whose best response fails. Keep it when ``cv`` > CV_t of its category (the paper
   does not publish CV_t: ``--cv_thresholds``, default 0, i.e. keep queries whose responses disagree);
   otherwise drop it, except that an "other" or multi-turn query is kept with probability
   ``--other_keep_prob`` (0.5). A kept query keeps only its passing responses.
3. **Quality filters** on those responses, counted one after the other: rows the scorer did not score or
   LLaMA-Factory would truncate (when scores are given; ``--over_length``), perplexity above ``--max_ppl``,
   some 20-word string repeated more than ``--max_repeats`` times (in the pool: ``--repeat_scope dataset``, the
   paper's; or inside the response), a missing think or answer part
   (``--require_parts``); :mod:`data_selection.quality`. Pass rates and CVs are measured before the filters
   (**choice**: they describe the teacher's answers to the query, not which text is fit to train on).
4. **Stage II** (``--stage 2``, default): the queries with CV > CV_t that still have a response, highest CV
   first, one random passing response each (``--responses_per_query auto``); the queries Stage I kept by the
   probability rule top the budget up only with ``fill_low_cv`` (the paper does not). ``--stage 1`` writes
   Stage I's output instead: every kept query with all its passing responses. ``--n`` counts rows
   (:mod:`~data_selection.selectors.pass_cv_take`).

Seed protocol: the probability rule draws u = (first 8 bytes of BLAKE2b("seed:query")) / 2^64 per query and
keeps the query when u < p (**choice**: a query's fate does not depend on the rest of the pool). Stage II sorts
queries by CV (rounded to 12 decimals, so equal score multisets tie exactly), then key; the queries tied at the
cut are drawn with one ``numpy.random.default_rng(seed)``, which then picks each chosen query's response
(queries in key order, responses in pool-row order). Fewer than ``n`` eligible queries: all are taken and the
shortfall is reported, never padded.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from data_selection.command_line import UserError
from data_selection.options.select import PASS_THRESHOLDS
from data_selection.quality import missing_parts, perplexity_too_high, repetitive
from data_selection.selectors.common import Selection, composition, describe_values
from data_selection.selectors.pass_cv_take import parse_responses_per_query, take, take_facts

CANONICAL = ("math", "code", "instruction_following", "science", "other")
ALIASES = {"if": "instruction_following", "ifeval": "instruction_following",
           "instruction-following": "instruction_following", "instruction following": "instruction_following",
           "instruction": "instruction_following", "multi_turn": "other", "multi-turn": "other", "chat": "other",
           "general": "other", "general_chat": "other"}
REQUIRED = ("id", "row", "query", "category", "verify_score")
CV_DECIMALS = 12


def canonical(category: str) -> str:
    """One of :data:`CANONICAL`: known names and aliases; anything else is "other" (the paper's catch-all)."""
    c = str(category or "").strip().lower()
    c = ALIASES.get(c, c)
    return c if c in CANONICAL else "other"


def parse_thresholds(text: str, option: str) -> dict[str, float]:
    """``"0.1"`` (every category) or ``"math=0.99,science=4.99"``; keys are canonicalised, ``*`` = default."""
    out: dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.rpartition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError as err:
            raise UserError(f"--{option}: {part!r} is not NUMBER or CATEGORY=NUMBER (e.g. math=0.99,other=0.7)") from err
        if not np.isfinite(number):
            raise UserError(f"--{option}: {part!r} is not a finite number")
        out["*" if key in ("", "*") else canonical(key)] = number
    if not out:
        raise UserError(f"--{option} is empty; give NUMBER or CATEGORY=NUMBER pairs")
    return out


def threshold(mapping: dict[str, float], category: str, fallback: float = 0.0) -> float:
    """A category's value: its own, else ``*``, else "other", else ``fallback``."""
    c = canonical(category)
    for key in (c, "*", "other"):
        if key in mapping:
            return mapping[key]
    return fallback


def keep_draw(seed: int, query: str) -> float:
    """The uniform number in [0, 1) the probability rule uses for ``query`` (independent of the rest)."""
    digest = hashlib.blake2b(f"{seed}:{query}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def join_scores(verified: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The verify table with the scorer's ``loss_mean``, ``n_response_tokens``, ``truncated`` (by pool row).

    Rows must carry the same id in both (same pool, same system prompt); ``in_scores`` says which rows the
    scorer scored (it rejects some).
    """
    cols = [c for c in ("row", "id", "loss_mean", "n_response_tokens", "truncated") if c in scores.columns]
    s = scores[cols].rename(columns={"id": "_score_id"})
    joined = verified.merge(s, on="row", how="left", validate="one_to_one")
    both = joined["_score_id"].notna()
    bad = both & (joined["_score_id"] != joined["id"])
    if bad.any():
        r = joined.loc[bad].iloc[0]
        raise UserError(f"{int(bad.sum())} pool row(s) have different ids in the verify output and the scores (first: "
                        f"row {int(r['row'])}: {r['id']} vs {r['_score_id']}): they were made from different pools "
                        "or system prompts; give `verify` the --system_prompt `score` was given")
    joined["in_scores"] = both.to_numpy()
    if "truncated" in joined:
        joined["truncated"] = joined["truncated"].astype("boolean").fillna(False).astype(bool)
    else:
        joined["truncated"] = False
    return joined.drop(columns=["_score_id"])


def query_table(table: pd.DataFrame, pass_t: dict[str, float], cv_t: dict[str, float]) -> pd.DataFrame:
    """One row per query (sorted by key): category, multi_turn, n_responses, n_scored, n_pass, pass_rate, best,
    mean, std (population), cv, best_passes, pass_threshold, cv_threshold."""
    t = table[["query", "category", "verify_score", "n_prompt_turns"]].copy()
    t["pass_threshold"] = t["category"].map({c: threshold(pass_t, c, 0.7) for c in t["category"].unique()})
    t["passed"] = t["verify_score"] > t["pass_threshold"]  # NaN compares False
    g = t.groupby("query", sort=True)
    q = pd.DataFrame({
        "category": g["category"].first(),
        "multi_turn": g["n_prompt_turns"].max() > 1,
        "n_responses": g.size(),
        "n_scored": g["verify_score"].count(),
        "n_pass": g["passed"].sum().astype(np.int64),
        "best": g["verify_score"].max(),
        "mean": g["verify_score"].mean(),
        "std": g["verify_score"].std(ddof=0),
    })
    q["pass_rate"] = np.where(q["n_scored"] > 0, q["n_pass"] / q["n_scored"].clip(lower=1), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(q["mean"] > 0, q["std"] / q["mean"], np.nan)
    q["cv"] = np.round(cv, CV_DECIMALS)
    q["pass_threshold"] = q["category"].map({c: threshold(pass_t, c, 0.7) for c in q["category"].unique()})
    q["cv_threshold"] = q["category"].map({c: threshold(cv_t, c, 0.0) for c in q["category"].unique()})
    q["best_passes"] = q["best"] > q["pass_threshold"]
    q["canonical"] = q["category"].map({c: canonical(c) for c in q["category"].unique()})
    return q


REPEAT_SCOPES = ("dataset", "response")


def repeat_column(table: pd.DataFrame, scope: str, max_repeats: int) -> tuple[str, dict[str, Any]]:
    """The verify column the repetition filter reads, and what the manifest says about it.

    ``dataset`` (the paper's): how often the response's most frequent 20-word string occurs in the whole pool
    (``dataset_repeat``); ``response``: the most occurrences of one 20-word string inside the response
    (``max_repeat``). A verify output without ``dataset_repeat`` (written before it existed) falls back to the
    response count, with a warning."""
    facts: dict[str, Any] = {"scope": scope, "max_repeats": max_repeats}
    if scope == "dataset" and "dataset_repeat" not in table:
        facts["warning"] = ("the verify output has no dataset_repeat column (made before dataset-level n-gram "
                            "counts existed): the repetition filter counted within each response instead; re-run "
                            "`data-select verify` for the paper's dataset-level count")
        scope = facts["scope_used"] = "response"
    col = {"dataset": "dataset_repeat", "response": "max_repeat"}[scope]
    if col not in table:
        return "", {**facts, "note": f"not applied: no {col} column"}
    return col, facts


def check_table(table: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise UserError(f"verify table lacks column(s) {missing}; is it a `data-select verify` output? "
                        f"(columns: {list(table.columns)})")
    if table["row"].duplicated().any():
        raise UserError(f"verify table lists pool row {int(table.loc[table['row'].duplicated(), 'row'].iloc[0])} "
                        "more than once (merge of overlapping shards?)")


def select_pass_cv(
    table: pd.DataFrame,
    *,
    n: int,
    seed: int,
    pass_thresholds: str = PASS_THRESHOLDS,
    cv_thresholds: str = "0",
    other_keep_prob: float = 0.5,
    max_ppl: float = 20.0,
    max_repeats: int = 20,
    require_parts: str = "both",
    over_length: str = "drop",
    stage: int = 2,
    responses_per_query: str = "auto",
    fill_low_cv: bool = False,
    repeat_scope: str = "dataset",
) -> Selection:
    if n <= 0:
        raise UserError(f"--n must be a positive number of rows, got {n}")
    if not 0.0 <= other_keep_prob <= 1.0:
        raise UserError(f"--other_keep_prob must be in [0, 1], got {other_keep_prob}")
    if require_parts not in ("both", "answer", "none"):
        raise UserError(f"--require_parts must be both, answer or none, got {require_parts!r}")
    if stage not in (1, 2):
        raise UserError(f"--stage must be 1 (Stage I's output) or 2 (Stage II: highest CV first), got {stage}")
    if repeat_scope not in REPEAT_SCOPES:
        raise UserError(f"--repeat_scope must be one of {', '.join(REPEAT_SCOPES)}, got {repeat_scope!r}")
    per_query = parse_responses_per_query(responses_per_query, stage)
    check_table(table)
    pass_t = parse_thresholds(pass_thresholds, "pass_thresholds")
    cv_t = parse_thresholds(cv_thresholds, "cv_thresholds")
    table = table.sort_values("row", kind="stable").reset_index(drop=True)
    if "n_prompt_turns" not in table:
        table["n_prompt_turns"] = 1
    q = query_table(table, pass_t, cv_t)

    # Stage I (queries)
    scored_any = q["n_scored"] > 0
    best_fails = scored_any & ~q["best_passes"]
    cv_keep = q["best_passes"] & (q["cv"] > q["cv_threshold"])
    rule_applies = q["best_passes"] & ~cv_keep & ((q["canonical"] == "other") | q["multi_turn"])
    draws = np.array([keep_draw(seed, k) for k in q.index[rule_applies]])
    by_chance = pd.Series(False, index=q.index)
    by_chance.loc[q.index[rule_applies]] = draws < other_keep_prob
    stage1 = cv_keep | by_chance
    qf: dict[str, int] = {"queries": len(q), "no_score": int((~scored_any).sum()), "best_fails": int(best_fails.sum()),
                          "cv_dropped": int((q["best_passes"] & ~stage1).sum()), "kept_cv": int(cv_keep.sum()),
                          "kept_by_chance": int(by_chance.sum()), "stage1": int(stage1.sum())}

    # Stage I (rows): the passing responses of the kept queries
    row_pass_t = table["category"].map({c: threshold(pass_t, c, 0.7) for c in table["category"].unique()})
    passing = (table["verify_score"] > row_pass_t).to_numpy()
    kept_query = table["query"].map(stage1).fillna(False).to_numpy(bool)
    scored = table["verify_score"].notna().to_numpy()
    funnel: dict[str, int] = {"verified": len(table), "no_verify_score": int((~scored).sum()),
                              "verify_scored": int(scored.sum()),
                              "stage1": int((passing & kept_query).sum())}
    alive = passing & kept_query

    # quality filters, one after the other
    has_scores = "in_scores" in table
    ppl_facts: dict[str, Any] = {"max_ppl": max_ppl}
    if has_scores:
        not_scored = alive & ~table["in_scores"].to_numpy(bool)
        funnel["not_scored_by_scorer"] = int(not_scored.sum())
        alive &= ~not_scored
        truncated = table["truncated"].to_numpy(bool)
        over = alive & truncated if over_length == "drop" else np.zeros(len(table), bool)
        funnel["over_length_dropped"] = int(over.sum())
        alive &= ~over
    if "ppl" in table and table["ppl"].notna().any():
        ppl = table["ppl"].to_numpy(np.float64)
        ppl_facts["source"] = "the dataset's own ppl column (the paper's perplexity, over query+answer)"
    elif has_scores:
        ppl = np.exp(table["loss_mean"].to_numpy(np.float64))
        ppl_facts["source"] = ("exp(loss_mean) from `data-select score`: the base model's perplexity of the response "
                               "given the query (the paper's threshold of 20 is over query+answer under its own model)")
    else:
        ppl = np.full(len(table), np.nan)
        ppl_facts["source"] = None
        ppl_facts["note"] = "not applied: no scores given and the dataset has no ppl column"
    caught = alive & perplexity_too_high(ppl, max_ppl)
    funnel["perplexity_dropped"] = int(caught.sum())
    alive &= ~caught
    repeat_col, repeat_facts = repeat_column(table, repeat_scope, max_repeats)
    if repeat_col:
        caught = alive & repetitive(table[repeat_col].to_numpy(), max_repeats)
        funnel["repetition_dropped"] = int(caught.sum())
        alive &= ~caught
    if "has_think" in table and "has_answer" in table:
        caught = alive & missing_parts(table["has_think"].to_numpy(bool), table["has_answer"].to_numpy(bool),
                                       require_parts)
        funnel["missing_parts_dropped"] = int(caught.sum())
        alive &= ~caught
    # Stage II (the paper): only queries whose CV exceeds CV_t, highest first; the queries Stage I kept by the
    # probability rule top the budget up only with --fill_low_cv. --stage 1: every query Stage I kept.
    filtered = alive.copy()  # the rows every quality filter let through
    if stage == 2 and not fill_low_cv:
        low = alive & table["query"].map(by_chance).fillna(False).to_numpy(bool)
        funnel["low_cv_left_out"] = int(low.sum())
        alive &= ~low
    funnel["eligible"] = int(alive.sum())
    candidates = table.loc[alive, ["query", "row"]]
    eligible_q = q.loc[q.index.isin(candidates["query"].unique())]
    survivors = set(table.loc[filtered, "query"])
    qf["filtered_out"] = qf["stage1"] - len(survivors)
    if stage == 2 and not fill_low_cv:
        qf["low_cv_left_out"] = int(by_chance.loc[sorted(survivors)].sum()) if survivors else 0
    qf["eligible"] = len(eligible_q)
    rows, chosen_q, cut, tie_facts = take(eligible_q[["cv"]], candidates, n, per_query, seed)
    qf["selected"] = len(chosen_q)
    qf["shortfall"] = max(0, n - len(rows))
    funnel["selected"] = len(rows)

    by_row = table.set_index("row")
    chosen = by_row.loc[rows]
    eligible_rows = table.loc[alive]
    sel_q = q.loc[sorted(chosen_q)]
    stats: dict[str, Any] = {
        "key": {"eligible": describe_values(eligible_q["cv"].to_numpy(np.float64)),
                "selected": describe_values(sel_q["cv"].to_numpy(np.float64))},
        "pass_rate": {"queries": describe_values(q.loc[scored_any, "pass_rate"].to_numpy(np.float64)),
                      "eligible": describe_values(eligible_q["pass_rate"].to_numpy(np.float64)),
                      "selected": describe_values(sel_q["pass_rate"].to_numpy(np.float64))},
        "responses_per_query": describe_values(q["n_responses"].to_numpy(np.float64)),
    }
    for col in ("n_response_tokens", "n_response_chars"):
        if col in table:
            stats[col] = {"eligible": describe_values(eligible_rows[col].dropna().to_numpy(np.float64)),
                          "selected": describe_values(chosen[col].dropna().to_numpy(np.float64))}
    for col in sorted(c for c in table.columns if c.startswith("pass_rate")):
        stats[col] = {"eligible": describe_values(eligible_rows[col].dropna().to_numpy(np.float64)),
                      "selected": describe_values(chosen[col].dropna().to_numpy(np.float64))}
    categories = sorted(set(q["category"]))
    facts: dict[str, Any] = {
        "strategy": "pass-cv",
        "parameters": {"n": n, "seed": seed, "pass_thresholds": pass_thresholds, "cv_thresholds": cv_thresholds,
                       "other_keep_prob": other_keep_prob, "max_ppl": max_ppl, "max_repeats": max_repeats,
                       "require_parts": require_parts, "over_length": over_length, "stage": stage,
                       "responses_per_query": responses_per_query, "fill_low_cv": fill_low_cv,
                       "repeat_scope": repeat_scope},
        "method": {**take_facts(per_query, stage, fill_low_cv), "repetition": repeat_facts,
                   "paper_default": stage == 2 and per_query == 1 and not fill_low_cv and repeat_scope == "dataset"},
        "key": {"name": "cv", "definition": "coefficient of variation (population sigma / mean) of a query's verify "
                "scores (docs/methods.md §4)"},
        "thresholds": {"pass": {c: threshold(pass_t, c, 0.7) for c in categories},
                       "cv": {c: threshold(cv_t, c, 0.0) for c in categories},
                       "other_keep_prob": other_keep_prob, "cut_cv": cut, **tie_facts},
        "funnel": funnel,
        "query_funnel": qf,
        "perplexity": ppl_facts,
        "over_length_rows": int(table["truncated"].sum()) if has_scores else 0,
        "composition": composition({"pool": table, "stage1": table.loc[passing & kept_query],
                                    "eligible": eligible_rows, "selected": chosen.reset_index()}),
        "stats": stats,
    }
    if qf["shortfall"]:
        facts["note"] = (f"only {len(rows)} rows of {len(chosen_q)} eligible queries, fewer than --n {n}: all were "
                         "taken; the subset is not padded" + (" (low-CV queries are left out of Stage II; "
                                                              "--fill_low_cv adds them)"
                                                              if qf.get("low_cv_left_out") else ""))
    if repeat_facts.get("warning"):
        facts["warnings"] = [repeat_facts["warning"]]
    return Selection(rows=rows, ids=chosen["id"].astype(str).tolist(), facts=facts)
