"""``llamafactory-ext train``: recipe splitting, torchrun launch, iw-SFT reference matching, callbacks, and
real training runs through the torchrun worker path on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REPO_ROOT, make_alpaca_rows, write_jsonl

from data_selection.command_line import UserError
from llamafactory_ext.train.args import ExtensionArguments, llamafactory_keys, split_recipe_args

BASE = {"model_name_or_path": "m", "stage": "sft", "do_train": True, "dataset": "d", "template": "qwen"}


# --- recipe splitting -------------------------------------------------------------------------------------


def test_extension_keys_are_removed_and_typed():
    lf, ext = split_recipe_args(
        {**BASE, "dft_lean": "true", "loss_chunk_tokens": "256", "callbacks": "metrics_jsonl"}
    )
    assert lf == BASE
    assert ext.dft_lean is True and ext.loss_chunk_tokens == 256 and ext.callbacks == ["metrics_jsonl"]
    assert not (set(ExtensionArguments.__dataclass_fields__) & llamafactory_keys())


def test_metrics_path_switches_the_callback_on():
    _, ext = split_recipe_args({**BASE, "metrics_jsonl": "m.jsonl"})
    assert ext.callbacks == ["metrics_jsonl"] and not ext.uses_custom_loss


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"dft_leen": True}, "'dft_leen' (did you mean 'dft_lean'?)"),
        ({"learning_rte": 1e-5}, "did you mean 'learning_rate'?"),
        ({"dft_lean": True, "use_dft_loss": True}, "remove `use_dft_loss: true`"),
        ({"dft_lean": True, "iw_sft": True, "iw_sft_scores": "x"}, "enable one of them"),
        ({"dft_lean": True, "stage": "dpo"}, "needs stage: sft"),
        ({"iw_sft": True}, "iw_sft needs iw_sft_scores"),
        ({"iw_sft": True, "iw_sft_scores": "/nonexistent/scores"}, "no such scores.parquet"),
        ({"callbacks": ["wandb_magic"]}, "unknown callback"),
        ({"dft_lean": "maybe"}, "must be true or false"),
        ({"loss_chunk_tokens": 0}, "must be positive"),
    ],
)
def test_bad_recipes_fail_with_a_clear_message(extra, message):
    with pytest.raises(UserError, match=None) as err:
        split_recipe_args({**BASE, **extra}, source="r.yaml")
    assert message in str(err.value) and str(err.value).startswith("r.yaml")


def test_iw_sft_refuses_packing(tmp_path):
    (tmp_path / "scores.parquet").write_bytes(b"")
    with pytest.raises(UserError, match="neat_packing"):
        split_recipe_args({**BASE, "iw_sft": True, "iw_sft_scores": str(tmp_path), "neat_packing": True})


def test_overrides_merge_like_llamafactory(tmp_path):
    from llamafactory_ext.train.launch import read_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1.0e-5\ncallbacks: [metrics_jsonl]\nnum_train_epochs: 3.0\n")
    args = read_recipe(str(recipe), ["num_train_epochs=1", "dft_lean=true", "output_dir=saves/x"])
    assert args == {"learning_rate": 1e-5, "callbacks": ["metrics_jsonl"], "num_train_epochs": 1,
                    "dft_lean": True, "output_dir": "saves/x"}  # fmt: skip
    with pytest.raises(UserError, match="key=value"):
        read_recipe(str(recipe), ["oops"])


def test_cli_reports_a_typo_without_traceback(tmp_path, capsys):
    from llamafactory_ext.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: sft\ndft_leen: true\n")
    assert main(["train", str(recipe)]) == 1
    assert "did you mean 'dft_lean'" in capsys.readouterr().err
    assert main(["train", "--help"]) == 0
    assert "loss_chunk_tokens" in capsys.readouterr().out


def test_extension_is_installed_only_inside_the_block():
    from llamafactory.train import tuner
    from llamafactory.train.sft import workflow

    from llamafactory_ext.train.trainer import installed

    original = workflow.CustomSeq2SeqTrainer, tuner.run_sft
    with installed(ExtensionArguments()) as state:  # no custom loss: LLaMA-Factory untouched
        assert state is None and (workflow.CustomSeq2SeqTrainer, tuner.run_sft) == original
    with installed(ExtensionArguments(dft_lean=True)) as state:
        assert tuner.run_sft is not original[1]
        assert issubclass(state["cls"], original[0]) and state["cls"].extension.dft_lean
    assert (workflow.CustomSeq2SeqTrainer, tuner.run_sft) == original


# --- torchrun launch --------------------------------------------------------------------------------------


def test_torchrun_command_mirrors_llamafactory_env():
    from llamafactory_ext.train.launch import torchrun_command

    env = {
        "NNODES": "2",
        "NODE_RANK": "1",
        "NPROC_PER_NODE": "8",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29501",
    }
    cmd = torchrun_command(["yaml_recipes/dft_lean.yaml", "num_train_epochs=1"], env)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    flags = dict(zip(cmd[3:13:2], cmd[4:13:2]))
    assert flags == {"--nnodes": "2", "--node_rank": "1", "--nproc_per_node": "8",
                     "--master_addr": "10.0.0.1", "--master_port": "29501"}  # fmt: skip
    assert cmd[13:] == ["-m", "llamafactory_ext.train", "yaml_recipes/dft_lean.yaml", "num_train_epochs=1"]

    elastic = torchrun_command(["r.yaml"], {"RDZV_ID": "job7", "MIN_NNODES": "1", "MAX_NNODES": "4"})
    assert "--rdzv-id" in elastic and elastic[elastic.index("--nnodes") + 1] == "1:4"
    assert elastic[elastic.index("--max-restarts") + 1] == "0"
    # No GPU here: default one process (LLaMA-Factory's default, the device count, would be 0).
    assert (
        torchrun_command(["r.yaml"], {})[torchrun_command(["r.yaml"], {}).index("--nproc_per_node") + 1]
        == "1"
    )


def test_launch_decision(monkeypatch):
    from llamafactory_ext.train import launch as train

    for var in ("FORCE_TORCHRUN", "USE_MCA", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert not train.needs_torchrun() and not train.is_distributed_worker()  # CPU machine, no GPUs
    monkeypatch.setenv("FORCE_TORCHRUN", "1")
    assert train.needs_torchrun()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert train.is_distributed_worker()  # a worker never launches torchrun again


# --- callbacks --------------------------------------------------------------------------------------------


def test_metrics_jsonl_writes_one_line_per_log(tmp_path):
    from llamafactory_ext.train.callbacks import MetricsJsonlCallback

    args = SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=None)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, epoch=0.0, num_input_tokens_seen=0)
    cb = MetricsJsonlCallback()
    cb.on_train_begin(args, state, None)
    state.global_step, state.epoch, state.num_input_tokens_seen = 10, 0.5, 5000
    cb.on_log(args, state, None, logs={"loss": 1.25, "learning_rate": 1e-5, "grad_norm": 0.7, "note": "x"})
    state.global_step = 11
    cb.on_log(args, state, None, logs={"train_runtime": 12.0})
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 10 and lines[0]["lr"] == 1e-5 and lines[0]["grad_norm"] == 0.7
    assert lines[0]["loss"] == 1.25 and lines[0]["tokens_per_s"] > 0 and "note" not in lines[0]
    assert lines[1] == {"step": 11, "epoch": 0.5, "elapsed_s": lines[1]["elapsed_s"], "train_runtime": 12.0}


# --- iw-SFT reference matching ----------------------------------------------------------------------------


def _tiny_dataset(root: Path, n: int = 10, with_id: bool = True) -> tuple[Path, list[dict]]:
    rows = make_alpaca_rows(n)
    if with_id:
        for i, r in enumerate(rows):
            r["id"] = f"{100 + i:08d}-{i:012x}"
    write_jsonl(rows, root / "tiny.jsonl")
    cols = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    (root / "dataset_info.json").write_text(
        json.dumps({"tiny": {"file_name": "tiny.jsonl", "formatting": "alpaca", "columns": cols}})
    )
    return root, rows


def _scores(path: Path, rows: list[dict], drop: int | None = None) -> Path:
    import pandas as pd

    table = pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "row": [100 + i for i in range(len(rows))],
            "loss_mean": [1.0 + 0.25 * i for i in range(len(rows))],
        }
    )
    if drop is not None:
        table = table.drop(index=drop)
    path.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path / "scores.parquet")
    return path


def _lf_setup(tiny_qwen_dir, data_dir, tmp_path):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = dict(BASE, model_name_or_path=str(tiny_qwen_dir), dataset="tiny", dataset_dir=str(data_dir),
                cutoff_len=64, output_dir=str(tmp_path / "out"), preprocessing_num_workers=None,
                report_to="none", overwrite_cache=True)  # fmt: skip
    model_args, data_args, training_args, *_ = get_train_args(args)
    tok = load_tokenizer(model_args)["tokenizer"]
    template = get_template_and_fix_tokenizer(tok, data_args)
    return model_args, data_args, training_args, tok, template


def test_reference_matches_llamafactorys_own_training_examples(tiny_qwen_dir, tmp_path):
    """Keys built from the raw file equal those of the examples LLaMA-Factory tokenises, batches and pads."""
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_dataset

    from llamafactory_ext.train.iw_reference import build_reference

    data_dir, rows = _tiny_dataset(tmp_path / "data")
    scores = _scores(tmp_path / "scores", rows)
    model_args, data_args, training_args, tok, template = _lf_setup(tiny_qwen_dir, data_dir, tmp_path)
    ref = build_reference(model_args, data_args, training_args, tok, template, str(scores / "scores.parquet"))
    assert len(ref) == len(rows)

    train = get_dataset(template, model_args, data_args, training_args, stage="sft", tokenizer=tok)[
        "train_dataset"
    ]
    assert ref.missing_in(train) == (0, [])
    assert max(len(ids) for ids in train["input_ids"]) == 64, "truncation by cutoff_len must be covered"

    collator = SFTDataCollatorWith4DAttentionMask(template=template, tokenizer=tok, label_pad_token_id=-100,
                                                  pad_to_multiple_of=8)  # fmt: skip
    picked = [0, 4, 7]
    batch = collator([{k: train[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in picked])
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    got = ref.lookup(batch["input_ids"], batch["attention_mask"])
    assert got.tolist() == pytest.approx([-(1.0 + 0.25 * i) for i in picked])


def test_reference_names_the_row_without_a_score(tiny_qwen_dir, tmp_path):
    from llamafactory_ext.train.iw_reference import build_reference

    data_dir, rows = _tiny_dataset(tmp_path / "data")
    scores = _scores(tmp_path / "scores", rows, drop=3)
    model_args, data_args, training_args, tok, template = _lf_setup(tiny_qwen_dir, data_dir, tmp_path)
    with pytest.raises(UserError, match=r"tiny.jsonl row 3 \(id '00000103-000000000003'\) has no score"):
        build_reference(model_args, data_args, training_args, tok, template, str(scores))


def test_reference_without_id_column_uses_row_numbers(tiny_qwen_dir, tmp_path):
    import pandas as pd

    from llamafactory_ext.train.iw_reference import build_reference

    data_dir, _ = _tiny_dataset(tmp_path / "data", n=4, with_id=False)
    (tmp_path / "s").mkdir()
    pd.DataFrame({"id": list("abcd"), "row": [0, 1, 2, 3], "loss_mean": [1.0, 2.0, 3.0, 4.0]}).to_parquet(
        tmp_path / "s" / "scores.parquet"
    )
    model_args, data_args, training_args, tok, template = _lf_setup(tiny_qwen_dir, data_dir, tmp_path)
    ref = build_reference(model_args, data_args, training_args, tok, template, str(tmp_path / "s"))
    assert sorted(ref.by_key.values()) == [-4.0, -3.0, -2.0, -1.0]


# --- real runs through the torchrun worker path -----------------------------------------------------------


def _run_ext(recipe: str, tiny_qwen_dir, tmp_path, *extra: str, deepspeed: str = "null") -> tuple[Path, str]:
    data_dir, rows = _tiny_dataset(tmp_path / "data", n=16)
    scores = _scores(tmp_path / "scores", rows)
    out = tmp_path / "out"
    overrides = [
        f"model_name_or_path={tiny_qwen_dir}", f"dataset_dir={data_dir}", "dataset=tiny", f"output_dir={out}",
        f"deepspeed={deepspeed}", "bf16=false", "cutoff_len=128", "max_steps=2", "logging_steps=1",
        "per_device_train_batch_size=2", "gradient_accumulation_steps=2", "preprocessing_num_workers=1",
        "dataloader_num_workers=0", "flash_attn=auto", f"iw_sft_scores={scores}", "loss_chunk_tokens=16",
        *extra,
    ]  # fmt: skip
    if recipe != "iw_sft.yaml":
        overrides.remove(f"iw_sft_scores={scores}")
    env = {**os.environ, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "llamafactory_ext.cli", "train", str(REPO_ROOT / "yaml_recipes" / recipe),
         *overrides],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out, proc.stderr


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_dft_lean_trains_under_torchrun(tiny_qwen_dir, tmp_path):
    """dft_lean.yaml through torchrun (CPU, fp32, no DeepSpeed): the worker installs the loss and callback."""
    from transformers import AutoModelForCausalLM

    out, stderr = _run_ext("dft_lean.yaml", tiny_qwen_dir, tmp_path)
    assert "torch.distributed.run" in stderr and "-m llamafactory_ext.train" in stderr  # launcher path taken
    steps = [m for m in _metrics(out) if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert {"epoch", "lr", "grad_norm", "tokens_per_s"} <= m.keys() and m["tokens_per_s"] > 0
        # DFT on a random model: CE ~ ln(151936) = 11.9 weighted by p ~ 1/151936 -> ~1e-4. Plain CE would be
        # ~12, so this shows the worker really trained with our loss.
        assert 1e-6 < m["loss"] < 1e-3
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 151936
    assert (out / "trainer_log.jsonl").is_file() and (out / "training_loss.png").is_file()


@pytest.mark.slow
def test_iw_sft_trains_under_torchrun(tiny_qwen_dir, tmp_path):
    out, _ = _run_ext("iw_sft.yaml", tiny_qwen_dir, tmp_path)
    steps = [m for m in _metrics(out) if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        # reference mean log-probs are -1.0 .. -4.75, the random model's are ~ -12: weights exp(-12 + x) << 1
        assert 0 < m["iw_weight_mean"] <= m["iw_weight_max"] < 1e-2 and m["iw_clipped_frac"] == 0
        assert 0 < m["loss"] < 1.0
    assert (out / "model.safetensors").is_file()
