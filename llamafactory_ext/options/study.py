"""Options of ``llamafactory-ext study`` (the command: :mod:`llamafactory_ext.commands.study`).

Light: the standard library and the study's step kinds (llamafactory_ext/study/steps.py, standard library only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamafactory_ext.study.steps import KINDS


@dataclass
class StudyOptions:
    config: list[str] = field(default_factory=list, metadata={"help": "The study YAML (see studies/demo.yaml)."})
    dry_run: bool = field(default=False, metadata={
        "help": "Print every step's command, whether it is done, and estimated GPU-hours; run nothing."})
    until: str = field(default="", metadata={
        "help": "Stop after the last step of this kind (the rest runs on the next invocation).",
        "choices": ("", *KINDS)})
    skip_doctor: bool = field(default=False, metadata={
        "help": "Do not run `llamafactory-ext doctor STUDY.yaml`'s checks before the first step (they stop the "
                "study on a blocker: no GPU torch can use, a broken kernel, too little disk, a recipe "
                "LLaMA-Factory refuses…). Not run with --dry-run, --status or --executor slurm (a login node has no GPU: run `llamafactory-ext doctor STUDY.yaml` in a GPU job instead)."})
    executor: str = field(default="local", metadata={
        "help": "local: run the steps on this machine; slurm: submit every unfinished step as a Slurm job "
                "(sbatch, --dependency=afterok on the steps it needs, resources from the study's cluster: "
                "section) and return; run it again to resubmit what failed.", "choices": ("local", "slurm")})
    status: bool = field(default=False, metadata={
        "help": "Print each step as done / queued / running / failed / to run (job id, elapsed time, the tail "
                "of a failed step's log) from the step folders and the scheduler; submit nothing."})
    gpus: int = field(default=0, metadata={
        "help": "--executor local: run independent steps concurrently on this many GPUs, each with its own "
                "CUDA_VISIBLE_DEVICES slice (evaluation 1 GPU, scoring and training the study's gpus); "
                "0: one step at a time."})
    jobs: int = field(default=0, metadata={
        "help": "--executor local --gpus N: at most this many steps at once (0: one per GPU)."})
    run_step: str = field(default="", metadata={
        "help": "Run just this step (its hash: the end of its folder name under OUT/steps) or 'report', once its "
                "inputs are done; what each Slurm job runs."})

    POSITIONAL = "config"

