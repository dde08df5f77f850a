"""Recipe probe: the recipe (with a study's overrides) passes our key check and LLaMA-Factory's strict parser
(no ``ALLOW_EXTRA_ARGS``, the DeepSpeed file loaded), and a recipe's dataset is registered."""

from __future__ import annotations

import os

from data_selection.command_line import UserError
from llamafactory_ext.doctor.gpu import gpu_count
from llamafactory_ext.doctor.target import Check, Target
from llamafactory_ext.train.args import split_recipe_args


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text}" if not isinstance(err, ValueError) else text


def check_recipe(t: Target) -> Check:
    if not t.recipe:
        return Check("recipe parses", "skip", "no recipe or study given")
    from llamafactory.hparams.parser import _parse_train_args
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    args = dict(t.recipe)
    if t.kind == "study":  # the study sets these per arm and seed
        args.setdefault("output_dir", "saves/doctor")
    if args.get("iw_sft") and args.get("iw_sft_scores") and not os.path.exists(str(args["iw_sft_scores"])):
        args.pop("iw_sft_scores")  # written by an earlier step of the pipeline
        args["iw_sft"] = False
    try:
        lf_args, _ = split_recipe_args(args, source=t.recipe_path)
    except UserError as err:
        return Check("recipe parses", "blocker", str(err), "fix the key the message names")
    cpu = not gpu_count()
    saved = os.environ.pop("ALLOW_EXTRA_ARGS", None)
    try:
        _parse_train_args({**lf_args, **({"use_cpu": True} if cpu else {})})
        if t.kind == "recipe":
            from llamafactory.data.parser import get_dataset_list
            from llamafactory.hparams import DataArguments

            get_dataset_list(lf_args.get("dataset", "").split(",") if lf_args.get("dataset") else None,
                             lf_args.get("dataset_dir", DataArguments.dataset_dir))
    except (Exception, SystemExit) as err:
        return Check("recipe parses", "blocker", f"{t.recipe_path}: LLaMA-Factory refuses it: {_first_line(err)}",
                     "fix the key the message names (llamafactory-ext train --help lists ours)")
    finally:
        unset_hf_deepspeed_config()  # parsing `deepspeed:` registers a process-wide ZeRO-3 flag
        if saved is not None:
            os.environ["ALLOW_EXTRA_ARGS"] = saved
    note = " (checked with use_cpu: this machine has no GPU)" if cpu else ""
    return Check("recipe parses", "ok", f"{t.recipe_path}: LLaMA-Factory's strict parser accepts it{note}")


PROBES = (check_recipe,)
