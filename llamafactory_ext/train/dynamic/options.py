"""The ``dynamic_selection:`` block of a ``llamafactory-ext train`` recipe, parsed and checked before any model loads.

Light: stdlib and our plumbing only (the launcher checks a recipe in a second, before torchrun starts). The checks
that need the scores folder (``scores/NAME/meta.json``: which pool, model, template, cutoff it was scored with) read
JSON (and, when meta.json has no row counts, the parquet footer with pyarrow): no torch, no LLaMA-Factory.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from data_selection.command_line import UserError
from data_selection.options.select import RATIO_KEYS

# strategies whose inputs a stage can produce in the loop (one table of losses under the current weights)
IN_LOOP_STRATEGIES = ("zpd", "random")
# strategies that need inputs made outside the loop: why each cannot be re-drawn at a stage boundary
NOT_IN_LOOP = {
    "pass-cv": "it ranks verified responses (data-select verify), which do not change with the weights",
    "temp": "it needs losses at noise and fine-tuning checkpoints (score-checkpoints), not the current weights",
    "matched-random": "it matches another subset's length bins, which do not change with the weights",
}


@dataclass
class DynamicSelection:
    pool: str = field(metadata={"help": "The registered pool the stage subsets are drawn from (its dataset_info.json "
                                "name, as given to `data-select score --dataset`)."})
    scores: str = field(metadata={"help": "The base model's scores of that pool (`data-select score --out`); stage 0 "
                              "is drawn from them exactly as `data-select select` draws it."})
    strategy: str = field(default="zpd", metadata={"help": "Selector re-run at each stage: zpd or random (pass-cv, "
                                                   "temp and matched-random need inputs a stage cannot produce)."})
    n: int = field(default=15000, metadata={"help": "Rows per stage (the static recipe's subset size: the steps per "
                                            "stage and the learning-rate schedule stay the static recipe's)."})
    every: Any = field(default="epoch", metadata={"help": "Stage length: `epoch` (a stage per epoch), or N >= 1 "
                                                 "optimizer steps: stage K starts after K * N steps, mid-epoch too "
                                                 "(between optimizer steps, never inside a gradient accumulation)."})
    candidates: Any = field(default="all", metadata={"help": "Rows re-scored per stage: `all` (every scored pool "
                                                     "row) or K (K rows drawn per stage, seeded: bounds the cost)."})
    save_stage_checkpoints: bool = field(default=False, metadata={"help": "Keep the weights each stage was scored "
                                                                  "with (OUTPUT_DIR/selection/stage-K/model)."})
    low: float = field(default=0.25, metadata={"help": "zpd: share of the candidates dropped as too easy."})
    high: float = field(default=0.75, metadata={"help": "zpd: upper edge of the band (1 - high dropped as too hard)."})
    key: str = field(default="loss_mean", metadata={"help": "Ranking key, as `data-select select --key`: "
                                                "loss_mean, loss_first_100/1000, loss_length_adjusted, or the rank / "
                                                "Brier ratios rsr and lark (+ _first_100/_1000; the stages "
                                                "re-compute them in the same forward pass)."})
    stratify: str = field(default="", metadata={"help": "As `data-select select --stratify` (category, source)."})
    over_length: str = field(default="drop", metadata={"help": "As `data-select select --over-length`."})
    seed: int = field(default=42, metadata={"help": "Seed of stage 0's draw; stage K draws with seed + K."})
    batch_tokens: int = field(default=16384, metadata={"help": "Scorer: tokens per packed batch (as `data-select "
                                                      "score --batch_tokens`)."})
    packing: str = field(default="auto", metadata={"help": "Scorer: packing mode (as `data-select score --packing`)."})

    @property
    def every_steps(self) -> int | None:
        return None if self.every == "epoch" else int(self.every)

    @property
    def candidate_rows(self) -> int | None:
        return None if self.candidates == "all" else int(self.candidates)


def help_text() -> str:
    """One line per key, for the ExtensionArguments field help of ``dynamic_selection``."""
    return "".join(f"\n        {f.name}: {f.metadata['help']}" for f in fields(DynamicSelection))


def _name(key: str) -> str:
    return f"dynamic_selection.{key}"


def parse(value: Any, source: str) -> DynamicSelection:
    """The recipe's mapping -> DynamicSelection with typed values; unknown keys and bad types name the key."""
    if not isinstance(value, dict):
        raise UserError(f"{source}: dynamic_selection must be a mapping of keys (pool, scores, strategy, n, every, "
                        f"candidates, ...), got {value!r}")
    known = {f.name: f for f in fields(DynamicSelection)}
    unknown = sorted(k for k in value if k not in known)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(_name(k) for k in unknown)}; known: {', '.join(known)}")
    for required in ("pool", "scores"):
        if not value.get(required):
            raise UserError(f"{source}: {_name(required)} is required")
    typed: dict[str, Any] = {}
    for k, v in value.items():
        default = known[k].default
        if k in ("every", "candidates"):
            word = "epoch" if k == "every" else "all"
            if v == word:
                typed[k] = v
                continue
            try:
                number = int(v)
            except (TypeError, ValueError):
                raise UserError(f"{source}: {_name(k)} must be {word!r} or a positive integer, got {v!r}") from None
            if number <= 0 or isinstance(v, bool) or (isinstance(v, float) and v != number):
                raise UserError(f"{source}: {_name(k)} must be {word!r} or a positive integer, got {v!r}")
            typed[k] = number
        elif isinstance(default, bool):
            if isinstance(v, str) and v.lower() in ("true", "false"):
                v = v.lower() == "true"
            if not isinstance(v, bool):
                raise UserError(f"{source}: {_name(k)} must be true or false, got {v!r}")
            typed[k] = v
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            try:
                typed[k] = type(default)(v) if default is not None else v
            except (TypeError, ValueError):
                raise UserError(f"{source}: {_name(k)} must be a {type(default).__name__}, got {v!r}") from None
        else:
            typed[k] = str(v)
    return DynamicSelection(**typed)


def scores_parquet(dyn: DynamicSelection) -> Path:
    return Path(dyn.scores) / "scores.parquet"


def read_scores_meta(dyn: DynamicSelection, source: str) -> dict[str, Any]:
    d = Path(dyn.scores)
    meta_path = d / "meta.json"
    if not d.is_dir() or not meta_path.is_file() or not scores_parquet(dyn).is_file():
        raise UserError(f"{source}: {_name('scores')} {dyn.scores!r}: no finished `data-select score` output there "
                        f"(pool {dyn.pool!r} never scored? run `data-select score --dataset {dyn.pool} --out "
                        f"{dyn.scores} ...` with the recipe's model, template and cutoff_len first)")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{source}: {_name('scores')}: {meta_path} is not valid JSON ({err})") from None


def _same_model(a: Any, b: Any) -> bool:
    if a == b:
        return True
    pa, pb = Path(str(a)), Path(str(b))
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def check_identity(dyn: DynamicSelection, meta: dict[str, Any], lf_args: dict[str, Any], source: str) -> None:
    """The scores must come from this recipe's model, template, cutoff_len and pool (their meta.json identity)."""
    pool = meta.get("pool", {})
    if dyn.pool not in (pool.get("dataset"), pool.get("resolved_name")):
        raise UserError(f"{source}: {_name('scores')} {dyn.scores!r} scored the pool {pool.get('dataset')!r}, not "
                        f"{_name('pool')} {dyn.pool!r} (pool never scored: run `data-select score --dataset "
                        f"{dyn.pool}`)")
    scored_model = (meta.get("model") or {}).get("name_or_path")
    wanted = {"model_name_or_path": (scored_model, lf_args.get("model_name_or_path")),
              "template": (meta.get("template"), lf_args.get("template")),
              "cutoff_len": (meta.get("cutoff_len"), int(lf_args.get("cutoff_len", 2048)))}
    for key, (theirs, ours) in wanted.items():
        same = _same_model(theirs, ours) if key == "model_name_or_path" else theirs == ours
        if not same:
            raise UserError(f"{source}: {_name('scores')} {dyn.scores!r} were made with {key} {theirs!r}, the recipe "
                            f"trains with {key} {ours!r}: stage losses would not be comparable; re-score the pool "
                            "with the recipe's model, template and cutoff_len")


def check_key_columns(dyn: DynamicSelection, meta: dict[str, Any], source: str) -> None:
    """An ``rsr``/``lark`` key needs the rank or Brier column in the base scores (stage 0 ranks by them; the stages
    re-compute them with the same top-K, so that K must be known): anything less is refused by name."""
    if dyn.key not in RATIO_KEYS:
        return
    parquet = scores_parquet(dyn)
    names = set(pq.read_schema(parquet).names)
    missing = [c for c in RATIO_KEYS[dyn.key] if c not in names]
    if missing:
        raise UserError(f"{source}: {_name('key')} {dyn.key} ranks by {' / '.join(RATIO_KEYS[dyn.key])}, but "
                        f"{parquet} has no column {', '.join(missing)} (scored before the rank and Brier statistics "
                        f"existed). Re-score the pool: `data-select score --dataset {dyn.pool} --out {dyn.scores} "
                        "--overwrite ...`")
    if brier_top_k(meta) < 1:
        raise UserError(f"{source}: {_name('key')} {dyn.key}: {Path(dyn.scores) / 'meta.json'} names no brier_top_k "
                        "(>= 1), so the stages could not re-compute the rank and Brier columns as they were scored; "
                        f"re-score the pool: `data-select score --dataset {dyn.pool} --out {dyn.scores} --overwrite ...`")


def brier_top_k(meta: dict[str, Any]) -> int:
    """The top-K of the base scores' Brier columns (their identity; the stages re-compute them with the same K)."""
    from_identity = (meta.get("identity") or {}).get("brier_top_k")
    return int(from_identity if from_identity is not None else (meta.get("options") or {}).get("brier_top_k") or 0)


def world_size() -> int:
    if "WORLD_SIZE" in os.environ:  # inside torchrun
        return int(os.environ["WORLD_SIZE"])
    return int(os.environ.get("NPROC_PER_NODE") or 1) * int(os.environ.get("NNODES") or 1)


def steps_per_epoch(n: int, lf_args: dict[str, Any]) -> int:
    """Optimizer steps of one epoch over ``n`` rows, as the HF Trainer (5.x) counts them: batches per rank, then
    ceil over the accumulation (a last partial accumulation is a step)."""
    batch = int(lf_args.get("per_device_train_batch_size", 8)) * world_size()
    accum = int(lf_args.get("gradient_accumulation_steps", 1))
    return max(math.ceil(math.ceil(n / batch) / accum), 1)


def validate(dyn: DynamicSelection, lf_args: dict[str, Any], source: str) -> None:
    """Every check that needs no model: strategy, packing, the scores' identity, n against the band, every."""
    if dyn.strategy in NOT_IN_LOOP:
        raise UserError(f"{source}: {_name('strategy')} {dyn.strategy} cannot be re-drawn inside the loop: "
                        f"{NOT_IN_LOOP[dyn.strategy]}; use one of {', '.join(IN_LOOP_STRATEGIES)}")
    if dyn.strategy not in IN_LOOP_STRATEGIES:
        raise UserError(f"{source}: unknown {_name('strategy')} {dyn.strategy!r}; use one of "
                        f"{', '.join(IN_LOOP_STRATEGIES)}")
    for key in ("packing", "neat_packing", "streaming"):
        if str(lf_args.get(key, "")).lower() in ("true", "1", "yes"):
            raise UserError(f"{source}: dynamic_selection cannot run with `{key}: true`: the stage sampler draws "
                            "whole rows, and LLaMA-Factory's packed sequences mix rows of the pool")
    if str(lf_args.get("train_on_prompt", "")).lower() in ("true", "1") or str(
            lf_args.get("mask_history", "")).lower() in ("true", "1"):
        raise UserError(f"{source}: dynamic_selection trains on the rows as the scorer renders them (response-only "
                        "labels); remove train_on_prompt / mask_history")
    if lf_args.get("stage", "sft") != "sft":
        raise UserError(f"{source}: dynamic_selection needs stage: sft (got stage: {lf_args.get('stage')})")
    if not 0.0 <= dyn.low < dyn.high <= 1.0:
        raise UserError(f"{source}: {_name('low')}/{_name('high')}: the band needs 0 <= low < high <= 1, got "
                        f"{dyn.low}, {dyn.high}")
    if dyn.n <= 0:
        raise UserError(f"{source}: {_name('n')} must be positive, got {dyn.n}")
    meta = read_scores_meta(dyn, source)
    check_identity(dyn, meta, lf_args, source)
    check_key_columns(dyn, meta, source)
    scored = int((meta.get("counts") or {}).get("scored") or _parquet_rows(dyn))
    pool_rows = dyn.candidate_rows or scored
    if dyn.candidate_rows and dyn.candidate_rows > scored:
        raise UserError(f"{source}: {_name('candidates')} {dyn.candidate_rows} is more than the {scored} scored rows "
                        f"of {dyn.pool!r}; use `all`")
    band = pool_rows - math.floor(dyn.low * pool_rows + 1e-9) - math.floor((1 - dyn.high) * pool_rows + 1e-9) \
        if dyn.strategy == "zpd" else pool_rows
    if dyn.n > band:
        raise UserError(f"{source}: {_name('n')} {dyn.n} is larger than the band: {band} of {pool_rows} "
                        f"{'candidate' if dyn.candidate_rows else 'scored'} rows lie in [{dyn.low}, {dyn.high}]; "
                        "lower n, widen the band or raise candidates")
    check_finished_stages(dyn, lf_args.get("output_dir"), source)
    per_epoch = steps_per_epoch(dyn.n, lf_args)
    max_steps = int(lf_args.get("max_steps", -1) or -1)
    total = max_steps if max_steps > 0 else math.ceil(float(lf_args.get("num_train_epochs", 3.0)) * per_epoch)
    if dyn.every_steps is not None:
        if dyn.every_steps > total:
            raise UserError(f"{source}: {_name('every')} {dyn.every_steps} steps is larger than the run ({total} "
                            "optimizer steps): there would be no second stage")
    elif per_epoch > total:
        raise UserError(f"{source}: {_name('every')} epoch ({per_epoch} steps) is larger than the run ({total} "
                        "optimizer steps): there would be no second stage")


# manifest key -> what it must equal for a finished stage of OUTPUT_DIR to be reused by this recipe
def _stage_facts(dyn: DynamicSelection, stage: int) -> dict[str, Any]:
    facts = {"strategy": dyn.strategy, "n": dyn.n, "seed": dyn.seed + stage, "key": dyn.key, "low": dyn.low,
             "high": dyn.high, "stratify": dyn.stratify, "over_length": dyn.over_length, "every": dyn.every,
             "candidates_setting": dyn.candidates}
    return facts


def check_finished_stages(dyn: DynamicSelection, output_dir: str | None, source: str) -> None:
    """Stages already in OUTPUT_DIR/selection (a resumed run reuses them) must have been drawn with these keys."""
    folder = Path(output_dir or ".") / "selection"
    for manifest in sorted(folder.glob("stage-*/manifest.json")) if folder.is_dir() else []:
        try:
            facts = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        stage = int(facts.get("stage", -1))
        wanted = _stage_facts(dyn, stage)
        diff = {k: (facts.get(k), v) for k, v in wanted.items() if k in facts and facts[k] != v}
        if diff:
            keys = "; ".join(f"{_name(k.replace('_setting', ''))}: {a!r} there, {b!r} in the recipe"
                             for k, (a, b) in diff.items())
            raise UserError(f"{source}: {manifest.parent} was drawn with other keys ({keys}); a resumed run reuses "
                            "finished stages, so use another output_dir or the recipe that made them")


def _parquet_rows(dyn: DynamicSelection) -> int:
    return pq.ParquetFile(scores_parquet(dyn)).metadata.num_rows
