"""Write the pruned subset: ``data/NAME.jsonl`` + ``.manifest.json`` + card, the dataset_info.json entry, the report.

Rows are written in the input's order through :mod:`data_selection.subset` (the converted messages, so training
sees what PIR was computed on) and keep the input's ``id`` column when it has one (a subset written by
``select``: the source pool's row id), otherwise the converted row id; ``system`` and ``category``/``source``
are kept as they are. A pruned row differs from its input only inside ``<think>``: before writing, every pruned
response is checked to keep the text before ``<think>`` and everything from ``</think>`` on byte for byte.
Rows LLaMA-Factory could not train on at all (``load_pool`` rejects: empty or missing fields, malformed JSON) are
left out and listed in ``OUT/rejects.jsonl`` (the work folder), one line each with its input row number
(0-based, as ``score``'s rejects), id and the loader's reason; every other row is written, pruned or unchanged
with its reason.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from data_selection.atomic import write_json_atomic, write_jsonl_atomic, write_text_atomic
from data_selection.command_line import UserError
from data_selection.options.prune_steps import PruneOptions, dataset_info_path, recipe
from data_selection.registry import check_subset_name, read_dataset_info, register_entry, subset_entry
from data_selection.shards.layout import REJECTS
from data_selection.subset import size_category, subset_paths, write_subset
from data_selection.transforms.prune import steps_to_delete
from data_selection.transforms.step_table import STEPS_TABLE, merge_steps
from data_selection.transforms.steps import FUNCTIONAL_TYPES, STEP_TYPES, THINK_CLOSE, THINK_OPEN, segment
from data_selection.transforms.struck_steps import MAX_ROWS_SHOWN, struck_steps

NOTHING_AT_RATIO = "functional steps, but none to delete at this ratio"
REJECTED = "rejected by the loader (LLaMA-Factory could not train on it)"
ANSWER_RULE = ("response tokens that begin at or after the end of </think>, up to the end of the response text "
               "(template end-of-turn tokens excluded)")


def _stats(values) -> dict[str, float]:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max())}


def _check_unchanged_outside_think(before: str, after: str) -> None:
    head = before[: before.index(THINK_OPEN) + len(THINK_OPEN)]
    tail = before[before.index(THINK_CLOSE):]
    if not (after.startswith(head) and after.endswith(tail)):
        raise RuntimeError("internal error: pruning changed text outside <think>…</think>; nothing was written")


def prune_rows(opts: PruneOptions, mk, pool, encoder, table) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The output examples (converted rows, pruned where due) and the facts for the manifest and report."""
    by_row = {int(r["row"]): r for r in table.to_dict("records")}
    source_ids = pool.raw["id"] if "id" in pool.raw.column_names else None
    examples: list[dict[str, Any]] = []
    unchanged: Counter[str] = Counter()
    steps = {t: {"found": 0, "scored": 0, "deleted": 0} for t in STEP_TYPES}
    tokens_removed = dict.fromkeys(FUNCTIONAL_TYPES, 0)
    think_tokens = dict.fromkeys(STEP_TYPES, 0)
    pir_kept: dict[str, list[float]] = {t: [] for t in FUNCTIONAL_TYPES}
    pir_deleted: dict[str, list[float]] = {t: [] for t in FUNCTIONAL_TYPES}
    before, after, changed_rows, shown = [], [], [], []
    rejects: list[dict[str, Any]] = []
    typed_by: dict[str, dict[str, int]] = {}
    for ex in pool.converted:
        if ex["reject_reason"]:
            rid = str(source_ids[ex["_row"]]) if source_ids is not None and source_ids[ex["_row"]] else ex["id"]
            rejects.append({"row": int(ex["_row"]), "id": rid, "reason": ex["reject_reason"]})
            continue
        rec = by_row.get(int(ex["_row"]))
        if rec is None or rec["id"] != ex["id"]:
            raise UserError(f"{opts.dataset}: row {ex['_row']} is not the row PIR was computed on (the data changed "
                            "since); re-run with --overwrite")
        ex = dict(ex)
        if source_ids is not None and source_ids[ex["_row"]]:
            ex["id"] = str(source_ids[ex["_row"]])
        types, pirs = list(rec["step_type"]), [float(x) for x in rec["step_pir"]]
        for t, src in zip(types, rec["step_source"]):
            typed_by.setdefault(src, dict.fromkeys(STEP_TYPES, 0))[t] += 1
        for t, n in zip(types, rec["step_tokens"]):
            think_tokens[t] += int(n)
        for t in types:
            steps[t]["found"] += 1
        n_before = int(rec["n_response_tokens"])
        if rec["reason"]:
            unchanged[rec["reason"]] += 1
            examples.append(ex)
            if n_before >= 0:
                before.append(n_before)
                after.append(n_before)
            continue
        drop = steps_to_delete(types, pirs, opts.ratio)
        for i, t in enumerate(types):
            if t in FUNCTIONAL_TYPES:
                steps[t]["scored"] += 1
                (pir_deleted if i in drop else pir_kept)[t].append(pirs[i])
        if not drop:
            unchanged[NOTHING_AT_RATIO] += 1
            examples.append(ex)
            before.append(n_before)
            after.append(n_before)
            continue
        response = ex["_response"][0]["content"]
        seg = segment(response, mk, opts.min_sentences, opts.marker_boundaries)
        if isinstance(seg, str) or [(s.start, s.end) for s in seg.steps] != list(zip(rec["step_start"],
                                                                                    rec["step_end"])):
            raise UserError(f"row {ex['_row']}: the steps differ from the stored ones (code or data changed since "
                            "the PIR run); re-run with --overwrite")
        pruned = seg.render(drop)
        _check_unchanged_outside_think(response, pruned)
        for i in drop:
            steps[types[i]]["deleted"] += 1
            tokens_removed[types[i]] += int(rec["step_tokens"][i])
        ex["_response"] = [{"role": "assistant", "content": pruned}]
        n_after = encoder.encode(ex).n_response_tokens
        if len(shown) < MAX_ROWS_SHOWN:  # the rows report.html shows, deleted steps struck through
            shown.append({"row": int(ex["_row"]), "id": ex["id"], "tokens_before": n_before, "tokens_after": n_after,
                          "steps_deleted": len(drop), "steps": len(types), "pieces": struck_steps(seg, drop),
                          "prompt": "\n\n".join(m["content"] for m in ex["_prompt"])})
        examples.append(ex)
        before.append(n_before)
        after.append(n_after)
        changed_rows.append(int(ex["_row"]))
    facts = {
        "rejected": len(rejects),
        "rejects": rejects,
        "unchanged": dict(sorted(unchanged.items(), key=lambda kv: (-kv[1], kv[0]))),
        "changed": len(changed_rows),
        "steps": steps,
        "typed_by": dict(sorted(typed_by.items())),
        "tokens_removed_by_type": tokens_removed,
        "think_tokens_by_type": think_tokens,
        "pir": {t: {"deleted": _stats(pir_deleted[t]), "kept": _stats(pir_kept[t])} for t in FUNCTIONAL_TYPES},
        "pir_values": {"deleted": pir_deleted, "kept": pir_kept},
        "lengths_before": before,
        "lengths_after": after,
        "shown_rows": shown,
    }
    return examples, facts


def _input_manifest(opts: PruneOptions) -> str:
    """The manifest the input subset's dataset_info.json entry names (subsets made by data-select)."""
    entry = read_dataset_info(Path(opts.dataset_dir) / "dataset_info.json").get(opts.dataset) or {}
    return entry.get("manifest", "")


def build_manifest(opts: PruneOptions, mk, pool, meta: dict[str, Any], out: Path, facts: dict[str, Any],
                   file_name: str, formatting: str, columns: dict[str, str], sha: str, n_rows: int) -> dict[str, Any]:
    before, after = sum(facts["lengths_before"]), sum(facts["lengths_after"])
    unchanged = facts["unchanged"]
    return {
        "name": opts.name,
        "created_by": "data-select",
        "transform": "pir-prune",
        "method": "LIMOPro PIR step pruning (arXiv 2505.19187), docs/methods.md §5",
        "file_name": file_name,
        "formatting": formatting,
        "columns": columns,
        "num_rows": n_rows,
        "sha256": sha,
        "source": {**pool.describe(), "manifest": _input_manifest(opts)},
        "parameters": {
            "ratio": opts.ratio,
            "rounding": "round-half-up(ratio x count) per row and functional type; ties by position",
            "min_sentences": opts.min_sentences,
            "marker_boundaries": opts.marker_boundaries,
            "phrases": mk.to_dict(),
            "lead_ins": list(mk.lead_ins),
            "step_typer": ({"model": opts.step_typer, "template": opts.step_typer_template or opts.template,
                            "backend": opts.step_typer_backend, "types": "steps without a marker"}
                           if opts.step_typer else None),
            "answer_tokens": ANSWER_RULE,
        },
        "scorer": {"model": meta["model"], "template": opts.template, "cutoff_len": opts.cutoff_len,
                   "dtype": opts.dtype, "tokenizer": opts.tokenizer or None, "code_version": meta["code_version"]},
        "pir_dir": str(out),
        "rows": {"input": int(pool.describe()["num_rows"]), "rejected": facts["rejected"],
                 "rejected_by_reason": dict(Counter(r["reason"] for r in facts["rejects"]).most_common()),
                 "rejects_file": str(out / REJECTS), "written": n_rows,
                 "changed": facts["changed"], "unchanged_total": sum(unchanged.values()), "unchanged": unchanged},
        "steps": facts["steps"],
        "steps_typed_by": facts["typed_by"],
        "tokens": {
            "response_before": int(before),
            "response_after": int(after),
            "removed": int(before - after),
            "removed_share": (before - after) / before if before else 0.0,
            "removed_by_type": facts["tokens_removed_by_type"],
            "think_by_type": facts["think_tokens_by_type"],
            "lengths_before": _stats(facts["lengths_before"]),
            "lengths_after": _stats(facts["lengths_after"]),
            "note": "response tokens as LLaMA-Factory encodes them (end-of-turn included); by-type counts attribute "
                    "each token of the full trace to the step (and following separator) it starts in",
        },
        "pir": facts["pir"],
        "recipe": recipe(opts),
    }


def render_card(manifest: dict[str, Any], license: str = "") -> str:
    """A Hugging Face dataset card for a pruned subset."""
    name, src = manifest["name"], manifest["source"]
    front: dict[str, Any] = {"license": license} if license else {}
    front.update({
        "pretty_name": name,
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["reasoning", "llama-factory", "pir-pruning", "limopro"],
        "size_categories": [size_category(manifest["num_rows"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}],
    })
    if src.get("load_from") == "hf_hub":
        front["source_datasets"] = [src.get("resolved_name") or src.get("dataset")]
    p, rows, tok, sc = manifest["parameters"], manifest["rows"], manifest["tokens"], manifest["scorer"]
    model = sc["model"].get("name_or_path") if isinstance(sc["model"], dict) else sc["model"]
    step_rows = "\n".join(f"| {t.replace('_', ' ')} | {v['found']:,} | {v['deleted']:,} | "
                          f"{tok['removed_by_type'].get(t, 0):,} |" for t, v in manifest["steps"].items())
    why = "\n".join(f"| {k} | {v:,} |" for k, v in rows["unchanged"].items()) or "| — | 0 |"
    typer = f"; steps without a marker were typed by `{p['step_typer']['model']}`" if p.get("step_typer") else ""
    body = f"""# {name}

`{src.get('resolved_name') or src.get('dataset')}` with low-value reasoning steps removed by LIMOPro's PIR pruning
(*LIMOPro: Reasoning Refinement for Efficient and Effective Test-time Scaling*, arXiv 2505.19187), made by
`data-select prune-steps` (reasoning-data-select, docs/methods.md §5). The text after `</think>` is unchanged.

The `<think>` part is split at blank lines into steps of at least {p['min_sentences']} sentences and each step is
typed by the marker phrase it opens with, also after lead-ins such as "But" or "Hmm" (progressive, verification,
multi-method, error correction){typer}. A functional step's
PIR is log(PPL(answer | reasoning without it) / PPL(answer | full reasoning)) under `{model}` (LLaMA-Factory
template `{sc['template']}`, cutoff_len {sc['cutoff_len']}); per row and type the round-half-up({p['ratio']} ×
count) lowest-PIR steps are deleted. Progressive steps are never deleted.

| | rows |
|---|---|
| written | {rows['written']:,} |
| pruned | {rows['changed']:,} |
| unchanged | {rows['unchanged_total']:,} |

| unchanged because | rows |
|---|---|
{why}

| step type | found | deleted | tokens removed |
|---|---|---|---|
{step_rows}

Response tokens: {tok['response_before']:,} → {tok['response_after']:,} ({100 * tok['removed_share']:.1f}% fewer).

## Format

Alpaca-style JSON lines as LLaMA-Factory reads them (`formatting: {manifest['formatting']}`); `id` is the input
row's id. In LLaMA-Factory's `dataset_info.json`:

```json
"{name}": {{"hf_hub_url": "USER/{name}", "formatting": "{manifest['formatting']}", "columns": {json.dumps(manifest['columns'])}}}
```

`manifest.json` holds every parameter (phrase lists included) and the counts. The rows inherit the license and
terms of the source dataset.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def write_pruned(opts: PruneOptions, mk, pool, encoder, out: Path, num_shards: int, meta: dict[str, Any]
                 ) -> dict[str, Any]:
    """Merge the shards, write subset + manifest + card, register. Returns paths, the manifest and the facts the
    report is drawn from (``report_facts``; the reports sit above this engine: the command writes the report)."""
    table = merge_steps(out, num_shards)
    examples, facts = prune_rows(opts, mk, pool, encoder, table)
    write_jsonl_atomic(out / REJECTS, facts["rejects"])  # written every time, so it belongs to this run
    if not examples:
        raise UserError(f"{opts.dataset}: no row to write (all {facts['rejected']} rows were rejected by the loader; "
                        f"row and reason of each in {out / REJECTS})")
    info_path = dataset_info_path(opts)
    # again right before writing (the run may have been long): never over a file or entry a selection did not make
    check_subset_name(info_path, opts.name, "prune-steps", opts.force, opts.register)
    paths = subset_paths(info_path.parent, opts.name)
    formatting, columns, sha = write_subset(paths["data"], examples, pool.meta_columns)
    file_name = paths["data"].relative_to(info_path.parent).as_posix()
    manifest = build_manifest(opts, mk, pool, meta, out, facts, file_name, formatting, columns, sha, len(examples))
    write_json_atomic(paths["manifest"], manifest)
    write_text_atomic(paths["card"], render_card(manifest))
    report_dir = Path(opts.report_dir or Path("reports") / opts.name)
    action = "not registered"
    if opts.register:
        entry = subset_entry(file_name, formatting, columns,
                             manifest=paths["manifest"].relative_to(info_path.parent).as_posix(),
                             recipe=manifest["recipe"], made_by="prune-steps")
        action = register_entry(info_path, opts.name, entry, force=opts.force)
    return {"manifest": manifest, "registered": action, "dataset_info": str(info_path), "report_facts": facts,
            "paths": {**{k: str(v) for k, v in paths.items()}, "report": str(report_dir / "report.md"),
                      "steps": str(out / STEPS_TABLE), "rejects": str(out / REJECTS)}}
