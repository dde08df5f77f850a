"""Every YAML recipe parses with LLaMA-Factory's own strict parser, names a registered dataset, and loads its
DeepSpeed file; the seed recipes keep the seed's values; paired recipes differ only where they should."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, make_alpaca_rows, write_jsonl

RECIPES_DIR = REPO_ROOT / "yaml_recipes"
DS_DIR = REPO_ROOT / "ds_configs"
OWNED_ELSEWHERE = {"export.yaml",  # written and tested by the export helper (an inference config, not train)
                   "advanced_dynamic.yaml"}  # needs scores on disk: tests/llamafactory_ext/test_dynamic_selection_options.py
RECIPES = sorted(p.name for p in RECIPES_DIR.glob("*.yaml") if p.name not in OWNED_ELSEWHERE)
CUSTOM_LOSS = {"dft_lean.yaml", "iw_sft.yaml"}  # our losses
EXT_RECIPES = CUSTOM_LOSS | {"advanced_fast.yaml"}  # launched with llamafactory-ext train (its workers see our code)


def load(name: str) -> dict:
    return yaml.safe_load((RECIPES_DIR / name).read_text())


def header(name: str) -> str:
    lines = (RECIPES_DIR / name).read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


@pytest.fixture(scope="module")
def fake_scores(tmp_path_factory) -> Path:
    import pandas as pd

    d = tmp_path_factory.mktemp("scores")
    pd.DataFrame({"id": ["00000000-aaaaaaaaaaaa"], "row": [0], "loss_mean": [0.5]}).to_parquet(
        d / "scores.parquet"
    )
    return d


@pytest.fixture(autouse=True)
def _forget_deepspeed_config():
    """A parsed `deepspeed:` key registers a process-wide ZeRO-3 flag that would make later model loads in
    this test process call deepspeed.zero.Init (needs a distributed launch): clear it after each test."""
    yield
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def split(name: str, fake_scores: Path, **overrides) -> tuple[dict, object]:
    """The recipe's LLaMA-Factory keys (our extension keys removed by our own code) and our arguments."""
    from llamafactory_ext.train.args import split_recipe_args

    args = {**load(name), **overrides}
    if args.get("iw_sft"):
        args["iw_sft_scores"] = str(fake_scores)
    return split_recipe_args(args, source=name)


def test_recipe_set_is_complete():
    expected = {
        "advanced.yaml", "random.yaml", "sft_training_llm.yaml", "full_pool.yaml", "dft.yaml",
        "dft_lean.yaml", "iw_sft.yaml", "temp.yaml", "advanced_fast.yaml", "demo_zpd.yaml",
        "demo_random.yaml", "advanced_pir30.yaml",
    }  # fmt: skip
    assert expected <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_parses_strictly_as_written(name, fake_scores, monkeypatch):
    """LLaMA-Factory's own parser, no ALLOW_EXTRA_ARGS, every key as written (deepspeed file included).

    Only `use_cpu: true` is added: the parser refuses `bf16: true` on a machine without a GPU otherwise.
    """
    from llamafactory.hparams.parser import _parse_train_args

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)
    lf_args, ext = split(name, fake_scores)
    assert (name in CUSTOM_LOSS) == ext.uses_custom_loss
    assert (name in EXT_RECIPES) == (ext.uses_custom_loss or ext.padding_free)
    _, data_args, training_args, finetuning_args, _ = _parse_train_args({**lf_args, "use_cpu": True})
    assert finetuning_args.stage == "sft" and training_args.do_train
    assert data_args.dataset == [lf_args["dataset"]]
    if lf_args.get("deepspeed"):
        assert training_args.hf_deepspeed_config is not None  # the JSON file was found and loaded


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_passes_llamafactory_checks_on_cpu(name, fake_scores, tiny_qwen_dir, tmp_path, monkeypatch):
    """LLaMA-Factory's full get_train_args (all its cross-checks) with the tiny model and CPU overrides."""
    from llamafactory.hparams import get_train_args

    monkeypatch.delenv("ALLOW_EXTRA_ARGS", raising=False)
    lf_args, _ = split(name, fake_scores)
    recipe = dict(lf_args)
    lf_args.pop("deepspeed", None)  # needs torchrun; loaded by the strict-parse test and the ZeRO-3 slow test
    lf_args.update(model_name_or_path=str(tiny_qwen_dir), output_dir=str(tmp_path / "out"), use_cpu=True)
    if "tokenized_path" in lf_args:
        lf_args["tokenized_path"] = str(tmp_path / "tok")
    _, data_args, training_args, _, _ = get_train_args(lf_args)
    assert data_args.cutoff_len == recipe["cutoff_len"] - (1 if data_args.packing else 0)
    assert training_args.learning_rate == pytest.approx(recipe["learning_rate"])
    assert training_args.num_train_epochs == pytest.approx(recipe["num_train_epochs"])
    assert data_args.template == recipe["template"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_dataset_is_registered(name):
    """The dataset resolves through the root dataset_info.json with LLaMA-Factory's own lookup."""
    from llamafactory.data.parser import get_dataset_list

    recipe = load(name)
    assert recipe["dataset_dir"] == ".", "recipes are run from the repo root against ./dataset_info.json"
    info_path = REPO_ROOT / "dataset_info.json"
    assert info_path.is_file(), (
        "dataset_info.json is missing at the repo root (the registry helper writes it)"
    )
    info = json.loads(info_path.read_text())
    assert recipe["dataset"] in info, f"{name}: dataset {recipe['dataset']!r} is not in dataset_info.json"
    (attr,) = get_dataset_list([recipe["dataset"]], str(REPO_ROOT))
    assert attr.formatting == "alpaca"
    assert attr.system == "system", (
        "without a `system` column mapping LLaMA-Factory ignores the system prompt"
    )
    if attr.load_from == "file":
        assert attr.dataset_name == f"data/{recipe['dataset']}.jsonl"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_header_documents_its_own_launch(name):
    recipe, text = load(name), header(name)
    launcher = "llamafactory-ext train" if name in EXT_RECIPES else "llamafactory-cli train"
    assert f"{launcher} yaml_recipes/{name}" in text
    if recipe.get("deepspeed"):
        assert f"FORCE_TORCHRUN=1 {launcher} yaml_recipes/{name}" in text
        assert "gradient_accumulation_steps" in text and "Effective batch" in text
        assert (REPO_ROOT / recipe["deepspeed"]).is_file()


def test_advanced_holds_seed_000_values():
    r = load("advanced.yaml")
    expected = {
        "model_name_or_path": "Qwen/Qwen2.5-3B-Instruct", "stage": "sft", "do_train": True,
        "finetuning_type": "full", "dataset": "acereason_zpd_15k", "template": "qwen", "cutoff_len": 16384,
        "learning_rate": 1.0e-5, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "num_train_epochs": 3,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, "bf16": True,
        "deepspeed": "ds_configs/ds_z3.json", "flash_attn": "fa2", "dataset_dir": ".", "report_to": "none",
        "plot_loss": True,
    }  # fmt: skip
    assert {k: r.get(k) for k in expected} == expected
    assert isinstance(r.get("seed"), int)
    assert r["output_dir"].startswith("saves/")
    assert r["per_device_train_batch_size"] * r["gradient_accumulation_steps"] == 16
    text = header("advanced.yaml")
    assert "data-select score --model Qwen/Qwen2.5-3B-Instruct --dataset acereason11_100k" in text
    assert "--strategy zpd --n 15000 --seed 42 --name acereason_zpd_15k" in text


def _science(recipe: dict, ignore=("dataset", "output_dir", "tokenized_path")) -> dict:
    return {k: v for k, v in recipe.items() if k not in ignore}


@pytest.mark.parametrize(
    "pair, allowed",
    [
        (("advanced.yaml", "random.yaml"), set()),
        (("advanced.yaml", "full_pool.yaml"), set()),
        (("random.yaml", "sft_training_llm.yaml"), {"num_train_epochs"}),
        (("advanced.yaml", "temp.yaml"), {"num_train_epochs", "warmup_ratio"}),
        (("advanced.yaml", "dft.yaml"), {"use_dft_loss"}),
        (("demo_zpd.yaml", "demo_random.yaml"), set()),
        (("advanced.yaml", "advanced_pir30.yaml"), set()),
    ],
)
def test_paired_recipes_differ_only_where_intended(pair, allowed):
    a, b = (_science(load(n)) for n in pair)
    differing = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert differing == allowed, f"{pair}: unexpected differences {sorted(differing - allowed)}"


def test_recipes_train_on_their_named_subsets():
    datasets = {name: load(name)["dataset"] for name in RECIPES}
    assert (
        datasets["advanced.yaml"] == "acereason_zpd_15k" and datasets["random.yaml"] == "acereason_random_15k"
    )
    assert datasets["sft_training_llm.yaml"] == "acereason_random_15k"
    assert datasets["full_pool.yaml"] == "acereason11_100k" and datasets["temp.yaml"] == "acereason_temp_15k"
    assert datasets["demo_zpd.yaml"] == "demo_zpd" and datasets["demo_random.yaml"] == "demo_random"
    assert datasets["advanced_pir30.yaml"] == "acereason_zpd_15k_pir30"
    outputs = [load(name)["output_dir"] for name in RECIPES]
    assert len(set(outputs)) == len(outputs), "two recipes would write into the same output_dir"


def test_extension_recipes_keep_advanced_science():
    base = _science(load("advanced.yaml"))
    ext_keys = {"dft_lean", "iw_sft", "iw_sft_scores", "iw_sft_clip", "loss_chunk_tokens", "callbacks",
                "include_num_input_tokens_seen"}  # fmt: skip
    for name in sorted(CUSTOM_LOSS):
        r = _science(load(name))
        assert {k: v for k, v in r.items() if k not in ext_keys} == base, name
    assert load("dft_lean.yaml")["dft_lean"] is True and not load("dft_lean.yaml").get("use_dft_loss")
    assert load("iw_sft.yaml")["iw_sft"] is True and load("iw_sft.yaml")["iw_sft_clip"] == 16.0


def test_fast_recipe_keeps_the_micro_batches_and_science():
    """advanced_fast.yaml changes how a micro-batch is computed, never which rows form it or how they are weighted."""
    fast, base = load("advanced_fast.yaml"), load("advanced.yaml")
    assert fast["enable_liger_kernel"] is True and fast["padding_free"] is True
    assert not any(fast.get(k) for k in ("packing", "neat_packing", "tokenized_path"))  # would change the batches
    speed = {"enable_liger_kernel", "padding_free", "callbacks", "include_num_input_tokens_seen"}
    a, b = _science(fast), _science(base)
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == speed  # batch 2 x 8 = advanced.yaml's


GPU_RECIPES = [n for n in RECIPES if load(n).get("deepspeed")]


@pytest.mark.parametrize("name", GPU_RECIPES)
def test_gpu_recipe_header_says_what_fits_where(name):
    """Every GPU recipe states, from bench/train_memory.py's calculation, whether it fits one 80 GB GPU, one 141 GB
    GPU and 8 GPUs, and what to change when it does not; at least one same-science variant fits 80 GB."""
    text = header(name)
    assert "bench/train_memory.py" in text and "calculated" in text
    for where in ("one 80 GB GPU:", "one 141 GB GPU:", "8 GPUs"):
        assert where in text, f"{name}: no statement for {where!r}"
    assert "If it does not fit:" in text and "ds_configs/ds_z3_offload.json" in text
    fits_80 = "one 80 GB GPU: fits" in text
    assert fits_80 or any(alt in text for alt in ("advanced_fast.yaml", "enable_liger_kernel=true", "dft_lean.yaml"))


@pytest.mark.parametrize("name", ["demo_zpd.yaml", "demo_random.yaml"])
def test_demo_recipes_are_cpu_runnable_and_save_a_final_checkpoint(name):
    r = load(name)
    assert r["model_name_or_path"] == "outputs/demo/base_model" and r["template"] == "smollm2"
    assert "deepspeed" not in r and r.get("bf16") in (False, None) and r["cutoff_len"] == 512
    assert r["output_dir"] == f"outputs/demo/train_{name[5:-5]}" and r["dataset"] == name[:-5]
    assert r["save_strategy"] == "no" and r["overwrite_output_dir"] and r["plot_loss"]


DS_FILES = ["ds_z3.json", "ds_z3_offload.json", "ds_z2.json"]


@pytest.mark.parametrize("name", DS_FILES)
def test_deepspeed_config_resolves_every_auto(name, tiny_qwen_dir, tmp_path):
    """The HF integration fills every "auto" (batch sizes, precision, bucket sizes from the hidden size)."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
    from transformers.training_args import TrainingArguments

    raw = json.loads((DS_DIR / name).read_text())
    zero = raw["zero_optimization"]
    stage = int(name[4])
    assert zero["stage"] == stage
    if stage == 3:
        assert (
            zero["stage3_gather_16bit_weights_on_model_save"] is True
        )  # full SFT leaves a normal checkpoint
    if "offload" in name:
        assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"

    model = AutoModelForCausalLM.from_pretrained(
        tiny_qwen_dir
    )  # before the config: ZeRO-3 would zero.Init it
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=8
    )
    cfg = HfTrainerDeepSpeedConfig(str(DS_DIR / name))
    cfg.trainer_config_process(args)
    cfg.trainer_config_finalize(args, model, num_training_steps=10)
    flat = json.dumps(cfg.config)
    assert '"auto"' not in flat, f"{name}: unresolved auto values remain: {cfg.config}"
    assert cfg.config["train_batch_size"] == 16 and cfg.config["train_micro_batch_size_per_gpu"] == 2

    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    assert DeepSpeedZeroConfig(**cfg.config["zero_optimization"]).stage == stage  # deepspeed's own validation


@pytest.mark.slow
def test_zero3_recipe_trains_on_cpu_and_saves_a_normal_checkpoint(tiny_qwen_dir, tmp_path):
    """advanced.yaml under torchrun + ZeRO-3 for 3 steps (tiny model, fp32 on CPU) via llamafactory-cli."""
    from transformers import AutoModelForCausalLM

    data_dir = tmp_path / "data"
    write_jsonl(make_alpaca_rows(16), data_dir / "tiny.jsonl")
    (data_dir / "dataset_info.json").write_text(json.dumps({"tiny": {
        "file_name": "tiny.jsonl", "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"},
    }}))  # fmt: skip
    out = tmp_path / "out"
    overrides = [
        f"model_name_or_path={tiny_qwen_dir}", f"dataset_dir={data_dir}", "dataset=tiny", f"output_dir={out}",
        f"deepspeed={DS_DIR / 'ds_z3.json'}", "bf16=false", "cutoff_len=128", "max_steps=3",
        "logging_steps=1",
        "per_device_train_batch_size=2", "gradient_accumulation_steps=2", "preprocessing_num_workers=1",
        "dataloader_num_workers=0", "save_steps=1000", "flash_attn=auto",
    ]  # fmt: skip
    bin_dir = str(Path(sys.executable).parent)  # llamafactory-cli runs `torchrun` from PATH
    env = {**os.environ, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2",
           "PATH": bin_dir + os.pathsep + os.environ["PATH"]}  # fmt: skip
    cli = shutil.which("llamafactory-cli", path=bin_dir) or "llamafactory-cli"
    proc = subprocess.run([cli, "train", str(RECIPES_DIR / "advanced.yaml"), *overrides], env=env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert log[-1]["current_steps"] == 3 and all(entry["loss"] > 0 for entry in log if "loss" in entry)
    model = AutoModelForCausalLM.from_pretrained(out)  # gathered 16-bit weights: a normal HF checkpoint
    assert model.get_input_embeddings().weight.shape == (151936, 32)
