"""``llamafactory-ext``: LLaMA-Factory training with our extensions, lighteval evaluation, comparison."""

from __future__ import annotations

from data_selection.command_line import Command, run_cli

COMMANDS = {
    "train": Command(
        "Train a YAML recipe (RECIPE.yaml [key=value ...]) with our losses/callbacks; launches torchrun when needed.",
        options=None,
        run="llamafactory_ext.commands.train:run",
    ),
    "eval": Command(
        "Evaluate a model with lighteval on a suite (reasoning | general | all | local:FILE).",
        options="llamafactory_ext.options.eval:EvalOptions",
        run="llamafactory_ext.commands.eval:run",
    ),
    "study": Command(
        "Run a selection study from a YAML (score, select, train, evaluate each arm and seed; one report with CIs).",
        options="llamafactory_ext.options.study:StudyOptions",
        run="llamafactory_ext.commands.study:run",
    ),
    "doctor": Command(
        "Preflight [RECIPE.yaml | STUDY.yaml]: GPUs, driver vs torch CUDA, bf16, attention kernels, DeepSpeed, "
        "Liger, vLLM env, disk, hub, strict recipe parse; exit 1 on a blocker.",
        options="llamafactory_ext.options.doctor:DoctorOptions",
        run="llamafactory_ext.commands.doctor:run",
    ),
    "compare": Command(
        "Build the base vs random vs selected table (markdown, CSV) and bar chart from lighteval results.",
        options="llamafactory_ext.options.compare:CompareOptions",
        run="llamafactory_ext.commands.compare:run",
    ),
}


def main(argv=None) -> int:
    return run_cli("llamafactory-ext", COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
