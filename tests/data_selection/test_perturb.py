"""`data-select perturb`: TEMP's Gaussian and directional checkpoints, regenerated from a manifest."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT

from data_selection.command_line import UserError
from data_selection.perturb import noise
from data_selection.perturb.build import PerturbOptions, run_perturb
from data_selection.perturb.gaussian import sigma_schedule
from data_selection.perturb.manifest import manifest_digest, read_manifest
from data_selection.perturb.params import embedding_names, load_fp32
from data_selection.perturb.sequence import open_sequence
from data_selection.tiny_model import build_tiny_qwen


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory, qwen_tokenizer_dir):
    """A model of the tiny model's shape with other weights (stands in for a fine-tune)."""
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_target"), qwen_tokenizer_dir, seed=1)


@pytest.fixture(scope="module")
def gaussian_dir(tmp_path_factory, tiny_qwen_dir):
    out = tmp_path_factory.mktemp("perturb") / "gauss"
    run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(out), verify=False))
    return out


@pytest.fixture(scope="module")
def relative_dir(tmp_path_factory, tiny_qwen_dir):
    out = tmp_path_factory.mktemp("perturb") / "gauss_relative"
    run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(out), scale="relative",
                               verify=False))
    return out


@pytest.fixture(scope="module")
def directional_dir(tmp_path_factory, tiny_qwen_dir, target_dir):
    out = tmp_path_factory.mktemp("perturb") / "dir"
    run_perturb(PerturbOptions(kind="directional", model=str(tiny_qwen_dir), target=str(target_dir), out=str(out),
                               num=4, min_radius=1.0, max_radius=10.0, verify=False))
    return out


def _walk(folder, threads=2, **kw):
    """fp32 copies of every checkpoint of a manifest, in order."""
    m = read_manifest(folder)
    seq = open_sequence(m, "cpu", threads=threads, **kw)
    out = []
    for _ in range(m["num_checkpoints"]):
        seq.advance()
        out.append({n: t.clone() for n, t in seq.master.items()})
    return m, out


def test_sigma_schedule_adds_increments_in_quadrature():
    sigmas, steps = sigma_schedule(2e-3, 8e-3, 8)
    assert sigmas[0] == pytest.approx(2e-3) and sigmas[-1] == pytest.approx(8e-3)
    delta2 = (8e-3**2 - 2e-3**2) / 7
    for i, s in enumerate(sigmas, 1):
        assert s * s == pytest.approx(2e-3**2 + (i - 1) * delta2)
        assert s * s == pytest.approx(sum(x * x for x in steps[:i]))
    assert sigma_schedule(2e-3, 8e-3, 1) == ([2e-3], [2e-3])


def test_gaussian_noise_by_default_has_the_absolute_per_element_std_sigma(gaussian_dir, tiny_qwen_dir):
    """The official scale: checkpoint i is θ0 + noise of per-element std σ_i, whatever a tensor's own size."""
    m, ckpts = _walk(gaussian_dir)
    g = m["gaussian"]
    assert g["scale"] == "absolute" and g["official_scale"] and set(g["tensor_scales"].values()) == {1.0}
    theta0 = {n: p.data.double() for n, p in load_fp32(str(tiny_qwen_dir)).named_parameters()}
    for j, ck in enumerate(ckpts):
        diffs = torch.cat([(ck[n].double() - theta0[n]).reshape(-1) for n in m["tensors"]])
        tol = 5 / math.sqrt(2 * diffs.numel())
        assert float(diffs.pow(2).mean().sqrt()) == pytest.approx(g["sigmas"][j], rel=tol)
        assert abs(float(diffs.mean())) < 5 * g["sigmas"][j] / math.sqrt(diffs.numel())
        for n in m["tensors"]:  # every tensor, zero-initialised biases and unit norms alike, gets σ_i
            d = ck[n].double() - theta0[n]
            if d.numel() >= 1000:
                assert float(d.std()) == pytest.approx(g["sigmas"][j], rel=5 / math.sqrt(2 * d.numel())), n
            assert not torch.equal(ck[n], theta0[n].float()), n


def test_relative_gaussian_noise_has_the_requested_relative_std_and_embeddings_are_untouched(relative_dir,
                                                                                           tiny_qwen_dir):
    m, ckpts = _walk(relative_dir)
    assert m["gaussian"]["scale"] == "relative" and not m["gaussian"]["official_scale"]
    theta0 = dict(load_fp32(str(tiny_qwen_dir)).named_parameters())
    embeds = set(m["embeddings"])
    assert embeds == {"model.embed_tokens.weight"} and set(m["not_perturbed"]) == embeds
    assert not embeds & set(m["tensors"])  # the tied head is the embedding: never perturbed
    sigmas, steps = m["gaussian"]["sigmas"], m["gaussian"]["step_sigmas"]
    prev = {n: theta0[n].data.double() for n in m["tensors"]}
    for j, ck in enumerate(ckpts):
        pooled, count, inc_pooled = 0.0, 0, 0.0
        for n in m["tensors"]:
            t0 = theta0[n].data.double()
            rms = float(t0.pow(2).mean().sqrt())
            assert m["gaussian"]["tensor_scales"][n] == pytest.approx(rms)
            if rms == 0:  # zero-initialised biases: relative noise of nothing is nothing
                assert torch.equal(ck[n], theta0[n].data)
                continue
            rel = (ck[n].double() - t0) / rms
            inc = (ck[n].double() - prev[n]) / rms
            pooled += float(rel.pow(2).sum())
            inc_pooled += float(inc.pow(2).sum())
            count += rel.numel()
            if rel.numel() >= 1000:  # one tensor: its own std within 5 standard errors
                assert float(rel.std()) == pytest.approx(sigmas[j], rel=5 / math.sqrt(2 * rel.numel()))
                assert abs(float(rel.mean())) < 5 * sigmas[j] / math.sqrt(rel.numel())
            prev[n] = ck[n].double()
        tol = 5 / math.sqrt(2 * count)
        assert math.sqrt(pooled / count) == pytest.approx(sigmas[j], rel=tol)  # σ_i of the schedule
        assert math.sqrt(inc_pooled / count) == pytest.approx(steps[j], rel=tol)  # a fresh increment each time
    # the model sees the checkpoint; its embedding (and tied head) keep θ0's values
    seq = open_sequence(m, "cpu")
    seq.advance()
    model = load_fp32(str(tiny_qwen_dir))
    seq.load_into(model)
    assert torch.equal(model.model.embed_tokens.weight, theta0["model.embed_tokens.weight"])
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, ckpts[0]["model.layers.0.mlp.up_proj.weight"])


def test_absolute_scale_is_sigma_itself(tmp_path, tiny_qwen_dir):
    out = tmp_path / "abs"
    run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(out), num=1, start=0.05, end=0.05,
                               verify=False))
    m, (ck,) = _walk(out)
    theta0 = dict(load_fp32(str(tiny_qwen_dir)).named_parameters())
    diffs = torch.cat([(ck[n].double() - theta0[n].double()).reshape(-1) for n in m["tensors"]])
    assert float(diffs.std()) == pytest.approx(0.05, rel=5 / math.sqrt(2 * diffs.numel()))


def test_regenerating_gives_identical_bytes_whatever_the_thread_count(gaussian_dir, directional_dir):
    for folder in (gaussian_dir, directional_dir):
        _, a = _walk(folder, threads=1)
        _, b = _walk(folder, threads=3)
        assert len(a) == len(b)
        for ca, cb in zip(a, b):
            assert ca.keys() == cb.keys()
            for n in ca:
                assert ca[n].numpy().tobytes() == cb[n].numpy().tobytes(), n
    m = read_manifest(directional_dir)
    assert manifest_digest(m) == m["digest"]


def test_draws_do_not_depend_on_the_cpu_kernel():
    """torch.randn in float32 differs between the AVX2 and the scalar kernel; the float64 draws we use do not."""
    code = ("import hashlib; from data_selection.perturb.noise import standard_normal; "
            "print(hashlib.sha256(standard_normal(7, 'gaussian', 3, 'w', 0, 100003).numpy().tobytes()).hexdigest())")
    here = hashlib.sha256(noise.standard_normal(7, "gaussian", 3, "w", 0, 100003).numpy().tobytes()).hexdigest()
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


def test_directional_checkpoints_sit_at_the_requested_radii_along_one_direction(directional_dir, tiny_qwen_dir,
                                                                              target_dir):
    m, ckpts = _walk(directional_dir)
    d = m["directional"]
    assert d["radii"] == pytest.approx([1.0, 4.0, 7.0, 10.0])
    theta0 = {n: p.data.double() for n, p in load_fp32(str(tiny_qwen_dir)).named_parameters()}
    thetaf = {n: p.data.double() for n, p in load_fp32(str(target_dir)).named_parameters()}
    assert set(m["tensors"]) == set(theta0)  # every parameter, embeddings included
    norm = math.sqrt(sum(float((thetaf[n] - theta0[n]).pow(2).sum()) for n in theta0))
    assert d["direction_norm"] == pytest.approx(norm, rel=1e-12)
    lams = d["lambdas"]
    for j, ck in enumerate(ckpts):
        delta = {n: ck[n].double() - theta0[n] for n in theta0}
        dist = math.sqrt(sum(float(x.pow(2).sum()) for x in delta.values()))
        assert dist == pytest.approx(d["radii"][j], rel=1e-5)
        # the displacement is Σλ(1 + ξ)⊙e: its component along e is Σλ, the rest is the jitter
        along = sum(float((delta[n] * (thetaf[n] - theta0[n])).sum()) for n in theta0) / norm
        assert along == pytest.approx(sum(lams[: j + 1]), rel=0.02)
    assert d["lambdas_expected_rule"][0] == pytest.approx(1 / math.sqrt(2))
    assert lams[0] == pytest.approx(1 / math.sqrt(2), rel=0.05)  # E‖(1+ξ)⊙e‖² = 2


def test_target_of_another_shape_is_refused_before_any_weight_is_read(tmp_path, tiny_qwen_dir, qwen_tokenizer_dir,
                                                                     monkeypatch):
    wide = build_tiny_qwen(tmp_path / "wide", qwen_tokenizer_dir, hidden=48)
    from data_selection.perturb import params

    def no_load(*a, **k):
        raise AssertionError("weights were loaded before the shape check")

    monkeypatch.setattr(params, "load_fp32", no_load)
    with pytest.raises(UserError, match="not a model of the same shape.*shape mismatch"):
        run_perturb(PerturbOptions(kind="directional", model=str(tiny_qwen_dir), target=str(wide),
                                   out=str(tmp_path / "o")))
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_options_and_folder_errors(tmp_path, tiny_qwen_dir, gaussian_dir, target_dir):
    with pytest.raises(UserError, match="needs --target"):
        run_perturb(PerturbOptions(kind="directional", model=str(tiny_qwen_dir), out=str(tmp_path / "a")))
    with pytest.raises(UserError, match="only used by --kind directional"):
        run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), target="x", out=str(tmp_path / "a")))
    with pytest.raises(UserError, match="0 < --start <= --end"):
        run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), start=0.1, end=0.01,
                                   out=str(tmp_path / "a")))
    same = run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(gaussian_dir), verify=False))
    assert same["status"] == "unchanged"
    with pytest.raises(UserError, match="describes another perturbation"):
        run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(gaussian_dir), seed=1))
    m = read_manifest(gaussian_dir)
    with pytest.raises(UserError, match="not the ones the perturbation was made from"):
        open_sequence(m, "cpu", model=str(target_dir))
    edited = {**m, "seed": 7}
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(UserError, match="does not match its digest"):
        read_manifest(tmp_path / "edited")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(UserError, match="not a perturbation manifest"):
        read_manifest(tmp_path / "bad")


def test_verification_records_realised_noise_and_distances(tmp_path, tiny_qwen_dir, target_dir):
    g = run_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(tmp_path / "g"), num=2))
    rows = g["manifest"]["verification"]
    assert [r["checkpoint"] for r in rows] == [1, 2]
    for r in rows:
        assert r["realised_fp32"]["overall"] == pytest.approx(r["sigma"], rel=0.1)
    d = run_perturb(PerturbOptions(kind="directional", model=str(tiny_qwen_dir), target=str(target_dir), num=2,
                                   out=str(tmp_path / "d")))
    for r in d["manifest"]["verification"]:
        assert r["distance_fp32"] == pytest.approx(r["radius"], rel=1e-5)
    assert embedding_names(load_fp32(str(tiny_qwen_dir))) == ["model.embed_tokens.weight"]


@pytest.mark.parametrize("kind", ["gaussian", "directional"])
def test_export_writes_the_checkpoint_the_sequence_regenerates_in_memory(kind, tmp_path, tiny_qwen_dir, gaussian_dir,
                                                                         directional_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_selection.commands.perturb import run as cli_perturb
    from data_selection.perturb.export import EXPORT_RECORD

    folder = gaussian_dir if kind == "gaussian" else directional_dir
    m = read_manifest(folder)
    opts = PerturbOptions(kind=kind, model=str(tiny_qwen_dir), out=str(folder), export=2,
                          export_dir=str(tmp_path / "ckpt2"), verify=False, num=m["num_checkpoints"],
                          **({"target": m["target_model"]["name_or_path"], "min_radius": 1.0, "max_radius": 10.0}
                             if kind == "directional" else {}))
    assert cli_perturb(opts) == 0
    assert read_manifest(folder)["digest"] == m["digest"]  # the manifest is reused, not rewritten
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt2", dtype=torch.float32)
    seq = open_sequence(m, "cpu")
    seq.advance()
    seq.advance()
    in_memory = load_fp32(str(tiny_qwen_dir))
    seq.load_into(in_memory)
    theirs = dict(exported.named_parameters())
    for n, p in in_memory.named_parameters():
        assert torch.equal(p, theirs[n]), n
    base = dict(load_fp32(str(tiny_qwen_dir)).named_parameters())
    w = "model.layers.0.mlp.up_proj.weight"
    assert w in m["tensors"] and not torch.equal(theirs[w], base[w])  # it is perturbed, not θ0
    record = json.loads((tmp_path / "ckpt2" / EXPORT_RECORD).read_text())
    assert record["checkpoint"] == 2 and record["perturbation_digest"] == m["digest"]
    assert AutoTokenizer.from_pretrained(tmp_path / "ckpt2").vocab_size > 0
    with pytest.raises(UserError, match="checkpoints 1..2"):
        cli_perturb(PerturbOptions(kind="gaussian", model=str(tiny_qwen_dir), out=str(tmp_path / "g"), num=2,
                                   export=3))
