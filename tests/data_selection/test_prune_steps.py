"""`data-select prune-steps` (LIMOPro PIR pruning, docs/methods.md §5) on hand-built traces and the tiny model.

Segmentation and typing against hand-written expectations; the deletion rule (lowest PIR per type, ties by
position, round half up, never a progressive step); PIR against a direct per-variant full-logits computation
(fp32); pass-through rows counted; output, manifest, registration, resumption and multi-rank runs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import REPO_ROOT, write_jsonl

from data_selection.command_line import UserError, parse_options
from data_selection.commands.prune_steps import prune_and_report as run_prune
from data_selection.commands.prune_steps import run as cli_prune_steps
from data_selection.encoding import IGNORE_INDEX, TemplateEncoder, load_tokenizer
from data_selection.options.prune_steps import PruneOptions, recipe
from data_selection.push import prepare_upload
from data_selection.registry import check_dataset_info
from data_selection.sources import PoolSpec, load_pool
from data_selection.transforms import runner, step_typer
from data_selection.transforms.output import NOTHING_AT_RATIO, REJECTED  # noqa: F401 (names of the reasons)
from data_selection.transforms.pir import (
    NO_FUNCTIONAL,
    OVER_CUTOFF,
    encode_variants,
    pir_batched,
    pir_prefix_cached,
)
from data_selection.transforms.prune import n_to_delete, steps_to_delete
from data_selection.transforms.step_typer import (
    BY_MARKER,
    BY_MODEL,
    PROMPT,
    UNMARKED,
    StepTyper,
    load_chat,
    parse_answer,
)
from data_selection.transforms.steps import (
    DEFAULT_PHRASES,
    ERROR_CORRECTION,
    MALFORMED_THINK,
    MULTI_METHOD,
    NO_ANSWER,
    NO_THINK,
    PROGRESSIVE,
    VERIFICATION,
    MarkerTable,
    count_sentences,
    segment,
)

MARKERS = MarkerTable(DEFAULT_PHRASES)
SYS = "Please reason step by step, and put your final answer within \\boxed{}."
ANSWER = "\n\nThe answer is \\boxed{42}."

P1 = "First, we add the numbers. 17 + 25 = 42. That is the sum."
P2 = "Therefore the sum is 42. Nothing else is needed. Done."
V1 = "Wait, let me check that again. 25 + 17 = 42 as well. It matches."
V2 = "Let me verify by subtraction. 42 - 25 = 17. Correct."
V3 = "Double-check with tens and ones. 10 + 20 = 30 and 7 + 5 = 12. 30 + 12 = 42."
M1 = "Alternatively, count up from 25. 25 + 17 reaches 42. Same result."
M2 = "Another way is to round: 17 + 25 = 20 + 25 - 3. That is 45 - 3 = 42. It agrees."
E1 = "Wait, no, that is wrong. Actually 17 + 25 is 42 indeed. So it stands."


def trace(paragraphs: list[str], answer: str = ANSWER) -> str:
    return "<think>\n" + "\n\n".join(paragraphs) + "\n</think>" + answer


# -- segmentation and typing ------------------------------------------------------------------------------------


def test_segmentation_and_types_of_a_hand_written_trace():
    text = (
        "<think>\n"
        "We need to find 3.5 times 4. That is 14.\n\n"  # 2 sentences ("3.5" ends none): merged with the next
        "So the product is 14.\n \n"  # a blank line holding a space is a separator too
        "Let me check: 4 times 3.5 is 14. Yes. Good!\n\n"  # "Let me check" (verification) beats "Let me"
        "**Alternatively**, use fractions. 7/2 times 4 = 14. Same.\n\n"  # Markdown marks skipped
        "Wait, no. I misread the question? It asks for 3.5 x 4... Fine, 14 it is.\n\n"  # "Wait, no" beats "Wait"
        "Thence we conclude. The product is 14. Really.\n\n"  # "Thence" is not "Then": no marker, progressive
        "Wait\n"
        "a moment.\n\n"  # one line break is not a separator; 1 sentence, merged with what follows
        "The value is $14.$ Confirmed"  # "$14.$" ends no sentence, the trailing fragment counts: 1 + 1
        "\n</think>\n\nThe answer is \\boxed{14}."
    )
    seg = segment(text, MARKERS)
    got = [(text[s.start:s.end], s.type, s.sentences) for s in seg.steps]
    assert got == [
        ("We need to find 3.5 times 4. That is 14.\n\nSo the product is 14.", PROGRESSIVE, 3),
        ("Let me check: 4 times 3.5 is 14. Yes. Good!", VERIFICATION, 3),
        ("**Alternatively**, use fractions. 7/2 times 4 = 14. Same.", MULTI_METHOD, 3),
        ("Wait, no. I misread the question? It asks for 3.5 x 4... Fine, 14 it is.", ERROR_CORRECTION, 4),
        ("Thence we conclude. The product is 14. Really.", PROGRESSIVE, 3),
        ("Wait\na moment.\n\nThe value is $14.$ Confirmed", VERIFICATION, 2),  # the trace ends short of 3
    ]
    assert seg.answer == "\n\nThe answer is \\boxed{14}."


@pytest.mark.parametrize("text, n", [
    ("One. Two! Three?", 3), ("No end", 1), ("Pi is 3.14 roughly.", 1), ("Wait... really?! Yes.", 3),
    ('He said "stop." Then left.', 2), ("", 0), ("   ", 0), ("(a) holds.) next", 2),
])  # fmt: skip
def test_count_sentences(text, n):
    assert count_sentences(text) == n


def test_a_short_functional_paragraph_starts_its_own_step_by_default():
    text = trace(["We add. It is 42.", "Wait, let me check. 25 + 17 = 42. Yes."])
    steps = segment(text, MARKERS).steps
    assert [s.type for s in steps] == [PROGRESSIVE, VERIFICATION]
    assert [s.sentences for s in steps] == [2, 3]
    # the old rule (sentence count alone) folds it into the 2-sentence progressive step
    assert [s.type for s in segment(text, MARKERS, marker_boundaries=False).steps] == [PROGRESSIVE]


# LIMOPro's Table 4 phrases the default lists lacked until issue 19, with the type each is listed under.
TABLE4_ADDED = [("Going back to", VERIFICATION), ("Using another method", MULTI_METHOD),
                ("We can also verify", MULTI_METHOD), ("That's impossible", ERROR_CORRECTION),
                ("This contradicts", ERROR_CORRECTION), ("The error is", ERROR_CORRECTION)]
FUNCTIONAL_DEFAULTS = [(p, t) for t in (VERIFICATION, MULTI_METHOD, ERROR_CORRECTION) for p in DEFAULT_PHRASES[t]]


@pytest.mark.parametrize("phrase, step_type", TABLE4_ADDED + FUNCTIONAL_DEFAULTS)
@pytest.mark.parametrize("opening", ["", "But ", "Hmm, ", "So, ", "Okay so "])
def test_every_default_marker_types_its_step_at_the_start_and_after_a_lead_in(phrase, step_type, opening):
    assert phrase in DEFAULT_PHRASES[step_type]
    for text in (f"{opening}{phrase} the sum once more. It is 42.", f"{opening}{phrase.upper()}: 17 + 25 = 42."):
        assert MARKERS.classify(text) == step_type, text


@pytest.mark.parametrize("text, step_type", [
    ("But that's wrong, because 17 + 25 is not 32.", ERROR_CORRECTION),
    ("Hmm, let me check the carry once more.", VERIFICATION),
    ("But let me confirm once again.", VERIFICATION),  # LIMOPro's own Fig. 5 trace
    ("Hmmm... this contradicts the earlier sum.", ERROR_CORRECTION),
    ("Oh wait, I made a mistake in the tens.", ERROR_CORRECTION),
    ("Wait, let me try another approach: count up.", MULTI_METHOD),  # the marker after the lead-in decides
    ("Okay, so alternatively we round first.", MULTI_METHOD),
    ("So that's impossible: a sum of positives is positive.", ERROR_CORRECTION),
    ("**Hmm**, let me verify.", VERIFICATION),
    ("Alright, going back to the first equation.", VERIFICATION),
    ("Wait, so the total is 42.", VERIFICATION),  # a progressive word after "Wait" does not override it
    ("Wait, no. I misread the question.", ERROR_CORRECTION),
    ("But the sum is 42.", PROGRESSIVE),  # a lead-in alone is no marker
    ("Okay, so I need to add 17 and 25.", PROGRESSIVE),
    ("Hmm.", PROGRESSIVE),
    ("Butter is not a number; let me check.", PROGRESSIVE),  # whole words only: "Butter" is not "But"
])  # fmt: skip
def test_r1_openings_are_typed_by_the_marker_after_their_lead_ins(text, step_type):
    assert MARKERS.classify(text) == step_type


def test_without_lead_ins_markers_count_only_at_the_very_start():
    bare = MarkerTable(DEFAULT_PHRASES, lead_ins=())
    assert bare.classify("Hmm, let me check.") == PROGRESSIVE
    assert bare.classify("Let me check.") == VERIFICATION
    assert MARKERS.match("But the sum is 42.") == (PROGRESSIVE, None)  # unmarked: what --step_typer types
    assert MARKERS.match("Then we add.") == (PROGRESSIVE, "then")


# A trace in the style of LIMOPro's Fig. 5: six functional paragraphs, three of them after a short paragraph.
FIG5 = [
    "Okay, so I need to find the sum of 17 and 25. Let me start with the tens.",  # 2 sentences
    "Wait, let me verify the tens. 10 + 20 = 30.",  # F1
    "Then the ones give 7 + 5 = 12. So the total is 30 + 12 = 42. That is the sum.",
    "Hmm, let me check the ones again. 7 + 5 is 12.",  # F2 (2 sentences)
    "Alternatively, count up from 25. 25 + 17 = 42.",  # F3
    "So the answer is 42.",  # 1 sentence
    "But let me confirm once again. 42 - 17 = 25, which matches.",  # F4
    "Therefore 42 it is. Nothing is missing. Done.",
    "That's impossible to doubt, since both checks agree. The sum is 42. No error remains.",  # F5
    "Wait, no. The question asks for 17 + 25, not 17 + 52. It is still 42.",  # F6
    "Finally, the answer is 42. We box it. Done.",
]
FIG5_FUNCTIONAL = [1, 3, 4, 6, 8, 9]


def _paragraphs_opening_no_step(text: str, steps) -> list[int]:
    """Indexes (into FIG5) of functional paragraphs that do not open a step of their own."""
    starts = {s.start for s in steps}
    return [i for i in FIG5_FUNCTIONAL if text.index(FIG5[i]) not in starts]


def test_functional_paragraphs_of_a_fig5_like_trace_each_open_their_own_step():
    text = trace(FIG5)
    assert [MARKERS.classify(FIG5[i]) != PROGRESSIVE for i in range(len(FIG5))] == \
           [i in FIG5_FUNCTIONAL for i in range(len(FIG5))]
    old = segment(text, MARKERS, marker_boundaries=False).steps
    assert _paragraphs_opening_no_step(text, old) == [1, 4, 6]  # 3 of 6 absorbed by the old default
    steps = segment(text, MARKERS).steps
    assert _paragraphs_opening_no_step(text, steps) == []
    for s in steps:
        if text[s.start:s.end].startswith(tuple(FIG5[i] for i in FIG5_FUNCTIONAL)):
            assert s.type != PROGRESSIVE
    # the unmarked paragraph after a short functional one joins it; a progressive one never takes a functional one
    types = {text[s.start:s.end]: s.type for s in steps}
    assert types[FIG5[4] + "\n\n" + FIG5[5]] == MULTI_METHOD


@pytest.mark.parametrize("seed", range(20))
def test_no_step_holds_a_functional_paragraph_after_its_first(seed):
    import random

    rng = random.Random(seed)
    pool = FIG5 + [P1, P2, V1, V2, M1, E1, "So 42.", "But let me check it.", "Hmm, that's wrong."]
    paras = [rng.choice(pool) for _ in range(12)]
    text = trace(paras)
    for s in segment(text, MARKERS, min_sentences=rng.randint(1, 5)).steps:
        inner = text[s.start:s.end].split("\n\n")[1:]
        assert all(MARKERS.classify(p) == PROGRESSIVE for p in inner), text[s.start:s.end]


def test_render_deletes_exactly_the_chosen_steps_and_nothing_else():
    paragraphs = [P1, V1, M1, V2, E1, P2]
    seg = segment(trace(paragraphs), MARKERS)
    assert [s.type for s in seg.steps] == [PROGRESSIVE, VERIFICATION, MULTI_METHOD, VERIFICATION,
                                           ERROR_CORRECTION, PROGRESSIVE]
    for k in range(len(paragraphs) + 1):
        for drop in itertools.combinations(range(len(paragraphs)), k):
            expected = trace([p for i, p in enumerate(paragraphs) if i not in drop])
            assert seg.render(drop) == expected, drop


@pytest.mark.parametrize("text, reason", [
    ("The answer is 42.", NO_THINK),
    ("<think>a. b. c.</think>x<think>d.</think>y", MALFORMED_THINK),
    ("<think>unclosed. The answer is 42.", MALFORMED_THINK),
    ("</think>reversed<think> 42", MALFORMED_THINK),
    ("<think>\nWe add. 17 + 25 = 42. Done.\n</think>\n  \n", NO_ANSWER),
])  # fmt: skip
def test_responses_without_a_usable_think_block_name_the_reason(text, reason):
    assert segment(text, MARKERS) == reason


def test_a_phrase_in_two_lists_is_a_user_error():
    with pytest.raises(UserError, match="'wait'.*verification.*error_correction"):
        MarkerTable({VERIFICATION: ["Wait"], ERROR_CORRECTION: ["wait"]})


# -- the deletion rule ------------------------------------------------------------------------------------------


def test_lowest_pir_per_type_are_deleted_with_ties_by_position_never_progressive():
    P, V, M, E = PROGRESSIVE, VERIFICATION, MULTI_METHOD, ERROR_CORRECTION
    types = [P, V, V, M, V, V, E, M, V, P, E, E]
    pirs = [-9.0, 0.5, 0.1, 0.3, 0.1, -0.2, 0.7, 0.3, 0.9, -9.0, 0.2, 0.4]
    # ratio 0.3: V 5 steps -> round(1.5) = 2: -0.2 (5), then the tie at 0.1 goes to the earlier step (2);
    # M 2 -> round(0.6) = 1: tie at 0.3, the earlier (3); E 3 -> round(0.9) = 1: 0.2 (10). Progressive never.
    assert steps_to_delete(types, pirs, 0.3) == [2, 3, 5, 10]
    assert steps_to_delete(types, pirs, 0.0) == []
    assert steps_to_delete(types, pirs, 1.0) == [i for i, t in enumerate(types) if t != P]
    with pytest.raises(ValueError, match="non-finite"):
        steps_to_delete([V], [float("nan")], 0.5)


@pytest.mark.parametrize("ratio, count, n", [
    (0.3, 5, 2), (0.5, 1, 1), (0.25, 2, 1), (0.3, 1, 0), (0.2, 2, 0), (0.45, 10, 5), (0.35, 10, 4), (1.0, 3, 3),
])  # fmt: skip
def test_count_to_delete_rounds_half_up(ratio, count, n):
    assert n_to_delete(ratio, count) == n


# -- PIR equals a direct per-variant computation --------------------------------------------------------------


def _direct_answer_nll(model, encoder, prompt: str, response: str) -> float:
    """Mean full-logits NLL of the tokens that decode to the text after </think>, found by decoding alone."""
    enc = encoder.encode({"_prompt": [{"role": "user", "content": prompt}],
                          "_response": [{"role": "assistant", "content": response}], "_system": SYS})
    pos = [i for i, t in enumerate(enc.labels) if t != IGNORE_INDEX]
    ids = [enc.input_ids[i] for i in pos]
    decode = encoder.tokenizer.decode
    end = next(e for e in range(len(ids), 0, -1) if decode(ids[:e]) == response)  # drop the end-of-turn tokens
    answer = response[response.index("</think>") + len("</think>"):]
    start = next(k for k in range(end - 1, -1, -1) if decode(ids[k:end]) == answer)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0].float()
    rows = torch.tensor([pos[k] - 1 for k in range(start, end)])
    target = torch.tensor(ids[start:end])
    return float(torch.nn.functional.cross_entropy(logits[rows], target).double())


@pytest.fixture(scope="module")
def tiny(tiny_qwen_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    return model, TemplateEncoder(load_tokenizer(str(tiny_qwen_dir)), "qwen", 1024)


@pytest.mark.parametrize("paragraphs", [[P1, V1, M1, V2, E1, P2], [V3, P1, M2, V1]])
def test_pir_equals_direct_per_variant_computation(tiny, paragraphs):
    model, encoder = tiny
    prompt = "What is 17 + 25?"
    seg = segment(trace(paragraphs), MARKERS)
    ex = {"_prompt": [{"role": "user", "content": prompt}],
          "_response": [{"role": "assistant", "content": seg.response}], "_system": SYS}
    rv = encode_variants(encoder, ex, seg, row=7)
    assert rv.functional == [i for i, s in enumerate(seg.steps) if s.type != PROGRESSIVE]
    full = _direct_answer_nll(model, encoder, prompt, seg.response)
    direct = [_direct_answer_nll(model, encoder, prompt, trace([p for j, p in enumerate(paragraphs) if j != i]))
              - full for i in rv.functional]
    loss_b, pir_b = pir_batched(model, [rv], batch_tokens=300, chunk_tokens=16, device="cpu", pad_id=0)[7]
    loss_c, pir_c = pir_prefix_cached(model, rv, "cpu")
    for loss, pirs in ((loss_b, pir_b), (loss_c, pir_c)):
        assert loss == pytest.approx(full, abs=1e-5)
        assert pirs == pytest.approx(direct, abs=1e-5)
    assert max(abs(p) for p in direct) > 1e-4  # the variants really differ


# -- the command, end to end ------------------------------------------------------------------------------------

ROWS = [
    ("a", trace([P1, V1, M1, V2, E1, P2])),
    ("b", "17 + 25 = 42. The answer is \\boxed{42}."),  # no <think>
    ("a", trace([P1, P2])),  # no functional steps
    ("b", trace([P1] + [V1, M1] * 12)),  # over cutoff_len 320
    ("a", trace([V3, P1, V2, V1, M1, M2, E1, V2])),
    ("b", trace([P1, V1])),  # one verification step: 0.3 x 1 rounds to 0
    ("a", ""),  # rejected by the loader
    ("b", trace([M2, V3, P2, V1, E1, E1])),
]


def _pool(root: Path) -> Path:
    rows = [{"instruction": f"What is 17 + 25? ({i})", "input": "", "output": out, "system": SYS, "id": f"src-{i}",
             "category": "math", "source": src} for i, (src, out) in enumerate(ROWS)]
    write_jsonl(rows, root / "data" / "mini.jsonl")
    info = {"mini": {"file_name": "data/mini.jsonl", "formatting": "alpaca",
                     "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}}}
    (root / "dataset_info.json").write_text(json.dumps(info))
    return root


def _opts(model, root: Path, **kw):
    base = dict(model=str(model), dataset="mini", name="mini_pir30", dataset_dir=str(root), cutoff_len=320,
                out=str(root / "pir"), report_dir=str(root / "report"), shard_rows=3, num_proc=1, batch_tokens=600)
    base.update(kw)
    return PruneOptions(**base)


@pytest.fixture(scope="module")
def pruned(tiny_qwen_dir, tmp_path_factory):
    root = _pool(tmp_path_factory.mktemp("prune"))
    summary = run_prune(_opts(tiny_qwen_dir, root))
    return root, summary


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_exactly_the_lowest_pir_share_of_each_type_is_removed_and_the_answer_survives(pruned):
    root, summary = pruned
    assert summary["finished"] and summary["pir_rows_now"] == 4  # rows 0, 4, 5, 7
    inp = {r["id"]: r for r in _read_jsonl(root / "data" / "mini.jsonl")}
    out = _read_jsonl(root / "data" / "mini_pir30.jsonl")
    assert [r["id"] for r in out] == [f"src-{i}" for i in range(len(ROWS)) if ROWS[i][1]]  # order kept, reject out
    steps = pd.read_parquet(root / "pir" / "steps.parquet").set_index("row")
    deleted_total = 0
    for r in out:
        src = inp[r["id"]]
        assert {k: r[k] for k in ("instruction", "input", "system", "category", "source")} == \
               {k: src[k] for k in ("instruction", "input", "system", "category", "source")}
        before, after = src["output"], r["output"]
        if "</think>" in before:
            assert after[after.index("</think>"):] == before[before.index("</think>"):]  # byte for byte
        row = steps.loc[int(r["id"].split("-")[1])]
        if row["reason"]:
            assert after == before
            continue
        # expected from the stored PIRs, computed here without the library's rule
        expected_drop = set()
        for t in (VERIFICATION, MULTI_METHOD, ERROR_CORRECTION):
            idx = [i for i, ti in enumerate(row["step_type"]) if ti == t]
            k = int(len(idx) * 0.3 + 0.5)  # these counts are never an exact .5 in binary
            expected_drop |= set(sorted(idx, key=lambda i: (row["step_pir"][i], i))[:k])
        paragraphs = [before[a:b] for a, b in zip(row["step_start"], row["step_end"])]
        assert after == trace([p for i, p in enumerate(paragraphs) if i not in expected_drop])
        kept_types = [t for i, t in enumerate(row["step_type"]) if i not in expected_drop]
        assert kept_types.count(PROGRESSIVE) == list(row["step_type"]).count(PROGRESSIVE)
        deleted_total += len(expected_drop)
    manifest = json.loads((root / "data" / "mini_pir30.manifest.json").read_text())
    assert sum(v["deleted"] for v in manifest["steps"].values()) == deleted_total > 0
    assert manifest["steps"][PROGRESSIVE]["deleted"] == 0


def test_rows_without_think_or_functional_steps_pass_through_and_are_counted(pruned):
    root, _ = pruned
    m = json.loads((root / "data" / "mini_pir30.manifest.json").read_text())
    assert m["rows"]["unchanged"] == {NO_THINK: 1, NO_FUNCTIONAL: 1, OVER_CUTOFF: 1, NOTHING_AT_RATIO: 1}
    assert m["rows"]["rejected"] == 1 and m["rows"]["written"] == len(ROWS) - 1
    assert m["rows"]["changed"] == 3 and m["rows"]["unchanged_total"] == 4
    assert m["parameters"]["ratio"] == 0.3 and m["parameters"]["phrases"][VERIFICATION][0] == "Wait"
    assert m["tokens"]["response_after"] < m["tokens"]["response_before"]
    assert m["tokens"]["removed"] == m["tokens"]["response_before"] - m["tokens"]["response_after"]
    report = (root / "report" / "report.md").read_text()
    assert NO_THINK in report and all((root / "report" / f).stat().st_size for f in
                                      ("lengths.png", "tokens_removed.png", "pir.png"))


def test_every_row_not_written_is_in_rejects_jsonl_with_its_row_and_reason(pruned, tiny_qwen_dir, tmp_path, capsys):
    root, summary = pruned
    rejects = _read_jsonl(root / "pir" / "rejects.jsonl")
    assert rejects == [{"row": 6, "id": "src-6", "reason": rejects[0]["reason"]}]
    assert "output" in rejects[0]["reason"] and "empty" in rejects[0]["reason"]  # the loader's own reason
    written = {r["id"] for r in _read_jsonl(root / "data" / "mini_pir30.jsonl")}
    assert written | {r["id"] for r in rejects} == {f"src-{i}" for i in range(len(ROWS))}
    m = summary["manifest"]["rows"]
    assert m["rejected_by_reason"] == {rejects[0]["reason"]: 1} and m["rejects_file"] == str(root / "pir" /
                                                                                              "rejects.jsonl")
    report = (root / "report" / "report.md").read_text()
    assert str(root / "pir" / "rejects.jsonl") in report and rejects[0]["reason"] in report
    # a malformed JSON line is a reject too, numbered as the loader numbers it, and the console says where
    bad = _pool(tmp_path)
    lines = (bad / "data" / "mini.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the closing characters: not JSON any more
    (bad / "data" / "mini.jsonl").write_text("\n".join(lines) + "\n")
    assert cli_prune_steps(_opts(tiny_qwen_dir, bad)) == 0
    out = capsys.readouterr().out
    got = _read_jsonl(bad / "pir" / "rejects.jsonl")
    assert [r["row"] for r in got] == [2, 6] and all(r["reason"] for r in got)
    assert f"rows: {len(ROWS) - 2} of {len(ROWS)} written" in out and "2 rejected" in out
    assert f"rejects: {bad / 'pir' / 'rejects.jsonl'} (2 rows not written" in out


def test_output_is_registered_and_loads_with_llamafactory(pruned, tiny_qwen_dir):
    root, _ = pruned
    info = json.loads((root / "dataset_info.json").read_text())
    entry = info["mini_pir30"]
    assert entry["created_by"] == "data-select" and entry["recipe"].startswith("data-select prune-steps ")
    assert "--ratio 0.3 --name mini_pir30" in entry["recipe"]
    (res,) = check_dataset_info(root / "dataset_info.json", ["mini_pir30"], rows=10)
    assert res.ok, res.problems
    # the manifest's token count is what LLaMA-Factory's encoding of the written file gives
    pool = load_pool(PoolSpec(dataset="mini_pir30", dataset_dir=str(root)))
    enc = TemplateEncoder(load_tokenizer(str(tiny_qwen_dir)), "qwen", 320)
    m = json.loads((root / "data" / "mini_pir30.manifest.json").read_text())
    assert sum(enc.encode(ex).n_response_tokens for ex in pool.converted) == m["tokens"]["response_after"]

    files = dict(prepare_upload(root, "mini_pir30", license="cc-by-4.0"))  # the sha256 in the manifest matches
    assert b"license: cc-by-4.0" in files["README.md"] and b"PIR" in files["README.md"]
    assert files["data/train.jsonl"] == root / "data" / "mini_pir30.jsonl"


def test_ranks_split_the_work_and_a_new_ratio_reuses_the_pir_values(pruned, tiny_qwen_dir, tmp_path, monkeypatch):
    root, _ = pruned
    two = _pool(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    s0 = run_prune(_opts(tiny_qwen_dir, two))
    assert not s0["finished"] and 0 < s0["rows_now"] < len(ROWS)
    monkeypatch.setenv("RANK", "1")
    s1 = run_prune(_opts(tiny_qwen_dir, two))
    assert s1["finished"] and s0["rows_now"] + s1["rows_now"] == len(ROWS) - 1  # the rejected row: no shard
    a, b = pd.read_parquet(root / "pir" / "steps.parquet"), pd.read_parquet(two / "pir" / "steps.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6)
    assert (root / "data" / "mini_pir30.jsonl").read_bytes() == (two / "data" / "mini_pir30.jsonl").read_bytes()

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")

    def no_model(*a, **k):
        raise AssertionError("finished PIR values must be reused without loading the model")

    monkeypatch.setattr(runner, "load_model", no_model)
    s = run_prune(_opts(tiny_qwen_dir, two, ratio=1.0, name="mini_pir100"))
    assert s["finished"] and s["rows_now"] == 0
    m = s["manifest"]
    assert all(v["deleted"] == v["scored"] for t, v in m["steps"].items() if t != PROGRESSIVE)


def test_refuses_to_mix_configurations_and_bad_options(pruned, tiny_qwen_dir):
    root, _ = pruned
    before = (root / "pir" / "steps.parquet").read_bytes()
    with pytest.raises(UserError, match="different configuration.*segmentation"):
        run_prune(_opts(tiny_qwen_dir, root, min_sentences=2))
    assert (root / "pir" / "steps.parquet").read_bytes() == before
    with pytest.raises(UserError, match="--ratio must be in"):
        run_prune(_opts(tiny_qwen_dir, root, ratio=1.5))
    with pytest.raises(UserError, match="input subset itself"):
        run_prune(_opts(tiny_qwen_dir, root, name="mini"))
    with pytest.raises(UserError, match="the input file itself"):
        run_prune(_opts(tiny_qwen_dir, root, name="mini", dataset="data/mini.jsonl", register=False))
    with pytest.raises(UserError, match="not created by data-select"):
        run_prune(_opts(tiny_qwen_dir, root, name="mini", dataset="data/mini.jsonl"))


@pytest.mark.slow
def test_pir_with_smollm2_where_think_tags_are_plain_text(smollm2_dir):
    """SmolLM2's tokenizer has no <think> tokens ('</', 'think', '>'): the answer tokens must still be cut at the
    same place in every variant and PIR must equal the direct computation (real model, fp32)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    encoder = TemplateEncoder(load_tokenizer(str(smollm2_dir)), "smollm2", 512)
    paragraphs = [P1, V1, E1, P2]
    prompt = "What is 17 + 25?"
    seg = segment(trace(paragraphs), MARKERS)
    ex = {"_prompt": [{"role": "user", "content": prompt}],
          "_response": [{"role": "assistant", "content": seg.response}], "_system": SYS}
    rv = encode_variants(encoder, ex, seg, row=0)
    full = _direct_answer_nll(model, encoder, prompt, seg.response)
    direct = [_direct_answer_nll(model, encoder, prompt, trace([p for j, p in enumerate(paragraphs) if j != i]))
              - full for i in rv.functional]
    loss_b, pir_b = pir_batched(model, [rv], batch_tokens=2048, chunk_tokens=64, device="cpu", pad_id=0)[0]
    loss_c, pir_c = pir_prefix_cached(model, rv, "cpu")
    for loss, pirs in ((loss_b, pir_b), (loss_c, pir_c)):
        assert loss == pytest.approx(full, abs=1e-5)
        assert pirs == pytest.approx(direct, abs=1e-5)


def test_the_planned_pruned_subset_entry_names_the_command_that_makes_it():
    """dataset_info.json's acereason_zpd_15k_pir30 (trained by yaml_recipes/advanced_pir30.yaml) carries the exact
    command prune-steps records for it, and that command parses."""
    import shlex

    entry = json.loads((REPO_ROOT / "dataset_info.json").read_text())["acereason_zpd_15k_pir30"]
    argv = shlex.split(entry["recipe"])
    assert argv[:2] == ["data-select", "prune-steps"]
    opts = parse_options(PruneOptions, argv[2:], "data-select prune-steps", "")
    assert recipe(opts) == entry["recipe"] and opts.dataset == "acereason_zpd_15k" and opts.ratio == 0.3
    assert entry["manifest"] == f"data/{opts.name}.manifest.json"
    header = (REPO_ROOT / "yaml_recipes" / "advanced_pir30.yaml").read_text()
    assert f"--ratio 0.3 --name {opts.name}" in header and "--dataset acereason_zpd_15k " in header


def test_selection_report_points_to_the_pruning_report(pruned):
    from data_selection.options.report import ReportOptions
    from data_selection.reports.selection import run_report

    root, _ = pruned
    with pytest.raises(UserError, match="made by `data-select prune-steps`"):
        run_report(ReportOptions(names=["mini_pir30"], dataset_info=str(root / "dataset_info.json")))


def test_the_transform_modules_import_one_way():
    """runner -> output -> step_table: output never imports runner (the shard schema has its own module)."""
    import ast

    def imports(name: str) -> set[str]:
        tree = ast.parse((REPO_ROOT / "data_selection" / "transforms" / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "data_selection.transforms.runner" not in imports("output")
    assert "data_selection.transforms.runner" not in imports("step_table")
    assert "data_selection.transforms.output" not in imports("step_table")
    assert "data_selection.transforms.step_table" in imports("output") & imports("runner")


# -- the optional model-based step typer ------------------------------------------------------------------------

UNMARKED_CHECK = "Recomputing 25 + 17 gives 42 again. It matches. Good."  # a check no marker announces


@pytest.mark.parametrize("answer, step_type", [
    ("verification", VERIFICATION), ("Multi-method.", MULTI_METHOD), ("error correction", ERROR_CORRECTION),
    ("Transitive: progressive", PROGRESSIVE), ("ERROR_CORRECTION, then verification", ERROR_CORRECTION),
    ("I cannot tell", None), ("", None),
])  # fmt: skip
def test_the_typer_reads_the_first_category_its_model_names(answer, step_type):
    assert parse_answer(answer) == step_type


def test_the_typer_asks_only_about_unmarked_steps_and_shows_the_step_before():
    asked = []

    def chat(prompt: str) -> str:
        asked.append(prompt)
        return "verification" if "Recomputing" in prompt.split("Step to label:")[1] else "no idea"

    text = trace([P1, UNMARKED_CHECK, V1, "The sum stays 42. Nothing changes. End."])
    seg = segment(text, MARKERS)
    assert [s.type for s in seg.steps] == [PROGRESSIVE, PROGRESSIVE, VERIFICATION, PROGRESSIVE]
    typer = StepTyper(chat)
    typed, sources = typer.retype(seg, MARKERS)
    assert [s.type for s in typed.steps] == [PROGRESSIVE, VERIFICATION, VERIFICATION, PROGRESSIVE]
    assert sources == [BY_MARKER, BY_MODEL, BY_MARKER, UNMARKED]  # P1 opens with "First": a marker typed it
    assert len(asked) == 2 and typer.counts == {"asked": 2, "unparsed": 1}
    assert P1 in asked[0].split("Step to label:")[0] and UNMARKED_CHECK in asked[0].split("Step to label:")[1]
    assert [(s.start, s.end) for s in typed.steps] == [(s.start, s.end) for s in seg.steps]  # it types, not splits


def test_prune_steps_with_a_step_typer_stores_and_reports_its_types(tiny_qwen_dir, tmp_path, monkeypatch):
    made = []

    def stand_in(model, template, backend, trust_remote_code, dtype):
        made.append((model, template, backend))
        return step_typer.StepTyper(lambda p: "verification" if "Recomputing" in p.split("Step to label:")[1]
                                    else "progressive")

    monkeypatch.setattr(runner, "step_typer_for", stand_in)
    root = tmp_path
    rows = [{"instruction": "What is 17 + 25?", "input": "", "output": trace([P1, UNMARKED_CHECK, P2]), "system": SYS}]
    write_jsonl(rows, root / "data" / "t.jsonl")
    (root / "dataset_info.json").write_text(json.dumps({"t": {"file_name": "data/t.jsonl", "formatting": "alpaca",
                                                              "columns": {"prompt": "instruction", "query": "input",
                                                                          "response": "output",
                                                                          "system": "system"}}}))
    s = run_prune(_opts(tiny_qwen_dir, root, dataset="t", name="t_pir", ratio=1.0, step_typer="some/typer"))
    assert made == [("some/typer", "qwen", "huggingface")] and s["step_typer"] == {"asked": 1, "unparsed": 0}
    steps = pd.read_parquet(root / "pir" / "steps.parquet")
    assert list(steps["step_type"][0]) == [PROGRESSIVE, VERIFICATION, PROGRESSIVE]
    assert list(steps["step_source"][0]) == ["marker", "model", "marker"]  # P1 "First", P2 "Therefore"
    (out,) = _read_jsonl(root / "data" / "t_pir.jsonl")
    assert out["output"] == trace([P1, P2])  # ratio 1: the model-typed verification step is deleted
    m = s["manifest"]
    assert m["parameters"]["step_typer"]["model"] == "some/typer"
    assert m["steps_typed_by"] == {"marker": {PROGRESSIVE: 2, VERIFICATION: 0, MULTI_METHOD: 0, ERROR_CORRECTION: 0},
                                   "model": {PROGRESSIVE: 0, VERIFICATION: 1, MULTI_METHOD: 0, ERROR_CORRECTION: 0}}
    assert "--step_typer some/typer" in m["recipe"]
    with pytest.raises(UserError, match="different configuration"):  # the typer is part of the PIR identity
        run_prune(_opts(tiny_qwen_dir, root, dataset="t", name="t_pir"))


def test_the_typer_generates_through_llamafactory_chat_model(tiny_qwen_dir):
    chat = load_chat(str(tiny_qwen_dir), "qwen", dtype="float32")
    answer = chat("Answer with one word: verification or progressive.")
    assert isinstance(answer, str) and len(answer) > 0
    typer = StepTyper(chat)
    seg = segment(trace([P1, UNMARKED_CHECK]), MARKERS)
    typed, sources = typer.retype(seg, MARKERS)
    assert typer.counts["asked"] == 1 and sources[0] == "marker" and sources[1] in ("model", "unmarked")


def test_the_typer_prompt_is_the_one_in_the_methods_doc():
    doc = (REPO_ROOT / "docs" / "methods.md").read_text()
    assert all(line in doc for line in PROMPT.splitlines() if line.strip())


def test_report_html_strikes_through_exactly_the_deleted_steps(pruned):
    import re

    root, _ = pruned
    text = (root / "report" / "report.html").read_text(encoding="utf-8")
    page = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)[1])
    b = page["browser"]
    out = {r["id"]: r for r in _read_jsonl(root / "data" / "mini_pir30.jsonl")}
    inp = {r["id"]: r for r in _read_jsonl(root / "data" / "mini.jsonl")}
    manifest = json.loads((root / "data" / "mini_pir30.manifest.json").read_text())
    assert len(b["data"]["id"]) == manifest["rows"]["changed"] == 3
    for i, row_id in enumerate(b["data"]["id"]):
        pieces = b["texts"][str(i)]["steps"]
        assert "".join(p["text"] for p in pieces if not p["deleted"]) == out[row_id]["output"]
        assert "".join(p["text"] for p in pieces) == inp[row_id]["output"]
        assert sum(1 for p in pieces if p["deleted"] and "type" in p) == b["data"]["steps_deleted"][i] > 0
