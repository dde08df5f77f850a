"""How many `data-select verify` verdicts a newer math-verify changes, and whether each change is a fix.

``data-select verify`` grades a response's final answer against a reference with math-verify, through
:class:`data_selection.verify.mathcheck.MathChecker` (its parse, its reference wrapping, its timeouts). The
project environment holds math-verify 0.5.2 (lighteval 0.13 pins latex2sympy2_extended 1.0.6); this script grades
the same (reference, final answer) pairs with MathChecker under each interpreter given, each with its own
math-verify, and compares the verdicts pair by pair.

Pairs:

* the demo pool (``data-select make-demo-data``): each response's final answer as verify extracts it
  (:func:`data_selection.verify.answers.final_answer`) against the row's ``answer``;
* AceReason-style answers written here (:func:`written_pairs`): fractions, intervals, ``x = 3`` against ``3``,
  units, several answers, percentages, radicals, each with the verdict a grader should give (``expect``), so a
  changed verdict is classed as a fix (now agrees with ``expect``) or a regression.

Usage (the first interpreter is the baseline; each needs math-verify, and the repository on PYTHONPATH, which
this script sets)::

    python3 -m venv /tmp/mv09 && /tmp/mv09/bin/pip install math-verify==0.9.0
    .venv/bin/data-select make-demo-data --out_dir /tmp/demo
    .venv/bin/python bench/mathverify_versions.py --pool /tmp/demo/pool.jsonl \\
        --python .venv/bin/python --python /tmp/mv09/bin/python [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_selection.verify.answers import final_answer  # noqa: E402
from data_selection.verify.mathcheck import MathChecker, checker_label  # noqa: E402
from data_selection.verify.timeout import CallTimeout  # noqa: E402

# ------------------------------------------------------------------------------------------------ the pairs


def _num(x: float) -> str:
    return f"{x:g}"


def written_pairs() -> list[dict]:
    """(category, reference, answer, expect): AceReason-style references (bare values, as the dataset's answer
    column holds them) and final answers written the ways R1 traces write them."""
    out: list[dict] = []

    def add(cat, ref, ans, expect):
        out.append({"category": cat, "reference": ref, "answer": ans, "expect": expect})

    for p, q in [(1, 2), (3, 4), (5, 8), (7, 20), (9, 16), (3, 5), (1, 8), (11, 4), (13, 10), (5, 2)]:
        add("fraction", f"\\frac{{{p}}}{{{q}}}", _num(p / q), True)
        add("fraction", f"{p}/{q}", f"\\frac{{{p}}}{{{q}}}", True)
        add("fraction", f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}", True)
        add("fraction", f"\\frac{{{p}}}{{{q}}}", f"\\frac{{{2 * p}}}{{{2 * q}}}", True)
        add("fraction", f"-\\frac{{{p}}}{{{q}}}", f"-{_num(p / q)}", True)
        add("fraction", f"\\frac{{{p}}}{{{q}}}", f"\\frac{{{q}}}{{{p}}}", False)
        add("fraction", f"\\frac{{{p}}}{{{q}}}", f"\\frac{{{p + 1}}}{{{q}}}", False)
    for p, q in [(1, 3), (2, 3), (1, 7), (5, 6)]:
        add("fraction", f"\\frac{{{p}}}{{{q}}}", f"{p / q:.3f}", False)  # rounded: not the exact value
        add("fraction", f"\\frac{{{p}}}{{{q}}}", f"{p}/{q}", True)
    add("fraction", "\\frac{5}{2}", "2\\frac{1}{2}", True)  # a mixed number
    add("fraction", "\\frac{7}{3}", "2\\frac{1}{3}", True)

    for a, b in [(1, 3), (0, 5), (-2, 4), (-7, -1), (2, 9)]:
        add("interval", f"[{a}, {b})", f"[{a},{b})", True)
        add("interval", f"[{a}, {b})", f"({a}, {b}]", False)
        add("interval", f"({a}, {b})", f"{a} < x < {b}", True)
        add("interval", f"[{a}, {b}]", f"{a} \\le x \\le {b}", True)
        add("interval", f"({a}, \\infty)", f"x > {a}", True)
        add("interval", f"(-\\infty, {b}]", f"x \\leq {b}", True)
        add("interval", f"(-\\infty, {a}) \\cup ({b}, \\infty)", f"(-\\infty,{a})\\cup({b},\\infty)", True)
        add("interval", f"(-\\infty, {a}) \\cup ({b}, \\infty)", f"({a}, {b})", False)

    for v, var in [(3, "x"), (-2, "k"), (7, "n"), (12, "a"), (0, "t"), (15, "y"), (4, "m"), (-5, "b")]:
        add("equation", str(v), f"{var} = {v}", True)
        add("equation", str(v), f"{var}={v}", True)
        add("equation", f"{var} = {v}", str(v), True)
        add("equation", str(v), f"{var} = {v + 1}", False)
        add("equation", f"\\frac{{{v}}}{{2}}", f"{var} = \\frac{{{v}}}{{2}}", True)
    add("equation", "2x + 1", "y = 2x + 1", True)
    add("equation", "y = 2x + 1", "2x+1", True)
    add("equation", "x^2 - 1", "f(x) = x^2 - 1", True)
    add("equation", "2x + 1", "y = 2x + 3", False)

    for v, unit in [(5, "\\text{ cm}"), (12, "\\text{ meters}"), (30, "^\\circ"), (45, "^{\\circ}"), (8, "\\text{ km}"),
                    (6, "\\text{ cm}^2"), (20, "\\text{ minutes}"), (3, "\\text{ hours}"), (100, "\\text{ kg}")]:
        add("unit", str(v), f"{v}{unit}", True)
        add("unit", f"{v}{unit}", str(v), True)
        add("unit", str(v), f"{v + 1}{unit}", False)
    for v in (12, 250, 7):
        add("unit", str(v), f"\\${v}", True)
        add("unit", str(v), f"{v} \\text{{ dollars}}", True)
        add("unit", str(v), f"\\${v + 2}", False)
    for v in (50, 25, 12.5):
        add("percent", f"{_num(v)}\\%", _num(v), True)
        add("percent", _num(v), f"{_num(v)}\\%", True)
        add("percent", f"{_num(v)}\\%", _num(v + 5), False)

    for a, b in [(1, 2), (-3, 4), (0, 5), (2, 7), (-1, 1)]:
        add("multiple", f"{a}, {b}", f"{b}, {a}", True)
        add("multiple", f"{a}, {b}", f"x = {a} \\text{{ or }} x = {b}", True)
        add("multiple", f"{a}, {b}", f"x = {a}, x = {b}", True)
        add("multiple", f"{a}, {b}", f"\\{{{a}, {b}\\}}", True)
        add("multiple", f"{a}, {b}", str(a), False)
        add("multiple", f"{a}, {b}, {b + 1}", f"{a}, {b}", False)
    for v in (2, 3, 5):
        add("multiple", f"\\pm {v}", f"{v}, -{v}", True)
        add("multiple", f"-{v}, {v}", f"\\pm{v}", True)
        add("multiple", f"\\pm {v}", f"{v}", False)
    add("multiple", "(1, 2)", "(2, 1)", False)  # an ordered pair
    add("multiple", "(1, 2)", "(1,2)", True)
    add("multiple", "x=1, y=2", "(1, 2)", True)

    for ref, ans, expect in [("2\\sqrt{2}", "\\sqrt{8}", True), ("3\\sqrt{3}", "\\sqrt{27}", True),
                             ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True), ("\\sqrt{2}", "1.414", False),
                             ("\\frac{\\pi}{2}", "\\pi/2", True), ("2\\pi", "6.28", False), ("\\pi", "\\pi", True),
                             ("1000", "1,000", True), ("10^3", "1000", True), ("1.5 \\times 10^{3}", "1500", True),
                             ("e^2", "e^{2}", True), ("\\infty", "\\infty", True), ("\\text{(B)}", "B", True),
                             ("B", "\\text{B}", True), ("\\text{(C)}", "D", False), ("0", "0.0", True),
                             ("-0.25", "-\\frac{1}{4}", True), ("\\log_2 8", "3", True), ("\\binom{5}{2}", "10", True),
                             ("5!", "120", True), ("i", "i", True), ("1 + i", "i + 1", True), ("2", "\\sqrt{4}", True),
                             ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
                             ("\\frac{3}{2}", "1.5", True), ("12", "12.0", True), ("0.1", "\\frac{1}{10}", True),
                             ("2^{10}", "1024", True), ("\\sqrt[3]{8}", "2", True), ("4", "2^2", True)]:
        add("other", ref, ans, expect)
    return out


def demo_pairs(pool: Path) -> list[dict]:
    """The demo pool's (answer column, extracted final answer) pairs, as verify reads them."""
    out = []
    for line in pool.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        fa = final_answer(row["output"])
        if fa is None or not str(row.get("answer", "")).strip():
            continue
        out.append({"category": f"demo:{row.get('source', '?')}", "reference": str(row["answer"]),
                    "answer": fa.boxed or fa.candidate, "boxed": bool(fa.boxed),
                    "expect": not row.get("corrupted", False) and row.get("response_kind") == "correct"})
    return out


# ------------------------------------------------------------------------------------------- one interpreter


def grade(pairs_path: Path) -> dict:
    """Verdicts of this interpreter's math-verify through MathChecker, as verify's judge compares them."""
    checker = MathChecker(timeout=5.0)
    verdicts = []
    for p in (json.loads(line) for line in pairs_path.read_text(encoding="utf-8").splitlines()):
        try:
            gold = checker.parse_reference(p["reference"])
            ans = checker.parse("\\boxed{" + p["answer"] + "}" if p.get("boxed", True) else p["answer"])
            verdicts.append(bool(gold) and bool(ans) and checker.equal(gold, ans))
        except CallTimeout:
            verdicts.append(None)
    versions = {d: importlib.metadata.version(d) for d in ("math-verify", "latex2sympy2_extended", "sympy")}
    return {"python": sys.executable, "versions": versions, "checker": checker_label(), "verdicts": verdicts}


# ------------------------------------------------------------------------------------------------- compare


def run_interpreter(python: str, pairs_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([python, str(Path(__file__).resolve()), "--grade", str(pairs_path)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(pairs: list[dict], base: dict, new: dict) -> dict:
    changed = [(p, a, b) for p, a, b in zip(pairs, base["verdicts"], new["verdicts"]) if a != b]
    by_cat: Counter = Counter()
    fixes = regressions = 0
    rows = []
    for p, a, b in changed:
        kind = "fix" if b == p["expect"] else ("regression" if a == p["expect"] else "other")
        fixes += kind == "fix"
        regressions += kind == "regression"
        by_cat[(p["category"].split(":")[0], kind)] += 1
        rows.append({**p, "base": a, "new": b, "kind": kind})

    def agree(v):
        return sum(x == p["expect"] for p, x in zip(pairs, v))

    return {"pairs": len(pairs), "changed": len(changed), "fixes": fixes, "regressions": regressions,
            "agree_with_expected": {"base": agree(base["verdicts"]), "new": agree(new["verdicts"])},
            "by_category": {f"{c}/{k}": n for (c, k), n in sorted(by_cat.items())}, "changes": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", help="the demo pool (data-select make-demo-data), pool.jsonl")
    ap.add_argument("--python", action="append", default=[], help="interpreters to compare (first = baseline)")
    ap.add_argument("--json", help="write the whole comparison here")
    ap.add_argument("--grade", help=argparse.SUPPRESS)  # worker mode: grade a pairs file, print JSON
    args = ap.parse_args(argv)
    if args.grade:
        print(json.dumps(grade(Path(args.grade))))
        return 0
    pythons = args.python or [sys.executable]
    if len(pythons) < 2:
        ap.error("give two interpreters: --python BASELINE --python NEWER")
    results = {}
    for name, pairs in (("written", written_pairs()), ("demo", demo_pairs(Path(args.pool)) if args.pool else [])):
        if not pairs:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pairs.jsonl"
            path.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
            graded = [run_interpreter(py, path) for py in pythons[:2]]
        cmp = compare(pairs, *graded)
        cmp["versions"] = [g["versions"] for g in graded]
        results[name] = cmp
        print(f"{name}: {cmp['pairs']} pairs; math-verify {graded[0]['versions']['math-verify']} -> "
              f"{graded[1]['versions']['math-verify']}: {cmp['changed']} verdicts changed ({cmp['fixes']} fixes, "
              f"{cmp['regressions']} regressions); agree with the expected verdict: "
              f"{cmp['agree_with_expected']['base']} -> {cmp['agree_with_expected']['new']}")
        for key, n in cmp["by_category"].items():
            print(f"  {key}: {n}")
        for r in cmp["changes"][:60]:
            print(f"    [{r['kind']}] ref {r['reference']!r} vs {r['answer']!r}: {r['base']} -> {r['new']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
