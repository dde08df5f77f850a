"""Our losses inside LLaMA-Factory's own SFT workflow, installed for the duration of one run.

LLaMA-Factory has no plugin hooks, so :func:`installed` swaps two names for the length of a ``with`` block:

* ``llamafactory.train.sft.workflow.CustomSeq2SeqTrainer`` -> a subclass whose ``compute_loss`` runs the model
  with ``output_hidden_states=True, logits_to_keep=1`` (so the model itself builds logits for one position
  only) and computes the loss from the final hidden states in chunks (:mod:`llamafactory_ext.train.losses`);
* ``llamafactory.train.tuner.run_sft`` -> a wrapper that, for iw-SFT, first builds the reference table from
  the exact model/data arguments LLaMA-Factory parsed, then calls the original ``run_sft``.

Everything else (data, collator, DeepSpeed, saving, plots) is LLaMA-Factory's. The subclass sets
``compute_loss_func`` like LLaMA-Factory does for ``use_dft_loss``, so the HF Trainer counts label tokens
across gradient-accumulation micro-batches and ranks and skips its own division by the accumulation steps
exactly as for LLaMA-Factory's DFT: the two paths produce the same loss scale.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.extras.logging import get_logger
from llamafactory.model import load_tokenizer
from llamafactory.train import tuner
from llamafactory.train.sft import workflow
from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer
from llamafactory.train.trainer_utils import dft_loss_func

from data_selection.command_line import UserError
from llamafactory_ext.train.args import ExtensionArguments
from llamafactory_ext.train.dynamic.runtime import Stages, StageSampler
from llamafactory_ext.train.iw_reference import build_reference
from llamafactory_ext.train.losses import dft_loss, iw_sft_loss, label_token_cross_entropy, shift_labels


def _log():
    """LLaMA-Factory's configured logger (its handler and format), so our messages appear in its run log."""
    return get_logger("llamafactory.ext")


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _plain_nll(outputs, labels, num_items_in_batch=None):
    """Unweighted token NLL, LLaMA-Factory's normalisation (used for iw-SFT *evaluation* loss only)."""
    logits = outputs["logits"].float()
    targets = shift_labels(labels.to(logits.device))
    total = torch.nn.functional.cross_entropy(
        logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    n = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum().clamp(min=1)
    return total / (n.to(total.device) if torch.is_tensor(n) else n)


def make_trainer_class(ext: ExtensionArguments, reference=None, stages: Stages | None = None):
    """A CustomSeq2SeqTrainer subclass bound to one run's extension arguments (and iw-SFT reference table, and
    dynamic-selection stages: then the train dataset is the scored pool and each optimizer step trains its stage's rows)."""
    class ExtendedSeq2SeqTrainer(CustomSeq2SeqTrainer):
        extension = ext
        instances = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            type(self).instances += 1
            self._iw_stats = []
            if stages is not None:
                if self.train_dataset is not None and len(self.train_dataset) != stages.dyn.n:
                    _log().warning_rank0(
                        "dynamic_selection: the recipe's dataset has %d rows, dynamic_selection.n is %d; "
                        "training draws n rows per epoch from the pool", len(self.train_dataset), stages.dyn.n)
                stages.attach(self)  # our dataset, sampler plan and collator
            if ext.dft_lean:
                # Same bookkeeping as LLaMA-Factory's use_dft_loss; also the loss used in evaluation.
                self.compute_loss_func = dft_loss_func
            elif ext.iw_sft:
                self.compute_loss_func = _plain_nll
                if reference is None:
                    raise RuntimeError("iw_sft is on but no reference table was built")
                if self.train_dataset is not None and hasattr(self.train_dataset, "select_columns"):
                    n_missing, previews = reference.missing_in(self.train_dataset, self.processing_class)
                    if n_missing:
                        raise UserError(
                            f"iw_sft: {n_missing} of {len(self.train_dataset)} training examples have no "
                            f"reference log-prob in {reference.description}; first: {'; '.join(previews)}"
                        )
                    _log().info_rank0(
                        "iw_sft: all %d training examples matched a reference score", len(self.train_dataset)
                    )

        def _get_train_sampler(self, *args, **kwargs):
            if stages is not None:
                return StageSampler(stages, self.args.seed)
            return super()._get_train_sampler(*args, **kwargs)

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            if stages is not None:  # the step's stage exists before its batches are counted and trained
                epoch_iterator = stages.batches(epoch_iterator)
            return super().get_batch_samples(epoch_iterator, num_batches, device)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not ext.uses_custom_loss or not model.training or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            unwrapped = self.accelerator.unwrap_model(model)
            extra = {"output_hidden_states": True}
            if _accepts_logits_to_keep(unwrapped):
                extra["logits_to_keep"] = 1
            outputs = model(**inputs, **extra)
            tokens = label_token_cross_entropy(
                outputs.hidden_states[-1], labels, unwrapped.get_output_embeddings(), ext.loss_chunk_tokens
            )
            if ext.dft_lean:
                loss = dft_loss(tokens, num_items_in_batch)
            else:
                ref = reference.lookup(
                    inputs["input_ids"], inputs.get("attention_mask"), self.processing_class
                )
                loss, iw = iw_sft_loss(tokens, ref, ext.iw_sft_clip, num_items_in_batch)
                self._iw_stats.append((iw.weights.float(), iw.clipped))  # on device: no sync per step
            # HF Trainer.compute_loss does this for every compute_loss_func (token-averaged across ranks).
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if self._iw_stats and "loss" in logs:
                weights = torch.cat([w for w, _ in self._iw_stats]).cpu()
                clipped = torch.cat([c for _, c in self._iw_stats]).cpu()
                logs["iw_weight_mean"] = round(weights.mean().item(), 4)
                logs["iw_weight_max"] = round(weights.max().item(), 4)
                logs["iw_clipped_frac"] = round(clipped.float().mean().item(), 4)
                self._iw_stats = []
            return super().log(logs, *args, **kwargs)

    return ExtendedSeq2SeqTrainer


@contextmanager
def installed(ext: ExtensionArguments):
    """Route LLaMA-Factory's SFT workflow through our trainer for the duration of the block.

    Yields the trainer class (its ``instances`` counter tells whether LLaMA-Factory really used it).
    """
    if not ext.uses_custom_loss and ext.dynamic is None:
        yield None
        return
    original_trainer, original_run_sft = workflow.CustomSeq2SeqTrainer, tuner.run_sft
    state = {"cls": make_trainer_class(ext), "stages": None}

    def run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks=None):
        if ext.dynamic is not None:
            tokenizer = load_tokenizer(model_args)["tokenizer"]
            state["stages"] = Stages(ext.dynamic, training_args.output_dir, tokenizer, data_args.template,
                                     data_args.cutoff_len, training_args.per_device_train_batch_size,
                                     training_args.gradient_accumulation_steps)
            state["cls"] = make_trainer_class(ext, stages=state["stages"])
        if ext.iw_sft:
            tokenizer = load_tokenizer(model_args)["tokenizer"]
            template = get_template_and_fix_tokenizer(tokenizer, data_args)
            with training_args.main_process_first(
                desc="iw-SFT reference", local=not data_args.data_shared_file_system
            ):
                reference = build_reference(
                    model_args, data_args, training_args, tokenizer, template, ext.iw_sft_scores
                )
            _log().info_rank0(
                "iw_sft: reference log-probs for %d sequences from %s", len(reference), ext.iw_sft_scores
            )
            state["cls"] = make_trainer_class(ext, reference)
        workflow.CustomSeq2SeqTrainer = state["cls"]
        return original_run_sft(
            model_args, data_args, training_args, finetuning_args, generating_args, callbacks
        )

    tuner.run_sft = run_sft
    try:
        yield state
    finally:
        workflow.CustomSeq2SeqTrainer, tuner.run_sft = original_trainer, original_run_sft
