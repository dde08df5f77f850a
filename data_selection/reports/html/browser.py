"""The per-example table of ``report.html``: pool rows (sampled to a bound), each selection's verdict, texts.

For every selection each pool row gets a *status*: kept, or dropped with the stage that dropped it (over-length,
non-finite key, below / above the zpd band, in the band but not drawn, eligible but not drawn, not chosen by
the strategy). The stages are recomputed from the scores with the selectors' own functions
(:func:`~data_selection.selectors.common.eligible_rows`, :func:`~data_selection.selectors.zpd.band_positions`),
so they are the ones the selection went through.

A pool larger than ``max_rows`` is sampled (seeded): every row some selection kept stays when they fit in half
the bound, the rest is a uniform draw. Texts are rendered for at most ``max_texts`` of the rows shown (kept rows
first), and only for those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_selection.selectors.common import eligible_rows, strata_of
from data_selection.selectors.zpd import band_positions

KEPT = "kept"
NUM_COLUMNS = ("loss_mean", "loss_first_100", "loss_first_1000", "n_prompt_tokens", "n_response_tokens")


def _band_status(elig, p: dict[str, Any], status: np.ndarray, where: np.ndarray) -> None:
    """Below / above / in the band, for the eligible rows at positions ``where`` of the scores table."""
    groups = strata_of(elig.table, p["stratify"]) if p.get("stratify") else {"": np.arange(len(elig.table))}
    for name, positions in groups.items():
        key = elig.key[positions]
        inside, _, _, th = band_positions(key, p["low"], p["high"])
        label = f" of its {p['stratify']} ({name})" if name else ""
        out = np.full(len(positions), f"dropped · above the band{label} (too hard)", dtype=object)
        if th:
            out[key < th["low_value"]] = f"dropped · below the band{label} (too easy)"
        else:
            out[:] = "dropped · outside the band"
        out[inside] = "dropped · in the band, not drawn"
        status[where[positions]] = out


def statuses(scores: pd.DataFrame, manifest: dict[str, Any], ids: set[str]) -> np.ndarray:
    """One status string per row of ``scores`` (normalized, pool-row order) for one selection."""
    p = manifest["parameters"]
    strategy = manifest["strategy"]
    key, over_length = p.get("key") or "loss_mean", p.get("over_length", "drop")
    n = len(scores)
    status = np.full(n, "dropped · non-finite key", dtype=object)
    truncated = scores["truncated"].to_numpy(bool)
    if over_length == "drop":
        status[truncated] = "dropped · over-length (LLaMA-Factory would cut it)"
    try:
        elig = eligible_rows(scores, key, over_length)
    except Exception:  # nothing eligible under this key: every row keeps its first reason
        elig = None
    if elig is not None:
        where = pd.Index(scores["row"]).get_indexer(elig.table["row"])
        if strategy == "zpd" and "low" in p:
            _band_status(elig, p, status, where)
        elif strategy == "random":
            status[where] = "dropped · eligible, not drawn"
        else:
            status[where] = f"dropped · eligible, not chosen by {strategy}"
    kept = scores["id"].isin(ids).to_numpy()
    status[kept] = KEPT
    status[kept & truncated] = "kept (over-length: trained on cut)"
    return status


def short_status(status: str) -> str:
    """The few words a table cell shows for a status (the whole sentence is the cell's tooltip)."""
    if status.startswith(KEPT):
        return "kept (cut)" if "over-length" in status else KEPT
    reason = status.removeprefix("dropped · ")
    for start, short in (("below the band", "below band"), ("above the band", "above band"),
                         ("in the band", "in band, not drawn"), ("outside the band", "outside band"),
                         ("over-length", "over-length"), ("non-finite", "non-finite key"),
                         ("eligible, not drawn", "not drawn"), ("eligible, not chosen", "not chosen")):
        if reason.startswith(start):
            return short
    return reason[:18]


def sample_rows(n: int, kept_any: np.ndarray, max_rows: int, seed: int) -> tuple[np.ndarray, str]:
    """Positions shown (ascending) and a sentence saying how they were chosen."""
    if n <= max_rows:
        return np.arange(n), f"all {n:,} scored pool rows"
    rng = np.random.default_rng(seed)
    kept = np.flatnonzero(kept_any)
    if len(kept) <= max_rows // 2:
        rest = np.flatnonzero(~kept_any)
        fill = rng.choice(rest, size=max_rows - len(kept), replace=False)
        return np.sort(np.concatenate([kept, fill])), (
            f"{max_rows:,} of {n:,} scored pool rows: every row a selection kept ({len(kept):,}) and a uniform "
            f"draw of the others (seed {seed})")
    return np.sort(rng.choice(n, size=max_rows, replace=False)), (
        f"a uniform draw of {max_rows:,} of {n:,} scored pool rows (seed {seed}; the selections kept "
        f"{len(kept):,}, more than half the bound)")


def _col(values: np.ndarray) -> list:
    if values.dtype.kind == "f":
        v = np.round(values.astype(np.float64), 4)
        return [None if not np.isfinite(x) else float(x) for x in v]
    return values.tolist()


def build_browser(scores: pd.DataFrame, selections: list, *, max_rows: int, seed: int,
                  key_column: tuple[str, np.ndarray] | None = None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(browser payload without texts, positions of ``scores`` shown, mask of the shown rows some selection kept).

    ``selections``: objects with name, manifest, ids. Texts are added with :func:`attach_texts`.
    """
    all_status = [(s.name, statuses(scores, s.manifest, s.ids)) for s in selections]
    kept_any = np.zeros(len(scores), bool)
    for _, st in all_status:
        kept_any |= np.char.startswith(st.astype(str), KEPT)
    shown, how = sample_rows(len(scores), kept_any, max_rows, seed)
    sub = scores.iloc[shown]
    columns: list[dict[str, Any]] = [{"key": "row", "label": "row", "type": "num"}, {"key": "id", "label": "id", "type": "str"}]
    data: dict[str, list] = {"row": sub["row"].astype(np.int64).tolist(), "id": sub["id"].astype(str).tolist()}
    codes_of: dict[str, int] = {}
    for name, st in all_status:  # right after the id: each selection's verdict is visible without scrolling
        codes = [codes_of.setdefault(v, len(codes_of)) for v in st[shown]]
        columns.append({"key": f"sel:{name}", "label": name, "type": "status", "help": f"kept or dropped by {name}"})
        data[f"sel:{name}"] = codes
    legend = list(codes_of)
    for c in ("source", "category"):
        if c in sub.columns:
            columns.append({"key": c, "label": c, "type": "str"})
            data[c] = sub[c].astype(str).tolist()
    if key_column is not None:
        name, values = key_column
        columns.append({"key": name, "label": name, "type": "num"})
        data[name] = _col(values[shown])
    for c in NUM_COLUMNS:
        if c in sub.columns and c not in data:
            columns.append({"key": c, "label": c.replace("n_", "").replace("_tokens", " tokens"), "type": "num"})
            data[c] = _col(sub[c].to_numpy())
    columns.append({"key": "over_length", "label": "over-length", "type": "str"})
    data["over_length"] = np.where(sub["truncated"].to_numpy(bool), "over-length", "").tolist()
    payload = {"n_pool": int(len(scores)), "columns": columns, "data": data, "status_legend": legend,
               "status_short": [short_status(v) for v in legend],
               "note": f"Rows: {how}. Click a row for its prompt and response; click a header to sort.",
               "texts": {}, "text_note": ""}
    return payload, shown, kept_any[shown]


def text_positions(kept_shown: np.ndarray, max_texts: int) -> np.ndarray:
    """Indices into the shown rows whose text is embedded: kept rows first, then the others, in row order."""
    order = np.concatenate([np.flatnonzero(kept_shown), np.flatnonzero(~kept_shown)])
    return np.sort(order[:max_texts])


def attach_texts(payload: dict[str, Any], texts: dict[int, dict[str, Any]], note: str, loss_scale: float) -> None:
    """``texts``: by index into the shown rows."""
    payload["texts"] = {str(i): t for i, t in texts.items()}
    payload["text_note"] = note
    payload["loss_scale"] = loss_scale
