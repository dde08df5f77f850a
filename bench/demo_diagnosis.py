"""Why fine-tuning on the demo pool hurts the embedded SmolLM2-135M (issue 30): the measurements, reproducible.

Sub-commands (all offline, CPU; run from the repository root with the project's venv):

  pool      share of each response_kind, distinct rows and response lengths (SmolLM2 tokens) in a pool and in
            any subset files (data/demo_zpd.jsonl …); what deduplicating by (input, output) leaves
  template  the training text (LLaMA-Factory's smollm2 template) next to the evaluation text (the model's own
            chat template, as lighteval's accelerate backend applies it) for one row: are they the same?
  generate  greedy, batched generation of the first N held-out problems with a long cap, then scores each
            answer as if the cap had been 128, 192, 256 … tokens: hits of the cap without \\boxed{}, accuracy
  teach     the recipe, in-process (no LLaMA-Factory start-up): for each lr x epochs, full fine-tuning of the
            base model on a subset, then the in-format ceiling: for the first N held-out problems the model
            gets the gold trace in the pool's format up to where the final value is written ("… 876 + 530 = ")
            and completes it greedily (every earlier step given: an optimistic bound); with --gen G also a
            greedy generation of G problems at --max_new_tokens (accuracy, boxed, cap hits). --lrs '' = base
  details   the same reading of lighteval's details parquet written by `llamafactory-ext eval --out DIR`
  grid      the recipe grid through the project's own CLIs: `llamafactory-cli train yaml_recipes/demo_zpd.yaml`
            with key=value overrides (dataset, learning_rate, num_train_epochs, output_dir) on one subset file,
            then `llamafactory-ext eval --suite local:…` of each trained model and of the base model; prints
            one table (accuracy, arm - base with a paired 95% interval, cap hits). `--dry_run` prints the
            commands only. Commands, costs and results: docs/demo_diagnosis.md.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from data_selection import demo_data

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
KINDS = ("correct", "wrong", "truncated", "repetitive", "scrambled", "no_think")
CAPS = (128, 192, 256, 384, 512)
MODEL = os.path.expanduser("~/.cache/reasoning-data-select/models/SmolLM2-135M-Instruct")


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:5.1f}%" if n else "    -"


# ---------------------------------------------------------------- pool
def _kind_of(row: dict, by_output: dict[tuple[str, str], str]) -> str:
    if "response_kind" in row:
        return row["response_kind"]
    prompt = (row.get("instruction") or row.get("input") or "").strip()
    return by_output.get((prompt, row.get("output", "")), "?")


def cmd_pool(args: argparse.Namespace) -> int:
    tok = _tokenizer(args.model)
    pool = read_jsonl(args.pool)
    by_output = {(r["input"].strip(), r["output"]): r["response_kind"] for r in pool}
    print(f"{'file':28s} {'rows':>5s} {'distinct':>8s} " + " ".join(f"{k:>10s}" for k in KINDS)
          + f" {'tok med':>7s} {'p90':>5s} {'>128':>6s} {'max':>5s}")
    for path in [args.pool, *args.subsets]:
        rows = read_jsonl(path)
        kinds = collections.Counter(_kind_of(r, by_output) for r in rows)
        keys = [((r.get("instruction") or r.get("input") or "").strip(), r.get("output", "")) for r in rows]
        lens = sorted(len(tok(r["output"])["input_ids"]) + 1 for r in rows)  # +1: <|im_end|>
        n = len(rows)
        print(f"{Path(path).name[:28]:28s} {n:5d} {len(set(keys)):8d} "
              + " ".join(f"{kinds[k]:4d} {_pct(kinds[k], n)}" for k in KINDS)
              + f" {lens[n // 2]:7d} {lens[int(0.9 * n)]:5d} {_pct(sum(x > 128 for x in lens), n)} {lens[-1]:5d}")
        if args.by_kind:
            for k in KINDS:
                kl = sorted(len(tok(r["output"])["input_ids"]) + 1 for r in rows if _kind_of(r, by_output) == k)
                if kl:  # the loss is a mean over response tokens: a kind weighs by its tokens, not its rows
                    print(f"    {k:11s} n={len(kl):4d} median {kl[len(kl) // 2]:4d} tokens, max {kl[-1]:4d}, "
                          f">128: {sum(x > 128 for x in kl)}, share of loss tokens {_pct(sum(kl), sum(lens))}")
    # why rows repeat: identical responses to the same problem
    groups = collections.defaultdict(list)
    for r in pool:
        groups[r["query_id"]].append(r)
    dup_kinds = collections.Counter()
    for rs in groups.values():
        seen = collections.Counter(r["output"] for r in rs)
        for r in rs:
            if seen[r["output"]] > 1:
                dup_kinds[r["response_kind"]] += 1
    cross = len({(r["input"], r["output"]) for r in pool}) - len({r["output"] for r in pool})
    print(f"\nrows whose (problem, response) occurs more than once within its problem, by kind: {dict(dup_kinds)};"
          f" identical responses across different problems: {-cross if cross < 0 else 0}")
    return 0


# ---------------------------------------------------------------- template
def _tokenizer(path: str):
    from transformers import AutoTokenizer  # lazy: heavy third-party import

    return AutoTokenizer.from_pretrained(path)


def cmd_template(args: argparse.Namespace) -> int:
    from llamafactory.data.template import TEMPLATES  # lazy: heavy third-party import

    tok = _tokenizer(args.model)
    row = read_jsonl(args.pool)[0]
    tmpl = TEMPLATES["smollm2"]
    msgs = [{"role": "user", "content": row["input"]}, {"role": "assistant", "content": row["output"]}]
    prompt_ids, answer_ids = tmpl.encode_oneturn(tok, msgs, system=SYSTEM)
    train_prompt = tok.decode(prompt_ids)
    eval_prompt = tok.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["input"]}],
        tokenize=False, add_generation_prompt=True)
    print("== training prompt (LLaMA-Factory smollm2, system from the subset's `system` column):")
    print(train_prompt)
    print("== training target (loss on these tokens):")
    print(tok.decode(answer_ids))
    print("== evaluation prompt (tokenizer chat template + system prompt, as lighteval applies it):")
    print(eval_prompt)
    print(f"== identical prompt text: {train_prompt == eval_prompt}")
    return 0


# ---------------------------------------------------------------- scoring generations
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_of(text: str) -> tuple[str | None, bool]:
    """(answer, from a box): the last \\boxed{} content, else the last number (lighteval's fallback order)."""
    boxes = BOXED.findall(text)
    if boxes:
        nums = NUMBER.findall(boxes[-1].replace(",", ""))
        return (nums[-1] if nums else boxes[-1].strip()), True
    nums = NUMBER.findall(text.replace(",", ""))
    return (nums[-1] if nums else None), False


def _correct(pred: str | None, gold: str) -> bool:
    try:
        return pred is not None and float(pred) == float(gold)
    except ValueError:
        return False


def generate_rows(model, tok, evals: list[dict], max_new_tokens: int, batch_size: int) -> list[dict]:
    """Greedy, batched, the model's chat template with the demo system prompt (as lighteval applies it)."""
    import torch  # lazy: heavy third-party import

    tok.padding_side = "left"
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    out_rows = []
    for i in range(0, len(evals), batch_size):
        batch = evals[i: i + batch_size]
        prompts = [tok.apply_chat_template([{"role": "system", "content": SYSTEM},
                                            {"role": "user", "content": e["problem"]}],
                                           tokenize=False, add_generation_prompt=True) for e in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
        for e, ids in zip(batch, gen[:, enc.input_ids.shape[1]:].tolist()):
            n = ids.index(eos) if eos in ids else len(ids)
            out_rows.append({"id": e["id"], "source": e["source"], "answer": e["answer"], "ids": ids[:n],
                             "finished": eos in ids, "text": tok.decode(ids[:n])})
    return out_rows


def summarize(rows: list[dict], cap: int) -> tuple[int, int, int]:
    """(right, boxed, cap hit without a box) of generations cut at ``cap`` tokens."""
    right = boxed = capped = 0
    for r in rows:
        ans, from_box = answer_of(r["text"])
        right += _correct(ans, r["answer"])
        boxed += from_box
        capped += len(r["ids"]) >= cap and not from_box
    return right, boxed, capped


def cmd_generate(args: argparse.Namespace) -> int:
    tok, t0 = _tokenizer(args.model), time.time()
    rows = generate_rows(_load(args.model), tok, read_jsonl(args.eval)[: args.n], args.max_new_tokens,
                         args.batch_size)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"wrote {args.out} ({time.time() - t0:.0f}s)")
    return _print_generations(args.out, args.model)


def _print_generations(path: str, model: str) -> int:
    """Accuracy, boxed answers and cap hits of saved generations, as if each had been cut at 128, 192 … tokens."""
    tok, rows = _tokenizer(model), read_jsonl(path)
    lens = sorted(len(r["ids"]) for r in rows)
    print(f"{path}: {len(rows)} problems, generated length median {lens[len(lens) // 2]}, "
          f"finished (end of turn) {sum(r['finished'] for r in rows)}\n{'cap':>5s} {'accuracy':>12s} "
          f"{'boxed':>12s} {'cap hit, no box':>16s}")
    for cap in [c for c in CAPS if c <= max(lens[-1], 128)]:
        cut = [{**r, "ids": r["ids"][:cap], "text": tok.decode(r["ids"][:cap])} for r in rows]
        right, boxed, capped = summarize(cut, cap)
        print(f"{cap:5d} {right:4d} {_pct(right, len(rows))} {boxed:4d} {_pct(boxed, len(rows))} "
              f"{capped:6d} {_pct(capped, len(rows))}")
    by_source = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        by_source[r["source"]][0] += _correct(answer_of(tok.decode(r["ids"][:128]))[0], r["answer"])
        by_source[r["source"]][1] += 1
    print("accuracy at 128 by source: " + ", ".join(f"{s} {a}/{n}" for s, (a, n) in sorted(by_source.items())))
    return 0


# ---------------------------------------------------------------- in-format ceiling
def eval_problems(n: int, seed: int = 0):
    """The first n held-out problems of `make-demo-data --seed SEED` as Problem objects (generate()'s order)."""
    rng = random.Random(seed)
    sources, seen, out = list(demo_data.GENERATORS), set(), []
    for i in range(n):
        while True:
            p = demo_data.GENERATORS[sources[i % len(sources)]](rng)
            if p.question not in seen:
                seen.add(p.question)
                out.append(p)
                break
    return out


def _load(path: str):
    import torch  # lazy: heavy third-party import
    from transformers import AutoModelForCausalLM  # lazy: heavy third-party import

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def inform(model, tok, probs, batch_size: int = 50) -> dict[str, list[int]]:
    """Per source [right, total]: the final value completed greedily after the gold trace's prefix."""
    import torch  # lazy: heavy third-party import

    tok.padding_side = "left"
    prompts = []
    for p in probs:
        marker = 987654321
        trace = demo_data.render(p.paragraphs(marker), marker)
        prefix = trace[: trace.index(str(marker))]  # up to where the final value is first written
        chat = tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": p.question}],
                                       tokenize=False, add_generation_prompt=True)
        prompts.append(chat + prefix)
    hits = collections.defaultdict(lambda: [0, 0])
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i: i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
        for p, ids in zip(probs[i: i + batch_size], gen[:, enc.input_ids.shape[1]:].tolist()):
            m = NUMBER.match(tok.decode(ids).strip().replace(",", ""))
            hits[p.source][0] += bool(m) and _correct(m.group(0), str(p.answer))
            hits[p.source][1] += 1
    hits["all"] = [sum(v[0] for v in hits.values()), sum(v[1] for v in hits.values())]
    return hits


def _problems(args: argparse.Namespace):
    probs = eval_problems(args.n, args.seed)
    gold = read_jsonl(args.eval)[: args.n] if args.eval else None
    assert gold is None or [g["problem"] for g in gold] == [p.question for p in probs], "eval set != generator"
    return probs


def cmd_teach(args: argparse.Namespace) -> int:
    """Train the base model in-process on a subset for each (lr, epochs), then measure `inform` after it."""
    tok, probs = _tokenizer(args.model), _problems(args)
    rows = read_jsonl(args.subset)
    evals = read_jsonl(args.eval)[: args.gen] if args.gen else []
    base = inform(_load(args.model), tok, probs, args.batch_size)["all"]
    print(f"{'run':16s} {'steps':>5s} {'loss first->last':>17s} {'in-format acc':>14s} {'vs base':>8s} {'s':>5s}")
    print(f"{'base':16s} {0:5d} {'':>17s} {_pct(*base):>14s}")
    for lr in [x for x in args.lrs.split(",") if x]:
        for ep in args.epochs.split(","):
            t0 = time.time()
            model = _load(args.model)
            losses = lean_train(model, tok, rows, float(lr), int(ep))
            acc = inform(model, tok, probs, args.batch_size)["all"]
            line = (f"lr{lr}_ep{ep:<9s} {len(losses):5d} {losses[0]:8.3f}->{losses[-1]:<7.3f} {_pct(*acc):>14s} "
                    f"{100 * (acc[0] - base[0]) / base[1]:+7.1f}")
            if args.gen:
                rows_g = generate_rows(model, tok, evals, args.max_new_tokens, args.batch_size)
                with open(f"{args.out_prefix}lr{lr}_ep{ep}.jsonl", "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows_g)
                right, boxed, capped = summarize(rows_g, args.max_new_tokens)
                line += f"  gen@{args.max_new_tokens}: acc {_pct(right, len(rows_g))} boxed {boxed} capped {capped}"
            print(f"{line} {time.time() - t0:5.0f}s", flush=True)
    return 0


# ---------------------------------------------------------------- lean training (the recipe, in-process)
def lean_train(model, tok, rows: list[dict], lr: float, epochs: int, batch: int = 8, seed: int = 42) -> list[float]:
    """demo_zpd.yaml's recipe without LLaMA-Factory's start-up: full fine-tuning, AdamW, cosine, warm-up 0.1,
    batches of 8 rows, loss on response tokens (+ <|im_end|>) only, same chat text as the smollm2 template."""
    import torch  # lazy: heavy third-party import
    from transformers import get_cosine_schedule_with_warmup  # lazy: heavy third-party import

    encoded = []
    for r in rows:
        prompt = tok.apply_chat_template([{"role": "system", "content": SYSTEM},
                                          {"role": "user", "content": r["instruction"]}],
                                         tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(r["output"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        encoded.append(((p_ids + a_ids)[:512], ([-100] * len(p_ids) + a_ids)[:512]))
    steps = epochs * -(-len(encoded) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(0.1 * steps), steps)
    rng, losses = random.Random(seed), []
    model.train()
    for _ in range(epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for i in range(0, len(order), batch):
            items = [encoded[j] for j in order[i: i + batch]]
            width = max(len(x) for x, _ in items)
            ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in items])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in items])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in items])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
            losses.append(round(loss.item(), 3))
            print(f"    step {len(losses)}/{steps} loss {losses[-1]}", file=sys.stderr, flush=True)
    model.eval()
    return losses


# ---------------------------------------------------------------- lighteval details
def read_details(eval_dir: str) -> list[dict]:
    import pandas as pd  # lazy: heavy third-party import

    files = sorted(glob.glob(os.path.join(eval_dir, "**", "details*.parquet"), recursive=True))
    rows = []
    for f in files:
        for rec in pd.read_parquet(f).to_dict("records"):
            doc, resp = rec.get("doc", {}) or {}, rec.get("model_response", {}) or {}
            text = resp.get("text") or [""]
            text = text[0] if isinstance(text, (list, tuple)) or hasattr(text, "tolist") else text
            out_tokens = resp.get("output_tokens")
            n_tok = len(out_tokens[0]) if out_tokens is not None and len(out_tokens) else None
            metric = rec.get("metric", {}) or {}
            rows.append({"prompt": resp.get("input") or doc.get("query"), "text": str(text), "n_tokens": n_tok,
                         "gold": (doc.get("choices") or [""])[0], "score": next(iter(metric.values()), None)})
    return rows


def cmd_details(args: argparse.Namespace) -> int:
    tok = _tokenizer(args.model)
    print(f"{'eval dir':40s} {'n':>4s} {'acc':>6s} {'boxed':>6s} {'cap hit no box':>15s} {'len med':>7s}")
    for d in args.eval_dirs:
        rows = read_details(d)
        if not rows:
            print(f"{d}: no details parquet")
            continue
        n_tok = [r["n_tokens"] if r["n_tokens"] is not None else len(tok(r["text"])["input_ids"]) for r in rows]
        boxed = [answer_of(r["text"])[1] for r in rows]
        capped = sum(t >= args.max_new_tokens and not b for t, b in zip(n_tok, boxed))
        acc = sum(float(r["score"] or 0) for r in rows)
        print(f"{d[-40:]:40s} {len(rows):4d} {_pct(acc, len(rows))} {_pct(sum(boxed), len(rows))} "
              f"{capped:5d} {_pct(capped, len(rows))} {sorted(n_tok)[len(n_tok) // 2]:7d}")
        if args.show_prompt:
            print("   prompt as generated:", repr(rows[0]["prompt"])[:600])
    return 0


# ---------------------------------------------------------------- grid through the CLIs
def _paired_ci(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    return 100 * mean, 100 * 1.96 * math.sqrt(var / n)


def _per_problem(eval_dir: str) -> list[float]:
    return [float(r["score"] or 0) for r in read_details(eval_dir)]


def cmd_grid(args: argparse.Namespace) -> int:
    out = Path(args.out)
    lf_dir = out / "lf_data"
    lf_dir.mkdir(parents=True, exist_ok=True)
    info = {"diag_subset": {"file_name": str(Path(args.subset).resolve()), "formatting": "alpaca",
                            "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                        "system": "system"}}}
    (lf_dir / "dataset_info.json").write_text(json.dumps(info, indent=1))
    suite = f"local:{args.eval}"
    ev = ["llamafactory-ext", "eval", "--suite", suite, "--max_new_tokens", str(args.max_new_tokens),
          "--temperature", "0", "--batch_size", str(args.batch_size), "--system_prompt", SYSTEM]
    if args.max_samples:
        ev += ["--max_samples", str(args.max_samples)]
    runs = [("base", args.model, None)]
    for lr in [x for x in args.lrs.split(",") if x]:
        for ep in args.epochs.split(","):
            runs.append((f"lr{lr}_ep{ep}", str(out / f"train_lr{lr}_ep{ep}"), (lr, ep)))
    for name, model, hp in runs:
        cmds = []
        if hp and not (Path(model) / "model.safetensors").exists():
            cmds.append(["llamafactory-cli", "train", "yaml_recipes/demo_zpd.yaml", f"model_name_or_path={args.model}",
                         "dataset=diag_subset", f"dataset_dir={lf_dir}", f"output_dir={model}",
                         f"learning_rate={hp[0]}", f"num_train_epochs={hp[1]}", "plot_loss=false"])
        if not list(Path(out / "evals" / name).glob("**/details*.parquet")):
            cmds.append([*ev, "--model", model, "--out", str(out / "evals" / name)])
        for c in cmds:
            print("$ " + shlex.join(c), flush=True)
            if not args.dry_run:
                t = time.time()
                subprocess.run(c, check=True)
                print(f"   ({time.time() - t:.0f}s)", flush=True)
    if args.dry_run:
        return 0
    base = _per_problem(str(out / "evals" / "base"))
    print(f"\n{'arm':16s} {'acc':>7s} {'arm - base (95% CI)':>22s}")
    for name, _, _ in runs:
        s = _per_problem(str(out / "evals" / name))
        mean, half = _paired_ci(s, base)
        print(f"{name:16s} {100 * sum(s) / len(s):6.1f}% {mean:+7.1f} ± {half:4.1f}")
    return cmd_details(argparse.Namespace(model=args.model, eval_dirs=[str(out / "evals" / n) for n, _, _ in runs],
                                          max_new_tokens=args.max_new_tokens, show_prompt=False))


def _sub(sub, name: str, **opts) -> None:
    """One sub-command; an option's default gives its type (... = required, bool = flag, list = nargs *)."""
    a = sub.add_parser(name)
    for key, v in {**opts, "model": MODEL}.items():
        if key == "positional":
            a.add_argument(v, nargs="+")
        elif v is ...:
            a.add_argument(f"--{key}", required=True)
        elif isinstance(v, bool):
            a.add_argument(f"--{key}", action="store_true")
        else:
            a.add_argument(f"--{key}", default=v, nargs="*" if isinstance(v, list) else None,
                           type=None if isinstance(v, list) or v is None else type(v))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    _sub(sub, "pool", pool=..., subsets=[], by_kind=False)
    _sub(sub, "template", pool=...)
    _sub(sub, "generate", eval=..., n=50, max_new_tokens=256, batch_size=25, out=...)
    _sub(sub, "show", positional="generations")  # re-print a `generate` output
    _sub(sub, "teach", subset=..., eval=None, n=100, seed=0, batch_size=50, lrs="1e-5,1e-4", epochs="1", gen=0,
         max_new_tokens=128, out_prefix="outputs/diag/gen_")
    _sub(sub, "details", positional="eval_dirs", max_new_tokens=128, show_prompt=False)
    _sub(sub, "grid", subset=..., eval=..., out="outputs/diag/grid", lrs="1e-5,3e-5,1e-4", epochs="1,3",
         max_new_tokens=128, max_samples=150, batch_size=50, dry_run=False)
    args = p.parse_args(argv)
    if args.cmd == "show":
        return _print_generations(args.generations[0], args.model)
    return {"pool": cmd_pool, "template": cmd_template, "generate": cmd_generate, "teach": cmd_teach,
            "details": cmd_details, "grid": cmd_grid}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
