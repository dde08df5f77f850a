"""llamafactory_ext/study/check.py: a study's typo fails when it is loaded (--dry-run, before a real run's first
step), naming the section, the key and the nearest valid name; every planned step's command line is checked."""

from __future__ import annotations

import pytest
from helpers import REPO_ROOT
from test_study import MINI, write_study

from data_selection.command_line import UserError
from llamafactory_ext.cli import main as lfx_main
from llamafactory_ext.study import execute
from llamafactory_ext.study.check import command_of, options_class
from llamafactory_ext.study.config import load_study
from llamafactory_ext.study.plan import build_plan, known_strategies


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def _arms(**zpd) -> dict:
    return {"arms": {"random": {"strategy": "random"}, "zpd": {"strategy": "zpd", **zpd}}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_arms(lowr=0.2), "arms.zpd: unknown key 'lowr' for `data-select select` (did you mean 'low'?)"),
        (_arms(low="a quarter"), "arms.zpd.low: invalid float value: 'a quarter'"),
        (_arms(max_repeats=2.5), "arms.zpd.max_repeats: invalid int value: '2.5'"),
        ({"arms": {"random": {"strategy": "random"}, "zpd": {"strategy": "zdp"}}},
         "arms.zpd: unknown strategy 'zdp' (did you mean 'zpd'?)"),
        (_arms(key="loss_men"), "arms.zpd.key: invalid choice: 'loss_men'"),
        (_arms(key="loss_men"), "(did you mean 'loss_mean'?)"),
        (_arms(xyzzy=1), "arms.zpd: unknown key 'xyzzy' for `data-select select`; `data-select select` takes: name,"),
        ({"score": {"batch_token": 4096}}, "score: unknown key 'batch_token' for `data-select score` (did you mean "
                                           "'batch_tokens'?)"),  # a prefix argparse itself would have accepted
        ({"eval": {**MINI["eval"], "max_new_tokens": "many"}}, "eval.max_new_tokens: invalid int value: 'many'"),
        ({"pool": {"demo_data": {"pool_sise": 40}}},
         "pool.demo_data: unknown key 'pool_sise' for `data-select make-demo-data` (did you mean 'pool_size'?)"),
        ({"arms": {"random": {"strategy": "random"}, "pc": {"strategy": "pass-cv", "verify": {"min_vote": 2}}}},
         "arms.pc.verify: unknown key 'min_vote' for `data-select verify` (did you mean 'min_votes'?)"),
        ({"arms": {"random": {"strategy": "random"}, "temp": {"strategy": "temp", "temp_shortfal": "fill"}}},
         "arms.temp: unknown key 'temp_shortfal' for `data-select select` (did you mean 'temp_shortfall'?)"),
        ({"arms": {"random": {"strategy": "random"}, "temp": {"strategy": "temp", "gaussian": {"num": "eight"}}}},
         "arms.temp.gaussian.num: invalid int value: 'eight' (`data-select perturb` option --num)"),
    ],
)
def test_a_typo_in_a_study_fails_its_dry_run_naming_the_section_key_and_suggestion(tmp_path, capsys, change,
                                                                                   message):
    path = write_study(tmp_path, "some/model", **change)
    assert lfx_main(["study", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_a_typo_stops_a_real_run_before_its_first_step(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(execute, "run_steps", lambda steps, until=None: ran.append(steps))
    path = write_study(tmp_path, "some/model", **_arms(lowr=0.2))
    assert lfx_main(["study", str(path), "--skip-doctor"]) == 1
    assert "did you mean 'low'?" in capsys.readouterr().err and ran == []
    with pytest.raises(UserError, match="unknown key 'lowr'"):  # the same check for every user of the plan
        build_plan(load_study(path, known_strategies()))


def test_valid_options_of_every_kind_pass(tmp_path):
    """Booleans, choices, numbers and the keys each builder takes off before the rest go to `select`."""
    arms = {"random": {"strategy": "random"},
            "zpd": {"strategy": "zpd", "low": 0.3, "key": "loss_first_100", "stratify": "source", "register": False},
            "pc": {"strategy": "pass-cv", "stage": 1, "fill_low_cv": True, "verify": {"min_votes": 2}},
            "zpd_len": {"strategy": "random", "match": "zpd", "match_bins": 4, "borrow": True}}
    steps = build_plan(load_study(write_study(tmp_path, "some/model", arms=arms), known_strategies()))
    assert {s.kind for s in steps} >= {"select", "verify", "eval"}


def test_every_step_of_every_shipped_study_is_parsed_by_its_commands_options_class():
    """Every command a shipped study plans has an options class (only training takes raw key=value arguments)."""
    commands = set()
    for path in sorted((REPO_ROOT / "studies").glob("*.yaml")):
        for step in build_plan(load_study(path, known_strategies())):
            program, command, _ = command_of(step.argv)
            if options_class(program, command) is None:
                assert step.kind == "train", step.label
            commands.add(command)
    assert commands >= {"make-demo-data", "prepare-model", "score", "verify", "perturb", "score-checkpoints",
                        "select", "prune-steps", "eval", "train"}


def test_commands_under_torchrun_are_found():
    argv = ["torchrun", "--nproc-per-node", "8", "-m", "data_selection.cli", "score", "--model", "m"]
    assert command_of(argv) == ("data-select", "score", ["--model", "m"])
    with pytest.raises(UserError, match="cannot check"):
        options_class("data-select", "no-such-command")
