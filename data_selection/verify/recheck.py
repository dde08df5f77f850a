"""Optional model re-check of math-verify's "wrong" verdicts (``data-select verify --recheck_model``).

DeepDistill re-checks the answers its rule-based checker calls wrong with a model (Qwen2.5-7B-Instruct), since
math-verify misses equivalences written differently. Here a local instruct model is asked, for every response
that math-verify compared with the reference and found *not* equal (``method`` reference, score 0, an answer
found), whether the response's final answer and the reference are the same answer. A reply starting with "yes"
turns the score into 1 (``method`` ``reference+model``); anything else leaves the 0. Responses with no final
answer are not asked (nothing to compare). The default (no ``--recheck_model``) is math-verify alone.

Generation goes through the project's own path: LLaMA-Factory's tokenizer loading and chat template
(:class:`data_selection.encoding.TemplateEncoder`, the ``--recheck_template`` the model was trained with),
the scorer's model loader, greedy decoding of at most a few tokens, left-padded batches. The replies are kept
in ``recheck.parquet`` (row, reply, equal) and in ``meta.json`` (model, counts, seconds), so a re-run of the
same command does not ask again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from data_selection.atomic import write_parquet_atomic
from data_selection.device import resolve_device
from data_selection.encoding import TemplateEncoder, load_tokenizer
from data_selection.scoring.runner import load_model

PROMPT = ("Two final answers to the same math problem are given. Are they mathematically equivalent (the same "
          "value, set or expression, maybe written differently)?\nReference answer: {target}\nCandidate answer: "
          "{answer}\nReply with only yes or no.")
RECHECK = "recheck.parquet"
MAX_NEW_TOKENS = 3


@dataclass
class _ModelOpts:  # what scoring.runner.load_model reads
    model: str
    dtype: str = "auto"
    attn: str = "auto"
    trust_remote_code: bool = False


def candidates(table) -> Any:
    """Rows math-verify found different from the reference (the ones the paper re-checks)."""
    found = table["answer_found"].astype(bool) if "answer_found" in table else True
    return table[(table["method"] == "reference") & (table["verify_score"] == 0.0) & found]


def ask(model_path: str, template: str, pairs: list[tuple[str, str]], batch_size: int = 16, device: str = "",
        ) -> list[str]:
    """The model's reply to :data:`PROMPT` for each (answer, reference) pair, greedy."""
    device = device or resolve_device("auto", 0)
    tokenizer = load_tokenizer(model_path)
    encoder = TemplateEncoder(tokenizer, template, cutoff_len=4096)
    model, _, _ = load_model(_ModelOpts(model_path), device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = []
    for answer, target in pairs:
        messages = [{"role": "user", "content": PROMPT.format(answer=answer, target=target)},
                    {"role": "assistant", "content": ""}]
        ids, _ = encoder.template.encode_oneturn(tokenizer, messages)
        prompts.append(ids)
    replies: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start: start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=pad)
        replies.extend(tokenizer.batch_decode(out[:, width:], skip_special_tokens=True))
    return replies


def is_yes(reply: str) -> bool:
    return reply.strip().lower().lstrip("*\"' ").startswith("yes")


def recheck(out: str | Path, table, model_path: str, template: str, batch_size: int = 16) -> tuple[Any, dict]:
    """(table with re-checked scores, facts for meta.json). Replies are cached in ``out/recheck.parquet``."""
    out = Path(out)
    todo = candidates(table)
    cache = out / RECHECK
    t0 = time.perf_counter()
    done = pd.read_parquet(cache) if cache.exists() else pd.DataFrame({"row": [], "reply": [], "model": []})
    done = done[done["model"] == model_path]
    ask_rows = todo[~todo["row"].isin(done["row"])]
    if len(ask_rows):
        replies = ask(model_path, template, list(zip(ask_rows["answer"], ask_rows["target"])), batch_size)
        new = pd.DataFrame({"row": ask_rows["row"].to_numpy(), "reply": replies, "model": model_path})
        done = pd.concat([done, new], ignore_index=True)
        write_parquet_atomic(cache, done)
    seconds = time.perf_counter() - t0
    done = done[done["row"].isin(todo["row"])]
    done = done.assign(equal=done["reply"].map(is_yes))
    flip = set(done.loc[done["equal"], "row"].astype(int))
    table = table.copy()
    hit = table["row"].isin(flip)
    table.loc[hit, "verify_score"] = 1.0
    table.loc[hit, "method"] = "reference+model"
    facts = {"model": model_path, "template": template, "prompt": PROMPT, "asked": int(len(todo)),
             "asked_now": int(len(ask_rows)), "turned_right": int(hit.sum()), "seconds_now": round(seconds, 2),
             "seconds_per_1k_asked": round(1000 * seconds / len(ask_rows), 1) if len(ask_rows) else None}
    return table, facts
