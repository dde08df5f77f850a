"""``llamafactory-ext eval``: plan, run lighteval (behind a vLLM server when asked), summarize."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from data_selection.command_line import UserError
from llamafactory_ext.evaluation.plan import generation_length_notice, prepare
from llamafactory_ext.evaluation.run import _quote, newest_results, run_streaming, summarize
from llamafactory_ext.evaluation.staging import STAGED_MODEL
from llamafactory_ext.evaluation.vllm_server import INSTALL_HINT, log_tail, running_server
from llamafactory_ext.options.eval import EvalOptions


def run(opts: EvalOptions) -> int:
    plan = prepare(opts)
    out = Path(opts.out)
    print(
        f"[eval] {plan.model} -> {out}  backend={plan.backend} tasks={','.join(plan.tasks)}", file=sys.stderr
    )
    print(f"[eval] (cd {out} && {' '.join(_quote(c) for c in plan.command)})", file=sys.stderr)
    notice = generation_length_notice(plan)
    if notice:
        print(notice, file=sys.stderr)
    if opts.dry_run:
        summarize(plan, out, None, None)
        return 0
    start = time.time()
    if plan.server_command:
        with running_server(plan.server_command, plan.base_url, STAGED_MODEL, out / "vllm_server.log",
                            opts.server_timeout):
            rc = run_streaming(plan.command, out, out / "lighteval.log")
    else:
        rc = run_streaming(plan.command, out, out / "lighteval.log")
    if rc != 0:
        hint = ""
        if plan.backend == "vllm":
            hint = (f"\nThe vllm backend runs lighteval's litellm backend here (pip install -e '.[eval]' "
                    f"installs it) against the server at {plan.base_url}"
                    + (f" (log: {out / 'vllm_server.log'})" if plan.server_command else "")
                    + f"; the server needs vLLM: {INSTALL_HINT}. Or use --backend accelerate.")
        raise UserError(
            f"lighteval exited with status {rc}; full log: {out / 'lighteval.log'}\n"
            f"{log_tail(out / 'lighteval.log')}{hint}"
        )
    results_file = newest_results(out, start)
    summary = summarize(plan, out, results_file, time.time() - start)
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"[eval] lighteval results: {out / summary['results_file']}", file=sys.stderr)
    return 0
