"""``data-select prune-steps``: PIR of every step, then the pruned subset (:func:`data_selection.transforms.runner.
run_prune`) and its report (:func:`data_selection.reports.pruned.write_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_selection.options.prune_steps import PruneOptions
from data_selection.reports.pruned import write_report
from data_selection.transforms.runner import run_prune
from data_selection.transforms.steps import PROGRESSIVE

__all__ = ["PruneOptions", "prune_and_report", "run"]


def prune_and_report(opts: PruneOptions) -> dict[str, Any]:
    """The pruned subset, then (on the rank that wrote it) its report: markdown, PNGs and the offline page."""
    s = run_prune(opts)
    facts = s.pop("report_facts", None)  # present when this call wrote the subset
    if s.get("finished") and facts is not None:
        write_report(Path(s["paths"]["report"]).parent, s["manifest"], facts)
    return s


def run(opts: PruneOptions) -> int:
    s = prune_and_report(opts)
    if not s.get("finished"):
        if s.get("rank", 0) == 0:
            print(f"{s['waiting_for_shards']} shard(s) still running on other ranks; the last rank to finish writes "
                  f"the subset (or re-run the same command once they are done)")
        return 0
    if s.get("rows_now"):
        print(f"PIR computed on {s['pir_rows_now']:,} of {s['rows_now']:,} rows in {s['seconds']:,.1f} s "
              f"({s['seconds_per_row']:.3f} s/row, {s['forward_tokens_now']:,} forward tokens, {s['device']})")
    if s.get("step_typer"):
        print(f"step typer {opts.step_typer}: asked about {s['step_typer']['asked']:,} unmarked steps, "
              f"{s['step_typer']['unparsed']:,} answers named no type (left progressive)")
    m = s["manifest"]
    rows, tok = m["rows"], m["tokens"]
    print(f"rows: {rows['written']:,} of {rows['input']:,} written, {rows['changed']:,} pruned, "
          f"{rows['unchanged_total']:,} unchanged, {rows['rejected']:,} rejected"
          + "".join(f"\n  unchanged, {why}: {n:,}" for why, n in rows["unchanged"].items())
          + "".join(f"\n  rejected, {why}: {n:,}" for why, n in rows["rejected_by_reason"].items()))
    if rows["rejected"]:
        print(f"rejects: {s['paths']['rejects']} ({rows['rejected']:,} rows not written, each with its row number "
              "and reason)")
    print("steps deleted / found: " + ", ".join(f"{t} {v['deleted']:,}/{v['found']:,}"
                                                for t, v in m["steps"].items() if t != PROGRESSIVE))
    print(f"response tokens: {tok['response_before']:,} -> {tok['response_after']:,} "
          f"(-{tok['removed']:,}, {100 * tok['removed_share']:.1f}%)")
    print(f"subset: {s['paths']['data']} ({m['num_rows']:,} rows)\nmanifest: {s['paths']['manifest']}\n"
          f"report: {s['paths']['report']}\n{s['dataset_info']}: {s['registered']} entry {opts.name!r}")
    return 0
