"""`data-select score-checkpoints`: prefix losses at regenerated checkpoints, resumable and shared by ranks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import SYSTEM, make_acereason_rows, write_jsonl
from score_fixtures import make_scores_dir

from data_selection.command_line import UserError
from data_selection.encoding import TemplateEncoder, load_tokenizer
from data_selection.options import score_checkpoints as checkpoint_options
from data_selection.perturb.build import PerturbOptions, run_perturb
from data_selection.perturb.manifest import read_manifest
from data_selection.perturb.params import load_fp32
from data_selection.perturb.sequence import open_sequence
from data_selection.scores_table import load_scored_pool, load_scores
from data_selection.scoring import varlen
from data_selection.scoring.checkpoint_layout import feature_column, load_temp_scores
from data_selection.scoring.checkpoints import (
    CheckpointScoreOptions,
    merge_checkpoint_shards,
    run_score_checkpoints,
    shard_file,
)
from data_selection.scoring.forward import score_sequences
from data_selection.scoring.runner import ScoreOptions, run_score
from data_selection.selectors import temp_difficulty
from data_selection.selectors.temp import difficulty_survivors
from data_selection.tiny_model import build_tiny_qwen


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_qwen_dir, qwen_tokenizer_dir):
    root = tmp_path_factory.mktemp("temp_scoring")
    rows = make_acereason_rows(8)
    for i, r in enumerate(rows):  # 2 rows past 1,000 response tokens, the others from ~30 to ~250
        r["output"] += " Let me verify this step once more." * (140 if i < 2 else 4 * i)
    pool = write_jsonl(rows, root / "pool.jsonl")
    scores = root / "scores" / "pool"
    run_score(ScoreOptions(model=str(tiny_qwen_dir), dataset=str(pool), out=str(scores), template="qwen",
                           cutoff_len=4096, system_prompt=SYSTEM, shard_rows=4))
    target = build_tiny_qwen(root / "target", qwen_tokenizer_dir, seed=1)
    for kind, extra in (("gaussian", {}), ("directional", {"target": str(target)})):
        run_perturb(PerturbOptions(kind=kind, model=str(tiny_qwen_dir), out=str(root / "perturb" / kind), num=2,
                                   start=0.05, end=0.2, verify=False, **extra))
    temp = root / "scores" / "pool_temp"
    out = {}
    for kind, extra in (("gaussian", {}), ("directional", {"rows": "all"})):
        out[kind] = run_score_checkpoints(CheckpointScoreOptions(
            perturb=str(root / "perturb" / kind), scores=str(scores), out=str(temp), shard_rows=4, **extra))
    return root, scores, temp, out


def _full_losses(folder, checkpoint, tiny_qwen_dir, scores):
    """Per-token losses of every scored row over its whole response at one regenerated checkpoint."""
    table, meta, _ = load_scores(scores)
    m = read_manifest(folder)
    seq = open_sequence(m, "cpu")
    for _ in range(checkpoint):
        seq.advance()
    model = load_fp32(str(tiny_qwen_dir))
    seq.load_into(model)
    enc = TemplateEncoder(load_tokenizer(str(tiny_qwen_dir)), meta["template"], meta["cutoff_len"])
    pool = load_scored_pool(meta, scores)
    seqs = {}
    for r in table["row"]:
        e = enc.encode(pool.converted[int(r)])
        seqs[int(r)] = (e.input_ids, e.labels)
    losses, _ = score_sequences(model, seqs, batch_tokens=4096, chunk_tokens=256, device="cpu", pad_id=0)
    return losses


def test_prefix_losses_equal_the_first_positions_of_a_full_run(run, tiny_qwen_dir):
    root, scores, temp, out = run
    t = load_temp_scores(temp, scores)
    base, _, _ = load_scores(scores)
    assert sorted(t.gaussian["row"]) == sorted(base["row"]) == sorted(t.directional["row"])
    for kind, ks in (("gaussian", (100,)), ("directional", (100, 1000))):
        table = getattr(t, kind).set_index("row")
        full = _full_losses(root / "perturb" / kind, 2, tiny_qwen_dir, scores)
        long = 0
        for r, tok in full.items():
            assert table.at[r, "n_scored_tokens"] == min(max(ks), len(tok))
            for k in ks:
                expect = float(tok[:k].double().mean())
                assert table.at[r, feature_column(kind, 2, k)] == pytest.approx(expect, rel=1e-5, abs=1e-5)
            long += len(tok) > max(ks)
        assert long >= 2  # the prefix really cut some rows
        assert out[kind]["counts"]["scored"] == len(base)
    # checkpoints 1 and 2 differ (the model moved); the forward passes held the prompt + K response tokens only
    g = t.gaussian
    assert (g[feature_column("gaussian", 1, 100)] != g[feature_column("gaussian", 2, 100)]).all()
    for kind, k in (("gaussian", 100), ("directional", 1000)):
        per_ckpt = int((base["n_prompt_tokens"] + base["n_response_tokens"].clip(upper=k)).sum())
        assert out[kind]["counts"]["tokens_forwarded"] == 2 * per_ckpt


def test_ranks_share_the_work_and_a_resumed_run_equals_an_uninterrupted_one(run, tmp_path, monkeypatch):
    root, scores, temp, _ = run
    opts = CheckpointScoreOptions(perturb=str(root / "perturb" / "gaussian"), scores=str(scores),
                                  out=str(tmp_path / "t"), shard_rows=4, verify=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    first = run_score_checkpoints(opts)
    assert not first["merged"] and first["waiting_for_units"] > 0
    monkeypatch.setenv("RANK", "1")
    second = run_score_checkpoints(opts)
    assert second["merged"]
    ref = pd.read_parquet(temp / "gaussian" / "scores.parquet")
    got = pd.read_parquet(tmp_path / "t" / "gaussian" / "scores.parquet")
    pd.testing.assert_frame_equal(got, ref)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    shard_file(tmp_path / "t" / "gaussian", 2, 1).unlink()  # a unit lost when the job was killed
    again = run_score_checkpoints(opts)
    assert again["units_pending"] == 1 and again["merged"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t" / "gaussian" / "scores.parquet"), ref)
    assert run_score_checkpoints(opts)["units_pending"] == 0
    with pytest.raises(UserError, match="different configuration.*prefix"):
        run_score_checkpoints(CheckpointScoreOptions(**{**opts.__dict__, "prefix": 50}))


def test_directional_scores_the_difficulty_survivors(run, tmp_path):
    root, scores, temp, _ = run
    out = tmp_path / "t2"
    (out / "gaussian").mkdir(parents=True)
    for f in ("meta.json", "scores.parquet", "rejects.jsonl"):
        (out / "gaussian" / f).write_bytes((temp / "gaussian" / f).read_bytes())
    # a few rows per source: the official small-source rule (init_label_num 1000) would keep them all, so this
    # scores the survivors of the k-means rule (the option), which drops some
    res = run_score_checkpoints(CheckpointScoreOptions(perturb=str(root / "perturb" / "directional"),
                                                       scores=str(scores), out=str(out), prefix=20, verify=False,
                                                       temp_init_label_num=0))
    base, _, _ = load_scores(scores)
    expect, diff = difficulty_survivors(base, load_temp_scores(temp, scores), init_label_num=0)
    assert len(difficulty_survivors(base, load_temp_scores(temp, scores))[0]) == len(base)
    got = pd.read_parquet(out / "directional" / "scores.parquet")
    assert sorted(got["row"]) == sorted(expect.tolist()) and 0 < len(expect) < len(base)
    meta = json.loads((out / "directional" / "meta.json").read_text())
    assert meta["rows"]["temp_init_label_num"] == 0 and "--temp-init-label-num 0" in meta["command"]
    assert res["counts"]["scored"] == len(expect) == diff.facts["survivors"]
    assert list(got.columns) == ["id", "row", "n_prompt_tokens", "n_response_tokens", "n_scored_tokens",
                                 feature_column("directional", 1, 20), feature_column("directional", 2, 20)]


def test_directional_builds_on_the_gaussian_results_of_another_folder(run, tmp_path):
    root, scores, temp, _ = run
    out = tmp_path / "t3"
    opts = CheckpointScoreOptions(perturb=str(root / "perturb" / "directional"), scores=str(scores), out=str(out),
                                  gaussian=str(temp), prefix=20, verify=False)
    run_score_checkpoints(opts)
    for f in ("meta.json", "scores.parquet", "rejects.jsonl"):  # copied byte for byte: OUT is complete for select
        assert (out / "gaussian" / f).read_bytes() == (temp / "gaussian" / f).read_bytes()
    base, _, _ = load_scores(scores)
    expect, _ = difficulty_survivors(base, load_temp_scores(temp, scores))
    got = load_temp_scores(out, scores)
    assert sorted(got.directional["row"]) == sorted(expect.tolist())
    assert run_score_checkpoints(opts)["units_pending"] == 0  # a re-run finds the same bytes and nothing to do
    other = tmp_path / "other"
    (other / "gaussian").mkdir(parents=True)
    for f in ("meta.json", "rejects.jsonl"):
        (other / "gaussian" / f).write_bytes((temp / "gaussian" / f).read_bytes())
    g = pd.read_parquet(temp / "gaussian" / "scores.parquet")
    g.iloc[1:].to_parquet(other / "gaussian" / "scores.parquet", index=False)  # other Gaussian results
    with pytest.raises(UserError, match="holds other Gaussian results than --gaussian"):
        run_score_checkpoints(CheckpointScoreOptions(**{**opts.__dict__, "gaussian": str(other)}))
    with pytest.raises(UserError, match="--gaussian names the Gaussian results a directional run builds on"):
        run_score_checkpoints(CheckpointScoreOptions(perturb=str(root / "perturb" / "gaussian"), scores=str(scores),
                                                     out=str(tmp_path / "t4"), gaussian=str(temp)))


def test_a_perturbation_of_another_model_or_a_missing_gaussian_run_is_refused(run, tmp_path):
    root, _, _, _ = run
    other = make_scores_dir(tmp_path, n_rows=12)  # scored by "tiny-test-model"
    with pytest.raises(UserError, match="perturbs .* but --scores .* was scored by tiny-test-model"):
        run_score_checkpoints(CheckpointScoreOptions(perturb=str(root / "perturb" / "gaussian"), scores=str(other),
                                                     out=str(tmp_path / "x")))


def test_directional_needs_the_gaussian_run_first(run, tmp_path):
    root, scores, _, _ = run
    with pytest.raises(UserError, match="--rows survivors is for directional"):
        run_score_checkpoints(CheckpointScoreOptions(perturb=str(root / "perturb" / "gaussian"), scores=str(scores),
                                                     out=str(tmp_path / "z"), rows="survivors"))
    with pytest.raises(UserError, match="gaussian checkpoint scores are missing.*first: the directional rows"):
        run_score_checkpoints(CheckpointScoreOptions(perturb=str(root / "perturb" / "directional"),
                                                     scores=str(scores), out=str(tmp_path / "y")))


def test_merge_rejects_a_row_that_is_not_finite_at_any_checkpoint(tmp_path):
    out = tmp_path / "gaussian"
    meta = {"kind": "gaussian", "num_checkpoints": 2, "num_shards": 2, "features": [100]}
    (out).mkdir()
    (out / "meta.json").write_text(json.dumps(meta))
    rows = {0: [0, 1], 1: [2]}
    for j in (1, 2):
        for k, rs in rows.items():
            df = pd.DataFrame({"id": [f"id{r}" for r in rs], "row": rs, "n_prompt_tokens": 5, "n_response_tokens": 9,
                               "n_scored_tokens": 9, "reject_reason": "",
                               "loss_first_100": [float("nan") if (j, r) == (2, 1) else r + j / 10 for r in rs]})
            shard_file(out, j, k).parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(shard_file(out, j, k))
    res = merge_checkpoint_shards(out)
    table = pd.read_parquet(out / "scores.parquet")
    assert table["row"].tolist() == [0, 2] and res["counts"]["rejected"] == 1
    assert table[feature_column("gaussian", 2, 100)].tolist() == [0.2, 2.2]
    rej = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert rej == [{"row": 1, "id": "id1", "reason": "checkpoint 2: non-finite loss"}]
    shard_file(out, 1, 1).unlink()
    with pytest.raises(UserError, match="not finished.*checkpoint 1, shard 1"):
        merge_checkpoint_shards(out)


def test_the_light_options_module_copies_the_constants_it_cannot_import():
    assert checkpoint_options.PACKED_MODES == varlen.PACKED_MODES
    assert checkpoint_options.INIT_LABEL_NUM == temp_difficulty.INIT_LABEL_NUM
    with pytest.raises(UserError, match="--rows must be one of"):
        CheckpointScoreOptions(perturb="p", scores="s", out="o", rows="some").validate()
