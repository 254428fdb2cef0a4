import itertools
import math
import random

import pytest

from rescorer.sentence_batches import make_sentence_batches, partition_by_length


def cost(groups, lengths, step_cost):
    return sum(max(lengths[i] for i in g) * (len(g) + step_cost) for g in groups)


def check_valid(groups, lengths, max_tokens):
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) == 1 or max(lengths[i] for i in g) * len(g) <= max_tokens


def brute_force_cost(lengths, max_tokens, step_cost):
    """The least modelled cost over every way of cutting the distinct lengths into runs (a run over
    the budget is charged as pieces all padded to the run's width)."""
    widths = sorted(set(lengths))
    counts = [lengths.count(w) for w in widths]
    best = math.inf
    for cuts in itertools.product([False, True], repeat=len(widths) - 1):
        total, count = 0.0, 0
        for k, (w, c) in enumerate(zip(widths, counts, strict=True)):
            count += c
            if k == len(widths) - 1 or cuts[k]:
                total += w * (count + step_cost * math.ceil(count / max(1, max_tokens // w)))
                count = 0
        best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_the_partition_is_valid_and_optimal_for_its_cost(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 40))]
    max_tokens, step_cost = rng.choice([5, 20, 64, 1000]), rng.choice([0.0, 2.0, 8.0, 100.0])
    groups = partition_by_length(lengths, max_tokens, step_cost)
    check_valid(groups, lengths, max_tokens)
    optimum = brute_force_cost(lengths, max_tokens, step_cost)
    if max_tokens >= 12 * len(lengths):  # no run needs splitting: the cost model is exact
        assert cost(groups, lengths, step_cost) == pytest.approx(optimum)
    else:  # a split run's shorter pieces are padded less than the model charges
        assert cost(groups, lengths, step_cost) <= optimum + 1e-9


def test_free_steps_mean_no_padding_and_costly_steps_mean_full_batches():
    lengths = [3, 5, 5, 9, 3, 12, 9, 9]
    no_padding = partition_by_length(lengths, 1000, step_cost=0.0)
    assert all(len({lengths[i] for i in g}) == 1 for g in no_padding)
    assert len(partition_by_length(lengths, 1000, step_cost=1e6)) == 1


def test_a_run_over_the_budget_is_split_into_equal_pieces_and_a_long_sentence_stands_alone():
    assert [len(g) for g in partition_by_length([4] * 10, 16, 8.0)] == [4, 3, 3]  # 4 per batch at most
    groups = partition_by_length([50, 2, 2], 10, 8.0)
    assert [0] in groups


def test_batches_pad_every_sentence_to_its_group_width():
    sentences = [[5, 6, 7], [8], [], [9, 9]]
    batches = list(make_sentence_batches(sentences, bos_id=0, eos_id=1, max_tokens=100))
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == [0, 1, 2, 3]
    for b in batches:
        for row, i in enumerate(b.indices):
            n = len(sentences[i])
            assert b.inputs[row, : n + 1].tolist() == [0, *sentences[i]]
            assert b.targets[row, : n + 1].tolist() == [*sentences[i], 1]
            assert int(b.mask[row].sum()) == n + 1 == int(b.lengths[row])


@pytest.mark.parametrize("budget", [0, -3, 2.5, True, None])
def test_a_token_budget_that_is_not_a_whole_number_of_at_least_one_is_refused_when_called(budget):
    from rescorer.errors import ConfigError

    with pytest.raises(ConfigError, match="max_tokens must be a whole number >= 1"):
        make_sentence_batches([[1, 2]], 0, 1, budget)  # raised before any batch is drawn
