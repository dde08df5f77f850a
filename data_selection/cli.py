"""``data-select``: score a pool, select subsets, register them with LLaMA-Factory, report."""

from __future__ import annotations

from data_selection.command_line import Command, run_cli

COMMANDS = {
    "make-demo-data": Command(
        "data_selection.demo_data:DemoDataConfig:cli_make_demo_data",
        "Write the procedural AceReason-format demo pool and its held-out eval set.",
    ),
    "prepare-model": Command(
        "data_selection.embedded:PrepareModelOptions:cli_prepare_model",
        "Convert the embedded SmolLM2-135M-Instruct GGUF into a Hugging Face checkpoint (cached, idempotent).",
    ),
    "score": Command(
        "data_selection.commands.score:ScoreOptions:run",
        "Score a pool with the base model's response-only cross-entropy (resumable, multi-GPU).",
    ),
    "perturb": Command(
        "data_selection.perturb.command:PerturbOptions:cli_perturb",
        "TEMP: describe Gaussian or directional perturbed checkpoints of a model (a manifest; regenerated on use).",
    ),
    "score-checkpoints": Command(
        "data_selection.commands.score_checkpoints:CheckpointScoreOptions:run",
        "TEMP: early-token losses (L^(100), L^(1000)) of a pool at every checkpoint of a perturbation.",
    ),
    "merge": Command(
        "data_selection.commands.merge:MergeOptions:run",
        "Merge the per-rank score shards of a run into scores.parquet.",
    ),
    "verify": Command(
        "data_selection.commands.verify:VerifyOptions:run",
        "Verify every response of a multi-response pool (math-verify vs reference or majority; resumable).",
    ),
    "select": Command(
        "data_selection.select:SelectOptions:cli_select",
        "Select a subset (zpd | random from scores; temp from scores + checkpoint scores; pass-cv from verify), "
        "write it and register it in dataset_info.json.",
    ),
    "register": Command(
        "data_selection.registry:RegisterOptions:cli_register",
        "Add or update a subset's entry in dataset_info.json (atomic, locked).",
    ),
    "check": Command(
        "data_selection.registry:CheckOptions:cli_check",
        "Validate every entry of a dataset_info.json with LLaMA-Factory's own loader.",
    ),
    "report": Command(
        "data_selection.report:ReportOptions:cli_report",
        "Plots and a markdown summary of one or more selections.",
    ),
    "prune-steps": Command(
        "data_selection.commands.prune_steps:PruneOptions:run",
        "Delete low-PIR verification/multi-method/error-correction steps from the traces of a subset (LIMOPro).",
    ),
    "doctor": Command(
        "llamafactory_ext.doctor.runner:DoctorOptions:cli_doctor",
        "Preflight (same as `llamafactory-ext doctor`): GPUs, driver vs torch CUDA, kernels, disk, hub, recipe.",
    ),
    "push": Command(
        "data_selection.push:PushOptions:cli_push",
        "Push a selected subset (with its card and manifest) to the Hugging Face Hub.",
    ),
}


def main(argv=None) -> int:
    return run_cli("data-select", COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
