"""Write a selected subset as a LLaMA-Factory-ready file, with its manifest and a Hugging Face dataset card.

The rows are written from the pool's **converted** messages (``_prompt``, ``_response``, ``_system``,
``_tools``: LLaMA-Factory's own conversion, the text the scorer encoded), not from the raw columns, so
whatever format the pool had, training sees exactly what was scored:

* single-turn pools become alpaca rows ``instruction`` (the whole user turn, LLaMA-Factory's
  ``"prompt\\nquery"`` join already applied), ``input`` (""), ``output``, ``system`` (+ ``tools`` when any
  row has tools), then ``id`` (the scores' row id) and the pool's ``category``/``source``/``user_id`` (the
  pool's own ``id`` column, kept so a subset joins back to the user's records);
* pools with multi-turn prompts become sharegpt rows ``conversations`` ([{from, value}], LLaMA-Factory's
  default tags), ``system`` (+ ``tools``), ``id``, ``category``/``source``.

Every output is written through a temporary file and a rename, with fixed key order and no timestamps, so
the same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from data_selection.atomic import write_jsonl_atomic
from data_selection.command_line import UserError

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system"}
ROLE_TAGS = {"user": "human", "assistant": "gpt", "observation": "observation", "function": "function_call",
             "system": "system"}


def subset_paths(dataset_dir: str | Path, name: str) -> dict[str, Path]:
    """Where a subset's files live: ``DATASET_DIR/data/NAME.{jsonl,manifest.json,README.md}``."""
    data = Path(dataset_dir) / "data"
    return {"data": data / f"{name}.jsonl", "manifest": data / f"{name}.manifest.json",
            "card": data / f"{name}.README.md"}


def choose_formatting(examples: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """alpaca for single-turn rows, sharegpt as soon as one row has history; ``tools`` mapped when used."""
    multi_turn = any(len(ex["_prompt"]) > 1 for ex in examples)
    has_tools = any(ex.get("_tools") for ex in examples)
    columns = dict(SHAREGPT_COLUMNS if multi_turn else ALPACA_COLUMNS)
    if has_tools:
        columns["tools"] = "tools"
    return ("sharegpt" if multi_turn else "alpaca"), columns


def to_record(ex: dict[str, Any], formatting: str, columns: dict[str, str], meta_columns: list[str]
              ) -> dict[str, Any]:
    """One output row from one converted example (fixed key order)."""
    if formatting == "alpaca":
        rec: dict[str, Any] = {"instruction": ex["_prompt"][0]["content"], "input": "",
                               "output": ex["_response"][0]["content"], "system": ex["_system"] or ""}
    else:
        turns = ex["_prompt"] + ex["_response"][:1]
        rec = {"conversations": [{"from": ROLE_TAGS[m["role"]], "value": m["content"]} for m in turns],
               "system": ex["_system"] or ""}
    if "tools" in columns:
        rec["tools"] = ex.get("_tools") or ""
    rec["id"] = ex["id"]
    for col in meta_columns:
        rec[col] = ex.get(col, "")
    return rec


def selected_examples(pool, rows, ids) -> list[dict[str, Any]]:
    """The converted pool rows, checked against the ids the scorer recorded (content hashes)."""
    converted = pool.converted
    n = len(converted)
    bad_rows = [int(r) for r in rows if not 0 <= int(r) < n]
    if bad_rows:
        raise UserError(f"scores name pool rows {bad_rows[:5]} but the pool {pool.spec.dataset!r} has {n} rows: "
                        "the pool changed since scoring; re-score it")
    examples = converted.select([int(r) for r in rows])
    out, mismatched = [], []
    for ex, want in zip(examples, ids):
        if ex["id"] != want:
            mismatched.append((ex["_row"], want, ex["id"]))
        if ex["reject_reason"]:
            raise UserError(f"pool row {ex['_row']} is in the scores but the pool now rejects it "
                            f"({ex['reject_reason']}): the pool changed since scoring; re-score it")
        out.append(ex)
    if mismatched:
        row, want, got = mismatched[0]
        raise UserError(
            f"{len(mismatched)} selected row(s) differ from what was scored (first: pool row {row} has id {got}, "
            f"the scores say {want}): the pool {pool.spec.dataset!r} changed since scoring; re-score it"
        )
    return out


def write_subset(path: str | Path, examples: list[dict[str, Any]], meta_columns: list[str]
                 ) -> tuple[str, dict[str, str], str]:
    """Write the subset file. Returns (formatting, LLaMA-Factory columns, sha256 of the file)."""
    formatting, columns = choose_formatting(examples)
    sha = write_jsonl_atomic(path, (to_record(ex, formatting, columns, meta_columns) for ex in examples))
    return formatting, columns, sha


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def render_card(manifest: dict[str, Any], license: str = "") -> str:
    """A Hugging Face dataset card (YAML front matter + markdown) for the pushed layout data/train.jsonl."""
    name = manifest["name"]
    source = manifest["source"]
    params = manifest["parameters"]
    funnel = manifest["funnel"]
    front: dict[str, Any] = {}
    if license:
        front["license"] = license
    front.update({
        "pretty_name": name,
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["reasoning", "data-selection", "llama-factory", f"selection-{manifest['strategy']}"],
        "size_categories": [size_category(manifest["num_rows"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}],
    })
    if source.get("load_from") == "hf_hub":
        front["source_datasets"] = [source.get("resolved_name") or source.get("dataset")]
    columns_json = json.dumps(manifest["columns"])
    scorer = manifest.get("scorer") or {}
    model = scorer.get("model", {})
    model_name = model.get("name_or_path", model) if isinstance(model, dict) else model
    th = manifest.get("thresholds", {})
    provenance = (f"scored with the response-only loss of `{model_name}` (LLaMA-Factory template "
                  f"`{scorer.get('template')}`,\ncutoff_len {scorer.get('cutoff_len')})") if scorer else ""
    selection_line = (f"Selection: strategy `{manifest['strategy']}`, key `{params.get('key')}`, n {params['n']}, seed "
                      f"{params['seed']},\nover-length rows: {params.get('over_length')}, stratified by: "
                      f"{params.get('stratify') or 'nothing'}.")
    band = ""
    if manifest["strategy"] == "pass-cv":
        verifier = (manifest.get("verifier") or {}).get("verifier", {})
        check = (f"against the reference column `{verifier['reference_column']}`" if verifier.get("reference_column")
                 else "against the majority final answer of each query's responses")
        provenance = (f"verified by `data-select verify` (math-verify {check})"
                      + (f", and {provenance}" if provenance else ""))
        selection_line = (
            f"Selection: DeepDistill pass rate + CV (arXiv 2504.17565), n {params['n']}, seed {params['seed']}; pass "
            f"thresholds {th.get('pass')}, CV thresholds {th.get('cv')}, 'other' kept with probability "
            f"{params.get('other_keep_prob')}; filters: perplexity > {params.get('max_ppl')} "
            f"({(manifest.get('perplexity') or {}).get('source') or 'not applied'}), a 20-word string repeated more "
            f"than {params.get('max_repeats')} times, missing parts ({params.get('require_parts')}).")
        qf = manifest.get("query_funnel", {})
        if qf:
            band = ("\nQueries: " + " → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in qf.items()) + ".\n")
    if "low_value" in th:
        band = (f"Band: {params['key']} in [{th['low_value']:.4f}, {th['high_value']:.4f}] "
                f"(quantiles {th['low_quantile']}–{th['high_quantile']} of the eligible pool).\n")
    elif "per_stratum" in th:
        band = f"Band: quantiles {th['low_quantile']}–{th['high_quantile']} of {params['key']} per {params['stratify']}.\n"
    elif manifest.get("temp"):
        d = manifest["temp"]["difficulty"]
        band = (f"TEMP (arXiv 2606.26797): per source, the high-loss cluster of L^(100) at Gaussian checkpoint "
                f"{d['chosen_checkpoint']} (mean loss {d['chosen_ratio']:.2f}x the base model's), then a softmax "
                "budget across domains and sources and k-means picks on L^(1000) along a fine-tuning direction.\n")
    user_id = (f"; `user_id` is the source's own `{source['user_id_column']}` column"
               if source.get("user_id_column") else "")
    funnel_rows = "\n".join(f"| {k.replace('_', ' ')} | {v:,} |" for k, v in funnel.items())
    comp = manifest.get("composition", {})
    comp_lines = []
    for col, stages in comp.items():
        comp_lines.append(f"\n**{col}**\n\n| {col} | " + " | ".join(stages) + " |\n|---|" + "---|" * len(stages))
        for value in sorted({v for counts in stages.values() for v in counts}):
            comp_lines.append(f"| {value} | " + " | ".join(f"{stages[s].get(value, 0):,}" for s in stages) + " |")
    body = f"""# {name}

{manifest['num_rows']:,} rows selected by `data-select` (reasoning-data-select; strategy `{manifest['strategy']}`)
from `{source.get('resolved_name') or source.get('dataset')}` (pool fingerprint `{source.get('fingerprint')}`),
{provenance}.

{selection_line}
{band}
## Funnel

| stage | rows |
|---|---|
{funnel_rows}

## Composition
{chr(10).join(comp_lines) if comp_lines else 'The pool has no category/source columns.'}

## Format

Alpaca-style JSON lines as LLaMA-Factory reads them (`formatting: {manifest['formatting']}`); `id` is the
source row id (`<row:08d>-<sha1[:12]>` of the converted messages){user_id}. Use it in LLaMA-Factory's `dataset_info.json`:

```json
"{name}": {{"hf_hub_url": "USER/{name}", "formatting": "{manifest['formatting']}", "columns": {columns_json}}}
```

Map `system`: without it LLaMA-Factory silently uses the template's default system prompt.
`manifest.json` holds every parameter, the scorer's metadata and the exact thresholds. The rows inherit the
license and terms of the source dataset.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body
