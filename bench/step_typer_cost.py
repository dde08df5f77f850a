"""Cost of ``data-select prune-steps --step_typer MODEL`` per 1K typed steps, against the marker rules (baseline).

Steps are synthetic and R1-shaped, all *unmarked* (no phrase of the default lists at their start or after a
lead-in, so the typer is asked about every one): half progressive ("The product of 37 and 52 is 1924. …"), half
checks or corrections without an announcing marker ("Recomputing 37 × 52 gives 1924 again. …"), each with the
step before it as context, exactly as :class:`data_selection.transforms.step_typer.StepTyper` asks. Each step is
typed once by the marker rules and once by the model through LLaMA-Factory's ``ChatModel`` (greedy, at most
8 new tokens); per-step wall times are recorded and their medians reported, with the prompt and answer tokens
per step (machine-independent) and the share of the model's labels that match the synthetic truth (a sanity
figure, not an accuracy study). Cost per 1K steps = median seconds per step × 1000.

Run it small on a shared CPU: ``flock /tmp/cpu.lock python bench/step_typer_cost.py --steps 50`` (SmolLM2-135M
embedded in the repo by default; ``--model PATH --template NAME`` for another instruct model).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_selection.embedded import prepare_smollm2  # noqa: E402
from data_selection.transforms.step_typer import load_chat, parse_answer, prompt_for  # noqa: E402
from data_selection.transforms.steps import DEFAULT_PHRASES, MarkerTable  # noqa: E402

PROGRESSIVE = "The product of {a} and {b} is {p}. Adding {a} to it gives {q}. This is the running total."
CHECK = "Recomputing {a} times {b} gives {p} again. The running total {q} is unchanged. It holds."
FIX = "The product of {a} and {b} was misread earlier as {r}; it is {p}. The running total becomes {q}."


def make_steps(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(previous step, step, true type) triples."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        kw = {"a": a, "b": b, "p": a * b, "q": a * b + a, "r": a * b + 10}
        prev = PROGRESSIVE.format(**kw)
        tpl, truth = [(PROGRESSIVE, "progressive"), (CHECK, "verification"), (PROGRESSIVE, "progressive"),
                      (FIX, "error_correction")][i % 4]
        out.append((prev, tpl.format(**kw), truth))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--model", default="", help="instruct model folder (default: the embedded SmolLM2-135M)")
    ap.add_argument("--template", default="smollm2")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model
    if not model:
        model = str(prepare_smollm2())
    markers = MarkerTable(DEFAULT_PHRASES)
    steps = make_steps(args.steps)
    assert all(markers.match(s)[1] is None for _, s, _ in steps), "a synthetic step carries a marker"

    t_marker = []
    for _, step, _ in steps:
        t0 = time.perf_counter()
        markers.match(step)
        t_marker.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    chat = load_chat(model, args.template, dtype="float32")
    load_s = time.perf_counter() - t0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    chat(prompt_for(*steps[0][:2]))  # warm-up, not timed
    t_model, prompt_tokens, answer_tokens, agree, labels = [], [], [], 0, Counter()
    for prev, step, truth in steps:
        prompt = prompt_for(prev, step)
        t0 = time.perf_counter()
        answer = chat(prompt)
        t_model.append(time.perf_counter() - t0)
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        prompt_tokens.append(len(tok(text, add_special_tokens=False)["input_ids"]))
        answer_tokens.append(len(tok(answer, add_special_tokens=False)["input_ids"]))
        labels[str(parse_answer(answer))] += 1
        agree += parse_answer(answer) == truth

    med_m, med_k = statistics.median(t_model), statistics.median(t_marker)
    print(f"step typer {Path(model).name} ({args.template}), {len(steps)} unmarked steps, torch threads "
          f"{torch.get_num_threads()}, model load {load_s:.1f} s (once per rank)")
    print(f"  marker rules (baseline): median {med_k * 1e6:,.1f} us/step = {med_k * 1000:,.4f} s per 1K steps")
    print(f"  model typer:             median {med_m:,.3f} s/step = {med_m * 1000:,.0f} s per 1K steps "
          f"({med_m * 1000 / 60:,.1f} min); ratio to the marker rules {med_m / med_k:,.0f}x")
    print(f"  tokens per step: prompt median {statistics.median(prompt_tokens):,.0f}, answer median "
          f"{statistics.median(answer_tokens):,.0f} (<= 8)")
    print(f"  labels matching the synthetic truth: {agree}/{len(steps)}; labels given: "
          + ", ".join(f"{k} {v}" for k, v in labels.most_common()) + " (None: no category named)")


if __name__ == "__main__":
    main()
