"""Power before the run: the 95% half-width each paired difference of a study is expected to get, printed by
``llamafactory-ext study S.yaml --dry-run``.

For a pair of arms on one benchmark the per-cell difference is modelled as ``d[r, p] = δ + s_r + g_p + e_rp``:
a training-seed effect (variance S2), a fixed per-problem difference (G), and per-cell noise E = E_run + E_1/k
(E_run: run-to-run changes of which problems are solved, not reduced by more samples; E_1: the noise of one
sampled answer, divided by the k samples averaged per problem). The report's crossed bootstrap then has the
expected variance of :mod:`llamafactory_ext.study.variance` and a half-width of about z·√Var (normal
approximation of the percentile interval). Where the components come from:

* a finished pilot (``analysis.pilot: OUT/reports/NAME/summary.json``): its per-difference ``variance``
  entries (written by the report; for an older summary the ``per_problem.csv`` beside it), solved for S2, G,
  E_run and E_1 (a pilot with one seed cannot separate S2: the assumption's seed_sd is used; one greedy answer
  per problem cannot separate E_1: it is taken as 0);
* else ``analysis.assumptions`` (defaults below, stated in the output): accuracy per benchmark, seed_sd (points,
  the seed-to-seed sd of one arm's accuracy), problem_share (the share of one answer's variance acc(1-acc) that is
  the problem's fixed difficulty, shared by every arm: it cancels in a paired difference), run_share (the share
  that changes from training run to training run); the rest is sampling noise (all of it run noise when
  decoding is greedy).

"Smallest difference resolved": a true difference of the half-width is separated from 0 half the time; one of
(1 + 0.84/z) half-widths 80% of the time. Seeds (or samples) needed: the least number with half-width <=
``analysis.resolution``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llamafactory_ext.evaluation.presets import SUITES
from llamafactory_ext.study.report import comparisons
from llamafactory_ext.study.variance import decompose, residual_factor

DEFAULT_ASSUMPTIONS = {"accuracy": 0.5, "seed_sd": 1.0, "problem_share": 0.5, "run_share": 0.1}
# problems per benchmark (lighteval 0.13 tasks); others: analysis.assumptions.problems
KNOWN_PROBLEMS = {"aime24": 30, "aime25": 30, "math_500": 500, "gpqa:diamond": 198}
Z80 = 0.8416


@dataclass(frozen=True)
class Model:
    """Variance components of one paired difference, points²."""

    seed_var: float  # S2
    problem_var: float  # G
    run_var: float  # E_run
    sample_var: float  # E_1 (one sample)
    source: str

    def variance(self, r: int, p: int, k: int) -> float:
        e = self.run_var + self.sample_var / max(k, 1)
        # seeds' and problems' own terms, then the per-cell noise that enters all three (variance.py)
        return (r - 1) / r * self.seed_var / r + (p - 1) / p * self.problem_var / p + e * residual_factor(r, p) / (r * p)


def z_value(confidence: float) -> float:
    from scipy.stats import norm  # lazy: scipy.stats takes seconds to load; one quantile needs it

    return float(norm.ppf(0.5 + confidence / 2))


def half_width(model: Model, r: int, p: int, k: int, confidence: float = 0.95) -> float:
    return z_value(confidence) * model.variance(r, p, k) ** 0.5


def from_components(c: dict[str, Any], seed_sd: float, source: str) -> Model:
    """Solve a pilot's measured split (variance.Components as a dict) for the model's components."""
    r0, p0, k0 = int(c["replicates"]), int(c["n_problems"]), int(c["samples"])
    mean_a, mean_b, mean_c = c["seeds"] * r0, c["problems"] * p0, c["interaction"] * r0 * p0
    if r0 > 1 and p0 > 1:
        e0 = mean_c * r0 * p0 / ((r0 - 1) * (p0 - 1))
        s2 = max(0.0, mean_a * r0 / (r0 - 1) - e0 / p0)
    else:
        e0 = mean_b * p0 / max(p0 - 1, 1) * r0
        s2 = 2 * seed_sd**2
    g = max(0.0, mean_b * p0 / max(p0 - 1, 1) - e0 / r0)
    cell = float(c.get("cell_sampling_var", 0.0))
    e1 = cell * k0 if k0 > 1 else 0.0
    return Model(s2, g, max(0.0, e0 - cell), e1, source)


def from_assumptions(acc: float, a: dict[str, Any], trained: int, sampled: bool, one_run_arm: bool) -> Model:
    """``trained``: how many of the pair's arms are trained (2, or 1 against the base model)."""
    v = 1e4 * acc * (1 - acc)
    rho, iota = float(a["problem_share"]), float(a["run_share"])
    run, samp = (iota * v, (1 - rho - iota) * v) if sampled else ((1 - rho) * v, 0.0)
    seed_var = trained * float(a["seed_sd"]) ** 2
    if one_run_arm:  # the base model evaluated once (greedy): its deviations are fixed per problem
        return Model(seed_var, (1 - rho) * v, run, samp, "assumptions")
    # run noise from each trained arm; sampling noise from both arms (the base model samples too)
    return Model(seed_var, 0.0, trained * run, 2 * samp, "assumptions")


def _pilot_components(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> "a - b" -> components, from a pilot's summary.json (or the per_problem.csv beside it)."""
    summary = json.loads(path.read_text(encoding="utf-8"))
    out = {t: {d: v["variance"] for d, v in s.get("differences", {}).items() if "variance" in v}
           for t, s in summary.get("tasks", {}).items()}
    if any(out.values()):
        return out
    res = pd.read_csv(path.parent / "per_problem.csv")
    out = {}
    for task, s in summary.get("tasks", {}).items():
        sub = res[res["task"] == task]
        for diff in s.get("differences", {}):
            a, b = diff.split(" - ")
            tabs = [sub[sub["arm"] == x].pivot_table(index="seed", columns="problem", values="score") for x in (a, b)]
            k = [int(sub.loc[sub["arm"] == x, "samples"].max()) if "samples" in sub else 1 for x in (a, b)]
            cols = tabs[0].columns.intersection(tabs[1].columns)
            out.setdefault(task, {})[diff] = decompose(tabs[0][cols].to_numpy(), tabs[1][cols].to_numpy(),
                                                       *k).as_dict()
    return out


def study_tasks(cfg) -> dict[str, int | None]:
    """Benchmarks the study evaluates and their problem counts (None: unknown)."""
    given = dict((cfg.analysis.assumptions or {}).get("problems") or {})
    cap = cfg.eval.max_samples
    if cfg.eval.suite == "heldout":
        n = int((cfg.pool.demo_data or {}).get("eval_size", 0)) or None
        tasks = {"heldout": given.get("heldout", n)}
    else:
        names = SUITES.get(cfg.eval.suite, tuple(cfg.eval.suite.split(",")))
        tasks = {t.split("|")[0]: given.get(t.split("|")[0], KNOWN_PROBLEMS.get(t.split("|")[0])) for t in names}
    return {t: (min(n, cap) if n and cap else n) for t, n in tasks.items()}


def _needed(model: Model, r: int, p: int, k: int, res: float, conf: float) -> tuple[int | None, int | None]:
    seeds = next((x for x in range(2, 1001) if half_width(model, x, p, k, conf) <= res), None)
    samples = next((x for x in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
                    if half_width(model, r, p, x, conf) <= res), None)
    return seeds, samples


def power_lines(cfg) -> list[str]:
    """The dry run's power statement, one block per benchmark."""
    an = cfg.analysis
    assumed = {**DEFAULT_ASSUMPTIONS, **{k: v for k, v in (an.assumptions or {}).items() if k != "problems"}}
    sampled = (cfg.eval.temperature is None or cfg.eval.temperature > 0) or (cfg.eval.samples or 1) > 1
    k = cfg.eval.samples or 1
    r = len(cfg.seeds)
    pilot = _pilot_components(Path(an.pilot)) if an.pilot else {}
    arms = [a.name for a in cfg.arms]
    trained = {a.name for a in cfg.trained_arms}
    pairs = comparisons(cfg, arms)
    conf = an.confidence
    lines = [f"power ({100 * conf:g}% half-widths expected from "
             + (f"pilot {an.pilot}" if pilot else "assumptions " + json.dumps(assumed)) + "; "
             + f"{r} seeds, {k} sample(s) per problem, resolution {an.resolution:g} points):"]
    for task, p in study_tasks(cfg).items():
        if not p:
            lines.append(f"  {task}: number of problems unknown; set analysis.assumptions.problems.{task}")
            continue
        acc = assumed["accuracy"]
        acc = float(acc.get(task, 0.5) if isinstance(acc, dict) else acc)
        lines.append(f"  {task} ({p} problems" + ("" if pilot.get(task) else f", accuracy {acc:g}") + "):")
        for a, b in pairs:
            comp = pilot.get(task, {}).get(f"{a} - {b}")
            n_trained = (a in trained) + (b in trained)
            model = (from_components(comp, float(assumed["seed_sd"]), "pilot") if comp else
                     from_assumptions(acc, assumed, n_trained, sampled, n_trained == 1 and not sampled))
            hw = half_width(model, r, p, k, conf)
            seeds, samples = _needed(model, r, p, k, an.resolution, conf)
            floor = z_value(conf) * Model(model.seed_var, model.problem_var, model.run_var, 0.0, "").variance(r, p, 1) ** 0.5
            if hw <= an.resolution:
                need = "resolved as planned"
            else:
                need = (f"{an.resolution:g} needs {seeds} seeds" if seeds else f"{an.resolution:g} is out of reach by "
                        "seeds alone") + " or " + (f"{samples} samples per problem" if samples else
                                                    f"more problems (samples alone floor at ±{floor:.1f})")
            lines.append(f"    {a} − {b}: ±{hw:.1f} points ({model.source}); smallest difference resolved "
                         f"{hw:.1f} (80% power: {hw * (1 + Z80 / z_value(conf)):.1f}); {need}")
    return lines
