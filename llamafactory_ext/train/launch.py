"""``llamafactory-ext train RECIPE.yaml [key=value ...]``: LLaMA-Factory training with our losses, callbacks.

``llamafactory-cli train`` re-executes itself under ``torchrun`` whenever ``FORCE_TORCHRUN`` is set or there
are several GPUs, so a wrapper that patches LLaMA-Factory and then calls ``llamafactory-cli`` would patch
only the launcher, never the workers. This entry point therefore plays both roles itself, the way
``llamafactory/launcher.py`` (0.9.5) does:

* **launcher**: same decision and the same environment variables as LLaMA-Factory (``FORCE_TORCHRUN``,
  ``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, elastic ``RDZV_ID`` /
  ``MIN_NNODES`` / ``MAX_NNODES`` / ``MAX_RESTARTS``, ``OPTIM_TORCH``), then
  ``torchrun -m llamafactory_ext.train`` with the same arguments. One deliberate difference: with no GPU,
  ``NPROC_PER_NODE`` defaults to 1 instead of LLaMA-Factory's 0 (which launches no process at all);
* **worker** (:mod:`llamafactory_ext.train.worker`; under torchrun, or directly when no torchrun is needed): split the recipe into LLaMA-Factory's
  keys and ours (:mod:`llamafactory_ext.train.args`), install our trainer (:mod:`llamafactory_ext.train.trainer`)
  and padding-free batches (:mod:`llamafactory_ext.train.padding_free`),
  build the named callbacks and call ``llamafactory.train.tuner.run_exp(args, callbacks=...)``.

The recipe is read like LLaMA-Factory reads it (OmegaConf: YAML or JSON, ``key=value`` overrides), and it is
checked in the launcher already, so a typo fails in a second instead of after torchrun has started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from copy import deepcopy
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data_selection.command_line import UserError
from llamafactory_ext.train.args import extension_help, split_recipe_args

USAGE = """usage: llamafactory-ext train RECIPE.yaml [key=value ...]

Train a LLaMA-Factory recipe (any key `llamafactory-cli train` accepts) plus these llamafactory-ext keys:

{ext_help}

Launch: FORCE_TORCHRUN=1 [NPROC_PER_NODE=8] llamafactory-ext train yaml_recipes/dft_lean.yaml
Overrides: llamafactory-ext train yaml_recipes/iw_sft.yaml output_dir=saves/try2 num_train_epochs=1
"""


def _enabled(name: str, default: str = "0") -> bool:
    return os.getenv(name, default).lower() in ("true", "y", "1")


def read_recipe(path: str, overrides: list[str]) -> dict[str, Any]:
    """A YAML/JSON recipe merged with ``key=value`` overrides, as ``llamafactory-cli train`` merges them."""
    if not os.path.isfile(path):
        raise UserError(f"recipe {path!r} not found")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError(f"overrides must look like key=value, got {bad}")
    try:
        if path.endswith((".yaml", ".yml")):
            base = OmegaConf.load(path)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                base = OmegaConf.create(json.load(f))
        else:
            raise UserError(f"recipe {path!r}: expected a .yaml, .yml or .json file")
        merged = OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_cli(overrides)))
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as err:  # name the file
        raise UserError(f"recipe {path!r}: {err}") from None
    if not isinstance(merged, dict):
        raise UserError(f"recipe {path!r}: expected a mapping of keys to values")
    return merged


def is_distributed_worker() -> bool:
    """True inside a process started by torchrun / deepspeed / accelerate."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def needs_torchrun() -> bool:
    """LLaMA-Factory 0.9.5's rule (launcher.py): FORCE_TORCHRUN, or several devices, no Ray/KTransformers."""
    if _enabled("FORCE_TORCHRUN") or _enabled("USE_MCA"):
        return True
    from llamafactory.extras.misc import get_device_count

    return get_device_count() > 1 and not _enabled("USE_RAY") and not _enabled("USE_KT")


def torchrun_command(argv: list[str], env: dict[str, str]) -> list[str]:
    """The torchrun command line LLaMA-Factory would build, running ``llamafactory_ext.train`` instead."""
    from llamafactory.extras.misc import find_available_port, get_device_count

    nnodes = env.get("NNODES", "1")
    node_rank = env.get("NODE_RANK", "0")
    nproc_per_node = env.get("NPROC_PER_NODE") or str(max(1, get_device_count()))
    master_addr = env.get("MASTER_ADDR", "127.0.0.1")
    master_port = env.get("MASTER_PORT") or str(find_available_port())
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    rdzv_id = env.get("RDZV_ID")
    if rdzv_id is not None:
        rdzv_nnodes = nnodes
        if env.get("MIN_NNODES") is not None and env.get("MAX_NNODES") is not None:
            rdzv_nnodes = f"{env['MIN_NNODES']}:{env['MAX_NNODES']}"
        cmd += [
            "--nnodes", rdzv_nnodes, "--nproc-per-node", nproc_per_node, "--rdzv-id", rdzv_id,
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{master_addr}:{master_port}",
            "--max-restarts", env.get("MAX_RESTARTS", "0"),
        ]  # fmt: skip
    else:
        cmd += [
            "--nnodes", nnodes, "--node_rank", node_rank, "--nproc_per_node", nproc_per_node,
            "--master_addr", master_addr, "--master_port", master_port,
        ]  # fmt: skip
    return cmd + ["-m", "llamafactory_ext.train", *argv]


def launch_torchrun(argv: list[str]) -> int:
    env = deepcopy(dict(os.environ))
    if _enabled("OPTIM_TORCH", "1"):  # same DDP tuning as LLaMA-Factory's launcher
        env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        env["TORCH_NCCL_AVOID_RECORD_STREAMS"] = "1"
    cmd = torchrun_command(argv, env)
    print("llamafactory-ext: launching " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(ext_help=extension_help()))
        return 0 if argv else 2
    recipe, overrides = argv[0], argv[1:]
    lf_args, ext = split_recipe_args(read_recipe(recipe, overrides), source=recipe)
    if not is_distributed_worker() and needs_torchrun():
        return launch_torchrun(argv)
    from llamafactory_ext.train.worker import run_worker  # lazy: torch + LLaMA-Factory, not in the launcher

    return run_worker(lf_args, ext)
