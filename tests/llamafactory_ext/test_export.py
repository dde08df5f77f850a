"""yaml_recipes/export.yaml: parsed by LLaMA-Factory's own export argument parser, and a real
``llamafactory-cli export`` of the tiny model into a temp folder (everything up to the Hub upload)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import REPO_ROOT

RECIPE = REPO_ROOT / "yaml_recipes" / "export.yaml"


def test_export_recipe_parses_with_llamafactory():
    from llamafactory.hparams import get_infer_args

    recipe = yaml.safe_load(RECIPE.read_text())
    model_args, data_args, _, _ = get_infer_args(dict(recipe))
    assert data_args.template == "qwen"
    assert model_args.export_device == "cpu" and model_args.export_size == recipe["export_size"]
    assert model_args.export_dir == recipe["export_dir"]
    assert model_args.export_hub_model_id is None  # the push stays commented out
    assert "# export_hub_model_id:" in RECIPE.read_text()
    # it publishes what advanced.yaml trains
    advanced = yaml.safe_load((REPO_ROOT / "yaml_recipes" / "advanced.yaml").read_text())
    assert model_args.model_name_or_path == advanced["output_dir"]


def test_real_export_of_tiny_model(tiny_qwen_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "exported"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cli = Path(sys.executable).parent / "llamafactory-cli"
    proc = subprocess.run(
        [str(cli), "export", str(RECIPE), f"model_name_or_path={tiny_qwen_dir}", f"export_dir={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert not (tmp_path / "exports").exists()  # the recipe's export_dir was overridden, nothing else written

    original = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.tensor([[151644, 872, 198, 16, 10, 16, 151645]])
    with torch.no_grad():
        a, b = original(ids).logits, exported(ids).logits
    # identical weights up to the export dtype (bf16 where the device supports it, else fp32)
    assert torch.allclose(a, b, atol=2e-2), (a - b).abs().max()

    tok_in, tok_out = AutoTokenizer.from_pretrained(tiny_qwen_dir), AutoTokenizer.from_pretrained(out)
    msgs = [{"role": "user", "content": "What is 1 + 1?"}]
    assert tok_out.apply_chat_template(msgs, tokenize=False) == tok_in.apply_chat_template(
        msgs, tokenize=False
    )
