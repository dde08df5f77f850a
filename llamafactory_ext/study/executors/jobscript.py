"""The sbatch script of one study step: resources as ``#SBATCH`` lines, then the step run through the study itself.

The job runs ``python -m llamafactory_ext.cli study STUDY.yaml --run-step ID`` with this environment's
interpreter (an absolute path: the job inherits the submitting shell's environment, not its venv activation),
so a step is done exactly when the local executor would call it done: its command exited 0 and
``step.json`` was written. A multi-node step (``nodes`` > 1) starts one launcher per node with ``srun``, with
the variables LLaMA-Factory's launcher and torchrun read (``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``, ``NPROC_PER_NODE`` and torchrun's ``PET_*`` twins) set from Slurm's; node 0 writes the record.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from llamafactory_ext.study.cluster import Resources

START_MARK = "[job] start"
END_MARK = "[job] end"


def job_name(study: str, label: str) -> str:
    """``STUDY.train-zpd-seed-42``: study, step, arm and seed, as squeue shows it."""
    return f"{study}.{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}"


def python() -> str:
    """This interpreter, absolute but not resolved (a venv's python is a symlink to the system one)."""
    return os.path.abspath(sys.executable)


def sbatch_lines(name: str, log: Path, workdir: Path, res: Resources) -> list[str]:
    opts = [f"--job-name={name}", f"--output={log}", f"--chdir={workdir}", f"--nodes={res.nodes}",
            "--ntasks-per-node=1", "--kill-on-invalid-dep=yes", "--export=ALL"]
    if res.gpus:
        opts.append(f"--gpus-per-node={res.gpus}")
    for key, flag in (("cpus", "--cpus-per-task"), ("mem", "--mem"), ("time", "--time"),
                      ("partition", "--partition"), ("account", "--account"), ("qos", "--qos")):
        value = getattr(res, key)
        if value is not None:
            opts.append(f"{flag}={value}")
    return [f"#SBATCH {o}" for o in (*opts, *res.sbatch)]


def render(name: str, log: Path, workdir: Path, res: Resources, study: Path, step_id: str) -> str:
    """The whole job script for step ``step_id`` (a step hash, or ``report``) of the study file ``study``."""
    run = [python(), "-m", "llamafactory_ext.cli", "study", str(study), "--run-step", step_id]
    lines = ["#!/bin/bash", *sbatch_lines(name, log, workdir, res), "set -uo pipefail",
             f'echo "{START_MARK} $(date +%s.%N) job $SLURM_JOB_ID on $(hostname)"']
    if res.nodes > 1:
        lines += [
            "# one launcher per node; LLaMA-Factory's launcher and torchrun read these",
            "export NNODES=$SLURM_NNODES PET_NNODES=$SLURM_NNODES",
            'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))",
            "export PET_MASTER_ADDR=$MASTER_ADDR PET_MASTER_PORT=$MASTER_PORT",
            f"export NPROC_PER_NODE={max(1, res.gpus)}",
            'echo "[job] $NNODES node(s) of $NPROC_PER_NODE process(es), master $MASTER_ADDR:$MASTER_PORT"',
            "srun --nodes=$SLURM_NNODES --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "
            + shlex.quote("export NODE_RANK=$SLURM_NODEID PET_NODE_RANK=$SLURM_NODEID; exec " + shlex.join(run)),
        ]
    else:
        lines.append(shlex.join(run))
    lines += ["rc=$?", f'echo "{END_MARK} $(date +%s.%N) exit $rc"', "exit $rc", ""]
    return "\n".join(lines)
