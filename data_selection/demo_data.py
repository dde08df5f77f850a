"""Procedural math pool in AceReason-1.1-SFT format, plus a disjoint held-out evaluation set.

The real pool (nvidia/AceReason-1.1-SFT) has columns ``category``, ``source``, ``input`` and ``output``, where
``output`` is an R1 trace ``<think>…</think>`` followed by a final answer in ``\\boxed{}``. This module writes
rows of the same shape, generated from a seed, so the whole pipeline can run offline on a CPU:

* five sources of increasing difficulty and length (``arithmetic``, ``order_of_ops``, ``long_multiplication``,
  ``linear_equation``, ``word_problem``);
* some traces carry a "Wait, let me double-check" verification detour, so lengths have a long tail;
* a small share of rows (``noise_rate``, default 5%) is deliberately corrupted (wrong final answer or
  shuffled steps), the "too hard / noisy" tail that the ZPD band is meant to cut off. Each row says so in
  its ``corrupted`` column, so reports can show where the noise landed;
* the evaluation set (``problem``, ``answer``, ``source``) holds problems that never occur in the pool.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from data_selection.atomic import write_jsonl_atomic

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass
class Problem:
    source: str
    question: str
    steps: list[str]
    answer: int

    def trace(self, rng: random.Random, verify: bool) -> str:
        steps = list(self.steps)
        if verify:
            steps.append(f"Wait, let me double-check that. Going through it again gives {self.answer}, so it is right.")
        body = "\n".join(steps)
        return f"<think>\n{body}\n</think>\n\nThe final answer is \\boxed{{{self.answer}}}."


def _arithmetic(rng: random.Random) -> Problem:
    digits = rng.choice([1, 2, 2, 3])
    a, b = rng.randint(10 ** (digits - 1), 10**digits - 1), rng.randint(10 ** (digits - 1), 10**digits - 1)
    if rng.random() < 0.5:
        return Problem("arithmetic", f"What is {a} + {b}?", [f"We need to add {a} and {b}.", f"{a} + {b} = {a + b}."], a + b)
    a, b = max(a, b), min(a, b)
    return Problem("arithmetic", f"What is {a} - {b}?", [f"We need to subtract {b} from {a}.", f"{a} - {b} = {a - b}."], a - b)


def _order_of_ops(rng: random.Random) -> Problem:
    a, b, c, d = (rng.randint(2, 20) for _ in range(4))
    prod = b * c
    inner = a + prod
    ans = inner - d
    steps = [
        f"First, multiplication comes before addition: {b} * {c} = {prod}.",
        f"Then {a} + {prod} = {inner}.",
        f"Finally {inner} - {d} = {ans}.",
    ]
    return Problem("order_of_ops", f"Compute {a} + {b} * {c} - {d}.", steps, ans)


def _long_multiplication(rng: random.Random) -> Problem:
    a = rng.randint(12, 999)
    b = rng.randint(12, 99)
    tens, ones = divmod(b, 10)
    p1, p2 = a * ones, a * tens * 10
    steps = [
        f"We need {a} * {b}. Split {b} into {tens * 10} + {ones}.",
        f"First, {a} * {ones} = {p1}.",
        f"Then, {a} * {tens * 10} = {p2}.",
        f"Therefore {a} * {b} = {p1} + {p2} = {p1 + p2}.",
    ]
    return Problem("long_multiplication", f"What is {a} * {b}?", steps, a * b)


def _linear_equation(rng: random.Random) -> Problem:
    x = rng.randint(-20, 30)
    a = rng.choice([i for i in range(-9, 10) if i not in (0, 1)])
    b = rng.randint(-50, 50)
    c = a * x + b
    sign = "+" if b >= 0 else "-"
    steps = [
        f"We need to solve {a}x {sign} {abs(b)} = {c} for x.",
        f"Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.",
        f"Divide both sides by {a}: x = {c - b} / {a} = {x}.",
        f"Check: {a} * {x} {sign} {abs(b)} = {c}. Correct.",
    ]
    return Problem("linear_equation", f"Solve for x: {a}x {sign} {abs(b)} = {c}.", steps, x)


_NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
_ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards"]


def _word_problem(rng: random.Random) -> Problem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    boxes, per_box, given, price = rng.randint(3, 15), rng.randint(4, 24), rng.randint(1, 30), rng.randint(2, 9)
    total = boxes * per_box
    given = min(given, total - 1)
    left = total - given
    ans = left * price
    q = (
        f"{name} buys {boxes} boxes of {item} with {per_box} {item} in each box, gives {given} {item} to a friend, "
        f"and sells the rest for {price} dollars each. How many dollars does {name} earn?"
    )
    steps = [
        f"First, find the total number of {item}: {boxes} * {per_box} = {total}.",
        f"Then subtract the ones given away: {total} - {given} = {left}.",
        f"Each is sold for {price} dollars, so the earnings are {left} * {price} = {ans}.",
        f"Therefore {name} earns {ans} dollars.",
    ]
    return Problem("word_problem", q, steps, ans)


GENERATORS = {
    "arithmetic": _arithmetic,
    "order_of_ops": _order_of_ops,
    "long_multiplication": _long_multiplication,
    "linear_equation": _linear_equation,
    "word_problem": _word_problem,
}


@dataclass
class DemoDataConfig:
    out_dir: str = field(default="data/demo", metadata={"help": "Folder that receives pool.jsonl and eval.jsonl."})
    pool_size: int = field(default=3000, metadata={"help": "Rows in the training pool."})
    eval_size: int = field(default=200, metadata={"help": "Problems in the held-out evaluation set."})
    noise_rate: float = field(
        default=0.05, metadata={"help": "Share of pool rows deliberately corrupted (wrong answer or shuffled steps)."}
    )
    verify_rate: float = field(
        default=0.3, metadata={"help": "Share of traces that carry an extra verification step (longer traces)."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed; same seed, same files."})


def _corrupt(rng: random.Random, prob: Problem) -> str:
    if rng.random() < 0.5:
        wrong = prob.answer + rng.choice([-1, 1]) * rng.randint(1, 9)
        return Problem(prob.source, prob.question, prob.steps, wrong).trace(rng, verify=False)
    steps = list(prob.steps)
    rng.shuffle(steps)
    scrambled = [" ".join(rng.sample(s.split(), len(s.split()))) for s in steps]
    return f"<think>\n{chr(10).join(scrambled)}\n</think>\n\nThe final answer is \\boxed{{{prob.answer}}}."


def generate(cfg: DemoDataConfig) -> tuple[list[dict], list[dict]]:
    """Return (pool rows, eval rows): disjoint by question text, deterministic for ``cfg.seed``."""
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
    pool = []
    for _ in range(cfg.pool_size):
        p = fresh(rng.choice(sources))
        corrupted = rng.random() < cfg.noise_rate
        output = _corrupt(rng, p) if corrupted else p.trace(rng, verify=rng.random() < cfg.verify_rate)
        pool.append(
            {
                "category": "math",
                "source": p.source,
                "input": p.question,
                "output": output,
                "answer": str(p.answer),
                "corrupted": corrupted,
            }
        )
    return pool, evals


def write_demo_data(cfg: DemoDataConfig) -> dict[str, str]:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool, evals = generate(cfg)
    paths = {"pool": out / "pool.jsonl", "eval": out / "eval.jsonl"}
    write_jsonl_atomic(paths["pool"], pool)
    write_jsonl_atomic(paths["eval"], evals)
    return {k: str(v) for k, v in paths.items()}


def cli_make_demo_data(cfg: DemoDataConfig) -> int:
    paths = write_demo_data(cfg)
    print(f"demo pool: {paths['pool']} ({cfg.pool_size} rows)\ndemo eval set: {paths['eval']} ({cfg.eval_size} rows)")
    return 0
