"""The disk probe reads the recipe's save settings (llamafactory_ext.doctor.storage)."""

from __future__ import annotations

from helpers import REPO_ROOT

from llamafactory_ext.doctor import storage
from llamafactory_ext.doctor.target import Target, load_target

PARAMS = 134_515_008


def test_save_strategy_no_writes_no_checkpoint():
    need, parts = storage.planned_bytes(Target(kind="recipe", model="m", recipe={"save_strategy": "no"}), PARAMS)
    assert need == PARAMS * storage.WEIGHT_BYTES_PER_PARAM  # the final model only
    assert "no checkpoints (save_strategy: no)" in parts[0] and "3 checkpoints" not in parts[0]


def test_the_demo_recipe_is_sized_as_it_runs():
    t = load_target(str(REPO_ROOT / "yaml_recipes" / "demo_zpd.yaml"))
    need, parts = storage.planned_bytes(t, PARAMS)
    assert "no checkpoints (save_strategy: no)" in parts[0]
    assert need < 1e9


def test_checkpoints_are_counted_from_steps_and_capped_by_the_limit():
    recipe = {"save_strategy": "steps", "save_steps": 100, "max_steps": 250, "save_total_limit": 5}
    _, parts = storage.planned_bytes(Target(kind="recipe", model="m", recipe=recipe), PARAMS)
    assert "3 checkpoints (max_steps 250 / save_steps 100)" in parts[0]
    recipe = {"save_strategy": "epoch", "num_train_epochs": 4, "save_total_limit": 2}
    _, parts = storage.planned_bytes(Target(kind="recipe", model="m", recipe=recipe), PARAMS)
    assert "2 checkpoints (save_total_limit)" in parts[0]
    _, parts = storage.planned_bytes(Target(kind="recipe", model="m", recipe={"save_strategy": "epoch",
                                                                              "num_train_epochs": 2.0}), PARAMS)
    assert "2 checkpoints (2 epochs)" in parts[0]
