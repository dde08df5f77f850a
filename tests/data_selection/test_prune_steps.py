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
from helpers import write_jsonl

from data_selection.command_line import UserError
from data_selection.transforms.prune import n_to_delete, steps_to_delete
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


def test_marker_boundaries_keep_a_short_functional_paragraph_on_its_own():
    text = trace(["We add. It is 42.", "Wait, let me check. 25 + 17 = 42. Yes."])
    assert [s.type for s in segment(text, MARKERS).steps] == [PROGRESSIVE]  # merged into the 2-sentence step
    steps = segment(text, MARKERS, marker_boundaries=True).steps
    assert [s.type for s in steps] == [PROGRESSIVE, VERIFICATION]
    assert [s.sentences for s in steps] == [2, 3]


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
    from data_selection.encoding import IGNORE_INDEX

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

    from data_selection.encoding import TemplateEncoder, load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    return model, TemplateEncoder(load_tokenizer(str(tiny_qwen_dir)), "qwen", 1024)


@pytest.mark.parametrize("paragraphs", [[P1, V1, M1, V2, E1, P2], [V3, P1, M2, V1]])
def test_pir_equals_direct_per_variant_computation(tiny, paragraphs):
    from data_selection.transforms.pir import encode_variants, pir_batched, pir_prefix_cached

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
    from data_selection.transforms.options import PruneOptions

    base = dict(model=str(model), dataset="mini", name="mini_pir30", dataset_dir=str(root), cutoff_len=320,
                out=str(root / "pir"), report_dir=str(root / "report"), shard_rows=3, num_proc=1, batch_tokens=600)
    base.update(kw)
    return PruneOptions(**base)


@pytest.fixture(scope="module")
def pruned(tiny_qwen_dir, tmp_path_factory):
    from data_selection.transforms.runner import run_prune

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
    from data_selection.transforms.output import NOTHING_AT_RATIO, REJECTED  # noqa: F401 (names of the reasons)
    from data_selection.transforms.pir import NO_FUNCTIONAL, OVER_CUTOFF

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


def test_output_is_registered_and_loads_with_llamafactory(pruned, tiny_qwen_dir):
    from data_selection.encoding import TemplateEncoder, load_tokenizer
    from data_selection.registry import check_dataset_info
    from data_selection.sources import PoolSpec, load_pool

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
    from data_selection.push import prepare_upload

    files = dict(prepare_upload(root, "mini_pir30", license="cc-by-4.0"))  # the sha256 in the manifest matches
    assert b"license: cc-by-4.0" in files["README.md"] and b"PIR" in files["README.md"]
    assert files["data/train.jsonl"] == root / "data" / "mini_pir30.jsonl"


def test_ranks_split_the_work_and_a_new_ratio_reuses_the_pir_values(pruned, tiny_qwen_dir, tmp_path, monkeypatch):
    from data_selection.transforms import runner

    root, _ = pruned
    two = _pool(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    s0 = runner.run_prune(_opts(tiny_qwen_dir, two))
    assert not s0["finished"] and 0 < s0["rows_now"] < len(ROWS)
    monkeypatch.setenv("RANK", "1")
    s1 = runner.run_prune(_opts(tiny_qwen_dir, two))
    assert s1["finished"] and s0["rows_now"] + s1["rows_now"] == len(ROWS) - 1  # the rejected row: no shard
    a, b = pd.read_parquet(root / "pir" / "steps.parquet"), pd.read_parquet(two / "pir" / "steps.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6)
    assert (root / "data" / "mini_pir30.jsonl").read_bytes() == (two / "data" / "mini_pir30.jsonl").read_bytes()

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")

    def no_model(*a, **k):
        raise AssertionError("finished PIR values must be reused without loading the model")

    monkeypatch.setattr("data_selection.scoring.runner.load_model", no_model)
    s = runner.run_prune(_opts(tiny_qwen_dir, two, ratio=1.0, name="mini_pir100"))
    assert s["finished"] and s["rows_now"] == 0
    m = s["manifest"]
    assert all(v["deleted"] == v["scored"] for t, v in m["steps"].items() if t != PROGRESSIVE)


def test_refuses_to_mix_configurations_and_bad_options(pruned, tiny_qwen_dir):
    from data_selection.transforms.runner import run_prune

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

    from data_selection.encoding import TemplateEncoder, load_tokenizer
    from data_selection.transforms.pir import encode_variants, pir_batched, pir_prefix_cached

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

    from helpers import REPO_ROOT

    from data_selection.command_line import parse_options
    from data_selection.transforms.options import PruneOptions, recipe

    entry = json.loads((REPO_ROOT / "dataset_info.json").read_text())["acereason_zpd_15k_pir30"]
    argv = shlex.split(entry["recipe"])
    assert argv[:2] == ["data-select", "prune-steps"]
    opts = parse_options(PruneOptions, argv[2:], "data-select prune-steps", "")
    assert recipe(opts) == entry["recipe"] and opts.dataset == "acereason_zpd_15k" and opts.ratio == 0.3
    assert entry["manifest"] == f"data/{opts.name}.manifest.json"
    header = (REPO_ROOT / "yaml_recipes" / "advanced_pir30.yaml").read_text()
    assert f"--ratio 0.3 --name {opts.name}" in header and "--dataset acereason_zpd_15k " in header


def test_selection_report_points_to_the_pruning_report(pruned):
    from data_selection.report import ReportOptions, run_report

    root, _ = pruned
    with pytest.raises(UserError, match="made by `data-select prune-steps`"):
        run_report(ReportOptions(names=["mini_pir30"], dataset_info=str(root / "dataset_info.json")))


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
