"""The study's report: arm accuracies and paired differences with 95% intervals, a verdict per difference, a
plot, every command that produced the numbers, the seeds and the configuration.

Written to ``OUT/reports/NAME/``: ``report.md``, ``report.html`` (:mod:`llamafactory_ext.study.report_html`), ``arms.png``, ``per_problem.csv`` (every score the statistics used),
``summary.json`` (the numbers, machine-readable) and ``study.yaml`` (the configuration as run).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from data_selection.atomic import atomic_path, write_json_atomic, write_text_atomic
from llamafactory_ext.study.composition import composition_section
from llamafactory_ext.study.config import StudyConfig
from llamafactory_ext.study.report_html import write_study_html
from llamafactory_ext.study.stats import StudyStats, bootstrap, score_matrix, verdict
from llamafactory_ext.study.steps import Step
from llamafactory_ext.study.variance import decompose


def comparisons(cfg: StudyConfig, arms: list[str]) -> list[tuple[str, str]]:
    """Every arm against the reference (random); each matched arm's target against it (zpd − matched-random,
    beside zpd − random); then every arm against the baseline (base); then ``analysis.pairs``; without repeats."""
    pairs: list[tuple[str, str]] = []
    matched = [(a.matches, a.name) for a in cfg.arms if a.matches and a.name in arms and a.matches in arms]
    for against in (cfg.analysis.reference, cfg.analysis.baseline):
        if against and against in arms:
            pairs += [(a, against) for a in arms if a != against and (against, a) not in pairs
                      and (a, against) not in pairs]
        if against == cfg.analysis.reference:
            pairs += [p for p in matched if p not in pairs and p[::-1] not in pairs]
    extra = [(a, b) for a, b in cfg.analysis.pairs if a in arms and b in arms]
    pairs += [p for p in extra if p not in pairs and p[::-1] not in pairs]
    return pairs


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch  # lazy: torch (seconds) only to name the GPUs, and it may be missing

        if torch.cuda.is_available():
            desc += f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return desc


def plot(stats_by_task: dict[str, StudyStats], cfg: StudyConfig, path: Path) -> None:
    import matplotlib  # lazy: matplotlib loads only when the plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(stats_by_task)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.2 + 0.35 * len(cfg.arms)) if len(tasks) == 1 else
                             (11, 3.0 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        st = stats_by_task[task]
        ax = axes[row][0]
        names = list(st.arms)
        for i, name in enumerate(names):
            iv = st.arms[name]
            ax.errorbar(iv.estimate, i, xerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], fmt="o",
                        color="C0" if name not in (cfg.analysis.reference, cfg.analysis.baseline) else "grey",
                        capsize=4)
            ax.annotate(f"{iv.estimate:.1f} [{iv.low:.1f}, {iv.high:.1f}]", (iv.high, i), xytext=(6, -3),
                        textcoords="offset points", fontsize=8)
        ax.set_yticks(range(len(names)), [f"{n} (×{st.replicates[n]})" for n in names])
        lows, highs = [st.arms[n].low for n in names], [st.arms[n].high for n in names]
        ax.set_xlim(max(0.0, min(lows) - 5), min(100.0, max(highs) + 15))
        ax.invert_yaxis()
        ax.set_xlabel("accuracy (%), 95% CI")
        ax.set_title(f"{task}: arms ({st.problems} problems)")
        ax.grid(axis="x", alpha=0.3)
        ax = axes[row][1]
        pairs = list(st.differences)
        for i, (a, b) in enumerate(pairs):
            iv = st.differences[(a, b)]
            ok = iv.half_width <= cfg.analysis.resolution
            ax.errorbar(iv.estimate, i, xerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], fmt="s",
                        color="C2" if ok else "C3", capsize=4)
            ax.annotate(f"{iv.estimate:+.1f} ±{iv.half_width:.1f}", (iv.high, i), xytext=(6, -3),
                        textcoords="offset points", fontsize=8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(pairs)), [f"{a} − {b}" for a, b in pairs])
        ax.invert_yaxis()
        ax.set_xlabel(f"paired difference (points); green: resolved (half-width ≤ {cfg.analysis.resolution:g})")
        ax.set_title("paired differences")
        ax.grid(axis="x", alpha=0.3)
        for a in axes[row]:
            a.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130, metadata={"Software": None})
    plt.close(fig)


def _per_seed(results: pd.DataFrame, task: str, arm: str) -> str:
    sub = results[(results["task"] == task) & (results["arm"] == arm)]
    means = sub.groupby("seed")["score"].mean().sort_index()
    return ", ".join(f"s{seed}: {100 * v:.1f}" for seed, v in means.items())


def variance_split(results: pd.DataFrame, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Per paired difference of one task: the bootstrap variance split into seeds, problems, seed x problem and
    the part from sampling (llamafactory_ext/study/variance.py)."""
    problems = sorted(results["problem"].unique())
    k = (results.groupby("arm")["samples"].max() if "samples" in results else pd.Series(dtype=int)).to_dict()
    return {(a, b): decompose(score_matrix(results, a, problems), score_matrix(results, b, problems),
                              int(k.get(a, 1)), int(k.get(b, 1))) for a, b in pairs}


def _split_line(a: str, b: str, c) -> str:
    sh = c.shares()
    return (f"- {a} − {b}: of the interval's variance, seeds {100 * sh['seeds']:.0f}%, problems "
            f"{100 * sh['problems']:.0f}%, seed × problem {100 * sh['seed x problem']:.0f}%; within-problem sampling "
            f"({c.samples} sample(s) per problem) accounts for {100 * sh['of which sampling']:.0f}% of the total.")


def write_report(cfg: StudyConfig, steps: list[Step], results: pd.DataFrame, wall_seconds: float | None) -> dict[str, Any]:
    out = cfg.report_dir
    out.mkdir(parents=True, exist_ok=True)
    arms = [a.name for a in cfg.arms]
    pairs = comparisons(cfg, arms)
    stats_by_task = {}
    for task in sorted(results["task"].unique()):
        sub = results[results["task"] == task]
        stats_by_task[task] = bootstrap(sub, pairs, cfg.analysis.draws, cfg.analysis.confidence, cfg.analysis.seed)
    records = [json.loads(s.record.read_text(encoding="utf-8")) for s in steps if s.record.is_file()]
    step_seconds = sum(r["seconds"] for r in records)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    own_sizes = "".join(f" ({a.name}: {a.subset_size:,})" for a in cfg.trained_arms if a.subset_size)
    lines = [f"# Study `{cfg.name}`", "",
             f"{now} on {machine()}. Steps took {step_seconds / 60:,.1f} min of compute in all"
             + (f"; this run's wall time {wall_seconds / 60:,.1f} min." if wall_seconds is not None else "."), "",
             f"Model `{cfg.model}` (template `{cfg.template}`, cutoff {cfg.cutoff_len}); pool "
             f"`{cfg.pool.dataset or 'procedural demo pool ' + json.dumps(cfg.pool.demo_data)}`; subsets of "
             f"{cfg.subset_size:,} rows{own_sizes}; training recipe `{cfg.train.recipe}` "
             f"{json.dumps(cfg.train.overrides)}; "
             f"seeds {cfg.seeds} (each seed: one subset draw and one training run per arm); evaluation "
             f"`{cfg.eval.suite}` {json.dumps({k: v for k, v in vars(cfg.eval).items() if v is not None and k != 'suite'})}.",
             "",
             f"Intervals: {100 * cfg.analysis.confidence:g}% percentile intervals of {cfg.analysis.draws:,} crossed "
             "bootstrap draws that resample problems and seeds together; differences are paired (same problems, "
             f"same seeds). A difference is *resolved* when its interval's half-width is at most "
             f"{cfg.analysis.resolution:g} points (docs in `llamafactory_ext/study/stats.py`).", ""]
    summary: dict[str, Any] = {"study": cfg.name, "date": now, "machine": machine(), "seeds": cfg.seeds,
                               "step_seconds": step_seconds, "wall_seconds": wall_seconds, "tasks": {}}
    for task, st in stats_by_task.items():
        lines += [f"## {task} ({st.problems:,} problems)", "", "| arm | runs | accuracy % | 95% CI | per seed |",
                  "|---|---:|---:|---|---|"]
        for arm, iv in st.arms.items():
            lines.append(f"| {arm} | {st.replicates[arm]} | {iv.estimate:.1f} | [{iv.low:.1f}, {iv.high:.1f}] | "
                         f"{_per_seed(results, task, arm)} |")
        lines += ["", f"| paired difference | points | 95% CI | half-width | interval excludes 0 | resolved (half-width "
                  f"≤ {cfg.analysis.resolution:g}) |", "|---|---:|---|---:|---|---|"]
        for (a, b), iv in st.differences.items():
            ok = iv.half_width <= cfg.analysis.resolution
            lines.append(f"| {a} − {b} | {iv.estimate:+.1f} | [{iv.low:+.1f}, {iv.high:+.1f}] | {iv.half_width:.1f} | "
                         f"{'yes' if iv.low > 0 or iv.high < 0 else 'no'} | {'yes' if ok else 'no'} |")
        lines += [""] + [f"- {verdict(iv, cfg.analysis.resolution, a, b)}" for (a, b), iv in st.differences.items()]
        split = variance_split(results[results["task"] == task], list(st.differences))
        lines += ["", "Where the width comes from (exact split of the bootstrap variance, "
                  "`llamafactory_ext/study/variance.py`):", ""]
        lines += [_split_line(a, b, c) for (a, b), c in split.items()]
        lines.append("")
        summary["tasks"][task] = {
            "problems": st.problems, "replicates": st.replicates,
            "arms": {a: vars(iv) | {"half_width": iv.half_width} for a, iv in st.arms.items()},
            "differences": {f"{a} - {b}": vars(iv) | {"half_width": iv.half_width,
                                                      "resolved": iv.half_width <= cfg.analysis.resolution,
                                                      "variance": split[(a, b)].as_dict()}
                            for (a, b), iv in st.differences.items()},
        }
    comp_lines, summary["composition"] = composition_section(steps)
    lines += comp_lines
    plot(stats_by_task, cfg, out / "arms.png")
    lines += ["![arms](arms.png)", "", "## How these numbers were made", "",
              "Every step, in order (each ran once; its folder holds `log.txt` and `step.json`):", "", "```"]
    lines += [f"# {r['label']} ({r['seconds']:,.0f} s)\n{r['command']}" for r in records]
    lines += ["```", "", "Configuration as run: [`study.yaml`](study.yaml); per-problem scores: "
              "[`per_problem.csv`](per_problem.csv).", ""]
    shutil.copyfile(cfg.source, out / "study.yaml")
    with atomic_path(out / "per_problem.csv") as tmp:
        results.to_csv(tmp, index=False)
    write_text_atomic(out / "report.md", "\n".join(lines))
    write_study_html(cfg, steps, stats_by_task, results, out)
    write_json_atomic(out / "summary.json", summary)
    return summary
