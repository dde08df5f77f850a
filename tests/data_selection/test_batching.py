import random

import pytest

from data_selection.scoring.batching import padding_waste, token_budget_batches


def test_batches_respect_budget_and_cover_every_row():
    rng = random.Random(0)
    lengths = {i: rng.randint(50, 3000) for i in range(500)}
    batches = token_budget_batches(lengths, 8192)
    assert sorted(k for b in batches for k in b) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[k] for k in b) <= 8192


def test_long_tail_mix_is_not_padded_to_the_longest_row():
    lengths = {0: 4096, 1: 300, 2: 320, 3: 280, 4: 2000, 5: 350}
    batches = token_budget_batches(lengths, 32768)
    assert padding_waste(lengths, batches) < 0.2
    assert [0] in batches  # the long row is not batched with short ones


def test_dense_pool_fills_batches_with_little_waste():
    rng = random.Random(1)
    lengths = {i: int(200 * 80 ** (rng.random() ** 2)) for i in range(20000)}
    batches = token_budget_batches(lengths, 32768)
    assert padding_waste(lengths, batches) < 0.02
    assert sum(len(b) for b in batches) / len(batches) > 8


def test_oversized_row_gets_its_own_batch_and_order_is_deterministic():
    lengths = {0: 100, 1: 50000, 2: 100}
    assert token_budget_batches(lengths, 1000) == [[1], [0, 2]]
    with pytest.raises(ValueError):
        token_budget_batches(lengths, 0)
