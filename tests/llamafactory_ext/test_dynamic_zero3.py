"""The in-loop scorer under ZeRO-3 on 2 CPU ranks: against a stand-in of DeepSpeed's partitioning (every rule
checked directly), and in a real training run under DeepSpeed's own ZeRO-3 (its CPU accelerator, gloo).

The stand-in does what ZeRO-3 does to a model, with real collectives: every parameter is an empty placeholder outside
its module's forward; a module's forward first gathers its parameters (an ``all_reduce`` among the ranks, so ranks
running different numbers of forwards would deadlock, here: time out) and empties them after; and
``deepspeed.zero.GatheredParameters(params, modifier_rank=None)`` gathers the given ones for the block. The scorer
must then (1) not read the output head's weight as the empty placeholder, (2) give each rank its own share of the
rows, (3) run the same number of body forwards on every rank, and (4) merge to the single-process scores.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from dynamic_fixtures import make_pool, ok, recipe, score, stage_of, train
from helpers import REPO_ROOT
from transformers import AutoModelForCausalLM

from data_selection.scores_table import STAT_COLUMNS
from data_selection.scoring.forward import plan_batches
from data_selection.scoring.varlen import resolve_packing
from llamafactory_ext.train.dynamic import runtime
from llamafactory_ext.train.dynamic.options import DynamicSelection
from llamafactory_ext.train.dynamic.runtime import Encoded, score_rows

IGNORE = -100
WORLD = 2
TOP_K = 5
DYN = DynamicSelection(pool="p", scores="s", batch_tokens=64)


def encoded_rows() -> dict[int, Encoded]:
    """Even rows long (60 tokens), odd rows short (10): rank 0's share packs into 5 batches, rank 1's into 1."""
    rng = np.random.default_rng(0)
    out = {}
    for r in range(10):
        n = 60 if r % 2 == 0 else 10
        ids = rng.integers(100, 5000, n).astype(np.int32)
        labels = ids.copy()
        labels[: n // 3] = IGNORE
        out[r] = Encoded(ids, labels)
    return out


class Zero3StandIn:
    """ZeRO-3's partitioning of ``model``'s parameters, emulated (see the module docstring); counts body forwards."""

    def __init__(self, model):
        self.full = {id(p): p.data.clone() for p in model.parameters()}
        for p in model.parameters():
            p.data = torch.empty(0, dtype=p.dtype)
        for module in model.modules():
            own = list(module.parameters(recurse=False))
            if own:
                module.register_forward_pre_hook(lambda m, args, own=own: self._gather(own))
                module.register_forward_hook(lambda m, args, out, own=own: self._release(own))
        self.body_forwards = 0
        model.base_model.register_forward_pre_hook(lambda m, args, kwargs: self._count(), with_kwargs=True)

    def _count(self):
        self.body_forwards += 1

    def _gather(self, params):
        dist.all_reduce(torch.ones(1))  # the collective a real gather is
        for p in params:
            p.data = self.full[id(p)]

    def _release(self, params):
        for p in params:
            p.data = torch.empty(0, dtype=p.dtype)

    @contextlib.contextmanager
    def gathered_parameters(self, params, modifier_rank=None, fwd_module=None, enabled=True):
        self._gather(params)
        try:
            yield
        finally:
            self._release(params)


def _rank_main(rank: int, model_dir: str, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    stand_in = Zero3StandIn(model)
    sys.modules["deepspeed"] = types.SimpleNamespace(zero=types.SimpleNamespace(
        GatheredParameters=stand_in.gathered_parameters))
    runtime.is_deepspeed_zero3_enabled = lambda: True
    encoded = encoded_rows()
    scored_here = []
    real = runtime.score_sequences

    def recording(scorer, seqs, **kw):
        scored_here.extend(seqs)
        return real(scorer, seqs, **kw)

    runtime.score_sequences = recording
    feats, forwards = score_rows(model, encoded, sorted(encoded), DYN, pad_id=0, top_k=TOP_K)
    head = model.get_output_embeddings().weight
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
        "feats": {str(k): v for k, v in feats.items()}, "scored_here": sorted(int(r) for r in scored_here),
        "forwards": forwards,
        "body_forwards": stand_in.body_forwards, "head_numel_after": head.numel(),
        "mode": resolve_packing(DYN.packing, model)}))
    dist.destroy_process_group()


@pytest.mark.slow
def test_zero3_scoring_shares_rows_keeps_forwards_in_step_and_equals_one_process(tiny_qwen_dir, tmp_path):
    reference, _ = score_rows(AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, torch_dtype=torch.float32),
                           encoded_rows(), list(range(10)), DYN, pad_id=0, top_k=TOP_K)
    mp.spawn(_rank_main, args=(str(tiny_qwen_dir), str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    shares = [list(range(10))[r::WORLD] for r in range(WORLD)]
    batches = [len(plan_batches({k: len(encoded_rows()[k].input_ids) for k in share}, DYN.batch_tokens,
                                ranks[0]["mode"])) for share in shares]
    assert batches[0] > batches[1]  # the shares really differ in forwards: rank 1 has to catch up
    for r, got in enumerate(ranks):
        assert got["scored_here"] == shares[r]  # each rank scored its own share only
        assert got["body_forwards"] == max(batches)  # its real batches plus idle passes: every rank in step
        assert got["forwards"] == {"zero3": True, "batches_per_rank": batches,
                                   "idle_passes_per_rank": [max(batches) - b for b in batches]}
        assert got["head_numel_after"] == 0  # nothing left gathered
        assert sorted(map(int, got["feats"])) == list(range(10))  # the merged shares
        for row, want in reference.items():
            for col in ("loss_mean", "loss_sum", "loss_first_100", "rank_mean", "brier_topk_mean"):
                assert abs(got["feats"][str(row)][col] - want[col]) <= 1e-5, (r, row, col)


@pytest.mark.slow
def test_a_training_run_under_deepspeed_zero3_scores_its_stages_exactly(tiny_qwen_dir, tmp_path):
    """`llamafactory-ext train` with ds_z3.json on 2 torchrun ranks (DeepSpeed's CPU accelerator): the model is
    partitioned by zero.init, each rank scores its share with uneven batch counts (idle passes keep them in step),
    and stage 1's in-loop scores equal `data-select score` on the weights saved at that boundary."""
    root = make_pool(tmp_path)
    score(tiny_qwen_dir, root, root / "scores" / "base")
    # 23 candidates, one row per batch (every row is longer than 64 tokens): shares of 12 and 11 batches
    args = recipe(tiny_qwen_dir, root, root / "out", save_stage_checkpoints=True, batch_tokens=64, candidates=23)
    args.update(num_train_epochs=2, deepspeed=str(REPO_ROOT / "ds_configs" / "ds_z3.json"))
    proc = ok(train(root, args, env={"DS_ACCELERATOR": "cpu", "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}))
    assert "Detected DeepSpeed ZeRO-3" in proc.stdout + proc.stderr
    m = stage_of(root / "out", 1)
    forwards = m["scoring_forwards"]
    assert forwards["zero3"] is True and m["global_step"] == 1  # 4 rows per stage / (2 ranks x 2 per device)
    batches, idle = forwards["batches_per_rank"], forwards["idle_passes_per_rank"]
    assert len(set(batches)) == 2 and [b + i for b, i in zip(batches, idle)] == [max(batches)] * 2
    stage = root / "out" / "selection" / "stage-1"
    offline = score(stage / "model", root, root / "scores" / "offline")
    ours = pd.read_parquet(stage / "scores.parquet").set_index("id")
    theirs = pd.read_parquet(offline / "scores.parquet").set_index("id").loc[ours.index]
    assert len(ours) == 23
    for col in ("loss_mean", "loss_sum", *STAT_COLUMNS):
        assert (ours[col] - theirs[col]).abs().max() <= 1e-5, col
    base = pd.read_parquet(root / "scores" / "base" / "scores.parquet").set_index("id").loc[ours.index]
    assert (ours["loss_mean"] - base["loss_mean"]).abs().max() > 1e-3  # the weights moved
