"""Dynamic selection inside one training run: the pool rows as training examples, the stage sampler, and the
in-loop scorer that re-scores candidates with the current weights at each stage boundary.

The trainer (:mod:`llamafactory_ext.train.trainer`) attaches :class:`Stages`: its train dataset becomes
:class:`SlotDataset` (every scored pool row, encoded by LLaMA-Factory's template code exactly as ``data-select score``
encodes it), its sampler :class:`StageSampler` and its collator :class:`SlotCollator`. A stage lasts ``every``
optimizer steps (an epoch's steps for ``every: epoch``); stage K starts at global step K * every, mid-epoch or not.

The sampler yields ``n`` slots per epoch (``epoch * n + i``), so the steps per epoch and the learning-rate schedule are
the static recipe's. Which row fills a slot is decided by the optimizer step that trains it: slot i of epoch e at step
s holds row ``order_e[i]`` of the subset of stage ``s // every`` (``order_e``: a permutation seeded with seed + e, the
same on every rank and in a resumed run). The data loader fetches ahead of the trainer (accelerate keeps one batch in
hand, workers more), so a slot fetched before its stage exists carries a provisional row; at the start of every
optimizer step, :meth:`Stages.batches` first makes sure the step's stage exists (a finished ``stage-K`` folder is read
back: resume, no re-scoring; otherwise stage 0 is the static selection and stage K >= 1 scores its candidates with the
current weights -- :func:`data_selection.scoring.forward.score_sequences` and
:func:`~data_selection.scoring.forward.loss_features`, the scorer's own functions -- every rank a share, merged on
every rank, then drawn with the same selector, seed + K), then re-collates any micro-batch whose rows are not the
plan's. A boundary therefore falls between optimizer steps, never inside a gradient accumulation, and a resumed run
(the HF Trainer skips the consumed batches of its epoch) trains the same rows as an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate.utils import send_to_device
from llamafactory.extras.logging import get_logger
from torch.utils.data import Dataset, Sampler
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from data_selection.command_line import UserError
from data_selection.encoding import TemplateEncoder
from data_selection.scores_table import SELECT_READ_COLUMNS, STAT_COLUMNS, load_scored_pool, load_scores
from data_selection.scoring.forward import loss_features, score_sequences, token_features
from data_selection.scoring.logprobs import auto_chunk_tokens
from data_selection.scoring.varlen import resolve_packing
from llamafactory_ext.train.dynamic import stages, zero3
from llamafactory_ext.train.dynamic.options import DynamicSelection, brier_top_k, steps_per_epoch, world_size

LOSS_COLUMNS = ("loss_sum", "loss_mean", "loss_first_100", "loss_first_1000")
SLOT, POSITION = "_dynamic_slot", "_dynamic_position"  # carried from the dataset to Stages.batches, never to the model


def _log():
    return get_logger("llamafactory.ext")


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray
    labels: np.ndarray


class PoolDataset(Dataset):
    """Every scored pool row as a training example (``input_ids``, ``attention_mask``, ``labels``), by position."""

    def __init__(self, encoded: dict[int, Any]):
        self.rows = sorted(encoded)
        self.position = {r: i for i, r in enumerate(self.rows)}
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        enc = self.encoded[self.rows[i]]
        return {"input_ids": enc.input_ids.tolist(), "attention_mask": [1] * len(enc.input_ids),
                "labels": enc.labels.tolist()}


class SlotDataset(Dataset):
    """The train dataset the sampler indexes: slot -> the pool row the plan puts there, tagged with the slot and the
    row's position (provisional when the slot's stage is not drawn yet where this runs: replaced before training)."""

    def __init__(self, stages_: Stages):
        self.stages = stages_

    def __len__(self) -> int:
        return len(self.stages.dataset)

    def __getitem__(self, slot: int) -> dict[str, Any]:
        position = self.stages.provisional_position(int(slot))
        return {**self.stages.dataset[position], SLOT: int(slot), POSITION: position}


class SlotCollator:
    """The trainer's collator, with the slot and position of every row kept beside the batch as two tensors."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, features):
        if not features or SLOT not in features[0]:  # evaluation batches: not ours
            return self.inner(features)
        tags = {key: torch.tensor([f[key] for f in features], dtype=torch.long) for key in (SLOT, POSITION)}
        batch = self.inner([{k: v for k, v in f.items() if k not in tags} for f in features])
        batch.update(tags)
        return batch


def encode_pool(encoder: TemplateEncoder, pool, rows: list[int]) -> dict[int, Any]:
    """pool row -> its (input_ids, labels) through the scorer's encoder (LLaMA-Factory's template and truncation),
    held as int32 arrays: 100K rows of ~5K tokens take ~4 GB per rank instead of ~36 GB as Python lists."""
    out = {}
    for ex in pool.converted.select(rows):
        enc = encoder.encode(ex)
        out[int(ex["_row"])] = Encoded(np.asarray(enc.input_ids, dtype=np.int32), np.asarray(enc.labels, dtype=np.int32))
    return out


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _dist()[1] > 1:
        torch.distributed.barrier()


def score_rows(model, encoded: dict[int, Any], rows: list[int], dyn: DynamicSelection, pad_id: int, top_k: int = 0
               ) -> tuple[dict[int, dict[str, float]], dict[str, Any]]:
    """In-loop scores of ``rows`` with the model's current weights (this rank's share, merged over ranks), and how
    the ranks ran: ``{"zero3", "batches_per_rank", "idle_passes_per_rank"}`` (each rank computes the same).

    ``top_k`` >= 1: also each row's rank and top-K Brier statistics (the ``STAT_COLUMNS``, from the same logits), as
    ``data-select score --brier_top_k K`` stores them.

    Rank r scores ``rows[r::world]``, then the shares are gathered. Under DeepSpeed ZeRO-3 (:mod:`.zero3`) the
    output head is gathered once into a local copy, and a rank whose share has fewer batches runs one-token passes
    until every rank has run as many forwards (each gathers the body's layers from all ranks).
    """
    rank, world = _dist()
    on_zero3 = is_deepspeed_zero3_enabled()
    shares = [{r: len(encoded[r].input_ids) for r in rows[k::world]} for k in range(world)]
    batches = zero3.batches_per_rank(shares, dyn.batch_tokens, resolve_packing(dyn.packing, model))
    idle = [max(batches) - b if on_zero3 else 0 for b in batches]
    param = next(model.parameters())
    device = str(param.device)
    chunk = auto_chunk_tokens(model.config.vocab_size)  # not the head's weight: ZeRO-3 partitions it to size 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), zero3.gathered_head(model, on_zero3) as scorer:
            losses, _ = score_sequences(scorer, {r: (encoded[r].input_ids, encoded[r].labels) for r in shares[rank]},
                                        batch_tokens=dyn.batch_tokens, chunk_tokens=chunk, device=device,
                                        pad_id=pad_id, packing=dyn.packing, top_k=top_k)
            zero3.run_idle_forwards(model, idle[rank], device, pad_id)
    finally:
        model.train(was_training)
    features = token_features if top_k else loss_features
    feats = {r: features(tok) for r, tok in losses.items()
             if bool(torch.isfinite(tok[:, 0] if top_k else tok).all())}
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, feats)
        feats = {r: f for part in gathered for r, f in part.items()}
    return feats, {"zero3": on_zero3, "batches_per_rank": batches, "idle_passes_per_rank": idle}


class Stages:
    """The stages of one run and the plan of which row trains at which step: computed at the start of the boundary
    step, read back when already on disk."""

    def __init__(self, dyn: DynamicSelection, output_dir: str, tokenizer, template: str, cutoff_len: int,
                 batch_size: int, accumulation: int):
        self.dyn = dyn
        self.output_dir = output_dir
        self.base, self.meta, _ = load_scores(dyn.scores, SELECT_READ_COLUMNS)
        # with the rank/Brier columns in the base scores, every stage re-computes them (same top-K): a stage table
        # never carries the base model's ranks beside the current weights' losses
        found = [c for c in STAT_COLUMNS if c in self.base]
        self.top_k = brier_top_k(self.meta) if len(found) == len(STAT_COLUMNS) else 0
        if not self.top_k:  # a table from before the statistics: the stages carry the loss columns only
            self.base = self.base.drop(columns=found)
        self.stat_columns = list(STAT_COLUMNS) if self.top_k else []
        self.pool = load_scored_pool(self.meta, dyn.scores)
        encoder = TemplateEncoder(tokenizer, template, cutoff_len)
        self.encoded = encode_pool(encoder, self.pool, sorted(int(r) for r in self.base["row"]))
        self.dataset = PoolDataset(self.encoded)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.per_epoch = steps_per_epoch(dyn.n, {"per_device_train_batch_size": batch_size,
                                                 "gradient_accumulation_steps": accumulation})
        self.every = dyn.every_steps or self.per_epoch  # optimizer steps per stage
        self.rows_per_step = batch_size * accumulation * world_size()  # sampler slots one optimizer step takes
        self.seed = 0  # the trainer's seed, set by the sampler: epoch e's order is seeded with seed + e
        self.trainer = None  # set by attach: its model is scored, its state gives the step
        self.collate = None  # the trainer's own collator (batches re-collated by `batches`)
        self._cache: dict[int, dict[str, Any]] = {}
        self._orders: dict[tuple[int, int], np.ndarray] = {}
        self._positions: dict[int, np.ndarray] = {}
        self.scored_now: list[int] = []  # stages scored in this process (a resumed run re-scores none it finds)

    def attach(self, trainer) -> None:
        """Make ``trainer`` train on the plan: our dataset and a collator that keeps each row's slot."""
        self.trainer = trainer
        self.collate = trainer.data_collator
        trainer.train_dataset = SlotDataset(self)
        trainer.data_collator = SlotCollator(trainer.data_collator)

    def stage_of_step(self, step: int) -> int:
        """The stage that trains optimizer step ``step`` (0-based: the step after ``step`` finished steps)."""
        return int(step) // self.every

    def order(self, epoch: int, size: int) -> np.ndarray:
        """Epoch ``epoch``'s permutation of a stage subset (seed + epoch, torch's generator: the same everywhere)."""
        key = (int(epoch), int(size))
        if key not in self._orders:
            g = torch.Generator()
            g.manual_seed(self.seed + int(epoch))
            self._orders = {k: v for k, v in self._orders.items() if k[0] >= epoch - 1}  # keep the last epochs only
            self._orders[key] = torch.randperm(size, generator=g).numpy()
        return self._orders[key]

    def planned_position(self, index: int, epoch: int, stage: int) -> int:
        """Dataset position of slot ``index`` (0..n-1) of epoch ``epoch`` when stage ``stage`` trains it."""
        positions = self.positions(stage)
        return int(positions[self.order(epoch, len(positions))[index % len(positions)]])

    def provisional_position(self, slot: int) -> int:
        """The planned row of ``slot`` if its stage is known here, else a stand-in (``batches`` replaces it)."""
        n = self.dyn.n
        epoch, index = divmod(slot, n)
        stage = self.stage_of_step(epoch * self.per_epoch + index // self.rows_per_step)
        known = [k for k in self._cache if k <= stage]
        return self.planned_position(index, epoch, max(known)) if known else index % len(self.dataset)

    def batches(self, epoch_iterator):
        """The micro-batches of the optimizer step about to run, each holding the plan's rows for this step.

        Called at the start of every optimizer step (the trainer's ``get_batch_samples``), on every rank at the same
        step: first the step's stage is made to exist (read from disk or drawn now, with the weights of the
        ``global_step`` finished steps: the checkpoint saved at a boundary holds exactly these), then every
        micro-batch fetched ahead with another row than the plan's is collated again from the plan's rows.
        """
        step = int(self.trainer.state.global_step)
        stage = self.stage_of_step(step)
        self.rows(stage)
        epoch = step // self.per_epoch
        for batch in epoch_iterator:
            yield self._rebind(batch, epoch, stage)

    def _rebind(self, batch, epoch: int, stage: int):
        if SLOT not in batch:  # not a batch of our dataset
            return batch
        slots, got = batch.pop(SLOT), batch.pop(POSITION)
        want = [self.planned_position(int(s) % self.dyn.n, epoch, stage) for s in slots.tolist()]
        if want == got.tolist():
            return batch
        return send_to_device(self.collate([self.dataset[p] for p in want]), slots.device)

    def rows(self, stage: int) -> list[int]:
        if stage not in self._cache:
            # Every rank must take the same branch (computing runs collectives): nobody writes the stage between
            # the two barriers, so every rank sees the same folder.
            _barrier()
            found = stages.read_stage(self.output_dir, stage)
            _barrier()
            if found is not None:
                _log().info_rank0("dynamic_selection: stage %d read from %s (scored at step %s; not re-scored)",
                                  stage, stages.stage_dir(self.output_dir, stage), found.get("global_step"))
            self._cache[stage] = found if found is not None else self._compute(stage)
        return self._cache[stage]["rows"]

    def positions(self, stage: int) -> np.ndarray:
        """Dataset positions of stage ``stage``'s subset (kept: every fetched row asks for them)."""
        if stage not in self._positions:
            self._positions[stage] = np.array([self.dataset.position[r] for r in self.rows(stage)], dtype=np.int64)
        return self._positions[stage]

    def _compute(self, stage: int) -> dict[str, Any]:
        dyn = self.dyn
        state = getattr(self.trainer, "state", None)
        step = int(getattr(state, "global_step", 0) or 0)
        epoch = getattr(state, "epoch", None)
        if stage > 0 and step != stage * self.every:
            raise UserError(
                f"dynamic_selection: stage {stage} is not in {stages.stage_dir(self.output_dir, stage)} and the run is "
                f"at step {step}, not at its boundary step {stage * self.every}: scoring now would use other weights. "
                f"Resume from checkpoint-{stage * self.every} or keep the stage folders of the run that saved this "
                "checkpoint in OUTPUT_DIR/selection")
        t0 = time.perf_counter()
        forwards = None
        if stage == 0:
            table, scored_with, flow = self.base, f"base scores {dyn.scores}", None
        else:
            rows = [int(r) for r in stages.candidate_rows(self.base, dyn, stage) if int(r) in self.encoded]
            model = self.trainer.accelerator.unwrap_model(self.trainer.model)
            feats, forwards = score_rows(model, self.encoded, rows, dyn, self.pad_id, self.top_k)
            table = self.base[self.base["row"].isin(list(feats))].copy()
            for col in (*LOSS_COLUMNS, *self.stat_columns):
                table[col] = [feats[int(r)][col] for r in table["row"]]
            table = table.reset_index(drop=True)
            scored_with = f"in-loop, global step {step}"
        seconds = round(time.perf_counter() - t0, 3)
        selection = stages.draw(table, dyn, stage)
        if stage > 0:
            prev = self.rows(stage - 1)
            prev_table = self._stage_table(stage - 1)
            flow = stages.flows(prev, stages.band_status(prev_table, dyn), [int(r) for r in selection.rows],
                                stages.band_status(table, dyn))
        manifest = stages.stage_manifest(dyn, stage, selection, step, epoch, len(table), scored_with, flow, seconds,
                                         forwards)
        rank, _ = _dist()
        save = dyn.save_stage_checkpoints and stage > 0 and self.trainer is not None
        if save:  # every rank takes part (ZeRO-3 gathers); only the main process writes
            model_dir = stages.stage_dir(self.output_dir, stage).with_name(f".stage-{stage}.model")
            self.trainer.save_model(str(model_dir))
        if rank == 0:
            def add_model(tmp: Path) -> None:
                if save:
                    model_dir.rename(tmp / "model")
            stages.write_stage(self.output_dir, stage, table, selection, self.pool, manifest, add_model)
        _barrier()
        _log().info_rank0("dynamic_selection: stage %d: %d rows drawn from %d candidates (%s, %.1f s), band %s",
                          stage, len(selection.rows), len(table), scored_with, seconds,
                          {k: v for k, v in (manifest["thresholds"] or {}).items() if k.endswith("_value")})
        if stage > 0:
            self.scored_now.append(stage)
        return {**manifest, "rows": [int(r) for r in selection.rows], "ids": list(selection.ids)}

    def _stage_table(self, stage: int) -> pd.DataFrame:
        path = stages.stage_dir(self.output_dir, stage) / "scores.parquet"
        return pd.read_parquet(path) if path.is_file() else self.base


class StageSampler(Sampler):
    """``n`` slots per epoch, ``epoch * n`` to ``epoch * n + n - 1``: which row fills a slot is the plan's
    (:meth:`Stages.planned_position`), so the order of a resumed epoch is the uninterrupted one's."""

    def __init__(self, stages_: Stages, seed: int):
        self.stages = stages_
        self.stages.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.stages.dyn.n

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1  # if nobody calls set_epoch, the next iteration is the next epoch
        n = self.stages.dyn.n
        return iter(range(epoch * n, (epoch + 1) * n))
