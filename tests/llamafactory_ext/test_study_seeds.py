"""Each study seed trains in its own data order, and the study never relies on ``data_seed``.

LLaMA-Factory 0.9.5 ignores ``data_seed`` at its own data call sites (it merges and splits datasets with
``training_args.seed``; PR #10730 open); the order of the training batches comes from the sampler, seeded through
``set_seed(training_args.seed)`` when ``data_seed`` is unset. The study's intervals assume each seed trains in its
own order, so the planned train commands must set ``seed`` and leave ``data_seed`` alone. Here each shipped
study's train command for two of its seeds goes through LLaMA-Factory's own path on CPU (its YAML + ``key=value``
merge, ``get_train_args``, ``get_dataset``, ``load_model``, ``CustomSeq2SeqTrainer.get_train_dataloader``) with
the tiny model and a tiny dataset in place of the recipe's model and subset, every other recipe setting kept
(batch size, shuffling, sampler); the first batch's rows are read back from their token ids. The tokenizer,
dataset and model are built once per study (nothing of them depends on the seed here); each seed gets its own
``get_train_args`` and trainer, as each seed's run does.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, make_alpaca_rows, write_jsonl
from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_dataset, get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.hparams import get_train_args
from llamafactory.hparams.parser import read_args
from llamafactory.model import load_model, load_tokenizer
from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer

from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies
from llamafactory_ext.study.steps import Step

STUDIES = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "studies").glob("*.yaml"))
ROWS = 32
# what only the hardware or the stand-ins change: the model, its subset, the output folder, GPU-only options
ON_CPU = {"use_cpu": True, "bf16": False, "fp16": False, "flash_attn": "auto", "template": "qwen",
          "preprocessing_num_workers": None, "dataloader_num_workers": 0, "overwrite_cache": True,
          "report_to": "none"}


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def train_steps(study: str) -> list[Step]:
    return [s for s in build_plan(load_study(study, known_strategies())) if s.kind == "train"]


def two_seeds(study: str) -> tuple[Step, Step]:
    """The train steps of one arm for the study's first two seeds."""
    steps = train_steps(study)
    arm = steps[0].arm
    same_arm = sorted((s for s in steps if s.arm == arm), key=lambda s: s.seed)
    assert len(same_arm) >= 2, f"{study}: one seed only"
    return same_arm[0], same_arm[1]


def llamafactory_args(step: Step, monkeypatch) -> dict:
    """The arguments LLaMA-Factory reads from the step's command: ``LAUNCHER train RECIPE key=value ...``."""
    launcher, verb, recipe, *overrides = step.argv
    assert verb == "train" and recipe.endswith(".yaml")
    monkeypatch.setattr(sys, "argv", [launcher, recipe, *overrides])  # as `llamafactory-cli train` hands it on
    return read_args()


@pytest.mark.parametrize("study", STUDIES)
def test_planned_train_commands_set_seed_and_never_data_seed(study, monkeypatch):
    steps = train_steps(study)
    assert steps
    for step in steps:
        assert f"seed={step.seed}" in step.argv
        assert not any(a.startswith("data_seed=") for a in step.argv), step.argv
        args = llamafactory_args(step, monkeypatch)
        assert args["seed"] == step.seed, "an override or the recipe would replace the study's seed"
        assert "data_seed" not in args
    assert len({s.seed for s in steps}) == len(load_study(study, known_strategies()).seeds)


def cpu_args(step: Step, tiny_qwen_dir: Path, data_dir: Path, out: Path, monkeypatch, **extra) -> tuple:
    """LLaMA-Factory's parsed arguments for the step's command, with the stand-ins and on CPU (and ``extra``)."""
    args = llamafactory_args(step, monkeypatch)
    args.pop("deepspeed", None)  # needs torchrun; no bearing on the order
    args.update(ON_CPU, model_name_or_path=str(tiny_qwen_dir), dataset="rows", dataset_dir=str(data_dir),
                output_dir=str(out), **extra)
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(args)
    assert training_args.seed == step.seed and training_args.data_seed == extra.get("data_seed")
    return model_args, data_args, training_args, finetuning_args


class Setup:
    """What run_sft builds before its trainer (tokenizer, template, dataset, model, collator): none of it depends on
    the seed here (one dataset: nothing to merge or split), so it is built once per study and shared."""

    def __init__(self, step: Step, tiny_qwen_dir: Path, data_dir: Path, monkeypatch):
        self.where = (tiny_qwen_dir, data_dir)
        model_args, data_args, training_args, finetuning_args = cpu_args(step, tiny_qwen_dir, data_dir,
                                                                         data_dir / "out", monkeypatch)
        self.tokenizer_module = load_tokenizer(model_args)
        self.tokenizer = self.tokenizer_module["tokenizer"]
        template = get_template_and_fix_tokenizer(self.tokenizer, data_args)
        self.dataset_module = get_dataset(template, model_args, data_args, training_args, stage="sft",
                                          **self.tokenizer_module)
        self.model = load_model(self.tokenizer, model_args, finetuning_args, training_args.do_train)
        self.collator = SFTDataCollatorWith4DAttentionMask(template=template, model=self.model, pad_to_multiple_of=8,
                                                           label_pad_token_id=IGNORE_INDEX, **self.tokenizer_module)

    def first_batch_rows(self, step: Step, out: Path, monkeypatch, **extra) -> list[int]:
        """Which rows of the tiny dataset LLaMA-Factory's trainer puts in its first training batch for ``step``."""
        *_, training_args, finetuning_args = cpu_args(step, *self.where, out, monkeypatch, **extra)
        trainer = CustomSeq2SeqTrainer(model=self.model, args=training_args, finetuning_args=finetuning_args,
                                       data_collator=self.collator, **self.dataset_module, **self.tokenizer_module)
        batch = next(iter(trainer.get_train_dataloader()))
        assert len(batch["input_ids"]) == training_args.per_device_train_batch_size
        texts = self.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        return [int(re.search(r"\(row (\d+)\)", t).group(1)) for t in texts]


@pytest.mark.parametrize("study", ["studies/demo.yaml", "studies/zpd_qwen3b.yaml"])
def test_two_study_seeds_train_in_different_orders(study, tiny_qwen_dir, tmp_path, monkeypatch):
    rows = make_alpaca_rows(ROWS)
    for i, row in enumerate(rows):
        row["instruction"] += f" (row {i})"
    write_jsonl(rows, tmp_path / "rows.jsonl")
    cols = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({"rows": {"file_name": "rows.jsonl", "formatting": "alpaca", "columns": cols}}))
    a, b = two_seeds(study)
    setup = Setup(a, tiny_qwen_dir, tmp_path, monkeypatch)
    first = {s.seed: setup.first_batch_rows(s, tmp_path / f"out{s.seed}", monkeypatch) for s in (a, b)}
    assert first[a.seed] != first[b.seed], first
    # the order is the sampler's permutation under the study's seed (data_seed unset: set_seed(seed) seeds it)
    for seed, got in first.items():
        assert got == torch.randperm(ROWS, generator=torch.Generator().manual_seed(seed))[:len(got)].tolist()
    # and the same seed gives the same order again (a resumed or re-run step trains as before)
    assert setup.first_batch_rows(a, tmp_path / "again", monkeypatch) == first[a.seed]
    # why the study must never set data_seed: the sampler would take it instead, and every seed would train in
    # one order (while LLaMA-Factory's own merge/split still used seed)
    pinned = [setup.first_batch_rows(s, tmp_path / f"pinned{s.seed}", monkeypatch, data_seed=7) for s in (a, b)]
    assert pinned[0] == pinned[1]
