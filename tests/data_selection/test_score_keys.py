"""The rank and top-K Brier statistics of `data-select score` (docs/methods.md §1) equal a direct full-vocabulary
computation row by row, on every path (padded, packed, chunked, first-K means), and the `rsr` / `lark` keys they
feed select end to end; a table scored before them says which file lacks which column and to re-score."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO_ROOT, SYSTEM, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_selection.command_line import UserError
from data_selection.options.report import ReportOptions
from data_selection.options.select import RATIO_KEYS
from data_selection.reports.selection import run_report
from data_selection.scores_table import STAT_COLUMNS
from data_selection.scoring import runner
from data_selection.scoring.forward import FIRST_K, score_sequences, token_features
from data_selection.scoring.logprobs import IGNORE_INDEX, head_token_losses
from data_selection.scoring.merge import merge_shards
from data_selection.scoring.runner import ScoreOptions, run_score
from data_selection.select import SelectOptions, run_select
from data_selection.shards.layout import SHARD_DIR

K = 10
EPS = 5e-6  # logits of two paths closer than this (~10 fp32 ulps at |logit| ~ 4) are a tie float summation may flip
TOL = 2e-5  # fp32 NLL / Brier (~1e-6 per token) averaged over a row


@pytest.fixture(scope="module")
def peaky_dir(tiny_qwen_dir, tmp_path_factory):
    """The tiny random Qwen with its final norm scaled x30: logits spread over ~±15 instead of ~±0.5, so ranks are
    well separated (ties beyond float noise are rare) and the top-K probabilities are not all ~1/vocab."""
    out = tmp_path_factory.mktemp("peaky")
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(30.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_qwen_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def peaky(peaky_dir):
    return AutoModelForCausalLM.from_pretrained(peaky_dir, dtype=torch.float32).eval()


def reference(model, input_ids, labels, k: int = K) -> dict[str, torch.Tensor]:
    """Per label token from the model's own full logits of the unpadded row, in float64, by the definition: NLL,
    the rank band [lo, hi] (1 + entries above the target's logit by more / less than EPS) and
    sum over S = top-k ∪ {target} of (p_i - [i = target])^2."""
    with torch.no_grad():
        logits = model(input_ids=torch.as_tensor([list(input_ids)])).logits[0, :-1].double()
    tgt = torch.as_tensor(list(labels))[1:]
    keep = tgt != IGNORE_INDEX
    lg, t = logits[keep], tgt[keep]
    logp = lg.log_softmax(dim=1)
    p = logp.exp()
    tl = lg.gather(1, t[:, None])
    top = p.topk(k, dim=1).indices  # S = top-k ∪ {target}: the top k, then the target when it is not among them
    y_top = (top == t[:, None]).double()
    p_t = p.gather(1, t[:, None])[:, 0]
    brier = ((p.gather(1, top) - y_top) ** 2).sum(1) + (1 - y_top.sum(1)) * (1 - p_t) ** 2
    return {"loss": -logp.gather(1, t[:, None])[:, 0], "rank": 1 + (lg > tl).sum(1).double(),
            "rank_lo": 1 + (lg - tl > EPS).sum(1).double(), "rank_hi": (lg - tl > -EPS).sum(1).double(),
            "brier": brier}


def check_features(feats: dict[str, float], ref: dict[str, torch.Tensor], where) -> None:
    """The stored means (whole row and first-K) against the reference's."""
    for suffix, k in (("mean", None), *((f"first_{k}", k) for k in FIRST_K)):
        sl = slice(0, k)
        assert feats[f"loss_{suffix}"] == pytest.approx(float(ref["loss"][sl].mean()), abs=TOL), where
        assert feats[f"brier_topk_{suffix}"] == pytest.approx(float(ref["brier"][sl].mean()), abs=TOL), where
        lo, hi = float(ref["rank_lo"][sl].mean()), float(ref["rank_hi"][sl].mean())
        assert lo - 1e-9 <= feats[f"rank_{suffix}"] <= hi + 1e-9, (where, suffix, lo, feats[f"rank_{suffix}"], hi)


def _rows(lengths: list[int], vocab: int, seed: int = 0) -> dict[int, tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, n in enumerate(lengths):
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        prompt = 3 + i % 4
        out[i] = (ids, [IGNORE_INDEX] * prompt + ids[prompt:])
    return out


@pytest.mark.parametrize("packing,chunk,k", [("off", 7, K), ("sdpa_rows", 7, K), ("sdpa_mask", 64, K),
                                             ("sdpa_rows", 10_000, 1), ("off", 1, 3)])
def test_token_statistics_equal_a_full_vocabulary_computation(peaky, packing, chunk, k):
    """Per token and per row (first-K means included: rows longer than 100 labels), padded and packed batches."""
    rows = _rows([160, 150, 121, 110, 64, 9], peaky.config.vocab_size)
    out, stats = score_sequences(peaky, rows, batch_tokens=330, chunk_tokens=chunk, device="cpu", pad_id=0,
                                 packing=packing, top_k=k)
    assert stats["packing"] == packing and stats["batches"] < len(rows)  # rows really share batches
    flipped = tokens = 0
    for r, (ids, labels) in rows.items():
        ref = reference(peaky, ids, labels, k)
        mine = out[r].double()
        assert mine.shape == (len(ref["loss"]), 3)
        assert torch.allclose(mine[:, 0], ref["loss"], atol=3e-5), r
        assert torch.allclose(mine[:, 2], ref["brier"], atol=3e-6), r
        assert bool(((ref["rank_lo"] <= mine[:, 1]) & (mine[:, 1] <= ref["rank_hi"])).all()), r
        assert torch.equal(mine[:, 1], mine[:, 1].round()) and bool((mine[:, 1] >= 1).all())
        flipped += int((mine[:, 1] != ref["rank"]).sum())
        tokens += len(mine)
        if k == K:
            check_features(token_features(out[r]), ref, r)
    assert flipped <= 0.02 * tokens  # the band is float noise, not a loophole: 0 or 1 of 589 tokens here
    assert max(float(out[r][:, 2].max()) for r in rows) > 0.5  # targets well outside the top K: (1 - p_t)^2 ~ 1
    spread = torch.cat([out[r][:, 1] for r in rows])
    assert spread.min() >= 1 and spread.max() > 1000  # real ranks, not a constant


def test_the_nll_column_is_the_plain_losses_bit_for_bit(peaky):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(300, peaky.config.hidden_size, generator=g)
    t = torch.randint(0, peaky.config.vocab_size, (300,), generator=g)
    with torch.no_grad():
        plain = head_token_losses(peaky, h, t, 64)
        both = head_token_losses(peaky, h, t, 64, top_k=K)
    assert torch.equal(both[:, 0], plain)


def test_a_vocabulary_smaller_than_the_blocks_and_k_larger_than_it(peaky):
    """The two-stage top-K falls back to a plain top-K when the vocabulary has few blocks; K >= vocab is all of it."""
    head = torch.nn.Linear(8, 200, bias=False)
    model = type("M", (), {"get_output_embeddings": lambda self: head, "config": peaky.config.__class__()})()
    g = torch.Generator().manual_seed(4)
    h, t = torch.randn(20, 8, generator=g), torch.randint(0, 200, (20,), generator=g)
    with torch.no_grad():
        logits = (h @ head.weight.t()).double()
        p = logits.softmax(1)
        for k in (1, 2, 300):
            got = head_token_losses(model, h, t, 6, top_k=k).double()
            for i in range(20):
                s = sorted(set(p[i].topk(min(k, 200)).indices.tolist()) | {int(t[i])})
                y = torch.tensor([float(j == int(t[i])) for j in s], dtype=torch.float64)
                assert float(got[i, 2]) == pytest.approx(float(((p[i, s] - y) ** 2).sum()), abs=1e-6)
                assert float(got[i, 1]) == 1 + int((logits[i] > logits[i, t[i]]).sum())


# --- the scores table and the keys, end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    """Alpaca rows with responses of ~50 to ~250 tokens, so the first-100 means differ from the whole-row ones."""
    d = tmp_path_factory.mktemp("pool")
    rows = []
    for i in range(10):
        a, b = 3 + i, 7 * i + 1
        steps = " ".join(f"Step {j}: add {a + j} and {b - j} to get {a + b}." for j in range(2 + 3 * i // 2))
        rows.append({"instruction": f"What is {a} + {b}?", "input": "", "system": SYSTEM,
                     "output": f"<think>\n{steps}\n</think>\n\nThe answer is \\boxed{{{a + b}}}."})
    write_jsonl(rows, d / "pool.jsonl")
    info = {"mypool": {"file_name": "pool.jsonl", "columns": {"prompt": "instruction", "query": "input",
                                                              "response": "output", "system": "system"}}}
    (d / "dataset_info.json").write_text(json.dumps(info))
    return d


def _opts(model, pool_dir, out, **kw) -> ScoreOptions:
    base = dict(model=str(model), dataset="mypool", dataset_dir=str(pool_dir), out=str(out), template="qwen",
                cutoff_len=512, shard_rows=6, batch_tokens=800, chunk_tokens=50, num_proc=1)
    return ScoreOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def scored(peaky_dir, pool_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "run"
    run_score(_opts(peaky_dir, pool_dir, out))
    return out


def test_the_stored_columns_equal_a_full_vocabulary_computation(scored, peaky, peaky_dir, pool_dir):
    """The table `data-select score` writes (packed batches of several rows, chunks of 50 label positions)."""
    df = pd.read_parquet(scored / "scores.parquet")
    assert list(df.columns[: 10 + len(STAT_COLUMNS)])[10:] == STAT_COLUMNS  # beside the loss columns
    assert json.loads((scored / "meta.json").read_text())["identity"]["brier_top_k"] == K
    _, _, encoder, pool = runner.prepare(_opts(peaky_dir, pool_dir, scored))
    assert (df["n_response_tokens"] > 100).sum() >= 3 and (df["n_response_tokens"] < 100).sum() >= 2
    assert len(df) == 10 and not df["truncated"].any()
    for r in df.itertuples():
        enc = encoder.encode(pool.converted[int(r.row)])
        check_features(r._asdict(), reference(peaky, enc.input_ids, enc.labels), int(r.row))


def test_padded_scoring_stores_the_same_columns(scored, peaky_dir, pool_dir, tmp_path):
    run_score(_opts(peaky_dir, pool_dir, tmp_path / "off", packing="off"))
    off = pd.read_parquet(tmp_path / "off" / "scores.parquet")
    packed = pd.read_parquet(scored / "scores.parquet")
    for col in ("loss_mean", *STAT_COLUMNS):
        tol = 2.0 / off["n_response_tokens"].to_numpy() if col.startswith("rank") else TOL  # a rank may flip by 1
        assert (np.abs(off[col].to_numpy() - packed[col].to_numpy()) <= tol).all(), col


def test_brier_top_k_is_an_option_and_part_of_the_identity(scored, peaky_dir, pool_dir, tmp_path):
    with pytest.raises(UserError, match="--brier_top_k must be at least 1"):
        _opts(peaky_dir, pool_dir, tmp_path / "x", brier_top_k=0).validate()
    with pytest.raises(UserError, match="brier_top_k: 10 -> 3"):
        run_score(_opts(peaky_dir, pool_dir, scored, brier_top_k=3))
    out = tmp_path / "k1"
    run_score(_opts(peaky_dir, pool_dir, out, brier_top_k=1, max_samples=4))
    k1 = pd.read_parquet(out / "scores.parquet").set_index("row")
    k10 = pd.read_parquet(scored / "scores.parquet").set_index("row").loc[k1.index]
    assert np.allclose(k1["rank_mean"], k10["rank_mean"]) and np.allclose(k1["loss_mean"], k10["loss_mean"])
    assert (k1["brier_topk_mean"] <= k10["brier_topk_mean"] + 1e-7).all()  # fewer terms, each >= 0
    assert not np.allclose(k1["brier_topk_mean"], k10["brier_topk_mean"])


def _select(scores, work, name, **kw):
    opts = SelectOptions(scores=str(scores), name=name, n=kw.pop("n", 5), dataset_info=str(work / "dataset_info.json"),
                         **kw)
    return run_select(opts)


@pytest.mark.parametrize("key", sorted(RATIO_KEYS))
def test_selecting_by_a_ratio_key_draws_from_its_band(scored, tmp_path, key):
    """zpd by rsr / lark: the band is cut on the stored numerator over the stored loss, computed here directly."""
    res = _select(scored, tmp_path, f"sub_{key}", strategy="zpd", key=key, low=0.25, high=0.75)
    man = res["manifest"]
    assert man["key"]["name"] == key and man["parameters"]["key"] == key and f"--key {key}" in man["recipe"]
    assert man["num_rows"] == 5 and len((tmp_path / "data" / f"sub_{key}.jsonl").read_text().splitlines()) == 5
    df = pd.read_parquet(scored / "scores.parquet").sort_values("row").reset_index(drop=True)
    df = df[~df["truncated"]].reset_index(drop=True)
    num, den = RATIO_KEYS[key]
    ratio = df[num].to_numpy() / df[den].to_numpy()
    ranked = np.sort(ratio)
    cut = int(np.floor(0.25 * len(df)))
    band = ranked[cut : len(df) - cut]
    assert man["thresholds"]["low_value"] == pytest.approx(band[0], rel=1e-12)
    assert man["thresholds"]["high_value"] == pytest.approx(band[-1], rel=1e-12)


def test_random_takes_the_new_keys_too(scored, tmp_path):
    res = _select(scored, tmp_path, "sub_rand", strategy="random", key="lark")
    assert res["manifest"]["key"]["name"] == "lark" and res["manifest"]["num_rows"] == 5


def test_a_table_scored_before_the_columns_loads_and_says_to_re_score(scored, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(scored, old)
    for f in (old / SHARD_DIR).glob("*.parquet"):  # shards as the scorer wrote them before the columns existed
        pd.read_parquet(f).drop(columns=STAT_COLUMNS).to_parquet(f, index=False)
    (old / "scores.parquet").unlink()
    merge_shards(old)
    table = pd.read_parquet(old / "scores.parquet")
    assert not set(STAT_COLUMNS) & set(table.columns)
    new = pd.read_parquet(scored / "scores.parquet")
    assert table.equals(new.drop(columns=STAT_COLUMNS))  # everything else unchanged
    assert _select(old, tmp_path, "by_loss", strategy="zpd")["manifest"]["num_rows"] == 5  # old keys still work
    for key in ("rsr", "lark_first_100"):
        with pytest.raises(UserError) as err:
            _select(old, tmp_path, f"by_{key}", strategy="zpd", key=key)
        msg = str(err.value)
        assert str(old / "scores.parquet") in msg and RATIO_KEYS[key][0] in msg and "Re-score" in msg
        assert not (tmp_path / "data" / f"by_{key}.jsonl").exists()
    # a partial shard set (some shards from before) keeps no half-filled column
    mixed = tmp_path / "mixed"
    shutil.copytree(scored, mixed)
    first = sorted((mixed / SHARD_DIR).glob("*.parquet"))[0]
    pd.read_parquet(first).drop(columns=STAT_COLUMNS).to_parquet(first, index=False)
    merge_shards(mixed)
    assert not set(STAT_COLUMNS) & set(pd.read_parquet(mixed / "scores.parquet").columns)


def test_the_cost_bench_runs_and_reports_the_ratio(tmp_path):
    """bench/score_keys_cost.py (docs/methods.md §1) still runs against the scorer's API."""
    out = tmp_path / "cost.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "score_keys_cost.py"), "--models", "tiny",
                           "--rows", "2", "--tokens", "48", "--prompt", "8", "--repeats", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (res,) = json.loads(out.read_text())
    assert res["model"] == "tiny" and res["ratio"] == pytest.approx(
        res["with_rank_brier_s_per_row"] / res["loss_only_s_per_row"])
    assert "ratio" in proc.stdout and "budget" in proc.stdout


def test_a_selection_by_rsr_gets_its_report(scored, tmp_path):
    """`data-select report` reads the rank/Brier columns too (a ratio key is computed from them)."""
    _select(scored, tmp_path, "by_rsr", strategy="zpd", key="rsr")
    res = run_report(ReportOptions(names=["by_rsr"], dataset_info=str(tmp_path / "dataset_info.json"),
                                   out=str(tmp_path / "report")))
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "rsr" in text and (tmp_path / "report" / "report.html").is_file() and res


def test_an_old_folder_is_re_scored_with_overwrite_as_the_error_says(scored, peaky_dir, pool_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(scored, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["identity"]["brier_top_k"]  # meta.json as the scorer wrote it before the statistics
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="brier_top_k: None -> 10"):
        run_score(_opts(peaky_dir, pool_dir, old))
    run_score(_opts(peaky_dir, pool_dir, old, overwrite=True))
    again = pd.read_parquet(old / "scores.parquet")
    assert set(STAT_COLUMNS) <= set(again.columns) and len(again) == 10
