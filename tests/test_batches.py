import numpy as np
import pytest
import torch

from training.batches import BpttBatches


def test_targets_are_inputs_shifted_by_one_and_windows_continue_each_column():
    ids = np.arange(101)
    batches = list(BpttBatches(ids, batch_size=4, bptt=7))
    for inputs, targets in batches:
        assert torch.equal(targets, inputs + 1)
    # column b is one contiguous run: concatenating its windows gives start..start+25
    columns = torch.cat([inputs for inputs, _ in batches], dim=1)
    assert columns.shape == (4, 25)
    for b in range(4):
        assert columns[b].tolist() == list(range(25 * b, 25 * b + 25))
    assert batches[-1][0].shape == (4, 4)  # the last window is the remainder


def test_data_parallel_ranks_get_disjoint_shards_with_the_same_number_of_steps():
    ids = np.arange(1001)
    ranks = [BpttBatches(ids, batch_size=3, bptt=5, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    seen = [set(torch.cat([i.flatten() for i, _ in r]).tolist()) for r in ranks]
    assert not seen[0] & seen[1]


def test_a_corpus_too_small_for_the_batch_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        BpttBatches(np.arange(3), batch_size=4, bptt=2)
