"""``llamafactory-ext``: LLaMA-Factory training with our extensions, lighteval evaluation, comparison."""

from __future__ import annotations

from data_selection.command_line import Command, run_cli

COMMANDS = {
    "train": Command(
        "llamafactory_ext.train.launch:main",
        "Train a YAML recipe (RECIPE.yaml [key=value ...]) with our losses/callbacks; launches torchrun when needed.",
    ),
    "eval": Command(
        "llamafactory_ext.evaluation.run:EvalOptions:cli_eval",
        "Evaluate a model with lighteval on a suite (reasoning | general | all | local:FILE).",
    ),
    "study": Command(
        "llamafactory_ext.commands.study:StudyOptions:run",
        "Run a selection study from a YAML (score, select, train, evaluate each arm and seed; one report with CIs).",
    ),
    "doctor": Command(
        "llamafactory_ext.doctor.runner:DoctorOptions:cli_doctor",
        "Preflight [RECIPE.yaml | STUDY.yaml]: GPUs, driver vs torch CUDA, bf16, attention kernels, DeepSpeed, "
        "Liger, vLLM env, disk, hub, strict recipe parse; exit 1 on a blocker.",
    ),
    "compare": Command(
        "llamafactory_ext.evaluation.compare:CompareOptions:cli_compare",
        "Build the base vs random vs selected table (markdown, CSV) and bar chart from lighteval results.",
    ),
}


def main(argv=None) -> int:
    return run_cli("llamafactory-ext", COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
