"""Procedural math pool in AceReason-1.1-SFT format with several responses per problem, plus a held-out eval set.

The real pool (nvidia/AceReason-1.1-SFT) has columns ``category``, ``source``, ``input`` and ``output``, where
``output`` is an R1 trace ``<think>…</think>`` followed by a final answer in ``\\boxed{}``, and holds several
responses to many of its prompts. This module writes rows of the same shape, generated from a seed, so the
whole pipeline runs offline on a CPU:

* five sources of small-number problems (``arithmetic``, ``order_of_ops``, ``multiplication``,
  ``linear_equation``, ``word_problem``), each one or two single-digit facts, so that a short fine-tune of the
  135M demo model can learn to *use* what it knows (write the steps, stop, box the answer): the base model
  answers 30% of them in free form, after 12 steps on 96 clean traces 58% (docs/demo_diagnosis.md). Each
  problem (``query_id``, reference ``answer``) gets ``responses_per_problem`` responses, all different in
  wording (an opening sentence, the optional paragraphs below), so n rows are n distinct rows;
* traces are paragraph-structured: paragraphs separated by a blank line, each of at least three sentences;
  a share of correct traces carries a verification paragraph ("Wait, let me check …") and an
  alternative-method paragraph ("Alternatively, …"), the functional steps step pruning looks for;
* responses differ the way a teacher's samples do (column ``response_kind``): on a "contested" problem
  (harder sources are contested more often) one or two responses fail, with a ``wrong`` final answer or
  ``truncated`` mid-thought (no ``</think>``, no answer); on a few problems every response fails. Passing
  responses are mostly ``correct``, some ``repetitive`` (a short decoding loop before the answer), ``scrambled``
  (words shuffled, the "noisy" tail a loss band cuts off) or ``no_think`` (an answer without reasoning).
  So pass rates, their coefficient of variation and every quality filter of ``--strategy pass-cv`` have
  something to act on. ``corrupted`` is true for every response that is not ``correct``;
* the evaluation set (``problem``, ``answer``, ``source``) holds problems that never occur in the pool.

Everything is deterministic for a given seed. Traces stay short (median about 60 SmolLM2 tokens) so the
demo model trains at cutoff 512 and answers within 128 new tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_selection.atomic import write_jsonl_atomic
from data_selection.options.make_demo_data import DemoDataConfig

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
KINDS = ("correct", "wrong", "truncated", "repetitive", "scrambled", "no_think")
# how often a source's problems are contested, relative to --contested_rate (mean 1)
DIFFICULTY = {"arithmetic": 0.75, "order_of_ops": 1.2, "multiplication": 1.1, "linear_equation": 1.05,
              "word_problem": 0.9}
OPENERS = ("", "Let me work this out.", "Let's think step by step.", "This takes one or two small steps.")
"""First sentences a correct trace may start with, so the responses to one problem differ in wording."""

Paragraphs = list[list[str]]


@dataclass
class Problem:
    source: str
    question: str
    answer: int
    reasoning: Callable[[int], Paragraphs]  # the think paragraphs, ending in the given final value
    check: str  # verification sentence for the correct answer
    alternative: str  # another way to the correct answer

    def paragraphs(self, value: int, verify: bool = False, alternative: bool = False, opener: str = ""
                   ) -> Paragraphs:
        paras = self.reasoning(value)
        if opener:
            paras[0].insert(0, opener)
        if alternative:
            paras.append([f"Alternatively, {self.alternative}", f"This also gives {self.answer}.",
                          "Both methods agree."])
        if verify:
            paras.append(["Wait, let me check the result.", self.check, f"So {self.answer} is right."])
        return paras

    def trace(self, value: int | None = None, verify: bool = False, alternative: bool = False, opener: str = ""
              ) -> str:
        value = self.answer if value is None else value
        return render(self.paragraphs(value, verify, alternative, opener), value)


def render(paras: Paragraphs, value: int | None) -> str:
    think = "\n\n".join(" ".join(p) for p in paras)
    if value is None:
        return f"<think>\n{think}"
    return f"<think>\n{think}\n</think>\n\nThe final answer is \\boxed{{{value}}}."


def _arithmetic(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 25), rng.randint(2, 25)
    if rng.random() < 0.5:
        return Problem("arithmetic", f"What is {a} + {b}?", a + b,
                       lambda v: [[f"We need to add {a} and {b}.", f"{a} + {b} = {v}.", f"So the sum is {v}."]],
                       f"{a + b} - {b} = {a}, which matches.", f"add in the other order: {b} + {a} = {a + b}.")
    a, b = max(a, b), min(a, b)
    return Problem("arithmetic", f"What is {a} - {b}?", a - b,
                   lambda v: [[f"We need to subtract {b} from {a}.", f"{a} - {b} = {v}.",
                               f"So the difference is {v}."]],
                   f"{a - b} + {b} = {a}, which matches.", f"count up from {b} to {a}: that takes {a - b}.")


def _order_of_ops(rng: random.Random) -> Problem:
    a, b, c = rng.randint(1, 30), rng.randint(2, 6), rng.randint(2, 6)
    prod = b * c
    return Problem(
        "order_of_ops", f"Compute {a} + {b} * {c}.", a + prod,
        lambda v: [[f"Multiplication comes before addition, so first {b} * {c} = {prod}.", f"Then {a} + {prod} = {v}.",
                    f"So the value is {v}."]],
        f"{a + prod} - {prod} = {a}, which matches.", f"{c} * {b} = {prod} too, and {prod} + {a} = {a + prod}.",
    )


def _multiplication(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 30), rng.randint(2, 10)
    question = f"What is {a} * {b}?" if rng.random() < 0.5 else f"What is {a} times {b}?"
    return Problem(
        "multiplication", question, a * b,
        lambda v: [[f"We need to multiply {a} by {b}.", f"{a} * {b} = {v}.", f"So the product is {v}."]],
        f"{a * b} / {b} = {a}, which matches.", f"multiply in the other order: {b} * {a} = {a * b}.",
    )


def _linear_equation(rng: random.Random) -> Problem:
    x, b = rng.randint(1, 20), rng.randint(1, 20)
    if rng.random() < 0.5 and x > b:
        return Problem(
            "linear_equation", f"Solve for x: x - {b} = {x - b}.", x,
            lambda v: [[f"We need x with x - {b} = {x - b}.", f"Add {b} to both sides: x = {x - b} + {b} = {v}.",
                        f"So x = {v}."]],
            f"{x} - {b} = {x - b}, which matches.", f"count up from {x - b} by {b}: that reaches {x}.",
        )
    c = x + b
    return Problem(
        "linear_equation", f"Solve for x: x + {b} = {c}.", x,
        lambda v: [[f"We need x with x + {b} = {c}.", f"Subtract {b} from both sides: x = {c} - {b} = {v}.",
                    f"So x = {v}."]],
        f"{x} + {b} = {c}, which matches.", f"count up from {b} to {c}: that takes {x}.",
    )


_NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
_ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards"]


def _word_problem(rng: random.Random) -> Problem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    boxes, per_box = rng.randint(2, 9), rng.randint(2, 9)
    total = boxes * per_box
    q = f"{name} has {boxes} boxes with {per_box} {item} in each box. How many {item} does {name} have?"
    return Problem(
        "word_problem", q, total,
        lambda v: [[f"There are {boxes} boxes of {per_box} {item}.", f"{boxes} * {per_box} = {v}.",
                    f"So {name} has {v} {item}."]],
        f"{total} / {boxes} = {per_box} {item} per box, which matches.",
        f"add {per_box} {item} {boxes} times: that makes {total}.",
    )


GENERATORS = {
    "arithmetic": _arithmetic,
    "order_of_ops": _order_of_ops,
    "multiplication": _multiplication,
    "linear_equation": _linear_equation,
    "word_problem": _word_problem,
}


def _wrong(rng: random.Random, answer: int) -> int:
    return answer + rng.choice([-1, 1]) * rng.randint(1, 9)


def _response(rng: random.Random, prob: Problem, kind: str, cfg: DemoDataConfig) -> str:
    if kind == "wrong":
        return prob.trace(_wrong(rng, prob.answer))
    if kind == "truncated":  # cut inside the reasoning: no </think>, no answer
        words = render(prob.paragraphs(prob.answer), None).split(" ")
        return " ".join(words[: max(3, int(len(words) * rng.uniform(0.4, 0.8)))])
    if kind == "repetitive":
        paras = prob.paragraphs(prob.answer)
        # a short loop, 30-33 times: long enough that DeepDistill's filter (a 20-word string more than 20 times)
        # catches it, short enough (~130 tokens, not 300) that a few looping rows stay a tail of the loss
        paras[-1] = paras[-1] + [f"So {prob.answer}."] * rng.randint(30, 33)
        return render(paras, prob.answer)
    if kind == "scrambled":
        paras = [[" ".join(rng.sample(s.split(), len(s.split()))) for s in p] for p in prob.paragraphs(prob.answer)]
        rng.shuffle(paras[0])
        return render(paras, prob.answer)
    if kind == "no_think":
        return f"The final answer is \\boxed{{{prob.answer}}}."
    return prob.trace(verify=rng.random() < cfg.verify_rate, alternative=rng.random() < cfg.alternative_rate,
                      opener=rng.choice(OPENERS))


def _kinds(rng: random.Random, source: str, k: int, cfg: DemoDataConfig) -> list[str]:
    """Response kinds of one problem: how many fail (none, one or two, or all), and how the rest pass."""
    u = rng.random()
    if u < cfg.all_fail_rate:
        failing = k
    elif k > 1 and u < cfg.all_fail_rate + min(0.95, cfg.contested_rate * DIFFICULTY[source]):
        failing = min(k - 1, 1 if rng.random() < 0.85 else 2)
    else:
        failing = 0
    kinds = []
    for i in range(k):
        if i < failing:
            kinds.append("wrong" if rng.random() < 0.75 else "truncated")
            continue
        v = rng.random()
        edges = (cfg.noise_rate, cfg.noise_rate + cfg.repetitive_rate,
                 cfg.noise_rate + cfg.repetitive_rate + cfg.answer_only_rate)
        kinds.append("scrambled" if v < edges[0] else "repetitive" if v < edges[1] else
                     "no_think" if v < edges[2] else "correct")
    rng.shuffle(kinds)
    return kinds


def generate(cfg: DemoDataConfig) -> tuple[list[dict], list[dict]]:
    """Return (pool rows, eval rows): disjoint by question text, deterministic for ``cfg.seed``."""
    if cfg.responses_per_problem < 1:
        raise ValueError("responses_per_problem must be at least 1")
    rng = random.Random(cfg.seed)
    sources = list(GENERATORS)
    seen: set[str] = set()

    def fresh(source: str) -> Problem:
        for _ in range(1000):
            p = GENERATORS[source](rng)
            if p.question not in seen:
                seen.add(p.question)
                return p
        raise RuntimeError(f"generator {source!r} ran out of distinct problems")

    evals = []
    for i in range(cfg.eval_size):
        p = fresh(sources[i % len(sources)])
        evals.append({"id": f"eval-{i:05d}", "problem": p.question, "answer": str(p.answer), "source": p.source})
    pool: list[dict] = []
    q = 0
    while len(pool) < cfg.pool_size:
        p = fresh(rng.choice(sources))
        k = min(cfg.responses_per_problem, cfg.pool_size - len(pool))
        outputs: set[str] = set()
        for kind in _kinds(rng, p.source, k, cfg):
            output = _response(rng, p, kind, cfg)
            for _ in range(20):  # responses to one problem differ, as a teacher's samples do (no duplicated rows)
                if output not in outputs:
                    break
                output = _response(rng, p, kind, cfg)
            outputs.add(output)
            pool.append({
                "category": "math",
                "source": p.source,
                "input": p.question,
                "output": output,
                "answer": str(p.answer),
                "corrupted": kind != "correct",
                "query_id": f"q{q:05d}",
                "response_kind": kind,
            })
        q += 1
    return pool, evals


def write_demo_data(cfg: DemoDataConfig) -> dict[str, str]:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool, evals = generate(cfg)
    paths = {"pool": out / "pool.jsonl", "eval": out / "eval.jsonl"}
    write_jsonl_atomic(paths["pool"], pool)
    write_jsonl_atomic(paths["eval"], evals)
    return {k: str(v) for k, v in paths.items()}
