"""``data-select perturb``: write (or reuse) a perturbation manifest, optionally export one checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data_selection.options.perturb import PerturbOptions
from data_selection.perturb.build import run_perturb, summary_lines
from data_selection.perturb.export import export_checkpoint


def run(opts: PerturbOptions) -> int:
    res = run_perturb(opts)
    m = res["manifest"]
    if res["status"] == "unchanged":
        print(f"{res['path']} already describes this perturbation (digest {m['digest']})"
              + ("" if opts.export else "; nothing to do"), file=sys.stderr)
    print("\n".join(summary_lines(m)))
    print(f"manifest: {res['path']} (digest {m['digest']})")
    if opts.export:
        folder = export_checkpoint(m, opts.export, opts.export_dir or str(Path(opts.out) / f"checkpoint-{opts.export}"),
                                   dtype=opts.export_dtype, model=opts.model, target=opts.target,
                                   threads=opts.threads, trust_remote_code=opts.trust_remote_code)
        print(f"checkpoint {opts.export}: {folder}")
    print(json.dumps({"seconds": m["created"].get("seconds")}))
    return 0
