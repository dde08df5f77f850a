"""``data-select``: score a pool, select subsets, register them with LLaMA-Factory, report."""

from __future__ import annotations

from data_selection.command_line import Command, run_cli

COMMANDS = {
    "make-demo-data": Command(
        "Write the procedural AceReason-format demo pool and its held-out eval set.",
        options="data_selection.options.make_demo_data:DemoDataConfig",
        run="data_selection.commands.make_demo_data:run",
    ),
    "prepare-model": Command(
        "Convert the embedded SmolLM2-135M-Instruct GGUF into a Hugging Face checkpoint (cached, idempotent).",
        options="data_selection.options.prepare_model:PrepareModelOptions",
        run="data_selection.commands.prepare_model:run",
    ),
    "score": Command(
        "Score a pool with the base model's response-only cross-entropy (resumable, multi-GPU).",
        options="data_selection.options.score:ScoreOptions",
        run="data_selection.commands.score:run",
    ),
    "perturb": Command(
        "TEMP: describe Gaussian or directional perturbed checkpoints of a model (a manifest; regenerated on use).",
        options="data_selection.options.perturb:PerturbOptions",
        run="data_selection.commands.perturb:run",
    ),
    "score-checkpoints": Command(
        "TEMP: early-token losses (L^(100), L^(1000)) of a pool at every checkpoint of a perturbation.",
        options="data_selection.options.score_checkpoints:CheckpointScoreOptions",
        run="data_selection.commands.score_checkpoints:run",
    ),
    "merge": Command(
        "Merge the per-rank score shards of a run into scores.parquet.",
        options="data_selection.options.merge:MergeOptions",
        run="data_selection.commands.merge:run",
    ),
    "verify": Command(
        "Verify every response of a multi-response pool (math-verify vs reference or majority; resumable).",
        options="data_selection.options.verify:VerifyOptions",
        run="data_selection.commands.verify:run",
    ),
    "select": Command(
        "Select a subset (zpd | random from scores; temp from scores + checkpoint scores; pass-cv from verify), "
        "write it and register it in dataset_info.json.",
        options="data_selection.options.select:SelectOptions",
        run="data_selection.commands.select:run",
    ),
    "register": Command(
        "Add or update a subset's entry in dataset_info.json (atomic, locked).",
        options="data_selection.options.register:RegisterOptions",
        run="data_selection.commands.register:run",
    ),
    "check": Command(
        "Validate every entry of a dataset_info.json with LLaMA-Factory's own loader.",
        options="data_selection.options.check:CheckOptions",
        run="data_selection.commands.check:run",
    ),
    "report": Command(
        "Plots and a markdown summary of one or more selections.",
        options="data_selection.options.report:ReportOptions",
        run="data_selection.commands.report:run",
    ),
    "prune-steps": Command(
        "Delete low-PIR verification/multi-method/error-correction steps from the traces of a subset (LIMOPro).",
        options="data_selection.options.prune_steps:PruneOptions",
        run="data_selection.commands.prune_steps:run",
    ),
    "push": Command(
        "Push a selected subset (with its card and manifest) to the Hugging Face Hub.",
        options="data_selection.options.push:PushOptions",
        run="data_selection.commands.push:run",
    ),
}


def main(argv=None) -> int:
    return run_cli("data-select", COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
