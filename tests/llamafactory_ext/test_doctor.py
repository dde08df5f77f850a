"""``llamafactory-ext doctor``: each probe's failure branch, with stand-ins for GPUs, kernels and packages."""

from __future__ import annotations

import json
import stat
from types import SimpleNamespace

import pytest
import torch
from flash_attn_4_stand_in import BROKEN_CUTE_INIT, installed_kernels_supported, planting
from helpers import (
    REPO_ROOT,
    broken_flash_attn,
    fake_flash_attn,
    gpuless_torch_with_old_driver,
    torch_varlen_stand_in,
    unimportable_flash_attn,
)

from data_selection.scoring import kernel_proof
from llamafactory_ext.commands import doctor as doctor_command
from llamafactory_ext.doctor import gpu, hub, kernels, packages, recipe, run_checks, runner, storage
from llamafactory_ext.doctor.target import Target, load_target
from llamafactory_ext.options.doctor import DoctorOptions

DEMO_RECIPE = {"model_name_or_path": "m", "stage": "sft", "do_train": True, "finetuning_type": "full",
               "dataset": "d", "template": "qwen", "output_dir": "out"}


@pytest.fixture
def plant_flash_attn_4(monkeypatch, tmp_path):
    yield from planting(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    kernel_proof.forget()
    yield
    kernel_proof.forget()


def _gpus(monkeypatch, n=2, name="NVIDIA H100 80GB HBM3", bf16=True):
    """torch sees ``n`` GPUs (names and capabilities only: nothing is computed on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def _no_driver(monkeypatch, tmp_path):
    from data_selection import device

    monkeypatch.setattr(device, "PROC_NVIDIA", tmp_path / "absent")
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_on_a_cpu_machine_every_gpu_probe_says_no_gpu_and_nothing_blocks(monkeypatch, tmp_path):
    _no_driver(monkeypatch, tmp_path)
    checks = {c.name: c for c in run_checks()}
    for name in ("GPUs visible", "driver vs torch CUDA", "bf16", "scoring attention", "padding-free attention"):
        assert checks[name].status == "skip" and "no GPU" in checks[name].detail, checks[name]
    assert not [c for c in checks.values() if c.status == "blocker"]


def test_gpus_torch_cannot_use_are_a_blocker_with_the_matching_wheel(monkeypatch, tmp_path):
    gpuless_torch_with_old_driver(monkeypatch, tmp_path)
    t = Target()
    assert gpu.check_gpus(t).status == "blocker"
    drv = gpu.check_driver(t)
    assert drv.status == "blocker" and "550.54.15" in drv.detail and "CUDA 13.0" in drv.detail
    assert "download.pytorch.org/whl/cu126" in drv.fix


def test_a_gpu_recipe_on_a_cpu_machine_and_too_few_gpus_block(monkeypatch, tmp_path):
    _no_driver(monkeypatch, tmp_path)
    t = load_target("yaml_recipes/advanced.yaml")
    assert t.needs_gpu and gpu.check_gpus(t).status == "blocker"
    _gpus(monkeypatch, n=2)
    t.gpus_needed = 8
    c = gpu.check_gpus(t)
    assert c.status == "blocker" and "2 x NVIDIA H100 80GB HBM3" in c.detail and "asks for 8" in c.detail
    t.gpus_needed = 2
    assert gpu.check_gpus(t).status == "ok"


def test_no_bf16_blocks_a_bf16_recipe(monkeypatch):
    _gpus(monkeypatch, name="Tesla V100-SXM2-32GB", bf16=False)
    assert gpu.check_bf16(Target(recipe={"bf16": True})).status == "blocker"
    assert gpu.check_bf16(Target()).status == "warn"


@pytest.fixture
def kernels_on_gpu(monkeypatch):
    """GPU 0 as a CPU in bf16, with torch 2.11's varlen_attn (exact signature) as the fused kernel."""
    import torch.nn.attention.varlen as tv

    from data_selection.scoring import varlen

    monkeypatch.setattr(kernels, "gpu_count", lambda: 1)
    monkeypatch.setattr(kernels, "PROBE_DEVICE", "cpu")
    monkeypatch.setattr(varlen, "kernel_supported", installed_kernels_supported)
    monkeypatch.setattr(tv, "varlen_attn", torch_varlen_stand_in)
    varlen._torch_varlen_params.cache_clear()
    yield
    varlen._torch_varlen_params.cache_clear()


def test_scoring_kernel_passes_over_a_broken_flash_attn(kernels_on_gpu, monkeypatch):
    import torch.nn.attention.varlen as tv

    fake_flash_attn(monkeypatch, broken_flash_attn)
    c = kernels.check_scoring_kernel(Target())
    assert c.status == "ok" and c.detail.startswith("torch_varlen, proven") and "no kernel image" in c.detail
    kernel_proof.forget()
    monkeypatch.setattr(tv, "varlen_attn", broken_flash_attn)
    c = kernels.check_scoring_kernel(Target())
    assert c.status == "warn" and c.detail.startswith("sdpa_rows")


def test_padding_free_kernel_asked_for_by_name_and_broken_blocks(kernels_on_gpu, monkeypatch):
    from llamafactory_ext.train import padding_free as pf

    monkeypatch.setattr(pf, "_fused_ok", lambda query: True)
    monkeypatch.setattr(pf, "_flash_attn_varlen", lambda: broken_flash_attn)
    monkeypatch.setattr(pf, "_torch_varlen", lambda: torch_varlen_stand_in)
    auto = kernels.check_padding_free_kernel(Target(recipe={"padding_free": True}))
    assert auto.status == "ok" and auto.detail.startswith("torch_varlen")
    named = kernels.check_padding_free_kernel(Target(recipe={"padding_free": True,
                                                              "padding_free_attention": "flash_attn"}))
    assert named.status == "blocker" and "no kernel image" in named.detail


def test_flash_attn_that_does_not_import_blocks_a_fa2_recipe(monkeypatch, tmp_path):
    unimportable_flash_attn(monkeypatch, tmp_path)
    c = kernels.check_flash_attn(Target(recipe={"flash_attn": "fa2"}, recipe_path="r.yaml"))
    assert c.status == "blocker" and "undefined symbol" in c.detail and "pip uninstall -y flash-attn" in c.fix
    assert kernels.check_flash_attn(Target()).status == "warn"


def test_flash_attention_4_alone_is_named_and_not_uninstalled(plant_flash_attn_4):
    """flash-attn-4 leaves flash_attn a namespace package: doctor names FA4, does not call it a broken
    flash-attn, and says a fa2 recipe's padded batches use SDPA."""
    plant_flash_attn_4()
    c = kernels.check_flash_attn(Target())
    assert c.status == "ok" and c.detail.startswith("FlashAttention-4 (flash-attn-4 4.0.0b36, flash_attn.cute) "
                                                    "imports"), c
    assert "flash_attn_4" in c.detail and "uninstall" not in c.detail + c.fix
    fa2 = kernels.check_flash_attn(Target(recipe={"flash_attn": "fa2"}, recipe_path="r.yaml"))
    assert fa2.status == "ok" and "r.yaml sets flash_attn: fa2, which needs FlashAttention-2" in fa2.detail
    assert "uninstall" not in fa2.detail + fa2.fix


def test_flash_attention_4_that_does_not_import_is_a_warning_to_reinstall(plant_flash_attn_4):
    site = plant_flash_attn_4(BROKEN_CUTE_INIT)
    info = site / "flash_attn_4-4.0.0b36.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flash-attn-4\nVersion: 4.0.0b36\n")
    c = kernels.check_flash_attn(Target(recipe={"flash_attn": "fa2"}, recipe_path="r.yaml"))
    assert c.status == "warn" and "No module named 'cutlass'" in c.detail
    assert "uninstall" not in c.fix and "--force-reinstall flash-attn-4" in c.fix


def test_scoring_and_padding_free_name_fa4_as_their_kernel(kernels_on_gpu, plant_flash_attn_4, monkeypatch):
    from llamafactory_ext.train import padding_free as pf

    plant_flash_attn_4()
    c = kernels.check_scoring_kernel(Target())
    assert c.status == "ok" and c.detail.startswith("flash_attn_4, proven") and "passed over" not in c.detail
    monkeypatch.setattr(pf, "_fused_ok", lambda query: True)
    for cached in (pf._flash_attn_4_varlen, pf._flash_attn_varlen):
        cached.cache_clear()
    try:
        c = kernels.check_padding_free_kernel(Target(recipe={"padding_free": True}))
    finally:
        for cached in (pf._flash_attn_4_varlen, pf._flash_attn_varlen):
            cached.cache_clear()
    assert c.status == "ok" and c.detail.startswith("flash_attn_4, proven"), c


def test_deepspeed_missing_or_offload_op_not_buildable_blocks(monkeypatch):
    t = load_target("yaml_recipes/advanced.yaml")
    real = packages._version
    monkeypatch.setattr(packages, "_version", lambda dist: None if dist == "deepspeed" else real(dist))
    assert packages.check_deepspeed(t).status == "blocker"
    monkeypatch.setattr(packages, "_version", real)
    import deepspeed.accelerator

    builder = SimpleNamespace(is_compatible=lambda verbose=False: False)
    acc = SimpleNamespace(create_op_builder=lambda name: builder, device_name=lambda: "cuda")
    monkeypatch.setattr(deepspeed.accelerator, "get_accelerator", lambda: acc)
    t.recipe["deepspeed"] = "ds_configs/ds_z3_offload.json"
    c = packages.check_deepspeed(t)
    assert c.status == "blocker" and "CPUAdamBuilder" in c.detail


def test_liger_asked_for_but_missing_blocks(monkeypatch):
    monkeypatch.setattr(packages, "_version", lambda dist: None)
    assert packages.check_liger(Target(recipe={"enable_liger_kernel": True})).status == "blocker"
    assert packages.check_liger(Target()).status == "skip"


def _fake_env(tmp_path, versions: dict) -> str:
    bin_dir = tmp_path / ".venv-vllm" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "vllm").write_text("")
    py = bin_dir / "python"
    py.write_text(f"#!/bin/sh\necho '{json.dumps(versions)}'\n")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir / "vllm")


def test_vllm_environment_missing_or_incomplete_blocks_a_vllm_study(monkeypatch, tmp_path):
    monkeypatch.delenv("VLLM_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no vllm on PATH either
    monkeypatch.chdir(tmp_path)
    vllm_study = Target(kind="study", path="s.yaml", eval_backend="vllm")
    assert packages.check_vllm_env(vllm_study).status == "blocker"
    assert packages.check_vllm_env(Target()).status == "skip"
    monkeypatch.setenv("VLLM_BIN", _fake_env(tmp_path, {"vllm": None, "torch": "2.14.0"}))
    c = packages.check_vllm_env(vllm_study)
    assert c.status == "blocker" and "missing ['vllm']" in c.detail
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("VLLM_BIN", _fake_env(other, {"vllm": "0.33.0", "transformers": "5.20.2"}))
    c = packages.check_vllm_env(vllm_study)
    assert c.status == "ok" and "vllm 0.33.0" in c.detail and "transformers 5.20.2" in c.detail


def test_vllm_route_needs_litellm_in_the_main_environment(monkeypatch):
    real = packages.importlib.util.find_spec
    monkeypatch.setattr(packages.importlib.util, "find_spec", lambda n: None if n == "litellm" else real(n))
    c = packages.check_vllm_env(Target(kind="study", path="s.yaml", eval_backend="vllm"))
    assert c.status == "blocker" and "litellm" in c.detail


def test_disk_too_small_for_the_checkpoints_blocks(monkeypatch, tmp_path):
    monkeypatch.setattr(storage, "count_parameters", lambda model: 3_000_000_000)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda p: SimpleNamespace(free=50e9))
    t = Target(kind="recipe", model="m", out=str(tmp_path / "saves"), recipe={"save_total_limit": 2})
    c = storage.check_disk(t)
    # 2 checkpoints x 3e9 x 16 B + the final 3e9 x 2 B = 102 GB > 50 GB
    assert c.status == "blocker" and "up to 102.0 GB" in c.detail and "48.0 GB with optimizer state" in c.detail
    t.recipe["save_only_model"] = True  # 2 x 6 GB + 6 GB
    assert storage.check_disk(t).status == "ok"


def test_disk_sizes_a_study_from_its_estimate(monkeypatch):
    monkeypatch.setattr(storage, "count_parameters", lambda model: 3_085_938_688)
    t = load_target("studies/zpd_qwen3b.yaml")
    need, parts = storage.planned_bytes(t, 3_085_938_688)
    from llamafactory_ext.study.config import load_study
    from llamafactory_ext.study.plan import build_plan, known_strategies

    runs = sum(s.kind == "train" for s in build_plan(load_study("studies/zpd_qwen3b.yaml", known_strategies())))
    assert runs >= 6 and t.train_runs == runs
    assert f"{runs} training run(s) x (2 checkpoints (save_total_limit)" in parts[0]
    assert need > runs * 2 * 3_085_938_688 * 16


def test_hub_offline_blocks_no_token_warns_token_passes(monkeypatch):
    from huggingface_hub import constants

    t = Target(kind="recipe", model="some-org/gated-model")
    monkeypatch.setattr(hub, "cached_repos", lambda: set())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.check_hub(t).status == "blocker"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    c = hub.check_hub(t)
    assert c.status == "warn" and "hf auth login" in c.fix
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_x")
    assert hub.check_hub(t).status == "ok"
    monkeypatch.setattr(hub, "cached_repos", lambda: {("some-org/gated-model", "model")})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.check_hub(t).status == "ok"


def test_a_study_pool_from_dataset_info_is_looked_up_on_the_hub():
    t = load_target("studies/zpd_qwen3b.yaml")
    assert hub.hub_repos(t) == [("Qwen/Qwen2.5-3B-Instruct", "model"), ("redsgnaoh/acereason11_100k", "dataset")]


@pytest.mark.parametrize(("extra", "message"), [({"lerning_rate": 1e-5}, "did you mean 'learning_rate'"),
                                                ({"finetuning_type": "fulll"}, "LLaMA-Factory refuses it")])
def test_a_recipe_llamafactory_refuses_blocks(extra, message):
    c = recipe.check_recipe(Target(kind="study", recipe={**DEMO_RECIPE, **extra}, recipe_path="r.yaml"))
    assert c.status == "blocker" and message in c.detail


def test_the_demo_recipe_parses():
    assert recipe.check_recipe(load_target("yaml_recipes/demo_zpd.yaml")).status == "ok"


def test_a_probe_that_crashes_is_a_warning_and_the_cli_exits_1_on_a_blocker(monkeypatch, tmp_path, capsys):
    def crashing(t):
        raise KeyError("boom")

    def blocking(t):
        return runner.Check("thing", "blocker", "it is broken", "mend it")

    monkeypatch.setattr(runner, "PROBES", (crashing, blocking))
    out = tmp_path / "doctor.json"
    assert doctor_command.run(DoctorOptions(json=str(out))) == 1
    text = capsys.readouterr().out
    assert "WARN" in text and "the probe itself failed: KeyError" in text and "fix: mend it" in text
    saved = json.loads(out.read_text())["checks"]
    assert [c["status"] for c in saved] == ["warn", "blocker"] and set(saved[1]) == {"name", "status", "detail", "fix"}


def test_the_study_stops_on_a_blocker_before_its_first_step(monkeypatch, tmp_path):
    from data_selection.command_line import UserError
    from llamafactory_ext.commands import study as study_command
    from llamafactory_ext.options.study import StudyOptions
    from llamafactory_ext.study import execute

    monkeypatch.setattr(runner, "PROBES", (lambda t: runner.Check("disk", "blocker", "full", "free some"),))
    ran = []
    monkeypatch.setattr(execute, "run_steps", lambda steps, until=None: ran.append(1))
    with pytest.raises(UserError, match="blocker"):
        study_command.run(StudyOptions(config=["studies/demo.yaml"]))
    assert ran == []
    with pytest.raises(TypeError):  # --skip-doctor: on to run_steps (stubbed: returns None)
        study_command.run(StudyOptions(config=["studies/demo.yaml"], skip_doctor=True))
    assert ran == [1]


def test_doctor_lives_in_llamafactory_ext_only():
    from data_selection.cli import COMMANDS as DS
    from llamafactory_ext.cli import COMMANDS as LFX

    assert "doctor" not in DS and LFX["doctor"].run == "llamafactory_ext.commands.doctor:run"


# --- versions: LLaMA-Factory's declared ranges, DeepSpeed's tested range, broken transformers releases ----------


def _fake_dists(monkeypatch, tmp_path, dists: dict[str, tuple[str, list[str]]]):
    """Installed distributions (name -> (version, Requires-Dist lines)) ahead of the real ones on sys.path."""
    site = tmp_path / "dists"
    for name, (version, requires) in dists.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                       + "".join(f"Requires-Dist: {r}\n" for r in requires))
    monkeypatch.syspath_prepend(str(site))


LF_REQUIRES = ["transformers!=4.52.0,!=4.57.0,<=5.6.0,>=4.55.0", "datasets<=4.0.0,>=2.16.0",
               "trl<=0.24.0,>=0.18.0", "torch>=2.4.0", "numpy", "nosuchpackage-xyz<1",
               'pytest; extra == "dev"']


def test_packages_outside_llamafactorys_declared_ranges_are_named(monkeypatch, tmp_path):
    """A December 2026 stack: transformers 5.21, datasets 5.1 and trl 1.2 are each named with the range that
    llamafactory's own metadata declares; packages within range, not installed, or of an extra are not."""
    _fake_dists(monkeypatch, tmp_path, {
        "llamafactory": ("0.9.5", LF_REQUIRES), "transformers": ("5.21.0", []), "datasets": ("5.1.0", []),
        "trl": ("1.2.0", []), "torch": ("2.15.0+cu130", []), "pytest": ("1.0", [])})
    assert packages.outside_declared_ranges() == [
        ("transformers", "5.21.0", "!=4.52.0,!=4.57.0,<=5.6.0,>=4.55.0"), ("datasets", "5.1.0", "<=4.0.0,>=2.16.0"),
        ("trl", "1.2.0", "<=0.24.0,>=0.18.0")]
    c = packages.check_llamafactory_ranges(Target())
    assert c.status == "warn" and "transformers 5.21.0 (declared" in c.detail and "torch" not in c.detail
    assert "own environment" in c.fix


def test_an_installed_stack_within_llamafactorys_ranges_is_ok(monkeypatch, tmp_path):
    _fake_dists(monkeypatch, tmp_path, {
        "llamafactory": ("0.9.5", LF_REQUIRES), "transformers": ("5.5.4", []), "datasets": ("4.0.0", []),
        "trl": ("0.24.0", [])})
    assert packages.outside_declared_ranges() == []
    assert packages.check_llamafactory_ranges(Target()).status == "ok"


@pytest.mark.parametrize("version, status, says", [
    ("0.18.4", "ok", "within LLaMA-Factory's tested range"),
    ("0.19.8", "warn", "this bundle's pin (the train extra): ZeRO-3 full SFT ran with it on a GPU (H200) on 2026-11-22"),
    ("0.20.1", "warn", "neither is it this bundle's pin (0.19.8"),
])
def test_deepspeed_above_llamafactorys_tested_range_is_named(monkeypatch, tmp_path, version, status, says):
    _fake_dists(monkeypatch, tmp_path, {"deepspeed": (version, [])})
    c = packages.check_deepspeed_tested(Target())
    assert c.status == status and says in c.detail, c
    if status == "warn":
        assert "<=0.18.4" in c.detail


def test_a_transformers_release_llamafactory_marks_broken_is_named_with_its_reason(monkeypatch, tmp_path):
    _fake_dists(monkeypatch, tmp_path, {"transformers": ("5.6.0", [])})
    c = packages.check_transformers_release(Target())
    assert c.status == "warn" and "s_aux" in c.detail and "#10634" in c.detail and "5.5.4" in c.fix
    fake_flash_attn(monkeypatch, lambda *a, **k: None)  # FlashAttention-2 imports, and the recipe asks for it
    fa2 = packages.check_transformers_release(Target(recipe={"flash_attn": "fa2"}, recipe_path="r.yaml"))
    assert fa2.status == "blocker" and "r.yaml sets flash_attn: fa2: training crashes" in fa2.detail


def test_a_transformers_release_not_marked_broken_is_ok(monkeypatch, tmp_path):
    _fake_dists(monkeypatch, tmp_path, {"transformers": ("5.5.4", [])})
    assert packages.check_transformers_release(Target()).status == "ok"
