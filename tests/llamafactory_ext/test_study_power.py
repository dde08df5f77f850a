"""Power statement vs simulation: per-problem outcomes drawn with known rates, the study's own bootstrap, compared
half-widths; the variance split with several samples per problem; a pilot's split projected to more samples."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from llamafactory_ext.study.power import Model, from_components, half_width
from llamafactory_ext.study.stats import bootstrap
from llamafactory_ext.study.variance import decompose

SEED_SD, RUN_SD = 0.01, 0.08  # probability scale


def simulate(rng, r: int, p: int, k: int, delta: float = 0.0):
    """Two trained arms: problem rate q_p ~ Beta(6, 6), arm-run offset N(0, SEED_SD), cell offset N(0, RUN_SD),
    k Bernoulli samples per cell. Returns (results table, true per-cell rates)."""
    q = rng.beta(6, 6, p)
    rows, rates = [], []
    for arm, shift in (("a", delta), ("b", 0.0)):
        for seed in range(r):
            rate = np.clip(q + shift + rng.normal(0, SEED_SD) + rng.normal(0, RUN_SD, p), 0, 1)
            rates.append(rate)
            y = rng.binomial(k, rate) / k
            rows += [{"arm": arm, "seed": seed, "problem": f"p{i:04d}", "score": y[i], "samples": k} for i in range(p)]
    return pd.DataFrame(rows), np.concatenate(rates)


def true_model(k_rates: np.ndarray) -> Model:
    e1 = 2e4 * float((k_rates * (1 - k_rates)).mean())  # two arms' one-sample variance, points²
    return Model(2e4 * SEED_SD**2, 0.0, 2e4 * RUN_SD**2, e1, "truth")


@pytest.mark.parametrize(("r", "p", "k"), [(3, 300, 1), (3, 200, 8), (5, 200, 4)])
def test_expected_half_width_matches_the_studys_bootstrap_on_simulated_studies(r, p, k):
    rng = np.random.default_rng(r * 1000 + p + k)
    widths, models = [], []
    for _ in range(60):
        results, rates = simulate(rng, r, p, k)
        st = bootstrap(results, [("a", "b")], draws=2000, seed=int(rng.integers(1 << 30)))
        widths.append(st.differences[("a", "b")].half_width)
        models.append(true_model(rates))
    predicted = half_width(models[0], r, p, k)
    observed = float(np.sqrt(np.mean(np.square(widths))))  # RMS half-width: the prediction is √(E Var*)·z
    assert observed == pytest.approx(predicted, rel=0.05), (observed, predicted)


def test_variance_split_adds_up_to_the_bootstrap_and_names_the_sampling_share():
    rng = np.random.default_rng(0)
    results, _ = simulate(rng, 3, 200, 8)
    tables = [results[results["arm"] == x].pivot_table(index="seed", columns="problem", values="score").to_numpy()
              for x in ("a", "b")]
    comp = decompose(*tables, 8, 8)
    st = bootstrap(results, [("a", "b")], draws=20_000, seed=1)
    # the exact bootstrap variance (module docstring of variance.py) vs the draws' spread, via the half-width
    assert 1.96 * comp.total**0.5 == pytest.approx(st.differences[("a", "b")].half_width, rel=0.04)
    shares = comp.shares()
    assert shares["seeds"] + shares["problems"] + shares["seed x problem"] == pytest.approx(1.0)
    assert 0.1 < shares["of which sampling"] < 1.0  # 8 samples of p≈0.5: sampling is a large part of the noise
    one = decompose(*(t.round() for t in tables), 1, 1)
    assert one.sampling == 0.0 and one.cell_sampling_var == 0.0


def test_a_pilots_split_predicts_a_study_with_more_samples():
    rng = np.random.default_rng(5)
    pilot, rates = simulate(rng, 3, 400, 2)
    tables = [pilot[pilot["arm"] == x].pivot_table(index="seed", columns="problem", values="score").to_numpy()
              for x in ("a", "b")]
    model = from_components(decompose(*tables, 2, 2).as_dict(), seed_sd=1.0, source="pilot")
    truth = true_model(rates)
    # the fitted components are close to the simulation's (run noise and one-sample noise separated)
    assert model.sample_var == pytest.approx(truth.sample_var, rel=0.15)
    assert model.run_var + model.sample_var / 2 == pytest.approx(truth.run_var + truth.sample_var / 2, rel=0.15)
    # projected to 16 samples, with the seed term the truth's (3 seeds give the pilot 2 degrees of freedom for it):
    # close to the truth's half-width, and narrower than at the pilot's 2 samples
    projected = half_width(replace(model, seed_var=truth.seed_var), 3, 400, 16)
    assert projected == pytest.approx(half_width(truth, 3, 400, 16), rel=0.15)
    assert projected < half_width(replace(model, seed_var=truth.seed_var), 3, 400, 2)


def test_the_report_records_the_split_and_a_dry_run_with_it_as_pilot_reproduces_its_half_width(
        tmp_path, tiny_qwen_dir, monkeypatch, capsys):
    from helpers import REPO_ROOT
    from test_study import write_study

    from llamafactory_ext.cli import main as lfx_main
    from llamafactory_ext.study.config import load_study
    from llamafactory_ext.study.plan import known_strategies
    from llamafactory_ext.study.report import write_report

    monkeypatch.chdir(REPO_ROOT)
    results, _ = simulate(np.random.default_rng(3), 3, 200, 8)
    results["arm"] = results["arm"].map({"a": "zpd", "b": "random"})
    results["task"], results["metric"] = "heldout", "pass@k:k=1&n=8"
    changes = {"pool": {"demo_data": {"pool_size": 40, "eval_size": 200, "seed": 0}}, "seeds": [0, 1, 2],
               "eval": {"suite": "heldout", "samples": 8, "temperature": 0.6}}
    cfg = load_study(write_study(tmp_path, str(tiny_qwen_dir), **changes), known_strategies())
    summary = write_report(cfg, [], results, None)
    diff = summary["tasks"]["heldout"]["differences"]["zpd - random"]
    assert diff["variance"]["samples"] == 8 and diff["variance"]["replicates"] == 3
    report = (cfg.report_dir / "report.md").read_text()
    assert "- zpd − random: of the interval's variance, seeds" in report and "8 sample(s) per problem" in report
    total = diff["variance"]["seeds"] + diff["variance"]["problems"] + diff["variance"]["interaction"]
    pilot = dict(changes, analysis={"reference": "random", "baseline": "", "pilot": str(cfg.report_dir / "summary.json")})
    assert lfx_main(["study", str(write_study(tmp_path, str(tiny_qwen_dir), **pilot)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # same problems, seeds and samples as the pilot: the expected half-width is the pilot's own 1.96·√Var*
    assert f"zpd − random: ±{1.96 * total**0.5:.1f} points (pilot)" in out
    assert "power (95% half-widths expected from pilot" in out
